"""Every file of the malformed-input corpus (tests/fuzz/corpus/<kind>/) ends in one ``error:`` line.

Each file goes through the command that reads its kind, in this interpreter (``servesim.cli.main``
with ``SystemExit``): scenarios through ``run``, traces through ``run`` of a tiny scenario pointing at
them (``on_bad_row: error``), steps CSVs through ``validate``, benchmark CSVs through
``predict-bench``, sweep specs through ``sweep``.  A file passes when the command exits 2, stderr is
exactly one line starting with ``error: ``, nothing says "Traceback", and the ``--out``/``-o`` path
was not created.  A few files, one per kind, also go through a real ``python -m servesim``.

``ACCEPTED`` lists files that document a rule by being accepted (exit 0, no traceback).  ``BUGS``
lists files that show a known bug: they are strict xfails, so fixing the bug turns them into
failures that ask to move the file out of ``BUGS``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from servesim.cli import main

CORPUS = Path(__file__).parent / "corpus"
KINDS = ("scenarios", "traces", "steps", "bench", "sweeps")
TIME_LIMIT_S = 60

# Files that are accepted on purpose: name -> the rule they document.
ACCEPTED = {
    "scenarios/empty-file.yaml": "an empty scenario file is the default scenario (every section is optional)",
    "scenarios/only-comment.yaml": "a file with only comments is the default scenario",
    "scenarios/huge-seed.yaml": "any seed >= 0 is valid, however large",
    "sweeps/name-with-slash.yaml": "with --out given, the spec name does not pick a folder",
    "traces/mooncake-hash-ids-huge.jsonl": "hash ids are opaque: any integer >= 0",
}
# Runs of these accepted files are made tiny with --set (the default scenario is 19,366 requests).
TINY_SETS = {
    "scenarios/empty-file.yaml": ["--set", "workload.max_requests=5"],
    "scenarios/only-comment.yaml": ["--set", "workload.max_requests=5"],
}

# Runs that end but serve nothing: the summary and files are written, then one error line, exit 3.
SERVED_NOTHING = {
    "scenarios/prompt-exceeds-context.yaml": "every request rejected (prompt > context)",
}
# Known bugs (tests/fuzz report, issue 15): name -> what goes wrong.  None open.
BUGS: dict[str, str] = {}
# One file per kind also runs through a real interpreter (the __main__ path, real stderr).
SUBPROCESS_SAMPLE = (
    "scenarios/non-utf8-latin1.yaml",
    "traces/azure2023-negative-tokens.csv",
    "steps/bad-kind.csv",
    "bench/both-loads.csv",
    "sweeps/zip-unequal-lengths.yaml",
)


def corpus_files() -> list[str]:
    names = []
    for kind in KINDS:
        names += sorted(f"{kind}/{p.name}" for p in (CORPUS / kind).iterdir() if p.is_file() and p.name != "README.md")
    return names


def _param(name: str):
    marks = [pytest.mark.xfail(strict=True, reason=BUGS[name])] if name in BUGS else []
    return pytest.param(name, id=name, marks=marks)


def command(name: str, tmp: Path) -> tuple[list[str], Path]:
    """The CLI arguments that read corpus file ``name``, and the output path they name."""
    kind = name.split("/")[0]
    path = CORPUS / name
    out = tmp / "out"
    if kind == "scenarios":
        return ["run", str(path), "--out", str(out), "--no-progress", *TINY_SETS.get(name, [])], out
    if kind == "traces":
        scenario = tmp / "scenario.yaml"
        workload = {"kind": "trace", "path": str(path), "on_bad_row": "error", "max_requests": 20}
        scenario.write_text(f"name: fuzz-trace\nworkload: {json.dumps(workload)}\n", encoding="utf-8")
        return ["run", str(scenario), "--out", str(out), "--no-progress"], out
    if kind == "steps":
        return ["validate", str(path), "--hardware", "h100", "--out", str(out)], out
    if kind == "bench":
        return ["predict-bench", str(path), "-o", str(out), "--jobs", "1"], out
    return ["sweep", str(path), "--out", str(out), "--workers", "0", "--no-progress"], out


class _TimeUp(BaseException):
    """Raised by the alarm; a BaseException so that main() does not report it as a user error."""


def run_in_process(args: list[str], capsys) -> tuple[int, str, str]:
    def alarm(signum, frame):
        raise _TimeUp(f"servesim {' '.join(args)} ran past {TIME_LIMIT_S} s")

    previous = signal.signal(signal.SIGALRM, alarm)
    signal.alarm(TIME_LIMIT_S)
    try:
        main(args)
        code = 0
    except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def assert_clean_error(code: int, out: str, err: str, out_path: Path) -> None:
    assert "Traceback" not in err + out, err
    assert code == 2, (code, out[-500:], err[-500:])
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and lines[0][len("error: "):].strip(), err
    assert not out_path.exists(), f"{out_path} left behind"


def test_corpus_is_large_and_documented():
    names = corpus_files()
    assert len(names) >= 100
    for kind in KINDS:
        assert any(n.startswith(kind + "/") for n in names), kind
        assert (CORPUS / kind / "README.md").is_file(), kind
    for name in [*ACCEPTED, *BUGS, *SUBPROCESS_SAMPLE]:
        assert (CORPUS / name).is_file(), name


@pytest.mark.parametrize("name", [_param(n) for n in corpus_files()])
def test_corpus_file(name, tmp_path, capsys):
    args, out_path = command(name, tmp_path)
    code, out, err = run_in_process(args, capsys)
    if name in ACCEPTED:
        assert code == 0 and "Traceback" not in err, (ACCEPTED[name], code, err[-500:])
        return
    if name in SERVED_NOTHING:
        lines = err.strip().splitlines()
        assert code == 3 and "Traceback" not in out + err, (SERVED_NOTHING[name], code, err[-500:])
        assert lines and lines[-1].startswith("error: every request was rejected")
        return
    assert_clean_error(code, out, err, out_path)


@pytest.mark.parametrize("name", SUBPROCESS_SAMPLE)
def test_corpus_sample_in_a_subprocess(name, tmp_path):
    args, out_path = command(name, tmp_path)
    proc = subprocess.run(
        [sys.executable, "-m", "servesim", *args],
        capture_output=True,
        text=True,
        timeout=TIME_LIMIT_S,
        env={**os.environ, "COLUMNS": "200", "NO_COLOR": "1"},
    )
    assert_clean_error(proc.returncode, proc.stdout, proc.stderr, out_path)
    assert proc.stdout == ""
