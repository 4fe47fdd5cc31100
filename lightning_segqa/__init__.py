"""lightning-segqa: find the wrong masks in a segmentation dataset while you train.

Scores follow Lad & Mueller, "Estimating label quality and errors in semantic segmentation
data via any model": per pixel, the out-of-sample probability of the annotated class; per
image, their softmin (and six baselines).
"""

from lightning_segqa.metric import LabelQuality
from lightning_segqa.report import METHODS, LabelQualityReport, detection_metrics

__version__ = "0.1.0"

__all__ = ["METHODS", "LabelQuality", "LabelQualityReport", "detection_metrics", "__version__"]
