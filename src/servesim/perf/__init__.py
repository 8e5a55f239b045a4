"""Performance model: model and GPU catalogs, memory planning, step times.

Public names are re-exported here; the modules behind them are private
implementation detail and may move.
"""

from servesim.perf.batch_shape import BatchShape
from servesim.perf.calibrate import fit_step_params, leave_one_group_out, logo_groups
from servesim.perf.calibration_file import Calibration, apply_calibration, load_calibration
from servesim.perf.catalog import Catalog
from servesim.perf.hardware_spec import HardwareSpec
from servesim.perf.memory import MemoryPlan, default_activation_reserve_bytes, kv_bytes_per_token_per_gpu, plan_memory
from servesim.perf.model_spec import ModelSpec
from servesim.perf.steppricer import StepPricer
from servesim.perf.steprows import StepRow, read_steps_csv
from servesim.perf.steptime import StepTime, StepTimeModel
from servesim.perf.steptime_params import StepTimeParams

__all__ = [
    "BatchShape",
    "Calibration",
    "Catalog",
    "HardwareSpec",
    "MemoryPlan",
    "ModelSpec",
    "StepPricer",
    "StepRow",
    "StepTime",
    "StepTimeModel",
    "StepTimeParams",
    "apply_calibration",
    "default_activation_reserve_bytes",
    "fit_step_params",
    "kv_bytes_per_token_per_gpu",
    "leave_one_group_out",
    "load_calibration",
    "logo_groups",
    "plan_memory",
    "read_steps_csv",
]
