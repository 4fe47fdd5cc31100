"""The default suspect rule: which images of one report count as suspects when no threshold is given.

A fixed cut such as "softmin below 0.1" does not mean the same thing on two datasets: softmin
tends to the lowest pixel score as images grow, so its level depends on image size, class mix
and model. The default rule is relative to the report's own score distribution instead: an
image is a suspect when its score is a low outlier on a log scale, measured from the median
in units of the (normal-consistent) median absolute deviation.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

#: how many robust standard deviations below the median (on log scores) make a suspect
DEFAULT_CUTOFF = 3.0
#: fewer scored images than this and the median/MAD are too noisy: no image is a suspect
MIN_IMAGES = 8
#: scores are clamped to at least this before the log (a score of 0 is always a suspect)
_FLOOR = 1e-30
#: 1 / Phi^-1(3/4): makes the MAD estimate the standard deviation of a normal sample
_MAD_TO_STD = 1.482602218505602

DEFAULT_RULE = (
    f"an image is a suspect when log(score) lies more than {DEFAULT_CUTOFF:g} robust standard deviations "
    f"(1.4826 x MAD) below the median log score of the report's images (no suspects under {MIN_IMAGES} scored images)"
)


def _check_scores(scores: Tensor) -> Tensor:
    if not isinstance(scores, Tensor):
        raise TypeError(f"`scores` must be a torch.Tensor of per-image scores, got {type(scores).__name__}.")
    if scores.ndim != 1:
        raise ValueError(f"`scores` must be 1-D (one score per image), got shape {tuple(scores.shape)}.")
    if not scores.is_floating_point():
        raise TypeError(f"`scores` must be a floating-point tensor, got dtype {scores.dtype}.")
    return scores


def suspect_cut(scores: Tensor, method: str = "softmin", cutoff: float = DEFAULT_CUTOFF) -> float:
    """The score below which an image is a suspect under the default rule (NaN: no suspects).

    Args:
        scores: ``(N,)`` per-image scores of one report (lower = more likely mislabeled); NaN ignored.
        method: the score's name (the rule may differ per method).
        cutoff: robust standard deviations below the median log score.

    Returns:
        The threshold on the original score scale; ``nan`` when fewer than
        :data:`MIN_IMAGES` images have a finite score.

    Examples:
        >>> s = torch.tensor([0.5, 0.55, 0.6, 0.52, 0.58, 0.49, 0.61, 0.57, 0.001])
        >>> 0.001 < suspect_cut(s) < 0.49
        True
    """
    scores = _check_scores(scores)
    if not isinstance(method, str):
        raise TypeError(f"`method` must be a method name, got {type(method).__name__}.")
    if not isinstance(cutoff, (int, float)) or not cutoff > 0:
        raise ValueError(f"`cutoff` must be a positive number, got {cutoff!r}.")
    finite = scores[torch.isfinite(scores)].double()
    if finite.numel() < MIN_IMAGES:
        return float("nan")
    logs = finite.clamp_min(_FLOOR).log()
    median = logs.median()
    mad = (logs - median).abs().median() * _MAD_TO_STD
    return math.exp(float(median - cutoff * mad))


def default_suspect_mask(scores: Tensor, method: str = "softmin") -> Tensor:
    """Which images are suspects under the default rule (:data:`DEFAULT_RULE`).

    Args:
        scores: ``(N,)`` per-image scores of one report (lower = more likely mislabeled).
        method: the score's name, e.g. ``"softmin"``.

    Returns:
        ``(N,)`` bool on the scores' device; NaN scores are never suspects.

    Examples:
        >>> s = torch.tensor([0.5, 0.55, 0.6, 0.52, 0.58, 0.49, 0.61, 0.57, 0.001, float("nan")])
        >>> default_suspect_mask(s).nonzero().flatten().tolist()
        [8]
    """
    cut = suspect_cut(scores, method)
    if math.isnan(cut):
        return torch.zeros_like(scores, dtype=torch.bool)
    return scores < cut
