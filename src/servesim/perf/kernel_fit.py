"""Fit per-kernel physical models to vLLM's measured kernel latencies.

Source: AIConfigurator's kernel database (``ai-dynamo/aiconfigurator`` commit
095f58a, ``aic-core/src/aiconfigurator_core/systems/data/``, Apache-2.0),
copied under ``../shared/kernels/vllm/<gpu>_sxm/<op>/<framework>/<version>/``.
Latencies there are milliseconds; everything here is seconds.

Per GPU and kernel family the model is a roofline with a few parameters
(``servesim.perf.kernel_params``): efficiencies are fractions of the GPU's
catalog peaks (``data/hardware.yaml``), fixed costs are seconds.  Fits
minimise ``sum log(pred / measured)^2`` (``scipy.optimize.least_squares``,
bounded: efficiencies in (0, 1], times >= 0), so a 5% miss weighs the same
on a 5 µs and a 50 ms kernel.

Layout of this module:

* tables: ``load_table`` / ``load_family`` (pyarrow, newest schema only);
* models: ``gemm_time_s`` ... ``moe_time_s``, pure and vectorised;
* fits: ``fit_gemm`` ... ``fit_moe`` on a ``Rows`` of one GPU;
* ``fit_all``: every GPU and family, in-sample errors and the held-out-GPU
  check (each GPU predicted from the median of the other GPUs' parameters).

Choices, each applied the same way on every GPU:

* version: ``0.14.0`` where the GPU has that table, else ``0.24.0``;
* kernel: where one dtype has several ``kernel_source`` values (0.24.0), the
  one with the most rows (the engine's default path for that dtype);
* decode context ``s = isl + step`` (``isl`` is 1 on every generation row,
  ``step`` is 2^j - 1, so ``s`` runs over powers of two up to 131072);
* all-reduce: vLLM runs its custom all-reduce below a size limit and NCCL
  above; the target is ``min(custom graph, NCCL all_reduce)`` per message.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import astuple, dataclass, field, fields
from pathlib import Path
from types import MappingProxyType

import numpy as np
import pyarrow.parquet as pq
from scipy.optimize import least_squares

from servesim.errors import ConfigError
from servesim.perf.catalog import Catalog
from servesim.perf.hardware_spec import HardwareSpec
from servesim.perf.kernel_params import (
    AllReduceParams,
    DecodeAttentionParams,
    GemmParams,
    KernelParams,
    MoeParams,
    PrefillAttentionParams,
)

__all__ = [
    "GPU_FOLDERS",
    "ErrorStats",
    "FamilyFit",
    "FitReport",
    "Rows",
    "allreduce_time_s",
    "decode_attention_time_s",
    "error_stats",
    "fit_all",
    "gemm_time_s",
    "load_family",
    "load_table",
    "moe_time_s",
    "prefill_attention_time_s",
    "render_yaml",
]

GPU_FOLDERS: Mapping[str, str] = MappingProxyType(
    {"a100": "a100_sxm", "h100": "h100_sxm", "h200": "h200_sxm", "b200": "b200_sxm"}
)
VERSIONS = ("0.14.0", "0.24.0")  # first present wins
DTYPE_BYTES = MappingProxyType({"bf16": 2.0, "fp8": 1.0, "fp8_block": 1.0})
_TABLE_DTYPE = MappingProxyType({"bf16": "bfloat16", "fp8": "fp8", "fp8_block": "fp8_block"})
HEAD_DIM = 128
GEMM_NK_RANGE = (1024, 65536)
GEMM_M_MAX = 16384
ALLREDUCE_MAX_BYTES = 64 * 2**20
SKEWED = ("power_law_1.01", "power_law_1.2")
SERVING_MIN_PAIRS = 32  # decode: batch x KV heads per GPU
SERVING_MIN_CONTEXT = 64  # decode: cached tokens per sequence
SERVING_MIN_PREFILL_TOKENS = 512  # prefill: batch x prompt tokens
SERVING_MIN_EXPERT_WIDTH = 128  # MoE: expert intermediate size per tensor-parallel rank

Rows = Mapping[str, np.ndarray]  # column name -> values, all of one length


# ====================================================================== tables
def versions_for(dtype: str) -> tuple[str, ...]:
    """Table versions in order of preference for ``dtype``'s kernels.

    BF16: the 0.14.0 tables first (the engine generation of the measured serving runs).  FP8:
    the 0.24.0 tables first.  The 0.14.0 FP8 GEMM reaches 0.36 of the FP8 peak at 1024 rows and
    runs slower than BF16 from 128 rows on, where 0.24.0's CUTLASS FP8 kernel reaches 0.59 and
    is 1.4-1.6x faster than BF16, as FP8 serving is.
    """
    return VERSIONS[::-1] if dtype.startswith("fp8") else VERSIONS


def load_table(
    root: str | Path, gpu_id: str, op: str, table: str, framework: str = "vllm", versions: tuple[str, ...] = VERSIONS
) -> tuple[Rows, str] | None:
    """``(columns, version)`` of ``<root>/<gpu>_sxm/<op>/<framework>/<version>/<table>.parquet``.

    The version is the first of ``VERSIONS`` present (any single version for
    non-vLLM frameworks such as NCCL); ``None`` if the GPU has no such table.
    ``ConfigError`` if the root or the GPU's folder is missing.
    """
    root = Path(root)
    if gpu_id not in GPU_FOLDERS:
        raise ConfigError(f"kernel tables: unknown GPU {gpu_id!r}; known: {', '.join(GPU_FOLDERS)}")
    gpu_dir = root / GPU_FOLDERS[gpu_id]
    if not gpu_dir.is_dir():
        raise ConfigError(f"kernel tables: folder {gpu_dir} not found (expected <kernels>/{GPU_FOLDERS[gpu_id]}/)")
    base = gpu_dir / op / framework
    versions = versions if framework == "vllm" else tuple(sorted(p.name for p in base.glob("*") if p.is_dir()))
    for version in versions:
        path = base / version / f"{table}.parquet"
        if path.is_file():
            data = pq.read_table(path)
            return {name: data.column(name).to_numpy(zero_copy_only=False) for name in data.column_names}, version
    return None


def select(rows: Rows, mask: np.ndarray) -> Rows:
    """The rows where ``mask`` holds."""
    return {name: values[mask] for name, values in rows.items()}


def _main_kernel(rows: Rows, mask: np.ndarray) -> tuple[np.ndarray, str]:
    """``mask`` narrowed to the ``kernel_source`` with the most rows under it, and that source."""
    sources, counts = np.unique(rows["kernel_source"][mask], return_counts=True)
    if len(sources) == 0:
        return mask, ""
    best = str(sources[np.argmax(counts)])
    return mask & (rows["kernel_source"] == best), best


@dataclass(frozen=True)
class Family:
    """The rows one fit uses, in seconds, with where they came from."""

    rows: Rows
    measured_s: np.ndarray
    source: str  # "<version> <kernel_source>"


def load_family(root: str | Path, gpu_id: str, family: str, dtype: str = "bf16") -> Family | None:
    """The rows of one fit: ``family`` in gemm, decode_attention, prefill_attention, allreduce, moe, moe_skewed.

    ``None`` when the GPU has no table, or no row of this dtype.
    """
    if family == "gemm":
        loaded = load_table(root, gpu_id, "gemm", "gemm_perf", versions=versions_for(dtype))
        if loaded is None:
            return None
        rows, version = loaded
        lo, hi = GEMM_NK_RANGE
        mask = (
            (rows["gemm_dtype"] == _TABLE_DTYPE[dtype])
            & (rows["n"] >= lo) & (rows["n"] <= hi) & (rows["k"] >= lo) & (rows["k"] <= hi)
            & (rows["m"] <= GEMM_M_MAX)
        )  # fmt: skip
    elif family in ("decode_attention", "prefill_attention"):
        table = "generation_attention_perf" if family == "decode_attention" else "context_attention_perf"
        loaded = load_table(root, gpu_id, "attention", table, versions=versions_for(dtype))
        if loaded is None:
            return None
        rows, version = loaded
        mask = (rows["head_dim"] == HEAD_DIM) & (rows["kv_cache_dtype"] == _TABLE_DTYPE[dtype])
        if "window_size" in rows:
            mask &= rows["window_size"] == 0
        # The serving regime: enough (sequence, KV head) pairs to fill the GPU and enough context
        # to stream.  Below it the kernel's split heuristics, not bandwidth, set the time, and a
        # serving batch rarely lives there; those rows are still scored (error tables), not fitted.
        if family == "decode_attention":
            mask &= (rows["batch_size"] * rows["num_key_value_heads"] >= SERVING_MIN_PAIRS) & (
                rows["isl"] + rows["step"] >= SERVING_MIN_CONTEXT)
        else:
            mask &= rows["batch_size"] * rows["isl"] >= SERVING_MIN_PREFILL_TOKENS
    elif family in ("moe", "moe_skewed"):
        loaded = load_table(root, gpu_id, "moe", "moe_perf", versions=versions_for(dtype))
        if loaded is None:
            return None
        rows, version = loaded
        mask = rows["moe_dtype"] == _TABLE_DTYPE[dtype]
        balanced = mask & (rows["distribution"] == "balanced")
        _, kernel = _main_kernel(rows, balanced)
        # The serving regime: expert slices at least SERVING_MIN_EXPERT_WIDTH wide on a rank (a
        # 768-wide expert split 32 ways is a configuration nobody serves, and its tiny GEMMs
        # would set the efficiency every real deployment is priced at).
        wide = rows["inter_size"] / rows["moe_tp_size"] >= SERVING_MIN_EXPERT_WIDTH
        balanced &= wide
        mask &= wide
        if family == "moe":
            mask = balanced
        else:  # the skewed rows of the kernel the balanced fit used (or, with no balanced row, the main one)
            mask &= np.isin(rows["distribution"], SKEWED)
            if kernel:
                mask &= rows["kernel_source"] == kernel
    elif family == "allreduce":
        return _load_allreduce(root, gpu_id)
    else:
        raise ConfigError(f"kernel tables: unknown family {family!r}")
    mask, kernel = _main_kernel(rows, mask)
    if not mask.any():
        return None
    picked = select(rows, mask)
    return Family(picked, picked["latency"] * 1e-3, f"{version} {kernel}")


def _load_allreduce(root: str | Path, gpu_id: str) -> Family | None:
    custom = load_table(root, gpu_id, "comm", "custom_allreduce_perf")
    nccl = load_table(root, gpu_id, "comm", "nccl_perf", framework="nccl")
    parts, sources = [], []
    if custom is not None:
        rows, version = custom
        m = rows["backend"] == "vllm_graph"
        parts.append(select(rows, m))
        sources.append(f"{version} custom graph")
    if nccl is not None:
        rows, version = nccl
        m = (rows["op_name"] == "all_reduce") & (rows["nccl_dtype"] == "half")
        parts.append(select(rows, m))
        sources.append(f"min with nccl {version}")
    if not parts:
        return None
    # min over the tables per (num_gpus, message_size): what vLLM picks
    best: dict[tuple[int, int], float] = {}
    for part in parts:
        for n, size, lat in zip(part["num_gpus"], part["message_size"], part["latency"], strict=True):
            if 2 * size <= ALLREDUCE_MAX_BYTES:
                key = (int(n), int(size))
                best[key] = min(best.get(key, np.inf), float(lat))
    keys = sorted(best)
    rows = {
        "num_gpus": np.array([k[0] for k in keys], dtype=float),
        "message_size": np.array([k[1] for k in keys], dtype=float),
    }
    return Family(rows, np.array([best[k] for k in keys]) * 1e-3, " ".join(sources))


# ====================================================================== models
def gemm_time_s(m, n, k, bytes_per_weight: float, peak_flops_s: float, bw_bytes_s: float, p: GemmParams):
    """An ``m x k`` by ``k x n`` GEMM: compute (as if ``half_tokens`` more rows) or operand traffic, plus a fixed cost."""
    m, n, k = (np.asarray(a, dtype=float) for a in (m, n, k))
    compute = 2.0 * n * k * (m + p.half_tokens) / (peak_flops_s * p.efficiency)
    traffic = (n * k * bytes_per_weight + 2.0 * (m * k + m * n)) / (bw_bytes_s * p.bw_efficiency)
    return np.maximum(compute, traffic) + p.latency_s


def decode_attention_time_s(
    batch, context, num_heads, num_kv_heads, head_dim, kv_bytes: float, peak_bf16_flops_s: float,
    bw_bytes_s: float, p: DecodeAttentionParams,
):  # fmt: skip
    """One decode step of ``batch`` sequences with ``context`` cached tokens each: KV read or FLOPs."""
    b, s, hq, hkv, d = (np.asarray(a, dtype=float) for a in (batch, context, num_heads, num_kv_heads, head_dim))
    kv_read = b * s * 2.0 * hkv * d * kv_bytes / (bw_bytes_s * p.bw_efficiency)
    flops = b * s * hq * d * 4.0 / (peak_bf16_flops_s * p.flops_efficiency)
    return p.latency_s + p.per_seq_s * b + np.maximum(kv_read, flops)


def prefill_attention_time_s(batch, isl, num_heads, head_dim, peak_bf16_flops_s: float, p: PrefillAttentionParams):
    """Causal attention of ``batch`` prompts of ``isl`` new tokens each."""
    b, q, hq, d = (np.asarray(a, dtype=float) for a in (batch, isl, num_heads, head_dim))
    eff = p.flops_efficiency * q / (q + p.half_tokens)
    return p.latency_s + p.per_seq_s * b + b * (q * (q + 1) / 2) * 4.0 * hq * d / (peak_bf16_flops_s * eff)


def allreduce_time_s(message_bytes, num_gpus, link_bytes_s: float, p: AllReduceParams):
    """Ring all-reduce of ``message_bytes`` over ``num_gpus`` GPUs."""
    nbytes, n = np.asarray(message_bytes, dtype=float), np.asarray(num_gpus, dtype=float)
    latency = np.vectorize(lambda g: p.latency_for(int(g)), otypes=[float])(n)
    return latency + 2.0 * (n - 1) / n * nbytes / (link_bytes_s * p.link_efficiency)


def moe_expected_experts(num_tokens, topk, num_experts, ep):
    """Distinct experts ``num_tokens`` tokens touch on one of ``ep`` ranks, in expectation (uniform routing)."""
    t, k, e, ep = (np.asarray(a, dtype=float) for a in (num_tokens, topk, num_experts, ep))
    return (e / ep) * (1.0 - (1.0 - k / e) ** t)


def moe_time_s(
    num_tokens, hidden, inter, topk, num_experts, tp, ep, bytes_per_weight: float, peak_flops_s: float,
    bw_bytes_s: float, p: MoeParams,
):  # fmt: skip
    """Fused MoE on one rank: the rank's expert GEMMs (gate, up, down) or its touched experts' weights."""
    t, h, i, k, e, tp, ep = (np.asarray(a, dtype=float) for a in (num_tokens, hidden, inter, topk, num_experts, tp, ep))
    n_touched = moe_expected_experts(t, k, e, ep)
    weights = 3.0 * h * i / tp  # one expert's share on one rank
    compute = 2.0 * weights * (k * t / ep + n_touched * p.half_tokens) / (peak_flops_s * p.efficiency)
    traffic = n_touched * weights * bytes_per_weight / (bw_bytes_s * p.bw_efficiency)
    return p.latency_s + np.maximum(compute, traffic)


# ====================================================================== predictions on table rows
def predict(family: str, dtype: str, rows: Rows, hw: HardwareSpec, params) -> np.ndarray:
    """The model's time (s) for each table row of ``family``."""
    bw, bf16 = hw.mem_bw_bytes_s, hw.bf16_flops_s
    if family == "gemm":
        peak = hw.tensor_flops_s("fp8" if dtype.startswith("fp8") else "bf16")
        return gemm_time_s(rows["m"], rows["n"], rows["k"], DTYPE_BYTES[dtype], peak, bw, params)
    if family == "decode_attention":
        context = rows["isl"] + rows["step"]
        return decode_attention_time_s(
            rows["batch_size"], context, rows["num_heads"], rows["num_key_value_heads"], rows["head_dim"],
            DTYPE_BYTES[dtype], bf16, bw, params,
        )  # fmt: skip
    if family == "prefill_attention":
        return prefill_attention_time_s(rows["batch_size"], rows["isl"], rows["num_heads"], rows["head_dim"], bf16, params)
    if family == "allreduce":
        return allreduce_time_s(2.0 * rows["message_size"], rows["num_gpus"], hw.scaleup_bytes_s, params)
    if family in ("moe", "moe_skewed"):
        peak = hw.tensor_flops_s("fp8" if dtype.startswith("fp8") else "bf16")
        return moe_time_s(
            rows["num_tokens"], rows["hidden_size"], rows["inter_size"], rows["topk"], rows["num_experts"],
            rows["moe_tp_size"], rows["moe_ep_size"], DTYPE_BYTES[dtype], peak, bw, params,
        )  # fmt: skip
    raise ConfigError(f"kernel fit: unknown family {family!r}")


