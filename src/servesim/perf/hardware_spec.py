"""``HardwareSpec``: one accelerator SKU's published figures, in catalog units.

Fields keep the catalog's units (GB, GB/s, TFLOP/s, W, USD); properties give
SI units (bytes, bytes/s, FLOP/s) so the performance model never converts.
GB means 1e9 bytes, as in vendor sheets.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

_GIGA = 1e9
_TERA = 1e12


class HardwareSpec(BaseModel):
    """One GPU model (see ``data/hardware.yaml`` for sources and conventions)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str = Field(min_length=1, description="catalog id, e.g. 'h100'")
    name: str = Field(min_length=1, description="display name")
    vendor: str = Field(min_length=1, description="maker, e.g. 'nvidia', 'amd'")
    device: Literal["gpu", "cpu"] = Field(
        "gpu",
        description=(
            "'gpu', or 'cpu' for a CPU socket serving with vLLM's CPU backend (no CUDA graphs, synchronous "
            "scheduling, its own defaults; peaks and memory are what the engine's worker uses)"
        ),
    )
    memory_gb: float = Field(gt=0, description="usable device memory, GB (1e9 bytes)")
    mem_bw_gbs: float = Field(gt=0, description="peak memory bandwidth, GB/s")
    bf16_tflops: float = Field(gt=0, description="dense BF16 tensor peak, TFLOP/s")
    fp8_tflops: float | None = Field(default=None, gt=0, description="dense FP8 peak, TFLOP/s; None = no FP8")
    int8_tops: float | None = Field(default=None, gt=0, description="dense INT8 peak, TOP/s; None = unknown")
    link_per_dir_gbs: float = Field(ge=0, description="scale-up link per GPU per direction, GB/s; 0 = none")
    pcie_per_dir_gbs: float = Field(gt=0, description="PCIe x16 per direction, GB/s")
    internode_per_dir_gbs: float = Field(gt=0, description="scale-out network per GPU per direction, GB/s")
    tdp_w: float = Field(gt=0, description="board power, W")
    price_usd_per_gpu_hr: float = Field(ge=0, description="representative rental price, USD per GPU-hour")
    price_low_usd_per_gpu_hr: float = Field(ge=0, description="lowest price seen, USD per GPU-hour")
    price_high_usd_per_gpu_hr: float = Field(ge=0, description="highest price seen, USD per GPU-hour")
    gpus_per_node: int = Field(gt=0, description="GPUs sharing one scale-up domain")
    source: str = Field(min_length=1, description="where the figures come from")

    @model_validator(mode="after")
    def _check_prices(self) -> HardwareSpec:
        if not self.price_low_usd_per_gpu_hr <= self.price_usd_per_gpu_hr <= self.price_high_usd_per_gpu_hr:
            raise ValueError(
                "price_usd_per_gpu_hr: must lie within [price_low_usd_per_gpu_hr, price_high_usd_per_gpu_hr], "
                f"got {self.price_usd_per_gpu_hr} outside "
                f"[{self.price_low_usd_per_gpu_hr}, {self.price_high_usd_per_gpu_hr}]"
            )
        return self

    @property
    def memory_bytes(self) -> float:
        """Device memory, bytes."""
        return self.memory_gb * _GIGA

    @property
    def mem_bw_bytes_s(self) -> float:
        """Peak memory bandwidth, bytes/s."""
        return self.mem_bw_gbs * _GIGA

    @property
    def bf16_flops_s(self) -> float:
        """Dense BF16 peak, FLOP/s."""
        return self.bf16_tflops * _TERA

    def gemm_peak_flops_s(self, weight_bytes_per_param: float = 2) -> float:
        """Dense tensor peak a linear layer can use, FLOP/s.

        8-bit weights run at the FP8 rate where the chip has FP8 (W8A8 GEMMs);
        otherwise (16-bit weights, or no FP8 as on A100) at the BF16 rate,
        since weight-only quantisation dequantises to 16 bits before the MMA.
        """
        if weight_bytes_per_param <= 1 and self.fp8_tflops is not None:
            return self.fp8_tflops * _TERA
        return self.bf16_flops_s

    def tensor_flops_s(self, compute: str) -> float:
        """Dense tensor peak for a compute format ('bf16', 'fp8', 'int8'), FLOP/s (or OP/s).

        A format the chip lacks falls back to the BF16 rate (the weights are
        dequantised before the MMA), see ``servesim.perf.dtypes``.
        """
        if compute == "fp8" and self.fp8_tflops is not None:
            return self.fp8_tflops * _TERA
        if compute == "int8" and self.int8_tops is not None:
            return self.int8_tops * _TERA
        return self.bf16_flops_s

    @property
    def scaleup_bytes_s(self) -> float:
        """Per-direction bandwidth between GPUs of one node, bytes/s (PCIe if no link)."""
        gbs = self.link_per_dir_gbs if self.link_per_dir_gbs > 0 else self.pcie_per_dir_gbs
        return gbs * _GIGA

    @property
    def internode_bytes_s(self) -> float:
        """Per-direction network bandwidth of one GPU to another node, bytes/s."""
        return self.internode_per_dir_gbs * _GIGA
