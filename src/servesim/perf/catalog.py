"""The catalog of models and GPUs: packaged entries plus user additions.

A catalog is immutable.  ``Catalog.default()`` reads the YAML shipped in
``servesim/data``; ``with_entries`` and ``from_files`` return a new catalog
with entries added or overridden.  Both YAML files share one schema::

    models:                 # optional
      <id>: {<ModelSpec field>: value, ...}
    hardware:               # optional
      <id>: {<HardwareSpec field>: value, ...}

An entry whose id is already known is merged field by field onto the known
entry (so ``{h100: {price_usd_per_gpu_hr: 3.0}}`` changes just the price); a
new id must give every required field.  Every problem raises ``CatalogError``
with one line naming the entry and the field.
"""

from __future__ import annotations

import functools

from collections.abc import Iterable, Mapping
from importlib import resources
from os import PathLike
from pathlib import Path
from types import MappingProxyType
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from servesim import yaml_text
from servesim.errors import CatalogError
from servesim.perf.hardware_spec import HardwareSpec
from servesim.perf.model_spec import ModelSpec

__all__ = ["Catalog", "HardwareSpec", "ModelSpec"]

_SECTIONS = ("models", "hardware")
_Spec = TypeVar("_Spec", bound=BaseModel)


class Catalog:
    """Known models and GPUs, looked up by id.

    ``model(id)`` / ``hardware(id)`` return the spec or raise ``CatalogError``
    listing the known ids.  Ids keep their file order (packaged first, then
    additions in the order given).
    """

    __slots__ = ("_models", "_hardware")

    def __init__(self, models: Mapping[str, ModelSpec], hardware: Mapping[str, HardwareSpec]) -> None:
        self._models = MappingProxyType(dict(models))
        self._hardware = MappingProxyType(dict(hardware))

    # ------------------------------------------------------------ construction
    @classmethod
    def default(cls) -> Catalog:
        """The catalog packaged with servesim (``servesim/data/{models,hardware}.yaml``), parsed
        once per process: a catalog is immutable, and a run asks for it several times."""
        return _packaged_catalog()

    @classmethod
    def from_files(cls, paths: Iterable[str | PathLike[str]], base: Catalog | None = None) -> Catalog:
        """``base`` (default: the packaged catalog) plus the entries of each YAML file, in order."""
        return (cls.default() if base is None else base).with_files(paths)

    def with_files(self, paths: Iterable[str | PathLike[str]]) -> Catalog:
        """A new catalog with the entries of each YAML file applied in order."""
        catalog = self
        for path in paths:
            path = Path(path)
            try:
                text = path.read_text(encoding="utf-8")
            except OSError as err:
                raise CatalogError(f"cannot read catalog file {path}: {err.strerror or err}") from None
            sections = _load_yaml_text(text, str(path))
            catalog = catalog.with_entries(models=sections.get("models"), hardware=sections.get("hardware"))
        return catalog

    def with_entries(
        self,
        models: Mapping[str, Mapping[str, Any]] | None = None,
        hardware: Mapping[str, Mapping[str, Any]] | None = None,
    ) -> Catalog:
        """A new catalog with these entries added, or merged onto known ids."""
        return Catalog(
            _merge("model", ModelSpec, self._models, models),
            _merge("hardware", HardwareSpec, self._hardware, hardware),
        )

    # ----------------------------------------------------------------- lookup
    def model(self, model_id: str) -> ModelSpec:
        """The model with this id; ``CatalogError`` if unknown."""
        try:
            return self._models[model_id]
        except KeyError:
            raise CatalogError(_unknown("model", model_id, self._models)) from None

    def hardware(self, hardware_id: str) -> HardwareSpec:
        """The GPU with this id; ``CatalogError`` if unknown."""
        try:
            return self._hardware[hardware_id]
        except KeyError:
            raise CatalogError(_unknown("hardware", hardware_id, self._hardware)) from None

    @property
    def model_ids(self) -> tuple[str, ...]:
        """Known model ids, in catalog order."""
        return tuple(self._models)

    @property
    def hardware_ids(self) -> tuple[str, ...]:
        """Known GPU ids, in catalog order."""
        return tuple(self._hardware)

    def __repr__(self) -> str:
        return f"Catalog(models={list(self._models)}, hardware={list(self._hardware)})"


