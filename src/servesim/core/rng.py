"""Seeded random streams, one per named component.

Each component (the arrival generator, the length sampler, a router that
breaks ties at random, ...) asks for its own stream by name.  Streams are
independent of one another and of the order in which they are requested, so
adding a new random consumer never perturbs the draws of existing ones.
"""

from __future__ import annotations

import zlib

import numpy as np


class RandomStreams:
    """Factory of independent ``numpy.random.Generator`` streams for one run."""

    def __init__(self, seed: int) -> None:
        self._seed = int(seed)

    @property
    def seed(self) -> int:
        return self._seed

    def stream(self, name: str) -> np.random.Generator:
        """A fresh generator for ``name``; same seed and name give the same draws.

        The name is hashed with CRC-32 (stable across runs and platforms,
        unlike ``hash()``) into the seed sequence's spawn key.
        """
        key = zlib.crc32(name.encode("utf-8"))
        return np.random.Generator(np.random.PCG64(np.random.SeedSequence(self._seed, spawn_key=(key,))))
