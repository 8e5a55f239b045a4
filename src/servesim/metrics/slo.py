"""Which requests met their service-level objectives."""

from __future__ import annotations

import numpy as np

from servesim.metrics.config import SloTargets
from servesim.metrics.records import FINISHED, RequestTable


def slo_met(requests: RequestTable, slo: SloTargets) -> np.ndarray:
    """Boolean mask, one entry per request: finished and every set target held.

    Comparisons are inclusive (``latency <= target``).  A NaN latency fails
    its target, except that a request with fewer than 2 tokens passes any
    ``tpot_s`` target.  Rejected and in-flight requests never meet the SLO.
    """
    met = requests.status == FINISHED
    if slo.ttft_s is not None:
        met &= requests.ttft_s() <= slo.ttft_s
    if slo.tpot_s is not None:
        met &= (requests.tokens_generated < 2) | (requests.tpot_s() <= slo.tpot_s)
    if slo.e2e_s is not None:
        met &= requests.e2e_s() <= slo.e2e_s
    return met
