"""Synthetic street scenes (no download needed) and datasets over tensors or image folders.

Both datasets yield dicts ``{"image", "mask", "index", ...}``; the folder dataset validates every
image/mask pair up front and reports all problems at once. The code lives in
:mod:`lightning_segqa.data.synthetic` (scenes, class constants, the tensor dataset) and
:mod:`lightning_segqa.data.folder` (image-folder datasets, class-name files); everything is
importable from ``lightning_segqa.data``.
"""

from lightning_segqa.data.folder import (
    IMAGE_SUFFIXES,
    MASK_SUFFIXES,
    FolderSegmentationDataset,
    load_class_names,
    write_folder_dataset,
)
from lightning_segqa.data.synthetic import (  # noqa: F401  the class ids SKY..UNLABELED stay importable here
    BUILDING,
    CAR,
    PAVEMENT,
    PEDESTRIAN,
    POLE,
    ROAD,
    SKY,
    STREET_CLASSES,
    STREET_PALETTE,
    TREE,
    UNLABELED,
    UNLABELED_INDEX,
    TensorSegmentationDataset,
    make_street_scenes,
)

__all__ = [
    "IMAGE_SUFFIXES", "MASK_SUFFIXES", "STREET_CLASSES", "STREET_PALETTE", "UNLABELED_INDEX",
    "FolderSegmentationDataset", "TensorSegmentationDataset", "load_class_names",
    "make_street_scenes", "write_folder_dataset",
]  # fmt: skip
