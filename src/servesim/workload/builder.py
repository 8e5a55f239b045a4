"""Turn a ``WorkloadConfig`` into a ``Workload``.

Trace workloads: read the trace, then apply, in this order,

1. the window ``[window_start_s, window_end_s)`` on trace time (seconds after
   the trace's first arrival), re-based so the window starts at 0;
2. rate scaling: arrival times divided by ``rate_scale``;
3. sampling: each request kept with probability ``sample_fraction``, drawn
   from the stream ``workload.sample``;
4. ``max_requests``: the earliest requests that remain.

So ``max_requests`` counts requests after sampling, and the window is given
in the trace's own time, before rescaling.

Synthetic workloads draw arrivals, prompt lengths and output lengths from
three separate streams (``workload.arrivals``, ``workload.prompt_tokens``,
``workload.output_tokens``), so changing one distribution leaves the draws
of the others unchanged.  The same seed always gives the same workload.

Benchmark clients (``servesim.workload.benchmarks``): ``shared_prefix`` draws
its stage arrivals from ``workload.arrivals`` and shuffles its prompts on
``workload.shuffle``; ``closed_loop`` draws lengths from
``workload.prompt_tokens`` and ``workload.output_tokens`` and picks shared
prefixes on ``workload.system_prompts``.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from servesim.core.rng import RandomStreams
from servesim.errors import ConfigError, TraceError
from servesim.workload import synthetic as gen
from servesim.workload import transforms
from servesim.workload.config import (
    AgentWorkloadConfig,
    ArrivalConfig,
    ClosedLoopWorkloadConfig,
    DifficultyConfig,
    LengthConfig,
    SharedPrefixWorkloadConfig,
    SyntheticWorkloadConfig,
    TraceWorkloadConfig,
)
from servesim.workload.request import Workload


def read_trace(*args, **kwargs):  # noqa: ANN002, ANN003 - forwards to servesim.workload.traces
    """``servesim.workload.traces.read_trace``, imported on first use: a synthetic
    workload with parametric lengths never reads a trace, and short runs feel the readers' import."""
    from servesim.workload.traces import read_trace as read

    return read(*args, **kwargs)


def build_workload(cfg: TraceWorkloadConfig | SyntheticWorkloadConfig, streams: RandomStreams) -> Workload:
    """Build the workload ``cfg`` describes, drawing randomness from ``streams``.

    Raises TraceError when a trace cannot be read or nothing is left after
    windowing/sampling, ConfigError for a config of unknown type.
    """
    if isinstance(cfg, TraceWorkloadConfig):
        built = _with_prefixes(_build_trace(cfg, streams), cfg, streams)
        return _with_adapters(_with_difficulty(built, cfg.difficulty, streams), cfg.lora, streams)
    if isinstance(cfg, SyntheticWorkloadConfig):
        built = _with_prefixes(_build_synthetic(cfg, streams), cfg, streams)
        return _with_adapters(_with_difficulty(built, cfg.difficulty, streams), cfg.lora, streams)
    if isinstance(cfg, AgentWorkloadConfig):
        return _with_difficulty(_build_agent(cfg, streams), cfg.difficulty, streams)
    if isinstance(cfg, SharedPrefixWorkloadConfig):
        return _with_difficulty(_build_shared_prefix(cfg, streams), cfg.difficulty, streams)
    if isinstance(cfg, ClosedLoopWorkloadConfig):
        return _with_difficulty(_build_closed_loop(cfg, streams), cfg.difficulty, streams)
    raise ConfigError(f"workload: unknown config type {type(cfg).__name__}; expected kind 'trace', 'synthetic', "
                      "'agent', 'shared_prefix' or 'closed_loop'")


def _with_prefixes(workload: Workload, cfg, streams: RandomStreams) -> Workload:
    """Derived prefix-block chains: from session turns, shared system prompts (stream
    ``workload.system_prompts``) or RAG prompts (stream ``workload.rag``); unchanged when none
    is configured."""
    from servesim.workload import prefix_chains  # (imported by the runs that derive chains)

    if cfg.session_prefixes:
        if workload.session_id is None:
            raise ConfigError(f"workload.session_prefixes: the workload ({workload.source}) has no session ids")
        workload = prefix_chains.session_chains(workload, cfg.prefix_block_tokens)
    sp = cfg.system_prompts
    derived = [name for name in ("session_prefixes", "system_prompts", "rag") if getattr(cfg, name)]
    if len(derived) > 1:
        raise ConfigError(f"workload: {' and '.join(derived)} cannot be combined yet; pick one")
    if cfg.rag is not None:
        r = cfg.rag
        workload = prefix_chains.rag_prompts(workload, streams.stream("workload.rag"), num_chunks=r.num_chunks,
                                             chunks_per_request=r.chunks_per_request, chunk_tokens=r.chunk_tokens,
                                             zipf=r.zipf, block_tokens=cfg.prefix_block_tokens)
    if sp is not None:
        workload = prefix_chains.with_system_prompts(workload, streams.stream("workload.system_prompts"), count=sp.count,
                                                     tokens=sp.tokens, zipf=sp.zipf, block_tokens=cfg.prefix_block_tokens)
    return workload


