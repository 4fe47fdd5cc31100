"""Per-class self-confidence and the pixels a model confidently says are mislabeled.

Confident learning calibrates "the model is sure" per class: the threshold ``t_k`` of class
``k`` is the mean probability of ``k`` over the pixels annotated ``k`` (its *self-confidence*).
A pixel annotated ``y`` whose predicted class ``c`` differs from ``y`` and whose ``p_c`` reaches
``t_c`` is a *confident misprediction*: the evidence says its label is wrong. These are the
pixels confident learning counts as issues (before it keeps the lowest-scored ones), and the
pixels the suspect pictures mark.

:func:`class_confidence_sums` collects one batch's per-image sums and counts (``2 K`` numbers per
image, one gather and two scatter-adds over the batch); :func:`class_thresholds` turns the
dataset's totals into ``t``; :func:`confident_mispredictions` marks the pixels of one image.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from lightning_segqa.functional._inputs import PreparedInputs

THRESHOLD_LOWER_BOUND = 2e-6  # as confident learning (cleanlab) clips its thresholds
COMPARISON_EPS = 1e-6
ABSENT_CLASS_THRESHOLD = 0.5  # a class no pixel is annotated with: "more likely than all others together"


def class_confidence_sums(prepared: PreparedInputs) -> tuple[Tensor, Tensor]:
    """Per image and class: the sum of ``p_k`` over the valid pixels annotated ``k``, and their count.

    Args:
        prepared: one batch from :func:`~lightning_segqa.functional._inputs.prepare_inputs`.

    Returns:
        ``(sums, counts)``, both ``(B, K)`` float64.

    Examples:
        >>> from lightning_segqa.functional._inputs import prepare_inputs
        >>> probs = torch.tensor([[[[0.9, 0.3, 0.2]], [[0.1, 0.7, 0.8]]]])  # (1, 2, 1, 3)
        >>> sums, counts = class_confidence_sums(prepare_inputs(probs, torch.tensor([[[0, 0, 1]]])))
        >>> sums.round(decimals=4).tolist(), counts.tolist()
        ([[1.2, 0.8]], [[2.0, 1.0]])

    """
    if not isinstance(prepared, PreparedInputs):
        raise TypeError(f"`prepared` must be PreparedInputs, got {type(prepared).__name__}")
    b, k = prepared.probs.shape[:2]
    target = prepared.target.reshape(b, -1)
    s = prepared.probs.reshape(b, k, -1).gather(1, target.unsqueeze(1)).squeeze(1).double()
    valid = prepared.valid.reshape(b, -1).double()
    sums = torch.zeros(b, k, dtype=torch.float64, device=s.device).scatter_add_(1, target, s * valid)
    counts = torch.zeros(b, k, dtype=torch.float64, device=s.device).scatter_add_(1, target, valid)
    return sums, counts


def class_thresholds(sums: Tensor, counts: Tensor) -> Tensor:
    """Per-class thresholds ``t_k`` (mean self-confidence) from summed :func:`class_confidence_sums`.

    ``t_k`` is clipped below at ``2e-6`` (as in confident learning); a class no valid pixel is
    annotated with gets ``0.5``.

    Args:
        sums: ``(K,)`` (or ``(N, K)``, summed over ``N``) sums of self-confidence per class.
        counts: same shape: pixels annotated with each class.

    Returns:
        ``(K,)`` float64 thresholds.

    Examples:
        >>> class_thresholds(torch.tensor([[1.2, 0.0], [0.6, 0.0]]), torch.tensor([[2.0, 0.0], [1.0, 0.0]]))
        tensor([0.6000, 0.5000], dtype=torch.float64)

    """
    if not isinstance(sums, Tensor) or not isinstance(counts, Tensor) or sums.shape != counts.shape:
        raise ValueError(
            "`sums` and `counts` must be Tensors of one shape, got "
            f"{getattr(sums, 'shape', type(sums).__name__)} and {getattr(counts, 'shape', type(counts).__name__)}"
        )
    if sums.ndim not in (1, 2):
        raise ValueError(f"`sums` must be (K,) or (N, K), got shape {tuple(sums.shape)}")
    if sums.ndim == 2:
        sums, counts = sums.sum(0), counts.sum(0)
    sums, counts = sums.double(), counts.double()
    mean = (sums / counts.clamp_min(1)).clamp_min(THRESHOLD_LOWER_BOUND)
    return torch.where(counts > 0, mean, torch.full_like(mean, ABSENT_CLASS_THRESHOLD))


def confident_mispredictions(
    pixel_scores: Tensor, pred: Tensor, pred_probs: Tensor, thresholds: Tensor | Sequence[float]
) -> Tensor:
    """Pixels whose predicted class differs from the label and is at least as sure as that class usually is.

    A pixel is marked when ``s < p_c`` (the predicted class ``c`` beats the annotated one; ties
    count as correct) and ``p_c >= t_c - 1e-6``. NaN scores (ignored pixels) are never marked.

    Args:
        pixel_scores: ``(H, W)`` probability of the annotated class per pixel (NaN: ignored).
        pred: ``(H, W)`` integer predicted class (argmax).
        pred_probs: ``(H, W)`` probability of the predicted class.
        thresholds: ``(K,)`` per-class thresholds from :func:`class_thresholds`.

    Returns:
        ``(H, W)`` bool mask.

    Examples:
        >>> s = torch.tensor([[0.05, 0.40, 0.90, float("nan")]])
        >>> pred = torch.tensor([[1, 1, 0, 1]])
        >>> p = torch.tensor([[0.95, 0.60, 0.90, 0.99]])
        >>> confident_mispredictions(s, pred, p, [0.9, 0.8]).tolist()
        [[True, False, False, False]]

    """
    for name, value in (("pixel_scores", pixel_scores), ("pred", pred), ("pred_probs", pred_probs)):
        if not isinstance(value, Tensor) or value.ndim < 1:
            raise TypeError(f"`{name}` must be a Tensor, got {type(value).__name__}")
    if pred.shape != pixel_scores.shape or pred_probs.shape != pixel_scores.shape:
        raise ValueError(
            f"`pred` and `pred_probs` must match `pixel_scores` shape {tuple(pixel_scores.shape)}, "
            f"got {tuple(pred.shape)} and {tuple(pred_probs.shape)}"
        )
    if pred.is_floating_point():
        raise TypeError(f"`pred` must hold integer class ids, got dtype {pred.dtype}")
    t = torch.as_tensor(thresholds, dtype=torch.float64, device=pred_probs.device)
    if t.ndim != 1 or t.numel() == 0:
        raise ValueError(f"`thresholds` must be a non-empty 1-D sequence, got shape {tuple(t.shape)}")
    pred = pred.long()
    if pred.numel() and (int(pred.min()) < 0 or int(pred.max()) >= t.numel()):
        raise ValueError(
            f"`pred` class ids must lie in [0, {t.numel() - 1}], got [{int(pred.min())}, {int(pred.max())}]"
        )
    p = pred_probs.double()
    return (pixel_scores.double() < p) & (p >= t[pred] - COMPARISON_EPS)