# ====================================================================== fitting
@dataclass(frozen=True)
class _Spec:
    """How to fit one family: the parameter class, a start, bounds, and scales (typical magnitudes)."""

    make: Callable[[np.ndarray], object]
    flatten: Callable[[object], np.ndarray]
    x0: tuple[float, ...]
    lower: tuple[float, ...]
    upper: tuple[float, ...]
    scale: tuple[float, ...]


def _dataclass_spec(cls, x0, lower, upper, scale) -> _Spec:
    return _Spec(lambda x: cls(*map(float, x)), lambda p: np.array(astuple(p), dtype=float), x0, lower, upper, scale)


_EPS = 1e-4  # lowest efficiency the fit may reach (bounds must exclude 0)
_LAT_MAX = 10e-3

_SPECS: Mapping[str, _Spec] = MappingProxyType({
    # efficiency, half_tokens, bw_efficiency, latency_s
    "gemm": _dataclass_spec(GemmParams, (0.7, 64, 0.8, 5e-6), (_EPS, 0, _EPS, 0), (1, 1e5, 1, _LAT_MAX), (1, 100, 1, 1e-5)),
    # latency_s, per_seq_s, bw_efficiency, flops_efficiency: starts at 1 (the FLOP roof off); started low it
    # settles at 0.08-0.17 of the BF16 peak and cuts the median error by under 0.5 point, so it stays ~1
    "decode_attention": _dataclass_spec(
        DecodeAttentionParams, (10e-6, 0.1e-6, 0.7, 1.0), (0, 0, _EPS, _EPS), (_LAT_MAX, 1e-3, 1, 1), (1e-5, 1e-7, 1, 1)
    ),
    # latency_s, per_seq_s, flops_efficiency
    # latency_s, per_seq_s, flops_efficiency, half_tokens (prompt length at half the plateau)
    "prefill_attention": _dataclass_spec(
        PrefillAttentionParams, (10e-6, 1e-6, 0.5, 200.0), (0, 0, _EPS, 0), (_LAT_MAX, 1e-3, 1, 1e5), (1e-5, 1e-6, 1, 100)
    ),
    # latency_s for 2, 4, 8 GPUs, link_efficiency
    "allreduce": _Spec(
        lambda x: AllReduceParams(((2, float(x[0])), (4, float(x[1])), (8, float(x[2]))), float(x[3])),
        lambda p: np.array([p.latency_for(2), p.latency_for(4), p.latency_for(8), p.link_efficiency]),
        (10e-6, 10e-6, 10e-6, 0.7), (0, 0, 0, _EPS), (_LAT_MAX, _LAT_MAX, _LAT_MAX, 1), (1e-5, 1e-5, 1e-5, 1),
    ),
    # efficiency, half_tokens, bw_efficiency, latency_s
    "moe": _dataclass_spec(MoeParams, (0.5, 64, 0.7, 20e-6), (_EPS, 0, _EPS, 0), (1, 1e5, 1, _LAT_MAX), (1, 100, 1, 1e-5)),
})


