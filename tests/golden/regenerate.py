"""Regenerate the golden summary that tests/test_golden.py compares against.

Run it by hand, from any folder, when a change to the simulator is *meant* to
change results (a new step-time model, a scheduler fix, ...)::

    python tests/golden/regenerate.py

It runs ``small_scenario.yaml`` (next to this file) with the real step-time
model and writes its deterministic summary (``servesim.metrics.summary.
deterministic_view``: everything but the host-dependent wall-clock keys) to
``small_scenario.json``.  Review the diff of that file before committing it:
every number that moved should be explained by the intended change.  Do not
run it to make an unexplained failure go away.

``--check`` compares instead of writing, exiting 1 on a difference (the same
comparison as the test: floats to a relative 1e-9, everything else exactly).
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
SCENARIO = HERE / "small_scenario.yaml"
GOLDEN = HERE / "small_scenario.json"
REL_TOL = 1e-9


def golden_summary() -> dict[str, Any]:
    """The deterministic summary of the golden scenario, as the JSON file holds it."""
    import servesim
    from servesim.metrics.summary import deterministic_view

    summary = deterministic_view(servesim.simulate(SCENARIO).summary)
    # Through JSON, so the result compares like what is read back from the file.
    return json.loads(json.dumps(summary, allow_nan=False))


def differences(expected: Any, actual: Any, path: str = "summary") -> list[str]:
    """Every place ``actual`` differs from ``expected``, one line each.

    Floats match within a relative ``REL_TOL``; ints, strings, bools and None
    must be equal and of the same type; dicts must have the same keys and
    lists the same length.
    """
    if isinstance(expected, dict) and isinstance(actual, dict):
        out = []
        for key in sorted(set(expected) | set(actual)):
            if key not in actual:
                out.append(f"{path}.{key}: missing (expected {expected[key]!r})")
            elif key not in expected:
                out.append(f"{path}.{key}: unexpected key (value {actual[key]!r})")
            else:
                out += differences(expected[key], actual[key], f"{path}.{key}")
        return out
    if isinstance(expected, list) and isinstance(actual, list):
        if len(expected) != len(actual):
            return [f"{path}: {len(actual)} items, expected {len(expected)}"]
        return [d for i, (e, a) in enumerate(zip(expected, actual)) for d in differences(e, a, f"{path}[{i}]")]
    if type(expected) is not type(actual):
        return [f"{path}: {actual!r} ({type(actual).__name__}), expected {expected!r} ({type(expected).__name__})"]
    if isinstance(expected, float):
        if not math.isclose(actual, expected, rel_tol=REL_TOL, abs_tol=0.0):
            return [f"{path}: {actual!r}, expected {expected!r} (relative tolerance {REL_TOL})"]
        return []
    if expected != actual:
        return [f"{path}: {actual!r}, expected {expected!r}"]
    return []


def main(argv: list[str]) -> int:
    summary = golden_summary()
    if "--check" in argv:
        diffs = differences(json.loads(GOLDEN.read_text()), summary)
        print("\n".join(diffs) if diffs else "golden summary matches")
        return 1 if diffs else 0
    GOLDEN.write_text(json.dumps(summary, indent=2, sort_keys=True, allow_nan=False) + "\n", encoding="utf-8")
    print(f"wrote {GOLDEN}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