def _with_adapters(workload: Workload, cfg, streams: RandomStreams) -> Workload:
    """``workload`` with a LoRA adapter per request (Zipf-popular, stream ``workload.lora``) and a
    rank per adapter (drawn uniformly from ``cfg.ranks``); unchanged when ``cfg`` is None."""
    if cfg is None:
        return workload
    rng = streams.stream("workload.lora")
    ranks = np.asarray(cfg.ranks, np.int64)[rng.integers(0, len(cfg.ranks), cfg.num_adapters)]
    weights = np.arange(1, cfg.num_adapters + 1, dtype=np.float64) ** -cfg.zipf
    ids = rng.choice(cfg.num_adapters, size=len(workload), p=weights / weights.sum())
    return dataclasses.replace(workload, adapter_ids=ids.astype(np.int64), adapter_ranks=ranks)


def _with_difficulty(workload: Workload, cfg: DifficultyConfig | None, streams: RandomStreams) -> Workload:
    """``workload`` with a Beta(a, b) difficulty per request (unchanged when ``cfg`` is None)."""
    if cfg is None:
        return workload
    drawn = streams.stream("workload.difficulty").beta(cfg.a, cfg.b, len(workload))
    return dataclasses.replace(workload, difficulty=drawn)


# --------------------------------------------------------------------------- trace


def _build_trace(cfg: TraceWorkloadConfig, streams: RandomStreams) -> Workload:
    workload = read_trace(
        cfg.path,
        cfg.format,
        cfg.on_bad_row,
        burstgpt_failed=cfg.burstgpt_failed,
        burstgpt_model=cfg.burstgpt_model,
        burstgpt_log_type=cfg.burstgpt_log_type,
    )
    span_s = float(workload.arrival_s[-1])
    workload = transforms.window(workload, cfg.window_start_s, cfg.window_end_s)
    if len(workload) == 0:
        raise TraceError(
            f"trace {cfg.path}: window [{cfg.window_start_s}, {cfg.window_end_s}) s holds no request "
            f"(the trace's arrivals span 0 to {span_s:.3f} s)"
        )
    workload = transforms.scale_rate(workload, cfg.rate_scale)
    workload = transforms.sample(workload, cfg.sample_fraction, streams.stream("workload.sample"))
    if len(workload) == 0:
        raise TraceError(f"trace {cfg.path}: sample_fraction={cfg.sample_fraction} kept no request")
    return transforms.truncate(workload, cfg.max_requests)


# --------------------------------------------------------------------------- synthetic


def _build_synthetic(cfg: SyntheticWorkloadConfig, streams: RandomStreams) -> Workload:
    n = cfg.num_requests
    gaps = _gaps(cfg.arrival, streams.stream("workload.arrivals"), n)
    pools: dict[str, Workload] = {}  # one read per empirical trace in this call
    prompt = _lengths(cfg.prompt_tokens, streams.stream("workload.prompt_tokens"), n, pools)
    output = _lengths(cfg.output_tokens, streams.stream("workload.output_tokens"), n, pools)
    a = cfg.arrival
    rate = f"{a.rate_rps:g}rps" + (f",cv={a.cv:g}" if a.process == "gamma" else "")
    priority = None
    if cfg.priority_mix is not None:
        levels = sorted(cfg.priority_mix)
        shares = np.array([cfg.priority_mix[k] for k in levels])
        priority = np.asarray(levels, np.int64)[streams.stream("workload.priority").choice(len(levels), n, p=shares)]
    return Workload.from_arrays(_arrivals(a, gaps), prompt, output, priority, source=f"synthetic:{a.process}({rate})")


# --------------------------------------------------------------------------- agent programs


def _build_agent(cfg: AgentWorkloadConfig, streams: RandomStreams) -> Workload:
    """Agent programs: starts from ``workload.arrivals``; synthetic calls from their own streams."""
    from servesim.workload import agent
    if cfg.source == "claude_code":
        programs, block_tokens = agent.read_claude_code(cfg.path, cfg.num_programs)
        source = f"claude_code:{cfg.path}"
    else:
        n, pools = cfg.num_programs, {}
        turns = _lengths(cfg.turns, streams.stream("workload.turns"), n, pools)
        calls = int(turns.sum())
        programs = agent.synthetic_programs(
            streams.stream("workload.programs"),
            n,
            turns=turns,
            first_prompt=_lengths(cfg.first_prompt_tokens, streams.stream("workload.prompt_tokens"), n, pools),
            added=_lengths(cfg.added_tokens, streams.stream("workload.added_tokens"), calls, pools),
            output=_lengths(cfg.output_tokens, streams.stream("workload.output_tokens"), calls, pools),
            tool_s=streams.stream("workload.tool_time").lognormal(np.log(cfg.tool_time.median_s), cfg.tool_time.sigma, calls),
            block_tokens=cfg.prefix_block_tokens,
        )
        block_tokens, source = cfg.prefix_block_tokens, "agent:synthetic"
    starts = _arrivals(cfg.arrival, _gaps(cfg.arrival, streams.stream("workload.arrivals"), len(programs)))
    return agent.programs_workload(programs, starts, block_tokens, source)


