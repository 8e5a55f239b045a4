"""Agent programs' results: job completion time (JCT) per program.

A program (``session_id`` of a closed-loop workload) completes when all of
its calls finished; its JCT runs from its first call's arrival to its last
call's finish, tool time included.  A program whose call was rejected, or
that the horizon cut, is not complete and has no JCT.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from servesim.metrics.records import FINISHED, RequestTable
from servesim.metrics.stats import describe
from servesim.workload.request import Workload


def program_summary(table: dict[str, np.ndarray]) -> dict[str, Any]:
    """``programs``: how many there were and completed, and their JCT (s), from ``program_table``."""
    jct = table["jct_s"][table["completed"]]
    return {"programs": {"count": int(len(table["program"])), "completed": int(table["completed"].sum()),
                         "jct_s": describe(jct)}}


def program_table(requests: RequestTable, workload: Workload) -> dict[str, np.ndarray]:
    """One row per program: its id, calls, calls finished, start, end, completed, JCT (NaN if not)."""
    program = np.asarray(workload.session_id, dtype=object)
    calls = np.bincount(np.unique(program, return_inverse=True)[1])
    names, index = np.unique(program, return_inverse=True)
    rows = requests.request_id
    done = np.zeros(len(names), np.int64)
    start = np.full(len(names), np.inf)
    end = np.full(len(names), -np.inf)
    finished = requests.status == FINISHED
    np.add.at(done, index[rows[finished]], 1)
    np.minimum.at(start, index[rows], requests.arrival_s)
    np.maximum.at(end, index[rows[finished]], requests.finish_s[finished])
    complete = done == calls
    return {
        "program": names.astype(str),
        "calls": calls.astype(np.int64),
        "calls_finished": done,
        "start_s": np.where(np.isfinite(start), start, np.nan),
        "end_s": np.where(complete, end, np.nan),
        "completed": complete,
        "jct_s": np.where(complete, end - start, np.nan),
    }
