"""The default suspect rule: values against a plain-Python reference, invariances, edge cases."""

from __future__ import annotations

import math
import statistics

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from lightning_segqa.suspect_rule import (
    CUTOFFS,
    DEFAULT_CUTOFF,
    DEFAULT_RULE,
    MIN_IMAGES,
    default_suspect_mask,
    robust_log_location_scale,
    suspect_cut,
)


def reference_group_cut(logs: list[float], med: float, scale: float, cutoff: float) -> float:
    """Plain-Python two-normal EM from the images beyond 2 robust SDs, the separation checks, bisection."""
    low = [x for x in logs if x < med - 2 * scale]
    rest = [x for x in logs if not x < med - 2 * scale]
    if len(low) < 2 or len(rest) < 2:
        return float("nan")
    floor = 1e-3 * scale
    mu = [statistics.fmean(rest), statistics.fmean(low)]
    sd = [max(statistics.stdev(rest), floor), max(statistics.stdev(low), floor)]
    w = [len(rest) / len(logs), len(low) / len(logs)]
    for _ in range(500):
        resp = []
        for x in logs:
            a = [math.log(w[k]) - math.log(sd[k]) - 0.5 * ((x - mu[k]) / sd[k]) ** 2 for k in (0, 1)]
            top = max(a)
            e = [math.exp(v - top) for v in a]
            resp.append([v / sum(e) for v in e])
        nk = [max(sum(r[k] for r in resp), 1e-12) for k in (0, 1)]
        new_mu = [sum(r[k] * x for r, x in zip(resp, logs, strict=True)) / nk[k] for k in (0, 1)]
        new_sd = [
            max(math.sqrt(sum(r[k] * (x - new_mu[k]) ** 2 for r, x in zip(resp, logs, strict=True)) / nk[k]), floor)
            for k in (0, 1)
        ]
        settled = max(abs(a - b) for a, b in zip(new_mu + new_sd, mu + sd, strict=True)) < 1e-10 * scale
        mu, sd, w = new_mu, new_sd, [n / sum(nk) for n in nk]
        if settled:
            break
    if not (w[1] < w[0] and mu[0] - mu[1] >= cutoff * sd[0] and math.sqrt(2) * (mu[0] - mu[1]) / math.hypot(*sd) >= 2):
        return float("nan")

    def ratio(v: float) -> float:
        return sum(s * (math.log(w[k] / sd[k]) - 0.5 * ((v - mu[k]) / sd[k]) ** 2) for k, s in ((1, 1), (0, -1)))

    lo, hi = mu[1], mu[0]
    if not ratio(lo) > 0 > ratio(hi):
        return float("nan")
    for _ in range(100):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if ratio(mid) > 0 else (lo, mid)
    return lo


def reference_cut(values: list[float], cutoff: float) -> float:
    """Brute force with the standard library: median and lower-side MAD of the logs (else the mean
    deviation), then the higher of that cut and the separate low group's."""
    finite = [v for v in values if math.isfinite(v)]
    if len(finite) < MIN_IMAGES:
        return float("nan")
    logs = [math.log(max(v, 1e-30)) for v in finite]
    med = statistics.median(logs)
    dev = [med - x for x in logs if x <= med]  # the side where suspects lie
    scale = statistics.median(dev) * 1.482602218505602
    if scale == 0:
        scale = statistics.fmean(dev) * math.sqrt(math.pi / 2)
    if scale == 0:
        return float("nan")
    group = reference_group_cut(logs, med, scale, cutoff)
    return math.exp(max(med - cutoff * scale, group))


positive = st.floats(min_value=1e-6, max_value=1.0, allow_nan=False)


def test_rule_is_documented() -> None:
    assert "median" in DEFAULT_RULE and "1.4826" in DEFAULT_RULE and f"{DEFAULT_CUTOFF:g}" in DEFAULT_RULE
    assert "Ashman's D >= 2" in DEFAULT_RULE


