"""``servesim report`` of a sweep and a search folder in the issue-8 contract's schema (tests/report_fixtures.py)."""

from __future__ import annotations

import re

import pytest
from report_fixtures import BEST_HASH, PARETO_HASHES, RUNS, TRIALS, make_search, make_sweep

from servesim.errors import ConfigError
from servesim.report.html import write_report


def _rows(page: str, section: str) -> list[str]:
    """The <tr> rows of the first table after the <h2> ``section``."""
    start = page.index(f"<h2>{section}</h2>")
    table = page[start:page.index("</table>", start)]
    return re.findall(r"<tr(?: class='(\w*)')?>(.*?)</tr>", table)


def test_sweep_report_lists_every_run_and_the_failed_one(tmp_path):
    html_path, md_path = write_report(make_sweep(tmp_path / "sweep"))
    page, text = html_path.read_text(), md_path.read_text()
    runs = _rows(page, "Runs")[1:]  # after the header row
    assert [re.search(r"<td>(\w+)</td>", cells)[1] for _, cells in runs] == [r[0] for r in RUNS]
    assert [cls for cls, _ in runs] == ["failed" if r[1] == "failed" else "" for r in RUNS]
    failed = _rows(page, "Failed runs")[1:]
    assert len(failed) == 1
    assert "a1b2c3d4e5f60006" in failed[0][1] and "DeploymentError: llama-3-70b does not fit" in failed[0][1]
    assert "6 runs: 5 done, 1 failed." in text
    for h, status, *_ in RUNS:
        assert f"| {h} | {status} |" in text
    failed_md = text[text.index("## Failed runs"):]
    assert "| a1b2c3d4e5f60006 | 4 | a100 | DeploymentError: llama-3-70b does not fit |" in failed_md
    assert 'id="chart-throughput-latency"' in page and 'id="chart-axis-cluster-num-replicas"' in page
    assert "Best feasible deployment" not in page  # a sweep, not a search


@pytest.mark.parametrize("with_pareto_column", [True, False])
def test_search_report_flags_the_pareto_points(tmp_path, with_pareto_column):
    # Without the column the report computes the front: trials 1, 2, 4 (feasible, none dominated:
    # (4.98, 0.3), (9.96, 0.12), (3.58, 0.7)); 0 and 3 are infeasible, 5 pruned.
    html_path, md_path = write_report(make_search(tmp_path / "search", with_pareto_column))
    page, text = html_path.read_text(), md_path.read_text()
    trials = _rows(page, "Trials")[1:]
    flagged = {re.findall(r"<td>([^<]*)</td>", cells)[1] for cls, cells in trials if cls == "pareto"}
    assert flagged == PARETO_HASHES
    for trial, h, *_ in TRIALS:
        line = next(x for x in text.splitlines() if x.startswith(f"| {trial} | {h} |"))
        assert line.endswith("| yes |") == (h in PARETO_HASHES)
    best = text[text.index("## Best feasible deployment"):text.index("## Trials")]
    assert f"| config_hash | {BEST_HASH} |" in best and "| cluster.hardware | a100 |" in best
    assert 'id="chart-pareto-0"' in page
    unescaped = page.replace("\\u002f", "/").replace("\\/", "/")  # plotly escapes '/' in figure JSON
    assert "Pareto front: cost_usd_per_hr (USD/h) vs ttft_s p99 (s)" in unescaped


def test_search_without_a_feasible_trial(tmp_path):
    import duckdb

    out = make_search(tmp_path / "search")
    db = duckdb.connect(str(out / "results.duckdb"))
    db.execute("UPDATE trials SET feasible = false, pareto = false")
    db.close()
    _, md_path = write_report(out)
    assert "## Best feasible deployment\n\nNo feasible trial." in md_path.read_text()


def test_database_without_runs_table_is_a_one_line_error(tmp_path):
    import duckdb

    (tmp_path / "x").mkdir()
    duckdb.connect(str(tmp_path / "x" / "results.duckdb")).close()
    with pytest.raises(ConfigError, match=r"^report PATH .*: results.duckdb has no table 'runs'$"):
        write_report(tmp_path / "x")
    (tmp_path / "y").mkdir()
    (tmp_path / "y" / "results.duckdb").write_text("not a database")
    with pytest.raises(ConfigError, match=r"^report PATH .*: cannot open results.duckdb: "):
        write_report(tmp_path / "y")


def test_the_pareto_column_is_taken_as_written(tmp_path):
    # The search's own flags win over the report's computation (here they disagree on purpose).
    import duckdb

    out = make_search(tmp_path / "search")
    db = duckdb.connect(str(out / "results.duckdb"))
    db.execute("UPDATE trials SET pareto = (trial = 2)")
    db.close()
    text = write_report(out)[1].read_text()
    flagged = [line.split(" | ")[1] for line in text.splitlines() if line.startswith("| ") and line.endswith("| yes |")]
    assert flagged == ["a1b2c3d4e5f60003"]
