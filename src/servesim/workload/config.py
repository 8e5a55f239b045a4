"""Validated, frozen configuration of a workload: a trace or a synthetic generator.

``WorkloadConfig`` is a union discriminated on ``kind``:

    kind: trace          -> TraceWorkloadConfig          (replay a trace file)
    kind: synthetic      -> SyntheticWorkloadConfig      (arrival process + length distributions)
    kind: agent          -> AgentWorkloadConfig          (agent programs, closed loop)
    kind: shared_prefix  -> SharedPrefixWorkloadConfig   (inference-perf's shared_prefix under load stages)
    kind: closed_loop    -> ClosedLoopWorkloadConfig     (benchmark clients, vllm bench --max-concurrency)

Validation errors are ``ValueError``s inside pydantic, so a scenario loader
sees them with their full field path; ``parse_workload_config`` turns them
into a one-line ``ConfigError`` for callers that hold a bare dict.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, model_validator

from servesim.errors import ConfigError

_FROZEN = ConfigDict(frozen=True, extra="forbid", defer_build=True, allow_inf_nan=False)  # finite numbers only


class DifficultyConfig(BaseModel):
    """How hard each request is, for model routing (``router.policy: route_balance`` and its baselines).

    A difficulty is a number in [0, 1] (0: any model answers well, 1: only the
    strongest may); each request's is drawn from Beta(a, b) on the stream
    ``workload.difficulty``, after every other draw, so switching it on leaves
    the rest of the workload unchanged.  Beta(1, 1) is uniform.
    """

    model_config = _FROZEN

    a: float = Field(1.0, gt=0, description="First shape parameter of the Beta distribution (a > b: mostly hard requests).")
    b: float = Field(1.0, gt=0, description="Second shape parameter of the Beta distribution (b > a: mostly easy requests).")


class SystemPromptsConfig(BaseModel):
    """Shared system prompts prefixed to every prompt, for prefix caching (docs/memory.md)."""

    model_config = _FROZEN

    count: int = Field(1, ge=1, description="Distinct system prompts (count).")
    tokens: int = Field(1024, ge=1, description="Length of each system prompt (tokens), added to every prompt.")
    zipf: float = Field(0.0, ge=0, description="Zipf exponent of their popularity (0: uniform).")


class RagConfig(BaseModel):
    """Prompts built from retrieved chunks (RAG): chunks, then the drawn prompt as the question."""

    model_config = _FROZEN

    num_chunks: int = Field(10000, ge=1, description="Chunks in the corpus (count).")
    chunks_per_request: int = Field(5, ge=1, description="Distinct chunks each prompt retrieves (count).")
    chunk_tokens: int = Field(512, ge=1, description="Tokens per chunk.")
    zipf: float = Field(1.0, ge=0, description="Zipf exponent of chunk popularity (0: uniform).")

    @model_validator(mode="after")
    def _enough_chunks(self) -> "RagConfig":
        if self.chunks_per_request > self.num_chunks:
            raise ValueError(f"chunks_per_request = {self.chunks_per_request} exceeds num_chunks = {self.num_chunks}")
        return self


class LoraConfig(BaseModel):
    """Requests asking for LoRA adapters of the model (S-LoRA; docs/memory.md)."""

    model_config = _FROZEN

    num_adapters: int = Field(100, ge=1, description="Adapters requests choose from (count).")
    zipf: float = Field(1.0, ge=0, description="Zipf exponent of their popularity (0: uniform).")
    ranks: list[int] = Field(default_factory=lambda: [8, 16, 32, 64], min_length=1,
                             description="Ranks an adapter may have, drawn uniformly per adapter.")


class RequestExtras(BaseModel):
    """What a trace or synthetic workload may add to its requests: difficulties, derived prefix
    chains (system prompts, session turns, RAG prompts) and LoRA adapters."""

    model_config = _FROZEN

    difficulty: DifficultyConfig | None = Field(
        None, description="Draw a difficulty in [0, 1] per request for model routing; null = none."
    )
    system_prompts: SystemPromptsConfig | None = Field(
        None, description="Prefix every prompt with one of a few shared system prompts (with their prefix-block chains)."
    )
    session_prefixes: bool = Field(
        False,
        description="Derive prefix-block chains from session turns: a turn shares its session's previous prompt (needs session ids).",
    )
    prefix_block_tokens: int = Field(
        64, ge=1, description="Tokens per prefix block of derived chains (system prompts, session turns, RAG prompts)."
    )
    rag: RagConfig | None = Field(
        None, description="Build every prompt from retrieved chunks, then the drawn prompt as the question (RAG)."
    )
    lora: LoraConfig | None = Field(None, description="Each request asks for one of many LoRA adapters; null: the base model.")


class TraceWorkloadConfig(RequestExtras):
    """Replay a trace file, optionally windowed, rescaled in time and sampled.

    The builder applies, in order: window, rate scaling, sampling,
    ``max_requests`` (see ``servesim.workload.builder``).
    """

    model_config = _FROZEN

    kind: Literal["trace"] = Field(description="Selects this config: replay a trace.")
    path: str = Field(
        min_length=1,
        description="Trace file path, or a trace shipped with servesim: 'builtin:azure-2023-conv', 'builtin:mooncake-conv'.",
    )
    format: Literal["auto", "azure2023", "azure2024", "burstgpt", "mooncake"] = Field(
        "auto",
        description="Trace format; 'auto' detects it from the extension (.jsonl = mooncake) or the CSV header.",
    )
    window_start_s: float | None = Field(
        None,
        ge=0,
        description="Start of the replayed window in seconds of trace time after the trace's first arrival "
        "(inclusive); None = from the first arrival. Kept arrivals are re-based so the window starts at 0.",
    )
    window_end_s: float | None = Field(
        None,
        gt=0,
        description="End of the replayed window in seconds of trace time after the trace's first arrival "
        "(exclusive); None = to the end of the trace.",
    )
    rate_scale: float = Field(
        1.0,
        gt=0,
        description="Arrival-rate multiplier (dimensionless): arrival times are divided by it, so 2.0 doubles the rate.",
    )
    sample_fraction: float = Field(
        1.0,
        gt=0,
        le=1,
        description="Probability (0 < f <= 1) of keeping each request, drawn from the seeded stream 'workload.sample'.",
    )
    max_requests: int | None = Field(
        None, ge=1, description="Keep at most this many requests (the earliest); None = no limit."
    )
    on_bad_row: Literal["skip", "error"] = Field(
        "skip",
        description="What a malformed trace row does: 'skip' counts it by reason in Workload.skipped, "
        "'error' stops with a message naming file, line, column and value.",
    )
    burstgpt_failed: Literal["skip", "keep"] = Field(
        "skip",
        description="BurstGPT failed requests (Response tokens = 0): 'skip' leaves them out, "
        "'keep' replays them with 1 output token.",
    )
    burstgpt_model: str | None = Field(
        None, description="BurstGPT only: keep rows whose Model is this (e.g. 'ChatGPT', 'GPT-4'); None = all."
    )
    burstgpt_log_type: str | None = Field(
        None,
        description="BurstGPT only: keep rows whose Log Type is this ('Conversation log' or 'API log'); None = all.",
    )

    @model_validator(mode="after")
    def _window_is_ordered(self) -> "TraceWorkloadConfig":
        start, end = self.window_start_s, self.window_end_s
        if start is not None and end is not None and end <= start:
            raise ValueError(
                f"window_end_s={end} must be greater than window_start_s={start} (the window is [start, end) in seconds)"
            )
        return self


class ArrivalConfig(BaseModel):
    """When synthetic requests arrive: a renewal process of independent gaps."""

    model_config = _FROZEN

    process: Literal["poisson", "gamma", "constant"] = Field(
        description="Inter-arrival gaps: 'poisson' exponential, 'gamma' with coefficient of variation cv, "
        "'constant' evenly spaced."
    )
    rate_rps: float = Field(gt=0, description="Mean arrival rate in requests per second.")
    cv: float = Field(
        1.0,
        gt=0,
        description="Gamma only: coefficient of variation of the gaps (std/mean, dimensionless); 1 = Poisson, "
        ">1 burstier, <1 more regular.",
    )
    rate_schedule: list[tuple[float, float]] | None = Field(
        None,
        description="Load over time: [[start_s, multiplier], ...] multiplies rate_rps from each start on (the first "
        "start must be 0), e.g. [[0, 1], [600, 3]] for a step to 3x at 10 min; the process runs in time changed to "
        "match (daily tides, steps, bursts); null: constant.",
    )

    @model_validator(mode="after")
    def _cv_only_for_gamma(self) -> "ArrivalConfig":
        if self.process != "gamma" and "cv" in self.model_fields_set and self.cv != 1.0:
            raise ValueError(f"cv={self.cv} is only used with process='gamma', not process={self.process!r}")
        sched = self.rate_schedule
        if sched is not None:
            starts = [t for t, _ in sched]
            if not sched or starts[0] != 0 or any(b <= a for a, b in zip(starts, starts[1:])):
                raise ValueError(f"rate_schedule starts {starts} must begin at 0 and increase")
            if any(not m > 0 for _, m in sched):
                raise ValueError(f"rate_schedule multipliers {[m for _, m in sched]} must be > 0")
        return self


# Which LengthConfig fields each distribution needs, and which it may take.
_NEEDS: dict[str, tuple[str, ...]] = {
    "fixed": ("value",),
    "uniform": ("low", "high"),
    "lognormal": ("median", "sigma"),
    "empirical": ("trace", "column"),
}
_SHARED = ("dist", "min", "max")


class LengthConfig(BaseModel):
    """A distribution of token counts (prompt or output length), always >= 1.

    Draws are clipped to ``[min, max]`` when those are set, for every dist.
    """

    model_config = _FROZEN

    dist: Literal["fixed", "uniform", "lognormal", "empirical"] = Field(
        description="'fixed' = value; 'uniform' = integers low..high; 'lognormal' = rounded lognormal with "
        "median and sigma; 'empirical' = resample a trace's column."
    )
    value: int | None = Field(None, ge=1, description="fixed: the length in tokens.")
    low: int | None = Field(None, ge=1, description="uniform: smallest length in tokens (inclusive).")
    high: int | None = Field(None, ge=1, description="uniform: largest length in tokens (inclusive).")
    median: float | None = Field(None, gt=0, description="lognormal: median length in tokens.")
    sigma: float | None = Field(
        None, ge=0, description="lognormal: standard deviation of the natural log of the length (dimensionless)."
    )
    min: int | None = Field(None, ge=1, description="Optional lower clip in tokens, any dist.")
    max: int | None = Field(None, ge=1, description="Optional upper clip in tokens, any dist.")
    trace: str | None = Field(
        None,
        min_length=1,
        description="empirical: trace to resample (file path or 'builtin:azure-2023-conv'; format auto-detected).",
    )
    column: Literal["prompt", "output"] | None = Field(
        None, description="empirical: which lengths to resample: 'prompt' or 'output' tokens."
    )

    @model_validator(mode="after")
    def _fields_match_dist(self) -> "LengthConfig":
        needed = _NEEDS[self.dist]
        for name in needed:
            if getattr(self, name) is None:
                raise ValueError(f"dist={self.dist!r} needs field {name!r} (got {name}=None)")
        for name in _NEEDS_ALL:
            if name not in needed and name not in _SHARED and getattr(self, name) is not None:
                raise ValueError(
                    f"field {name}={getattr(self, name)!r} is not used by dist={self.dist!r} "
                    f"(it takes {', '.join(needed)}, and optionally min, max)"
                )
        if self.dist == "uniform" and self.low > self.high:
            raise ValueError(f"uniform needs low <= high (got low={self.low}, high={self.high})")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min={self.min} must be <= max={self.max}")
        return self


_NEEDS_ALL = tuple(name for names in _NEEDS.values() for name in names)


class SyntheticWorkloadConfig(RequestExtras):
    """Generate requests: a renewal arrival process and independent lengths.

    Each part draws from its own seeded stream ('workload.arrivals',
    'workload.prompt_tokens', 'workload.output_tokens', 'workload.priority');
    priorities are 0 unless ``priority_mix`` is set.
    """

    model_config = _FROZEN

    kind: Literal["synthetic"] = Field(description="Selects this config: generate requests.")
    num_requests: int = Field(ge=1, description="Number of requests to generate (count).")
    arrival: ArrivalConfig = Field(description="Arrival process (rate in requests per second).")
    prompt_tokens: LengthConfig = Field(description="Prompt length distribution, in tokens.")
    output_tokens: LengthConfig = Field(description="Output length distribution, in tokens.")
    priority_mix: dict[int, float] | None = Field(
        None,
        description="Share of requests per priority level, e.g. {0: 0.2, 1: 0.8} (smaller = more urgent; shares sum to 1); null = all 0.",
    )

    @model_validator(mode="after")
    def _mix_sums_to_one(self) -> "SyntheticWorkloadConfig":
        mix = self.priority_mix
        if mix is not None:
            if not mix or any(share < 0 for share in mix.values()) or abs(sum(mix.values()) - 1.0) > 1e-9:
                raise ValueError(f"priority_mix = {mix!r}: shares must be >= 0 and sum to 1")
        return self


class ToolTimeConfig(BaseModel):
    """Time between an agent's calls (a tool running, or the user): lognormal."""

    model_config = _FROZEN

    median_s: float = Field(3.0, gt=0, description="Median gap (s).")
    sigma: float = Field(1.0, ge=0, description="Lognormal shape (sigma of the log).")


