"""servesim side by side with Vidur (microsoft/vidur) on one workload (issue 4).

Workload, the same for both tools: Llama-2-7B on one A100 (TP1, one replica,
round-robin router), vLLM-style batching with at most 128 sequences and 4096
tokens per batch, Poisson arrivals at 6 req/s, every request 512 prompt and
128 output tokens.

    python benchmarks/vs_vidur.py                          # 10,000 then 100,000 requests
    python benchmarks/vs_vidur.py --requests 10000 --json  # one JSON line per size
    python benchmarks/vs_vidur.py --requests 1000,10000 --requests 50000
    python benchmarks/vs_vidur.py --requests 500 --skip-vidur
    python benchmarks/vs_vidur.py --vidur-script /path/to/run_vidur.sh

For each size, in this one invocation, it runs servesim in a fresh Python
process (``benchmarks/vs_vidur.py --servesim-only``) and then Vidur through
``shared/peers/run_vidur.sh``.  Measured, for each tool:

* wall seconds of the WHOLE simulator process: interpreter start, imports,
  set-up, workload generation, simulation and summary, measured the same way
  for both: ``/usr/bin/time`` elapsed of the tool's Python process (as
  run_vidur.sh reports Vidur's).  The ratio is Vidur's wall over servesim's.
  servesim's wall as seen from this parent around its child (``time`` and
  process spawn included, ~10 ms more) is reported too, as
  ``servesim_wall_parent_s``; without /usr/bin/time it is the wall.
* both run with Python's bytecode cache on, after one small untimed run of
  each (``child_env``, ``warm_up``), as they run once installed;
* peak RSS (``/usr/bin/time -v`` "Maximum resident set size" for both; where
  /usr/bin/time is missing, servesim's child reports its own
  ``getrusage(RUSAGE_SELF).ru_maxrss`` at exit, which is the same peak);
* simulated requests per wall second (requests / whole-process wall);
* TTFT, TPOT and end-to-end latency: mean, p50, p99 (p90 too for servesim).

servesim's child also reports its in-process split: ``import_s`` (importing
servesim.api) and ``simulate_s`` (``servesim.simulate``: deployment, workload,
simulation, books check, summary).  Vidur's own phases (import, setup incl.
predictor loading and request generation, event loop, output writing) come
from its JSON line.

Caveats, stated so nobody over-reads the latency columns:

* The two tools draw different Poisson samples of the same arrival process:
  servesim uses seed 0 and its own random streams, Vidur its own seed and
  generator.  Latency summaries agree only statistically.
* Vidur writes request_metrics.csv and other files (its write_output phase is
  in its wall time); servesim here writes no files.
* TPOT: servesim's is (e2e - TTFT) / (output tokens - 1) per request; Vidur's
  is its ``decode_time_execution_plus_preemption_normalized`` column.
* Vidur's first run installs its dependencies and trains its predictors
  (~20 minutes on 2 cores); time later runs.  Vidur's 100,000-request run
  takes about 3 minutes on 2 cores.

Numbers are wall seconds on the machine that runs it; compare them only
within one invocation (these machines are noisy).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

DEFAULT_SIZES = (10_000, 100_000)
DEFAULT_VIDUR_SCRIPT = Path(__file__).resolve().parents[1].parent / "shared" / "peers" / "run_vidur.sh"
TIME_BIN = Path("/usr/bin/time")
WARM_UP_REQUESTS = 200


def servesim_config(num_requests: int, qps: float, prompt: int, output: int) -> dict:
    """The issue-4 workload as a servesim scenario."""
    return {
        "name": f"vs-vidur-{num_requests}",
        "seed": 0,
        "workload": {
            "kind": "synthetic",
            "num_requests": num_requests,
            "arrival": {"process": "poisson", "rate_rps": qps},
            "prompt_tokens": {"dist": "fixed", "value": prompt},
            "output_tokens": {"dist": "fixed", "value": output},
        },
        "cluster": {"num_replicas": 1, "model": "llama-2-7b", "hardware": "a100", "tensor_parallel": 1},
        "scheduler": {"max_num_seqs": 128, "max_num_batched_tokens": 4096},
        "router": {"policy": "round_robin"},
    }


def _latency(stats: dict | None) -> dict | None:
    """mean/p50/p90/p99 of a servesim Stats dict (the keys it has)."""
    if not stats:
        return None
    return {k: stats[k] for k in ("mean", "p50", "p90", "p99") if stats.get(k) is not None}


# ------------------------------------------------------------ servesim child


def run_servesim_here(num_requests: int, qps: float, prompt: int, output: int) -> dict:
    """Run servesim in this process (the child) and return its measurements."""
    import resource

    started = time.perf_counter()
    import servesim.api

    imported = time.perf_counter()
    result = servesim.api.simulate(servesim_config(num_requests, qps, prompt, output))
    finished = time.perf_counter()
    s = result.summary
    return {
        "num_requests": s["num_requests"],
        "num_finished": s["num_finished"],
        "num_steps": s["num_steps"],
        "sim_time_s": s["sim_time_s"],
        "import_s": round(imported - started, 4),
        "simulate_s": round(finished - imported, 4),
        "self_peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "ttft_s": _latency(s.get("ttft_s")),
        "tpot_s": _latency(s.get("tpot_s")),
        "e2e_s": _latency(s.get("e2e_s")),
        "throughput_req_per_s": s.get("requests_per_s"),
    }


# ------------------------------------------------------------ parent side


def _parse_time_v(text: str) -> tuple[float | None, float | None]:
    """(elapsed seconds, max RSS MB) from /usr/bin/time -v output."""
    import re

    wall = rss = None
    m = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): (\S+)", text)
    if m:
        wall = 0.0
        for part in m.group(1).split(":"):
            wall = wall * 60 + float(part)
    m = re.search(r"Maximum resident set size \(kbytes\): (\d+)", text)
    if m:
        rss = int(m.group(1)) / 1024
    return wall, rss


def child_env() -> dict[str, str]:
    """The environment both tools run in: this one, with Python's bytecode cache on.

    A session may set PYTHONDONTWRITEBYTECODE, which makes every run of
    either tool recompile its own sources (pip-installed packages keep their
    caches).  Neither tool runs that way once installed, so both children
    get the cache, warmed by ``warm_up`` before anything is timed.
    """
    import os

    return {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def warm_up(args: argparse.Namespace) -> None:
    """One small untimed run of each tool: bytecode caches written, files in the page cache."""
    _note(args, f"[warm-up] servesim and {'no Vidur' if args.skip_vidur else 'Vidur'}, {WARM_UP_REQUESTS} requests ...")
    measure_servesim(WARM_UP_REQUESTS, args.qps, args.prompt, args.output)
    if not args.skip_vidur:
        measure_vidur(args.vidur_script, WARM_UP_REQUESTS, args.qps, args.prompt, args.output)


def measure_servesim(num_requests: int, qps: float, prompt: int, output: int) -> dict:
    """Run servesim in a fresh process; time the whole process from here."""
    import subprocess

    cmd = [sys.executable, str(Path(__file__).resolve()), "--servesim-only", "--requests", str(num_requests),
           "--qps", f"{qps:g}", "--prompt", str(prompt), "--output", str(output)]
    use_time = TIME_BIN.exists()
    if use_time:
        cmd = [str(TIME_BIN), "-v", *cmd]
    started = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=child_env())
    wall_parent = time.perf_counter() - started
    if proc.returncode != 0:
        raise RuntimeError(f"servesim child failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    child = json.loads(proc.stdout.strip().splitlines()[-1])
    time_v_wall, time_v_rss = _parse_time_v(proc.stderr) if use_time else (None, None)
    # The same instrument as Vidur's wall (run_vidur.sh): /usr/bin/time's elapsed.
    wall = time_v_wall if time_v_wall else wall_parent
    child["wall_s"] = round(wall, 3)
    child["wall_parent_s"] = round(wall_parent, 3)
    child["wall_source"] = "/usr/bin/time elapsed" if time_v_wall else "parent around the child process"
    child["peak_rss_mb"] = round(time_v_rss, 1) if time_v_rss is not None else child["self_peak_rss_mb"]
    child["peak_rss_source"] = "/usr/bin/time -v" if time_v_rss is not None else "getrusage(RUSAGE_SELF) in child"
    child["req_per_wall_s"] = round(child["num_finished"] / wall, 1)
    return child


def measure_vidur(script: Path, num_requests: int, qps: float, prompt: int, output: int) -> dict:
    """Run Vidur through run_vidur.sh and return its JSON line (plus the script's own wall)."""
    import subprocess

    cmd = ["bash", str(script), str(num_requests), f"{qps:g}", str(prompt), str(output)]
    started = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=child_env())
    script_wall = time.perf_counter() - started
    lines = [ln for ln in proc.stdout.splitlines() if ln.lstrip().startswith("{")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(
            f"Vidur run failed (exit {proc.returncode}): {' '.join(cmd)}\n"
            f"stdout tail:\n{proc.stdout[-2000:]}\nstderr tail:\n{proc.stderr[-2000:]}"
        )
    out = json.loads(lines[-1])
    out["script_wall_s"] = round(script_wall, 3)
    return out


def compare(num_requests: int, args: argparse.Namespace) -> dict:
    """Both tools on one size; the JSON-ready row."""
    _note(args, f"[{num_requests:,} requests] servesim ...")
    ss = measure_servesim(num_requests, args.qps, args.prompt, args.output)
    row: dict = {
        "requests": num_requests,
        "qps": args.qps,
        "prompt_tokens": args.prompt,
        "output_tokens": args.output,
        "servesim_wall_s": ss["wall_s"],
        "servesim_wall_parent_s": ss["wall_parent_s"],
        "servesim_peak_rss_mb": ss["peak_rss_mb"],
        "servesim_req_per_wall_s": ss["req_per_wall_s"],
        "servesim_import_s": ss["import_s"],
        "servesim_simulate_s": ss["simulate_s"],
        "vidur_wall_s": None,
        "ratio": None,
        "vidur_peak_rss_mb": None,
        "vidur_req_per_wall_s": None,
        "servesim": ss,
        "vidur": None,
    }
    if args.skip_vidur:
        return row
    _note(args, f"[{num_requests:,} requests] Vidur ({args.vidur_script}) ...")
    vd = measure_vidur(args.vidur_script, num_requests, args.qps, args.prompt, args.output)
    row["vidur"] = vd
    row["vidur_wall_s"] = vd.get("wall_s")
    row["vidur_peak_rss_mb"] = round(vd["peak_rss_mb"], 1) if vd.get("peak_rss_mb") is not None else None
    if vd.get("sim_requests_per_wall_s") is not None:
        row["vidur_req_per_wall_s"] = round(vd["sim_requests_per_wall_s"], 1)
    if row["vidur_wall_s"] and ss["wall_s"] > 0:
        row["ratio"] = round(row["vidur_wall_s"] / ss["wall_s"], 2)
    return row


def _note(args: argparse.Namespace, text: str) -> None:
    print(text, file=sys.stderr if args.json else sys.stdout, flush=True)


def _fmt(value, spec: str = ".4f") -> str:
    if value is None:
        return "-"
    if isinstance(value, (int, float)):
        return format(value, spec)
    return str(value)


def print_row(row: dict) -> None:
    """A readable two-column table of one size."""
    ss, vd = row["servesim"], row["vidur"] or {}
    print(f"\n== {row['requests']:,} requests: Llama-2-7B, 1x A100 TP1, Poisson {row['qps']:g} req/s, "
          f"{row['prompt_tokens']} prompt / {row['output_tokens']} output tokens ==")
    lines = [
        ("wall s (whole process)", _fmt(row["servesim_wall_s"], ".2f"), _fmt(row["vidur_wall_s"], ".2f")),
        ("Vidur wall / servesim wall", "", _fmt(row["ratio"], ".1f") + ("x" if row["ratio"] else "")),
        ("peak RSS MB", _fmt(row["servesim_peak_rss_mb"], ".0f"), _fmt(row["vidur_peak_rss_mb"], ".0f")),
        ("simulated requests / wall s", _fmt(row["servesim_req_per_wall_s"], ",.0f"),
         _fmt(row["vidur_req_per_wall_s"], ",.0f")),
        ("requests finished", _fmt(ss["num_finished"], ",d"), _fmt(vd.get("num_requests_completed"), ",d")),
        ("throughput req/s (simulated)", _fmt(ss.get("throughput_req_per_s"), ".2f"),
         _fmt(vd.get("throughput_req_per_s"), ".2f")),
    ]
    for name in ("ttft_s", "tpot_s", "e2e_s"):
        label = {"ttft_s": "TTFT", "tpot_s": "TPOT", "e2e_s": "end-to-end"}[name]
        mine, theirs = ss.get(name) or {}, vd.get(name) or {}
        for q in ("mean", "p50", "p99"):
            lines.append((f"{label} {q} s", _fmt(mine.get(q)), _fmt(theirs.get(q))))
    width = max(len(a) for a, _, _ in lines)
    print(f"{'':<{width}}  {'servesim':>12}  {'Vidur':>12}")
    for a, b, c in lines:
        print(f"{a:<{width}}  {b:>12}  {c:>12}")
    print(f"servesim split: import {ss['import_s']:.3f} s, simulate {ss['simulate_s']:.3f} s, "
          f"rest of process (interpreter start, exit) {row['servesim_wall_s'] - ss['import_s'] - ss['simulate_s']:.3f} s; "
          f"peak RSS from {ss['peak_rss_source']}")
    phases = vd.get("phases_s")
    if phases:
        shown = ", ".join(f"{k.removesuffix('_s')} {v:.2f} s" for k, v in phases.items() if isinstance(v, (int, float)))
        print(f"Vidur phases: {shown}")


def print_markdown(rows: list[dict]) -> None:
    print("\n| requests | servesim wall s | Vidur wall s | Vidur/servesim | servesim peak RSS MB | Vidur peak RSS MB "
          "| servesim req/wall s | Vidur req/wall s |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['requests']:,} | {_fmt(r['servesim_wall_s'], '.2f')} | {_fmt(r['vidur_wall_s'], '.2f')} | "
              f"{_fmt(r['ratio'], '.1f')} | {_fmt(r['servesim_peak_rss_mb'], '.0f')} | "
              f"{_fmt(r['vidur_peak_rss_mb'], '.0f')} | {_fmt(r['servesim_req_per_wall_s'], ',.0f')} | "
              f"{_fmt(r['vidur_req_per_wall_s'], ',.0f')} |")


def _sizes(values: list[str] | None) -> list[int]:
    if not values:
        return list(DEFAULT_SIZES)
    sizes = []
    for value in values:
        for part in value.split(","):
            part = part.strip().replace("_", "")
            if part:
                n = int(part)
                if n < 1:
                    raise SystemExit(f"--requests: {n} is not a positive count")
                sizes.append(n)
    return sizes


def main() -> None:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", action="append", metavar="N[,N...]",
                        help="request counts to compare; repeat or comma-separate (default 10000,100000)")
    parser.add_argument("--qps", type=float, default=6.0, help="Poisson arrival rate, req/s (default 6)")
    parser.add_argument("--prompt", type=int, default=512, help="prompt tokens per request (default 512)")
    parser.add_argument("--output", type=int, default=128, help="output tokens per request (default 128)")
    parser.add_argument("--vidur-script", type=Path, default=DEFAULT_VIDUR_SCRIPT,
                        help=f"Vidur runner (default {DEFAULT_VIDUR_SCRIPT})")
    parser.add_argument("--skip-vidur", action="store_true", help="run servesim only")
    parser.add_argument("--no-warm-up", action="store_true",
                        help=f"skip the untimed {WARM_UP_REQUESTS}-request run of each tool (see child_env)")
    parser.add_argument("--json", action="store_true", help="print one JSON line per size, nothing else on stdout")
    parser.add_argument("--servesim-only", action="store_true",
                        help="internal: run servesim once in this process and print its JSON")
    args = parser.parse_args()
    sizes = _sizes(args.requests)
    if args.servesim_only:
        if len(sizes) != 1:
            raise SystemExit("--servesim-only takes exactly one --requests value")
        print(json.dumps(run_servesim_here(sizes[0], args.qps, args.prompt, args.output)))
        return
    if not args.skip_vidur and not args.vidur_script.is_file():
        raise SystemExit(f"Vidur runner not found: {args.vidur_script} (pass --vidur-script or --skip-vidur)")
    if not args.no_warm_up:
        warm_up(args)
    rows = []
    for n in sizes:
        row = compare(n, args)
        rows.append(row)
        if args.json:
            print(json.dumps(row), flush=True)
        else:
            print_row(row)
    if not args.json:
        print_markdown(rows)


def _child_main(argv: list[str]) -> None:
    """``--servesim-only``: the measured child, kept free of argparse (its import is
    harness overhead, not the simulator's).  Takes the flags the parent passes."""
    values = dict(zip(argv[::2], argv[1::2]))
    print(json.dumps(run_servesim_here(int(values["--requests"]), float(values["--qps"]),
                                       int(values["--prompt"]), int(values["--output"]))))


if __name__ == "__main__":
    if sys.argv[1:2] == ["--servesim-only"]:
        _child_main(sys.argv[2:])
    else:
        main()
