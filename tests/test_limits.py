"""Pre-flight limits (servesim.limits): a run or sweep too big for the machine is refused in one line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from sweep_scenarios import tiny_base
from servesim.api import simulate
from servesim.config import load_config
from servesim.errors import ConfigError
from servesim.limits import check_config, memory_limit_bytes

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


@pytest.fixture(autouse=True)
def sixteen_gib(monkeypatch):
    monkeypatch.setenv("SERVESIM_MAX_MEMORY_GB", "16")
    monkeypatch.delenv("SERVESIM_MAX_RUNS", raising=False)


def refusal(config) -> str:
    with pytest.raises(ConfigError) as err:
        simulate(config)
    return str(err.value)


def test_a_million_replicas_are_refused_before_anything_is_built():
    base = tiny_base()
    base["cluster"]["num_replicas"] = 1_000_000
    # 10^6 x 256 KiB = 244.14 GiB (+ 60 requests and 7.5 s / 1 s x 10^6 samples: 0.67 GiB) = 244.8 GiB
    assert refusal(base) == (
        "cluster.num_replicas = 1000000: the run would need about 245 GiB of memory (256 KiB per replica), "
        "over the limit of 16 GiB; make the run smaller, or raise the limit with SERVESIM_MAX_MEMORY_GB=N "
        "(GiB; default 70% of physical memory)")


def test_a_tiny_sampling_interval_is_refused():
    base = tiny_base()
    base["horizon_s"] = 100.0
    base["engine"] = {"timeseries_interval_s": 1e-9}
    # span min(60 requests / 8 rps, horizon 100 s) = 7.5 s; 7.5 s / 1e-9 s x 1 replica = 7.5e9 samples
    # x 96 B = 7.2e11 B = 670.6 GiB
    message = refusal(base)
    assert message.startswith("engine.timeseries_interval_s = 1e-09: the run would need about 671 GiB of memory "
                              "(7.5e+09 time-series samples over 7.5 s x 1 replicas), over the limit of 16 GiB")


def test_the_sampling_span_of_a_trace_comes_from_the_built_workload():
    # The default trace's last arrival is at 3501.7 s: 3.5e12 samples at 1 ns, refused after the workload is read.
    message = refusal({"engine": {"timeseries_interval_s": 1e-9}})
    assert "3.5e+12 time-series samples over 3501.72 s x 1 replicas" in message


def test_a_trillion_requests_are_refused_before_numpy_sees_them():
    base = tiny_base(num_requests=10**12)
    # 10^12 x 200 B = 181.9 TiB, + span 10^12 / 8 rps = 1.25e11 s of 1 s samples x 96 B = 10.9 TiB: 192.8 TiB
    assert refusal(base).startswith("workload.num_requests = 1000000000000: the run would need about 193 TiB "
                                    "of memory (200 B per request)")


def test_a_float_for_an_int_field_is_a_clean_error(tmp_path: Path):
    base = tiny_base()
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(base).replace("num_requests: 60", "num_requests: 1.0e+12"))
    proc = subprocess.run([sys.executable, "-m", "servesim", "run", str(path), "--out", str(tmp_path / "o")],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.startswith("error:") and "workload.num_requests" in proc.stderr


def test_the_limit_comes_from_the_environment_or_physical_memory(monkeypatch):
    assert memory_limit_bytes() == 16 * 2**30
    monkeypatch.setenv("SERVESIM_MAX_MEMORY_GB", "lots")
    with pytest.raises(ConfigError, match="SERVESIM_MAX_MEMORY_GB='lots': must be a positive number of GiB"):
        memory_limit_bytes()
    monkeypatch.delenv("SERVESIM_MAX_MEMORY_GB")
    import os

    assert memory_limit_bytes() == pytest.approx(0.7 * os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.yaml")), ids=lambda p: p.name)
def test_the_shipped_examples_pass_under_a_small_limit(path: Path, monkeypatch):
    monkeypatch.setenv("SERVESIM_MAX_MEMORY_GB", "2")
    check_config(load_config(path))


def test_a_million_run_sweep_is_refused_naming_its_axes(tmp_path: Path):
    from servesim.sweep.axes import build_runs
    from servesim.sweep.spec import SweepSpec, parse_spec

    spec = parse_spec({"name": "huge", "base": tiny_base(), "axes": [
        {"kind": "grid", "fields": {"seed": list(range(1000))}},
        {"kind": "random", "samples": 1000, "fields": {"workload.arrival.rate_rps": {"float": [1, 10]}}},
    ]}, SweepSpec)
    with pytest.raises(ConfigError) as err:
        build_runs(spec.axes, spec.base, tmp_path)
    assert str(err.value) == ("sweep spec expands to 1,000,000 runs (seed (1000) x workload.arrival.rate_rps samples "
                              "(1000)), over the limit of 100,000; shrink its axes, split it, or raise the limit "
                              "with SERVESIM_MAX_RUNS=N")


def test_a_sweep_run_over_the_memory_limit_is_refused_before_the_sweep_starts(tmp_path: Path):
    from servesim.sweep.axes import build_runs
    from servesim.sweep.spec import SweepSpec, parse_spec

    spec = parse_spec({"name": "big", "base": tiny_base(),
                       "axes": [{"kind": "grid", "fields": {"cluster.num_replicas": [1, 1_000_000]}}]}, SweepSpec)
    with pytest.raises(ConfigError, match=r"^axes \(cluster.num_replicas=1000000\): cluster.num_replicas = 1000000: "):
        build_runs(spec.axes, spec.base, tmp_path)


def test_a_run_over_the_event_limit_is_refused(monkeypatch):
    # 60 requests make at least 120 events; a limit of 100 refuses the run before it is built.
    monkeypatch.setenv("SERVESIM_MAX_EVENTS", "100")
    scenario = {"workload": {"kind": "synthetic", "num_requests": 60, "arrival": {"process": "poisson", "rate_rps": 5.0},
                             "prompt_tokens": {"dist": "fixed", "value": 64},
                             "output_tokens": {"dist": "fixed", "value": 4}}}
    with pytest.raises(ConfigError, match=r"^workload.num_requests = 60: the run would process at least 120 "
                       r"events \(2 per request\), over the limit of 100 .*SERVESIM_MAX_EVENTS=N$"):
        simulate(scenario)
    monkeypatch.setenv("SERVESIM_MAX_EVENTS", "1000")
    assert simulate(scenario).summary["num_finished"] == 60


def test_a_shared_prefix_workload_is_named_by_its_stages():
    scenario = {"workload": {"kind": "shared_prefix", "system_prompt_tokens": 10, "question_tokens": 10,
                             "output_tokens": 5, "stages": [{"rate_rps": 1e9, "duration_s": 1e9}]}}
    with pytest.raises(ConfigError, match=r"^workload.stages \(1,000,000,000,000,000,000 requests\): the run would need"):
        simulate(scenario)
