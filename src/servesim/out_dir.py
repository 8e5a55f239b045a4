"""Output folders written safely: checked before a run, filled whole, never mixed.

A run's folder (``servesim run --out``, ``Result.write``) is written into a
temporary folder beside the target and moved into place only once every file
is written, so a failed write leaves the target as it was and a finished one
never holds files of an earlier run.

What a target may be (``check_run_dir``):

* missing or empty: written;
* a servesim run folder holding the same run (its ``config.yaml`` is this
  run's): replaced, since the result is the same;
* anything else (another run, a sweep's folder, a file): refused with an
  ``OutputError`` unless ``overwrite``, which replaces it.

``overwrite`` only ever deletes what servesim writes (``RUN_FILES``,
``SWEEP_FILES``, and ``runs/`` below a sweep's database): a folder holding
any other entry is refused even then, naming the entry, so that no user file
is deleted silently.  A sweep's or search's folder (``check_sweep_dir``)
resumes when it holds the same kind and name of spec (docs/sweeps.md).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable

from servesim.errors import OutputError

#: Files a run's folder may hold: its outputs (a replay's too) and ``servesim report``'s pages.
RUN_FILES = frozenset({
    "requests.parquet", "timeseries.parquet", "config.yaml", "summary.json",
    "kvcache_timeseries.parquet", "programs.parquet", "fleet_timeseries.parquet",
    "power_timeseries.parquet", "report.html", "report.md",
    "token_times.parquet", "metrics_before.txt", "metrics_after.txt",
})
#: Entries a sweep's or search's folder may hold (``servesim.sweep.store``).
SWEEP_FILES = frozenset({"results.duckdb", "results.duckdb.wal", "runs", "report.html", "report.md"})
_TMP_MARK = ".servesim-tmp-"


def check_run_dir(path: str | Path, config_text: str | None, *, overwrite: bool, label: str = "option --out") -> None:
    """Raise ``OutputError`` unless a run whose ``config.yaml`` reads ``config_text`` may be written
    to ``path`` (see the module docstring); writes nothing."""
    out = Path(path)
    entries = _servesim_entries(out, label)
    if not entries:
        return
    held = _describe(out, entries)
    if held == "run" and config_text is not None and _same_run(out, config_text):
        return
    if not overwrite:
        raise OutputError(f"{label} {out}: holds {_held_words(held)}; {_overwrite_hint(label)} to replace it, "
                          "or choose another folder")


def _servesim_entries(out: Path, label: str) -> list:
    """The entries of output folder ``out`` (empty for a new or empty one), after checking that it
    can be written and holds nothing servesim did not write (``OutputError`` otherwise)."""
    check_writable(out, label)
    if not out.exists():
        return []
    entries = _entries(out)
    if entries:
        _refuse_foreign(out, entries, RUN_FILES | SWEEP_FILES, label)
    return entries


def write_run_dir(path: str | Path, write: Callable[[Path], dict[str, Path]], config_text: str | None, *,
                  overwrite: bool, label: str = "option --out") -> dict[str, Path]:
    """Check ``path`` (``check_run_dir``), let ``write(tmp)`` fill a temporary folder beside it, then
    move the files into place; returns the written files' final paths."""
    out = Path(path)
    check_run_dir(out, config_text, overwrite=overwrite, label=label)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}{_TMP_MARK}", dir=out.parent))
    except OSError as err:
        raise OutputError(f"{label} {out}: cannot write outputs: {err.strerror or err}") from None
    try:
        written = write(tmp)
        _move_into_place(tmp, out)
    except OSError as err:
        raise OutputError(f"{label} {out}: cannot write outputs: {err.strerror or err}") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return {key: out / Path(p).name for key, p in written.items()}