class AgentWorkloadConfig(BaseModel):
    """Agent programs (closed loop): each call is sent when the one before it has finished and a
    tool ran (docs/memory.md).  Programs start by an arrival process; their calls come from
    Claude Code traces or are drawn."""

    model_config = _FROZEN

    kind: Literal["agent"] = Field(description="Selects this config: agent programs.")
    source: Literal["synthetic", "claude_code"] = Field(
        "synthetic", description="'synthetic': drawn programs; 'claude_code': conversations of a Claude Code trace (path)."
    )
    path: str | None = Field(
        None, description="claude_code: a directory of trace_*.json files or a .tar.gz of them (relative to the scenario file)."
    )
    num_programs: int = Field(100, ge=1, description="Programs to run (count; at most the trace's conversations).")
    arrival: ArrivalConfig = Field(
        default_factory=lambda: ArrivalConfig(process="poisson", rate_rps=0.2),
        description="When programs start (rate in programs per second).",
    )
    turns: LengthConfig = Field(
        default_factory=lambda: LengthConfig(dist="uniform", low=5, high=30), description="synthetic: calls per program (count)."
    )
    first_prompt_tokens: LengthConfig = Field(
        default_factory=lambda: LengthConfig(dist="lognormal", median=4000, sigma=0.5),
        description="synthetic: the first call's prompt (tokens).",
    )
    added_tokens: LengthConfig = Field(
        default_factory=lambda: LengthConfig(dist="lognormal", median=800, sigma=1.0),
        description="synthetic: tokens each later call adds to the previous prompt and output (a tool's result).",
    )
    output_tokens: LengthConfig = Field(
        default_factory=lambda: LengthConfig(dist="lognormal", median=250, sigma=0.7), description="synthetic: output per call (tokens)."
    )
    tool_time: ToolTimeConfig = Field(default_factory=ToolTimeConfig, description="synthetic: the gap between calls.")
    prefix_block_tokens: int = Field(64, ge=1, description="synthetic: tokens per prefix block of the calls' chains.")
    difficulty: DifficultyConfig | None = Field(
        None, description="Draw a difficulty in [0, 1] per request for model routing; null = none."
    )

    @model_validator(mode="after")
    def _path_for_traces(self) -> "AgentWorkloadConfig":
        if self.source == "claude_code" and not self.path:
            raise ValueError("source = 'claude_code' needs path (a directory of trace_*.json or a .tar.gz)")
        return self


