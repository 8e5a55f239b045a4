"""Performance model: model and GPU catalogs, memory planning, step times.

Public names are re-exported here; the modules behind them are private
implementation detail and may move.
"""

from servesim.perf.batch_shape import BatchShape
from servesim.perf.catalog import Catalog
from servesim.perf.hardware_spec import HardwareSpec
from servesim.perf.memory import MemoryPlan, default_activation_reserve_bytes, kv_bytes_per_token_per_gpu, plan_memory
from servesim.perf.model_spec import ModelSpec
from servesim.perf.steptime import StepTime, StepTimeModel
from servesim.perf.steptime_params import StepTimeParams

__all__ = [
    "BatchShape",
    "Catalog",
    "HardwareSpec",
    "MemoryPlan",
    "ModelSpec",
    "StepTime",
    "StepTimeModel",
    "StepTimeParams",
    "default_activation_reserve_bytes",
    "kv_bytes_per_token_per_gpu",
    "plan_memory",
]
