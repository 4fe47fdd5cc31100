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
    low_counts = dim_zero_cat(metric.cl_low_counts)
    mis_s, mis_pmax, low_s = (dim_zero_cat(getattr(metric, a)) for a in ("cl_mis_s", "cl_mis_pmax", "cl_low_s"))
    img_of_mis = torch.repeat_interleave(torch.arange(n, device=idx.device), mis_counts.sum(-1).long())
    img_of_low = torch.repeat_interleave(torch.arange(n, device=idx.device), low_counts.long())
    mis_keep, low_keep = keep_mask[img_of_mis], keep_mask[img_of_low]
    sums = dim_zero_cat(metric.cl_sums).view(n, k)[keep_mask]
    counts = dim_zero_cat(metric.cl_counts).view(n, k)[keep_mask]
    kept_mis_counts = mis_counts[keep_mask]
    thresholds, num_issues, cutoff = confident_cutoff(
        sums, counts, kept_mis_counts, mis_s[mis_keep], mis_pmax[mis_keep], low_s[low_keep]
    )
    flagged = issue_counts_per_image(kept_mis_counts, mis_s[mis_keep], cutoff)
    valid = dim_zero_cat(metric.cl_valid)[keep_mask]
    score = (1 - flagged.double() / valid.double())[torch.argsort(idx[keep_mask])]
    return score, {
        "cl_cutoff": float(cutoff),
        "cl_num_issues": int(num_issues),
        "cl_thresholds": thresholds.tolist(),
    }
