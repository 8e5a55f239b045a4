"""Scenarios that push a run into its rare paths, shared by the equivalence tests."""

# KV pressure on a small GPU: blocks run out, requests are preempted and recomputed.
KV_PRESSURE = {
    "seed": 2,
    "workload": {
        "kind": "synthetic", "num_requests": 300,
        "arrival": {"process": "gamma", "rate_rps": 6.0, "cv": 3.0},
        "prompt_tokens": {"dist": "uniform", "low": 500, "high": 6000},
        "output_tokens": {"dist": "uniform", "low": 50, "high": 1500},
    },
    "cluster": {"model": "llama-3-8b", "hardware": "l4", "num_replicas": 2, "gpu_memory_utilization": 0.95},
    "router": {"policy": "least_outstanding"},
}
