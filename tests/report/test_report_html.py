"""``servesim report`` of a run: one self-contained HTML file, its markdown summary, missing files, bad paths."""

from __future__ import annotations

import json
import math
import re
import shutil
import subprocess
import sys

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from report_fixtures import RUN_SCENARIO as SCENARIO

import servesim
from servesim.errors import ConfigError
from servesim.report.html import write_report

NAN = math.nan
RUN_TITLES = (
    "Latency CDFs (", "Arrivals and completions (requests/s", "Queue and running batch (sum over 2 replicas)",
    "KV-cache usage (% of blocks)", "SLO attainment (% of all requests)", "Cost and energy breakdown",
)


def in_figure_json(text: str, page: str) -> bool:
    """Whether ``text`` is in the page's figure JSON, where plotly escapes '/' (as \\u002f or \\/)."""
    return text in page.replace("\\u002f", "/").replace("\\/", "/")


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    servesim.simulate(SCENARIO).write(out)
    return out


@pytest.fixture
def run_copy(run_dir, tmp_path):
    return shutil.copytree(run_dir, tmp_path / "run")


def test_report_is_one_self_contained_html_file(run_copy, tmp_path):
    from plotly.offline import get_plotlyjs

    html_path, md_path = write_report(run_copy, tmp_path / "out" / "r.html")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["r.html", "r.md"]
    page = html_path.read_text(encoding="utf-8")
    bundle = get_plotlyjs()
    assert page.count(bundle) == 1  # plotly.js inlined once
    assert not re.search(r"<script[^>]+src=", page)  # nothing fetched: works offline
    assert "<link" not in page
    for title in RUN_TITLES:
        assert in_figure_json(title, page), title
    for key in ("chart-latency-cdf", "chart-arrivals", "chart-queue", "chart-kv", "chart-slo", "chart-cost-energy"):
        assert f'id="{key}"' in page
    # The CDFs are of finished requests only, as the summary's percentiles.
    summary = json.loads((run_copy / "summary.json").read_text())
    assert in_figure_json(f"Latency CDFs ({summary['num_finished']:,} finished requests)", page)


def test_default_output_goes_into_the_run_folder(run_copy):
    html_path, md_path = write_report(run_copy)
    assert html_path == run_copy / "report.html" and md_path == run_copy / "report.md"
    assert html_path.is_file() and md_path.is_file()


def _md_table(text: str, heading_line: str) -> dict[str, list[str]]:
    """Rows of the first markdown table after ``heading_line``: first cell -> the other cells."""
    lines = text.splitlines()[text.splitlines().index(heading_line) + 1:]
    rows = {}
    for line in lines:
        if line.startswith("|") and not line.startswith("|---"):
            cells = [c.strip() for c in line.strip("|").split("|")]
            rows[cells[0]] = cells[1:]
        elif rows and not line.startswith("|"):
            break
    return rows


def _num(cell: str) -> float:
    return float(cell.replace(",", "").replace("$", "").rstrip("%"))


def test_markdown_numbers_equal_summary_json(run_copy):
    _, md_path = write_report(run_copy)
    text = md_path.read_text()
    summary = json.loads((run_copy / "summary.json").read_text())
    latency = _md_table(text, "## Latency")
    # Columns n, mean, p50, p90, p99, max; TTFT and TPOT in ms (2 decimals), E2E in s (3 decimals).
    for label, key, scale, tol in (("TTFT (ms)", "ttft_s", 1e3, 0.005), ("TPOT (ms)", "tpot_s", 1e3, 0.005),
                                   ("E2E (s)", "e2e_s", 1.0, 0.0005), ("Queue delay (ms)", "queue_delay_s", 1e3, 0.005)):
        cells = latency[label]
        assert int(cells[0].replace(",", "")) == summary[key]["count"]
        for cell, stat in zip(cells[1:], ("mean", "p50", "p90", "p99", "max")):
            assert _num(cell) == pytest.approx(summary[key][stat] * scale, abs=tol), (label, stat)
    head = _md_table(text, f"# servesim run: {SCENARIO['name']}")
    requests = re.findall(r"[\d,]+", head["Requests (finished / rejected / in flight)"][0])
    assert [int(x.replace(",", "")) for x in requests] == [
        summary["num_requests"], summary["num_finished"], summary["num_rejected"], summary["num_in_flight"]]
    attainment = re.match(r"([\d.]+)% \(goodput ([\d.]+) req/s\)", head["SLO attainment"][0])
    assert float(attainment[1]) == pytest.approx(100 * summary["slo"]["attainment"], abs=0.005)
    assert float(attainment[2]) == pytest.approx(summary["slo"]["goodput_rps"], abs=0.005)
    cost = re.match(r"\$([\d.]+) \(([\d.]+) GPU-h", head["Cost"][0])
    assert float(cost[1]) == pytest.approx(summary["cost"]["usd"], rel=5e-4)  # 4 significant digits below $1
    assert float(cost[2]) == pytest.approx(summary["cost"]["gpu_hours"], abs=5e-4)
    energy = re.match(r"([\d.]+) kWh \(([\d.]+) J per output token", head["Energy"][0])
    assert float(energy[1]) == pytest.approx(summary["energy_j"] / 3.6e6, abs=5e-5)
    assert float(energy[2]) == pytest.approx(summary["energy_per_token_j"], abs=5e-5)


