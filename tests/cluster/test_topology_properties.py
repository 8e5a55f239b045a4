"""Random topologies: every run balances its books, and the fast path equals the reference."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

import servesim

ROUTER_POLICIES = ["round_robin", "least_outstanding", "least_kv", "random", "power_of_two", "session_affinity", "laps"]


@st.composite
def scenarios(draw):
    topology = draw(st.sampled_from(["colocated", "disaggregated", "offload"]))
    cluster: dict = {"model": "llama-3-8b", "hardware": draw(st.sampled_from(["h100", "l4"]))}
    if topology == "colocated":
        cluster["num_replicas"] = draw(st.integers(1, 3))
    elif topology == "disaggregated":
        p, d = draw(st.integers(1, 2)), draw(st.integers(1, 2))
        cluster["num_replicas"] = p + d
        cluster["disaggregation"] = {"prefill_replicas": p, "decode_replicas": d,
                                     "link": {"bandwidth_gbps": draw(st.sampled_from([1.0, 100.0])),
                                              "layerwise": draw(st.booleans())}}
        if draw(st.booleans()):
            cluster["disaggregation"]["forward_queue_len"] = draw(st.integers(1, 3))
        if draw(st.booleans()):
            cluster["disaggregation"]["controller"] = {"interval_s": 0.2, "switch_s": 0.1,
                                                       "prefill_queue_high": 0.5, "decode_batch_high": 2.0}
    else:
        cluster["num_replicas"] = draw(st.integers(1, 2))
        cluster["prefill_offload"] = {"remote_prefill_replicas": draw(st.integers(1, 3)),
                                      "threshold_tokens": draw(st.sampled_from([200, 1000])),
                                      "link": {"bandwidth_gbps": draw(st.sampled_from([1.0, 100.0]))}}
    router = {"policy": draw(st.sampled_from(ROUTER_POLICIES)),
              "view_delay_s": draw(st.sampled_from([0.0, 0.5]))}
    if router["policy"] == "laps":
        router["laps_batch_window_s"] = draw(st.sampled_from([0.0, 0.01]))
    return {
        "seed": draw(st.integers(0, 1000)),
        "workload": {
            "kind": "synthetic", "num_requests": draw(st.integers(5, 80)),
            "arrival": {"process": "gamma", "rate_rps": draw(st.sampled_from([2.0, 20.0])), "cv": 2.0},
            "prompt_tokens": {"dist": "lognormal", "median": 400, "sigma": 1.2, "max": 6000},
            "output_tokens": {"dist": "lognormal", "median": 60, "sigma": 1.0, "max": 600},
        },
        "cluster": cluster,
        "router": router,
        "scheduler": {"policy": draw(st.sampled_from(["fcfs", "priority", "laps"])),
                      "max_num_batched_tokens": draw(st.sampled_from([512, 8192]))},
        "horizon_s": draw(st.sampled_from([None, 3.0])),
    }


@settings(max_examples=40, deadline=None)
@given(scenarios())
def test_any_topology_balances_and_matches_the_reference(scenario):
    fast = servesim.simulate({**scenario, "engine": {"fast_path": True}})  # books checked inside
    slow = servesim.simulate({**scenario, "engine": {"fast_path": False}})
    for name, col in fast.requests.columns().items():
        np.testing.assert_array_equal(col, slow.requests.columns()[name], err_msg=name)
    assert fast.summary["num_finished"] + fast.summary["num_rejected"] + fast.summary["num_in_flight"] == len(
        fast.requests
    )
