"""How well a score finds known label errors: AUROC, AUPRC and lift, lower scores = more suspect."""

from __future__ import annotations

import torch
from torch import Tensor
from torchmetrics.functional.classification import binary_auroc, binary_average_precision

#: the keys of :func:`detection_metrics`, in table order
DETECTION_METRICS = ("auroc", "auprc", "lift_at_t", "lift_at_100")


def worst_first(scores: Tensor) -> Tensor:
    """Positions sorted by ascending score (most suspect first), NaN last, ties by position.

    Args:
        scores: ``(N,)`` floating scores.

    Returns:
        ``(N,)`` int64 positions into ``scores``.

    Raises:
        ValueError: ``scores`` is not a 1-D floating tensor.

    Examples:
        >>> worst_first(torch.tensor([0.5, float("nan"), 0.1, 0.5])).tolist()
        [2, 0, 3, 1]
    """
    if not isinstance(scores, Tensor) or scores.ndim != 1 or not scores.is_floating_point():
        got = f"{scores.dtype} of shape {tuple(scores.shape)}" if isinstance(scores, Tensor) else type(scores).__name__
        raise ValueError(f"`scores` must be a 1-D floating tensor, got {got}.")
    filled = torch.where(torch.isnan(scores), torch.full_like(scores, float("inf")), scores)
    return torch.sort(filled, stable=True).indices


def lift_at_k(scores: Tensor, is_mislabeled: Tensor, k: int) -> float:
    """Share of true errors among the ``k`` lowest scores divided by their share overall.

    Args:
        scores: ``(N,)`` scores, lower = more likely mislabeled (NaN counts as least suspicious).
        is_mislabeled: ``(N,)`` bool ground truth.
        k: how many of the lowest scores to look at (more than ``N`` means all).

    Returns:
        The lift; NaN when there are no images, no errors or ``k <= 0``.

    Examples:
        >>> lift_at_k(torch.tensor([0.1, 0.2, 0.9, 0.8]), torch.tensor([True, False, False, False]), 1)
        4.0
    """
    n = scores.numel()
    positives = int(is_mislabeled.sum())
    if n == 0 or positives == 0 or k <= 0:
        return float("nan")
    k = min(k, n)
    order = worst_first(scores)
    return float(is_mislabeled[order[:k]].double().mean()) / (positives / n)


def detection_metrics(scores: Tensor, is_mislabeled: Tensor) -> dict[str, float]:
    """AUROC, AUPRC (average precision), Lift@T (T = number of errors) and Lift@100.

    Lower scores must mean "more likely mislabeled"; NaN scores count as the least suspicious
    (all NaN: every image ties, AUROC 0.5).

    Args:
        scores: ``(N,)`` floating scores of one method.
        is_mislabeled: ``(N,)`` ground truth (bool or 0/1).

    Returns:
        :data:`DETECTION_METRICS` -> value; all NaN when every image or none is mislabeled.

    Raises:
        ValueError: the two shapes differ.

    Examples:
        >>> m = detection_metrics(torch.tensor([0.1, 0.7, 0.9, 0.8]), torch.tensor([True, False, False, True]))
        >>> round(m["auroc"], 4), m["lift_at_t"]
        (0.75, 1.0)
    """
    if scores.shape != is_mislabeled.shape:
        raise ValueError(f"`scores` {tuple(scores.shape)} and `is_mislabeled` {tuple(is_mislabeled.shape)} differ.")
    truth = is_mislabeled.bool()
    positives = int(truth.sum())
    if positives == 0 or positives == truth.numel():
        return dict.fromkeys(DETECTION_METRICS, float("nan"))
    s = scores.double()
    known = torch.isfinite(s)
    if bool(known.any()):  # NaN and +inf rank after every finite score, -inf before
        low, high = s[known].min() - 1, s[known].max() + 1
        s = torch.where(torch.isnan(s) | (s == float("inf")), high, torch.where(s == float("-inf"), low, s))
    else:  # nothing finite: no score tells the images apart
        s = torch.where(s == float("-inf"), -1.0, 0.0).double()
    conf = -s
    return {
        "auroc": float(binary_auroc(conf, truth.long())),
        "auprc": float(binary_average_precision(conf, truth.long())),
        "lift_at_t": lift_at_k(scores, truth, positives),
        "lift_at_100": lift_at_k(scores, truth, 100),
    }
