"""A scenario's fleet built for live arrivals: what ``servesim serve`` simulates and serves.

``build_serve_setup`` builds the same ``Simulation`` as ``servesim run`` (``pool_deployments``,
then ``build_simulation``: replicas, router, schedulers, step-time model, fleet operations), with
three changes that leave the timing model alone:

* the workload is a stand-in of ``max_requests`` rows that never arrive by themselves: the clients
  are the workload, and each client request takes the next row (its result columns);
* the reference path (``engine.fast_path: false``): every iteration is an event that books its
  tokens when it ends, so a request's token exists once the event loop has passed its time
  (per-request results are the fast path's, bit for bit: tests/test_fast_path.py);
* no horizon: the fleet runs until the server stops.

A request is one sequence on one replica from arrival to its last token.  Features that move it
between replicas or take it from a workload row refuse to serve, in one line (``ConfigError``):
disaggregated prefill/decode, prefill offload, semi-PD, a semantic cache, model routers (they
read a difficulty per request) and RAG chunk caches (they read a request's chunks).

Served models: the base model (``served_model_name``, default ``cluster.model``) and, when the
scenario's workload asks for LoRA adapters (``workload.lora``), ``lora-0`` ... ``lora-{n-1}``,
adapter ``i`` with the rank ``servesim run`` draws for it (modelled in GPU memory when
``cluster.lora`` is set).  Prefix caching (``cluster.prefix_caching``) hashes prompts in blocks of
``cluster.block_size`` tokens (``servesim.live.serve.protocol.prefix_block_ids``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from servesim.config import ScenarioConfig
from servesim.errors import ConfigError

# Simulation rows (client requests) one server start takes by default: about 80 MB of result columns.
DEFAULT_MAX_REQUESTS = 1_000_000


@dataclass(frozen=True)
class ServedModel:
    """A model name clients may ask for: the base model (``adapter`` -1) or a LoRA adapter."""

    name: str
    adapter: int = -1
    parent: str | None = None  # the base model's name, for an adapter


@dataclass
class ServeSetup:
    """A scenario's simulation ready for live arrivals, and what the front end needs to know."""

    config: ScenarioConfig  # as simulated (engine defaults, calibration, reference path, no horizon)
    sim: object  # servesim.cluster.simulation.Simulation
    models: dict[str, ServedModel]  # by name, the base model first
    max_model_len: int  # the longest prompt + output any replica takes (tokens)
    prefix_block_tokens: int  # prompts are hashed in blocks of this many tokens (0: no prefix caching)
    frontend_latency_s: float  # a client sees each token this long after the engine made it (s)
    max_requests: int  # simulation rows: client requests this server takes in all

    @property
    def base_model(self) -> str:
        return next(iter(self.models))

    def describe(self) -> str:
        """One line: the scenario, its fleet and its models."""
        c = self.config.cluster
        adapters = len(self.models) - 1
        extra = f" + {adapters:,} LoRA adapters" if adapters else ""
        return (f"scenario {self.config.name!r}: {len(self.sim.replicas)} x {c.model} on {c.hardware} "
                f"(router {self.config.router.policy}), model {self.base_model!r}{extra}")


