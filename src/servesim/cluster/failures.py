"""Failures and slowdowns: what goes wrong in a fleet, drawn from configured rates.

``FailureProcess`` draws each replica's time to failure from its GPUs' failure
rate (exponential: failures are memoryless at these scales) and each node's
from the node rate; a node failure takes down every replica with a GPU on it
(replicas are packed onto nodes in index order).  Failure events are placed on
the event loop one fleet sample ahead (``fire_until``), so a run that has ended
has none left.  Detection, recovery and what happens to requests are the
fleet's (``servesim.cluster.fleet``).

``Disturbances`` slows replicas down: stragglers (a fixed share, a fixed
factor, all run) and noisy-neighbour interference (each replica's slowdown
re-drawn every period from a log-normal, floored at 1: CloudFormer's point is
that interference is unpredictable, so it is random here), and degrades KV
links for random episodes.  A slowdown takes effect at the next iteration
boundary (a decode stretch in flight is cut there).
"""

from __future__ import annotations

import math

import numpy as np

from servesim.cluster.events import ARRIVAL
from servesim.perf.phase_scaled import PhaseScaledStepModel


class FailureProcess:
    """Failure times of the fleet's replicas and nodes (rates per hour, see ``FailuresConfig``)."""

    def __init__(self, cfg, gpus_per_replica: int, rng: np.random.Generator) -> None:
        self.detection_s = cfg.detection_s
        self.recovery = cfg.recovery
        self.restart_s = cfg.restart_s
        self.gpus_per_replica = gpus_per_replica
        self.gpus_per_node = cfg.gpus_per_node
        self.replica_rate_s = cfg.gpu_failures_per_hour * cfg.rate_scale * gpus_per_replica / 3600.0
        self.node_rate_s = cfg.node_failures_per_hour * cfg.rate_scale / 3600.0
        self.rng = rng
        self._next: dict[int, float] = {}  # replica -> time of its next failure
        self._epoch: dict[int, int] = {}  # replica -> instance count (stale events are ignored)
        self._next_node: dict[int, float] = {}
        self._scripted = sorted((f.at_s, f.replica) for f in cfg.scripted)
        self._fleet = None

    def begin(self, fleet, now: float) -> None:
        self._fleet = fleet
        for i, _ in enumerate(fleet.state):
            if fleet.state[i] in (2, 3):  # ACTIVE, DRAINING
                self.on_up(fleet, i, now)

    def _draw(self, rate_s: float, now: float) -> float:
        return now + self.rng.exponential(1.0 / rate_s) if rate_s > 0.0 else math.inf

    def on_up(self, fleet, i: int, now: float) -> None:
        """Replica ``i`` starts serving: its failure clock starts."""
        self._epoch[i] = self._epoch.get(i, 0) + 1
        self._next[i] = self._draw(self.replica_rate_s, now)
        for n in self.nodes_of(i):
            if n not in self._next_node:
                self._next_node[n] = self._draw(self.node_rate_s, now)

    def on_gone(self, fleet, i: int) -> None:
        """Replica ``i`` stopped serving (failed or turned off): no failure of it is pending."""
        self._epoch[i] = self._epoch.get(i, 0) + 1
        self._next.pop(i, None)

    def nodes_of(self, i: int) -> range:
        g = self.gpus_per_replica
        return range(i * g // self.gpus_per_node, ((i + 1) * g - 1) // self.gpus_per_node + 1)

    def fire_until(self, fleet, now: float, until: float) -> None:
        """Put the failures before ``until`` on the event loop."""
        loop = fleet.sim.loop
        while self._scripted and self._scripted[0][0] < until:
            t, i = self._scripted.pop(0)
            loop.schedule(max(t, now), ARRIVAL, self._on_failure, (i, -1, "scripted_failure"))
        for i, t in list(self._next.items()):
            if t < until:
                del self._next[i]
                loop.schedule(max(t, now), ARRIVAL, self._on_failure, (i, self._epoch[i], "gpu_failure"))
        for n, t in list(self._next_node.items()):
            while t < until:
                loop.schedule(max(t, now), ARRIVAL, self._on_node_failure, n)
                t = self._draw(self.node_rate_s, t)
            self._next_node[n] = t

    def _on_failure(self, now: float, payload: tuple) -> None:
        i, epoch, cause = payload
        fleet = self._fleet
        if epoch >= 0 and self._epoch.get(i, 0) != epoch:
            return  # the instance it was drawn for is gone
        if i >= len(fleet.state):
            return  # a scripted failure of a slot that never existed
        fleet.fail(i, now, cause)

    def _on_node_failure(self, now: float, node: int) -> None:
        """Node ``node`` fails: every replica with a GPU on it goes down (counted once per node event
        that took any replica down)."""
        fleet = self._fleet
        before = fleet.books.failures
        for i in range(len(fleet.state)):
            if node in self.nodes_of(i):
                fleet.fail(i, now, "node_failure")
        if fleet.books.failures > before:
            fleet.books.node_failures += 1


class Disturbances:
    """Stragglers, interference and link degradation (see the module doc)."""

    def __init__(self, cfg, sim, base_models: list, rng: np.random.Generator) -> None:
        self.sim = sim
        self.base = list(base_models)  # each replica slot's undisturbed step model
        self.rng = rng
        self.stragglers = cfg.stragglers
        self.interference = cfg.interference
        self.links = cfg.link_degradation
        n = len(self.base)
        count = round(cfg.stragglers.fraction * n)
        chosen = set(rng.permutation(n)[:count].tolist()) if count else set()
        self.straggler_factor = [cfg.stragglers.slowdown if i in chosen else 1.0 for i in range(n)]
        self.noise = [1.0] * n
        self.num_link_episodes = 0
        self.degraded_link_s = 0.0
        self._link_next: list[float] = []
        self._link_base: list[float] = []
        self._total = len(sim.workload)
        self.tick_s = cfg.interference.period_s if cfg.interference is not None else (
            cfg.link_degradation.duration_s if cfg.link_degradation is not None else 0.0)

    @property
    def active(self) -> bool:
        return self.tick_s > 0.0 or any(f != 1.0 for f in self.straggler_factor)

    def factor(self, i: int) -> float:
        """Replica slot ``i``'s slowdown now (1: none)."""
        if i >= len(self.base):
            self.base.append(self.base[0])
            self.straggler_factor.append(1.0)
            self.noise.append(1.0)
        return self.straggler_factor[i] * self.noise[i]

    def model_for(self, i: int):
        """The step model replica slot ``i`` runs with now."""
        f = self.factor(i)
        return self.base[i] if f == 1.0 else PhaseScaledStepModel(self.base[i], f, f)

    def begin(self, now: float) -> None:
        for replica in self.sim.replicas:
            if replica is not None:
                replica.step_model = self.model_for(replica.index)
        if self.links is not None and self.sim._links:
            rate = self.links.episodes_per_hour / 3600.0
            self._link_next = [now + self.rng.exponential(1.0 / rate) if rate > 0 else math.inf for _ in self.sim._links]
            self._link_base = [link.bytes_per_s for link in self.sim._links]
        if self.tick_s > 0.0:
            self.sim.loop.schedule(now, ARRIVAL, self._on_tick)

    def _on_tick(self, now: float, _payload: object) -> None:
        if self.interference is not None:
            sigma = self.interference.sigma
            for i in range(len(self.noise)):
                self.noise[i] = max(1.0, math.exp(self.rng.normal(0.0, sigma))) if sigma > 0 else 1.0
            for replica in self.sim.replicas:
                if replica is not None:
                    self._apply(replica, now)
        if self._link_next:
            until = now + self.tick_s
            rate = self.links.episodes_per_hour / 3600.0
            for k, t in enumerate(self._link_next):
                while t < until:
                    self.sim.loop.schedule(max(t, now), ARRIVAL, self._on_link, (k, True))
                    self.sim.loop.schedule(max(t, now) + self.links.duration_s, ARRIVAL, self._on_link, (k, False))
                    t = t + self.links.duration_s + self.rng.exponential(1.0 / rate)
                self._link_next[k] = t
        if self.sim._num_done < self._total:
            self.sim.loop.schedule(now + self.tick_s, ARRIVAL, self._on_tick)

    def _apply(self, replica, now: float) -> None:
        replica.step_model = self.model_for(replica.index)
        if replica._stretch is not None:
            replica._cut_stretch(now)  # the rest of the stretch is priced at the new speed

    def _on_link(self, now: float, payload: tuple) -> None:
        k, start = payload
        link = self.sim._links[k]
        if start:
            self.num_link_episodes += 1
            link.bytes_per_s = self._link_base[k] * self.links.bandwidth_factor
            self.degraded_link_s += self.links.duration_s
        else:
            link.bytes_per_s = self._link_base[k]
