"""Predict benchmark points: one full simulation per row, rows in parallel processes.

``check_rows`` turns every row into a validated scenario before anything runs
(catalog ids, fields, the deployment fitting its GPUs, the longest request
fitting a replica), so a bad row stops the command at once with one line
naming it.  ``predict_rows`` then simulates the scenarios in a process pool
and returns each row's metrics (``servesim.bench.metrics``) in row order.
"""

from __future__ import annotations

import os
import re
from concurrent.futures import ProcessPoolExecutor
from typing import Any, Sequence

from servesim.bench.rows import FIELD_COLUMNS, BenchCsv, BenchRow, row_scenario
from servesim.errors import CatalogError, ConfigError, DeploymentError, ServesimError, TraceError

__all__ = ["check_rows", "predict_rows", "predict_scenario"]


def check_rows(table: BenchCsv, catalog_files: Sequence[str] = (), calibration: str | None = None) -> list[dict[str, Any]]:
    """Each row's scenario, validated and its deployment resolved; ``TraceError`` naming the
    first bad row, its column and value."""
    from servesim.config import validate_config
    from servesim.deployment import calibrated, pool_deployments, with_catalog_files
    from servesim.perf.catalog import Catalog

    try:
        catalog = with_catalog_files(Catalog.default(), list(catalog_files))
    except ServesimError as err:
        raise ConfigError(f"option --catalog: {err}") from None
    resolved: dict[str, Any] = {}  # deployments already checked, by cluster section
    scenarios = []
    for row in table.rows:
        where = table.where(row)
        for column, lookup in (("model", catalog.model), ("hardware", catalog.hardware)):
            try:
                lookup(row.values[column])
            except CatalogError as err:
                raise TraceError(f"{where}: column {column!r} = {row.raw[column]!r}: {err}") from None
        scenario = row_scenario(row, list(catalog_files), calibration)
        try:
            config = validate_config(scenario)
        except ConfigError as err:
            raise TraceError(f"{where}: {_name_column(row, str(err))}") from None
        key = repr(sorted(scenario["cluster"].items()))
        try:
            if key not in resolved:
                resolved[key] = pool_deployments(calibrated(config))[0][1]
        except (DeploymentError, ConfigError, CatalogError) as err:
            column = "hardware" if "calibration" in str(err) else "tensor_parallel"
            raise TraceError(f"{where}: column {column!r} = {row.raw.get(column, '')!r}: {err}") from None
        _check_fits(row, where, resolved[key])
        scenarios.append(scenario)
    return scenarios


def _check_fits(row: BenchRow, where: str, deployment) -> None:
    """The longest request of the row fits the context and one replica's KV cache."""
    v = row.values
    peak = v["isl"] + v.get("shared_prefix_tokens", 0) + v["osl"]
    if peak > deployment.max_model_len:
        raise TraceError(f"{where}: column 'isl' = {row.raw['isl']!r}: isl + shared_prefix_tokens + osl = {peak} "
                         f"tokens exceeds max_model_len = {deployment.max_model_len}")
    capacity = deployment.memory.kv_capacity_tokens
    if peak > capacity:
        raise TraceError(f"{where}: column 'isl' = {row.raw['isl']!r}: isl + shared_prefix_tokens + osl = {peak} "
                         f"tokens exceeds one replica's KV cache ({capacity} tokens)")


_FIELD = re.compile(r"^([A-Za-z_][\w.]*)(?: = .*?)?: (.*)$")


def _name_column(row: BenchRow, message: str) -> str:
    """A scenario validation message (``field = value: why`` or ``field: why``) turned to name
    the row's column that caused it."""
    message = message.removeprefix("config error: ")
    match = _FIELD.match(message)
    if match is None:
        return message
    field, why = match.groups()
    for prefix, column in sorted(FIELD_COLUMNS.items(), key=lambda item: -len(item[0])):
        if field == prefix or field.startswith(prefix + "."):
            return f"column {column!r} = {row.raw.get(column, '')!r}: {why} ({field})"
    return message


def predict_scenario(scenario: dict[str, Any]) -> dict[str, float] | str:
    """The benchmark metrics of one scenario's simulation, or the one-line message of the
    ``ServesimError`` it raised (runs in a worker process)."""
    from servesim.api import simulate
    from servesim.bench.metrics import bench_metrics

    try:
        return bench_metrics(simulate(scenario).requests)
    except ServesimError as err:
        return str(err)


def predict_rows(scenarios: Sequence[dict[str, Any]], jobs: int | None = None,
                 labels: Sequence[str] | None = None) -> list[dict[str, float]]:
    """Metrics of every scenario, in order; ``jobs`` worker processes (default: the CPUs, at most
    one per scenario; 1 runs them in this process).  A run that fails raises ``ServesimError``
    naming its label (``labels[i]``, default ``row i + 1``)."""
    workers = max(1, min(jobs or os.cpu_count() or 1, len(scenarios)))
    if workers == 1:
        results = [predict_scenario(s) for s in scenarios]
    else:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            results = list(pool.map(predict_scenario, scenarios))
    for i, result in enumerate(results):
        if isinstance(result, str):
            raise ServesimError(f"{labels[i] if labels else f'row {i + 1}'}: {result}")
    return results
