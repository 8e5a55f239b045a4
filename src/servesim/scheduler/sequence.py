"""The scheduler's view of one request in a replica.

Progress is two counters, as in vLLM: ``num_computed`` tokens are in the KV
cache and ``num_tokens = prompt + generated`` tokens exist.  A step computes
``num_new`` tokens; when ``num_computed`` catches up with ``num_tokens`` the
step also samples one output token.  Prefill, chunked prefill, decode and
recompute after preemption all follow from that single rule.
"""

from __future__ import annotations


class Sequence:
    """Mutable per-request state owned by one replica's scheduler."""

    __slots__ = (
        "rid",
        "arrival_s",
        "num_prompt",
        "max_output",
        "priority",
        "session",
        "prefix",
        "chunks",
        "adapter",
        "cached_tokens",
        "num_generated",
        "num_computed",
        "first_scheduled_s",
        "first_token_s",
        "last_token_s",
        "max_itl_s",
        "num_preemptions",
        # Lockstep decode group (servesim.scheduler.lockstep): the step index
        # at which the sequence joined, its counters then, an epoch that
        # invalidates its heap and bucket entries when it leaves, and the step
        # at which it needs its next KV block.
        "group_join",
        "group_generated0",
        "group_computed0",
        "group_epoch",
        "group_next_block",
    )

    def __init__(
        self, rid: int, arrival_s: float, num_prompt: int, max_output: int, priority: int = 0, session: str | None = None
    ) -> None:
        self.rid = rid
        self.arrival_s = arrival_s
        self.num_prompt = num_prompt
        self.max_output = max_output
        self.priority = priority
        self.session = session  # conversation/agent id (routers may use it), or None
        self.prefix: tuple[int, ...] = ()  # the prompt's prefix-block hashes, when the trace has them
        self.chunks: tuple[int, ...] = ()  # the RAG chunks the prompt is built from, when it is
        self.adapter = -1  # the LoRA adapter it asks for (-1: the base model)
        self.cached_tokens = 0  # prompt tokens found in the replica's prefix cache on arrival
        self.num_generated = 0
        self.num_computed = 0
        self.first_scheduled_s = -1.0
        self.first_token_s = -1.0
        self.last_token_s = -1.0
        self.max_itl_s = 0.0
        self.num_preemptions = 0
        self.group_join = -1  # -1: not in a lockstep group
        self.group_generated0 = 0
        self.group_computed0 = 0
        self.group_epoch = 0
        self.group_next_block = 0

    @property
    def num_tokens(self) -> int:
        """Tokens that exist for this request: prompt plus generated output."""
        return self.num_prompt + self.num_generated

    @property
    def is_finished(self) -> bool:
        return self.num_generated >= self.max_output

    @property
    def peak_kv_tokens(self) -> int:
        """Most tokens this request ever holds in the KV cache (its last step's input)."""
        return self.num_prompt + self.max_output - 1

    def __repr__(self) -> str:  # for test failure messages
        return (
            f"Sequence(rid={self.rid}, prompt={self.num_prompt}, out={self.num_generated}/{self.max_output}, "
            f"computed={self.num_computed})"
        )
