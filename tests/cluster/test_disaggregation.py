"""Prefill/decode disaggregation: KV transfer times and a request's path, by hand."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
from fakes import LinearStepModel

import servesim
from servesim.cluster.conservation import check_conservation
from servesim.cluster.disaggregation import KvLink, PdSetup
from servesim.cluster.routers import RoundRobinRouter
from servesim.cluster.simulation import ReplicaSetup, Simulation
from servesim.config import load_config
from servesim.errors import ConfigError, DeploymentError
from servesim.scheduler.config import SchedulerConfig
from servesim.workload.request import Request, Workload


def test_a_transfer_takes_bytes_over_bandwidth_plus_latency():
    link = KvLink(bytes_per_s=1e6, latency_s=0.001)
    assert link.send(0.5, 2e5) == 0.5 + 0.2 + 0.001


def test_transfers_on_one_link_queue_first_come_first_served():
    link = KvLink(bytes_per_s=1e6, latency_s=0.0)
    first = link.send(0.0, 1e5)  # on the link 0.0 .. 0.1
    second = link.send(0.05, 1e5)  # waits for the first: 0.1 .. 0.2
    third = link.send(0.5, 1e5)  # the link is free again: 0.5 .. 0.6
    assert (first, second, third) == (0.1, 0.2, 0.6)
    assert link.num_transfers == 3 and link.bytes_sent == 3e5


def test_a_link_needs_bandwidth():
    with pytest.raises(ValueError, match="bandwidth must be > 0"):
        KvLink(0.0, 0.0)


def _run(requests, *, num_prefill=1, num_decode=1, kv_bytes=1000.0, bw=1e6, latency=0.001, stretch=True):
    sim = Simulation(
        Workload.from_requests(requests),
        ReplicaSetup(1000, 16, 100_000, SchedulerConfig()),
        num_prefill + num_decode,
        RoundRobinRouter(),
        LinearStepModel(),  # 10 ms + 1 ms per token computed
        fast_path=stretch,
        pd=PdSetup(num_prefill, kv_bytes, bw, latency),
    )
    out = sim.run()
    check_conservation(out.requests, sim.replicas)
    return out, sim


def test_a_request_prefills_moves_its_kv_then_decodes():
    out, sim = _run([Request(0.0, 100, 3)])
    t = out.requests
    # Prefill on replica 0: one 100-token iteration, 0.01 + 0.1 = 0.11 s: the first token.
    assert t.first_token_s[0] == 0.0 + (0.01 + 0.001 * 100)
    # KV: 100 tokens x 1000 bytes over 1 MB/s = 0.1 s, plus 1 ms: at the decode replica at 0.211 s.
    arrived = t.first_token_s[0] + 100 * 1000.0 / 1e6 + 0.001
    # Decode replica 1: two one-token iterations of 0.011 s each.
    second = arrived + (0.01 + 0.001)
    assert t.finish_s[0] == second + (0.01 + 0.001)
    assert t.max_itl_s[0] == second - t.first_token_s[0]  # the transfer shows as the first gap
    assert t.replica[0] == 1 and t.tokens_generated[0] == 3
    assert [r.num_tokens_produced for r in sim.replicas] == [1, 2]


def test_one_token_requests_finish_on_the_prefill_replica():
    out, sim = _run([Request(0.0, 50, 1)])
    assert out.requests.replica[0] == 0 and out.requests.finish_s[0] == 0.01 + 0.001 * 50
    assert sim._links[0].num_transfers == 0


def test_disaggregated_fast_path_matches_the_reference():
    rng = np.random.default_rng(4)
    reqs = [Request(float(a), int(p), int(o)) for a, p, o in
            zip(np.cumsum(rng.exponential(0.05, 120)), rng.integers(20, 900, 120), rng.integers(1, 200, 120))]
    fast, _ = _run(reqs, num_prefill=2, num_decode=2, bw=5e7)
    slow, _ = _run(reqs, num_prefill=2, num_decode=2, bw=5e7, stretch=False)
    for name, col in fast.requests.columns().items():
        np.testing.assert_array_equal(col, slow.requests.columns()[name], err_msg=name)


def _prefix_pair() -> list:
    # The first request (1,200 tokens: prefix blocks 10, 11 full, 12 partial) files 10 and 11 in the
    # prefill replica's cache; the second shares them: 1,024 tokens cached, 176 computed.
    return [Request(0.0, 1200, 3, prefix_block_ids=(10, 11, 12)), Request(5.0, 1200, 3, prefix_block_ids=(10, 11, 99))]


def test_prefix_cache_hits_on_the_prefill_replica_survive_the_hand_off():
    # Issue 15 finding 2: the decode replica's copy of the request dropped cached_tokens, so the
    # requests table (and the summary's prefix_hit_rate) lost every hit made on a prefill replica.
    setup = ReplicaSetup(1000, 16, 100_000, SchedulerConfig(), prefix_block_tokens=512, kv_bytes_per_token=1000.0)
    sim = Simulation(Workload.from_requests(_prefix_pair()), setup, 2, RoundRobinRouter(), LinearStepModel(),
                     pd=PdSetup(1, 1000.0, 1e9, 0.0))
    out = sim.run()
    check_conservation(out.requests, sim.replicas)
    t = out.requests
    assert t.first_token_s[1] == 5.0 + (0.01 + 0.001 * 176)  # the hit really cut the prefill
    assert t.replica.tolist() == [1, 1]  # both finished on the decode replica
    assert t.cached_tokens.tolist() == [0, 1024]


def test_the_summary_counts_prefix_hits_made_before_the_hand_off():
    config = {"cluster": {"engine": "pytorch", "num_replicas": 2, "prefix_caching": True,
                          "disaggregation": {"prefill_replicas": 1, "decode_replicas": 1}}}
    workload = dataclasses.replace(Workload.from_requests(_prefix_pair()), prefix_block_size=512)
    s = servesim.simulate(config, workload=workload, step_model=LinearStepModel()).summary
    assert s["prefix_cached_tokens"] == 1024
    assert s["prefix_hit_rate"] == pytest.approx(1024 / 2400)
    assert s["prefix_cache_hit_rate"] == pytest.approx(2 / 6)  # prefix blocks: 2 of the 6 looked up


def test_pools_must_add_up_to_the_replicas():
    with pytest.raises(ConfigError, match="set num_replicas to 3"):
        servesim.simulate({"cluster": {"engine": "pytorch", "num_replicas": 2,
                                       "disaggregation": {"prefill_replicas": 1, "decode_replicas": 2}}})


def test_a_link_of_zero_bandwidth_is_a_config_error():
    with pytest.raises(ConfigError, match="bandwidth_gbps = 0"):
        servesim.simulate({"cluster": {"engine": "pytorch", "num_replicas": 2, "disaggregation": {"link": {"bandwidth_gbps": 0}}}})


def test_a_decode_pool_that_cannot_hold_one_request_is_a_deployment_error():
    """Llama-3-70B on two H100s with a 1 GB activation reserve: 72 GB of each GPU's budget leaves KV room for
    2,720 tokens per replica, less than one 8,192-token request; a lower max_model_len fits."""
    scenario = {"cluster": {"engine": "pytorch", "num_replicas": 2, "model": "llama-3-70b", "tensor_parallel": 2,
                            "activation_reserve_gb": 1.0, "disaggregation": {}}}
    with pytest.raises(DeploymentError, match="cluster.disaggregation: a decode replica's KV cache holds 2720 tokens"
                                              ".*max_model_len = 8192.*at most 2720"):
        servesim.simulate(scenario)
    scenario["cluster"]["max_model_len"] = 2720
    scenario["workload"] = {"kind": "synthetic", "num_requests": 3, "arrival": {"process": "poisson", "rate_rps": 1},
                            "prompt_tokens": {"dist": "fixed", "value": 100}, "output_tokens": {"dist": "fixed", "value": 5}}
    assert servesim.simulate(scenario).summary["num_finished"] == 3


# ------------------------------------------------------------ prefill offload (PrfaaS)


def _offload_run(requests, *, threshold=500, max_wait=0.05, bw=1e6, remote=1, local=1):
    # Replicas 0 .. remote-1 are the remote prefill replicas; the others are local.
    sim = Simulation(
        Workload.from_requests(requests),
        ReplicaSetup(1000, 16, 100_000, SchedulerConfig()),
        remote + local,
        RoundRobinRouter(),
        LinearStepModel(),
        pd=PdSetup(remote, 1000.0, bw, 0.005, offload_threshold_tokens=threshold, max_link_wait_s=max_wait),
    )
    out = sim.run()
    check_conservation(out.requests, sim.replicas)
    return out, sim


def test_only_long_prompts_go_remote_and_decode_locally():
    out, sim = _offload_run([Request(0.0, 400, 3), Request(0.0, 600, 3)])
    t = out.requests
    # The short prompt runs wholly on the local replica: prefill 0.01 + 0.4 s.
    assert t.first_token_s[0] == 0.01 + 0.001 * 400
    # The long one prefills remotely (0.01 + 0.6 s), its KV (600 x 1000 bytes at 1 MB/s = 0.6 s,
    # + 5 ms) comes back, and it decodes on the local replica.
    assert t.first_token_s[1] == 0.01 + 0.001 * 600
    assert t.replica.tolist() == [1, 1]
    assert sim._links[0].num_transfers == 1 and sim._links[0].bytes_sent == 600 * 1000.0
    assert sim.replicas[0].num_tokens_produced == 1


def test_a_busy_link_keeps_long_prompts_local():
    # Two long prompts, prefilled remotely in one iteration (0.01 + 1.2 s): at 1.21 s both
    # KV caches queue on the link, 0.6 s each, so it is busy until 2.41 s.  A third long
    # prompt arriving at 1.5 s finds 0.91 s queued, more than the 0.05 s allowed: it runs
    # locally, at once.
    reqs = [Request(0.0, 600, 3), Request(0.0, 600, 3), Request(1.5, 600, 3)]
    out, sim = _offload_run(reqs)
    assert sim._links[0].num_transfers == 2 and sim._links[0].free_at_s == 0.01 + 0.001 * 1200 + 0.6 + 0.6
    assert sim.replicas[0].num_tokens_produced == 2  # two prefills on the remote replica
    assert out.requests.first_scheduled_s[2] == 1.5


def test_offload_and_disaggregation_do_not_combine():
    with pytest.raises(ConfigError, match="cannot be combined"):
        servesim.simulate({"cluster": {"engine": "pytorch", "num_replicas": 2, "disaggregation": {},
                                       "prefill_offload": {}}})


def test_more_remote_replicas_than_local_ones():
    # Three remote prefill replicas, one local: three long prompts spread over the remote ones.
    reqs = [Request(0.0, 600, 3), Request(0.0, 600, 3), Request(0.0, 600, 3), Request(0.0, 100, 3)]
    out, sim = _offload_run(reqs, remote=3, local=1)
    assert [link.num_transfers for link in sim._links] == [1, 1, 1, 0]  # the local replica sends nothing
    assert out.requests.replica.tolist() == [3, 3, 3, 3]  # all decode locally


# ------------------------------------------------------------ the run-time P/D controller


def test_the_controller_moves_an_idle_decode_replica_to_a_backed_up_prefill_pool():
    # 1 prefill + 2 decode replicas; 1,000-token prompts every 0.25 s (each prefill takes 1.01 s).
    # The controller looks every 0.25 s: at 0.5 s replica 0 has 2 outstanding prompts (> 1) and
    # the decode pool is idle, so decode replica 1 (least loaded, lowest index) leaves its pool.
    # At 0.75 s it is found drained: ready at 0.75 + 0.5 = 1.25 s, when it joins the prefill pool
    # and takes the arrival of that instant.
    reqs = [Request(0.25 * i, 1000, 2) for i in range(8)]
    pd = PdSetup(1, 1000.0, 1e9, 0.0, control_interval_s=0.25, switch_s=0.5, prefill_queue_high=1.0,
                 decode_batch_high=100.0)
    sim = Simulation(Workload.from_requests(reqs), ReplicaSetup(1000, 16, 100_000, SchedulerConfig()), 3,
                     RoundRobinRouter(), LinearStepModel(), pd=pd)
    out = sim.run()
    check_conservation(out.requests, sim.replicas)
    assert sim.role_switches == [(1.25, 1, 0)]
    assert out.requests.first_scheduled_s[5] == 1.25  # request 5 starts at once on replica 1
    assert [r.index for r in sim._prefill_pool] == [0, 1] and [r.index for r in sim._decode_pool] == [2]


def test_the_controller_recovers_from_a_bad_split():
    # The long-prompt example run 1P3D: prompts back up; the controller moves one replica.
    path = Path(__file__).resolve().parents[2] / "examples" / "pd-disaggregation.yaml"
    overrides = ["cluster.disaggregation.prefill_replicas=1", "cluster.disaggregation.decode_replicas=3",
                 "workload.num_requests=600"]
    static = servesim.simulate(load_config(path, overrides)).summary
    steered = servesim.simulate(load_config(path, [*overrides, "cluster.disaggregation.controller={}"])).summary
    assert static["role_switches"] == 0 and steered["role_switches"] >= 1
    assert steered["slo"]["goodput_rps"] > 2 * static["slo"]["goodput_rps"]


def test_layerwise_streaming_overlaps_the_prefill():
    # 100 KB of KV over 1 MB/s is 0.1 s; the prefill ran from 0.0 to 0.11 s.
    link = KvLink(bytes_per_s=1e6, latency_s=0.0)
    # Streamed from 0.0 the transfer could end at 0.1, but the last of 10 layers (10 KB, 0.01 s)
    # only leaves at the prefill's end: arrived at 0.11 + 0.01.
    assert link.send(0.11, 1e5, streamed_from_s=0.0, num_layers=10) == 0.11 + 1e4 / 1e6
    # A long transfer is bound by the link: streamed from 0.2, 1 MB ends at 1.2, after the last layer.
    assert link.send(0.25, 1e6, streamed_from_s=0.2, num_layers=10) == 0.2 + 1.0


def test_layerwise_streaming_shortens_the_gap_after_prefill():
    out_whole, _ = _run([Request(0.0, 100, 3)])
    sim = Simulation(
        Workload.from_requests([Request(0.0, 100, 3)]),
        ReplicaSetup(1000, 16, 100_000, SchedulerConfig()),
        2,
        RoundRobinRouter(),
        LinearStepModel(),
        pd=PdSetup(1, 1000.0, 1e6, 0.001, stream_layers=10),
    )
    out_streamed = sim.run()
    # Whole: 0.1 s of transfer after the prefill; streamed from the prefill's start (0.0): the
    # transfer ends at 0.1 < 0.11, so only the last layer's 0.01 s is left after the prefill.
    whole_gap = out_whole.requests.max_itl_s[0]
    streamed_gap = out_streamed.requests.max_itl_s[0]
    assert whole_gap - streamed_gap == pytest.approx(0.1 - 0.01)


def test_a_busy_prefill_replica_forwards_new_prompts():
    # Round robin over the two prefill replicas sends prompts 0 and 2 to replica 0, prompt 1 to
    # replica 1.  Without forwarding prompt 2 waits behind prompt 0 (replica 0 is busy until
    # 0.51 s).  With forward_queue_len = 1, replica 0 (1 outstanding at 0.2 s) rejects it and it
    # goes to the least loaded prefill replica: 1, idle since prompt 1's prefill ended at 0.07 s.
    reqs = [Request(0.0, 500, 2), Request(0.01, 50, 2), Request(0.2, 500, 2)]
    def run(forward):
        sim = Simulation(Workload.from_requests(reqs), ReplicaSetup(1000, 16, 100_000, SchedulerConfig()), 3,
                         RoundRobinRouter(), LinearStepModel(), pd=PdSetup(2, 10.0, 1e9, 0.0, forward_queue_len=forward))
        out = sim.run()
        check_conservation(out.requests, sim.replicas)
        return out.requests
    assert run(0).first_scheduled_s[2] == 0.0 + (0.01 + 0.001 * 500)
    assert run(1).first_scheduled_s[2] == 0.2


# ------------------------------------------------------------ prefill sides on other GPUs


def _lone_request(prompt: int, output: int) -> dict:
    return {"kind": "synthetic", "num_requests": 1, "arrival": {"process": "constant", "rate_rps": 1},
            "prompt_tokens": {"dist": "fixed", "value": prompt}, "output_tokens": {"dist": "fixed", "value": output}}


def test_a_prefill_pool_on_other_gpus_runs_prompts_at_their_speed_and_is_paid_at_their_price():
    from servesim.api import build_deployment
    from servesim.perf.batch_shape import BatchShape

    scenario = {"workload": _lone_request(3000, 4),
                "cluster": {"engine": "pytorch", "num_replicas": 3, "disaggregation": {"prefill_replicas": 1, "decode_replicas": 2,
                                                                   "prefill_hardware": "b200"}}}
    result = servesim.simulate(scenario)
    t, s = result.requests, result.summary
    b200 = build_deployment(servesim.config.validate_config({"cluster": {"engine": "pytorch", "hardware": "b200"}}))
    h100 = build_deployment(servesim.config.validate_config({"cluster": {"engine": "pytorch"}}))
    # The 3000-token prompt fits the default token budget: one B200 iteration (less than half an H100's).
    prompt_step = b200.step_model.time_s(BatchShape.build([(0, 3000)]))
    assert t.first_token_s[0] - t.arrival_s[0] == pytest.approx(prompt_step, rel=1e-12)
    assert prompt_step < 0.5 * h100.step_model.time_s(BatchShape.build([(0, 3000)]))
    assert t.replica[0] in (1, 2)  # decoded on an H100 replica
    span_h = (t.finish_s[0] - t.arrival_s[0]) / 3600
    assert s["num_gpus"] == 3 and s["cost"]["usd"] == pytest.approx((5.25 + 2 * 2.49) * span_h)


def test_a_remote_prefill_cluster_on_other_gpus():
    scenario = {"workload": _lone_request(5000, 3),
                "cluster": {"engine": "pytorch", "num_replicas": 1, "prefill_offload": {"remote_prefill_replicas": 1, "threshold_tokens": 4000,
                                                                    "remote_hardware": "h200", "remote_tensor_parallel": 2}}}
    result = servesim.simulate(scenario)
    s = result.summary
    assert result.requests.replica[0] == 1  # prefilled remotely, decoded on the local replica
    assert s["num_gpus"] == 3 and s["gpus_per_replica"] is None
    assert s["cost"]["price_usd_per_gpu_hr"] == pytest.approx((2 * 2.50 + 2.49) / 3)


def test_pools_of_other_gpus_cannot_switch_roles():
    with pytest.raises(ConfigError, match="replicas switch roles"):
        servesim.simulate({"cluster": {"engine": "pytorch", "num_replicas": 2, "disaggregation": {"prefill_hardware": "b200", "controller": {}}}})