def test_missing_optional_files_leave_their_charts_out(run_copy):
    for name in ("requests.parquet", "timeseries.parquet", "config.yaml"):
        (run_copy / name).unlink()
    html_path, md_path = write_report(run_copy)
    page = html_path.read_text()
    assert 'id="chart-cost-energy"' in page  # from summary.json alone
    for key in ("chart-latency-cdf", "chart-arrivals", "chart-queue", "chart-kv", "chart-slo", "chart-replicas"):
        assert f'id="{key}"' not in page
    assert "Not in this run: kvcache_timeseries.parquet, fleet_timeseries.parquet" in md_path.read_text()
    assert "Read: summary.json." in md_path.read_text()


def test_fleet_power_and_prefix_cache_tables_get_their_charts(run_copy):
    pq.write_table(pa.table({"time_s": [0.0, 5.0, 9.0], "active": [2, 3, 2], "starting": [0, 1, 0],
                             "draining": [0, 0, 1], "down": [0, 0, 0]}), run_copy / "fleet_timeseries.parquet")
    pq.write_table(pa.table({"time_s": [0.0, 1.0], "row_power_w": [9000.0, 11000.0], "share_of_budget": [0.9, 1.1],
                             "cap_level": np.array([0, 1])}), run_copy / "power_timeseries.parquet")
    pq.write_table(pa.table({"program": ["a", "b", "c"], "calls": [2, 3, 1], "calls_finished": [2, 3, 0],
                             "start_s": [0.0, 1.0, 2.0], "end_s": [5.0, 4.0, NAN], "completed": [True, True, False],
                             "jct_s": [5.0, 3.0, NAN]}), run_copy / "programs.parquet")
    pq.write_table(pa.table({"time_s": [0.0, 1.0], "replica": [0, 1], "looked_up_blocks": [4, 6],
                             "hit_blocks": [1, 3], "bytes_loaded": [0.0, 0.0], "load_stall_s": [0.0, 0.0]}),
                   run_copy / "kvcache_timeseries.parquet")
    page = write_report(run_copy)[0].read_text()
    for title in ("Replicas by state (stacked)", "Row power (kW) and capping", "Prefix-cache hit rate (cumulative, %)",
                  "Agent programs: job completion time CDF (2 of 3 completed)"):
        assert in_figure_json(title, page), title


def test_bad_paths_are_one_line_errors(tmp_path):
    with pytest.raises(ConfigError, match=r"^report PATH .*nowhere: no such file or folder$"):
        write_report(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match=r"holds neither summary.json .* nor results.duckdb"):
        write_report(tmp_path / "empty")
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(ConfigError, match="not a folder"):
        write_report(tmp_path / "file.txt")
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "summary.json").write_text("{not json")
    with pytest.raises(ConfigError, match="cannot read summary.json"):
        write_report(bad)


def test_out_must_be_html(run_copy, tmp_path):
    with pytest.raises(ConfigError, match=r"^option --out .*r\.png: must name an \.html file$"):
        write_report(run_copy, tmp_path / "r.png")


def test_cli_report_and_its_error_line(run_copy, tmp_path):
    ok = subprocess.run([sys.executable, "-m", "servesim", "report", str(run_copy), "--out", str(tmp_path / "x.html")],
                        capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.strip() == f"report written to {tmp_path / 'x.html'} (summary: {tmp_path / 'x.md'})"
    bad = subprocess.run([sys.executable, "-m", "servesim", "report", str(tmp_path / "missing")],
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and bad.stdout == ""
    assert bad.stderr == f"error: report PATH {tmp_path / 'missing'}: no such file or folder\n"


def test_plain_run_does_not_import_plotly_or_duckdb(tmp_path):
    import yaml

    scenario = tmp_path / "s.yaml"
    scenario.write_text(yaml.safe_dump({**SCENARIO, "workload": {**SCENARIO["workload"], "num_requests": 5}}))
    code = (
        "import sys\n"
        "from servesim.cli import main\n"
        "try:\n"
        f"    main(['run', {str(scenario)!r}, '--out', {str(tmp_path / 'out')!r}])\n"
        "except SystemExit as e:\n"
        "    assert not e.code, e.code\n"
        "print('plotly' in sys.modules, 'duckdb' in sys.modules, file=sys.stderr)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "Latency (ms)" in proc.stdout  # the run still prints its summary table
    assert proc.stderr.strip().splitlines()[-1] == "False False"
