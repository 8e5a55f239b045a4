"""servesim: a fast, trace-driven simulator of LLM inference serving fleets.

    >>> import servesim
    >>> result = servesim.simulate()          # the default scenario
    >>> result.summary["ttft_s"]["p99"]

See ``servesim.config.ScenarioConfig`` for every setting.  The top-level names
are imported on first use, so ``import servesim.core`` stays light.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# Route imports of the compiled core to its sources when they are stale (see _compiled).
from servesim import _compiled  # noqa: E402

_compiled.install()

_EXPORTS = {
    "simulate": "servesim.api",
    "Result": "servesim.api",
    "ScenarioConfig": "servesim.config",
    "load_config": "servesim.config",
    "Request": "servesim.workload.request",
    "Workload": "servesim.workload.request",
    "ServesimError": "servesim.errors",
    "ConfigError": "servesim.errors",
    "CatalogError": "servesim.errors",
    "TraceError": "servesim.errors",
    "DeploymentError": "servesim.errors",
    "OutputError": "servesim.errors",
    "InvariantError": "servesim.errors",
}

__all__ = [*_EXPORTS, "__version__"]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'servesim' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
