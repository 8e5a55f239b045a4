"""``KernelParams``: per-GPU kernel efficiencies fitted to vLLM's measured kernels.

The values live in ``servesim/data/engines/vllm_kernels.yaml``, written by
``benchmarks/kernel_fit.py --write`` (``servesim.perf.kernel_fit``) from
AIConfigurator's vLLM kernel tables.  Each family is a handful of physical
numbers: efficiencies are fractions of the GPU's own catalog peak (dense
tensor FLOP/s, memory bandwidth, link bandwidth), times are in seconds.  The
formulas they plug into are ``servesim.perf.kernel_fit``'s ``*_time_s``
functions.

A GPU without tables gives ``None``; a family or dtype a GPU has no table
for (A100 has no FP8) is missing from its mappings.  Either way the caller
falls back to its own defaults.  This module imports only PyYAML, so the
simulator can load it at run time.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from types import MappingProxyType
from typing import Any

from servesim import yaml_text
from servesim.errors import CatalogError

__all__ = [
    "AllReduceParams",
    "DecodeAttentionParams",
    "GemmParams",
    "KernelParams",
    "MoeParams",
    "PrefillAttentionParams",
    "kernel_params_gpu_ids",
    "load_kernel_params",
]

_RESOURCE = "engines/vllm_kernels.yaml"


@dataclass(frozen=True, slots=True)
class GemmParams:
    """``t = max(2nk(m + half_tokens) / (peak * efficiency), bytes / (BW * bw_efficiency)) + latency_s``."""

    efficiency: float  # plateau fraction of the dtype's dense tensor peak
    half_tokens: float  # rows a GEMM pays as if it had them in addition (tile fill)
    bw_efficiency: float  # fraction of peak memory bandwidth when streaming operands
    latency_s: float  # fixed kernel time


@dataclass(frozen=True, slots=True)
class DecodeAttentionParams:
    """``t = latency_s + per_seq_s * b + max(KV bytes / (BW * bw_efficiency), FLOPs / (peak_bf16 * flops_efficiency))``."""

    latency_s: float
    per_seq_s: float
    bw_efficiency: float
    flops_efficiency: float


@dataclass(frozen=True, slots=True)
class PrefillAttentionParams:
    """``t = latency_s + per_seq_s * b + causal FLOPs / (peak_bf16 * eff(q))`` with
    ``eff(q) = flops_efficiency * q / (q + half_tokens)`` for prompts of ``q`` tokens
    (``q`` at least one 128-row query tile): short prompts fill fewer query tiles per KV block."""

    latency_s: float
    per_seq_s: float
    flops_efficiency: float
    half_tokens: float = 0.0


@dataclass(frozen=True, slots=True)
class AllReduceParams:
    """``t = latency_s[n] + 2 (n-1)/n * bytes / (link_per_dir * link_efficiency)``."""

    latency_s: tuple[tuple[int, float], ...]  # (GPU count, seconds), ascending GPU count
    link_efficiency: float

    def latency_for(self, num_gpus: int) -> float:
        """The fixed cost at the measured GPU count nearest ``num_gpus`` (on a log scale)."""
        return min(self.latency_s, key=lambda pair: abs(math.log(pair[0] / num_gpus)))[1]


@dataclass(frozen=True, slots=True)
class MoeParams:
    """Fused MoE: ``t = latency_s + max(expert FLOPs / (peak * efficiency), expert weights / (BW * bw_efficiency))``."""

    efficiency: float
    half_tokens: float
    bw_efficiency: float
    latency_s: float


@dataclass(frozen=True, slots=True)
class KernelParams:
    """One GPU's fitted kernel parameters; dtype keys are 'bf16', 'fp8' (and 'fp8_block' for GEMM)."""

    gpu_id: str
    tables: Mapping[str, str]  # family -> table version (and kernel) the fit used
    gemm: Mapping[str, GemmParams] = field(default_factory=lambda: MappingProxyType({}))
    decode_attention: Mapping[str, DecodeAttentionParams] = field(default_factory=lambda: MappingProxyType({}))
    prefill_attention: PrefillAttentionParams | None = None
    allreduce: AllReduceParams | None = None
    moe: Mapping[str, MoeParams] = field(default_factory=lambda: MappingProxyType({}))
    # dtype -> "HIDDENxINTERxEXPERTSxTOPK/tpN/epM" -> fused MoE fitted on that configuration alone
    moe_shapes: Mapping[str, Mapping[str, MoeParams]] = field(default_factory=lambda: MappingProxyType({}))

    def moe_for(
        self, dtype: str, hidden: int, inter: int, num_experts: int, topk: int, tp: int = 1, ep: int = 1
    ) -> MoeParams | None:
        """The fused-MoE parameters for experts of this shape split over ``tp`` x ``ep`` GPUs: that
        configuration's own fit where the tables measured it, else the all-shape fit of ``dtype``
        (None if neither exists)."""
        key = f"{int(hidden)}x{int(inter)}x{int(num_experts)}x{int(topk)}/tp{int(tp)}/ep{int(ep)}"
        own = self.moe_shapes.get(dtype, {}).get(key)
        return own if own is not None else self.moe.get(dtype)


