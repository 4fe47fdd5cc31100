"""The default suspect rule: which images of one report count as suspects when no threshold is given.

A fixed cut such as "softmin below 0.1" does not mean the same thing on two datasets: softmin
tends to the lowest pixel score as images grow, so its level depends on image size, class mix
and model. The default rule is relative to the report's own score distribution instead: an
image is a suspect when its score is a low outlier on a log scale, measured from the median
in units of a robust standard deviation of the scores below the median (a one-sided MAD).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

#: how many robust standard deviations below the median (on log scores) make a suspect
DEFAULT_CUTOFF = 2.5
#: fewer scored images than this and the median/MAD are too noisy: no image is a suspect
MIN_IMAGES = 10
#: scores are clamped to at least this before the log (a score of 0 is always a suspect)
_FLOOR = 1e-30
#: 1 / Phi^-1(3/4): makes the MAD estimate the standard deviation of a normal sample
_MAD_TO_STD = 1.482602218505602
#: sqrt(pi / 2): makes the mean absolute deviation estimate the standard deviation of a normal sample
_MEAN_AD_TO_STD = 1.2533141373155001
#: cutoff per method where it differs from :data:`DEFAULT_CUTOFF`
CUTOFFS: dict[str, float] = {}

DEFAULT_RULE = (
    f"an image is a suspect when log(score) lies more than {DEFAULT_CUTOFF:g} robust standard deviations below "
    "the median log score of the report's images; the robust standard deviation is 1.4826 x the median distance "
    f"to the median of the log scores below it (no suspects under {MIN_IMAGES} scored images)"
)


def _check_scores(scores: Tensor) -> Tensor:
    if not isinstance(scores, Tensor):
        raise TypeError(f"`scores` must be a torch.Tensor of per-image scores, got {type(scores).__name__}.")
    if scores.ndim != 1:
        raise ValueError(f"`scores` must be 1-D (one score per image), got shape {tuple(scores.shape)}.")
    if not scores.is_floating_point():
        raise TypeError(f"`scores` must be a floating-point tensor, got dtype {scores.dtype}.")
    return scores


def robust_log_location_scale(scores: Tensor) -> tuple[float, float]:
    """Median and lower-side robust standard deviation of ``log(scores)`` over the finite scores.

    The spread is measured on the side where suspects lie: the median of ``median - log(score)``
    over the scores at or below the median, times 1.4826 (the standard deviation for normal data,
    where it equals the usual MAD). A clean dataset whose low tail is long (a weak model misses
    some classes in many images) thus gets a wide spread rather than many suspects. When more
    than half of those deviations are 0 (ties) it falls back to their mean times 1.2533, and is
    0 only when no score lies below the median.

    Args:
        scores: ``(N,)`` per-image scores; NaN and infinite entries are left out, 0 counts as
            ``1e-30``.

    Returns:
        ``(median, scale)`` of the log scores; ``(nan, nan)`` without a finite score.

    Examples:
        >>> m, s = robust_log_location_scale(torch.tensor([1.0, 1.0, 1.0, 0.5, 1.0]))
        >>> round(math.exp(m), 3), round(s, 3)
        (1.0, 0.174)
    """
    scores = _check_scores(scores)
    finite = scores[torch.isfinite(scores)].double()
    if finite.numel() == 0:
        return float("nan"), float("nan")
    logs = finite.clamp_min(_FLOOR).log()
    median = logs.quantile(0.5)  # the middle value, or the mean of the two middle ones
    below = median - logs[logs <= median]
    scale = below.quantile(0.5) * _MAD_TO_STD
    if not bool(scale > 0):
        scale = below.mean() * _MEAN_AD_TO_STD
    return float(median), float(scale)


def suspect_cut(scores: Tensor, method: str = "softmin", cutoff: float | None = None) -> float:
    """The score below which an image is a suspect under the default rule (NaN: no suspects).

    Args:
        scores: ``(N,)`` per-image scores of one report (lower = more likely mislabeled); NaN ignored.
        method: the score's name; picks the cutoff of :data:`CUTOFFS` when ``cutoff`` is None.
        cutoff: robust standard deviations below the median log score (default: per method).

    Returns:
        The threshold on the original score scale; ``nan`` (no suspects) when fewer than
        :data:`MIN_IMAGES` images have a finite score or all of them are equal.

    Examples:
        >>> s = torch.tensor([0.5, 0.55, 0.6, 0.52, 0.58, 0.49, 0.61, 0.57, 0.54, 0.001])
        >>> 0.001 < suspect_cut(s) < 0.49
        True
    """
    if not isinstance(method, str):
        raise TypeError(f"`method` must be a method name, got {type(method).__name__}.")
    if cutoff is None:
        cutoff = CUTOFFS.get(method, DEFAULT_CUTOFF)
    if isinstance(cutoff, bool) or not isinstance(cutoff, (int, float)) or not cutoff > 0:
        raise ValueError(f"`cutoff` must be a positive number, got {cutoff!r}.")
    scores = _check_scores(scores)
    if int(torch.isfinite(scores).sum()) < MIN_IMAGES:
        return float("nan")
    median, scale = robust_log_location_scale(scores)
    if not scale > 0:
        return float("nan")
    return math.exp(median - cutoff * scale)


def default_suspect_mask(scores: Tensor, method: str = "softmin") -> Tensor:
    """Which images are suspects under the default rule (:data:`DEFAULT_RULE`).

    Args:
        scores: ``(N,)`` per-image scores of one report (lower = more likely mislabeled).
        method: the score's name, e.g. ``"softmin"``.

    Returns:
        ``(N,)`` bool on the scores' device; NaN scores are never suspects.

    Examples:
        >>> s = torch.tensor([0.5, 0.55, 0.6, 0.52, 0.58, 0.49, 0.61, 0.57, 0.54, 0.001, float("nan")])
        >>> default_suspect_mask(s).nonzero().flatten().tolist()
        [9]
    """
    cut = suspect_cut(scores, method)
    if math.isnan(cut):
        return torch.zeros_like(scores, dtype=torch.bool)
    return scores < cut
