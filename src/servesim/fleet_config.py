"""Scenario sections of fleet operations: autoscaling with cold starts, and failures.

Kept apart from ``servesim.config`` (which references these models) so that each
section reads as one page.  Defaults and their sources are in docs/operations.md.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

# Published failure rate: Llama 3 405B pre-training saw 419 unexpected interruptions in 54 days
# on 16,384 H100 GPUs (Dubey et al. 2024, "The Llama 3 Herd of Models", sec. 3.3.4):
# 419 / (54 x 24 h x 16,384 GPUs) = 1.97e-5 per GPU-hour, an MTBF of about 50,700 GPU-hours.
LLAMA3_FAILURES_PER_GPU_HOUR = 419 / (54 * 24 * 16384)


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True, allow_inf_nan=False)  # built at first use


class ColdStartConfig(_Section):
    """What a new replica costs before it serves: provisioning + weight loading + warm-up."""

    provisioning_s: float = Field(
        30.0, ge=0, description="Time to get GPUs and start the serving process (s): node allocation, container start."
    )
    source: Literal["storage", "host_memory", "peer_gpu"] = Field(
        "storage", description="Where the weights are loaded from: remote/local storage, a host-memory cache, or a peer GPU."
    )
    bandwidth_gb_per_s: float | None = Field(
        None, gt=0,
        description="Load bandwidth (GB/s): per replica for 'storage', per GPU for 'host_memory' and 'peer_gpu'; "
        "null: 2 (storage), 25 (host memory over PCIe 4 x16) or the GPU's NVLink bandwidth (peer GPU).",
    )
    warmup_s: float = Field(10.0, ge=0, description="Warm-up after loading (s): CUDA-graph capture, compilation.")


class KpaConfig(_Section):
    """Knative's Pod Autoscaler (KPA) on request concurrency; defaults are Knative's."""

    target_concurrency: float = Field(32.0, gt=0, description="Requests in flight each replica should hold (count).")
    target_utilization: float = Field(
        0.7, gt=0, le=1, description="Share of target_concurrency the autoscaler aims at (Knative's default 0.7)."
    )
    stable_window_s: float = Field(60.0, gt=0, description="Window of the stable average concurrency (s).")
    panic_window_fraction: float = Field(
        0.1, gt=0, le=1, description="The panic window as a share of the stable window (Knative: 10%)."
    )
    panic_threshold: float = Field(
        2.0, gt=1, description="Enter panic when the panic window asks for this many times the ready replicas."
    )
    max_scale_up_rate: float = Field(1000.0, gt=1, description="At most this many times the ready replicas per decision.")
    max_scale_down_rate: float = Field(2.0, gt=1, description="At least the ready replicas divided by this per decision.")
    scale_to_zero_grace_s: float = Field(
        30.0, ge=0, description="With min_replicas 0: scale to zero only after this long without any request in flight (s)."
    )


class HpaConfig(_Section):
    """A Kubernetes HPA-like target on one metric per replica."""

    metric: Literal["utilization", "concurrency", "queue"] = Field(
        "utilization",
        description="What each ready replica is held to: busy share of time, requests in flight, or requests waiting.",
    )
    target: float = Field(0.7, gt=0, description="Target value of the metric per ready replica.")
    tolerance: float = Field(0.1, ge=0, description="No change while observed/target is within 1 +- tolerance (HPA's 0.1).")
    scale_down_window_s: float = Field(
        300.0, ge=0, description="Scale down to the highest recommendation of this past window (HPA's stabilization, s)."
    )


class RlConfig(_Section):
    """Tabular Q-learning over KPA's concurrency target (Schuler et al. 2020), trained inside the simulation."""

    targets: list[float] = Field(
        [2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0], min_length=2,
        description="The concurrency targets the agent moves between, in increasing order (count per replica).",
    )
    initial_target: float = Field(32.0, gt=0, description="The target an episode starts from (one of targets).")
    decision_interval_s: float | None = Field(
        None, gt=0,
        description="Time between two of the agent's moves within a run (s); null: one move per episode, the target "
        "held for the whole run and the run's objective its reward (tuning the target per workload, as in the 2020 study).",
    )
    episodes: int = Field(30, ge=0, description="Training runs over the scenario before the reported, greedy run.")
    learning_rate: float = Field(0.1, gt=0, le=1, description="Q-learning step size alpha.")
    discount: float = Field(0.5, ge=0, lt=1, description="Q-learning discount gamma.")
    epsilon: float = Field(0.3, ge=0, le=1, description="Exploration rate of the first episode (decays linearly to 0).")
    load_levels: list[float] = Field(
        default_factory=list,
        description="Bounds of observed-concurrency-per-replica buckets (multiples of the target) added to the state; "
        "empty: the state is the target alone, as in the 2020 study.",
    )
    slo_weight: float = Field(1.0, ge=0, description="Reward: minus this times the share of finished requests missing the SLO.")
    cost_weight: float = Field(
        0.02, ge=0, description="Reward: minus this times the mean replicas provisioned over the interval."
    )


class ElasticConfig(_Section):
    """ElasticMoE-style scaling: grow or shrink a running replica by GPUs instead of adding replicas."""

    gpu_steps: list[int] = Field(
        min_length=2, description="Tensor-parallel sizes a replica moves between, increasing (e.g. [2, 4, 8]); the first is its start."
    )
    peer_gb_per_s: float | None = Field(
        None, gt=0, description="Peer-to-peer weight copy bandwidth per new GPU (GB/s); null: the GPU's NVLink bandwidth."
    )
    switch_s: float = Field(1.0, ge=0, description="Pause while the instance switches to its new layout (s).")