# --------------------------------------------------------------------------- benchmark clients


def _build_shared_prefix(cfg: SharedPrefixWorkloadConfig, streams: RandomStreams) -> Workload:
    """inference-perf's shared_prefix: arrivals from ``workload.arrivals``, the prompt list
    shuffled once on ``workload.shuffle``."""
    from servesim.workload import benchmarks

    stages = [(s.rate_rps, s.duration_s) for s in cfg.stages]
    arrival, stage = benchmarks.stage_arrivals(stages, cfg.arrival, streams.stream("workload.arrivals"))
    if len(arrival) == 0:
        raise ConfigError(f"workload.stages: {stages} (rate_rps, duration_s) send no request; "
                          "a stage sends int(rate_rps x duration_s)")
    order = streams.stream("workload.shuffle").permutation(cfg.num_system_prompts * cfg.users_per_system_prompt)
    return benchmarks.shared_prefix_workload(
        arrival, stage, order, num_groups=cfg.num_system_prompts, prompts_per_group=cfg.users_per_system_prompt,
        head_tokens=cfg.extra_prompt_tokens + cfg.system_prompt_tokens, question_tokens=cfg.question_tokens,
        output_tokens=cfg.output_tokens, block_tokens=cfg.prefix_block_tokens,
        source=f"shared_prefix:{cfg.num_system_prompts}x{cfg.users_per_system_prompt},{cfg.arrival}",
    )


def _build_closed_loop(cfg: ClosedLoopWorkloadConfig, streams: RandomStreams) -> Workload:
    """Closed-loop clients: lengths from ``workload.prompt_tokens`` and ``workload.output_tokens``,
    shared prefixes (when set) chosen on ``workload.system_prompts``."""
    from servesim.workload import benchmarks, prefix_chains

    n = cfg.num_requests
    prompt = benchmarks.range_lengths(streams.stream("workload.prompt_tokens"), n, cfg.input_len, cfg.range_ratio)
    output = benchmarks.range_lengths(streams.stream("workload.output_tokens"), n, cfg.output_len, cfg.range_ratio)
    workload = benchmarks.closed_loop_workload(prompt, output, cfg.concurrency, source=f"closed_loop:{cfg.concurrency}")
    if cfg.shared_prefix_tokens:
        workload = prefix_chains.with_system_prompts(
            workload, streams.stream("workload.system_prompts"), count=cfg.num_prefixes,
            tokens=cfg.shared_prefix_tokens, zipf=0.0, block_tokens=cfg.prefix_block_tokens,
        )
    return workload


def _arrivals(arrival: ArrivalConfig, gaps: np.ndarray) -> np.ndarray:
    """Arrival times from the gaps, under the rate schedule when there is one."""
    times = gen.arrivals_from_gaps(gaps)
    return times if arrival.rate_schedule is None else gen.apply_rate_schedule(times, arrival.rate_schedule)


def _gaps(arrival: ArrivalConfig, rng: np.random.Generator, n: int) -> np.ndarray:
    if arrival.process == "poisson":
        return gen.poisson_gaps(rng, n, arrival.rate_rps)
    if arrival.process == "gamma":
        return gen.gamma_gaps(rng, n, arrival.rate_rps, arrival.cv)
    return gen.constant_gaps(n, arrival.rate_rps)


def _lengths(cfg: LengthConfig, rng: np.random.Generator, n: int, pools: dict[str, Workload]) -> np.ndarray:
    if cfg.dist == "fixed":
        drawn = gen.fixed_lengths(n, cfg.value)
    elif cfg.dist == "uniform":
        drawn = gen.uniform_lengths(rng, n, cfg.low, cfg.high)
    elif cfg.dist == "lognormal":
        drawn = gen.lognormal_lengths(rng, n, cfg.median, cfg.sigma)
    else:
        if cfg.trace not in pools:
            pools[cfg.trace] = read_trace(cfg.trace)
        source = pools[cfg.trace]
        drawn = gen.empirical_lengths(rng, n, source.prompt_tokens if cfg.column == "prompt" else source.output_tokens)
    return gen.clip_lengths(drawn, cfg.min, cfg.max)
