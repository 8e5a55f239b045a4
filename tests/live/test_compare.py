"""``servesim compare`` on two hand-made folders: numbers and errors computed by hand, the exit
status 4 gate, one-line refusals (exit 2), and the report's comparison section."""

from __future__ import annotations

import json
import math

import numpy as np
import pyarrow as pa
import pytest
import yaml
from typer.testing import CliRunner

from cli_errors import one_line
from servesim.cli import main
from servesim.cli.app import app
from servesim.live.compare import METRICS, compare_folders
from servesim.metrics.records import FAILED, FINISHED, RequestTable
from servesim.report.files import requests_arrow, write_parquet

NAN = math.nan
# Four requests arriving at 0, 1, 2, 3 s.  The simulation finishes all four; the replay's last one
# times out after one token.
SIM = dict(first_token_s=[0.1, 1.2, 2.1, 3.3], finish_s=[1.1, 1.6, 2.9, 3.5], tokens=[5, 5, 5, 2],
           status=[FINISHED] * 4, reason=[""] * 4)
REAL = dict(first_token_s=[0.2, 1.1, 2.2, 3.2], finish_s=[0.6, 1.9, 2.6, NAN], tokens=[5, 5, 5, 1],
            status=[FINISHED, FINISHED, FINISHED, FAILED], reason=["", "", "", "timeout"])


def write_folder(path, side, *, replay=None, arrival=(0.0, 1.0, 2.0, 3.0), prompt=(10, 20, 30, 40), kind="trace"):
    """A run's folder (``replay``: the summary's replay section, making it a replay's)."""
    n = len(arrival)
    table = RequestTable(
        request_id=np.arange(n), arrival_s=arrival, prompt_tokens=prompt, output_tokens=[5, 5, 5, 2][:n],
        tokens_generated=side["tokens"][:n], replica=[-1 if replay else 0] * n, status=side["status"][:n],
        reject_reason=np.array(side["reason"][:n], dtype=object), first_scheduled_s=[NAN] * n,
        first_token_s=side["first_token_s"][:n], finish_s=side["finish_s"][:n], max_itl_s=[NAN] * n,
        num_preemptions=[0] * n)
    path.mkdir()
    arrow = requests_arrow(table)
    if replay is not None:
        arrow = arrow.append_column("sent_s", pa.array(np.asarray(arrival, np.float64)))
    write_parquet(path / "requests.parquet", arrow)
    summary = {"num_requests": n, "slo": {"targets": {}}}
    if replay is not None:
        summary["replay"] = replay
    (path / "summary.json").write_text(json.dumps(summary))
    (path / "config.yaml").write_text(yaml.safe_dump({"name": path.name, "workload": {"kind": kind}}))
    return path


@pytest.fixture
def folders(tmp_path):
    sim = write_folder(tmp_path / "sim", SIM)
    real = write_folder(tmp_path / "real", REAL, replay={"time_scale": 1.0, "closed_loop": False})
    return sim, real


def test_metrics_and_errors_by_hand(folders):
    c = compare_folders(*folders)
    v = c.values
    expected = {
        # finished requests only: the replay's TTFTs are 0.2, 0.1, 0.2
        "ttft_mean": (0.175, 0.5 / 3), "ttft_p50": (0.15, 0.2), "ttft_p90": (0.27, 0.2),
        # TPOT = (finish - first token) / (tokens - 1): sim 1.0/4, 0.4/4, 0.8/4, 0.2/1; real 0.4/4, 0.8/4, 0.4/4
        "tpot_mean": (0.75 / 4, 0.4 / 3),
        "e2e_mean": (3.1 / 4, 2.1 / 3), "e2e_p50": (0.75, 0.6),
        # spans: 3.5 s (sim) and 2.6 s (real: its last finish)
        "requests_per_s": (4 / 3.5, 3 / 2.6), "output_tokens_per_s": (17 / 3.5, 15 / 2.6),
        # in system over [0, 3.5]: stays sum to 3.1 s (sim) and 2.1 s (real); sim's first two overlap in [1, 1.1]
        "in_system_mean": (3.1 / 3.5, 2.1 / 3.5), "in_system_peak": (2.0, 1.0),
        "num_finished": (4.0, 3.0), "num_failed": (0.0, 1.0),
    }
    for name, (sim, real) in expected.items():
        assert v[name][0] == pytest.approx(sim) and v[name][1] == pytest.approx(real), name
        assert v[name][2] == pytest.approx(100 * (sim - real) / real), name
    assert v["ttft_mean"][2] == pytest.approx(5.0) and v["tpot_mean"][2] == pytest.approx(40.625)
    assert v["e2e_mean"][2] == pytest.approx(75 / 7) and v["requests_per_s"][2] == pytest.approx(-100 / 105)
    assert v["in_system_peak"][2] == pytest.approx(100.0) and v["num_failed"][2] == pytest.approx(-100.0)
    # The common grid: 200 instants over [0, 3.5]; at 1.05 s the simulation holds 2 requests, the replay 1.
    assert len(c.grid_s) == 200 and c.grid_s[-1] == 3.5
    at = np.searchsorted(c.grid_s, 1.05)
    assert (c.sim_in_system[at], c.real_in_system[at]) == (2.0, 1.0)


