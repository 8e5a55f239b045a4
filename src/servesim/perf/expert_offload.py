"""MoE expert offloading: a cache of experts in GPU memory, the rest in host memory.

Each MoE layer keeps ``cache_experts`` of its ``E`` routed experts on the GPU
(the memory plan holds only those, so more room is left for KV); the others
live in host memory.  A step whose ``t`` tokens route to ``k`` experts each
touches ``E * (1 - (1 - k/E)^t)`` experts per layer (as the step model
prices their weights), and each touched expert is in the cache with the
*hit rate*

    h = c * min(1, C / (2k)) + (1 - c) * C / E

where ``c`` is the model's local routing consistency (the share of routing
decisions that stay within a segment's working set, about twice the active
experts; SEED_CLAIMS #25 finds caches of about 2x the active experts where
the benefit saturates) and the rest of the decisions land anywhere.  The
consistency is a per-model property: models with shared experts have less
(the default is 0.8 without shared experts, 0.5 with them; illustrative).

A miss either loads the expert over PCIe (``miss: load``: ``expert bytes /
pcie bandwidth``, the step waits) or runs it on the CPU (``miss: cpu``: the
larger of reading its weights from host memory and computing its share of
the tokens, ``t k / touched`` of them, at ``cpu_tflops``); ``miss: auto``
takes the cheaper of the two for each step (the CPU for small decode
batches, loads for prompts, as Fiddler-like systems do).  Misses of
successive layers add up: a layer needs the previous one's output.
"""

from __future__ import annotations

from servesim.perf.model_spec import ModelSpec


def default_routing_consistency(model: ModelSpec) -> float:
    """The assumed local routing consistency of a model: lower with shared experts."""
    return 0.5 if model.num_shared_experts else 0.8


def cache_hit_rate(num_experts: int, active: int, cache_experts: int, consistency: float) -> float:
    """Share of the experts a step touches that are in a cache of ``cache_experts`` per layer."""
    return consistency * min(1.0, cache_experts / (2 * active)) + (1.0 - consistency) * cache_experts / num_experts


class ExpertOffloadStepModel:
    """A step model plus the time its steps wait for (or spend on the CPU with) cache-missing experts."""

    __slots__ = ("base", "num_experts", "active", "moe_layers", "hit_rate", "cpu", "load_s_per_expert",
                 "cpu_read_s_per_expert", "cpu_s_per_expert_token", "auto", "_miss", "expert_bytes",
                 "counting", "missed_experts", "loaded_bytes", "miss_time_s")

    def __init__(
        self,
        base,
        model: ModelSpec,
        cache_experts: int,
        consistency: float,
        *,
        miss: str = "load",
        weight_bytes_per_param: float = 2.0,
        pcie_bytes_per_s: float = 25e9,
        host_bytes_per_s: float = 200e9,
        cpu_flops_s: float = 1e12,
    ) -> None:
        if not model.is_moe:
            raise ValueError(f"expert offloading needs an MoE model; {model.id} is dense")
        self.base = base
        self.num_experts = model.num_experts
        self.active = model.experts_per_token
        self.moe_layers = model.num_moe_layers
        self.hit_rate = cache_hit_rate(model.num_experts, model.experts_per_token, cache_experts, consistency)
        self.cpu = miss == "cpu"
        self.auto = miss == "auto"
        expert_bytes = model.expert_params * weight_bytes_per_param
        self.load_s_per_expert = expert_bytes / pcie_bytes_per_s
        self.cpu_read_s_per_expert = expert_bytes / host_bytes_per_s
        self.cpu_s_per_expert_token = 2.0 * model.expert_params / cpu_flops_s
        self._miss = 1.0 - model.experts_per_token / model.num_experts
        self.expert_bytes = expert_bytes
        # The books of the steps priced while ``counting`` (the run turns it on; set-up estimates
        # do not count): expected experts missed, bytes loaded over PCIe, time spent on misses.
        self.counting = False
        self.missed_experts = 0.0
        self.loaded_bytes = 0.0
        self.miss_time_s = 0.0

    def miss_s(self, num_tokens: int) -> float:
        """Time a step of ``num_tokens`` tokens spends on experts missing from the cache."""
        if num_tokens <= 0:
            return 0.0
        touched = self.num_experts * (1.0 - self._miss**num_tokens)
        misses = touched * (1.0 - self.hit_rate)
        per_expert = self.load_s_per_expert
        loading = True
        if self.cpu or self.auto:
            tokens_each = num_tokens * self.active / touched
            compute = tokens_each * self.cpu_s_per_expert_token
            on_cpu = compute if compute > self.cpu_read_s_per_expert else self.cpu_read_s_per_expert
            if self.cpu or on_cpu < per_expert:
                per_expert = on_cpu
                loading = False
        seconds = self.moe_layers * misses * per_expert
        if self.counting:
            self.missed_experts += self.moe_layers * misses
            self.miss_time_s += seconds
            if loading:
                self.loaded_bytes += self.moe_layers * misses * self.expert_bytes
        return seconds

    def time_s(self, shape) -> float:
        return self.base.time_s(shape) + self.miss_s(shape.num_tokens)

    def decode_time_s(self, num_decode_seqs: int, decode_kv_tokens: int) -> float:
        return self.base.decode_time_s(num_decode_seqs, decode_kv_tokens) + self.miss_s(num_decode_seqs)
