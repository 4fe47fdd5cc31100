"""Pure-torch label-quality scores: every function takes ``preds (B, K, *spatial)`` and ``target (B, *spatial)``.

Image scores return ``(B,)`` tensors where lower means more likely mislabeled. The
dataset-level scores (``thresholded_ccp``, ``confident_learning_counts``,
``find_label_issues``) treat the batch as the whole dataset; use
:class:`lightning_segqa.LabelQuality` to stream a dataset through them.
"""

from lightning_segqa.functional.coco import connected_components
from lightning_segqa.functional.components import label_connected_components
from lightning_segqa.functional.confident import confident_learning_counts, find_label_issues
from lightning_segqa.functional.local import confidence_in_label, correctly_classified_pixels, iou, softmin
from lightning_segqa.functional.pixel import pixel_label_scores
from lightning_segqa.functional.pooling import downsample
from lightning_segqa.functional.thresholded import thresholded_ccp

__all__ = [
    "confidence_in_label",
    "confident_learning_counts",
    "connected_components",
    "correctly_classified_pixels",
    "downsample",
    "find_label_issues",
    "iou",
    "label_connected_components",
    "pixel_label_scores",
    "softmin",
    "thresholded_ccp",
]
