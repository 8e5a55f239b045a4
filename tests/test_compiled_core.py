"""The compiled core (Cython builds of the hot modules, see setup.py) computes
exactly what the Python sources compute, and a stale build never runs."""

from __future__ import annotations

import os
import subprocess
import sys
from importlib.machinery import EXTENSION_SUFFIXES
from pathlib import Path

import pytest
import yaml

from servesim import _compiled
from stress_scenarios import KV_PRESSURE

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = sorted((ROOT / "examples").glob("*.yaml"))

needs_compiled = pytest.mark.skipif(
    not _compiled.status(), reason="pure-Python install (SERVESIM_PURE_PYTHON=1 at build time)"
)

# Scenarios beyond the examples: KV pressure with preemption on a small GPU,
# and a mixture-of-experts model (the step model's expert-coverage power).
EXTRA_SCENARIOS = {
    "kv-pressure": KV_PRESSURE,
    "moe-priority": {
        "seed": 5,
        "workload": {
            "kind": "synthetic", "num_requests": 300,
            "arrival": {"process": "poisson", "rate_rps": 20.0},
            "prompt_tokens": {"dist": "lognormal", "median": 800, "sigma": 0.8, "max": 8000},
            "output_tokens": {"dist": "lognormal", "median": 150, "sigma": 0.7, "max": 1000},
            "priority_mix": {"0": 0.3, "1": 0.7},
        },
        "cluster": {"model": "mixtral-8x7b", "hardware": "h100", "tensor_parallel": 2, "num_replicas": 3},
        "scheduler": {"policy": "priority"},
        "router": {"policy": "round_robin"},
    },
}


def _scenarios(tmp_path: Path) -> list[tuple[Path, list[str]]]:
    out = []
    for path in EXAMPLES:
        kind = yaml.safe_load(path.read_text())["workload"].get("kind", "trace")
        size = {"trace": "workload.max_requests=400", "agent": "workload.num_programs=40",
                "shared_prefix": None}.get(kind, "workload.num_requests=400")  # (stages set its size)
        out.append((path, ["--set", size] if size else []))
    for name, scenario in EXTRA_SCENARIOS.items():
        path = tmp_path / f"{name}.yaml"
        path.write_text(yaml.safe_dump(scenario))
        out.append((path, []))
    return out


def _run(path: Path, extra: list[str], out: Path, pure: bool) -> None:
    env = {k: v for k, v in os.environ.items() if k != "SERVESIM_PURE_PYTHON"}
    if pure:
        env["SERVESIM_PURE_PYTHON"] = "1"
    check = "import servesim._compiled as c, sys; sys.exit(0 if c.is_compiled() != PURE else 3)"
    probe = subprocess.run([sys.executable, "-c", check.replace("PURE", str(pure))], env=env)
    assert probe.returncode == 0, f"expected the core to run {'from source' if pure else 'compiled'}"
    cmd = [sys.executable, "-m", "servesim", "run", str(path), "--out", str(out), *extra]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]


@needs_compiled
def test_compiled_core_is_current():
    assert _compiled.is_compiled() or _compiled.pure_python_requested(), (
        f"the compiled core does not run: {_compiled.status()}; rebuild with `pip install -e .`"
    )


@needs_compiled
def test_compiled_and_python_sources_write_identical_outputs(tmp_path):
    for path, extra in _scenarios(tmp_path):
        compiled, source = tmp_path / f"{path.stem}-compiled", tmp_path / f"{path.stem}-source"
        _run(path, extra, compiled, pure=False)
        _run(path, extra, source, pure=True)
        for name in ("requests.parquet", "timeseries.parquet"):
            assert (compiled / name).read_bytes() == (source / name).read_bytes(), f"{path.stem}: {name}"


# ------------------------------------------------------------ the stale guard


def _fake_package(tmp_path: Path, modules: dict[str, str], built: set[str]) -> Path:
    pkg = tmp_path / "servesim"
    for module, text in modules.items():
        src = pkg.joinpath(*module.split(".")[1:]).with_suffix(".py")
        src.parent.mkdir(parents=True, exist_ok=True)
        src.write_text(text)
        if module in built:
            src.with_name(src.stem + EXTENSION_SUFFIXES[0]).write_bytes(b"")
    return pkg


def test_decide_runs_compiled_when_sources_match(tmp_path):
    pkg = _fake_package(tmp_path, {"servesim.a.b": "x = 1\n", "servesim.c": "y = 2\n"}, {"servesim.a.b", "servesim.c"})
    manifest = {m: _compiled.source_digest(_compiled._source_path(m, pkg)) for m in ("servesim.a.b", "servesim.c")}
    assert _compiled.decide(manifest, pkg, pure=False) == (None, [])
    assert _compiled.decide(manifest, pkg, pure=True) == ("source (SERVESIM_PURE_PYTHON)", [])


def test_decide_runs_sources_when_one_was_edited_or_a_declaration_changed(tmp_path):
    pkg = _fake_package(tmp_path, {"servesim.a.b": "x = 1\n", "servesim.c": "y = 2\n"}, {"servesim.a.b", "servesim.c"})
    manifest = {m: _compiled.source_digest(_compiled._source_path(m, pkg)) for m in ("servesim.a.b", "servesim.c")}
    (pkg / "c.py").write_text("y = 3\n")
    assert _compiled.decide(manifest, pkg, pure=False) == ("source (edited since the build)", ["servesim.c"])
    (pkg / "c.py").write_text("y = 2\n")
    (pkg / "a" / "b.pxd").write_text("cdef long x\n")  # declarations count as source
    assert _compiled.decide(manifest, pkg, pure=False) == ("source (edited since the build)", ["servesim.a.b"])


def test_decide_runs_sources_when_an_extension_is_missing(tmp_path):
    pkg = _fake_package(tmp_path, {"servesim.a.b": "x = 1\n", "servesim.c": "y = 2\n"}, {"servesim.c"})
    manifest = {m: _compiled.source_digest(_compiled._source_path(m, pkg)) for m in ("servesim.a.b", "servesim.c")}
    assert _compiled.decide(manifest, pkg, pure=False) == ("source (no extension built)", [])


def test_pure_python_switch_loads_the_sources():
    env = {**os.environ, "SERVESIM_PURE_PYTHON": "1"}
    code = "import servesim.scheduler.lockstep as m; print(m.__file__)"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    assert out.strip().endswith("lockstep.py")
