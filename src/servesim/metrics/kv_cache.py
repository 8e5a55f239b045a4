"""The prefix cache's books across a run's replicas (``cluster.prefix_caching``).

Counts prefix blocks (the trace's blocks, e.g. Mooncake's 512 tokens), not
KV blocks.  ``prefix_cache_hit_rate`` is the share of the prefix blocks that
admitted prompts asked for that were found cached, in any tier; per tier,
``hit_rate`` is that tier's share.  Bytes loaded are KV bytes brought up to
the GPU from a tier; bytes stored, those the tier above demoted into it.
``load_stall_s`` is the time steps waited for loads (summed over replicas).
"""

from __future__ import annotations

from array import array
from typing import TYPE_CHECKING, Any, Sequence

from servesim.metrics.stats import json_float, ratio

if TYPE_CHECKING:
    import pyarrow as pa


class KvCacheSeries:
    """Per-replica samples of a prefix cache's books over the run (cumulative counts), taken with
    the main time series at step starts: prefix blocks looked up and found (any tier), KV bytes
    loaded from lower tiers, and the time steps waited for loads.  Inside a decode stretch nothing
    is admitted, so the books do not move there."""

    COLUMNS = ("time_s", "replica", "looked_up_blocks", "hit_blocks", "bytes_loaded", "load_stall_s")

    def __init__(self) -> None:
        self._cols = {"time_s": array("d"), "replica": array("q"), "looked_up_blocks": array("q"),
                      "hit_blocks": array("q"), "bytes_loaded": array("d"), "load_stall_s": array("d")}

    def __len__(self) -> int:
        return len(self._cols["time_s"])

    def sample(self, now: float, replica: int, cache: Any) -> None:
        """Record ``cache``'s books (a PrefixCachingKVManager) at ``now``."""
        c = self._cols
        c["time_s"].append(now)
        c["replica"].append(replica)
        c["looked_up_blocks"].append(cache.looked_up_blocks)
        c["hit_blocks"].append(cache.gpu_hit_blocks + sum(cache.tier_hit_blocks.values()))
        c["bytes_loaded"].append(sum(t.bytes_loaded for t in cache.tiers))
        c["load_stall_s"].append(cache.stall_time_s)

    def to_arrow(self) -> pa.Table:
        """The samples ordered by (time, replica), as a table."""
        import pyarrow as pa  # on first use: a run that writes no files never needs it

        table = pa.table({name: pa.array(col) for name, col in self._cols.items()})
        return table.sort_by([("time_s", "ascending"), ("replica", "ascending")])


def kv_cache_summary(managers: Sequence[Any]) -> dict[str, Any]:
    """``prefix_cache_hit_rate`` and ``kv_cache`` (per tier: hits, hit rate, bytes moved, evictions)."""
    looked = sum(m.looked_up_blocks for m in managers)
    tiers: dict[str, dict[str, Any]] = {
        "gpu": {
            "hit_blocks": sum(m.gpu_hit_blocks for m in managers),
            "evictions": sum(m.num_evicted for m in managers),
        }
    }
    counted: set[int] = set()  # a shared tier (one store for all replicas) counts its traffic once
    for m in managers:
        for tier in m.tiers:
            row = tiers.setdefault(tier.name, {"hit_blocks": 0, "evictions": 0, "bytes_loaded": 0.0, "bytes_stored": 0.0})
            row["hit_blocks"] += m.tier_hit_blocks[tier.name]
            if id(tier) in counted:
                continue
            counted.add(id(tier))
            row["evictions"] += tier.num_evicted
            row["bytes_loaded"] += tier.bytes_loaded
            row["bytes_stored"] += tier.bytes_stored
    hits = 0
    for row in tiers.values():
        hits += row["hit_blocks"]
        row["hit_rate"] = ratio(row["hit_blocks"], looked)
        for key in ("bytes_loaded", "bytes_stored"):
            if key in row:
                row[key] = json_float(row[key])
    return {
        "prefix_cache_hit_rate": ratio(hits, looked),
        "kv_cache": {
            "lookups": sum(m.num_lookups for m in managers),
            "looked_up_blocks": looked,
            "load_stall_s": json_float(sum(m.stall_time_s for m in managers)),
            "tiers": tiers,
        },
    }


def chunk_cache_summary(caches: Sequence[Any]) -> dict[str, Any]:
    """RAG chunk caches across replicas: chunk hit rate at first admissions, tokens reused, load stalls."""
    looked = sum(c.looked_up_chunks for c in caches)
    hits = sum(c.hit_chunks for c in caches)
    return {
        "lookups": sum(c.num_lookups for c in caches),
        "looked_up_chunks": looked,
        "hit_chunks": hits,
        "hit_rate": ratio(hits, looked),
        "reused_tokens": sum(c.reused_tokens for c in caches),
        "load_stall_s": json_float(sum(c.stall_time_s for c in caches)),
    }
