"""Terminal summary text and the progress reporters."""

from __future__ import annotations

import math
from io import StringIO

from rich.console import Console

from servesim.metrics import (
    FINISHED,
    REJECTED,
    RequestTable,
    RunInfo,
    SloTargets,
    TimeSeries,
    summarize,
)
from servesim.report import NullProgress, Progress, RichProgress, render_summary, summary_text

NAN = math.nan


def run_summary(slo: SloTargets = SloTargets(ttft_s=0.5, tpot_s=0.1), price: float | None = 2.0):
    """Two finished requests and one rejected; span 0..4 s on 1 replica x 2 GPUs.

    ttft [0.25, 1.0] -> mean 625 ms; tpot [(2-0.25)/7 = 0.25, (4-2)/1 = 2.0];
    e2e [2.0, 3.0]; queue delay [0.125, 0.5].
    """
    requests = RequestTable(
        request_id=[0, 1, 2],
        arrival_s=[0.0, 1.0, 1.5],
        prompt_tokens=[100, 200, 50],
        output_tokens=[8, 2, 4],
        tokens_generated=[8, 2, 0],
        replica=[0, 0, -1],
        status=[FINISHED, FINISHED, REJECTED],
        reject_reason=["", "", "[queue] full"],
        first_scheduled_s=[0.125, 1.5, NAN],
        first_token_s=[0.25, 2.0, NAN],
        finish_s=[2.0, 4.0, NAN],
        max_itl_s=[0.3, 2.0, NAN],
        num_preemptions=[0, 1, 0],
    )
    ts = TimeSeries(
        time_s=[0.0, 1.0], replica=[0, 0], queue_len=[1, 4], running=[1, 2],
        kv_used_blocks=[1, 3], kv_total_blocks=[4, 4],
    )
    info = RunInfo(
        sim_time_s=4.0, horizon_s=None, wall_time_s=0.25, num_replicas=1, gpus_per_replica=2,
        busy_time_s=[3.0], num_steps=17, price_usd_per_gpu_hr=price,
    )
    return summarize(requests, ts, info, slo)


def test_text_contains_the_key_numbers():
    text = summary_text(run_summary())
    for expected in (
        "requests 3", "finished 2", "rejected 1", "in flight 0",
        "sim time 4.00 s", "wall time 0.25 s", "steps 17",
        "[queue] full 1",  # reason printed literally, not taken as markup
        "TTFT", "TPOT", "E2E", "Queue delay", "Max ITL",
        "625.00",  # mean TTFT in ms
        "1,125.00",  # mean TPOT (250 + 2000) / 2 ms
        "2,500.00",  # mean E2E in ms
        "0.50 req/s",  # 2 finished over the 4 s span
        "75.0 input tok/s",  # (100 + 200) / 4
        "2.5 output tok/s",  # (8 + 2) / 4
        # Request 0 misses tpot (250 ms > 100 ms), request 1 misses ttft.
        "attainment 0.0% (0 met)",
    ):
        assert expected in text, (expected, text)


def test_slo_line():
    text = summary_text(run_summary(SloTargets(ttft_s=0.5)))
    # Only request 0 has ttft <= 500 ms: 1 of 3 requests, 1 per 4 s.
    assert "TTFT <= 500.0 ms" in text
    assert "attainment 33.3% (1 met)" in text
    assert "goodput 0.25 req/s" in text


def test_no_slo_section_without_targets():
    assert "SLO" not in summary_text(run_summary(SloTargets()))


def test_utilization_and_cost_lines():
    text = summary_text(run_summary())
    # The share of time a step ran (3 s busy of 4 s), labelled as such, not "utilization".
    assert "Busy a step running 75.0% of the time" in text and "Utilization" not in text
    assert "peak queue 4" in text and "peak KV 75.0%" in text and "preemptions 1" in text
    # 1 replica x 2 GPUs x 4 s = 0.002 GPU-h (rounded), $2/GPU-h.
    assert "0.002 GPU-h" in text and "at $2.00/GPU-h" in text
    # 8 GPU-s = 1/450 GPU-h -> $0.0044; 10 output tokens -> $444.44 per million.
    assert "$0.0044 at" in text and "$444.44 per 1M output tokens" in text
    assert "$" not in summary_text(run_summary(price=None)).split("Cost")[1]


def test_missing_values_render_as_dash():
    text = summary_text({})
    assert "Run summary" in text and "TTFT" in text and " - " in text


def test_render_to_given_console():
    buf = StringIO()
    render_summary(run_summary(), Console(file=buf, width=120, color_system=None))
    assert "Latency (ms)" in buf.getvalue()


