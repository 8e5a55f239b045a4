"""Non-uniform (per-head) KV-cache compression and how its pages are laid out (Tangram).

Compressing the KV cache head by head keeps a different number of tokens'
worth of KV per head: on average a ``footprint_ratio`` of the full cache
(SEED_CLAIMS #11: about 0.25).  What that buys depends on the paging:

* ``ragged`` (Tangram's budget-reserved ragged paging): pages follow each
  head's budget; the cache takes ``footprint_ratio`` of the bytes and the
  attention reads as many, with no other cost.
* ``uniform`` (a uniform page layout under non-uniform budgets, as prior
  schemes in vLLM): pages sized for uniform heads leave part of every page
  unused (``uniform_waste``, a share of the compressed footprint), pages
  are reclaimed during prefill (steps with prompt tokens take
  ``1 + uniform_prefill_overhead`` times as long; up to 25% reported) and
  heads of unequal length unbalance decode (pure-decode steps take
  ``uniform_decode_slowdown`` times as long; up to 1.7x reported).

``memory_bytes_factor`` scales the KV bytes per token of the memory plan,
``read_bytes_factor`` those the step model's attention reads; ``uniform_step_factors``
are the uniform layout's step costs, applied as phase factors.
"""

from __future__ import annotations

from servesim.perf.phase_scaled import PhaseScaledStepModel


def memory_bytes_factor(footprint_ratio: float, paging: str, uniform_waste: float) -> float:
    """How much of the full KV bytes per token the cache takes (capacity)."""
    return footprint_ratio * (1.0 + uniform_waste) if paging == "uniform" else footprint_ratio


def read_bytes_factor(footprint_ratio: float) -> float:
    """How much of the full KV bytes per token attention reads."""
    return footprint_ratio


# The uniform layout's step costs are phase factors (see ``servesim.perf.phase_scaled``).
LayoutStepModel = PhaseScaledStepModel


def uniform_step_factors(paging: str, prefill_overhead: float, decode_slowdown: float) -> tuple[float, float]:
    """(prefill, decode) step-time factors of a page layout: the uniform layout's costs, or none."""
    return (1.0 + prefill_overhead, decode_slowdown) if paging == "uniform" else (1.0, 1.0)
