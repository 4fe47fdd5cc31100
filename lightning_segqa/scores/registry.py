"""The seven scoring methods, in the paper's order: each one :class:`~.unit.ScoreMethod`.

Adding a method means adding its unit to :data:`REGISTRY` here (and a test): the metric, the
functional score, the report's tables and legend and the callback read everything from it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import Tensor

from lightning_segqa.functional.coco import coco_from_prepared
from lightning_segqa.functional.confident import confident_cutoff, confident_stats, issue_counts_per_image
from lightning_segqa.functional.thresholded import tccp_counts, tccp_from_counts
from lightning_segqa.scores.unit import BatchPass, ScoreMethod, Settings, image_score

__all__ = ["CL_STATES", "REGISTRY"]


def _local(name: str) -> Any:
    return lambda batch, settings: batch.local(name)


# ---------------------------------------------------------------- thresholded CCP (dataset level)
def _tccp_update(batch: BatchPass, settings: Settings) -> dict[str, Tensor]:
    return {"tccp_counts": tccp_counts(batch.prepared, settings.grid, settings.uniform_grid).flatten().float()}


def _tccp_compute(rows: Mapping[str, Tensor], settings: Settings) -> tuple[Tensor, dict[str, Any]]:
    counts = rows["tccp_counts"]
    tccp, best = tccp_from_counts(counts.view(counts.shape[0], -1, settings.grid.numel()), rows["num_valid"])
    return tccp, {"tccp_thresholds": settings.grid[best.to(settings.grid.device)].tolist()}


# ---------------------------------------------------------------- confident learning (dataset level)
#: the list states that hold confident learning's per-image summaries
CL_STATES = (
    "cl_sums",
    "cl_counts",
    "cl_mis_counts",
    "cl_mis_s",
    "cl_mis_pmax",
    "cl_low_counts",
    "cl_low_s",
    "cl_valid",
)


def _cl_update(batch: BatchPass, settings: Settings) -> dict[str, Tensor]:
    st = confident_stats(batch.working)
    return {
        "cl_sums": st.class_sums.flatten(),
        "cl_counts": st.class_counts.flatten().float(),
        "cl_mis_counts": st.mis_counts.flatten().float(),
        "cl_mis_s": st.mis_s,
        "cl_mis_pmax": st.mis_pmax,
        "cl_low_counts": st.low_counts.float(),
        "cl_low_s": st.low_s,
        "cl_valid": st.num_valid.float(),
    }


def _cl_compute(rows: Mapping[str, Tensor], settings: Settings) -> tuple[Tensor, dict[str, Any]]:
    mis_counts, mis_s = rows["cl_mis_counts"], rows["cl_mis_s"]
    thresholds, num_issues, cutoff = confident_cutoff(
        rows["cl_sums"], rows["cl_counts"], mis_counts, mis_s, rows["cl_mis_pmax"], rows["cl_low_s"]
    )
    flagged = issue_counts_per_image(mis_counts, mis_s, cutoff)
    score = 1 - flagged.double() / rows["cl_valid"].reshape(-1).double()
    details = {"cl_cutoff": float(cutoff), "cl_num_issues": int(num_issues), "cl_thresholds": thresholds.tolist()}
    return score, details


def _units() -> dict[str, ScoreMethod]:
    units = [
        image_score("softmin", "SM", "softmin (the paper method)", "label", _local("softmin"), s_only=True),
        image_score(
            "confidence_in_label",
            "CIL",
            "mean confidence in the given label",
            "label",
            _local("confidence_in_label"),
            s_only=True,
        ),
        image_score(
            "correctly_classified_pixels",
            "CCP",
            "share of correctly classified pixels",
            "pixels",
            _local("correctly_classified_pixels"),
        ),
        ScoreMethod(
            name="thresholded_ccp",
            short="TCCP",
            long="thresholded CCP",
            per_image=False,
            reads="inputs",
            states=("tccp_counts",),
            update=_tccp_update,
            compute=_tccp_compute,
        ),
        image_score("iou", "IoU", "intersection over union", "pixels", _local("iou")),
        image_score(
            "connected_components",
            "CoCo",
            "connected components",
            "working",
            lambda batch, settings: coco_from_prepared(batch.working, settings.connectivity),
        ),
        ScoreMethod(
            name="confident_learning_counts",
            short="CLC",
            long="confident-learning issue counts",
            per_image=False,
            reads="working",
            states=CL_STATES,
            update=_cl_update,
            compute=_cl_compute,
            ragged={"cl_mis_s": "cl_mis_counts", "cl_mis_pmax": "cl_mis_counts", "cl_low_s": "cl_low_counts"},
        ),
    ]
    return {unit.name: unit for unit in units}


#: method name -> its unit, the paper's softmin first (the order of reports and tables)
REGISTRY: dict[str, ScoreMethod] = _units()


def per_image(method: str) -> bool:
    """True when ``method``'s score of an image is known after its batch (False: dataset level).

    Examples:
        >>> per_image("softmin"), per_image("thresholded_ccp")
        (True, False)
    """
    return REGISTRY[method].per_image