class StageConfig(BaseModel):
    """One load stage of a benchmark: a request rate held for a while."""

    model_config = _FROZEN

    rate_rps: float = Field(gt=0, description="Request rate of the stage (requests per second).")
    duration_s: float = Field(gt=0, description="Length of the stage (s); stages run back to back.")


class SharedPrefixWorkloadConfig(BaseModel):
    """inference-perf's ``shared_prefix`` data under its load stages (docs/benchmarks.md).

    ``num_system_prompts x users_per_system_prompt`` distinct prompts (system prompt i, then
    question j), shuffled once (stream ``workload.shuffle``) and sent in that order over and over;
    each stage starts again at the first.  A stage sends ``int(rate_rps x duration_s)`` requests.
    Each prompt's prefix-block chain is the same every time it is sent, and its system prompt's
    full blocks are shared by all its questions, so prefix caching hits on every repeat.
    """

    model_config = _FROZEN

    kind: Literal["shared_prefix"] = Field(description="Selects this config: inference-perf's shared_prefix benchmark.")
    num_system_prompts: int = Field(10, ge=1, description="Distinct system prompts (count; inference-perf's num_groups).")
    users_per_system_prompt: int = Field(
        10, ge=1, description="Distinct questions per system prompt (count; inference-perf's num_prompts_per_group)."
    )
    system_prompt_tokens: int = Field(ge=1, description="Length of each system prompt (tokens).")
    question_tokens: int = Field(ge=1, description="Length of each question (tokens).")
    extra_prompt_tokens: int = Field(
        0,
        ge=0,
        description="Tokens the server adds to every prompt (BOS, a chat template's header; e.g. 25), counted "
        "in front of the system prompt and so shared with it (tokens).",
    )
    output_tokens: int = Field(ge=1, description="Tokens generated per request, fixed (ignore_eos) (tokens).")
    stages: list[StageConfig] = Field(min_length=1, description="Load stages, run back to back from time 0.")
    arrival: Literal["constant", "poisson", "inference_perf"] = Field(
        "constant",
        description="Arrivals within a stage: 'constant' evenly spaced 1/rate_rps apart from the stage's start; "
        "'poisson' exponential gaps (a random count); 'inference_perf' int(rate_rps x duration_s) exponential gaps "
        "rescaled to sum to duration_s, the first one gap after the start (inference-perf's ConstantLoadTimer).",
    )
    prefix_block_tokens: int = Field(
        16, ge=1, description="Tokens per prefix block of the chains; must be a multiple of cluster.block_size (tokens)."
    )
    difficulty: DifficultyConfig | None = Field(
        None, description="Draw a difficulty in [0, 1] per request for model routing; null = none."
    )


