"""semi-PD: SM shares, the step model they give, the controller, and runs by hand."""

from __future__ import annotations

import pytest
from fakes import LinearStepModel

import servesim
from servesim.cluster.conservation import check_conservation
from servesim.cluster.disaggregation import PdSetup
from servesim.cluster.routers import LeastOutstandingRouter
from servesim.cluster.semi_pd import SemiPdController, SemiPdSetup, SmShareStepModel, SmSplit
from servesim.cluster.simulation import ReplicaSetup, Simulation
from servesim.config import validate_config
from servesim.errors import ConfigError
from servesim.metrics.records import FINISHED
from servesim.perf.batch_shape import BatchShape
from servesim.scheduler.config import SchedulerConfig
from servesim.workload.request import Request, Workload


def test_slowdowns_of_a_split():
    # Prefill is compute-bound: half the SMs, twice the time.
    assert SmSplit(0.5, 0.4).prefill_slowdown() == pytest.approx(2.0)
    # Decode saturates memory bandwidth at 40% of the SMs: 50% is full speed...
    assert SmSplit(0.5, 0.4).decode_slowdown() == 1.0
    # ...20% is half speed.
    assert SmSplit(0.8, 0.4).decode_slowdown() == pytest.approx(2.0)
    with pytest.raises(ValueError, match="prefill_share"):
        SmSplit(1.0, 0.4)


def test_share_step_model_scales_the_whole_gpu_step():
    base = LinearStepModel(base_s=0.01, per_token_s=0.001)
    split = SmSplit(0.25, 0.5)  # prefill x4; decode on 75% >= 50%: x1
    prefill, decode = SmShareStepModel(base, split, True), SmShareStepModel(base, split, False)
    shape = BatchShape.build(prefill_chunks=[(0, 100)])
    assert prefill.time_s(shape) == pytest.approx(4 * 0.11)
    assert decode.decode_time_s(8, 800) == pytest.approx(0.018)
    split.prefill_share = 0.75  # the controller moved it: decode on 25% of SMs, half its saturation
    assert decode.decode_time_s(8, 800) == pytest.approx(2 * 0.018)
    assert prefill.time_s(shape) == pytest.approx(0.11 / 0.75)


class Worker:
    def __init__(self, outstanding):
        self.num_outstanding = outstanding


def _controller(split, interval_s=1.0):
    setup = SemiPdSetup((split,), interval_s=interval_s, step=0.1, min_share=0.2, max_share=0.8, ttft_s=1.0,
                        tpot_s=0.02, prefill_s_per_token=0.001, decode_step_s=(0.01, 0.012, 0.014), mean_prompt_tokens=100)
    return SemiPdController(setup)


def test_controller_pressures_by_hand():
    ctl = _controller(SmSplit(0.5, 0.5))
    # TTFT: (4 + 1) prompts x 100 tokens x 1 ms x 2 (half the SMs) = 1.0 s -> 1.0 of target.
    # TPOT: a step at batch 2, 12 ms, at full speed (50% = saturation) -> 0.6 of 20 ms.
    assert ctl.pressures(ctl.setup.splits[0], 4, 2) == pytest.approx((1.0, 0.6))
    # Batches beyond the table use its last entry.
    assert ctl.pressures(ctl.setup.splits[0], 0, 9)[1] == pytest.approx(0.7)


def test_controller_moves_sms_to_the_worker_over_its_target_and_not_past_the_other():
    split = SmSplit(0.5, 0.5)
    ctl = _controller(split)
    # TTFT pressure 6 x 0.2 = 1.2 > 1, TPOT 0.6: prefill gets 0.6. After the move decode has
    # 40% of SMs (0.8 speed): TPOT 0.012 / 0.8 = 15 ms, under 20 ms: allowed.
    ctl.look(0.0, [Worker(5)], [Worker(2)])
    assert split.prefill_share == pytest.approx(0.6) and ctl.changes == [(0.0, 0, 0.6)]
    # Within the interval nothing happens.
    ctl.look(0.5, [Worker(50)], [Worker(2)])
    assert split.prefill_share == pytest.approx(0.6)
    # Next look: TTFT still over; a move to 0.7 leaves decode 30% (0.6 speed): 12 ms / 0.6 = 20 ms
    # = the target, so allowed; 0.8 next would give 12 / 0.4 = 30 ms > 20: refused.
    ctl.look(1.0, [Worker(50)], [Worker(2)])
    assert split.prefill_share == pytest.approx(0.7)
    ctl.look(2.0, [Worker(50)], [Worker(2)])
    assert split.prefill_share == pytest.approx(0.7)
    # Decode over its target (batch 3 at 0.6 speed: 23 ms), prefill idle: decode gets SMs back.
    ctl.look(3.0, [Worker(0)], [Worker(3)])
    assert split.prefill_share == pytest.approx(0.6)


