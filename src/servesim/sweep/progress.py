"""The sweep's progress bar: runs done, failed and remaining (rich, on stderr).

Like ``servesim.report.progress``, the wall clock is read only to decide when
to draw; it never reaches a result.
"""

from __future__ import annotations

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn


class SweepProgress:
    """Counts of runs ``done``, ``failed`` and remaining out of ``total``; draws unless ``enabled`` is False."""

    def __init__(self, total: int, label: str = "runs", *, enabled: bool = True, console: Console | None = None) -> None:
        self.total = total
        self.done = 0
        self.failed = 0
        self._bar: Progress | None = None
        if enabled:
            self._bar = Progress(
                TextColumn(label),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("done {task.fields[done]}  failed {task.fields[failed]}  remaining {task.fields[left]}"),
                TimeElapsedColumn(),
                console=console if console is not None else Console(stderr=True),
            )
            self._task = self._bar.add_task(label, total=total, done=0, failed=0, left=total)
            self._bar.start()

    @property
    def remaining(self) -> int:
        return self.total - self.done - self.failed

    def advance(self, failed: bool) -> None:
        """One more run finished (``failed``: with an error)."""
        if failed:
            self.failed += 1
        else:
            self.done += 1
        if self._bar is not None:
            self._bar.update(self._task, completed=self.done + self.failed, done=self.done, failed=self.failed,
                             left=self.remaining)

    def close(self) -> None:
        """Stop drawing.  Safe to call twice."""
        if self._bar is not None:
            self._bar.stop()
            self._bar = None
