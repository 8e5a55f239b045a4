"""Domain-free simulation machinery: the event kernel and random streams.
"""

from servesim._lazy import attach

__getattr__, __dir__, __all__ = attach(
    __name__,
    {
        "EventLoop": "servesim.core.events",
        "RandomStreams": "servesim.core.rng",
    },
)