def fit_family(family: str, dtype: str, data: Family, hw: HardwareSpec, x0: Sequence[float] | None = None):
    """Parameters minimising ``sum log(pred / measured)^2`` over ``data``'s rows."""
    spec = _SPECS[family]
    scale = np.array(spec.scale)
    log_measured = np.log(data.measured_s)

    def residuals(z: np.ndarray) -> np.ndarray:
        return np.log(predict(family, dtype, data.rows, hw, spec.make(z * scale))) - log_measured

    start = np.array(spec.x0 if x0 is None else x0, dtype=float) / scale
    lower, upper = np.array(spec.lower) / scale, np.array(spec.upper) / scale
    start = np.clip(start, lower + 1e-9 * (upper - lower), upper - 1e-9 * (upper - lower))
    result = least_squares(residuals, start, bounds=(lower, upper), method="trf", x_scale=1.0)
    return spec.make(result.x * scale)


def median_params(family: str, params: Sequence[object]):
    """The element-wise median of several GPUs' parameters (the rule for a GPU with no tables)."""
    spec = _SPECS[family]
    return spec.make(np.median(np.stack([spec.flatten(p) for p in params]), axis=0))


# ====================================================================== errors
@dataclass(frozen=True)
class ErrorStats:
    """Absolute percentage errors of predictions against measurements."""

    rows: int
    median: float
    p90: float
    max: float