def build_serve_setup(config: ScenarioConfig, *, max_requests: int = DEFAULT_MAX_REQUESTS,
                      served_model_name: str | None = None) -> ServeSetup:
    """Build ``config``'s fleet for live arrivals (see the module docstring).

    Raises ``ConfigError`` for a feature live requests cannot carry or a bad argument, and the
    errors ``servesim run`` raises for a deployment that cannot run.
    """
    from servesim.assembly import build_simulation
    from servesim.deployment import calibrated, pool_deployments

    if max_requests < 1:
        raise ConfigError(f"--max-requests = {max_requests}: must be at least 1")
    _check_servable(config)
    engine = config.engine.model_copy(update={"fast_path": False})
    config = calibrated(config.model_copy(update={"engine": engine, "horizon_s": None}))
    pools = pool_deployments(config)
    lora = getattr(config.workload, "lora", None)
    ranks = _adapter_ranks(config) if lora is not None else None
    prefix_tokens = config.cluster.block_size if config.cluster.prefix_caching else 0
    workload = _stand_in_workload(max_requests, ranks, prefix_tokens)
    sim = build_simulation(config, pools, workload, None, None)
    if config.cluster.power.row is not None:
        from servesim.cluster.power_budget import attach_power_budget

        attach_power_budget(config, pools, sim)
    base = served_model_name or config.cluster.model
    models = {base: ServedModel(base)}
    for i in range(0 if ranks is None else len(ranks)):
        name = f"lora-{i}"
        models[name] = ServedModel(name, i, base)
    return ServeSetup(
        config=config,
        sim=sim,
        models=models,
        max_model_len=max(d.max_model_len for _, d in pools),
        prefix_block_tokens=prefix_tokens,
        frontend_latency_s=pools[0][1].frontend_latency_s,
        max_requests=max_requests,
    )


def _check_servable(config: ScenarioConfig) -> None:
    """``ConfigError`` naming the first feature a live request cannot carry."""
    from servesim.cluster.router_config import MODEL_ROUTERS

    c = config.cluster
    moves = {"cluster.disaggregation": c.disaggregation, "cluster.prefill_offload": c.prefill_offload,
             "cluster.semi_pd": c.semi_pd}
    for field, value in moves.items():
        if value is not None:
            raise ConfigError(f"servesim serve: {field} is not emulated (a request moves between replicas); "
                              "serve a colocated cluster")
    if config.semantic_cache is not None:
        raise ConfigError("servesim serve: semantic_cache is not emulated; serve the scenario without it")
    if config.router.policy in MODEL_ROUTERS:
        raise ConfigError(f"servesim serve: router.policy = {config.router.policy!r} reads a difficulty per request, "
                          "which clients do not send; pick another router")
    if c.chunk_cache is not None:
        raise ConfigError("servesim serve: cluster.chunk_cache reads each request's RAG chunks, which clients do not "
                          "send; serve the scenario without it")


def _adapter_ranks(config: ScenarioConfig) -> np.ndarray:
    """Each LoRA adapter's rank, as ``servesim run`` draws them (stream ``workload.lora`` of the seed)."""
    from servesim.core.rng import RandomStreams
    from servesim.workload.builder import build_workload
    from servesim.workload.config import SyntheticWorkloadConfig

    one = SyntheticWorkloadConfig.model_validate({
        "kind": "synthetic", "num_requests": 1, "arrival": {"process": "constant", "rate_rps": 1.0},
        "prompt_tokens": {"dist": "fixed", "value": 1}, "output_tokens": {"dist": "fixed", "value": 1},
        "lora": config.workload.lora.model_dump(),
    })
    return build_workload(one, RandomStreams(config.seed)).adapter_ranks


def _stand_in_workload(rows: int, adapter_ranks: np.ndarray | None, prefix_tokens: int):
    """``rows`` requests that never arrive by themselves (read-only views of one value each: the
    simulation reads only the length, the first arrival time, where fleet operations start, and
    which optional columns exist)."""
    from servesim.workload.request import Workload

    column = lambda value, dtype: np.broadcast_to(np.array(value, dtype), (rows,))  # noqa: E731
    return Workload(
        arrival_s=column(0.0, np.float64),  # fleet operations (failures, autoscaling) start at 0
        prompt_tokens=column(1, np.int64),
        output_tokens=column(1, np.int64),
        priority=column(0, np.int64),
        adapter_ids=None if adapter_ranks is None else column(-1, np.int64),
        adapter_ranks=adapter_ranks,
        prefix_block_ids=[()] * rows if prefix_tokens else None,
        prefix_block_size=prefix_tokens or None,
        source="servesim serve",
    )
