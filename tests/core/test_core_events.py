"""The event kernel: ordering, tie-breaks, cancellation, horizon."""

import pytest

from servesim.core.events import EventLoop


def record(log):
    return lambda t, p: log.append((t, p))


def test_events_run_in_time_order():
    loop, log = EventLoop(), []
    for t in (3.0, 1.0, 2.0):
        loop.schedule(t, 0, record(log), t)
    loop.run()
    assert log == [(1.0, 1.0), (2.0, 2.0), (3.0, 3.0)]
    assert loop.now == 3.0 and loop.num_events == 3


def test_simultaneous_events_order_by_priority_then_fifo():
    loop, log = EventLoop(), []
    loop.schedule(1.0, 2, record(log), "wake")
    loop.schedule(1.0, 0, record(log), "arrival-a")
    loop.schedule(1.0, 1, record(log), "step")
    loop.schedule(1.0, 0, record(log), "arrival-b")
    loop.run()
    assert [p for _, p in log] == ["arrival-a", "arrival-b", "step", "wake"]


def test_event_scheduled_during_run_at_same_time_and_lower_priority_runs_before_later_ones():
    loop, log = EventLoop(), []

    def first(t, p):
        log.append("first")
        loop.schedule(t, 0, lambda t2, p2: log.append("spawned"))

    loop.schedule(1.0, 1, first)
    loop.schedule(1.0, 1, lambda t, p: log.append("second"))
    loop.run()
    assert log == ["first", "spawned", "second"]


def test_cancelled_event_is_skipped():
    loop, log = EventLoop(), []
    token = loop.schedule(1.0, 0, record(log), "x")
    loop.schedule(2.0, 0, record(log), "y")
    loop.cancel(token)
    assert loop.peek() == 2.0
    loop.run()
    assert log == [(2.0, "y")]


def test_run_until_stops_inclusive_and_keeps_the_rest():
    loop, log = EventLoop(), []
    for t in (1.0, 2.0, 3.0):
        loop.schedule(t, 0, record(log), t)
    loop.run(until=2.0)
    assert [p for _, p in log] == [1.0, 2.0]
    assert loop.now == 2.0 and loop.peek() == 3.0
    loop.run()
    assert loop.now == 3.0


def test_scheduling_in_the_past_is_an_error():
    loop = EventLoop()
    loop.schedule(5.0, 0, lambda t, p: loop.schedule(4.0, 0, lambda *a: None))
    with pytest.raises(ValueError, match="before now"):
        loop.run()


def test_callback_exceptions_propagate():
    loop = EventLoop()

    def boom(t, p):
        raise RuntimeError("boom")

    loop.schedule(0.0, 0, boom)
    with pytest.raises(RuntimeError, match="boom"):
        loop.run()
