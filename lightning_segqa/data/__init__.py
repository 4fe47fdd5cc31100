"""Datasets over tensors or image folders, and class-name files.

Both datasets yield dicts ``{"image", "mask", "index", ...}``; the folder dataset validates every
image/mask pair up front and reports all problems at once. The code lives in
:mod:`lightning_segqa.data.tensor` (the tensor dataset) and :mod:`lightning_segqa.data.folder`
(image-folder datasets, class-name files); everything is importable from ``lightning_segqa.data``.
The synthetic street scenes of the demo are in :mod:`lightning_segqa.experiments.synthetic`.
"""

from lightning_segqa.data.folder import (
    IMAGE_SUFFIXES,
    MASK_SUFFIXES,
    FolderSegmentationDataset,
    load_class_names,
    write_folder_dataset,
)
from lightning_segqa.data.tensor import TensorSegmentationDataset

__all__ = [
    "IMAGE_SUFFIXES", "MASK_SUFFIXES", "FolderSegmentationDataset", "TensorSegmentationDataset", "load_class_names",
    "write_folder_dataset",
]  # fmt: skip
