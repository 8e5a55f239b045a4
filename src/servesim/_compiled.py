"""Which of servesim's hot modules run compiled, and a guard against stale builds.

``setup.py`` compiles the simulation's hot modules with Cython and records
the SHA-256 of each source it compiled in ``_compiled_manifest.json``.  An
extension module beside its ``.py`` file wins the import, so this module,
run once from ``servesim/__init__``, sends an import to the ``.py`` source
instead when

* a source (``.py`` or its ``.pxd`` type declarations) changed since the
  build: a stale extension would run old code, so a warning says to rebuild
  with ``pip install -e .``; or
* ``SERVESIM_PURE_PYTHON`` is set (to 1, true, yes) at run time.

It is all or nothing: the compiled modules share C-level types (a compiled
scheduler takes only compiled ``Sequence`` objects), so when one module
must run from source, all do.  Either way results are the same; only speed
differs.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import warnings
from importlib.machinery import EXTENSION_SUFFIXES
from pathlib import Path

_PACKAGE_DIR = Path(__file__).resolve().parent
_MANIFEST = _PACKAGE_DIR / "_compiled_manifest.json"

# module -> "compiled", or why it runs from source; filled by install().
_STATUS: dict[str, str] = {}


def _source_path(module: str, package_dir: Path = _PACKAGE_DIR) -> Path:
    return package_dir.joinpath(*module.split(".")[1:]).with_suffix(".py")


def source_digest(source: Path) -> str:
    """SHA-256 of a compiled module's source and its ``.pxd`` declarations (if any).

    ``setup.py`` records it at build time; ``install`` compares at import.
    """
    digest = hashlib.sha256(source.read_bytes())
    declarations = source.with_suffix(".pxd")
    if declarations.exists():
        digest.update(declarations.read_bytes())
    return digest.hexdigest()


def _has_extension(module: str, package_dir: Path) -> bool:
    """True when an extension module this interpreter can load sits beside the source."""
    src = _source_path(module, package_dir)
    return any(src.with_name(src.stem + suffix).exists() for suffix in EXTENSION_SUFFIXES)


def decide(manifest: dict[str, str], package_dir: Path, pure: bool) -> tuple[str | None, list[str]]:
    """Whether the compiled core can run: ``(None, [])`` if so, else ``(why not, stale modules)``.

    ``manifest`` maps each compiled module to the digest of the sources it
    was built from; ``package_dir`` is the ``servesim`` package folder.
    """
    if not all(_has_extension(module, package_dir) for module in manifest):
        return "source (no extension built)", []
    if pure:
        return "source (SERVESIM_PURE_PYTHON)", []
    stale = [m for m, digest in manifest.items() if source_digest(_source_path(m, package_dir)) != digest]
    return ("source (edited since the build)", stale) if stale else (None, [])


class _SourceFirst:
    """A ``sys.meta_path`` finder: the named modules load from their ``.py`` files, ahead of any extension.

    (Not an ``importlib.abc.MetaPathFinder`` subclass: importing that ABC costs ~10 ms per run.)
    """

    def __init__(self, modules: set[str]) -> None:
        self.modules = modules

    def find_spec(self, fullname, path=None, target=None):  # noqa: ANN001 - importlib protocol
        if fullname not in self.modules:
            return None
        import importlib.util

        return importlib.util.spec_from_file_location(fullname, _source_path(fullname))


def pure_python_requested() -> bool:
    """True when ``SERVESIM_PURE_PYTHON`` asks for the Python sources."""
    return os.environ.get("SERVESIM_PURE_PYTHON", "").strip().lower() in ("1", "true", "yes")


def install() -> None:
    """Decide, once per process, which hot modules run compiled."""
    if _STATUS:
        return
    try:
        manifest = json.loads(_MANIFEST.read_text())["modules"]
    except (OSError, ValueError, KeyError):
        return  # a pure-Python install: nothing was compiled
    reason, stale = decide(manifest, _PACKAGE_DIR, pure_python_requested())
    if reason is None:
        _STATUS.update(dict.fromkeys(manifest, "compiled"))
        return
    if stale:
        warnings.warn(
            f"servesim: {', '.join(stale)} changed since the compiled core was built; running the core as "
            "Python (same results, slower). Rebuild with `pip install -e .`.",
            RuntimeWarning,
            stacklevel=2,
        )
    _STATUS.update(dict.fromkeys(manifest, reason))
    sys.meta_path.insert(0, _SourceFirst(set(manifest)))


def status() -> dict[str, str]:
    """Each compiled-core module and how it runs: ``"compiled"`` or ``"source (why)"``.

    Empty for a pure-Python install (``SERVESIM_PURE_PYTHON=1`` at build time).
    """
    install()
    return dict(_STATUS)


def is_compiled() -> bool:
    """True when every module of the compiled core runs compiled."""
    current = status()
    return bool(current) and all(v == "compiled" for v in current.values())