def test_a_long_clean_low_tail_is_not_flagged() -> None:
    """A skewed clean distribution (a weak model misses a class in many images) widens the spread.

    With the symmetric MAD, the tight upper half would set the spread and flag the tail.
    """
    g = torch.Generator().manual_seed(2)
    upper = torch.exp(-2.6 + 0.05 * torch.randn(60, generator=g, dtype=torch.float64).abs())
    lower = torch.exp(-2.6 - 0.4 * torch.randn(60, generator=g, dtype=torch.float64).abs())
    scores = torch.cat([upper, lower])
    logs = scores.log()
    symmetric_scale = float((logs - logs.quantile(0.5)).abs().quantile(0.5)) * 1.482602218505602
    symmetric_cut = math.exp(float(logs.quantile(0.5)) - DEFAULT_CUTOFF * symmetric_scale)
    assert float((scores < symmetric_cut).double().mean()) > 0.1  # what a symmetric MAD would flag
    assert float(default_suspect_mask(scores).double().mean()) < 0.02


@settings(max_examples=60, deadline=None)
@given(st.lists(positive, min_size=0, max_size=60))
def test_matches_the_reference(values: list[float]) -> None:
    scores = torch.tensor(values, dtype=torch.float64)
    want = reference_cut(values, CUTOFFS.get("softmin", DEFAULT_CUTOFF))
    got = suspect_cut(scores, "softmin")
    assert (math.isnan(got) and math.isnan(want)) or got == pytest.approx(want, rel=1e-6)
    mask = default_suspect_mask(scores, "softmin").tolist()
    for v, m in zip(values, mask, strict=True):
        if math.isnan(want):
            assert not m
        elif abs(v - want) > 1e-6 * want:  # values on the cut itself may round either way
            assert m == (v < want)


@settings(max_examples=40, deadline=None)
@given(st.lists(positive, min_size=MIN_IMAGES, max_size=60), st.floats(min_value=0.01, max_value=1.0))
def test_relative_to_the_distribution(values: list[float], factor: float) -> None:
    """Scaling every score by a constant (a different image size, another model's level) changes nothing."""
    scores = torch.tensor(values, dtype=torch.float64)
    cut = suspect_cut(scores)
    scaled = scores * factor
    if not math.isnan(cut):  # keep away from values that sit on the cut (rounding)
        gap = (scores.log() - math.log(cut)).abs().min()
        if gap < 1e-9:
            return
    assert torch.equal(default_suspect_mask(scores), default_suspect_mask(scaled))


@settings(max_examples=40, deadline=None)
@given(st.lists(positive, min_size=1, max_size=60))
def test_flags_a_lower_set(values: list[float]) -> None:
    """Any image scoring below a suspect is a suspect too."""
    scores = torch.tensor(values)
    mask = default_suspect_mask(scores)
    if mask.any():
        assert bool((scores[~mask] >= scores[mask].max()).all())


def test_clean_distribution_flags_few_and_outliers_are_found() -> None:
    g = torch.Generator().manual_seed(0)
    clean = torch.exp(-0.5 + 0.3 * torch.randn(4000, generator=g, dtype=torch.float64))
    normal_tail = 0.5 * math.erfc(DEFAULT_CUTOFF / math.sqrt(2))  # P(Z < -cutoff): 0.6 % at 2.5
    assert float(default_suspect_mask(clean).double().mean()) == pytest.approx(normal_tail, abs=0.004)
    noisy = clean.clone()
    noisy[:400] *= 1e-3  # 10 % of images with a wrongly labelled region
    mask = default_suspect_mask(noisy)
    assert bool(mask[:400].all()) and float(mask[400:].double().mean()) < 2 * normal_tail


def test_a_separate_low_group_is_found_where_outliers_hide_each_other() -> None:
    """Many errors widen the spread: the outlier cut alone flags a few; the low group finds them all."""
    g = torch.Generator().manual_seed(0)
    bulk = -2.7 + 0.25 * torch.randn(102, generator=g, dtype=torch.float64)
    group = -3.6 + 0.15 * torch.randn(18, generator=g, dtype=torch.float64)
    scores = torch.cat([bulk, group]).exp()
    median, scale = robust_log_location_scale(scores)
    outliers = scores < math.exp(median - DEFAULT_CUTOFF * scale)
    mask = default_suspect_mask(scores)
    assert int(outliers[102:].sum()) < 12 and bool(mask[102:].all()) and int(mask[:102].sum()) <= 2
    assert suspect_cut(scores) == pytest.approx(reference_cut(scores.tolist(), DEFAULT_CUTOFF), rel=1e-6)


