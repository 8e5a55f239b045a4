"""The deployment search: the optimum of a small space (brute force), pruning, Pareto flags."""

from __future__ import annotations

import itertools
from pathlib import Path

import duckdb
import pytest

from sweep_scenarios import stored_rows, tiny_base
from servesim.api import simulate
from servesim.config import validate_config
from servesim.errors import ConfigError
from servesim.sweep.axes import configure
from servesim.sweep.executors import InlineExecutor
from servesim.sweep.search import pareto_mask, run_search
from servesim.sweep.spec import SearchSpec, parse_spec
from servesim.sweep.store import flatten_summary

HARDWARE = ["h100", "a100", "l4"]
REPLICAS = [1, 2, 3, 4]
PRICE = {"h100": 2.49, "a100": 1.99, "l4": 0.78}  # USD per GPU-hour, src/servesim/data/hardware.yaml


def base() -> dict:
    return tiny_base(num_requests=120, rate_rps=12.0)


def brute_force() -> dict[tuple[str, int], dict]:
    """Every point of the space simulated: its flattened summary."""
    raw = validate_config(base()).to_dict()
    out = {}
    for hw, n in itertools.product(HARDWARE, REPLICAS):
        config = configure(raw, {"cluster.hardware": hw, "cluster.num_replicas": n})
        out[(hw, n)] = flatten_summary(simulate(config).summary)
    return out


@pytest.fixture(scope="module")
def points():
    return brute_force()


def search_spec(**extra) -> SearchSpec:
    data = {"name": "s", "base": base(),
            "space": {"cluster.hardware": {"choice": HARDWARE}, "cluster.num_replicas": {"int": [1, 4]}}}
    data.update(extra)
    return parse_spec(data, SearchSpec)


def trial_rows(out: Path) -> list[dict]:
    return stored_rows(out, "trials", "trial")


def test_search_finds_the_brute_force_optimum(tmp_path: Path, points):
    ttft, tpot = 0.25, 0.015
    # Brute force: the cheapest (replicas x GPU price per hour) point meeting both p99 targets.
    feasible = {k: n * PRICE[hw] for (hw, n), s in points.items() for k in [(hw, n)]
                if s["ttft_s__p99"] <= ttft and s["tpot_s__p99"] <= tpot}
    want = min(feasible, key=feasible.get)
    cheapest_overall = min(points, key=lambda k: k[1] * PRICE[k[0]])
    assert want != cheapest_overall  # the SLOs matter: the answer is not just the cheapest deployment
    spec = search_spec(constraints=[{"metric": "ttft_s__p99", "max": ttft}, {"metric": "tpot_s__p99", "max": tpot}],
                       objectives=[{"metric": "cost_usd_per_hr"}], trials=36, prune={"capacity": False})
    outcome = run_search(spec, tmp_path, tmp_path / "out", InlineExecutor(), progress=False)
    best = outcome.best
    assert (best.params["cluster.hardware"], best.params["cluster.num_replicas"]) == want
    assert best.values["cost_usd_per_hr"] == pytest.approx(feasible[want])
    rows = trial_rows(tmp_path / "out")
    assert len(rows) == 36
    flagged = {(r["axis__cluster__hardware"], r["axis__cluster__num_replicas"]) for r in rows if r["pareto"]}
    assert flagged == {want}
    for r in rows:  # feasibility as the SLOs say
        if r["state"] == "complete":
            s = points[(r["axis__cluster__hardware"], int(r["axis__cluster__num_replicas"]))]
            assert r["feasible"] == (s["ttft_s__p99"] <= ttft and s["tpot_s__p99"] <= tpot)


