"""Side by side: servesim at another commit against this checkout, alternating fresh processes.

    git worktree add /tmp/before 2e71bb2      # e.g. the commit before the fast path
    python benchmarks/before_after.py /tmp/before

Prints, for the default scenario and the Vidur workload at 10,000 requests,
the best of two in-process ``simulate`` wall times of each, their ratio, and
a check that both computed the same thing (TTFT mean and iteration count).
"""
import subprocess
import sys
from pathlib import Path

BEFORE = sys.argv[1] if len(sys.argv) > 1 else "/tmp/before"
NOW = str(Path(__file__).resolve().parents[1])
VIDUR_CFG = """
def cfg(n):
    return {
        "seed": 0,
        "workload": {"kind": "synthetic", "num_requests": n,
                     "arrival": {"process": "poisson", "rate_rps": 6.0},
                     "prompt_tokens": {"dist": "fixed", "value": 512},
                     "output_tokens": {"dist": "fixed", "value": 128}},
        "cluster": {"model": "llama-2-7b", "hardware": "a100"},
        "scheduler": {"max_num_seqs": 128, "max_num_batched_tokens": 4096},
        "router": {"policy": "round_robin"},
    }
"""
code = '''
import sys, time
sys.path.insert(0, "%s/src")
''' + VIDUR_CFG + '''
import servesim
t = time.perf_counter(); r = servesim.simulate(%s); w = time.perf_counter() - t
print(w, r.summary["ttft_s"]["mean"], r.summary["num_steps"])
'''
cases = [("default scenario", "None"), ("vidur workload 10k", "cfg(10000)")]
for label, arg in cases:
    res = {}
    for rep in range(2):
        for name, root in (("before", BEFORE), ("now", NOW)):
            out = subprocess.run([sys.executable, "-c", code % (root, arg)], capture_output=True, text=True, check=True).stdout.split()
            res.setdefault(name, []).append(float(out[0])); res[name + "_ttft"] = out[1]; res[name + "_steps"] = out[2]
    b, n = min(res["before"]), min(res["now"])
    print(f"{label}: before {b:.3f} s, now {n:.3f} s, speed-up {b/n:.2f}x; ttft {res['before_ttft']} vs {res['now_ttft']}; steps {res['before_steps']} vs {res['now_steps']}")
