"""Per-row verdicts: which check, if any, each source row failed first.

A trace reader runs its checks in a fixed order over whole columns; each
row is charged to the first check it fails.  From the verdicts the reader
gets the skip counts by reason and, for ``on_bad_row="error"``, the first
malformed row to report.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, slots=True)
class Check:
    """One reason a row can be left out.

    reason: the key counted in ``Workload.skipped``.
    column: the source column the check looks at (for the error message).
    allowed: what the column may hold, in words (for the error message).
    bad: True for malformed data; False for rows the user chose to leave out
        (a model filter, failed requests), which never raise an error.
    """

    reason: str
    column: str
    allowed: str
    bad: bool = True


class RowVerdicts:
    """The first failed check of every row; rows with none are kept."""

    def __init__(self, n: int) -> None:
        # 0 = no check failed yet; k > 0 = self._checks[k - 1] failed first.
        self._code = np.zeros(n, dtype=np.int32)
        self._checks: list[Check] = []

    def reject(self, mask: np.ndarray, check: Check) -> None:
        """Mark the rows in ``mask`` that passed every earlier check as failing ``check``."""
        self._checks.append(check)
        fresh = np.asarray(mask, dtype=bool) & (self._code == 0)
        self._code[fresh] = len(self._checks)

    @property
    def kept(self) -> np.ndarray:
        """Boolean mask of the rows that passed every check."""
        return self._code == 0

    def counts(self) -> dict[str, int]:
        """Rows left out, by reason (reasons with no row are omitted)."""
        tally = np.bincount(self._code, minlength=len(self._checks) + 1)
        out: dict[str, int] = {}
        for k, check in enumerate(self._checks, start=1):
            if tally[k]:
                out[check.reason] = out.get(check.reason, 0) + int(tally[k])
        return out

    def first_bad(self) -> tuple[int, Check] | None:
        """The earliest row that failed a ``bad`` check, with that check, or None."""
        bad_codes = [k for k, c in enumerate(self._checks, start=1) if c.bad]
        if not bad_codes:
            return None
        rows = np.flatnonzero(np.isin(self._code, bad_codes))
        if rows.size == 0:
            return None
        row = int(rows[0])
        return row, self._checks[self._code[row] - 1]
