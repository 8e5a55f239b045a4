"""The profiling kit: measure engine-iteration latencies on your own device.

``servesim profile`` builds a decoder of a catalog model's shape with random
weights, times the iterations of a row plan (``rows``) on a backend
(``torch`` on CUDA or CPU, or ``numpy`` on the CPU), and writes them in the
calibration CSV format that ``servesim calibrate`` fits.  How each row is
measured follows ``shared/calibration/README.md``.  PyTorch is optional and
imported only when the torch backend is chosen.
"""

from servesim.profile.backend import Decoder, RowSkipped, StepBackend, check_profilable, select_backend
from servesim.profile.rows import PLANS, RowSpec, default_plan, plan_rows, quick_plan
from servesim.profile.runner import COLUMNS, ProfileResult, profile_steps, write_device_json, write_rows

__all__ = [
    "COLUMNS",
    "PLANS",
    "Decoder",
    "ProfileResult",
    "RowSkipped",
    "RowSpec",
    "StepBackend",
    "check_profilable",
    "default_plan",
    "plan_rows",
    "profile_steps",
    "quick_plan",
    "select_backend",
    "write_device_json",
    "write_rows",
]
