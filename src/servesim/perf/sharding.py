"""How tensor and pipeline parallelism split one model across GPUs.

Tensor parallelism (TP) splits every layer's heads and MLP columns over
``tensor_parallel`` GPUs; pipeline parallelism (PP) gives each of
``pipeline_parallel`` stages a contiguous run of layers.  The rules follow
vLLM: query heads must divide evenly; KV heads are split when TP does not
exceed their number and replicated (one per GPU) when it does; MLA's single
latent cache is replicated on every TP rank.
"""

from __future__ import annotations

from servesim.errors import ConfigError, DeploymentError
from servesim.perf.model_spec import ModelSpec


def check_parallelism(model: ModelSpec, tensor_parallel: int, pipeline_parallel: int) -> None:
    """Raise if the model cannot be split this way.

    ``ConfigError`` for degrees that are not positive integers;
    ``DeploymentError`` when the model's heads or layers do not split.
    """
    for name, value in (("tensor_parallel", tensor_parallel), ("pipeline_parallel", pipeline_parallel)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"{name} must be an integer >= 1, got {value!r}")
    tp, pp = tensor_parallel, pipeline_parallel
    if model.num_heads % tp:
        raise DeploymentError(
            f"{model.id} cannot use tensor_parallel={tp}: its {model.num_heads} attention heads "
            "do not split evenly; pick a divisor of the head count"
        )
    if model.attention != "mla":
        kv = model.num_kv_heads
        if (tp <= kv and kv % tp) or (tp > kv and tp % kv):  # type: ignore[operator]
            raise DeploymentError(
                f"{model.id} cannot use tensor_parallel={tp}: its {kv} KV heads neither split evenly "
                "nor replicate evenly; pick a divisor or multiple of the KV head count"
            )
    if pp > model.num_layers:
        raise DeploymentError(
            f"{model.id} cannot use pipeline_parallel={pp}: it has only {model.num_layers} layers"
        )


def check_expert_parallelism(model: ModelSpec, tensor_parallel: int, expert_parallel: bool) -> None:
    """Raise ``DeploymentError`` if experts cannot be placed whole on the ``tensor_parallel`` ranks."""
    if not expert_parallel:
        return
    if not model.is_moe:
        raise DeploymentError(f"{model.id} has no experts: expert_parallel needs a mixture-of-experts model")
    if model.num_experts % tensor_parallel:
        raise DeploymentError(
            f"{model.id} cannot use expert_parallel with tensor_parallel={tensor_parallel}: its "
            f"{model.num_experts} experts do not split evenly over the ranks"
        )


def kv_share_per_gpu(model: ModelSpec, tensor_parallel: int) -> float:
    """Fraction of one layer's per-token KV cache that each TP rank holds.

    GQA/MHA: ``1 / tp`` while ``tp <= num_kv_heads``, else one KV head,
    ``1 / num_kv_heads`` (replicated).  MLA: 1 (the latent is replicated).
    """
    if model.attention == "mla":
        return 1.0
    kv = model.num_kv_heads
    return 1.0 / min(tensor_parallel, kv)  # type: ignore[type-var]


def layers_per_stage(model: ModelSpec, pipeline_parallel: int) -> int:
    """Layers on the fullest pipeline stage (``ceil(num_layers / pp)``)."""
    return -(-model.num_layers // pipeline_parallel)


def pipeline_hops(tensor_parallel: int, pipeline_parallel: int, gpus_per_node: int) -> tuple[int, int]:
    """``(intra_node_hops, inter_node_hops)`` between consecutive stages.

    GPUs are packed node by node, TP group first: a stage boundary crosses
    nodes when the next stage starts on a new node.  A TP group wider than a
    node makes every hop inter-node.
    """
    hops = pipeline_parallel - 1
    if tensor_parallel > gpus_per_node:
        return 0, hops
    stages_per_node = gpus_per_node // tensor_parallel
    nodes = -(-pipeline_parallel // stages_per_node)
    return hops - (nodes - 1), nodes - 1
