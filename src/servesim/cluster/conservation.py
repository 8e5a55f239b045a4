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
* Prefix caches: the prompt tokens requests record as found in a cache
  (``cached_tokens``, carried across the prefill-to-decode hand-off) equal
  the tokens the caches booked as hits (prefix caches and RAG chunk caches,
  of live and retired replicas; a cache two workers share counts once).
* Cost (``check_cost``): the GPU-seconds the summary pays equal the
  provisioned time of every replica slot: replicas x GPUs x span for a
  fixed cluster; for a fleet, its pay ledger rebuilt from its event log, and
  every slot that is provisioned is paid for (``check_fleet``).
* Failures (``check_fleet``): every failure is logged and ends in a
  recovery, a replacement (or a cancellation) or the end of the run; one
  still open when the run ended must have had its next recovery step due
  after the run's clock stopped.

A failed check is a servesim bug: ``InvariantError`` is raised, loudly.
"""

from __future__ import annotations

import math
from typing import Sequence as Seq

import numpy as np

from servesim.cluster.fleet import STATE_NAMES
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
    _check_prefix_hits(table, list(replicas) + list(retired))


def check_cost(paid_gpu_s: float | None, provisioned_gpu_s: float | None) -> None:
    """The cost books: GPU-seconds paid (the summary's ``gpu_hours`` x 3600) against the
    provisioned time of every replica slot (None: no span, nothing to compare)."""
    if paid_gpu_s is None or provisioned_gpu_s is None:
        return
    if not math.isclose(paid_gpu_s, provisioned_gpu_s, rel_tol=1e-9, abs_tol=1e-6):
        raise InvariantError(f"cost books: {paid_gpu_s:.9g} GPU-seconds paid, the replica slots were provisioned "
                             f"for {provisioned_gpu_s:.9g}")


def check_fleet(fleet, paid_gpu_s: float, end_s: float, clock_s: float) -> None:
    """A fleet's books (``servesim.cluster.fleet``): pay against its event log and its slots'
    states, up to the span's end ``end_s``; failures against their outcomes, with the event
    loop stopped at ``clock_s``."""
    unpaid = fleet.unpaid_slots()
    if unpaid:
        i = unpaid[0]
        raise InvariantError(f"cost books: replica slot {i} is {STATE_NAMES[fleet.state[i]]} but "
                             f"{'not ' if fleet.state[i] != 0 else ''}paid for")
    check_cost(paid_gpu_s, fleet.logged_gpu_seconds(end_s))
    log = fleet.books.failure_outcomes
    if len(log) != fleet.books.failures:
        raise InvariantError(f"failure books: {fleet.books.failures} failures counted, {len(log)} logged")
    for t, i, cause, outcome in log:
        due = fleet.recovery_due_s(i)
        if not outcome and due <= clock_s:
            raise InvariantError(f"failure books: the {cause} of replica {i} at {t:.6g} s ended in no recovery, "
                                 f"replacement or end of run (its recovery was due at {due:.6g} s, the run "
                                 f"ran to {clock_s:.6g} s)")


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


def _check_prefix_hits(table: RequestTable, replicas: Seq[Replica]) -> None:
    caches: dict[int, object] = {}  # by identity: a cache two workers share counts once
    for replica in replicas:
        for cache in (replica.scheduler.prefix_cache, replica.scheduler.chunk_cache):
            if cache is not None:
                caches[id(cache)] = cache
    booked = sum(getattr(c, "hit_tokens", 0) + getattr(c, "reused_tokens", 0) for c in caches.values())
    recorded = int(table.cached_tokens.sum())
    if recorded != booked:
        raise InvariantError(f"prefix-cache books: requests record {recorded} prompt tokens found in caches, "
                             f"the caches booked {booked}")
