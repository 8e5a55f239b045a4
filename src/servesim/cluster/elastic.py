"""ElasticMoE-style scaling: a running instance grows or shrinks by GPUs.

Instead of a new replica (a full cold start: provisioning, weights from storage,
warm-up), a scale-up adds GPUs to a running instance: the new GPUs receive their
shard of the weights peer to peer from the instance's GPUs while it keeps
serving (``weights / new_size / peer bandwidth``), then the instance pauses
``switch_s`` to switch to its new layout (tensor-parallel size, step times and
KV capacity of that size).  A scale-down gives GPUs back at once when the KV
blocks in use fit the smaller size (else it waits for a later decision).

Capacity is counted in units of the smallest size: an instance of 8 GPUs
when sizes are [2, 4, 8] is 4 units, and the autoscaling policy's replica
count means units.  When every instance is at its largest size, scale-ups
fall back to new replicas of the smallest size (with their cold start).
"""

from __future__ import annotations

from servesim.cluster.events import ARRIVAL


class PausedOnce:
    """A step model whose next step first waits ``pause_s`` (the layout switch), then runs as ``base``."""

    __slots__ = ("base", "pause_s")

    def __init__(self, base, pause_s: float) -> None:
        self.base = base
        self.pause_s = pause_s

    def time_s(self, shape) -> float:
        pause, self.pause_s = self.pause_s, 0.0
        return pause + self.base.time_s(shape)

    def decode_time_s(self, num_decode_seqs: int, decode_kv_tokens: int) -> float:
        pause, self.pause_s = self.pause_s, 0.0
        return pause + self.base.decode_time_s(num_decode_seqs, decode_kv_tokens)


class ElasticScaler:
    """Sizes, per-size step models and KV capacities, and the resizes in flight."""

    def __init__(self, sizes: list[int], models: list, kv_blocks: list[int], weight_bytes: float,
                 peer_bytes_s: float, switch_s: float) -> None:
        self.sizes = sizes
        self.models = models
        self.kv_blocks = kv_blocks
        self.weight_bytes = weight_bytes
        self.peer_bytes_s = peer_bytes_s
        self.switch_s = switch_s
        self.size_of: dict[int, int] = {}  # slot -> index into sizes (its target, during a grow)
        self.resizing: set[int] = set()
        self.grows = 0
        self.shrinks = 0
        self.grow_s: list[float] = []  # duration of each grow, decision to serving at the new size

    def grow_seconds(self, new_size: int) -> float:
        """Copy of each new GPU's weight shard from a peer, then the layout switch."""
        return self.weight_bytes / new_size / self.peer_bytes_s + self.switch_s

    def units(self, fleet, states: tuple[int, ...]) -> int:
        """Capacity units of the slots in ``states`` (each at its target size)."""
        base = self.sizes[0]
        return sum(self.sizes[self.size_of.get(i, 0)] // base for i, st in enumerate(fleet.state) if st in states)

    def scale_to(self, fleet, desired: int, now: float) -> None:
        from servesim.cluster.fleet import ACTIVE, STARTING

        current = before = self.units(fleet, (ACTIVE, STARTING))
        while desired > current:
            growable = [i for i, st in enumerate(fleet.state)
                        if st == ACTIVE and i not in self.resizing and self.size_of.get(i, 0) + 1 < len(self.sizes)]
            if growable:
                i = min(growable, key=lambda j: (self.size_of.get(j, 0), j))
                current += self._grow(fleet, i, now)
            elif fleet.provisioned() < fleet.max_replicas:
                self.size_of[fleet._start_replica(now)] = 0
                current += 1
            else:
                break
        while desired < current:
            shrinkable = [i for i, st in enumerate(fleet.state)
                          if st == ACTIVE and i not in self.resizing and self.size_of.get(i, 0) > 0 and self._fits(fleet, i)]
            if not shrinkable:
                break
            i = max(shrinkable, key=lambda j: (self.size_of[j], j))
            current -= self._shrink(fleet, i, now)
        if current > before:
            fleet.books.scale_ups += 1
        elif current < before:
            fleet.books.scale_downs += 1

    def _grow(self, fleet, i: int, now: float) -> int:
        old = self.size_of.get(i, 0)
        new = old + 1
        self.size_of[i] = new
        self.resizing.add(i)
        self.grows += 1
        fleet.set_gpus(i, self.sizes[new], now)  # the new GPUs are held (and paid) from the decision
        duration = self.grow_seconds(self.sizes[new])
        fleet.books.events.append((now, i, f"grow to {self.sizes[new]} GPUs"))
        # The copy runs alongside serving; the switch pause lands on the first step after it.
        fleet.sim.loop.schedule(now + duration - self.switch_s, ARRIVAL, self._on_grown, (fleet, i, new, now))
        return (self.sizes[new] - self.sizes[old]) // self.sizes[0]

    def _on_grown(self, now: float, payload: tuple) -> None:
        fleet, i, new, started = payload
        self.resizing.discard(i)
        replica = fleet.sim.replicas[i]
        if replica is None or replica.down:
            return  # failed meanwhile: its restart comes back at the smallest size (see on_restart)
        replica.scheduler.kv.pool.grow(self.kv_blocks[new] - self.kv_blocks[new - 1])
        replica.step_model = PausedOnce(self.models[new], self.switch_s)
        self.grow_s.append(now + self.switch_s - started)
        replica.nudge(now)  # more KV room: a waiting request may fit now

    def _fits(self, fleet, i: int) -> bool:
        idx = self.size_of[i]
        kv = fleet.sim.replicas[i].scheduler.kv
        return kv.pool.num_free >= self.kv_blocks[idx] - self.kv_blocks[idx - 1]

    def _shrink(self, fleet, i: int, now: float) -> int:
        old = self.size_of[i]
        new = old - 1
        replica = fleet.sim.replicas[i]
        replica.scheduler.kv.pool.shrink(self.kv_blocks[old] - self.kv_blocks[new])
        replica.step_model = PausedOnce(self.models[new], self.switch_s)
        self.size_of[i] = new
        self.shrinks += 1
        fleet.set_gpus(i, self.sizes[new], now)
        fleet.books.events.append((now, i, f"shrink to {self.sizes[new]} GPUs"))
        return (self.sizes[old] - self.sizes[new]) // self.sizes[0]

    def on_new_instance(self, i: int) -> None:
        """Slot ``i`` holds a new instance (started, restarted or replaced): the smallest size."""
        self.size_of[i] = 0
        self.resizing.discard(i)
