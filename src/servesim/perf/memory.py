"""Per-GPU memory plan: weights, activation reserve, and the paged KV cache.

The plan mirrors how vLLM sizes its cache: the engine may use
``gpu_memory_utilization`` of each GPU; weights and a reserve for
activations/runtime buffers come off the top; the rest becomes fixed-size KV
blocks.  All sizes are per GPU, in bytes (GB in messages = 1e9 bytes).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from servesim.errors import ConfigError, DeploymentError
from servesim.perf.hardware_spec import HardwareSpec
from servesim.perf.model_spec import ModelSpec
from servesim.perf.sharding import check_parallelism, kv_share_per_gpu, layers_per_stage

_GB = 1e9

# Fixed part of the default reserve: CUDA graphs' memory pool, NCCL buffers,
# cuBLAS workspaces and allocator slack.  aiconfigurator reserves a similar
# amount ("other" memory plus ~0.35-0.4 GB for NCCL; see shared/catalog).
_FIXED_RESERVE_BYTES = 1.0 * _GB
# Activations are bf16 and, at the MLP peak, a token holds its residual
# stream plus gate, up and activated MLP outputs; doubled for the copies the
# allocator keeps alive between kernels.
_ACTIVATION_BYTES = 2
_ACTIVATION_COPIES = 2


@dataclass(frozen=True, slots=True)
class MemoryPlan:
    """Where one GPU's memory goes (every GPU of the replica is sized alike).

    gpu_memory_bytes: device memory (bytes).
    gpu_memory_utilization: fraction of it the engine may use.
    budget_bytes: ``gpu_memory_bytes * gpu_memory_utilization``.
    weight_bytes_per_gpu: this GPU's share of the weights, ``weights / (tp * pp)``.
    activation_reserve_bytes: held back for activations and runtime buffers.
    kv_cache_bytes_per_gpu: what is left for KV blocks.
    kv_bytes_per_token_per_gpu: KV bytes one token occupies on this GPU.
    block_size_tokens: tokens per KV block.
    num_kv_blocks: whole blocks that fit (the replica's block count: every
        GPU of the replica holds its slice of the same blocks).
    tensor_parallel, pipeline_parallel: the split it was planned for.
    """

    gpu_memory_bytes: float
    gpu_memory_utilization: float
    budget_bytes: float
    weight_bytes_per_gpu: float
    activation_reserve_bytes: float
    kv_cache_bytes_per_gpu: float
    kv_bytes_per_token_per_gpu: float
    block_size_tokens: int
    num_kv_blocks: int
    tensor_parallel: int
    pipeline_parallel: int

    @property
    def kv_capacity_tokens(self) -> int:
        """Tokens the replica's KV cache holds (``num_kv_blocks * block_size_tokens``)."""
        return self.num_kv_blocks * self.block_size_tokens

    @property
    def num_gpus(self) -> int:
        """GPUs in one replica (``tp * pp``)."""
        return self.tensor_parallel * self.pipeline_parallel


def default_activation_reserve_bytes(
    model: ModelSpec, tensor_parallel: int = 1, max_num_batched_tokens: int = 8192
) -> float:
    """The reserve used when none is given, bytes per GPU.

    ``1 GB + 2 copies * 2 bytes * max_num_batched_tokens * (hidden_size + 3 * mlp_width / tp)``,
    where ``mlp_width`` is the widest MLP activation of one token (dense
    ``intermediate_size``, or the experts one token runs).  For Llama-3-8B at
    8192 batched tokens this is 2.5 GB, in line with vLLM's profiled peak plus
    its CUDA-graph pool.
    """
    per_token = model.hidden_size + 3 * model.mlp_width_per_token / tensor_parallel
    return _FIXED_RESERVE_BYTES + _ACTIVATION_COPIES * _ACTIVATION_BYTES * max_num_batched_tokens * per_token


def kv_bytes_per_token_per_gpu(
    model: ModelSpec, tensor_parallel: int, pipeline_parallel: int, kv_bytes_per_elem: float = 2
) -> float:
    """KV bytes one token occupies on the fullest GPU of the replica.

    The layers of the fullest pipeline stage, times this rank's share of each
    layer's KV (heads split by TP; MLA's latent replicated).  In a
    hybrid-attention model only ``num_kv_layers`` of the layers keep KV,
    spread evenly over the stages.
    """
    per_layer = model.kv_elems_per_token_per_layer * kv_bytes_per_elem * kv_share_per_gpu(model, tensor_parallel)
    kv_fraction = model.num_kv_layers / model.num_layers
    return layers_per_stage(model, pipeline_parallel) * kv_fraction * per_layer


