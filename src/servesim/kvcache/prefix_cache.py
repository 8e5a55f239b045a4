"""Prefix caching: KV blocks shared between requests by prefix-block hash, with lower tiers.

Traces such as Mooncake's give each prompt as a chain of block hashes, one
per ``prefix_block_tokens`` tokens (the trace's block size), where equal
hashes mean equal prefixes.  ``PrefixCachingKVManager`` is a
``KVCacheManager`` whose blocks can be shared:

* When a request's prompt has been computed, ``register_prefix`` files the
  full KV blocks under each of its prefix hashes: an *entry*.  A hash that
  is already cached elsewhere is left alone (this request's copy stays
  private).
* When a request is admitted, ``attach_prefix`` walks its hash chain: every
  leading entry found on the GPU is shared (its reference count goes up),
  one found in a lower tier (CPU DRAM, SSD, ...; ``servesim.kvcache.tiers``)
  is loaded into new GPU blocks first, and the walk stops at the first miss.
  The shared tokens count as computed: they skip prefill.
* When a request ends (or is preempted) its entries' counts go down; an
  entry nobody references stays on the GPU, *idle*, until its blocks are
  needed: allocation evicts idle entries least recently used first, and
  each evicted entry is demoted to the first lower tier (which pushes its
  own least recently used entries further down, or out).

Idle entries count as free blocks (``num_free_blocks``) and not as used
ones (``num_used_blocks``: blocks requests hold).  Loads from lower tiers
are priced by ``take_stall_s`` into the step that admits the request.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

from servesim.kvcache.manager import KVCacheManager
from servesim.kvcache.tiers import KvTier


class PrefixCachingKVManager(KVCacheManager):
    """Paged KV blocks with a shared prefix cache (see the module doc)."""

    def __init__(
        self,
        num_blocks: int,
        block_size: int,
        prefix_block_tokens: int,
        bytes_per_token: float = 0.0,
        tiers: Sequence[KvTier] = (),
    ) -> None:
        super().__init__(num_blocks, block_size)
        if prefix_block_tokens < 1 or prefix_block_tokens % block_size:
            raise ValueError(
                f"the prefix block ({prefix_block_tokens} tokens) must be a whole number of KV blocks of {block_size}"
            )
        self.prefix_block_tokens = prefix_block_tokens
        self.bytes_per_token = bytes_per_token
        self.tiers = list(tiers)
        self._entries: dict[int, list[int]] = {}  # hash -> its GPU blocks
        self._refs: dict[int, int] = {}  # hash -> requests referencing it
        self._idle: OrderedDict[int, None] = OrderedDict()  # unreferenced entries, least recently used first
        self._idle_blocks = 0
        self._attached: dict[int, list[int]] = {}  # request id -> hashes it references
        # Loads priced into the next step: waited for, and overlapped with its compute.
        self._stall_s = 0.0
        self._overlap_s = 0.0
        # Books, per request admitted for the first time (``commit_lookup``): lookups, the prefix
        # blocks they asked for, and hits on the GPU and per tier; evictions from the GPU, and
        # the time steps waited for loads.
        self.num_lookups = 0
        self.looked_up_blocks = 0
        self.gpu_hit_blocks = 0
        self.tier_hit_blocks: dict[str, int] = {tier.name: 0 for tier in self.tiers}
        self.hit_tokens = 0  # prompt tokens the requests skipped thanks to those hits
        self.num_evicted = 0
        self.stall_time_s = 0.0
        self._lookup: dict[int, tuple[int, list]] = {}  # request id -> (blocks asked, where each hit was)
        self._held_entry: dict[int, int] = {}  # request id -> an entry it holds apart from its KV (a LoRA adapter)

    # ------------------------------------------------------------- capacity

    @property
    def num_free_blocks(self) -> int:
        """Free blocks, counting those of idle cached entries (evicted on demand)."""
        return self.pool.num_free + self._idle_blocks

    @property
    def num_used_blocks(self) -> int:
        """Blocks requests hold (an entry shared by several counts once)."""
        return self.pool.num_used - self._idle_blocks

    @property
    def num_cached_blocks(self) -> int:
        """Blocks of cached entries on the GPU, referenced or idle."""
        return sum(len(blocks) for blocks in self._entries.values())

    def allocate_slots(self, request_id: int, num_tokens: int) -> bool:
        held = self._blocks.get(request_id)
        need = -(-num_tokens // self.block_size) - (0 if held is None else len(held))
        if need > self.pool.num_free:
            if need > self.pool.num_free + self._idle_blocks:
                return False
            self._evict(need - self.pool.num_free)
        return KVCacheManager.allocate_slots(self, request_id, num_tokens)

    def append_block(self, request_id: int) -> bool:
        if not self._free:
            if not self._idle_blocks:
                return False
            self._evict(1)
        return KVCacheManager.append_block(self, request_id)

    def free(self, request_id: int) -> None:
        self._lookup.pop(request_id, None)  # admission failed: the lookup does not count
        self.drop_entry(request_id)
        hashes = self._attached.pop(request_id, None)
        if not hashes:
            KVCacheManager.free(self, request_id)
            return
        held = self._blocks.pop(request_id, None) or []
        shared: set[int] = set()
        for h in hashes:
            blocks = self._entries[h]
            shared.update(blocks)
            refs = self._refs[h] - 1
            self._refs[h] = refs
            if refs == 0:
                self._idle[h] = None
                self._idle_blocks += len(blocks)
        private = [b for b in held if b not in shared]
        if private:
            self.pool.release(private)

    def blocks_released_by(self, request_ids: list[int]) -> int:
        """Blocks that would stop being in use if these requests ended now: their private blocks,
        and the blocks of entries that only they reference (which would go idle)."""
        released = 0
        dropping: dict[int, int] = {}
        for rid in request_ids:
            shared: set[int] = set()
            for h in self._attached.get(rid, ()):
                shared.update(self._entries[h])
                dropping[h] = dropping.get(h, 0) + 1
            released += sum(1 for b in self._blocks.get(rid, ()) if b not in shared)
        for h, n in dropping.items():
            if self._refs[h] == n:
                released += len(self._entries[h])
        return released

    def _evict(self, num_blocks: int) -> None:
        """Evict idle entries, least recently used first, until ``num_blocks`` more blocks are free."""
        target = self.pool.num_free + num_blocks
        while self.pool.num_free < target:
            h, _ = self._idle.popitem(last=False)
            blocks = self._entries.pop(h)
            del self._refs[h]
            self._idle_blocks -= len(blocks)
            self.pool.release(blocks)
            self.num_evicted += 1
            if h >= 0:  # a prefix entry (not a LoRA adapter, whose weights stay in host memory)
                self._demote(h, len(blocks) * self.block_size, 0)

    def _demote(self, block_hash: int, tokens: int, level: int) -> None:
        """File an entry in tier ``level``; what that pushes out goes a level further down."""
        if level >= len(self.tiers):
            return
        for pushed, pushed_tokens in self.tiers[level].put(block_hash, tokens):
            self._demote(pushed, pushed_tokens, level + 1)

    # --------------------------------------------------------------- lookup

    def peek(self, block_ids: Sequence[int]) -> int:
        """Leading prefix blocks cached in any tier (changes nothing: what a router reads)."""
        n = 0
        for h in block_ids:
            if h not in self._entries and self._tier_of(h) is None:
                break
            n += 1
        return n

    def attach_prefix(self, request_id: int, block_ids: Sequence[int]) -> int:
        """Share the cached leading prefix blocks of a request being admitted; returns the tokens
        they hold (0 on a miss).  Entries found below the GPU are loaded into new GPU blocks; the
        loads are priced into the admitting step (``take_stall_s``)."""
        if request_id in self._blocks:
            raise AssertionError(f"request {request_id} is admitted while it holds KV blocks")
        blocks: list[int] = []
        hashes: list[int] = []
        found: list = []  # None for a GPU hit, else the tier it came from
        full = self.prefix_block_tokens // self.block_size
        for h in block_ids:
            entry = self._entries.get(h)
            if entry is not None:
                if self._refs[h] == 0:
                    del self._idle[h]
                    self._idle_blocks -= len(entry)
                self._refs[h] += 1
                found.append(None)
            else:
                tier = self._tier_of(h)
                entry = None if tier is None else self._load(h)
                if entry is None:
                    break
                found.append(tier)
            blocks.extend(entry)
            hashes.append(h)
            if len(entry) < full:
                break  # a prompt's last, partial block: nothing can follow it
        if hashes:
            self._blocks[request_id] = blocks
            self._attached[request_id] = hashes
        self._lookup[request_id] = (len(block_ids), found)
        return len(blocks) * self.block_size

    def pin(self, pin_id: int, block_ids: Sequence[int]) -> int:
        """Hold the leading entries of ``block_ids`` that are on the GPU under ``pin_id`` (a
        negative id, not a request's), so that they cannot be evicted until ``free(pin_id)``;
        returns how many it holds."""
        hashes: list[int] = []
        for h in block_ids:
            entry = self._entries.get(h)
            if entry is None:
                break
            if self._refs[h] == 0:
                del self._idle[h]
                self._idle_blocks -= len(entry)
            self._refs[h] += 1
            hashes.append(h)
        if hashes:
            self._attached[pin_id] = hashes
            self._blocks[pin_id] = [b for h in hashes for b in self._entries[h]]
        return len(hashes)

    def hold_entry(self, owner: int, key: int, num_blocks: int) -> bool | None:
        """Hold the entry ``key`` for ``owner`` apart from its KV blocks (a LoRA adapter's weights),
        putting it into ``num_blocks`` new blocks if absent: True if it was put there now, False if
        it was there, None (holding nothing) if there is no room."""
        loaded = False
        entry = self._entries.get(key)
        if entry is None:
            if num_blocks > self.pool.num_free + self._idle_blocks:
                return None
            if num_blocks > self.pool.num_free:
                self._evict(num_blocks - self.pool.num_free)
            self._entries[key] = self.pool.allocate(num_blocks)
            self._refs[key] = 0
            loaded = True
        elif self._refs[key] == 0:
            del self._idle[key]
            self._idle_blocks -= len(entry)
        self._refs[key] += 1
        self._held_entry[owner] = key
        return loaded

    def drop_entry(self, owner: int) -> None:
        """Let go of the entry ``owner`` holds apart from its KV (no-op if none)."""
        key = self._held_entry.pop(owner, None)
        if key is None:
            return
        refs = self._refs[key] - 1
        self._refs[key] = refs
        if refs == 0:
            self._idle[key] = None
            self._idle_blocks += len(self._entries[key])

    def has_entry(self, key: int) -> bool:
        """Whether the entry ``key`` is in GPU memory."""
        return key in self._entries

    def num_entries_below(self, key: int) -> int:
        """Cached entries whose keys are below ``key`` (e.g. the LoRA adapters on the GPU)."""
        return sum(1 for k in self._entries if k < key)

    def commit_lookup(self, request_id: int, count: bool, hit_tokens: int = 0) -> None:
        """The request was admitted: count its lookup in the books if ``count`` (its first admission),
        with ``hit_tokens``, the prompt tokens it skips (the hits', less the one token it must compute)."""
        asked, found = self._lookup.pop(request_id)
        if not count:
            return
        self.num_lookups += 1
        self.hit_tokens += hit_tokens
        self.looked_up_blocks += asked
        for tier in found:
            if tier is None:
                self.gpu_hit_blocks += 1
            else:
                self.tier_hit_blocks[tier.name] += 1

    def _tier_of(self, block_hash: int) -> KvTier | None:
        for tier in self.tiers:
            if block_hash in tier:
                return tier
        return None

    def _load(self, block_hash: int) -> list[int] | None:
        """Bring an entry up from a lower tier into new GPU blocks (None if no tier has it, or the
        GPU has no room for it)."""
        tier = self._tier_of(block_hash)
        if tier is None:
            return None
        num_blocks = tier._entries[block_hash] // self.block_size
        if num_blocks > self.pool.num_free + self._idle_blocks:
            return None
        if num_blocks > self.pool.num_free:
            self._evict(num_blocks - self.pool.num_free)  # may push the entry further down, or out
            tier = self._tier_of(block_hash)
            if tier is None:
                return None
        tokens = tier.take(block_hash)
        blocks = self.pool.allocate(num_blocks)
        self._entries[block_hash] = blocks
        self._refs[block_hash] = 1
        seconds = tier.load_s(1, num_blocks, tokens * self.bytes_per_token)
        if tier.overlap:
            self._overlap_s += seconds
        else:
            self._stall_s += seconds
        return blocks

    def register_prefix(self, request_id: int, block_ids: Sequence[int], num_prompt: int) -> None:
        """File the full KV blocks of a computed prompt under its prefix hashes (those not cached yet)."""
        held = self._blocks.get(request_id)
        if held is None:
            return
        attached = self._attached.setdefault(request_id, [])
        mine = set(attached)
        per = self.prefix_block_tokens // self.block_size
        for j, h in enumerate(block_ids):
            start = j * per
            num_full = min((j + 1) * self.prefix_block_tokens, num_prompt) // self.block_size - start
            if num_full <= 0:
                break
            if h not in mine and h not in self._entries and self._tier_of(h) is None:
                self._entries[h] = held[start : start + num_full]
                self._refs[h] = 1
                attached.append(h)
            if num_full < per:
                break
        if not attached:
            del self._attached[request_id]

    def take_stall_s(self, compute_s: float) -> float:
        """Time a step of ``compute_s`` seconds waits for the loads of the requests it admitted:
        the loads it waits for whole, plus what overlapped loads take beyond its compute."""
        stall = self._stall_s
        if self._overlap_s > compute_s:
            stall += self._overlap_s - compute_s
        self._stall_s = self._overlap_s = 0.0
        self.stall_time_s += stall
        return stall

    # ---------------------------------------------------------------- books

    def audit(self, request_ids: Sequence[int]) -> str:
        """'' when the books balance: the pool's used blocks are the requests' blocks (shared ones
        once) plus idle entries'; every reference is a request's; else what is off."""
        held: set[int] = set()
        refs: dict[int, int] = {}
        pins = [key for key in self._attached if key < 0]  # pinned for an agent's next call
        for rid in list(request_ids) + pins:
            held.update(self._blocks.get(rid, ()))
            for h in self._attached.get(rid, ()):
                refs[h] = refs.get(h, 0) + 1
            extra = self._held_entry.get(rid)
            if extra is not None:
                held.update(self._entries[extra])
                refs[extra] = refs.get(extra, 0) + 1
        idle = set()
        for h in self._idle:
            idle.update(self._entries[h])
        if len(held) + len(idle) != self.pool.num_used or held & idle:
            return (f"{self.pool.num_used} blocks in use, requests hold {len(held)}, idle cache entries "
                    f"{len(idle)} ({len(held & idle)} in both)")
        wrong = {h for h, n in self._refs.items() if n != refs.get(h, 0)}
        if wrong:
            return f"reference counts of {len(wrong)} cache entries do not match the requests holding them"
        return ""