def error_stats(predicted_s: np.ndarray, measured_s: np.ndarray) -> ErrorStats:
    """Median, p90 and max of ``|predicted / measured - 1|`` in percent."""
    ape = np.abs(np.asarray(predicted_s) / np.asarray(measured_s) - 1.0) * 100.0
    return ErrorStats(int(ape.size), float(np.median(ape)), float(np.percentile(ape, 90)), float(ape.max()))


# ====================================================================== all GPUs
FAMILIES: tuple[tuple[str, str], ...] = (
    ("gemm", "bf16"), ("gemm", "fp8"), ("gemm", "fp8_block"),
    ("decode_attention", "bf16"), ("decode_attention", "fp8"),
    ("prefill_attention", "bf16"),
    ("allreduce", "bf16"),
    ("moe", "bf16"), ("moe", "fp8"),
)  # fmt: skip


@dataclass(frozen=True)
class FamilyFit:
    """One GPU's fit of one (family, dtype), its in-sample and held-out-GPU errors."""

    gpu_id: str
    family: str
    dtype: str
    source: str
    params: object | None  # None: no balanced rows to fit (skewed-only entries)
    in_sample: ErrorStats | None
    held_out: ErrorStats | None = None
    skewed: ErrorStats | None = None  # MoE: skewed rows under the balanced fit
    skew_ratio: Mapping[int, float] = field(default_factory=dict)  # MoE: num_tokens -> median skewed/balanced