def test_pareto_flags_match_the_brute_force_front(tmp_path: Path, points):
    # Two objectives, both minimised: price per hour and p99 TTFT; every point tried (grid).
    spec = search_spec(objectives=[{"metric": "cost_usd_per_hr"}, {"metric": "ttft_s__p99"}],
                       constraints=[{"metric": "tpot_s__p99", "max": 0.1}], sampler={"kind": "grid"},
                       trials=100, prune={"capacity": False})
    outcome = run_search(spec, tmp_path, tmp_path / "out", InlineExecutor(), progress=False)
    assert len(outcome.trials) == 12  # the grid has 3 x 4 points
    feasible = {k: (k[1] * PRICE[k[0]], s["ttft_s__p99"]) for k, s in points.items() if s["tpot_s__p99"] <= 0.1}
    # Brute force: a feasible point is on the front unless another is no worse in both and better in one.
    front = {k for k, (c, t) in feasible.items()
             if not any(c2 <= c and t2 <= t and (c2 < c or t2 < t) for c2, t2 in feasible.values())}
    assert 1 < len(front) < len(feasible)
    rows = trial_rows(tmp_path / "out")
    assert {(r["axis__cluster__hardware"], int(r["axis__cluster__num_replicas"])) for r in rows if r["pareto"]} == front
    assert all(r["feasible"] for r in rows if r["pareto"])


def test_pareto_mask_by_hand():
    # (1, 5) and (2, 2) and (4, 1) trade off; (3, 3) is dominated by (2, 2); (2, 2) twice: both kept.
    points = [[1, 5], [2, 2], [3, 3], [4, 1], [2, 2]]
    assert pareto_mask(points, ["minimize", "minimize"]) == [True, True, False, True, True]
    # Maximising the second objective instead: (1, 5) is cheapest and highest, so it dominates every other.
    assert pareto_mask(points, ["minimize", "maximize"]) == [True, False, False, False, False]


def test_deployments_that_cannot_run_are_pruned_and_recorded(tmp_path: Path):
    # Llama-3-70B: 141 GB of bf16 weights. One L4 (24 GB) or one H100 (80 GB) cannot hold it; 4 H100s can.
    spec = search_spec(space={"cluster.model": {"choice": ["llama-3-70b"]},
                              "cluster.hardware": {"choice": ["l4", "h100"]},
                              "cluster.tensor_parallel": {"choice": [1, 4]}},
                       sampler={"kind": "grid"}, trials=4, prune={"capacity": False, "max_gpus": 2})
    outcome = run_search(spec, tmp_path, tmp_path / "out", InlineExecutor(), progress=False)
    reasons = {(t.params["cluster.hardware"], t.params["cluster.tensor_parallel"]): t.reason for t in outcome.trials}
    assert "does not fit on 1 x l4" in reasons[("l4", 1)] and "does not fit on 1 x h100" in reasons[("h100", 1)]
    assert reasons[("h100", 4)] == "needs 4 GPUs > prune.max_gpus = 2"
    rows = trial_rows(tmp_path / "out")
    assert all(r["pruned"] and not r["feasible"] and r["state"] == "pruned" for r in rows)
    db = duckdb.connect(str(tmp_path / "out/results.duckdb"), read_only=True)
    assert db.execute("SELECT count(*) FROM runs").fetchone() == (0,)  # nothing was simulated
    assert dict(db.execute("SELECT key, value FROM meta").fetchall())["kind"] == "search"
    db.close()


def test_bad_search_specs_name_the_field(tmp_path: Path):
    with pytest.raises(ConfigError, match=r"spec: objectives\.0\.direction = 'min'"):
        search_spec(objectives=[{"metric": "cost_usd_per_hr", "direction": "min"}])
    with pytest.raises(ConfigError, match=r"space\.cluster\.replicas: .*cluster\.replicas: unknown field"):
        run_search(search_spec(space={"cluster.replicas": {"int": [1, 2]}}), tmp_path, tmp_path / "o",
                   InlineExecutor(), progress=False)


