"""One registry of the scoring methods: each method is one small unit (:class:`ScoreMethod`).

:data:`REGISTRY` maps every method name to its unit, in the paper's order; the metric, the
functional scores, the report and the callback read names, states and kinds from it.
"""

from lightning_segqa.scores.registry import CL_STATES, REGISTRY, per_image
from lightning_segqa.scores.unit import (
    BatchPass,
    ScoreMethod,
    Settings,
    image_score,
    kept_rows,
    read_batch,
    score_one_batch,
)

__all__ = [
    "CL_STATES",
    "REGISTRY",
    "BatchPass",
    "ScoreMethod",
    "Settings",
    "image_score",
    "kept_rows",
    "per_image",
    "read_batch",
    "score_one_batch",
]
