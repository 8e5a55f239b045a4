"""Domain-free simulation machinery: the event kernel and random streams."""

from servesim.core.events import EventLoop
from servesim.core.rng import RandomStreams

__all__ = ["EventLoop", "RandomStreams"]
