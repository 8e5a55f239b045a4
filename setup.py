"""Build servesim's compiled core: the simulation's hot modules through Cython.

Everything else about the package lives in ``pyproject.toml``.  The modules
listed in ``COMPILED_MODULES`` are ordinary Python files; Cython compiles
them, unchanged, to C extensions that sit beside them and that Python
imports in their place.  Their results are the same bit for bit
(``tests/test_compiled_core.py`` runs the same scenarios both ways).

* ``SERVESIM_PURE_PYTHON=1 pip install -e .`` builds nothing (and removes
  extensions an earlier build left in the source tree).
* ``.pxd`` files beside some modules declare C types for their fields and
  locals (Cython's "augmenting .pxd"); the ``.py`` stays the one definition
  of what the code does.
* The build writes ``src/servesim/_compiled_manifest.json``: each compiled
  module with the SHA-256 of the source (and ``.pxd``) it was compiled from.  At import,
  ``servesim._compiled`` runs a module from its source instead whenever the
  source no longer matches (edited since the build), with a warning, so a
  stale extension never runs.
"""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

from setuptools import setup

HERE = Path(__file__).resolve().parent
PACKAGE_DIR = HERE / "src" / "servesim"
MANIFEST = PACKAGE_DIR / "_compiled_manifest.json"

# The event loop, the replica and its scheduler, KV bookkeeping, the routers
# and the step pricer: what runs once per event.  None defines a pydantic model.
COMPILED_MODULES = (
    "servesim.core.events",
    "servesim.perf.batch_shape",
    "servesim.cluster.replica",
    "servesim.cluster.routers",
    "servesim.cluster.simulation",
    "servesim.kvcache.block_pool",
    "servesim.kvcache.manager",
    "servesim.perf.steptime",
    "servesim.scheduler.batch_scheduler",
    "servesim.scheduler.lockstep",
    "servesim.scheduler.queues",
    "servesim.scheduler.sequence",
    "servesim.scheduler.suffix_max",
)


def _source(module: str) -> Path:
    return HERE / "src" / Path(*module.split(".")).with_suffix(".py")


def _source_digest(source: Path) -> str:
    """The digest ``servesim._compiled`` compares at import (its own function, loaded by path)."""
    spec = importlib.util.spec_from_file_location("_servesim_compiled", PACKAGE_DIR / "_compiled.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.source_digest(source)


def _remove_old_builds() -> None:
    """Drop extensions and generated C files of earlier builds from the source tree."""
    for module in COMPILED_MODULES:
        src = _source(module)
        for path in src.parent.glob(src.stem + ".*"):
            if path.suffix in (".so", ".pyd", ".c"):
                path.unlink()
    MANIFEST.unlink(missing_ok=True)


def _extensions() -> list:
    if os.environ.get("SERVESIM_PURE_PYTHON", "") not in ("", "0"):
        _remove_old_builds()
        return []
    from Cython.Build import cythonize
    from setuptools import Extension

    manifest = {m: _source_digest(_source(m)) for m in COMPILED_MODULES}
    MANIFEST.write_text(json.dumps({"modules": manifest}, indent=1, sort_keys=True) + "\n")
    # Each float operation rounds as Python's does: no fused multiply-add
    # (GCC would fuse a * b + c on targets that have FMA, such as aarch64).
    extensions = [
        Extension(m, [str(_source(m).relative_to(HERE))], extra_compile_args=["-ffp-contract=off"])
        for m in COMPILED_MODULES
    ]
    return cythonize(
        extensions,
        # Python semantics throughout (integer division, bounds, wrap-around);
        # the speed comes from compiling the interpreter loop away.
        compiler_directives={
            "language_level": 3,
            "embedsignature": True,
            # Types come from the .pxd declarations only; annotations in the .py
            # stay documentation (an `int` there is a Python int, not a C long).
            "annotation_typing": False,
        },
        include_path=[str(HERE / "src")],  # the .pxd declarations cimport each other
        nthreads=os.cpu_count() or 1,
        quiet=True,
    )


setup(ext_modules=_extensions())
