"""The default suspect rule: which images of one report count as suspects when no threshold is given.

A fixed cut such as "softmin below 0.1" does not mean the same thing on two datasets: softmin
tends to the lowest pixel score as images grow, so its level depends on image size, class mix
and model. The default rule is relative to the report's own score distribution instead, on a log
scale, in two parts:

* **outliers**: scores more than 2.5 robust standard deviations below the median (the spread from
  the scores below the median, a one-sided MAD);
* **a separate low group**: when many images are mislabeled they widen that spread and hide each
  other; a two-component normal mixture then finds them as a group of its own, used only when the
  two groups are clearly apart (Ashman's D of at least 2, the group at least 2.5 spreads below the
  bulk and smaller than it).

The images below the higher of the two cuts are the suspects.
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

#: a low group must be at least this far from the bulk (Ashman's D; 2 separates two normals cleanly)
MIN_SEPARATION = 2.0
#: expectation-maximisation steps of the two-group fit (it stops earlier once it settles)
_EM_STEPS = 500
#: above this many images the two-group fit runs on this many evenly spaced quantiles of the log scores
_FIT_POINTS = 4096
#: the fit starts with the scores more than this many robust standard deviations below the median as
#: the low group (fewer than 2 such images: no group is looked for). Starting from the lowest
#: quantiles instead also "finds" the second mode of clean data with two kinds of images.
_START = 2.0

DEFAULT_RULE = (
    f"an image is a suspect when log(score) lies more than {DEFAULT_CUTOFF:g} robust standard deviations below "
    "the median log score of the report's images (the robust standard deviation is 1.4826 x the median distance "
    "to the median of the log scores below it), or when it belongs to a clearly separate low group of a "
    f"two-component normal mixture of the log scores (Ashman's D >= {MIN_SEPARATION:g}, the group's mean at least "
    f"{DEFAULT_CUTOFF:g} robust standard deviations below the bulk's, the group smaller than the bulk); "
    f"no suspects under {MIN_IMAGES} scored images"
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
    logs = scores[torch.isfinite(scores)].double().clamp_min(_FLOOR).log()
    group = low_group_log_cut(logs, median, scale, cutoff)
    return math.exp(max(median - cutoff * scale, group))  # max() ignores a NaN second argument


def _fit_two_normals(logs: Tensor, low: Tensor, scale: float) -> tuple[Tensor, Tensor, Tensor, float]:
    """Expectation-maximisation of a two-normal mixture started from the split ``low``/rest.

    Returns the means, standard deviations and weights (bulk first, low group second) and the
    log-likelihood. Standard deviations stay above ``1e-3 scale``.
    """
    x = logs[:, None]
    floor = 1e-3 * scale
    parts = [logs[~low], logs[low]]
    if min(p.numel() for p in parts) < 2:
        return torch.zeros(2), torch.ones(2), torch.tensor([1.0, 0.0]), float("-inf")
    mu = torch.stack([p.mean() for p in parts])
    sd = torch.stack([p.std() for p in parts]).clamp_min(floor)
    w = torch.tensor([parts[0].numel(), parts[1].numel()], dtype=torch.float64) / logs.numel()
    for _ in range(_EM_STEPS):
        joint = -0.5 * ((x - mu) / sd) ** 2 - sd.log() + w.log()
        resp = torch.softmax(joint, dim=1)
        nk = resp.sum(0).clamp_min(1e-12)
        new_mu = (resp * x).sum(0) / nk
        new_sd = ((resp * (x - new_mu) ** 2).sum(0) / nk).sqrt().clamp_min(floor)
        settled = bool(((new_mu - mu).abs().max() < 1e-10 * scale) & ((new_sd - sd).abs().max() < 1e-10 * scale))
        mu, sd, w = new_mu, new_sd, nk / nk.sum()
        if settled:
            break
    joint = -0.5 * ((x - mu) / sd) ** 2 - sd.log() + w.log()
    return mu, sd, w, float(torch.logsumexp(joint, dim=1).sum())


def low_group_log_cut(logs: Tensor, median: float, scale: float, cutoff: float = DEFAULT_CUTOFF) -> float:
    """The log score below which images form a clearly separate low group (NaN: no such group).

    Fits a two-component normal mixture to ``logs`` by expectation-maximisation, started with the
    scores more than 2 ``scale`` below the median as the low group (fewer than 2 of them: NaN). The low
    component counts as a separate group only when it is smaller than the bulk, its mean lies at
    least ``cutoff`` fitted bulk standard deviations below the bulk's mean, and the two are apart
    by Ashman's ``D = sqrt(2) |mu_0 - mu_1| / sqrt(sd_0^2 + sd_1^2) >= MIN_SEPARATION``. The cut is
    where the low group becomes the more likely one (the crossing of the two weighted densities).
    Above 4096 scores the fit runs on 4096 evenly spaced quantiles of them (well under a second
    for 100k images).

    Args:
        logs: ``(N,)`` finite log scores.
        median: their median (:func:`robust_log_location_scale`).
        scale: their lower-side robust standard deviation (:func:`robust_log_location_scale`).
        cutoff: minimal distance of the two means in bulk standard deviations.

    Returns:
        The cut on the log scale, or NaN.

    Examples:
        >>> g = torch.Generator().manual_seed(0)
        >>> bulk = -2.7 + 0.25 * torch.randn(102, generator=g, dtype=torch.float64)
        >>> group = -3.6 + 0.15 * torch.randn(18, generator=g, dtype=torch.float64)  # 15 % of the images
        >>> logs = torch.cat([bulk, group])
        >>> median, scale = robust_log_location_scale(logs.exp())
        >>> int((logs < median - DEFAULT_CUTOFF * scale).sum())  # the group widens the spread: 8 outliers
        8
        >>> cut = low_group_log_cut(logs, median, scale)
        >>> int((group < cut).sum()), int((bulk < cut).sum())  # the group: 18 of 18, and 1 bulk image
        (18, 1)
    """
    logs = logs.double()
    if not scale > 0 or logs.numel() < MIN_IMAGES:
        return float("nan")
    if logs.numel() > _FIT_POINTS:  # a large report: fit its quantiles (the same shape, bounded time)
        logs = logs.quantile(torch.linspace(0, 1, _FIT_POINTS, dtype=torch.float64, device=logs.device))
    mu, sd, w, _ = _fit_two_normals(logs, logs < median - _START * scale, scale)
    (m0, m1), (s0, s1), (w0, w1) = mu.tolist(), sd.tolist(), w.tolist()
    separation = math.sqrt(2) * (m0 - m1) / math.hypot(s0, s1)
    if not (w1 < w0 and m0 - m1 >= cutoff * s0 and separation >= MIN_SEPARATION):
        return float("nan")

    def low_minus_bulk(v: float) -> float:  # log of (weighted low density / weighted bulk density)
        return math.log(w1 / s1) - 0.5 * ((v - m1) / s1) ** 2 - math.log(w0 / s0) + 0.5 * ((v - m0) / s0) ** 2

    lo, hi = m1, m0
    if not (low_minus_bulk(lo) > 0 > low_minus_bulk(hi)):
        return float("nan")
    for _ in range(100):  # bisection: the crossing between the two means
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if low_minus_bulk(mid) > 0 else (lo, mid)
    return lo


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