def test_null_progress_satisfies_protocol():
    p = NullProgress()
    assert isinstance(p, Progress)
    p.update(1.0, 5)
    p.close()


def test_rich_progress_stays_silent_on_short_runs():
    buf = StringIO()
    p = RichProgress(100, None, delay_s=3600.0, console=Console(file=buf, force_terminal=True))
    assert isinstance(p, Progress)
    for i in range(10):
        p.update(float(i), i)
    p.close()
    assert not p.started and buf.getvalue() == ""


def test_rich_progress_draws_after_delay_and_closes_once():
    buf = StringIO()
    with RichProgress(10, 60.0, delay_s=0.0, console=Console(file=buf, force_terminal=True, width=100)) as p:
        p.update(12.5, 4)
        p.update(30.0, 10)
        assert p.started
    p.close()  # second close is harmless
    p.update(40.0, 10)  # updates after close are ignored
    out = buf.getvalue()
    assert "10/10" in out and "30.0 / 60.0 s" in out


def test_skipped_workload_rows_and_rejections_are_listed_by_reason():
    summary = dict(run_summary())
    summary["workload_skipped"] = {"unparseable_number": 2, "zero_output_tokens": 1}
    summary["rejected_by_reason"] = {"exceeds_kv_capacity": 3}
    text = summary_text(summary)
    assert "workload rows skipped: unparseable_number 2, zero_output_tokens 1" in text
    assert "rejected by reason: exceeds_kv_capacity 3" in text


def test_prefix_hit_rate_shows_only_when_something_was_cached():
    summary = run_summary()
    assert "prefix hits" not in summary_text(summary)
    summary = {**summary, "prefix_cached_tokens": 150, "prefix_hit_rate": 0.5}
    assert "prefix hits 50.0% of prompt tokens" in " ".join(summary_text(summary).split())  # rich wraps lines


def test_pool_and_semi_pd_lines():
    summary = {**run_summary(), "mean_quality": 0.8125, "model_cost_usd": 0.5,
               "pools": {"small": {"replicas": 2, "requests_finished": 1, "mean_quality": 0.75, "price_usd_per_mtok": 0.1},
                         "large": {"replicas": 1, "requests_finished": 1, "mean_quality": 0.875, "price_usd_per_mtok": 2.0}},
               "semi_pd": {"split_changes": 3, "final_prefill_shares": [0.55, 0.6]}}
    text = summary_text(summary)
    assert "Pools mean quality 0.812  model cost $0.5000" in text
    assert "small: 2 replicas, 1 finished, quality 0.750, $0.1000 per 1M tokens" in text
    assert "large: 1 replicas, 1 finished, quality 0.875, $2.00 per 1M tokens" in text
    assert "semi-PD prefill shares now 0.55, 0.60  split changes 3" in text
    assert "Pools" not in summary_text(run_summary()) and "semi-PD" not in summary_text(run_summary())


def test_energy_line():
    summary = {**run_summary(), "energy_j": 7.2e6, "energy_per_token_j": 0.5, "power_w": {"mean": 450.0}, "idle_cost_usd": 0.25}
    assert "Energy 2.000 kWh  0.500 J per output token  mean 450 W  idle capacity $0.2500" in summary_text(summary)
    assert "Energy" not in summary_text(run_summary())


def test_fleet_line_spells_out_cold_starts():
    fleet = {"policy": "kpa", "replicas": {"mean_provisioned": 2.5, "mean_gpus_provisioned": 2.5}, "scale_ups": 17,
             "cold_starts": 17, "cold_start_s": 110.6, "failures": 0, "availability": 1.0,
             "retried_requests": 0, "failed_requests": 0}
    text = summary_text({"fleet": fleet}, width=250)
    assert "cold starts 17, 110.6 s in all (mean 6.5 s)" in text and " of 110.6 s" not in text
    assert "cold starts 0  " in summary_text({"fleet": {**fleet, "cold_starts": 0, "cold_start_s": 0.0}}, width=250)


def test_rejections_show_their_share_and_what_each_reason_means():
    # examples/kv-tiers-mooncake.yaml: 259 of 3,000 requests do not fit the model's context.
    summary = {**run_summary(), "num_requests": 3000, "num_rejected": 259,
               "rejected_by_reason": {"exceeds_max_model_len": 259}}
    text = summary_text(summary, width=200)
    assert "rejected 259 (8.6%)  in flight" in text
    assert ("rejected by reason: exceeds_max_model_len 259 (prompt + output longer than the model's context, "
            "cluster.max_model_len)") in text
    assert "rejected 0  in flight" in summary_text({**summary, "num_rejected": 0, "rejected_by_reason": {}})
