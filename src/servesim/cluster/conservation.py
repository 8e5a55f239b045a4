"""The books every run must balance before its results are reported.

* Requests: every arrived request is finished, rejected (with a reason) or
  still in flight at the horizon, exactly one of them.
* Tokens: a finished request produced exactly the tokens it asked for; an
  unfinished one fewer; a rejected one none.  The replicas' own count of
  tokens produced, plus the tokens a semantic cache in front of the fleet
  answered with, equals the sum over requests (double entry).
* KV blocks: every block in use belongs to a request (or, with prefix
  caching, to a cached entry: shared blocks count once, idle entries are
  evictable); after a drained run no request holds a block.

A failed check is a servesim bug: ``InvariantError`` is raised, loudly.
"""

from __future__ import annotations

from typing import Sequence as Seq

import numpy as np

from servesim.cluster.replica import Replica
from servesim.errors import InvariantError
from servesim.metrics.records import FAILED, FINISHED, IN_FLIGHT, REJECTED, RequestTable


def check_conservation(
    table: RequestTable,
    replicas: Seq[Replica],
    horizon_s: float | None = -1.0,
    retired: Seq[Replica] = (),
    cache_served_tokens: int = 0,
) -> None:
    """Raise ``InvariantError`` naming the first broken invariant.

    ``cache_served_tokens``: output tokens of the requests a semantic cache answered
    (they finished on no replica).

    With ``horizon_s=None`` (a run without a horizon, which ends when no event is left) a
    request still in flight means the run stalled: a replica waited with nothing to wake it.
    ``retired`` replicas (failed or scaled away, fleet operations) count in the token books only:
    their memory went with them.
    """
    status = table.status
    n = len(table)
    finished = status == FINISHED
    rejected = status == REJECTED
    in_flight = status == IN_FLIGHT
    failed = status == FAILED
    counted = int(finished.sum() + rejected.sum() + in_flight.sum() + failed.sum())
    if counted != n:
        raise InvariantError(f"request books: {n} arrived but {counted} finished+rejected+failed+in flight")
    if np.any((rejected | failed) & (table.reject_reason == "")):
        raise InvariantError("request books: a rejected or failed request has no reason")
    if np.any(~(rejected | failed) & (table.reject_reason != "")):
        raise InvariantError("request books: a request that was neither rejected nor failed carries a reason")
    if horizon_s is None and in_flight.any():
        raise InvariantError(
            f"stalled run: no event was left but {int(in_flight.sum())} requests are still in flight "
            f"(e.g. request {int(table.request_id[np.flatnonzero(in_flight)[0]])})"
        )
    _check_tokens(table, finished, rejected, list(replicas) + list(retired), cache_served_tokens)
    _check_blocks(replicas, drained=not in_flight.any())


def _check_tokens(
    table: RequestTable, finished: np.ndarray, rejected: np.ndarray, replicas: Seq[Replica], cache_served_tokens: int
) -> None:
    generated = table.tokens_generated
    asked = table.output_tokens
    bad = np.flatnonzero(finished & (generated != asked))
    if bad.size:
        i = int(bad[0])
        raise InvariantError(f"token books: request {i} finished with {generated[i]} tokens, asked for {asked[i]}")
    bad = np.flatnonzero(~finished & (generated >= asked))
    if bad.size:
        i = int(bad[0])
        raise InvariantError(f"token books: unfinished request {i} already has {generated[i]} of {asked[i]} tokens")
    if np.any(rejected & (generated != 0)):
        raise InvariantError("token books: a rejected request produced tokens")
    produced = sum(r.num_tokens_produced for r in replicas)
    recorded = int(generated.sum())
    if produced + cache_served_tokens != recorded:
        raise InvariantError(f"token books: replicas produced {produced} tokens and the cache served "
                             f"{cache_served_tokens}, requests record {recorded}")
    from_cache = finished & (table.replica < 0)
    if int(generated[from_cache].sum()) != cache_served_tokens:
        raise InvariantError(f"token books: requests answered on no replica record {int(generated[from_cache].sum())} "
                             f"tokens, the cache served {cache_served_tokens}")


def _check_blocks(replicas: Seq[Replica], drained: bool) -> None:
    for replica in replicas:
        kv = replica.scheduler.kv
        audit = getattr(kv, "audit", None)
        if audit is not None:
            # Shared prefix blocks: the manager balances requests' blocks and cached entries.
            live = [s.rid for s in replica.scheduler.running] + [s.rid for s in replica.scheduler.waiting]
            problem = audit(live)
            if problem:
                raise InvariantError(f"KV books: replica {replica.index}: {problem}")
        held = sum(kv.num_blocks_of(s.rid) for s in replica.scheduler.running) + sum(
            kv.num_blocks_of(s.rid) for s in replica.scheduler.waiting
        )
        if audit is None and kv.num_used_blocks != held:
            raise InvariantError(
                f"KV books: replica {replica.index} has {kv.num_used_blocks} blocks in use, its requests hold {held}"
            )
        if drained and (kv.num_used_blocks or replica.num_outstanding):
            raise InvariantError(
                f"KV books: drained run but replica {replica.index} still uses {kv.num_used_blocks} blocks "
                f"for {replica.num_outstanding} requests"
            )
