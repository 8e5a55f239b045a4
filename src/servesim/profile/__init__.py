"""The profiling kit: measure engine-iteration latencies on your own device.

``servesim profile`` builds a decoder of a catalog model's shape with random
weights, times the iterations of a row plan (``rows``) on a backend
(``torch`` on CUDA or CPU, or ``numpy`` on the CPU), and writes them in the
calibration CSV format that ``servesim calibrate`` fits.  How each row is
measured follows ``shared/calibration/README.md``.  PyTorch is optional and
imported only when the torch backend is chosen.
"""

from servesim._lazy import attach

__getattr__, __dir__, __all__ = attach(
    __name__,
    {
        "COLUMNS": "servesim.profile.runner",
        "Decoder": "servesim.profile.backend",
        "PLANS": "servesim.profile.rows",
        "ProfileResult": "servesim.profile.runner",
        "RowSkipped": "servesim.profile.backend",
        "RowSpec": "servesim.profile.rows",
        "StepBackend": "servesim.profile.backend",
        "check_profilable": "servesim.profile.backend",
        "default_plan": "servesim.profile.rows",
        "plan_rows": "servesim.profile.rows",
        "profile_steps": "servesim.profile.runner",
        "quick_plan": "servesim.profile.rows",
        "select_backend": "servesim.profile.backend",
        "write_device_json": "servesim.profile.runner",
        "write_rows": "servesim.profile.runner",
    },
)
