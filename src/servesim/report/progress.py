"""Progress reporting for long simulations.

The simulator calls ``update`` every so many events (about every 1000) and
``close`` once at the end; it never reads the wall clock itself.  The only
wall-clock use is here, in deciding *when to draw*, which cannot affect
simulated results.
"""

from __future__ import annotations

import time
from typing import Protocol, runtime_checkable

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress as _RichBar, TextColumn, TimeElapsedColumn


@runtime_checkable
class Progress(Protocol):
    """What the simulator reports progress to."""

    def update(self, sim_time_s: float, done: int) -> None:
        """Simulated clock is at ``sim_time_s`` (s); ``done`` requests have left
        the system (finished or rejected)."""
        ...

    def close(self) -> None:
        """The run has ended; release the display.  Safe to call twice."""
        ...


class NullProgress:
    """Reports nothing."""

    def update(self, sim_time_s: float, done: int) -> None:
        pass

    def close(self) -> None:
        pass


class RichProgress:
    """A rich progress bar of requests done / ``total_requests``.

    Nothing is drawn until ``delay_s`` wall seconds have passed since
    construction, so short runs stay silent.  Draws to stderr by default so
    that stdout stays clean for machine-readable output.  ``horizon_s``, when
    set, is shown next to the simulated time.
    """

    def __init__(
        self,
        total_requests: int,
        horizon_s: float | None = None,
        *,
        delay_s: float = 1.0,
        console: Console | None = None,
    ) -> None:
        self._total = int(total_requests)
        self._horizon_s = horizon_s
        self._start_after = time.monotonic() + delay_s
        self._console = console if console is not None else Console(stderr=True)
        self._bar: _RichBar | None = None
        self._task = None
        self._closed = False

    @property
    def started(self) -> bool:
        """True once the bar has been drawn."""
        return self._bar is not None

    def update(self, sim_time_s: float, done: int) -> None:
        if self._closed:
            return
        if self._bar is None:
            # One monotonic() read per call; cheap at once per ~1000 events.
            if time.monotonic() < self._start_after:
                return
            self._start()
        # rich redraws on its own refresh thread; this only stores the values.
        self._bar.update(self._task, completed=done, sim=self._sim_text(sim_time_s))

    def close(self) -> None:
        if self._bar is not None and not self._closed:
            self._bar.stop()
        self._closed = True

    def __enter__(self) -> "RichProgress":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _start(self) -> None:
        self._bar = _RichBar(
            TextColumn("simulating"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("requests  sim {task.fields[sim]}"),
            TimeElapsedColumn(),
            console=self._console,
        )
        self._task = self._bar.add_task("simulating", total=self._total, sim="")
        self._bar.start()

    def _sim_text(self, sim_time_s: float) -> str:
        if self._horizon_s is None:
            return f"{sim_time_s:,.1f} s"
        return f"{sim_time_s:,.1f} / {self._horizon_s:,.1f} s"