# ---------------------------------------------------------------- internals
def _unknown(kind: str, key: object, known: Mapping[str, object]) -> str:
    return f"unknown {kind} {key!r}; known: {', '.join(known)}"


def _load_yaml_text(text: str, where: str) -> dict[str, Any]:
    """Parse one catalog file into its sections; ``CatalogError`` on bad shape."""
    try:
        doc = yaml_text.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        at = f" at line {mark.line + 1}" if mark is not None else ""
        raise CatalogError(f"catalog file {where} is not valid YAML{at}") from None
    if doc is None:
        return {}
    if not isinstance(doc, dict):
        raise CatalogError(f"catalog file {where}: top level must be a mapping with keys {', '.join(_SECTIONS)}")
    extra = [k for k in doc if k not in _SECTIONS]
    if extra:
        raise CatalogError(f"catalog file {where}: unknown section {extra[0]!r}; allowed: {', '.join(_SECTIONS)}")
    for section in _SECTIONS:
        if doc.get(section) is not None and not isinstance(doc[section], dict):
            raise CatalogError(f"catalog file {where}: section {section!r} must map ids to entries")
    return doc


def _merge(
    kind: str,
    spec_type: type[_Spec],
    known: Mapping[str, _Spec],
    entries: Mapping[str, Mapping[str, Any]] | None,
) -> dict[str, _Spec]:
    merged = dict(known)
    for key, fields in (entries or {}).items():
        if not isinstance(key, str) or not key:
            raise CatalogError(f"{kind} id {key!r} must be a non-empty string")
        if not isinstance(fields, Mapping):
            raise CatalogError(f"{kind} {key!r}: entry must be a mapping of fields, got {type(fields).__name__}")
        if "id" in fields and fields["id"] != key:
            raise CatalogError(f"{kind} {key!r}: field 'id' is {fields['id']!r}, must match the entry's key")
        base = known[key].model_dump() if key in known else {}
        merged[key] = _validate(kind, key, spec_type, {**base, **fields, "id": key})
    return merged


def _validate(kind: str, key: str, spec_type: type[_Spec], fields: dict[str, Any]) -> _Spec:
    try:
        return spec_type.model_validate(fields)
    except ValidationError as err:
        raise CatalogError(f"{kind} {key!r}: {_first_error(err)}") from None


def _first_error(err: ValidationError) -> str:
    """One line for the first problem: ``field 'x': <why> (got <value>)``."""
    first = err.errors(include_url=False)[0]
    loc = ".".join(str(part) for part in first["loc"])
    message = first["msg"].removeprefix("Value error, ")
    if not loc:
        # Cross-field checks name their field at the start of the message.
        return f"field '{message.split(':', 1)[0]}':{message.split(':', 1)[1]}" if ":" in message else message
    if first["type"] == "missing":
        return f"field '{loc}': required field missing"
    if first["type"] == "extra_forbidden":
        return f"field '{loc}': not a known field"
    return f"field '{loc}': {message} (got {first['input']!r})"


@functools.lru_cache(maxsize=1)
def _packaged_catalog() -> Catalog:
    data = resources.files("servesim") / "data"
    models = _load_yaml_text(data.joinpath("models.yaml").read_text(encoding="utf-8"), "models.yaml")
    hardware = _load_yaml_text(data.joinpath("hardware.yaml").read_text(encoding="utf-8"), "hardware.yaml")
    return Catalog({}, {}).with_entries(models=models.get("models"), hardware=hardware.get("hardware"))