@dataclass(frozen=True)
class FitReport:
    """Every fit, keyed ``(gpu_id, family, dtype)``, in GPU then family order."""

    fits: Mapping[tuple[str, str, str], FamilyFit]
    # (gpu, dtype) -> expert shape key -> (parameters, in-sample errors): fused MoE fitted shape by shape
    moe_shapes: Mapping[tuple[str, str], Mapping[str, tuple[MoeParams, ErrorStats]]] = field(default_factory=dict)

    def kernel_params(self, gpu_id: str) -> KernelParams:
        """The fitted values of one GPU as the simulator reads them."""
        mine = {(f, d): fit for (g, f, d), fit in self.fits.items() if g == gpu_id and fit.params is not None}
        by = lambda fam: MappingProxyType({d: fit.params for (f, d), fit in mine.items() if f == fam})  # noqa: E731
        return KernelParams(
            gpu_id=gpu_id,
            tables=MappingProxyType({f"{f}.{d}": fit.source for (f, d), fit in mine.items()}),
            gemm=by("gemm"),
            decode_attention=by("decode_attention"),
            prefill_attention=mine[("prefill_attention", "bf16")].params if ("prefill_attention", "bf16") in mine else None,
            allreduce=mine[("allreduce", "bf16")].params if ("allreduce", "bf16") in mine else None,
            moe=by("moe"),
            moe_shapes=MappingProxyType({d: MappingProxyType({k: v[0] for k, v in shapes.items()})
                                         for (g, d), shapes in self.moe_shapes.items() if g == gpu_id}),
        )


