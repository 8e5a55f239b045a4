"""Performance model: model and GPU catalogs, memory planning, step times.

Public names are re-exported here; the modules behind them are private
implementation detail and may move.
"""

from servesim._lazy import attach

__getattr__, __dir__, __all__ = attach(
    __name__,
    {
        "BatchShape": "servesim.perf.batch_shape",
        "Calibration": "servesim.perf.calibration_file",
        "Catalog": "servesim.perf.catalog",
        "HardwareSpec": "servesim.perf.hardware_spec",
        "MemoryPlan": "servesim.perf.memory",
        "ModelSpec": "servesim.perf.model_spec",
        "StepPricer": "servesim.perf.steppricer",
        "StepRow": "servesim.perf.steprows",
        "StepTime": "servesim.perf.steptime",
        "StepTimeModel": "servesim.perf.steptime",
        "StepTimeParams": "servesim.perf.steptime_params",
        "apply_calibration": "servesim.perf.calibration_file",
        "default_activation_reserve_bytes": "servesim.perf.memory",
        "fit_step_params": "servesim.perf.calibrate",
        "kv_bytes_per_token_per_gpu": "servesim.perf.memory",
        "leave_one_group_out": "servesim.perf.calibrate",
        "load_calibration": "servesim.perf.calibration_file",
        "logo_groups": "servesim.perf.calibrate",
        "plan_memory": "servesim.perf.memory",
        "read_steps_csv": "servesim.perf.steprows",
    },
)
