"""Cost model and bulk engine: how long tearing down a TD takes, and why.

* `bulk`: numpy engine, same counts/states/leaks as the step engine, up to 1 TiB.
* `counts`: the teardown's SEAMCALL counts in closed form (checked against both engines).
* `params`: every priced operation with its value, range and source (fitted or prior).
* `model`: pricing, `calibrate()` against `calibration.csv`, `predict()`, `sweep()`.
* `forms`: the model forms that fit the same rows; the band is their envelope.
* `validate`: leave-one-out and "fit on 4 vCPUs, predict 32" (`tdxedu teardown --validate`).
* `dpamt`: where pages land on a Dynamic PAMT host (for the bulk engine and the counts).
* the plot of a `sweep()` is `tdxedu.viz.sweep_figure` (viz sits above cost).
"""

from .bulk import BulkReport, BulkTd, bulk_teardown
from .counts import Workload, teardown_counts, workload
from .model import Calibration, Prediction, calibrate, default_calibration, nnls, predict, sweep
from .params import DEFAULT_PARAMS, Param

__all__ = ["BulkTd", "BulkReport", "bulk_teardown", "Workload", "teardown_counts", "workload",
           "Calibration", "Prediction", "calibrate", "default_calibration", "nnls", "predict",
           "sweep", "DEFAULT_PARAMS", "Param"]