def test_json_output(folders):
    result = CliRunner().invoke(app, ["compare", *map(str, folders), "--json"], catch_exceptions=False)
    data = json.loads(result.output)
    assert result.exit_code == 0 and set(data) == {"sim", "replay", "time_scale", "metrics", "in_system"}
    assert data["metrics"]["tpot_mean"]["error_pct"] == pytest.approx(40.625)
    assert data["in_system"]["grid_points"] == 200 and data["in_system"]["end_s"] == 3.5


def test_table_output(folders):
    result = CliRunner().invoke(app, ["compare", *map(str, folders)], catch_exceptions=False)
    assert result.exit_code == 0
    row = next(line for line in result.output.splitlines() if "TPOT mean (ms)" in line)
    assert "187.50" in row and "133.33" in row and "+40.6" in row  # 40.625% give or take a rounding


def test_gate_exits_4_naming_the_metrics_over_the_limit(folders, capsys):
    sim, real = map(str, folders)
    with pytest.raises(SystemExit) as info:
        main(["compare", sim, real, "--max-error-pct", "20"])
    err = capsys.readouterr().err
    assert info.value.code == 4
    [line] = err.splitlines()
    assert line.startswith("over the limit: tpot_mean: error +40.6") and line.endswith(
        "% exceeds 20% (sim 0.1875, real 0.133333)"), line
    with pytest.raises(SystemExit) as info:
        main(["compare", sim, real, "--max-error-pct", "4", "--metrics", "ttft_mean,num_finished"])
    assert info.value.code == 4
    named = [line.split(":")[1].strip() for line in capsys.readouterr().err.splitlines()]
    assert named == ["ttft_mean", "num_finished"]
    with pytest.raises(SystemExit) as info:
        main(["compare", sim, real, "--max-error-pct", "50"])
    assert info.value.code == 0


def test_refusals_exit_2_in_one_line(folders, tmp_path, capsys):
    sim, real = folders
    replay = {"time_scale": 1.0, "closed_loop": False}
    assert one_line(capsys, "compare", str(sim), str(sim)) == (
        f"error: REPLAY_DIR {sim}: not a replay (its summary.json has no 'replay' section; "
        "`servesim replay --out DIR` writes one)")
    (tmp_path / "empty").mkdir()
    assert one_line(capsys, "compare", str(tmp_path / "empty"), str(real)) == (
        f"error: SIM_DIR {tmp_path / 'empty'}: not a run's or replay's folder (no summary.json or requests.parquet)")
    assert one_line(capsys, "compare", str(tmp_path / "nope"), str(real)) == (
        f"error: SIM_DIR {tmp_path / 'nope'}: no such folder")
    fewer = write_folder(tmp_path / "fewer", REAL, replay=replay, arrival=(0.0, 1.0, 2.0), prompt=(10, 20, 30))
    assert one_line(capsys, "compare", str(sim), str(fewer)) == (
        f"error: SIM_DIR {sim} and REPLAY_DIR {fewer} hold different workloads: 4 and 3 requests")
    longer = write_folder(tmp_path / "longer", REAL, replay=replay, prompt=(10, 20, 31, 40))
    assert one_line(capsys, "compare", str(sim), str(longer)) == (
        f"error: SIM_DIR {sim} and REPLAY_DIR {longer} hold different workloads: request 2 has 30 prompt tokens in "
        "SIM_DIR, 31 in REPLAY_DIR")
    later = write_folder(tmp_path / "later", REAL, replay=replay, arrival=(0.0, 1.0, 2.5, 3.0))
    assert one_line(capsys, "compare", str(sim), str(later)) == (
        f"error: SIM_DIR {sim} and REPLAY_DIR {later} hold different workloads: request 2 arrives at 2.000000 s in "
        "SIM_DIR, 2.500000 s in REPLAY_DIR")
    assert one_line(capsys, "compare", str(sim), str(real), "--max-error-pct", "5", "--metrics", "ttft") == (
        "error: option --metrics ttft: unknown metric 'ttft'; choose from " + ", ".join(METRICS))
    assert one_line(capsys, "compare", str(sim), str(real), "--metrics", "ttft_mean").startswith(
        "error: option --metrics: names what --max-error-pct checks")


