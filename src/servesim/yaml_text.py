"""Reading YAML text: libyaml's C parser when PyYAML has it, the pure-Python one otherwise.

The catalogs are parsed on every run, and the C parser reads them in a
fifth of the time; both build the same Python objects and raise
``yaml.YAMLError`` (with line and column) on bad input.  A mapping that
repeats a key is refused (PyYAML would keep the last value silently), with
the key and the line of each occurrence.
"""

from __future__ import annotations

from typing import Any

import yaml
from yaml.constructor import ConstructorError
from yaml.nodes import MappingNode, ScalarNode

_SafeLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_MERGE_TAG = "tag:yaml.org,2002:merge"


class _UniqueKeyLoader(_SafeLoader):  # type: ignore[misc, valid-type]
    """The safe loader, refusing a mapping that repeats a key."""

    def construct_mapping(self, node: MappingNode, deep: bool = False) -> dict[Any, Any]:
        first_line: dict[tuple[str, str], int] = {}
        for key_node, _ in node.value:
            if not isinstance(key_node, ScalarNode) or key_node.tag == _MERGE_TAG:
                continue  # merged keys ('<<') may be overridden, as YAML allows
            key = (key_node.tag, key_node.value)
            line = key_node.start_mark.line + 1
            if key in first_line:
                raise ConstructorError(
                    "while reading a mapping", node.start_mark,
                    f"duplicate key {key_node.value!r} (first on line {first_line[key]})", key_node.start_mark,
                )
            first_line[key] = line
        return super().construct_mapping(node, deep=deep)


_UniqueKeyLoader.add_constructor("tag:yaml.org,2002:map", _UniqueKeyLoader.construct_yaml_map)


def safe_load(text: str) -> Any:
    """``yaml.safe_load`` through the fastest safe loader available; ``yaml.YAMLError`` (a
    ``ConstructorError`` naming the key and its line) for a mapping that repeats a key."""
    return yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a safe loader
