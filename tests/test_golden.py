"""The golden end-to-end run: a small fixed scenario with the real step-time model.

When this fails after a change that is *meant* to move results, regenerate
the golden file and review its diff::

    python tests/golden/regenerate.py
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

GOLDEN_DIR = Path(__file__).resolve().parent / "golden"


def _load_regenerate():
    spec = importlib.util.spec_from_file_location("servesim_golden_regenerate", GOLDEN_DIR / "regenerate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


regen = _load_regenerate()


def test_golden_summary_matches():
    expected = json.loads(regen.GOLDEN.read_text())
    actual = regen.golden_summary()
    diffs = regen.differences(expected, actual)
    assert not diffs, (
        "the golden scenario's summary changed; if intended, run `python tests/golden/regenerate.py` "
        "and review the diff:\n" + "\n".join(diffs[:40])
    )


def test_golden_scenario_is_what_the_file_says():
    # Guards against a silently emptied or trivial golden file.
    expected = json.loads(regen.GOLDEN.read_text())
    assert expected["num_requests"] == 300
    assert expected["num_replicas"] == 2
    assert expected["num_finished"] + expected["num_rejected"] + expected["num_in_flight"] == 300
    assert expected["ttft_s"]["count"] == expected["num_finished"]
    assert "wall_time_s" not in expected and "simulated_requests_per_wall_s" not in expected
    assert expected["slo"]["targets"] == {"ttft_s": 0.05, "tpot_s": 0.009, "e2e_s": None}


def test_comparison_tolerances():
    diff = regen.differences
    assert diff({"a": 1.0}, {"a": 1.0 + 1e-12}) == []
    assert diff({"a": 1.0}, {"a": 1.0 + 1e-8}) != []
    assert diff({"a": 0.0}, {"a": 0.0}) == []
    assert diff({"a": 0.0}, {"a": 1e-300}) != []
    assert diff({"a": 3}, {"a": 3}) == []
    assert diff({"a": 3}, {"a": 4}) != []
    assert diff({"a": 3}, {"a": 3.0}) != []  # an int must stay an int
    assert diff({"a": None}, {"a": 0.0}) != []
    assert diff({"a": "x"}, {"a": "y"}) != []
    assert diff({"a": 1}, {}) == ["summary.a: missing (expected 1)"]
    assert diff({}, {"b": 1}) == ["summary.b: unexpected key (value 1)"]
    assert diff({"l": [1.0, 2.0]}, {"l": [1.0]}) != []
    assert diff({"l": [1.0, 2.0]}, {"l": [1.0, 2.5]}) == ["summary.l[1]: 2.5, expected 2.0 (relative tolerance 1e-09)"]
