"""``StepTimeParams``: the named efficiencies and overheads of the step-time model.

Defaults come from physics and public measurements, not from fitting the
calibration rows; each field's description says where its default comes
from.  "Calibration" below means ``shared/calibration/h100`` (Llama-3-8B on
one H100 SXM, PyTorch 2.11): its ``device.json`` measured an 8192^3 BF16 GEMM
at 791 TFLOP/s (0.80 of the 989 dense peak) and a device-to-device copy at
3.01 TB/s (0.90 of the 3.35 TB/s peak).
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class StepTimeParams(BaseModel):
    """Efficiencies (fractions of a hardware peak) and fixed costs (seconds)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    gemm_efficiency: float = Field(
        0.7,
        gt=0,
        le=1,
        description=(
            "Fraction of the dense tensor peak (FLOP/s) that compute-bound linear layers reach.  "
            "The calibration card's square 8192^3 BF16 GEMM reaches 0.80 (791 of 989 TFLOP/s), a best "
            "case; a layer's GEMMs are narrower (K and N of 1024-28672 for 7-8B models) and lose "
            "roughly a tenth more to tile and wave quantisation and epilogues, hence 0.7."
        ),
    )
    mem_bw_efficiency: float = Field(
        0.9,
        gt=0,
        le=1,
        description=(
            "Fraction of peak memory bandwidth that weight streaming and elementwise kernels reach; "
            "0.9 = the calibration card's measured copy rate (3.01 of 3.35 TB/s)."
        ),
    )
    attn_flops_efficiency: float = Field(
        0.6,
        gt=0,
        le=1,
        description=(
            "Fraction of the BF16 peak (FLOP/s) that attention kernels reach when compute-bound "
            "(prefill; MLA decode); 0.6 sits between FlashAttention-2 (~0.35-0.5 on H100) and "
            "FlashAttention-3/cuDNN (~0.6-0.75) as reported in the FlashAttention-3 paper."
        ),
    )
    attn_bw_efficiency: float = Field(
        0.9,
        gt=0,
        le=1,
        description=(
            "Fraction of peak memory bandwidth that attention reaches when reading the KV cache "
            "(decode; cached prefixes of prefill chunks); 0.9 = the measured copy rate."
        ),
    )
    per_layer_overhead_graphed_s: float = Field(
        85e-6,
        ge=0,
        description=(
            "GPU-side fixed cost of one layer's kernels when replayed as a CUDA graph (launch latency, "
            "ramp-up, tail), seconds per layer per step.  85 us = about 30 kernels of an unfused layer "
            "at ~3 us each (aiconfigurator adds 3 us per memory-bound op); it is what separates the "
            "calibration's graphed batch-1 decode (7.8 ms) from its weight-streaming time (5.0 ms)."
        ),
    )
    per_layer_overhead_eager_s: float = Field(
        170e-6,
        ge=0,
        description=(
            "GPU-side fixed cost of one layer's kernels when launched one by one (eager), seconds per "
            "layer per step: the graphed cost plus each kernel's own launch latency, ~3 us more per "
            "kernel.  In the calibration, GPU-bound eager decode steps run ~2.8 ms (87 us per layer) "
            "above the same steps graphed."
        ),
    )
    per_layer_launch_eager_s: float = Field(
        160e-6,
        ge=0,
        description=(
            "CPU time to launch one layer's non-attention kernels in eager mode, seconds per layer; "
            "with one attention call it makes the calibration README's ~16-17 ms per 32-layer step."
        ),
    )
    per_seq_attention_launch_s: float = Field(
        360e-6,
        ge=0,
        description=(
            "CPU time of one attention call per layer in eager mode, seconds; each prefill sequence "
            "makes its own call, all decode sequences share one.  From the calibration's many-prompt "
            "prefill rows (per-sequence attention calls); set 0 and fold into per_layer_launch_eager_s "
            "for engines with one varlen attention call per layer."
        ),
    )
    fixed_step_overhead_s: float = Field(
        0.0,
        ge=0,
        description=(
            "Per-step CPU time outside the forward pass (scheduling, sampling, output), seconds.  "
            "0 because the calibration rows time only the forward pass; serving engines add ~1 ms."
        ),
    )
    allreduce_latency_s: float = Field(
        10e-6,
        ge=0,
        description="Fixed latency of one tensor-parallel all-reduce, seconds (NCCL small-message scale).",
    )
    p2p_latency_s: float = Field(
        10e-6,
        ge=0,
        description="Fixed latency of one pipeline-stage activation send, seconds (aiconfigurator uses 10 us).",
    )
    link_efficiency: float = Field(
        0.8,
        gt=0,
        le=1,
        description=(
            "Fraction of per-direction link bandwidth that collectives and sends reach; "
            "0.8 = aiconfigurator's bandwidth derate, close to NCCL ring bus bandwidth on NVLink."
        ),
    )