def fit_all(
    root: str | Path,
    gpu_ids: Sequence[str] = tuple(GPU_FOLDERS),
    families: Sequence[tuple[str, str]] = FAMILIES,
    catalog: Catalog | None = None,
    max_rows: int | None = None,
) -> FitReport:
    """Fit every GPU x family, then predict each GPU from the median of the others' parameters.

    ``max_rows`` subsamples each fit's rows (evenly, deterministically) to
    bound the time; errors are always computed on every row.
    """
    catalog = catalog or Catalog.default()
    hardware = {g: catalog.hardware(g) for g in gpu_ids}
    data: dict[tuple[str, str, str], Family] = {}
    fits: dict[tuple[str, str, str], FamilyFit] = {}
    for gpu in gpu_ids:
        for family, dtype in families:
            fam = load_family(root, gpu, family, dtype)
            if fam is None:
                continue
            fit_rows = fam if max_rows is None else _subsample(fam, max_rows)
            params = fit_family(family, dtype, fit_rows, hardware[gpu])
            stats = error_stats(predict(family, dtype, fam.rows, hardware[gpu], params), fam.measured_s)
            data[(gpu, family, dtype)] = fam
            fits[(gpu, family, dtype)] = FamilyFit(gpu, family, dtype, fam.source, params, stats)

    out: dict[tuple[str, str, str], FamilyFit] = {}
    for gpu in gpu_ids:
        for family, dtype in families:
            others = [fits[(g, family, dtype)].params for g in gpu_ids if g != gpu and (g, family, dtype) in fits]
            held_params = median_params(family, others) if others else None
            key = (gpu, family, dtype)
            if key in fits:
                fit = fits[key]
                held = None
                if held_params is not None:
                    fam = data[key]
                    held = error_stats(predict(family, dtype, fam.rows, hardware[gpu], held_params), fam.measured_s)
                skewed, ratio = None, {}
                if family == "moe":
                    skewed, ratio = _skew(root, gpu, dtype, data[key], hardware[gpu], fit.params)
                out[key] = FamilyFit(gpu, family, dtype, fit.source, fit.params, fit.in_sample, held, skewed, ratio)
            elif family == "moe" and held_params is not None:
                # no balanced rows (A100): report its skewed rows under the others' parameters
                sk = load_family(root, gpu, "moe_skewed", dtype)
                if sk is not None:
                    stats = error_stats(predict("moe", dtype, sk.rows, hardware[gpu], held_params), sk.measured_s)
                    out[key] = FamilyFit(gpu, family, dtype, sk.source + " (skewed rows only)", None, None, None, stats)
    shapes = {}
    for gpu in gpu_ids:
        for dtype in ("bf16", "fp8"):
            found = fit_moe_shapes(root, gpu, dtype, hardware[gpu], max_rows)
            if found:
                shapes[(gpu, dtype)] = found
    return FitReport(MappingProxyType(out), MappingProxyType(shapes))