def _paired_sim(requests, *, share=0.5, saturation=0.25, num_blocks=1000, replicas=1):
    sched = SchedulerConfig(max_num_batched_tokens=4096)
    setup = ReplicaSetup(num_kv_blocks=num_blocks, block_size=16, max_model_len=100_000, scheduler=sched)
    base = LinearStepModel(base_s=0.01, per_token_s=0.001)
    splits = tuple(SmSplit(share, saturation) for _ in range(replicas))
    layout = [(setup, SmShareStepModel(base, s, True), 1) for s in splits] + [
        (setup, SmShareStepModel(base, s, False), 1) for s in splits]
    return Simulation(Workload.from_requests(requests), setup, 2 * replicas, LeastOutstandingRouter(), base,
                      pd=PdSetup(replicas, 0.0, 1.0, 0.0, paired=True), pools=layout, semi_pd=SemiPdSetup(splits))


def test_a_request_path_by_hand():
    """Prompt of 100 on the prefill worker at half the SMs: (10 ms + 100 x 1 ms) x 2 = 0.22 s to the
    first token. The KV cache stays; the decode worker (full speed at 50% >= 25%) computes two more
    tokens at 11 ms each: 0.231 and 0.242."""
    sim = _paired_sim([Request(0.0, 100, 3)])
    out = sim.run()
    t = out.requests
    assert t.first_token_s[0] == pytest.approx(0.22)
    assert t.finish_s[0] == pytest.approx(0.242)
    assert t.max_itl_s[0] == pytest.approx(0.011)
    assert t.replica[0] == 1  # the decode worker of replica 0
    assert sim.replicas[0].scheduler.kv is sim.replicas[1].scheduler.kv  # one KV cache
    check_conservation(t, sim.replicas)


def test_workers_share_a_small_kv_cache_without_stalling():
    """Forty requests on a cache of 40 blocks (640 tokens) shared by both workers: some wait or are
    preempted for room, every one finishes, and every block comes back."""
    requests = [Request(0.01 * i, 150, 60) for i in range(40)]
    sim = _paired_sim(requests, num_blocks=40)
    out = sim.run()
    assert (out.requests.status == FINISHED).all()
    assert (out.requests.tokens_generated == 60).all()
    check_conservation(out.requests, sim.replicas)
    assert sim.replicas[0].scheduler.kv.num_used_blocks == 0


def test_semi_pd_config_checks():
    with pytest.raises(ConfigError, match="semi_pd cannot be combined with disaggregation"):
        validate_config({"cluster": {"num_replicas": 2, "semi_pd": {},
                                     "disaggregation": {"prefill_replicas": 1, "decode_replicas": 1}}})
    with pytest.raises(ConfigError, match="set slo.ttft_s and slo.tpot_s"):
        validate_config({"cluster": {"semi_pd": {"controller": {}}}})
    with pytest.raises(ConfigError, match="prefill_share"):
        validate_config({"cluster": {"semi_pd": {"prefill_share": 1.0}}})


def test_a_semi_pd_run_counts_gpus_once_and_reports_its_splits():
    scenario = {"workload": {"kind": "synthetic", "num_requests": 200, "arrival": {"process": "poisson", "rate_rps": 5},
                             "prompt_tokens": {"dist": "fixed", "value": 1000}, "output_tokens": {"dist": "fixed", "value": 50}},
                "cluster": {"num_replicas": 2, "semi_pd": {"prefill_share": 0.3, "controller": {"interval_s": 0.5}}},
                "slo": {"ttft_s": 0.05, "tpot_s": 0.05}}
    result = servesim.simulate(scenario)
    s = result.summary
    assert s["num_replicas"] == 4 and s["num_gpus"] == 2  # two workers per replica, one GPU each
    span_h = (result.requests.finish_s.max() - result.requests.arrival_s.min()) / 3600
    assert s["cost"]["usd"] == pytest.approx(2 * 2.49 * span_h)
    # A tight TTFT target and an easy TPOT one: the controller gives prefill more SMs.
    assert s["semi_pd"]["split_changes"] > 0
    assert all(share > 0.3 for share in s["semi_pd"]["final_prefill_shares"])
