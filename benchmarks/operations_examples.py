"""Fleet operations against their baselines (issue 7); the tables in docs/operations.md come from here.

    python benchmarks/operations_examples.py
"""

from __future__ import annotations

from pathlib import Path

import servesim
from servesim.config import load_config

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def power_caps() -> list[str]:
    """The default scenario (one H100, 700 W TDP) under power caps: latency, energy and power."""
    rows = ["| cap per GPU | TTFT p90 | TPOT p90 | energy per output token | mean power | energy |", "|---|---|---|---|---|---|"]
    for cap in (None, 600, 500, 400, 300):
        s = servesim.simulate(load_config(EXAMPLES / "default.yaml", [f"cluster.power.cap_w={'null' if cap is None else cap}"])).summary
        rows.append(f"| {'none' if cap is None else f'{cap} W'} | {s['ttft_s']['p90'] * 1e3:.0f} ms | {s['tpot_s']['p90'] * 1e3:.1f} ms | "
                    f"{s['energy_per_token_j']:.3f} J | {s['power_w']['mean']:.0f} W | {s['energy_j'] / 3.6e6:.3f} kWh |")
    return rows


def main() -> None:
    print("\n".join(power_caps()))


if __name__ == "__main__":
    main()