def test_two_close_clean_modes_are_not_split() -> None:
    """Clean images of two kinds (two modes a few of their own SDs apart, within 2 robust SDs): no suspects."""
    g = torch.Generator().manual_seed(3)
    logs = torch.cat([-2.66 + 0.045 * torch.randn(64, generator=g), -2.80 + 0.045 * torch.randn(37, generator=g)])
    assert not bool(default_suspect_mask(logs.double().exp()).any())


def test_fixed_threshold_would_flag_everything_but_the_rule_does_not() -> None:
    """The failure of "softmin below 0.1": large images push every score under it."""
    g = torch.Generator().manual_seed(1)
    scores = torch.exp(-4.0 + 0.4 * torch.randn(200, generator=g))  # all around 0.02
    assert float((scores < 0.1).double().mean()) == 1.0
    assert default_suspect_mask(scores).double().mean() < 0.05


def test_nan_is_never_a_suspect_and_is_left_out() -> None:
    base = torch.linspace(0.4, 0.6, 20)
    with_nan = torch.cat([base, torch.tensor([float("nan")] * 5), torch.tensor([1e-6])])
    mask = default_suspect_mask(with_nan)
    assert not bool(mask[20:25].any()) and bool(mask[-1])
    assert suspect_cut(with_nan) == pytest.approx(suspect_cut(torch.cat([base, torch.tensor([1e-6])])))


def test_too_few_images_gives_no_suspect() -> None:
    scores = torch.tensor([0.5] * (MIN_IMAGES - 2) + [1e-9])
    assert math.isnan(suspect_cut(scores))
    assert not bool(default_suspect_mask(scores).any())
    assert default_suspect_mask(torch.zeros(0)).shape == (0,)


def test_ties_fall_back_to_the_mean_deviation() -> None:
    """More than half the scores equal (MAD 0): the spread comes from the mean absolute deviation."""
    scores = torch.tensor([1.0] * 12 + [0.9, 0.001], dtype=torch.float64)
    median, scale = robust_log_location_scale(scores)
    logs = scores.log()
    assert median == 0.0 and scale == pytest.approx(float(logs.abs().mean()) * math.sqrt(math.pi / 2))
    assert default_suspect_mask(scores).tolist() == [False] * 13 + [True]
    assert not bool(default_suspect_mask(torch.ones(20)).any())  # all equal: nobody stands out


def test_zero_scores_are_suspects() -> None:
    scores = torch.tensor([0.3, 0.31, 0.29, 0.32, 0.28, 0.3, 0.33, 0.27, 0.3, 0.31, 0.0])
    assert default_suspect_mask(scores).tolist() == [False] * 10 + [True]


def test_runs_on_the_scores_device_and_keeps_the_shape() -> None:
    scores = torch.rand(30, dtype=torch.float16).float()
    mask = default_suspect_mask(scores, "iou")
    assert mask.dtype == torch.bool and mask.shape == (30,) and mask.device == scores.device


@pytest.mark.parametrize(
    ("scores", "kwargs", "error", "match"),
    [
        ([0.1, 0.2], {}, TypeError, "torch.Tensor"),
        (torch.ones(2, 3), {}, ValueError, "1-D"),
        (torch.ones(4, dtype=torch.long), {}, TypeError, "floating-point"),
        (torch.ones(4), {"method": 3}, TypeError, "method name"),
        (torch.ones(4), {"cutoff": 0}, ValueError, "positive"),
        (torch.ones(4), {"cutoff": float("nan")}, ValueError, "positive"),
    ],
)
def test_bad_input_is_named(scores: object, kwargs: dict, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        suspect_cut(scores, **kwargs)  # type: ignore[arg-type]
    if "cutoff" not in kwargs:
        with pytest.raises(error, match=match):
            default_suspect_mask(scores, **kwargs)  # type: ignore[arg-type]


def test_a_large_report_fits_the_low_group_on_quantiles() -> None:
    """Above 4096 images the fit runs on 4096 quantiles: the same group, in bounded time."""
    g = torch.Generator().manual_seed(5)
    bulk = -2.7 + 0.25 * torch.randn(17000, generator=g, dtype=torch.float64)
    group = -3.6 + 0.15 * torch.randn(3000, generator=g, dtype=torch.float64)
    mask = default_suspect_mask(torch.cat([bulk, group]).exp())
    assert float(mask[17000:].double().mean()) > 0.95 and float(mask[:17000].double().mean()) < 0.01