def test_a_replay_at_another_time_scale_is_refused(folders, tmp_path, capsys):
    sim, _ = folders
    fast = write_folder(tmp_path / "fast", REAL, replay={"time_scale": 2.0, "closed_loop": False},
                        arrival=(0.0, 0.5, 1.0, 1.5))
    line = one_line(capsys, "compare", str(sim), str(fast))
    assert line.startswith(f"error: SIM_DIR {sim} and REPLAY_DIR {fast}: the replay ran at --time-scale 2 and SIM_DIR "
                           "at 1, so their arrivals differ by that factor; compare a replay at --time-scale 1")
    # The same pair is fine when the simulation ran the load the replay sent (arrivals / 2).
    scaled = write_folder(tmp_path / "scaled", SIM, arrival=(0.0, 0.5, 1.0, 1.5))
    assert compare_folders(scaled, fast).real.time_scale == 2.0


def test_closed_loops_skip_the_arrival_check(folders, tmp_path):
    sim, _ = folders
    loop = write_folder(tmp_path / "loop", REAL, replay={"time_scale": 1.0, "closed_loop": True},
                        arrival=(0.0, 0.4, 1.7, 2.9))
    assert compare_folders(sim, loop).values["num_finished"][:2] == (4.0, 3.0)


def test_report_with_a_comparison_section(folders, tmp_path):
    from servesim.report.html import write_report

    sim, real = folders
    html_path, md_path = write_report(sim, tmp_path / "r" / "report.html", compare=real)
    page, text = html_path.read_text(), md_path.read_text()
    assert "<h2>Simulation vs replay</h2>" in page
    assert 'id="chart-compare-cdf"' in page and 'id="chart-compare-in-system"' in page
    assert "## Simulation vs replay" in text and "| TPOT mean (ms) | 187.50 | 133.33 |" in text
    alone_html, alone_md = write_report(real, tmp_path / "alone" / "report.html")  # a replay: no timeseries.parquet
    assert alone_md.read_text().startswith("# servesim replay: real")
    result = CliRunner().invoke(app, ["report", str(sim), "--compare", str(sim)])
    assert result.exit_code != 0 and "not a replay" in str(result.exception)


def test_from_send_counts_the_replays_latencies_from_the_actual_send(tmp_path):
    # The replay's client sent request 1 (due at 1.0 s) 0.05 s late; its first token came at 1.1 s.
    sim = write_folder(tmp_path / "sim", SIM)
    real = write_folder(tmp_path / "real", REAL, replay={"time_scale": 1.0, "closed_loop": False})
    import pyarrow.parquet as pq

    table = pq.read_table(real / "requests.parquet")
    sent = np.array([0.0, 1.05, 2.0, 3.0])
    table = table.set_column(table.column_names.index("sent_s"), "sent_s", pa.array(sent))
    pq.write_table(table, real / "requests.parquet")
    due = compare_folders(sim, real).values
    sent_based = compare_folders(sim, real, from_send=True).values
    # Finished replay TTFTs from the due times 0.2, 0.1, 0.2; from the sends 0.2, 0.05, 0.2.
    assert due["ttft_mean"][1] == pytest.approx(0.5 / 3)
    assert sent_based["ttft_mean"][1] == pytest.approx(0.45 / 3)
    # E2E likewise (0.6, 0.9, 0.6 -> 0.6, 0.85, 0.6); TPOT does not depend on the arrival.
    assert sent_based["e2e_mean"][1] == pytest.approx(2.05 / 3)
    assert sent_based["tpot_mean"][1] == due["tpot_mean"][1]
    assert sent_based["ttft_mean"][0] == due["ttft_mean"][0]  # the simulation's side is unchanged
    result = CliRunner().invoke(app, ["compare", str(sim), str(real), "--from-send", "--json"])
    assert result.exit_code == 0 and json.loads(result.output)["metrics"]["ttft_mean"]["real"] == pytest.approx(0.15)


