"""The example specs in examples/sweeps: each parses and expands; the 70B plan search gives a plan."""

from __future__ import annotations

from pathlib import Path

import pytest

from servesim.sweep.axes import base_raw, build_runs
from servesim.sweep.executors import InlineExecutor
from servesim.sweep.search import _check_space, run_search
from servesim.sweep.spec import SearchSpec, SweepSpec, load_spec

EXAMPLES = sorted((Path(__file__).resolve().parents[2] / "examples" / "sweeps").glob("*.yaml"))


def is_search(path: Path) -> bool:
    return "\nspace:" in path.read_text()


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_specs_are_valid(path: Path):
    if is_search(path):
        spec = load_spec(path, SearchSpec)
        _check_space(spec, base_raw(spec.base, path.parent))
    else:
        spec = load_spec(path, SweepSpec)
        assert len(build_runs(spec.axes, spec.base, path.parent)) > 1


def test_the_70b_plan_is_the_cheapest_feasible_plan_on_8_gpus(tmp_path: Path):
    path = next(p for p in EXAMPLES if p.name == "plan-70b-8gpu.yaml")
    spec = load_spec(path, SearchSpec)
    outcome = run_search(spec, path.parent, tmp_path / "out", InlineExecutor(), progress=False)
    assert len(outcome.trials) == 4 * 4 * 8  # the whole grid
    best = outcome.best
    gpus = best.params["cluster.tensor_parallel"] * best.params["cluster.pipeline_parallel"] \
        * best.params["cluster.num_replicas"]
    assert best.feasible and gpus <= 8
    # H100s at 2.49 USD per GPU-hour: the plan's price is its GPU count times that.
    assert best.values["cost_usd_per_hr"] == pytest.approx(gpus * 2.49)
    simulated = [t for t in outcome.trials if t.state == "complete"]
    assert all(t.values["cost_usd_per_hr"] >= best.values["cost_usd_per_hr"] for t in simulated if t.feasible)
    assert all(t.values["num_gpus"] <= 8 for t in simulated)
