"""Lazy re-exports for package ``__init__`` modules.

A package lists its public names and the modules that define them; a name is
imported on first use.  ``import servesim.perf.batch_shape`` then does not
pay for the calibration tools, plotting or pydantic models of its siblings,
which keeps the simulator's start-up short.
"""

from __future__ import annotations

import importlib
from typing import Any, Callable


def attach(package: str, exports: dict[str, str]) -> tuple[Callable[[str], Any], Callable[[], list[str]], list[str]]:
    """``(__getattr__, __dir__, __all__)`` for ``package`` exporting ``{name: module}``."""

    def __getattr__(name: str) -> Any:
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(module), name)

    def __dir__() -> list[str]:
        return sorted(exports)

    return __getattr__, __dir__, sorted(exports)
