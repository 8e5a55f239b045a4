"""The ``semantic_cache`` section of a run's summary.

Over the requests that arrived (every one was looked up):

* per category and overall: ``lookups``, ``hits`` (answered from the cache,
  false hits included), ``false_hits`` (answered with another question's
  response), ``hit_rate = hits / lookups``, ``false_hit_rate = false_hits /
  hits``;
* ``offered_load``: requests and prompt tokens that arrived and that reached
  the fleet (IC-Cache examples not counted; ``ic_cache.example_tokens``);
* ``break_even``: every request pays the lookup ``L``; a hit saves the
  fleet's latency ``T`` (the mean end-to-end latency of the requests the
  fleet finished, less their lookup).  Mean latency is ``L + (1 - h) T``
  against ``T`` without the cache, lower exactly when ``h T > L``: the
  break-even hit rate is ``h* = L / T`` (SEED_CLAIMS #18's
  ``hit_rate x saved_latency > lookup_cost``).  ``T`` is measured in this
  run, under the load the cache left to the fleet.  The same for the time to
  first token: a hit's TTFT is ``L``, a miss's ``L + T_first`` (the fleet's
  mean TTFT), so ``h*_ttft = L / T_first``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from servesim.metrics.records import FINISHED, RequestTable
from servesim.metrics.stats import json_float, ratio
from servesim.semantic.front import FALSE_HIT, HIT, NO_EXAMPLES, RELATED, SemanticFront


def break_even_hit_rate(lookup_s: float, saved_s: float) -> float | None:
    """The hit rate above which a cache whose lookups cost ``lookup_s`` and whose hits save
    ``saved_s`` lowers mean latency: ``lookup_s / saved_s`` (None when hits save nothing)."""
    return lookup_s / saved_s if saved_s > 0 else None


def _rates(outcome: np.ndarray) -> dict[str, Any]:
    lookups = int(outcome.size)
    hits = int(np.count_nonzero((outcome == HIT) | (outcome == FALSE_HIT)))
    false_hits = int(np.count_nonzero(outcome == FALSE_HIT))
    return {
        "lookups": lookups,
        "hits": hits,
        "false_hits": false_hits,
        "hit_rate": ratio(hits, lookups),
        "false_hit_rate": ratio(false_hits, hits),
    }


def semantic_cache_summary(front: SemanticFront, requests: RequestTable) -> dict[str, Any]:
    """The summary section (see the module docstring)."""
    ids = requests.request_id
    outcome = front.outcome[ids]
    category = front.category[ids]
    per_category = {}
    for c, cat in enumerate(front.config.categories):
        store = front.stores[c]
        per_category[cat.name] = _rates(outcome[category == c]) | {
            "threshold": cat.threshold,
            "entries_at_end": len(store),
            "expired": store.num_expired,
            "evicted": store.num_evicted,
        }
    reached = front.reached_fleet[ids]
    fleet_done = (requests.status == FINISHED) & (requests.replica >= 0)
    fleet_latency = fleet_ttft = None
    if fleet_done.any():
        fleet_latency = float((requests.finish_s[fleet_done] - requests.arrival_s[fleet_done]).mean()) - front.lookup_s
        fleet_ttft = float((requests.first_token_s[fleet_done] - requests.arrival_s[fleet_done]).mean()) - front.lookup_s
    overall = _rates(outcome)
    return {
        "search": {"location": front.config.search.location, "lookup_s": json_float(front.lookup_s)},
        "similarity": {name: {"a": json_float(beta.a), "b": json_float(beta.b)}
                       for name, beta in (("paraphrase", front.config.similarity.paraphrase),
                                          ("unrelated", front.config.similarity.unrelated))},
        **overall,
        "categories": per_category,
        "tokens_served_from_cache": int(front.tokens_served),
        "offered_load": {
            "requests_arrived": int(ids.size),
            "requests_to_fleet": int(reached.sum()),
            "prompt_tokens_arrived": int(requests.prompt_tokens.sum()),
            "prompt_tokens_to_fleet": int(requests.prompt_tokens[reached].sum()),
            "request_reduction": ratio(int(ids.size - reached.sum()), int(ids.size)),
        },
        "break_even": _break_even(front.lookup_s, fleet_latency, fleet_ttft, overall["hit_rate"]),
        **({"ic_cache": _ic_summary(front, ids)} if front.ic is not None else {}),
    }


def _break_even(lookup_s: float, fleet_latency_s: float | None, fleet_ttft_s: float | None, hit_rate: float | None) -> dict:
    def rate(saved: float | None) -> float | None:
        return None if saved is None else json_float(break_even_hit_rate(lookup_s, saved))

    return {
        "lookup_s": json_float(lookup_s),
        "fleet_latency_s": json_float(fleet_latency_s),
        "hit_rate": rate(fleet_latency_s),
        "lowers_mean_latency": None if fleet_latency_s is None or hit_rate is None else bool(hit_rate * fleet_latency_s > lookup_s),
        "fleet_ttft_s": json_float(fleet_ttft_s),
        "hit_rate_ttft": rate(fleet_ttft_s),
        "lowers_mean_ttft": None if fleet_ttft_s is None or hit_rate is None else bool(hit_rate * fleet_ttft_s > lookup_s),
    }


def _ic_summary(front: SemanticFront, ids: np.ndarray) -> dict[str, Any]:
    found = front.examples[ids]
    sent = front.sent_with_examples[ids]
    return {
        "requests_with_examples": int(np.count_nonzero(found != NO_EXAMPLES)),
        "sent_with_examples": int(np.count_nonzero(sent != NO_EXAMPLES)),
        "sent_with_related_examples": int(np.count_nonzero(sent == RELATED)),
        "example_tokens": int(front.example_tokens),
    }