class ClosedLoopWorkloadConfig(BaseModel):
    """Benchmark clients in a closed loop, as ``vllm bench serve --max-concurrency N`` runs them.

    ``concurrency`` clients start at time 0; each sends its next request the moment its previous
    one finished (no think time): client c sends requests c, c + N, c + 2N, ...  Lengths are
    drawn uniformly in ``[ceil(range_ratio x L), L]`` (streams ``workload.prompt_tokens`` and
    ``workload.output_tokens``); a shared prefix is added in front of the drawn prompt
    (``--random-prefix-len``), one of ``num_prefixes`` chosen uniformly per request (stream
    ``workload.system_prompts``), its full blocks shared.  A rejected request ends its client.
    """

    model_config = _FROZEN

    kind: Literal["closed_loop"] = Field(description="Selects this config: closed-loop benchmark clients.")
    concurrency: int = Field(ge=1, description="Clients, each with one request in flight (count; --max-concurrency).")
    num_requests: int = Field(ge=1, description="Requests sent in all, over all clients (count; --num-prompts).")
    input_len: int = Field(ge=1, description="Largest drawn prompt length L_in, before the shared prefix (tokens).")
    output_len: int = Field(ge=1, description="Largest output length L_out, generated in full (ignore_eos) (tokens).")
    range_ratio: float = Field(
        1.0,
        gt=0,
        le=1,
        description="Lengths are uniform integers in [ceil(range_ratio x L), L] (dimensionless, 0 < r <= 1; 1 = fixed).",
    )
    shared_prefix_tokens: int = Field(
        0, ge=0, description="Shared prefix added in front of every drawn prompt (tokens; --random-prefix-len); 0 = none."
    )
    num_prefixes: int = Field(1, ge=1, description="Distinct shared prefixes, one drawn uniformly per request (count).")
    prefix_block_tokens: int = Field(
        16, ge=1, description="Tokens per prefix block of the chains; must be a multiple of cluster.block_size (tokens)."
    )
    difficulty: DifficultyConfig | None = Field(
        None, description="Draw a difficulty in [0, 1] per request for model routing; null = none."
    )