def moe_shape_key(hidden: int, inter: int, num_experts: int, topk: int, tp: int, ep: int) -> str:
    """How a fused-MoE configuration is named in the YAML: ``HIDDENxINTERxEXPERTSxTOPK/tpN/epM``."""
    return f"{int(hidden)}x{int(inter)}x{int(num_experts)}x{int(topk)}/tp{int(tp)}/ep{int(ep)}"


def fit_moe_shapes(root, gpu: str, dtype: str, hw: HardwareSpec, max_rows: int | None = None) -> dict:
    """Fused MoE fitted separately for each configuration the tables hold: an expert shape split
    over ``tp`` x ``ep`` GPUs, its rows a sweep of the token count.

    The fused-MoE kernels are tuned shape by shape (vLLM ships per-shape launch configurations),
    so one set of efficiencies cannot serve both Mixtral's eight wide experts and DeepSeek's 256
    narrow ones (the all-shape fit misses Mixtral's TP2 rows by 30-270%).  The physical form
    stays the same, so it prices any token count; a deployment whose configuration was measured
    uses its values, any other the all-shape fit.
    """
    loaded = load_table(root, gpu, "moe", "moe_perf", versions=versions_for(dtype))
    if loaded is None:
        return {}
    rows, version = loaded
    mask = (rows["moe_dtype"] == _TABLE_DTYPE[dtype]) & (rows["distribution"] == "balanced")
    mask, kernel = _main_kernel(rows, mask)
    out = {}
    keys = np.array([moe_shape_key(*v) for v in zip(rows["hidden_size"], rows["inter_size"], rows["num_experts"],
                                                     rows["topk"], rows["moe_tp_size"], rows["moe_ep_size"])])
    for key in sorted(set(keys[mask])):
        picked = select(rows, mask & (keys == key))
        fam = Family(picked, picked["latency"] * 1e-3, f"{version} {kernel}")
        if len(fam.measured_s) < 12:
            continue
        fit_rows = fam if max_rows is None else _subsample(fam, max_rows)
        params = fit_family("moe", dtype, fit_rows, hw)
        out[key] = (params, error_stats(predict("moe", dtype, fam.rows, hw, params), fam.measured_s))
    return out


def _subsample(fam: Family, max_rows: int) -> Family:
    n = len(fam.measured_s)
    if n <= max_rows:
        return fam
    idx = np.linspace(0, n - 1, max_rows).astype(int)
    return Family({k: v[idx] for k, v in fam.rows.items()}, fam.measured_s[idx], fam.source)


_MOE_KEY = ("num_tokens", "hidden_size", "inter_size", "topk", "num_experts", "moe_tp_size", "moe_ep_size")


def _skew(root, gpu: str, dtype: str, balanced: Family, hw: HardwareSpec, params) -> tuple[ErrorStats | None, dict]:
    """Skewed rows' error under the balanced fit, and the median skewed/balanced ratio per num_tokens."""
    sk = load_family(root, gpu, "moe_skewed", dtype)
    if sk is None:
        return None, {}
    stats = error_stats(predict("moe", dtype, sk.rows, hw, params), sk.measured_s)
    base = {tuple(int(balanced.rows[c][i]) for c in _MOE_KEY): balanced.measured_s[i] for i in range(len(balanced.measured_s))}
    ratios: dict[int, list[float]] = {}
    for i in range(len(sk.measured_s)):
        key = tuple(int(sk.rows[c][i]) for c in _MOE_KEY)
        if key in base:
            ratios.setdefault(key[0], []).append(sk.measured_s[i] / base[key])
    return stats, {t: float(np.median(v)) for t, v in sorted(ratios.items())}