def plan_memory(
    model: ModelSpec,
    hardware: HardwareSpec,
    tensor_parallel: int = 1,
    pipeline_parallel: int = 1,
    gpu_memory_utilization: float = 0.9,
    block_size: int = 16,
    weight_bytes_per_param: float = 2,
    kv_bytes_per_elem: float = 2,
    activation_reserve_gb: float | None = None,
    max_num_batched_tokens: int = 8192,
) -> MemoryPlan:
    """Size the KV cache of one replica; raise ``DeploymentError`` if the model does not fit.

    Weights are spread evenly over all ``tp * pp`` GPUs (embeddings and
    lm_head included, a small simplification for PP).  ``activation_reserve_gb``
    (GB per GPU) overrides ``default_activation_reserve_bytes``.
    ``ConfigError`` for out-of-range arguments.
    """
    _check_args(
        gpu_memory_utilization, block_size, weight_bytes_per_param, kv_bytes_per_elem,
        activation_reserve_gb, max_num_batched_tokens,
    )
    check_parallelism(model, tensor_parallel, pipeline_parallel)
    tp, pp = tensor_parallel, pipeline_parallel
    budget = hardware.memory_bytes * gpu_memory_utilization
    weights = model.weight_bytes(weight_bytes_per_param) / (tp * pp)
    if activation_reserve_gb is None:
        reserve = default_activation_reserve_bytes(model, tp, max_num_batched_tokens)
    else:
        reserve = activation_reserve_gb * _GB
    per_token = kv_bytes_per_token_per_gpu(model, tp, pp, kv_bytes_per_elem)
    kv_bytes = budget - weights - reserve
    num_blocks = math.floor(kv_bytes / (block_size * per_token)) if kv_bytes > 0 else 0

    where = f"{model.id} does not fit on {tp * pp} x {hardware.id} (tp={tp}, pp={pp})"
    budget_text = (
        f"budget is {budget / _GB:.1f} GB (gpu_memory_utilization={gpu_memory_utilization:g} "
        f"of {hardware.memory_gb:g} GB)"
    )
    if weights > budget:
        raise DeploymentError(
            f"{where}: weights need {weights / _GB:.1f} GB per GPU, {budget_text}; "
            "raise tensor_parallel or pick a larger GPU"
        )
    if num_blocks < 1:
        raise DeploymentError(
            f"{where}: weights {weights / _GB:.1f} GB + activation reserve {reserve / _GB:.1f} GB per GPU "
            f"leave {max(kv_bytes, 0.0) / _GB:.2f} GB, less than one KV block of {block_size} tokens "
            f"({block_size * per_token / 1e6:.1f} MB); {budget_text}; "
            "raise tensor_parallel, lower the activation reserve or pick a larger GPU"
        )
    return MemoryPlan(
        gpu_memory_bytes=hardware.memory_bytes,
        gpu_memory_utilization=gpu_memory_utilization,
        budget_bytes=budget,
        weight_bytes_per_gpu=weights,
        activation_reserve_bytes=reserve,
        kv_cache_bytes_per_gpu=kv_bytes,
        kv_bytes_per_token_per_gpu=per_token,
        block_size_tokens=block_size,
        num_kv_blocks=num_blocks,
        tensor_parallel=tp,
        pipeline_parallel=pp,
    )


def _check_args(
    utilization: float,
    block_size: int,
    weight_bytes: float,
    kv_bytes: float,
    reserve_gb: float | None,
    max_batched: int,
) -> None:
    if not 0 < utilization <= 1:
        raise ConfigError(f"gpu_memory_utilization must be in (0, 1], got {utilization!r}")
    if isinstance(block_size, bool) or not isinstance(block_size, int) or block_size < 1:
        raise ConfigError(f"block_size must be an integer >= 1 (tokens), got {block_size!r}")
    if not weight_bytes > 0:
        raise ConfigError(f"weight_bytes_per_param must be > 0, got {weight_bytes!r}")
    if not kv_bytes > 0:
        raise ConfigError(f"kv_bytes_per_elem must be > 0, got {kv_bytes!r}")
    if reserve_gb is not None and not reserve_gb >= 0:
        raise ConfigError(f"activation_reserve_gb must be >= 0 (GB), got {reserve_gb!r}")
    if isinstance(max_batched, bool) or not isinstance(max_batched, int) or max_batched < 1:
        raise ConfigError(f"max_num_batched_tokens must be an integer >= 1, got {max_batched!r}")
