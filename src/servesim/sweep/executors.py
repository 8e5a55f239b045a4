"""Where runs execute: local worker processes or Ray.

An executor takes ``RunTask``s and yields ``RunOutcome``s as they finish
(``run_unordered``).  Workers only simulate: ``execute_task`` runs one
scenario in a private temporary folder and sends back the summary and the
bytes of its output files, so nothing but the coordinating process touches
the output folder (and Ray workers need no shared file system).

A failed run is an outcome, not an exception: any exception inside the
simulation becomes ``status='failed'`` with a one-line ``error``
(``ServesimError``: its message; anything else: ``TypeName: message``).
"""

from __future__ import annotations

import os
import signal
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Protocol

from servesim.errors import ConfigError, ServesimError


@dataclass(frozen=True)
class RunTask:
    """One run to execute: its hash and resolved config (plain data)."""

    config_hash: str
    config: dict[str, Any]


@dataclass(frozen=True)
class RunOutcome:
    """What a worker sends back: status 'done' or 'failed', the summary and output files when done."""

    config_hash: str
    status: str
    error: str | None
    wall_s: float
    summary: dict[str, Any] | None = None
    files: dict[str, bytes] = field(default_factory=dict)


def one_line(err: BaseException) -> str:
    """The error as one line: a ``ServesimError``'s message, else ``TypeName: message``."""
    text = str(err) if isinstance(err, ServesimError) else f"{type(err).__name__}: {err}"
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[0] if lines else type(err).__name__


def execute_task(task: RunTask) -> RunOutcome:
    """Simulate one run (in a worker); never raises for a failing scenario."""
    from servesim.api import simulate
    from servesim.config import validate_config

    started = time.perf_counter()
    try:
        result = simulate(validate_config(task.config))
        with tempfile.TemporaryDirectory(prefix="servesim-run-") as tmp:
            paths = result.write(tmp)
            files = {Path(p).name: Path(p).read_bytes() for p in paths.values()}
    except Exception as err:  # noqa: BLE001 - every failure of one run is recorded, the sweep goes on
        return RunOutcome(task.config_hash, "failed", one_line(err), time.perf_counter() - started)
    return RunOutcome(task.config_hash, "done", None, time.perf_counter() - started, result.summary, files)


def die_with_parent(parent_pid: int) -> None:
    """Worker initializer: end this process when ``parent_pid`` (the coordinator) ends, by any
    signal, ``kill -9`` included, and leave Ctrl-C to the coordinator.

    Linux: ``PR_SET_PDEATHSIG`` makes the kernel send SIGKILL when the parent dies; elsewhere a
    daemon thread polls ``os.getppid()``.  Either way a parent already gone ends the worker at once.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the coordinator handles Ctrl-C and stops the workers
    if sys.platform.startswith("linux"):
        import ctypes

        pr_set_pdeathsig = 1
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(pr_set_pdeathsig, signal.SIGKILL, 0, 0, 0) != 0:
            _watch_parent(parent_pid)
    else:
        _watch_parent(parent_pid)
    if os.getppid() != parent_pid:  # the parent died before the above took hold
        os._exit(1)


def _watch_parent(parent_pid: int, every_s: float = 0.5) -> None:
    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(every_s)
        os._exit(1)

    threading.Thread(target=watch, name="servesim-parent-watch", daemon=True).start()


class Executor(Protocol):
    """Runs tasks somewhere; ``workers`` is how many run at once."""

    workers: int

    def run_unordered(self, tasks: Iterable[RunTask]) -> Iterator[RunOutcome]:
        """Yield each task's outcome as it finishes (any order)."""
        ...

    def close(self, abort: bool = False) -> None:
        """Release the workers; ``abort``: stop the runs in flight (after Ctrl-C) instead of waiting."""
        ...


class InlineExecutor:
    """Runs tasks one by one in this process (tests and debugging)."""

    workers = 1

    def run_unordered(self, tasks: Iterable[RunTask]) -> Iterator[RunOutcome]:
        for task in tasks:
            yield execute_task(task)

    def close(self, abort: bool = False) -> None:
        pass


class LocalExecutor:
    """``workers`` local processes (started with 'spawn': the coordinator holds threads and a database)."""

    def __init__(self, workers: int = 2) -> None:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        if workers < 1:
            raise ConfigError(f"option --workers {workers}: must be >= 1 worker process (or 0: run in this process)")
        self.workers = workers
        self._pool = ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"),
                                         initializer=die_with_parent, initargs=(os.getpid(),))

    def run_unordered(self, tasks: Iterable[RunTask]) -> Iterator[RunOutcome]:
        from concurrent.futures import FIRST_COMPLETED, wait

        pending = iter(tasks)
        running: set = set()
        # Keep twice the workers in flight: enough to stay busy, few enough that stopping early wastes little.
        while True:
            while len(running) < 2 * self.workers:
                task = next(pending, None)
                if task is None:
                    break
                running.add(self._pool.submit(execute_task, task))
            if not running:
                return
            done, running = wait(running, return_when=FIRST_COMPLETED)
            for future in done:
                yield future.result()

    def close(self, abort: bool = False) -> None:
        if abort:
            # Runs in flight are lost anyway (their rows are not written): end the workers now.
            for process in list((getattr(self._pool, "_processes", None) or {}).values()):
                process.kill()
        self._pool.shutdown(wait=True, cancel_futures=True)


class RayExecutor:
    """Tasks as Ray remote functions: on a local Ray instance (``address=None``) or an existing cluster.

    A local instance gets ``workers`` CPUs and a small object store
    (``object_store_mb``); it is shut down by ``close``.  On a cluster,
    ``workers`` only bounds the tasks in flight.
    """

    def __init__(self, workers: int = 2, address: str | None = None, object_store_mb: int = 128) -> None:
        try:
            import ray
        except ImportError:
            raise ConfigError("option --ray: Ray is not installed (pip install 'servesim[ray]')") from None
        self.workers = workers
        self._ray = ray
        self._owns = False
        if not ray.is_initialized():
            if address is None:
                ray.init(num_cpus=workers, object_store_memory=object_store_mb * 2**20, include_dashboard=False,
                         log_to_driver=False, configure_logging=False)
            else:
                try:
                    ray.init(address=address, log_to_driver=False, configure_logging=False)
                except Exception as err:  # noqa: BLE001 - Ray raises several kinds for an unreachable cluster
                    raise ConfigError(f"option --ray-address {address}: {one_line(err)}") from None
            self._owns = True
        self._remote = ray.remote(num_cpus=1)(execute_task)

    def run_unordered(self, tasks: Iterable[RunTask]) -> Iterator[RunOutcome]:
        pending = iter(tasks)
        running: list = []
        while True:
            while len(running) < 2 * self.workers:
                task = next(pending, None)
                if task is None:
                    break
                running.append(self._remote.remote(task))
            if not running:
                return
            done, running = self._ray.wait(running, num_returns=1)
            for ref in done:
                yield self._ray.get(ref)

    def close(self, abort: bool = False) -> None:
        if self._owns and self._ray.is_initialized():
            self._ray.shutdown()


def make_executor(workers: int = 2, ray: bool = False, ray_address: str | None = None) -> Executor:
    """The executor the command-line flags ask for (``--workers 0``: inline, in this process)."""
    if workers < 0:
        raise ConfigError(f"option --workers {workers}: must be >= 0 (0: run in this process, N >= 1: N worker processes or Ray CPUs)")
    if ray or ray_address is not None:
        return RayExecutor(max(workers, 1), ray_address)
    if workers == 0:
        return InlineExecutor()
    return LocalExecutor(workers)
