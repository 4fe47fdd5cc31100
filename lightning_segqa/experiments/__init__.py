"""Demo, audit and paper-benchmark tooling used by the ``segqa`` command line.

Not needed to use the metric, the callback or cross-validation: a training script imports those
from :mod:`lightning_segqa`. This subpackage holds what the project's own runs are made of:

- :mod:`~lightning_segqa.experiments.synthetic`: procedural street scenes with pixel-exact masks
  (no download), the data of ``segqa demo``, the examples and the tests;
- :mod:`~lightning_segqa.experiments.models`: the segmentation models they train
  (:class:`SegmentationModule` over segmentation-models-pytorch, and a tiny CPU net);
- :mod:`~lightning_segqa.experiments.pipelines`: the jobs behind ``segqa demo`` and ``segqa audit``;
- :mod:`~lightning_segqa.experiments.benchmark` (with ``benchmark_cache`` and ``tables``): the
  paper's Tables 1-4 on CamVid, ``segqa benchmark``.

The scenes and the models are importable from here; the jobs from their modules, e.g.
``from lightning_segqa.experiments.benchmark import run_benchmark``.
"""

from lightning_segqa.experiments.models import ARCHITECTURES, SegmentationModule, TinySegNet, build_model
from lightning_segqa.experiments.synthetic import (
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
    make_street_scenes,
)

__all__ = [
    "ARCHITECTURES", "BUILDING", "CAR", "PAVEMENT", "PEDESTRIAN", "POLE", "ROAD", "SKY", "STREET_CLASSES",
    "STREET_PALETTE", "TREE", "UNLABELED", "UNLABELED_INDEX", "SegmentationModule", "TinySegNet", "build_model",
    "make_street_scenes",
]  # fmt: skip