# ====================================================================== YAML
def _num(value: float) -> str:
    """4 significant digits, always a YAML float (PyYAML needs a '.' before an exponent)."""
    text = f"{value:.4g}"
    if "e" in text:
        mantissa, exponent = text.split("e")
        if "." not in mantissa:
            mantissa += ".0"
        text = f"{mantissa}e{exponent}"
    elif "." not in text:
        text += ".0"
    return text


def _flow(params) -> str:
    if isinstance(params, AllReduceParams):
        lat = ", ".join(f"{n}: {_num(s)}" for n, s in params.latency_s)
        return f"{{latency_s: {{{lat}}}, link_efficiency: {_num(params.link_efficiency)}}}"
    return "{" + ", ".join(f"{f.name}: {_num(getattr(params, f.name))}" for f in fields(params)) + "}"


def _stats_flow(s: ErrorStats | None) -> str:
    if s is None:
        return "null"
    return f"{{rows: {s.rows}, median: {s.median:.1f}, p90: {s.p90:.1f}, max: {s.max:.0f}}}"


HEADER = """\
# vLLM kernel parameters per GPU, fitted by benchmarks/kernel_fit.py --write
# (servesim.perf.kernel_fit; read by servesim.perf.kernel_params).
#
# Source: measured latencies of vLLM's own kernels from NVIDIA's AIConfigurator
# kernel database, ai-dynamo/aiconfigurator commit 095f58a, path
# aic-core/src/aiconfigurator_core/systems/data/ (Apache-2.0), via
# ../shared/kernels/vllm. Tables: vLLM 0.14.0 where the GPU has it, else 0.24.0;
# the kernel_source with the most rows per dtype; `tables` names both.
#
# Units: efficiencies are fractions of the GPU's own peaks in data/hardware.yaml
# (dtype dense tensor FLOP/s, memory bandwidth, NVLink per direction); times in
# seconds. Formulas: docstrings of servesim/perf/kernel_params.py.
#
# `errors`: absolute percentage error of the model against every row it was fit
# on (in_sample) and of the median of the OTHER GPUs' parameters on the same rows
# (held_out: the rule for a GPU with no tables). moe_skewed: power-law routed rows
# under the balanced fit; moe_skew_ratio: median measured skewed/balanced time by
# num_tokens. A missing family or dtype means no table (the consumer falls back).
"""


def render_yaml(report: FitReport) -> str:
    """The text of ``data/engines/vllm_kernels.yaml`` for ``report``."""
    lines = [HEADER, "gpus:"]
    gpus = list(dict.fromkeys(g for g, _, _ in report.fits))
    for gpu in gpus:
        mine = {(f, d): fit for (g, f, d), fit in report.fits.items() if g == gpu}
        lines.append(f"  {gpu}:")
        lines.append("    tables:")
        for (f, d), fit in mine.items():
            lines.append(f"      {f}.{d}: \"{fit.source}\"")
        for family in ("gemm", "decode_attention", "moe"):
            entries = [(d, fit) for (f, d), fit in mine.items() if f == family and fit.params is not None]
            if entries:
                lines.append(f"    {family}:")
                lines.extend(f"      {d}: {_flow(fit.params)}" for d, fit in entries)
        for family in ("prefill_attention", "allreduce"):
            fit = mine.get((family, "bf16"))
            if fit is not None and fit.params is not None:
                lines.append(f"    {family}: {_flow(fit.params)}")
        shapes = {d: report.moe_shapes[(g, d)] for (g, d) in report.moe_shapes if g == gpu}
        if shapes:
            lines.append("    moe_shapes:  # HIDDENxINTERxEXPERTSxTOPK/tpN/epM: fused MoE fitted on that configuration's rows")
            for d, found in shapes.items():
                lines.append(f"      {d}:")
                lines.extend(f"        \"{k}\": {_flow(params)}" for k, (params, _) in found.items())
        lines.append("    errors:")
        for d, found in shapes.items():
            for k, (_, stats) in found.items():
                lines.append(f"      moe_shape.{d}.{k}: {_stats_flow(stats)}")
        for (f, d), fit in mine.items():
            lines.append(f"      {f}.{d}:")
            lines.append(f"        in_sample: {_stats_flow(fit.in_sample)}")
            lines.append(f"        held_out: {_stats_flow(fit.held_out)}")
            if f == "moe":
                lines.append(f"        moe_skewed: {_stats_flow(fit.skewed)}")
                if fit.skew_ratio:
                    ratio = ", ".join(f"{t}: {r:.2f}" for t, r in fit.skew_ratio.items())
                    lines.append(f"        moe_skew_ratio: {{{ratio}}}")
    return "\n".join(lines) + "\n"
