"""Tiny scenarios for sweep and search tests (tens of requests: each run takes well under a second)."""

from __future__ import annotations


def tiny_base(num_requests: int = 60, rate_rps: float = 8.0) -> dict:
    """Llama-3-8B on one H100 under a small Poisson load of fixed-length requests."""
    return {
        "name": "tiny",
        "seed": 1,
        "workload": {
            "kind": "synthetic",
            "num_requests": num_requests,
            "arrival": {"process": "poisson", "rate_rps": rate_rps},
            "prompt_tokens": {"dist": "fixed", "value": 256},
            "output_tokens": {"dist": "fixed", "value": 32},
        },
        # The plain harness: the capacity bound's hand computations use its step model.
        "cluster": {"engine": "pytorch", "model": "llama-3-8b", "hardware": "h100"},
    }


def stored_rows(out, table: str, order_by: str) -> list[dict]:
    """The rows of ``table`` in ``out/results.duckdb`` (a sweep or search folder), as dicts."""
    import duckdb

    from servesim.sweep.store import table_rows

    db = duckdb.connect(str(out / "results.duckdb"), read_only=True)
    try:
        return table_rows(db, table, order_by=order_by)
    finally:
        db.close()
