"""GPU power by what a step runs, power capping, and a run's energy.

A GPU draws ``idle_fraction x TDP`` doing nothing, ``decode_fraction x TDP``
in memory-bound decode steps and ``prefill_fraction x TDP`` in steps with
prompt tokens (compute-bound; a mixed chunked-prefill step counts as one).
The defaults (0.2, 0.6, 0.95 of TDP) are assumptions in the range public
H100/A100 measurements report, not calibrated values.

A power cap (``cap_w`` per GPU) lowers the clock of the phases that would
draw more: their dynamic power (above idle) scales with the cube of the
clock, so the clock drops to ``f = ((cap - idle) / (P - idle))^(1/3)``;
compute-bound prefill steps take ``1 / f`` as long, memory-bound decode
steps ``1 + sensitivity x (1 / f - 1)``, and both draw the cap.

A replica's energy over a span is its GPUs' power in each phase times the
time it spent there: ``gpus x (prefill_s x P_prefill + decode_s x P_decode +
idle_s x P_idle)``.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PowerModel:
    """Per-GPU power (W) in each phase, after any cap, and the cap's step-time factors."""

    idle_w: float
    decode_w: float
    prefill_w: float
    prefill_time_factor: float = 1.0
    decode_time_factor: float = 1.0

    @classmethod
    def build(cls, tdp_w: float, idle_fraction: float, decode_fraction: float, prefill_fraction: float,
              cap_w: float | None = None, decode_sensitivity: float = 0.3) -> PowerModel:
        """The phases' power for a GPU of ``tdp_w``; raises ``ValueError`` for a cap at or below idle."""
        idle, decode, prefill = idle_fraction * tdp_w, decode_fraction * tdp_w, prefill_fraction * tdp_w
        if cap_w is None:
            return cls(idle, decode, prefill)
        if cap_w <= idle:
            raise ValueError(f"a power cap of {cap_w:g} W is at or below the GPU's idle power ({idle:g} W)")

        def clock(power: float) -> float:
            return 1.0 if power <= cap_w else ((cap_w - idle) / (power - idle)) ** (1.0 / 3.0)

        f_prefill, f_decode = clock(prefill), clock(decode)
        return cls(idle, min(decode, cap_w), min(prefill, cap_w), 1.0 / f_prefill,
                   1.0 + decode_sensitivity * (1.0 / f_decode - 1.0))

    def energy_j(self, gpus: int, prefill_s: float, decode_s: float, idle_s: float) -> float:
        """Joules a replica of ``gpus`` GPUs uses in those phase times."""
        return gpus * (prefill_s * self.prefill_w + decode_s * self.decode_w + idle_s * self.idle_w)
