"""Autoscaling policies: how many replicas the fleet should have, from its metrics.

A policy sees the fleet's samples (``servesim.cluster.fleet.FleetSample``, the
newest last, possibly delayed) at each decision and returns the replica count
it wants (None: no opinion).  The fleet moves towards it, paying cold starts
up and draining down.  Policies:

* ``Kpa``: Knative's Pod Autoscaler.  Desired replicas = ceil(average
  concurrency / (target x utilization)) over a stable window (60 s), or over a
  panic window (6 s) while the panic window asks for at least
  ``panic_threshold`` times the ready replicas; in panic it never scales down,
  and it leaves panic after a stable window without a new trigger.  It does
  not scale down before it has a full stable window of metrics.  Each
  decision moves at most ``max_scale_up_rate`` times up and
  ``max_scale_down_rate`` times down; scale to zero waits a grace period
  without traffic.
* ``Hpa``: Kubernetes' HPA rule, desired = ceil(ready x observed / target)
  unless within the tolerance; scale-down takes the highest recommendation of
  its stabilization window.
* ``QLearningKpa``: a KPA whose concurrency target a tabular Q-learning agent
  moves up or down every ``decision_interval_s`` (Schuler et al. 2020).  The
  agent is trained over whole runs of the scenario (episodes; see
  ``servesim.api``), then run greedily.
* ``Fixed``: no decisions (a fleet with failures and no autoscaling).
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from servesim.cluster.fleet import FleetSample


class Fixed:
    """No autoscaling: the fleet keeps its replicas (failures and recoveries aside)."""

    def decide(self, samples: Sequence[FleetSample], now: float) -> int | None:
        return None

    def on_finished(self, seqs, now: float) -> None:
        pass


class Kpa:
    """Knative's concurrency-based Pod Autoscaler (its default rules; see the module doc)."""

    def __init__(self, cfg, min_replicas: int = 1) -> None:
        self.target = cfg.target_concurrency
        self.utilization = cfg.target_utilization
        self.stable_s = cfg.stable_window_s
        self.panic_s = cfg.stable_window_s * cfg.panic_window_fraction
        self.panic_threshold = cfg.panic_threshold
        self.up_rate = cfg.max_scale_up_rate
        self.down_rate = cfg.max_scale_down_rate
        self.grace_s = cfg.scale_to_zero_grace_s
        self.min_replicas = min_replicas
        self.panic_since = -1.0  # start of the current panic, -1 when not panicking
        self.panic_peak = 0  # most replicas asked for during this panic
        self.panics = 0

    def decide(self, samples: Sequence[FleetSample], now: float) -> int | None:
        if not samples:
            return None
        last = samples[-1]
        per_replica = self.target * self.utilization
        stable = _window_mean(samples, last.time_s - self.stable_s)
        panic = _window_mean(samples, last.time_s - self.panic_s)
        want_stable = math.ceil(stable / per_replica - 1e-9)
        want_panic = math.ceil(panic / per_replica - 1e-9)
        ready = last.active
        if panic / per_replica / max(ready, 1) >= self.panic_threshold:
            if self.panic_since < 0.0:
                self.panics += 1
                self.panic_peak = 0
            self.panic_since = now  # (re)triggered: stay at least a stable window
        elif self.panic_since >= 0.0 and now - self.panic_since >= self.stable_s:
            self.panic_since = -1.0
        if self.panic_since >= 0.0:
            desired = max(want_panic, self.panic_peak, ready)  # no scaling down in panic
            self.panic_peak = desired
        else:
            desired = want_stable
        if ready > 0:
            desired = min(desired, math.ceil(self.up_rate * ready))
            desired = max(desired, math.floor(ready / self.down_rate))
        if desired == 0 and _last_busy_s(samples) > now - self.grace_s:
            desired = 1  # not yet: traffic was seen within the grace period
        if desired < ready and last.time_s - samples[0].time_s < self.stable_s:
            desired = ready  # no scaling down before a full stable window of metrics exists
        return desired

    def on_finished(self, seqs, now: float) -> None:
        pass


class Hpa:
    """The Kubernetes HPA rule on one per-replica metric (see the module doc)."""

    def __init__(self, cfg) -> None:
        self.metric = cfg.metric
        self.target = cfg.target
        self.tolerance = cfg.tolerance
        self.window_s = cfg.scale_down_window_s
        self._recent: list[tuple[float, int]] = []  # (time, recommendation)

    def observed(self, samples: Sequence[FleetSample]) -> float | None:
        """The metric per ready replica at the newest sample (None: no ready replica or no interval)."""
        last = samples[-1]
        if last.active == 0:
            return None
        if self.metric == "concurrency":
            return last.concurrency / last.active
        if self.metric == "queue":
            return last.waiting / last.active
        if len(samples) < 2:
            return None
        prev = samples[-2]
        span = last.time_s - prev.time_s
        return None if span <= 0.0 else (last.busy_s - prev.busy_s) / span / last.active

    def decide(self, samples: Sequence[FleetSample], now: float) -> int | None:
        if not samples:
            return None
        last = samples[-1]
        current = last.active + last.starting
        value = self.observed(samples)
        if value is None:
            want = 1 if last.concurrency > 0 and current == 0 else current
        elif abs(value / self.target - 1.0) <= self.tolerance:
            want = current
        else:
            want = math.ceil(last.active * value / self.target - 1e-9)
        self._recent = [(t, w) for t, w in self._recent if t > now - self.window_s]
        self._recent.append((now, want))
        if want < current:
            want = min(current, max(w for _, w in self._recent))  # stabilization: the window's highest
        return want

    def on_finished(self, seqs, now: float) -> None:
        pass


