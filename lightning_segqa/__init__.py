"""lightning-segqa: find the wrong masks in a segmentation dataset while you train.

Scores follow Lad & Mueller, "Estimating label quality and errors in semantic segmentation
data via any model": per pixel, the out-of-sample probability of the annotated class; per
image, their softmin (and six baselines).

This package is the library a training script imports; the tooling of the ``segqa`` command line
(built-in street scenes, models, the demo, audit and paper-benchmark jobs) is in
:mod:`lightning_segqa.experiments`.
"""

from lightning_segqa.callback import LabelQualityMonitor
from lightning_segqa.cross_validation import CrossValidation, cross_validate, kfold_splits, merge_folds
from lightning_segqa.gate import LabelQualityError, evaluate_gate, indexes_to_keep
from lightning_segqa.metric import LabelQuality
from lightning_segqa.noise import inject_label_errors
from lightning_segqa.report import METHODS, LabelQualityReport, detection_metrics

__version__ = "0.1.0"

__all__ = [
    "METHODS",
    "CrossValidation",
    "LabelQuality",
    "LabelQualityError",
    "LabelQualityMonitor",
    "LabelQualityReport",
    "__version__",
    "cross_validate",
    "detection_metrics",
    "evaluate_gate",
    "indexes_to_keep",
    "inject_label_errors",
    "kfold_splits",
    "merge_folds",
]