def test_trials_run_in_parallel_batches_on_local_processes(tmp_path: Path):
    from servesim.sweep.executors import LocalExecutor

    spec = search_spec(objectives=[{"metric": "cost_usd_per_hr"}], sampler={"kind": "grid"}, trials=12,
                       constraints=[{"metric": "ttft_s__p99", "max": 0.1}], prune={"capacity": False})
    inline = run_search(spec, tmp_path, tmp_path / "inline", InlineExecutor(), progress=False)
    executor = LocalExecutor(2)  # batches of 2 trials, asked together and told together
    try:
        parallel = run_search(spec, tmp_path, tmp_path / "local", executor, progress=False)
    finally:
        executor.close()
    keep = ("trial", "config_hash", "state", "feasible", "pruned", "cost_usd_per_hr", "ttft_s__p99", "pareto")
    assert [{k: r[k] for k in keep} for r in trial_rows(tmp_path / "local")] == \
        [{k: r[k] for k in keep} for r in trial_rows(tmp_path / "inline")]
    assert parallel.best.config_hash == inline.best.config_hash
    # Searching again in the same folder simulates nothing new: every run is in the runs table.
    db = duckdb.connect(str(tmp_path / "inline/results.duckdb"), read_only=True)
    before = db.execute("SELECT config_hash, finished_at FROM runs ORDER BY config_hash").fetchall()
    db.close()
    again = run_search(spec, tmp_path, tmp_path / "inline", InlineExecutor(), progress=False)
    db = duckdb.connect(str(tmp_path / "inline/results.duckdb"), read_only=True)
    assert db.execute("SELECT config_hash, finished_at FROM runs ORDER BY config_hash").fetchall() == before
    db.close()
    assert again.best.config_hash == inline.best.config_hash


def test_space_values_refused_whatever_the_other_fields_stop_the_search_first(tmp_path: Path):
    with pytest.raises(ConfigError, match=r"^space\.cluster\.hardware: unknown hardware 'h10'"):
        run_search(search_spec(space={"cluster.hardware": {"choice": ["h100", "h10"]}}), tmp_path, tmp_path / "o",
                   InlineExecutor(), progress=False)
    with pytest.raises(ConfigError, match=r"^space\.cluster\.num_replicas: config error: cluster\.num_replicas = 0"):
        run_search(search_spec(space={"cluster.num_replicas": {"int": [0, 3]}}), tmp_path, tmp_path / "o",
                   InlineExecutor(), progress=False)
    assert not (tmp_path / "o").exists()


def test_a_misspelt_metric_is_named(tmp_path: Path):
    spec = search_spec(space={"cluster.num_replicas": {"int": [1, 1]}}, trials=1,
                       constraints=[{"metric": "ttft_p99", "max": 1.0}])
    with pytest.raises(ConfigError, match=r"^constraints\.0\.metric = 'ttft_p99': not a metric of the run's summary"):
        run_search(spec, tmp_path, tmp_path / "o", InlineExecutor(), progress=False)


def test_the_report_of_a_real_search_uses_its_objectives_and_best_trial(tmp_path: Path, points):
    from servesim.report.html import write_report

    spec = search_spec(objectives=[{"metric": "cost_usd_per_hr"}, {"metric": "ttft_s__p99"}],
                       constraints=[{"metric": "tpot_s__p99", "max": 0.1}], sampler={"kind": "grid"},
                       trials=100, prune={"capacity": False})
    run_search(spec, tmp_path, tmp_path / "out", InlineExecutor(), progress=False)
    write_report(tmp_path / "out", tmp_path / "report.html")
    page = (tmp_path / "report.html").read_text()
    # The charts pair the spec's objectives, not the trials table's text or axis columns.
    assert "Pareto front: cost_usd_per_hr (USD\\u002fh) vs ttft_s p99 (s)" in page  # (plotly's JSON escapes '/')
    assert "Pareto front: state" not in page and "No feasible trial" not in page
    # The best feasible deployment is the cheapest feasible point (first objective), by brute force.
    feasible = {k: k[1] * PRICE[k[0]] for k, s in points.items() if s["tpot_s__p99"] <= 0.1}
    hw, n = min(feasible, key=lambda k: (feasible[k], points[k]["ttft_s__p99"]))
    markdown = (tmp_path / "report.md").read_text()
    assert f"{feasible[(hw, n)]:.4f}" in markdown


def test_a_misspelt_objective_is_refused_before_any_trial_runs(tmp_path: Path):
    class NoTrials(InlineExecutor):
        def run_unordered(self, tasks):  # noqa: ANN001, ANN202
            raise AssertionError("a trial ran before the spec's metrics were checked")

    spec = search_spec(space={"cluster.num_replicas": {"int": [1, 2]}}, trials=2,
                       objectives=[{"metric": "ttft_s__p999"}])
    with pytest.raises(ConfigError, match=r"^objectives\.0\.metric = 'ttft_s__p999'"):
        run_search(spec, tmp_path, tmp_path / "o", NoTrials(), progress=False)
    assert not (tmp_path / "o").exists()
