"""Prefill/decode disaggregation: the pools' split and the links that carry KV caches.

Prefill/decode disaggregation (``cluster.disaggregation``) moves every
prompt's KV cache once.  Each prefill replica sends over its own link (its
network interface): transfers from one replica share it first come, first
served, transfers from different replicas run in parallel.  A transfer of
``b`` bytes that starts at ``t`` (or when the link frees up, if later)
occupies the link for ``b / bandwidth`` and lands ``latency`` after that.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PdSetup:
    """How a disaggregated run is split.

    The first ``num_prefill`` replicas run prompts; the others generate.
    A prompt's KV cache (``kv_bytes_per_token`` per prompt token, the whole
    replica's, all its GPUs) crosses its prefill replica's link
    (``link_bytes_per_s``, ``link_latency_s``) to a decode replica.

    With ``offload_threshold_tokens > 0`` the prefill replicas are a remote
    cluster (prefill-as-a-service): arrivals go to the other replicas, which
    serve them whole, except prompts longer than the threshold, which go to
    the least loaded remote replica while its link has at most
    ``max_link_wait_s`` queued.
    """

    num_prefill: int
    kv_bytes_per_token: float
    link_bytes_per_s: float
    link_latency_s: float
    offload_threshold_tokens: int = 0
    max_link_wait_s: float = 0.0
    # Stream the KV cache layer by layer during the prefill (0: after it, whole).
    stream_layers: int = 0
    # A prefill replica with this many outstanding prompts forwards a new one (0: never).
    forward_queue_len: int = 0
    # Run-time P/D controller (disaggregation only; interval 0: off), see PdControllerConfig.
    control_interval_s: float = 0.0
    switch_s: float = 0.0
    prefill_queue_high: float = 0.0
    decode_batch_high: float = 0.0
    # semi-PD: prefill replica i hands its prompts to decode replica num_prefill + i,
    # the other worker on the same GPUs, over their shared KV cache (no link).
    paired: bool = False


class KvLink:
    """One prefill replica's link to the decode pool."""

    __slots__ = ("bytes_per_s", "latency_s", "free_at_s", "bytes_sent", "num_transfers")

    def __init__(self, bytes_per_s: float, latency_s: float) -> None:
        if not bytes_per_s > 0:
            raise ValueError(f"link bandwidth must be > 0 bytes/s, got {bytes_per_s!r}")
        if latency_s < 0:
            raise ValueError(f"link latency must be >= 0 s, got {latency_s!r}")
        self.bytes_per_s = bytes_per_s
        self.latency_s = latency_s
        self.free_at_s = 0.0  # when the transfer in progress (if any) leaves the link
        self.bytes_sent = 0.0
        self.num_transfers = 0

    def backlog_s(self, now: float) -> float:
        """How long a transfer queued now would wait for the link (s)."""
        return self.free_at_s - now if self.free_at_s > now else 0.0

    def send(self, now: float, num_bytes: float, streamed_from_s: float | None = None, num_layers: int = 1) -> float:
        """Queue a transfer of ``num_bytes`` at ``now``; returns when it has fully arrived (s).

        Layer by layer (``streamed_from_s``: when the prompt's prefill began): the KV
        cache leaves as the layers produce it, so the transfer may start at
        ``streamed_from_s`` (once the link is free) but cannot end before its last
        layer, ``num_bytes / num_layers``, has crossed after the prefill ends at ``now``.
        """
        if streamed_from_s is None:
            start = now if now > self.free_at_s else self.free_at_s
            self.free_at_s = start + num_bytes / self.bytes_per_s
        else:
            start = streamed_from_s if streamed_from_s > self.free_at_s else self.free_at_s
            end = start + num_bytes / self.bytes_per_s
            last_layer = now + num_bytes / num_layers / self.bytes_per_s
            self.free_at_s = end if end > last_layer else last_layer
        self.bytes_sent += num_bytes
        self.num_transfers += 1
        return self.free_at_s + self.latency_s
