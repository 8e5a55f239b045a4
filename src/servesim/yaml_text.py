"""Reading YAML text: libyaml's C parser when PyYAML has it, the pure-Python one otherwise.

The catalogs are parsed on every run, and the C parser reads them in a
fifth of the time; both build the same Python objects and raise
``yaml.YAMLError`` (with line and column) on bad input.
"""

from __future__ import annotations

from typing import Any

import yaml

_SafeLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def safe_load(text: str) -> Any:
    """``yaml.safe_load`` through the fastest safe loader available."""
    return yaml.load(text, Loader=_SafeLoader)  # noqa: S506 - a safe loader
