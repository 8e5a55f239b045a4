"""semi-PD: one GPU's compute split between a prefill worker and a decode worker.

After semi-PD (SEED_CLAIMS #5): each replica runs two workers at once, a
prefill worker on a share ``s`` of the GPU's streaming multiprocessors and a
decode worker on the rest, ``1 - s``.  They share one KV cache (unified
storage: a finished prompt's KV stays where it is, nothing is transferred,
and the weights are held once), so the simulation gives the two workers of
a replica one ``KVCacheManager``.

How a share slows a worker (``SmShareStepModel``):

* prefill is compute-bound: a step takes ``t / s`` (``t``: the step on the
  whole GPU);
* decode is memory-bound: it reaches the GPU's full memory bandwidth with a
  fraction ``decode_saturation`` of the SMs, so a step takes
  ``t / min(1, (1 - s) / decode_saturation)``.

``SemiPdController`` moves ``s`` at run time by SLO pressure: it predicts
the prefill worker's TTFT (the prompts it holds, at its share's speed) and
the decode worker's TPOT (a step at its batch, at its share's speed) as
fractions of their targets; when one is over its target and the other is
not, it shifts ``step`` of the SMs to the one over, within ``[min_share,
max_share]``, unless that would put the other over its own target.  A new
share applies from each worker's next step.
"""

from __future__ import annotations

from dataclasses import dataclass

from servesim.perf.batch_shape import BatchShape


class SmSplit:
    """One replica's split of its SMs: ``prefill_share`` to the prefill worker, the rest to decode."""

    __slots__ = ("prefill_share", "decode_saturation")

    def __init__(self, prefill_share: float, decode_saturation: float) -> None:
        if not 0.0 < prefill_share < 1.0:
            raise ValueError(f"prefill_share must lie in (0, 1), got {prefill_share!r}")
        self.prefill_share = prefill_share
        self.decode_saturation = decode_saturation

    def prefill_slowdown(self) -> float:
        """How many times longer a prefill step takes than on the whole GPU."""
        return 1.0 / self.prefill_share

    def decode_slowdown(self) -> float:
        """How many times longer a decode step takes than on the whole GPU."""
        speed = (1.0 - self.prefill_share) / self.decode_saturation
        return 1.0 / speed if speed < 1.0 else 1.0


class SmShareStepModel:
    """A worker's step model: the whole GPU's, slowed by its share of the SMs (see the module doc)."""

    __slots__ = ("base", "split", "prefill")

    def __init__(self, base, split: SmSplit, prefill: bool) -> None:
        self.base = base
        self.split = split
        self.prefill = prefill

    def _slowdown(self) -> float:
        return self.split.prefill_slowdown() if self.prefill else self.split.decode_slowdown()

    def time_s(self, shape: BatchShape) -> float:
        return self.base.time_s(shape) * self._slowdown()

    def decode_time_s(self, num_decode_seqs: int, decode_kv_tokens: int) -> float:
        return self.base.decode_time_s(num_decode_seqs, decode_kv_tokens) * self._slowdown()


@dataclass(frozen=True)
class SemiPdSetup:
    """How the run splits its replicas (``cluster.semi_pd``), for ``Simulation``.

    ``splits[i]`` is replica ``i``'s split; its prefill worker is simulated
    replica ``i`` and its decode worker replica ``len(splits) + i``.  With a
    controller (``interval_s > 0``) its targets are ``ttft_s`` and ``tpot_s``;
    ``prefill_s_per_token`` (the whole GPU's) and ``decode_step_s(batch)``
    predict them, with ``mean_prompt_tokens`` per outstanding prompt.
    """

    splits: tuple[SmSplit, ...]
    interval_s: float = 0.0
    step: float = 0.1
    min_share: float = 0.1
    max_share: float = 0.9
    ttft_s: float = 0.0
    tpot_s: float = 0.0
    prefill_s_per_token: float = 0.0
    decode_step_s: tuple[float, ...] = ()
    mean_prompt_tokens: float = 0.0


class SemiPdController:
    """SLO-aware moves of each replica's SM split (see the module doc)."""

    def __init__(self, setup: SemiPdSetup) -> None:
        self.setup = setup
        self._last_look_s = float("-inf")
        self.changes: list[tuple[float, int, float]] = []  # (time s, replica, new prefill share)

    def pressures(self, split: SmSplit, prompts_outstanding: int, decode_batch: int) -> tuple[float, float]:
        """(predicted TTFT / target, predicted TPOT / target) of one replica's workers.

        TTFT: the outstanding prompts (``mean_prompt_tokens`` each, the new one
        included) at the prefill worker's speed.  TPOT: one decode step at the
        decode worker's batch and speed.
        """
        s = self.setup
        ttft = (prompts_outstanding + 1) * s.mean_prompt_tokens * s.prefill_s_per_token * split.prefill_slowdown()
        batch = min(max(decode_batch, 1), len(s.decode_step_s))
        tpot = s.decode_step_s[batch - 1] * split.decode_slowdown()
        return ttft / s.ttft_s, tpot / s.tpot_s

    def look(self, now: float, prefill_workers, decode_workers) -> None:
        """At most every ``interval_s``: for each replica whose worker is predicted over its
        target, move one ``step`` of the SMs to it, if the other worker stays under its own
        target after the move."""
        s = self.setup
        if now - self._last_look_s < s.interval_s:
            return
        self._last_look_s = now
        for i, split in enumerate(s.splits):
            prompts, batch = prefill_workers[i].num_outstanding, decode_workers[i].num_outstanding
            ttft_p, tpot_p = self.pressures(split, prompts, batch)
            share = split.prefill_share
            if ttft_p > 1.0 and tpot_p <= 1.0:
                share = min(s.max_share, round(share + s.step, 9))
            elif tpot_p > 1.0 and ttft_p <= 1.0:
                share = max(s.min_share, round(share - s.step, 9))
            if share == split.prefill_share:
                continue
            moved = SmSplit(share, split.decode_saturation)
            ttft_after, tpot_after = self.pressures(moved, prompts, batch)
            if (share > split.prefill_share and tpot_after > 1.0) or (share < split.prefill_share and ttft_after > 1.0):
                continue  # the move would only put the other worker over its target
            split.prefill_share = share
            self.changes.append((now, i, share))