class QLearningKpa:
    """KPA with a concurrency target tuned by tabular Q-learning (see the module doc).

    State: (bucket of observed concurrency per ready replica relative to the
    target, index of the target); actions: move the target one step down, keep
    it, or one step up.  Reward: ``-slo_weight x`` the share of the finished
    requests that missed the SLO ``- cost_weight x`` the mean replicas
    provisioned.  The Q-table persists across the episodes it is trained on;
    ``epsilon`` is the exploration rate of the current episode.

    Two modes.  Episodic (``decision_interval_s`` None): one move per episode,
    from where the last one left the target, which then holds for the whole
    run; the reward is the run's; the reported run uses the target a greedy
    walk through the Q-table reaches from the initial one.  Within a run: a
    move every ``decision_interval_s``, rewarded by that interval, each
    episode starting from the initial target.
    """

    ACTIONS = (-1, 0, 1)

    def __init__(self, kpa_cfg, rl_cfg, slo, rng: np.random.Generator, min_replicas: int = 1) -> None:
        self.kpa_cfg = kpa_cfg
        self.cfg = rl_cfg
        self.slo = slo
        self.rng = rng
        self.min_replicas = min_replicas
        self.targets = list(rl_cfg.targets)
        self.q = np.zeros((len(rl_cfg.load_levels) + 1, len(self.targets), len(self.ACTIONS)))
        self.visits = np.zeros(self.q.shape, dtype=np.int64)
        self.epsilon = 0.0
        self.episodic = rl_cfg.decision_interval_s is None
        self.trace: list[tuple[float, float]] = []  # (time, target) of each decision in the current episode
        self.index = self.targets.index(rl_cfg.initial_target)
        self._episode_move = None  # episodic: (state, action) of the episode running, awaiting its reward
        self.episode_rewards: list[float] = []
        self._reset_books()
        self.kpa = self._kpa(self.index)

    def _reset_books(self) -> None:
        self._last_decision = None  # (time, state, action) awaiting its reward
        self._finished = 0
        self._missed = 0
        self._replica_s = 0.0
        self._first_sample_s = None
        self._last_sample_s = None

    def new_episode(self, epsilon: float, final: bool = False) -> None:
        """Start an episode exploring at rate ``epsilon`` (episodic: after learning from the one that
        ran); ``final``: the reported run, on the greedy target."""
        self.epsilon = epsilon
        if self.episodic:
            if self._episode_move is not None and self._first_sample_s is not None:
                s0, a0 = self._episode_move
                r = self.reward(self._last_sample_s - self._first_sample_s)
                self.episode_rewards.append(r)
                self._update(s0, a0, r, (0, self.index))
            if final:
                self.index = self.greedy_target_index()
                self._episode_move = None
            else:
                state = (0, self.index)
                action = self._choose(state)
                self.index = self._moved(self.index, action)
                self._episode_move = (state, action)
        else:
            self.index = self.targets.index(self.cfg.initial_target)
        self.trace = []
        self._reset_books()
        self.kpa = None
        self.kpa = self._kpa(self.index)

    def greedy_target_index(self) -> int:
        """Where greedy moves lead from the initial target (episodic mode): follow the best action
        until it is "keep" or a target repeats."""
        index = self.targets.index(self.cfg.initial_target)
        seen = {index}
        while True:
            action = self._choose((0, index), greedy=True)
            nxt = self._moved(index, action)
            if nxt in seen:
                return index
            seen.add(nxt)
            index = nxt

    def _moved(self, index: int, action: int) -> int:
        return min(max(index + self.ACTIONS[action], 0), len(self.targets) - 1)

    def _kpa(self, index: int) -> Kpa:
        kpa = Kpa(self.kpa_cfg.model_copy(update={"target_concurrency": self.targets[index]}), self.min_replicas)
        if getattr(self, "kpa", None) is not None:  # keep the panic state across target moves
            kpa.panic_since, kpa.panic_peak, kpa.panics = self.kpa.panic_since, self.kpa.panic_peak, self.kpa.panics
        return kpa

    def state(self, samples: Sequence[FleetSample]) -> tuple[int, int]:
        last = samples[-1]
        load = last.concurrency / max(last.active, 1) / self.targets[self.index]
        bucket = int(np.searchsorted(np.asarray(self.cfg.load_levels), load, side="right"))
        return bucket, self.index

    def decide(self, samples: Sequence[FleetSample], now: float) -> int | None:
        if not samples:
            return None
        last = samples[-1]
        if self._last_sample_s is not None:
            self._replica_s += (last.active + last.starting + last.draining + last.down) * (last.time_s - self._last_sample_s)
        else:
            self._first_sample_s = last.time_s
        self._last_sample_s = last.time_s
        if self.episodic:
            if not self.trace:
                self.trace.append((now, self.targets[self.index]))
            return self.kpa.decide(samples, now)
        pending = self._last_decision
        if pending is None or now - pending[0] >= self.cfg.decision_interval_s:
            state = self.state(samples)
            if pending is not None:
                self._learn(pending, state, now)
            action = self._choose(state)
            self.index = self._moved(self.index, action)
            self.kpa = self._kpa(self.index)
            self._last_decision = (now, state, action)
            self.trace.append((now, self.targets[self.index]))
        return self.kpa.decide(samples, now)

    def reward(self, elapsed_s: float) -> float:
        """The reward of the interval (or episode) just ended (see the class doc)."""
        miss = self._missed / self._finished if self._finished else 0.0
        replicas = self._replica_s / elapsed_s if elapsed_s > 0 else 0.0
        return -self.cfg.slo_weight * miss - self.cfg.cost_weight * replicas

    def _learn(self, pending: tuple, state: tuple[int, int], now: float) -> None:
        t0, s0, a0 = pending
        self._update(s0, a0, self.reward(now - t0), state)
        self._finished = self._missed = 0
        self._replica_s = 0.0

    def _update(self, s0: tuple[int, int], a0: int, r: float, s1: tuple[int, int]) -> None:
        """Q(s0, a0) <- Q + alpha (r + gamma max_a Q(s1, a) - Q); a first visit sets Q to the target
        itself (an estimate, not 0 shrunk towards it, so that cells visited different numbers of
        times compare fairly).  max_a Q(s1, a) is over the actions tried from s1 (r when none was)."""
        tried = self.visits[s1] > 0
        best_next = self.q[s1][tried].max() if tried.any() else r
        target = r + self.cfg.discount * best_next
        cell = self.q[s0][a0]
        self.q[s0][a0] = target if self.visits[s0][a0] == 0 else cell + self.cfg.learning_rate * (target - cell)
        self.visits[s0][a0] += 1

    def _choose(self, state: tuple[int, int], greedy: bool = False) -> int:
        """An action from ``state``: random with probability epsilon; else the best (untried actions
        count as 0, above any reward: the agent tries them); ``greedy``: the best tried one ("keep"
        when none was tried)."""
        if not greedy and self.epsilon > 0.0 and self.rng.random() < self.epsilon:
            return int(self.rng.integers(len(self.ACTIONS)))
        values = self.q[state]
        if greedy:
            tried = self.visits[state] > 0
            if not tried.any():
                return 1
            values = np.where(tried, values, -np.inf)
        best = np.flatnonzero(values == values.max())
        return int(best[len(best) // 2]) if len(best) > 1 else int(best[0])  # ties: "keep" (the middle action)

    def on_finished(self, seqs, now: float) -> None:
        slo = self.slo
        for seq in seqs:
            self._finished += 1
            ttft = seq.first_token_s - seq.arrival_s
            e2e = seq.last_token_s - seq.arrival_s
            tpot = (seq.last_token_s - seq.first_token_s) / (seq.num_generated - 1) if seq.num_generated > 1 else 0.0
            if (slo.ttft_s is not None and ttft > slo.ttft_s) or (slo.tpot_s is not None and tpot > slo.tpot_s) \
                    or (slo.e2e_s is not None and e2e > slo.e2e_s):
                self._missed += 1


def _window_mean(samples: Sequence[FleetSample], after_s: float) -> float:
    """Mean concurrency of the samples taken after ``after_s`` (at least the newest)."""
    total, count = 0.0, 0
    for sample in reversed(samples):
        if sample.time_s <= after_s and count:
            break
        total += sample.concurrency
        count += 1
    return total / count


def _last_busy_s(samples: Sequence[FleetSample]) -> float:
    """Time of the newest sample with a request in flight (-inf if none)."""
    for sample in reversed(samples):
        if sample.concurrency > 0:
            return sample.time_s
    return float("-inf")


def make_policy(cfg, slo, rng: np.random.Generator | None = None):
    """The policy an ``AutoscalingConfig`` names (``rng``: the RL agent's exploration stream)."""
    if cfg.policy == "kpa":
        return Kpa(cfg.kpa, cfg.min_replicas)
    if cfg.policy == "hpa":
        return Hpa(cfg.hpa)
    if cfg.policy == "rl":
        return QLearningKpa(cfg.kpa, cfg.rl, slo, rng if rng is not None else np.random.default_rng(0), cfg.min_replicas)
    return Fixed()