# ----------------------------------------------------------------- loading
def load_kernel_params(gpu_id: str) -> KernelParams | None:
    """The packaged fit for ``gpu_id`` (a catalog id such as 'h100'), or ``None`` if it has no tables."""
    sections = _sections()
    if gpu_id not in sections:
        return None
    return _parsed(gpu_id)


def kernel_params_gpu_ids() -> tuple[str, ...]:
    """Catalog ids with a packaged fit, in file order."""
    return tuple(_sections())


def _packaged() -> Mapping[str, KernelParams]:
    """Every GPU's fit (parsed on first use, one GPU at a time)."""
    return MappingProxyType({gpu: _parsed(gpu) for gpu in _sections()})


@cache
def _sections() -> Mapping[str, str]:
    """The packaged file's text, GPU by GPU: a run parses only the GPU it simulates (the
    file holds every GPU's per-configuration MoE fits; parsing all of it would cost a run
    several times its own simulation on small scenarios)."""
    text = (resources.files("servesim") / "data" / _RESOURCE).read_text(encoding="utf-8")
    sections: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in text.splitlines():
        if line.startswith("  ") and not line.startswith("   ") and line.rstrip().endswith(":"):
            current = sections.setdefault(line.strip()[:-1], [])  # a GPU's entry under `gpus:`
        if current is not None:
            current.append(line)
    return MappingProxyType({gpu: "\n".join(lines) for gpu, lines in sections.items()})


@cache
def _parsed(gpu_id: str) -> KernelParams:
    document = yaml_text.safe_load("gpus:\n" + _sections()[gpu_id])
    return parse_kernel_params(document, _RESOURCE)[gpu_id]


def parse_kernel_params(document: Any, source: str) -> Mapping[str, KernelParams]:
    """``{gpu_id: KernelParams}`` from a parsed ``vllm_kernels.yaml``; ``CatalogError`` naming the bad entry."""
    gpus = document.get("gpus") if isinstance(document, dict) else None
    if not isinstance(gpus, dict):
        raise CatalogError(f"{source}: expected a top-level 'gpus' mapping")
    out: dict[str, KernelParams] = {}
    for gpu_id, entry in gpus.items():
        where = f"{source}: gpus.{gpu_id}"
        try:
            out[gpu_id] = _parse_gpu(str(gpu_id), entry)
        except (TypeError, KeyError, ValueError, AttributeError) as err:
            raise CatalogError(f"{where}: malformed entry ({err})") from None
    return MappingProxyType(out)


def _parse_gpu(gpu_id: str, entry: Mapping[str, Any]) -> KernelParams:
    def per_dtype(key: str, cls: type) -> Mapping[str, Any]:
        return MappingProxyType({str(d): cls(**_floats(v)) for d, v in (entry.get(key) or {}).items()})

    prefill = entry.get("prefill_attention")
    allreduce = entry.get("allreduce")
    return KernelParams(
        gpu_id=gpu_id,
        tables=MappingProxyType({str(k): str(v) for k, v in (entry.get("tables") or {}).items()}),
        gemm=per_dtype("gemm", GemmParams),
        decode_attention=per_dtype("decode_attention", DecodeAttentionParams),
        prefill_attention=PrefillAttentionParams(**_floats(prefill)) if prefill else None,
        allreduce=(
            AllReduceParams(
                latency_s=tuple(sorted((int(n), float(s)) for n, s in allreduce["latency_s"].items())),
                link_efficiency=float(allreduce["link_efficiency"]),
            )
            if allreduce
            else None
        ),
        moe=per_dtype("moe", MoeParams),
        moe_shapes=MappingProxyType({
            str(d): MappingProxyType({str(k): MoeParams(**_floats(v)) for k, v in shapes.items()})
            for d, shapes in (entry.get("moe_shapes") or {}).items()
        }),
    )


def _floats(mapping: Mapping[str, Any]) -> dict[str, float]:
    return {str(k): float(v) for k, v in mapping.items()}