WorkloadConfig = Annotated[
    Union[TraceWorkloadConfig, SyntheticWorkloadConfig, AgentWorkloadConfig, SharedPrefixWorkloadConfig,
          ClosedLoopWorkloadConfig],
    Field(discriminator="kind"),
]

_ADAPTERS: list[TypeAdapter] = []  # built on first use: building it is a start-up cost a run does not need


def _adapter() -> TypeAdapter:
    if not _ADAPTERS:
        _ADAPTERS.append(TypeAdapter(WorkloadConfig))
    return _ADAPTERS[0]


def parse_workload_config(data: Any):  # noqa: ANN201 - one of the WorkloadConfig models
    """Validate a plain dict (e.g. from YAML) into a workload config.

    Raises ConfigError with one line naming the first bad field's path, its
    value and the problem, e.g.
    ``workload.prompt_tokens: dist='uniform' needs field 'low' (got low=None)``.
    """
    try:
        return _adapter().validate_python(data)
    except ValidationError as err:
        first = err.errors()[0]
        loc = list(first["loc"])
        if loc and loc[0] in ("trace", "synthetic", "agent", "shared_prefix", "closed_loop"):
            loc = loc[1:]  # pydantic's union tag, not a field the user wrote
        where = ".".join(str(p) for p in ("workload", *loc))
        message = first["msg"].removeprefix("Value error, ")
        value = first.get("input")
        # Our own ValueErrors already name field and value; a whole dict
        # (a missing field's parent) would not fit on one line.
        shown = "" if first["type"] == "value_error" or isinstance(value, (dict, list)) else f" (value {value!r})"
        raise ConfigError(f"{where}: {message}{shown}") from None
