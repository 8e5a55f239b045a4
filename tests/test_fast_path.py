"""The correctness guard of the fast path: every example scenario, shortened,
gives identical per-request results and time series with the fast path on
(lockstep decode group, decode stretches) and off (plain iteration by iteration)."""

from pathlib import Path

import numpy as np
import pytest

import servesim
from servesim.config import load_config
from stress_scenarios import KV_PRESSURE

EXAMPLES = sorted((Path(__file__).resolve().parents[1] / "examples").glob("*.yaml"))


def _shortened(path: Path, fast: bool):
    cfg = load_config(path, [f"engine.fast_path={str(fast).lower()}"])
    size = {"trace": "workload.max_requests=400", "agent": "workload.num_programs=40",
            "shared_prefix": None}.get(cfg.workload.kind, "workload.num_requests=400")  # (stages set its size)
    return load_config(path, [f"engine.fast_path={str(fast).lower()}"] + ([size] if size else []))


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_fast_path_matches_the_reference(path):
    fast = servesim.simulate(_shortened(path, True))
    slow = servesim.simulate(_shortened(path, False))
    for name, col in fast.requests.columns().items():
        np.testing.assert_array_equal(col, slow.requests.columns()[name], err_msg=name)
    for name, col in fast.timeseries.columns().items():
        np.testing.assert_array_equal(col, slow.timeseries.columns()[name], err_msg=name)
    assert fast.info.num_steps == slow.info.num_steps


def test_fast_path_matches_under_kv_pressure_and_preemption():
    base = KV_PRESSURE
    fast = servesim.simulate({**base, "engine": {"fast_path": True}})
    slow = servesim.simulate({**base, "engine": {"fast_path": False}})
    assert fast.summary["num_preemptions"] > 0  # the case really exercises preemption
    for name, col in fast.requests.columns().items():
        np.testing.assert_array_equal(col, slow.requests.columns()[name], err_msg=name)
