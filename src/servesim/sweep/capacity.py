"""A capacity bound: can a deployment carry the load at all?  Used to prune a search before simulating.

Every request needs its prompt prefilled and ``output - 1`` tokens decoded
(the first output token comes from prefill).  A fleet's long-run request
rate is therefore at most::

    max_rps = min(prefill_tokens_per_s / P, decode_tokens_per_s / (O - 1))

with ``P`` and ``O`` the workload's mean prompt and output lengths and the
token rates summed over replicas, each priced by the run's own step-time
model at its most favourable batch:

* prefill: one iteration of ``max_num_batched_tokens`` tokens made of
  whole prompts of length ``P`` (fresh, no cached tokens); rate = tokens /
  ``time_s``.  Mean-length prompts have the fewest attention pairs for their
  tokens (pairs grow as length squared), so real batches are no faster.
* decode: the largest batch that fits, ``b = min(max_num_seqs, blocks //
  blocks per sequence of context P + 1)``, each sequence at the shortest
  context (``P + 1``); rate = ``b / decode_time_s(b, b * (P + 1))``.

It is an upper bound in the sense that matters for pruning: a deployment
below the target rate builds an unbounded queue, so no latency SLO holds.
With prefix caching (prompts may skip prefill) the prefill term is not
applied; with a semantic cache in front of the fleet (hits skip it) there is
no bound; with autoscaling the fleet is counted at ``max_replicas``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from servesim.config import ScenarioConfig
from servesim.perf.batch_shape import BatchShape


@dataclass(frozen=True)
class LoadProfile:
    """What a workload asks for: mean arrival rate and mean lengths."""

    rate_rps: float
    mean_prompt_tokens: float
    mean_output_tokens: float


@dataclass(frozen=True)
class CapacityBound:
    """A fleet's token rates at their best (tokens/s, whole fleet) and the request rate they allow."""

    prefill_tokens_per_s: float
    decode_tokens_per_s: float
    max_rps: float


def load_profile(config: ScenarioConfig) -> LoadProfile | None:
    """The workload's mean rate ((n - 1) gaps over the arrival span) and lengths; None for closed-loop
    workloads (agent programs, benchmark clients), whose rate depends on the fleet."""
    from servesim.core.rng import RandomStreams
    from servesim.workload.builder import build_workload

    if config.workload.kind in ("agent", "closed_loop"):
        return None
    workload = build_workload(config.workload, RandomStreams(config.seed))
    n = len(workload)
    span = float(workload.arrival_s[-1] - workload.arrival_s[0]) if n else 0.0
    rate = (n - 1) / span if span > 0 else math.inf
    return LoadProfile(rate, float(workload.prompt_tokens.mean()), float(workload.output_tokens.mean()))


def replica_prefill_tokens_per_s(step_model, max_batched_tokens: int, prompt_tokens: float) -> float:
    """Prefill tokens per second of one replica, whole mean-length prompts filling the token budget."""
    p = max(1, min(int(round(prompt_tokens)), max_batched_tokens))
    k = max_batched_tokens // p
    return k * p / step_model.time_s(BatchShape.build(prefill_chunks=[(0, p)] * k))


def replica_decode_tokens_per_s(step_model, max_num_seqs: int, num_kv_blocks: int, block_size: int,
                                prompt_tokens: float) -> float:
    """Decode tokens per second of one replica at its largest batch, each sequence at context P + 1."""
    context = max(1, int(round(prompt_tokens))) + 1
    b = min(max_num_seqs, num_kv_blocks // math.ceil(context / block_size))
    if b < 1:
        return 0.0
    return b / step_model.decode_time_s(b, b * context)


@dataclass(frozen=True)
class Assessment:
    """What is known of a deployment before simulating it."""

    num_gpus: int
    usd_per_hr: float | None  # the fleet's price per hour (None: a GPU without a price)
    bound: CapacityBound | None  # None: no load profile (closed-loop workload)


def assess(config: ScenarioConfig, load: LoadProfile | None) -> Assessment:
    """GPUs, price and capacity bound of ``config``; ``DeploymentError`` if the model does not fit its GPUs."""
    from servesim.deployment import fleet_usd_per_hr, gpus_per_replica, pool_deployments

    pools = pool_deployments(config)
    gpus = sum(pool.num_replicas * gpus_per_replica(pool) for pool, _ in pools)
    bound = capacity_bound(config, load, pools) if load is not None else None
    return Assessment(gpus, fleet_usd_per_hr(pools), bound)


def capacity_bound(config: ScenarioConfig, load: LoadProfile, pools=None) -> CapacityBound:
    """The bound for ``config`` under ``load`` (``pools``: its ``pool_deployments``, resolved if None);
    ``DeploymentError`` if the model does not fit its GPUs."""
    from servesim.deployment import pool_deployments

    if pools is None:
        pools = pool_deployments(config)
    scale = 1.0
    if config.autoscaling is not None:  # the fleet may grow to max_replicas
        scale = config.autoscaling.max_replicas / config.cluster.num_replicas
    sched = config.scheduler
    prefill = decode = 0.0
    for pool, deployment in pools:
        memory = deployment.memory
        prefill += pool.num_replicas * replica_prefill_tokens_per_s(
            deployment.step_model, sched.max_num_batched_tokens, load.mean_prompt_tokens)
        decode += pool.num_replicas * replica_decode_tokens_per_s(
            deployment.step_model, sched.max_num_seqs, memory.num_kv_blocks, memory.block_size_tokens,
            load.mean_prompt_tokens)
    prefill *= scale
    decode *= scale
    limits = [math.inf]
    if config.semantic_cache is not None:  # cache hits are answered without the fleet: no bound
        return CapacityBound(prefill, decode, math.inf)
    if not config.cluster.prefix_caching:
        limits.append(prefill / load.mean_prompt_tokens)
    if load.mean_output_tokens > 1:
        limits.append(decode / (load.mean_output_tokens - 1))
    return CapacityBound(prefill, decode, min(limits))
