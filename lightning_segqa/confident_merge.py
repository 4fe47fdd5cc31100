"""Confident learning over the whole dataset, from the per-image summaries ``LabelQuality`` keeps."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor
from torchmetrics.utilities.data import dim_zero_cat

from lightning_segqa.functional.confident import confident_cutoff, issue_counts_per_image

__all__ = ["CL_STATES", "confident_score"]

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


def confident_score(metric: Any, n: int, keep_mask: Tensor, idx: Tensor) -> tuple[Tensor, dict[str, Any]]:
    """Confident learning's score per kept image, ordered by index, and the report details it adds.

    Args:
        metric: a :class:`~lightning_segqa.LabelQuality` holding the :data:`CL_STATES` of ``n`` images.
        n: number of images in the states (repeats included).
        keep_mask: ``(n,)`` True at the kept (first) occurrence of each index.
        idx: ``(n,)`` dataset indexes in state order.

    Returns:
        The scores (1 - share of flagged pixels) and ``cl_cutoff``, ``cl_num_issues``, ``cl_thresholds``.

    Examples:
        >>> from lightning_segqa import LabelQuality
        >>> metric = LabelQuality(2, methods=["confident_learning_counts"], downsample=1)
        >>> probs = torch.tensor([[[[0.9, 0.2]], [[0.1, 0.8]]]])  # (1, 2, 1, 2)
        >>> metric.update(probs, torch.tensor([[[0, 1]]]), indexes=torch.tensor([0]))
        >>> score, details = confident_score(metric, 1, torch.tensor([True]), torch.tensor([0]))
        >>> score.tolist(), details["cl_num_issues"]
        ([1.0], 0)
    """
    k = metric.num_classes
    mis_counts = dim_zero_cat(metric.cl_mis_counts).view(n, k)
    mis_s, mis_pmax, low_s = (dim_zero_cat(getattr(metric, a)) for a in ("cl_mis_s", "cl_mis_pmax", "cl_low_s"))
    sums, counts = dim_zero_cat(metric.cl_sums).view(n, k), dim_zero_cat(metric.cl_counts).view(n, k)
    valid = dim_zero_cat(metric.cl_valid)
    if not bool(keep_mask.all()):  # repeated indexes: only the kept images' pixels count
        mis_keep = keep_mask.repeat_interleave(mis_counts.sum(-1).long())
        low_keep = keep_mask.repeat_interleave(dim_zero_cat(metric.cl_low_counts).long())
        mis_s, mis_pmax, low_s = mis_s[mis_keep], mis_pmax[mis_keep], low_s[low_keep]
        mis_counts, sums, counts, valid = mis_counts[keep_mask], sums[keep_mask], counts[keep_mask], valid[keep_mask]
    thresholds, num_issues, cutoff = confident_cutoff(sums, counts, mis_counts, mis_s, mis_pmax, low_s)
    flagged = issue_counts_per_image(mis_counts, mis_s, cutoff)
    score = (1 - flagged.double() / valid.double())[torch.argsort(idx[keep_mask])]
    return score, {
        "cl_cutoff": float(cutoff),
        "cl_num_issues": int(num_issues),
        "cl_thresholds": thresholds.tolist(),
    }