def _histograms(ttft: tuple[float, float], tpot: tuple[float, float], e2e: tuple[float, float] | None) -> str:
    """vLLM-style /metrics text with (sum, count) of the three latency histograms, split over two
    label sets (two engines) to check that both are summed."""
    lines = []
    for family, pair in (("vllm:time_to_first_token_seconds", ttft),
                         ("vllm:request_time_per_output_token_seconds", tpot),
                         ("vllm:e2e_request_latency_seconds", e2e)):
        if pair is None:
            continue
        lines.append(f"# TYPE {family} histogram")
        for engine, share in (("0", 0.25), ("1", 0.75)):
            labels = f'engine="{engine}",model_name="m"'
            lines.append(f'{family}_bucket{{{labels},le="+Inf"}} {pair[1] * share}')
            lines.append(f"{family}_count{{{labels}}} {pair[1] * share}")
            lines.append(f"{family}_sum{{{labels}}} {pair[0] * share}")
    return "\n".join(lines) + "\n"


def test_engine_timed_means_come_from_the_replays_metrics_before_and_after(folders):
    sim, real = folders
    # Before: 8 requests of other traffic; after: those plus the replay's 3 finished requests,
    # whose TTFTs sum to 0.6 s, TPOTs to 0.3 s and E2Es to 1.5 s in the engine's own clock.
    (real / "metrics_before.txt").write_text(_histograms((1.0, 8), (0.5, 8), (4.0, 8)))
    (real / "metrics_after.txt").write_text(_histograms((1.6, 11), (0.8, 11), (5.5, 11)))
    v = compare_folders(sim, real).values
    # The simulation's side is its own means (0.175 s TTFT, 0.1875 s TPOT, 0.775 s E2E).
    assert v["engine_ttft_mean"] == pytest.approx((0.175, 0.2, 100 * (0.175 - 0.2) / 0.2))
    assert v["engine_tpot_mean"] == pytest.approx((0.1875, 0.1, 87.5))
    assert v["engine_e2e_mean"] == pytest.approx((0.775, 0.5, 55.0))
    result = CliRunner().invoke(app, ["compare", str(sim), str(real)], catch_exceptions=False)
    assert "TTFT mean, engine-timed (ms)" in result.output


def test_engine_timed_means_are_left_out_when_they_cannot_be_the_replays(folders, capsys):
    sim, real = folders
    assert "engine_ttft_mean" not in compare_folders(sim, real).values  # no metrics files
    # A histogram first observed during the replay has no samples before it; a count other than
    # the 3 finished requests (other traffic mixed in) is no measurement of the replay.
    (real / "metrics_before.txt").write_text(_histograms((1.0, 8), (0.5, 8), None))
    (real / "metrics_after.txt").write_text(_histograms((1.6, 11), (0.8, 12), (1.5, 3)))
    v = compare_folders(sim, real).values
    assert v["engine_ttft_mean"][1] == pytest.approx(0.2) and v["engine_e2e_mean"][1] == pytest.approx(0.5)
    assert "engine_tpot_mean" not in v
    with pytest.raises(SystemExit) as info:
        main(["compare", str(sim), str(real), "--max-error-pct", "1000", "--metrics", "engine_tpot_mean"])
    assert info.value.code == 4
    assert "engine_tpot_mean: not measured" in capsys.readouterr().err
