"""LoRA adapters on a replica (S-LoRA): which are in GPU memory, and what loading them costs.

Requests name a LoRA adapter of the model; adapters live in host memory and
are loaded over PCIe into GPU memory on demand, where an adapter stays while
any running request uses it and, idle, until its room is needed (least
recently used first).  Two layouts of that GPU memory:

* ``UnifiedAdapters`` (S-LoRA's unified paging): adapters take blocks of the
  KV cache's own pool, as cache entries of the ``PrefixCachingKVManager``;
  idle adapters and idle KV compete for the same room.
* ``PartitionedAdapters``: a fixed partition of ``capacity_bytes`` reserved
  for adapters (taken from the KV cache); a request whose adapter finds no
  room there waits.

An adapter of rank ``r`` on the attention projections (q, k, v, o) holds
``r x (d_in + d_out)`` weights per projection and layer (``adapter_bytes``).
A load takes ``bytes / pcie bandwidth``; the step that admits the request
waits for it.
"""

from __future__ import annotations

import math
from collections import OrderedDict

from servesim.perf.model_spec import ModelSpec

# Cache keys of adapters in the KV manager, far from any prefix hash (those are >= 0).
_ADAPTER_KEY = -(1 << 50)


def adapter_bytes(model: ModelSpec, rank: int, tensor_parallel: int = 1, bytes_per_param: float = 2.0) -> float:
    """Bytes of one rank-``rank`` adapter on q, k, v, o per GPU of a replica (split by TP)."""
    if model.attention == "mla":
        raise ValueError(f"LoRA adapters are modelled for mha/gqa attention; {model.id} uses mla")
    h = model.hidden_size
    q = model.num_heads * model.head_dim
    kv = model.num_kv_heads * model.head_dim
    per_layer = (h + q) + 2 * (h + kv) + (q + h)
    return rank * per_layer * model.num_layers * bytes_per_param / tensor_parallel


class _AdapterLoads:
    """What both layouts share: adapter sizes, and the books of loads over PCIe, whose time
    the next step waits for (``take_stall_s``)."""

    def __init__(self, sizes: list[float], pcie_bytes_per_s: float) -> None:
        self.sizes = sizes  # bytes per adapter
        self.pcie_bytes_per_s = pcie_bytes_per_s
        self._stall_s = 0.0
        self.num_loads = 0
        self.bytes_loaded = 0.0
        self.stall_time_s = 0.0

    def _loaded(self, adapter: int) -> None:
        size = self.sizes[adapter]
        self.num_loads += 1
        self.bytes_loaded += size
        self._stall_s += size / self.pcie_bytes_per_s

    def take_stall_s(self) -> float:
        stall, self._stall_s = self._stall_s, 0.0
        self.stall_time_s += stall
        return stall


class UnifiedAdapters(_AdapterLoads):
    """Adapters in the KV pool (S-LoRA's unified paging), through a PrefixCachingKVManager."""

    def __init__(self, kv, sizes: list[float], pcie_bytes_per_s: float) -> None:
        super().__init__(sizes, pcie_bytes_per_s)
        self.kv = kv
        self.bytes_per_block = kv.bytes_per_token * kv.block_size

    def acquire(self, rid: int, adapter: int) -> bool:
        """Hold ``adapter`` for request ``rid`` (loading it if absent); False if there is no room."""
        size = self.sizes[adapter]
        loaded = self.kv.hold_entry(rid, _ADAPTER_KEY - adapter, math.ceil(size / self.bytes_per_block))
        if loaded is None:
            return False
        if loaded:
            self._loaded(adapter)
        return True

    def release(self, rid: int) -> None:
        self.kv.drop_entry(rid)

    def resident(self) -> int:
        return self.kv.num_entries_below(_ADAPTER_KEY + 1)

    def holds(self, adapter: int) -> bool:
        """Whether ``adapter`` is in GPU memory now."""
        return self.kv.has_entry(_ADAPTER_KEY - adapter)


class PartitionedAdapters(_AdapterLoads):
    """Adapters in a fixed partition of GPU memory, apart from the KV cache."""

    def __init__(self, capacity_bytes: float, sizes: list[float], pcie_bytes_per_s: float) -> None:
        super().__init__(sizes, pcie_bytes_per_s)
        self.capacity_bytes = capacity_bytes
        self._resident: OrderedDict[int, None] = OrderedDict()  # least recently used first
        self._refs: dict[int, int] = {}
        self._held: dict[int, int] = {}  # request -> adapter
        self.used_bytes = 0.0

    def acquire(self, rid: int, adapter: int) -> bool:
        if adapter not in self._resident:
            size = self.sizes[adapter]
            # Make room from idle adapters, least recently used first.
            idle = [a for a in self._resident if self._refs.get(a, 0) == 0]
            freeable = sum(self.sizes[a] for a in idle)
            if self.used_bytes + size - freeable > self.capacity_bytes:
                return False
            for a in idle:
                if self.used_bytes + size <= self.capacity_bytes:
                    break
                del self._resident[a]
                self.used_bytes -= self.sizes[a]
            self._resident[adapter] = None
            self.used_bytes += size
            self._loaded(adapter)
        self._resident.move_to_end(adapter)
        self._refs[adapter] = self._refs.get(adapter, 0) + 1
        self._held[rid] = adapter
        return True

    def release(self, rid: int) -> None:
        adapter = self._held.pop(rid, None)
        if adapter is not None:
            self._refs[adapter] -= 1

    def resident(self) -> int:
        return len(self._resident)

    def holds(self, adapter: int) -> bool:
        """Whether ``adapter`` is in GPU memory now."""
        return adapter in self._resident