def check_sweep_dir(path: str | Path, kind: str, name: str, *, overwrite: bool, label: str = "option --out") -> None:
    """Make ``path`` ready for a sweep or search (``kind``) named ``name``: resumed when it holds the
    same kind and name, cleared when ``overwrite`` and it holds something else servesim wrote;
    ``OutputError`` otherwise (a file, an unwritable place, a folder holding other entries)."""
    out = Path(path)
    entries = _servesim_entries(out, label)
    if not entries:
        return
    held = _describe(out, entries)
    if held == (kind, name) or held is None:
        return  # the same spec resumes; a sweep killed before its database holds nothing to lose
    if not overwrite:
        raise OutputError(f"{label} {out}: holds {_held_words(held)}; {_overwrite_hint(label)} to replace it, "
                          "or choose another folder")
    try:
        _clear(out, entries)
    except OSError as err:
        raise OutputError(f"{label} {out}: cannot clear it: {err.strerror or err}") from None


def check_writable(out: Path, label: str = "option --out") -> None:
    """``OutputError`` if ``out`` is a file, or if neither it nor its nearest existing parent folder
    can take new entries (found by creating and removing a probe folder, so that it holds for root
    and read-only file systems too)."""
    if out.exists() and not out.is_dir():
        raise OutputError(f"{label} {out}: exists and is not a folder")
    probe_in = out
    while not probe_in.exists():
        parent = probe_in.parent
        if parent == probe_in:
            break
        probe_in = parent
    if probe_in.exists() and not probe_in.is_dir():
        raise OutputError(f"{label} {out}: cannot be created: {probe_in} is not a folder")
    try:
        os.rmdir(tempfile.mkdtemp(prefix=_TMP_MARK, dir=probe_in))
    except OSError as err:
        raise OutputError(f"{label} {out}: cannot write in {probe_in}: {err.strerror or err}") from None


# ---------------------------------------------------------------- helpers


def _entries(out: Path) -> list[Path]:
    """The folder's entries, less temporary folders of writes in progress or interrupted."""
    return sorted(e for e in out.iterdir() if _TMP_MARK not in e.name)


def _refuse_foreign(out: Path, entries: list[Path], known: frozenset[str], label: str) -> None:
    foreign = [e.name for e in entries if e.name not in known]
    if foreign:
        raise OutputError(f"{label} {out}: holds {foreign[0]!r}, which servesim did not write; "
                          "choose another folder (servesim never deletes files it did not write)")


def _describe(out: Path, entries: list[Path]) -> str | tuple[str, str] | None:
    """'run' for a run's folder, (kind, name) for a sweep's or search's, None for report pages alone."""
    names = {e.name for e in entries}
    if "results.duckdb" in names:
        return _sweep_meta(out / "results.duckdb")
    if names & (RUN_FILES - {"report.html", "report.md"}):
        return "run"
    return None


def _sweep_meta(db_path: Path) -> tuple[str, str]:
    """(kind, name) from a sweep database's ``meta`` table; ('?', '?') if it holds none."""
    import duckdb

    try:
        db = duckdb.connect(str(db_path), read_only=True)
    except duckdb.Error as err:
        raise OutputError(f"cannot open {db_path}: {str(err).splitlines()[0]}") from None
    try:
        rows = dict(db.execute("SELECT key, value FROM meta").fetchall())
    except duckdb.Error:
        rows = {}
    finally:
        db.close()
    return str(rows.get("kind", "?")), str(rows.get("name", "?"))


def _held_words(held: str | tuple[str, str] | None) -> str:
    if held == "run":
        return "another run"
    if isinstance(held, tuple):
        return f"the results of {held[0]} {held[1]!r}"
    return "servesim's files of another output"


def _overwrite_hint(label: str) -> str:
    return "pass --overwrite" if label.startswith("option") else "pass overwrite=True"


def _same_run(out: Path, config_text: str) -> bool:
    try:
        return (out / "config.yaml").read_text(encoding="utf-8") == config_text
    except (OSError, UnicodeDecodeError):
        return False


def _clear(out: Path, entries: list[Path]) -> None:
    """Delete ``entries`` of ``out`` (checked to be servesim's)."""
    for entry in entries:
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()


def _move_into_place(tmp: Path, out: Path) -> None:
    """Make ``out`` hold exactly ``tmp``'s files: one rename when ``out`` is missing, else its
    servesim entries cleared and each file moved (checked beforehand: it holds no other entry)."""
    if not out.exists():
        tmp.rename(out)
        return
    _clear(out, _entries(out))
    for entry in sorted(tmp.iterdir()):
        os.replace(entry, out / entry.name)