class AutoscalingConfig(_Section):
    """Replicas come and go under a policy that sees the fleet's metrics (docs/operations.md)."""

    policy: Literal["kpa", "hpa", "rl", "fixed"] = Field(
        "kpa", description="kpa: Knative's concurrency autoscaler; hpa: a per-replica metric target; rl: Q-learning over "
        "KPA's target; fixed: no decisions (failures and cold starts only).",
    )
    min_replicas: int = Field(1, ge=0, description="Fewest replicas kept (count); 0 allows scale to zero.")
    max_replicas: int = Field(8, ge=1, description="Most replicas provisioned at once (count).")
    interval_s: float = Field(2.0, gt=0, description="Time between two autoscaler decisions (s).")
    metrics_delay_s: float = Field(0.0, ge=0, description="Age of the metrics the autoscaler sees (s).")
    cold_start: ColdStartConfig = Field(default_factory=ColdStartConfig, description="Cost of starting a replica.")
    kpa: KpaConfig = Field(default_factory=KpaConfig, description="Knative KPA settings (policy kpa; rl starts from them).")
    hpa: HpaConfig = Field(default_factory=HpaConfig, description="HPA settings (policy hpa).")
    rl: RlConfig = Field(default_factory=RlConfig, description="Q-learning settings (policy rl).")
    elastic: ElasticConfig | None = Field(
        None, description="Scale replicas by GPUs (ElasticMoE) instead of by whole replicas; null: whole replicas."
    )

    @model_validator(mode="after")
    def _check(self) -> AutoscalingConfig:
        if self.min_replicas > self.max_replicas:
            raise ValueError(f"min_replicas = {self.min_replicas} is above max_replicas = {self.max_replicas}")
        targets = self.rl.targets
        if any(b <= a for a, b in zip(targets, targets[1:])) or targets[0] <= 0:
            raise ValueError(f"rl.targets = {targets} must be positive and increasing")
        if self.rl.initial_target not in targets:
            raise ValueError(f"rl.initial_target = {self.rl.initial_target} must be one of rl.targets {targets}")
        if self.elastic is not None:
            steps = self.elastic.gpu_steps
            if any(b <= a for a, b in zip(steps, steps[1:])) or steps[0] < 1:
                raise ValueError(f"elastic.gpu_steps = {steps} must be positive and increasing")
        return self


class SlowdownConfig(_Section):
    """Stragglers: a fixed share of replicas runs slower for the whole run."""

    fraction: float = Field(0.0, ge=0, le=1, description="Share of the replicas that straggle (rounded to a count).")
    slowdown: float = Field(1.5, ge=1, description="Their steps take this many times as long.")


class InterferenceConfig(_Section):
    """Noisy neighbours: each replica's speed varies over time, unpredictably (CloudFormer)."""

    period_s: float = Field(60.0, gt=0, description="How long one interference level lasts (s).")
    sigma: float = Field(0.2, ge=0, description="Log-normal spread of the slowdown: factor = max(1, exp(N(0, sigma))).")


class LinkDegradationConfig(_Section):
    """Episodes in which KV links (disaggregation, prefill offload) run below their bandwidth."""

    episodes_per_hour: float = Field(0.0, ge=0, description="Mean rate of degradation episodes per link (per hour).")
    duration_s: float = Field(60.0, gt=0, description="Length of one episode (s).")
    bandwidth_factor: float = Field(0.1, gt=0, le=1, description="Share of the bandwidth left during an episode.")


class ScriptedFailure(_Section):
    """One failure at a chosen time (chaos testing; also how tests pin recovery exactly)."""

    at_s: float = Field(ge=0, description="Simulated time of the failure (s).")
    replica: int = Field(ge=0, description="Index of the replica slot that fails.")


class FailuresConfig(_Section):
    """GPU and node failures, detection and recovery; stragglers, interference, link degradation."""

    gpu_failures_per_hour: float = Field(
        LLAMA3_FAILURES_PER_GPU_HOUR, ge=0,
        description="Failures per GPU-hour that take a replica down (default 1.97e-5: Llama 3 405B training, 419 "
        "unexpected interruptions in 54 days on 16,384 H100s).",
    )
    node_failures_per_hour: float = Field(
        0.0, ge=0, description="Failures per node-hour that take down every replica on the node (host, network, power)."
    )
    gpus_per_node: int = Field(8, ge=1, description="GPUs per node: replicas are packed onto nodes in order.")
    rate_scale: float = Field(1.0, gt=0, description="Multiplies both failure rates (accelerated-failure studies).")
    detection_s: float = Field(30.0, ge=0, description="Time from a failure until it is detected (health checks, s).")
    recovery: Literal["restart", "replace"] = Field(
        "restart", description="restart: the replica comes back in place after restart_s; replace: a new replica with a full cold start."
    )
    restart_s: float = Field(
        60.0, ge=0, description="Time to restart a failed replica in place (s): process restart and weight reload from the host's page cache."
    )
    in_flight: Literal["retry", "fail"] = Field(
        "retry", description="What happens to the requests a failed replica held: retried on another replica (the prompt and "
        "tokens already sent are recomputed, as after a preemption), or failed."
    )
    max_retries: int = Field(2, ge=0, description="Retries per request before it fails with 'retries_exhausted' (count).")
    scripted: list[ScriptedFailure] = Field(
        default_factory=list, description="Failures at given times, on top of the random ones (e.g. [{at_s: 100, replica: 0}])."
    )
    stragglers: SlowdownConfig = Field(default_factory=SlowdownConfig, description="Replicas that run slower all run.")
    interference: InterferenceConfig | None = Field(None, description="Time-varying slowdowns per replica; null: none.")
    link_degradation: LinkDegradationConfig | None = Field(None, description="KV-link degradation episodes; null: none.")
