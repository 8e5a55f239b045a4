"""``StepPricer``: the step-time model applied to the rows of a steps CSV.

Every row runs on one GPU (tensor and pipeline parallelism 1) of the given
hardware, whether or not the model would fit in its memory: prediction is
about time, not capacity.  A row's ``num_layers`` replaces the catalog's
layer count; ``graphed`` picks CUDA-graph or eager pricing.

The pricer resolves models and shapes once, then prices all rows under any
``StepTimeParams``: the calibration's inner loop calls ``times_s`` a few
hundred times per fit.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from pydantic import ValidationError

from servesim.errors import CatalogError, TraceError
from servesim.perf.catalog import Catalog
from servesim.perf.hardware_spec import HardwareSpec
from servesim.perf.model_spec import ModelSpec
from servesim.perf.steprows import StepRow
from servesim.perf.steptime import StepTime, StepTimeModel
from servesim.perf.steptime_params import StepTimeParams

__all__ = ["StepPricer"]


class StepPricer:
    """Prices a fixed list of rows on one GPU kind under any parameters.

    Raises ``TraceError`` naming the row when a row's model is not in the
    catalog or its ``num_layers`` does not suit the model.
    """

    __slots__ = ("hardware", "rows", "_specs", "_plan")

    def __init__(self, rows: Sequence[StepRow], hardware: HardwareSpec, catalog: Catalog | None = None) -> None:
        catalog = catalog if catalog is not None else Catalog.default()
        self.hardware = hardware
        self.rows = tuple(rows)
        self._specs: dict[tuple[str, int | None], ModelSpec] = {}
        # One (spec key, graphed, shape) per row, resolved once.
        self._plan = [(self._spec_key(row, catalog), row.graphed, row.shape()) for row in self.rows]

    def times_s(self, params: StepTimeParams | None = None) -> np.ndarray:
        """Predicted seconds of every row, in row order (float64 array)."""
        models = self._models(params)
        return np.array([models[key, graphed].time_s(shape) for key, graphed, shape in self._plan])

    def breakdowns(self, params: StepTimeParams | None = None) -> list[StepTime]:
        """Each row's time by component (``StepTime``), in row order."""
        models = self._models(params)
        return [models[key, graphed].breakdown(shape) for key, graphed, shape in self._plan]

    # ------------------------------------------------------------ internals
    def _models(self, params: StepTimeParams | None) -> dict[tuple[tuple[str, int | None], bool], StepTimeModel]:
        modes = {(key, graphed) for key, graphed, _ in self._plan}
        return {
            (key, graphed): StepTimeModel(self._specs[key], self.hardware, params=params, cuda_graphs=graphed)
            for key, graphed in modes
        }

    def _spec_key(self, row: StepRow, catalog: Catalog) -> tuple[str, int | None]:
        key = (row.model, row.num_layers)
        if key not in self._specs:
            self._specs[key] = _row_spec(row, catalog)
        return key


def _row_spec(row: StepRow, catalog: Catalog) -> ModelSpec:
    """The row's model, with its layer count replaced by ``num_layers`` when given."""
    where = f"row {row.index} (line {row.index + 1})"
    try:
        spec = catalog.model(row.model)
    except CatalogError as err:
        raise TraceError(f"{where}: column 'model' = {row.model!r}: {err}") from None
    if row.num_layers is None or row.num_layers == spec.num_layers:
        return spec
    try:
        return ModelSpec.model_validate({**spec.model_dump(), "num_layers": row.num_layers})
    except ValidationError as err:
        why = err.errors(include_url=False)[0]["msg"].removeprefix("Value error, ")
        raise TraceError(f"{where}: column 'num_layers' = {row.num_layers}: not valid for {row.model}: {why}") from None
