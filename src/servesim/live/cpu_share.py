"""The noise meter: how much of the machine's CPU other processes used during a phase (Linux).

A replay on a shared machine measures the server *and* whatever else runs there; other jobs
inflate TPOT directly.  So each phase records, from ``/proc``:

* all cores' time: ``busy = user + nice + system + irq + softirq + steal`` and ``total = busy +
  idle + iowait`` clock ticks from ``/proc/stat``'s first line (guest time is inside user);
* this process's own: ``utime + stime + cutime + cstime`` of ``/proc/self/stat`` (its children
  that exited count through cutime and cstime);
* the server's, when its process id is given: the same for it and every process below it (found
  through the parent ids in ``/proc/*/stat``), so its workers count too.

``others_share = (busy - self - server) / total`` over the phase: the share of all the cores that
``/proc/stat`` counts (the whole machine, not a container's quota) kept busy by other processes;
clipped at 0, since the counters are read a moment apart.  ``CpuRecorder`` samples every
``period_s`` as well and keeps the largest interval's share (``others_share_max``): a burst of
noise shows even in a long phase.  Where ``/proc`` cannot be read every share is None.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from servesim.errors import ConfigError

_PROC = Path("/proc")


@dataclass(frozen=True)
class CpuSample:
    """Cumulative CPU clock ticks at one instant (``wall_s``: ``time.perf_counter()``)."""

    wall_s: float
    total: int
    busy: int
    own: int
    server: int | None  # None: no server pid, or it could not be read


def check_pid(pid: int) -> None:
    """``ConfigError`` unless process ``pid`` exists and its ``/proc`` entry can be read."""
    if _process_ticks(pid) is None:
        raise ConfigError(f"option --server-pid {pid}: no such process (or /proc/{pid}/stat cannot be read)")


def sample(server_pid: int | None = None) -> CpuSample | None:
    """The counters now; None where ``/proc/stat`` cannot be read (not Linux)."""
    try:
        fields = (_PROC / "stat").read_text().split("\n", 1)[0].split()
    except OSError:
        return None
    user, nice, system, idle, iowait, irq, softirq, steal = (int(x) for x in (fields[1:9] + ["0"] * 8)[:8])
    busy = user + nice + system + irq + softirq + steal
    own = _process_ticks("self")
    server = _tree_ticks(server_pid) if server_pid is not None else None
    return CpuSample(time.perf_counter(), busy + idle + iowait, busy, own or 0, server)


def shares(first: CpuSample | None, last: CpuSample | None) -> dict[str, float | None]:
    """Shares of all cores between two samples: ``busy_share``, ``self_share``, ``server_share``
    (None without a server), ``others_share`` (None when a sample is missing)."""
    if first is None or last is None or last.total <= first.total:
        return {"busy_share": None, "self_share": None, "server_share": None, "others_share": None}
    total = last.total - first.total
    server = None if first.server is None or last.server is None else max(last.server - first.server, 0)
    busy, own = last.busy - first.busy, last.own - first.own
    others = max(busy - own - (server or 0), 0) / total
    return {"busy_share": busy / total, "self_share": own / total,
            "server_share": None if server is None else server / total, "others_share": others}


class CpuRecorder:
    """Samples kept over one phase: ``record()`` at its start, every ``period_s`` and at its end."""

    def __init__(self, server_pid: int | None = None, period_s: float = 1.0) -> None:
        self.server_pid = server_pid
        self.period_s = period_s
        self.samples: list[CpuSample | None] = []

    def record(self) -> None:
        self.samples.append(sample(self.server_pid))

    def summary(self) -> dict[str, Any]:
        """The phase's shares (first to last sample), ``others_share_max`` over consecutive
        samples, the cores counted and the phase's length (see the module docstring)."""
        first = self.samples[0] if self.samples else None
        last = self.samples[-1] if self.samples else None
        steps = [shares(a, b)["others_share"] for a, b in zip(self.samples, self.samples[1:])]
        steps = [s for s in steps if s is not None]
        duration = None if first is None or last is None else last.wall_s - first.wall_s
        return {
            **shares(first, last),
            "others_share_max": max(steps) if steps else None,
            "num_cpus": _num_cpus(),
            "duration_s": duration,
            "period_s": self.period_s,
            "server_pid": self.server_pid,
        }


# ---------------------------------------------------------------- /proc
def _stat_fields(pid: int | str) -> list[str] | None:
    """The fields after the command name of ``/proc/PID/stat`` (the name may hold spaces and
    parentheses): index 0 is the state, 1 the parent id, 11-14 utime, stime, cutime, cstime."""
    try:
        text = (_PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    return text[text.rfind(")") + 2:].split()


def _process_ticks(pid: int | str) -> int | None:
    fields = _stat_fields(pid)
    return None if fields is None else sum(int(x) for x in fields[11:15])


def _tree_ticks(root: int) -> int | None:
    """CPU ticks of process ``root`` and every process below it; None if ``root`` is gone."""
    parents: dict[int, int] = {}
    ticks: dict[int, int] = {}
    for entry in os.scandir(_PROC):
        if not entry.name.isdigit():
            continue
        fields = _stat_fields(entry.name)
        if fields is not None:
            pid = int(entry.name)
            parents[pid] = int(fields[1])
            ticks[pid] = sum(int(x) for x in fields[11:15])
    if root not in ticks:
        return None
    children: dict[int, list[int]] = {}
    for pid, parent in parents.items():
        children.setdefault(parent, []).append(pid)
    total, stack = 0, [root]
    while stack:
        pid = stack.pop()
        total += ticks[pid]
        stack.extend(children.get(pid, ()))
    return total


def _num_cpus() -> int | None:
    try:
        return sum(1 for line in (_PROC / "stat").read_text().splitlines() if line[:3] == "cpu" and line[3:4].isdigit())
    except OSError:
        return None
