"""Numeric formats of weights and KV cache: bytes per element and GEMM rate.

A weight format says how many bytes a parameter takes in memory and which
tensor-core rate its GEMMs run at:

* ``bf16`` / ``fp16``: 2 bytes, BF16 rate.
* ``fp8``: W8A8 FP8, 1 byte, the FP8 rate on chips that have it (Hopper,
  Blackwell, Ada, MI300X); elsewhere (A100) the weights are dequantised and
  the GEMM runs at the BF16 rate (weight-only FP8, as vLLM's Marlin kernels do).
* ``int8``: W8A8 INT8 (SmoothQuant style), 1 byte, the INT8 rate where known.
* ``int4``: W4A16 weight-only (AWQ/GPTQ), half a byte; dequantised to BF16
  before the MMA, so the BF16 rate.

A KV-cache format is just bytes per element: ``bf16``/``fp16`` 2, ``fp8`` 1.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

WeightDtype = Literal["bf16", "fp16", "fp8", "int8", "int4"]
KvCacheDtype = Literal["bf16", "fp16", "fp8"]


@dataclass(frozen=True)
class WeightFormat:
    """bytes_per_param: memory per parameter (bytes); compute: tensor-core rate used ('bf16', 'fp8', 'int8')."""

    bytes_per_param: float
    compute: Literal["bf16", "fp8", "int8"]


WEIGHT_FORMATS: dict[str, WeightFormat] = {
    "bf16": WeightFormat(2.0, "bf16"),
    "fp16": WeightFormat(2.0, "bf16"),
    "fp8": WeightFormat(1.0, "fp8"),
    "int8": WeightFormat(1.0, "int8"),
    "int4": WeightFormat(0.5, "bf16"),
}

KV_BYTES_PER_ELEM: dict[str, float] = {"bf16": 2.0, "fp16": 2.0, "fp8": 1.0}
