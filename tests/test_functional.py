"""Functional scores against independent references: cleanlab, scipy and brute-force loops."""

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import ndimage

from lightning_segqa import functional as F
from lightning_segqa.functional._inputs import prepare_inputs
from lightning_segqa.functional.pooling import downsample

cleanlab_filter = pytest.importorskip("cleanlab.segmentation.filter")
cleanlab_rank = pytest.importorskip("cleanlab.segmentation.rank")


def random_case(seed, n=4, k=5, h=12, w=10, agree=0.7, scale=3.0):
    g = torch.Generator().manual_seed(seed)
    probs = (torch.randn(n, k, h, w, generator=g) * scale).softmax(1)
    noise = torch.randint(0, k, (n, h, w), generator=g)
    target = torch.where(torch.rand(n, h, w, generator=g) < agree, probs.argmax(1), noise)
    return probs, target


def structured_case(seed, n=5, k=4, h=16, w=16, wrong_rate=0.15):
    """Blocky masks with smooth, confident predictions and some wrong blocks."""
    g = torch.Generator().manual_seed(seed)
    target = torch.randint(0, k, (n, 1, h // 4, w // 4), generator=g).float()
    target = torch.nn.functional.interpolate(target, scale_factor=4).long()[:, 0]
    logits = torch.nn.functional.one_hot(target, k).permute(0, 3, 1, 2).float() * 4
    logits = logits + torch.randn(n, k, h, w, generator=g)
    wrong = torch.rand(n, h // 4, w // 4, generator=g) < wrong_rate
    wrong = wrong.repeat_interleave(4, 1).repeat_interleave(4, 2)
    given = torch.where(wrong, (target + 1) % k, target)
    return logits.softmax(1), given


CASES = [random_case(s) for s in range(4)] + [structured_case(s) for s in range(4)]


# ---------------------------------------------------------------- brute-force references
def s_map(probs, target):
    n, k, h, w = probs.shape
    out = np.zeros((n, h, w))
    for b in range(n):
        for i in range(h):
            for j in range(w):
                out[b, i, j] = probs[b, target[b, i, j], i, j]
    return out


def brute_iou(pred, target, k):
    vals = []
    for c in range(k):
        inter = np.sum((pred == c) & (target == c))
        union = np.sum((pred == c) | (target == c))
        if union:
            vals.append(inter / union)
    return np.mean(vals)


def brute_tccp(probs, target, grid):
    n, k = probs.shape[:2]
    best = []
    for c in range(k):
        accs = [np.sum((probs[:, c] > t) == (target == c)) for t in grid]
        best.append(grid[int(np.argmax(accs))])
    return np.array(
        [np.mean([np.mean((probs[b, c] > best[c]) == (target[b] == c)) for c in range(k)]) for b in range(n)]
    )


def brute_coco(probs, target):
    n, k = probs.shape[:2]
    out = []
    pred = probs.argmax(1)
    for b in range(n):
        s = s_map(probs[b : b + 1], target[b : b + 1])[0]
        per_class = {}
        for pc in range(k):
            for lc in range(k):
                comp, num = ndimage.label((pred[b] == pc) & (target[b] == lc))
                for c in range(1, num + 1):
                    per_class.setdefault(lc, []).append(s[comp == c].mean())
        out.append(np.mean([np.mean(v) for v in per_class.values()]))
    return np.array(out)


# ---------------------------------------------------------------- conformance
@pytest.mark.parametrize("case", range(len(CASES)))
def test_softmin_matches_cleanlab(case, code_path):
    probs, target = CASES[case]
    ref, ref_pixels = cleanlab_rank.get_label_quality_scores(
        target.numpy(), probs.numpy(), method="softmin", verbose=False
    )
    ours = F.softmin(probs, target)
    np.testing.assert_allclose(ours.numpy(), ref, atol=1e-6, rtol=0)
    np.testing.assert_allclose(F.pixel_label_scores(probs, target).numpy(), ref_pixels, atol=1e-7)


@pytest.mark.parametrize("case", range(len(CASES)))
def test_confident_learning_flags_match_cleanlab(case, code_path):
    probs, target = CASES[case]
    ref = cleanlab_filter.find_label_issues(target.numpy(), probs.numpy(), downsample=1, n_jobs=1, verbose=False)
    ours = F.find_label_issues(probs, target, downsample=1).numpy()
    assert ref.sum() > 0
    np.testing.assert_array_equal(ours, ref)
    clc = F.confident_learning_counts(probs, target, downsample=1)
    np.testing.assert_allclose(clc.numpy(), 1 - ref.mean(axis=(1, 2)), atol=1e-6)


@pytest.mark.parametrize("case", range(len(CASES)))
def test_local_scores_match_brute_force(case, code_path):
    probs, target = CASES[case]
    s = s_map(probs.numpy(), target.numpy())
    pred = probs.argmax(1).numpy()
    t = target.numpy()
    np.testing.assert_allclose(F.confidence_in_label(probs, target).numpy(), s.mean((1, 2)), atol=1e-6)
    np.testing.assert_allclose(
        F.correctly_classified_pixels(probs, target).numpy(), (pred == t).mean((1, 2)), atol=1e-6
    )
    ref_iou = [brute_iou(pred[b], t[b], probs.shape[1]) for b in range(len(t))]
    np.testing.assert_allclose(F.iou(probs, target).numpy(), ref_iou, atol=1e-6)
    weights = np.exp((1 - s) / 0.1)
    ref_sm = (s * weights).sum((1, 2)) / weights.sum((1, 2))
    np.testing.assert_allclose(F.softmin(probs, target).numpy(), ref_sm, atol=1e-6)


@pytest.mark.parametrize("case", range(len(CASES)))
def test_tccp_and_coco_match_brute_force(case):
    probs, target = CASES[case]
    grid = np.arange(10) / 10
    ours = F.thresholded_ccp(probs, target, thresholds=10)
    np.testing.assert_allclose(ours.numpy(), brute_tccp(probs.numpy(), target.numpy(), grid), atol=1e-6)
    coco = F.connected_components(probs, target, downsample=1)
    np.testing.assert_allclose(coco.numpy(), brute_coco(probs.numpy(), target.numpy()), atol=1e-6)


def test_downsample_majority_vote_and_mean():
    probs, target = random_case(7, n=2, k=4, h=8, w=8)
    small = downsample(prepare_inputs(probs, target), 4)
    for b in range(2):
        for i in range(2):
            for j in range(2):
                block = target[b, 4 * i : 4 * i + 4, 4 * j : 4 * j + 4].flatten()
                counts = torch.bincount(block, minlength=4)
                assert small.target[b, i, j] == int(torch.argmax(counts))
                mean = probs[b, :, 4 * i : 4 * i + 4, 4 * j : 4 * j + 4].mean((1, 2))
                torch.testing.assert_close(small.probs[b, :, i, j], mean / mean.sum())


def test_downsample_pads_and_ignores():
    probs, target = random_case(8, n=1, k=3, h=5, w=6)
    target[0, 0, :] = 255
    small = downsample(prepare_inputs(probs, target, ignore_index=255), 4)
    assert small.target.shape == (1, 2, 2)
    assert small.valid.all()  # every block keeps at least one valid pixel
    block_probs = probs[0, :, 1:4, 0:4].mean((1, 2))
    torch.testing.assert_close(small.probs[0, :, 0, 0], block_probs / block_probs.sum())


# ---------------------------------------------------------------- input handling
def test_logits_and_probs_agree_and_half_precision():
    probs, target = random_case(1)
    logits = probs.log()
    torch.testing.assert_close(F.softmin(logits, target), F.softmin(probs, target))
    torch.testing.assert_close(
        F.softmin(logits, target, input_format="logits"), F.softmin(probs, target), atol=1e-6, rtol=0
    )
    half = F.softmin(probs.half(), target)
    assert half.dtype == torch.float32
    torch.testing.assert_close(half, F.softmin(probs, target), atol=2e-3, rtol=0)


def test_non_contiguous_inputs():
    probs, target = random_case(4)
    channels_last = probs.permute(0, 2, 3, 1).contiguous().permute(0, 3, 1, 2)
    assert not channels_last.is_contiguous()
    for fn in (F.softmin, F.iou, F.thresholded_ccp, F.confident_learning_counts, F.connected_components):
        torch.testing.assert_close(fn(channels_last, target), fn(probs, target))


def test_ignore_index_excludes_pixels(code_path):
    probs, target = random_case(2)
    masked = target.clone()
    masked[:, :, :5] = 255
    for fn in (F.softmin, F.confidence_in_label, F.correctly_classified_pixels, F.iou):
        ours = fn(probs, masked, ignore_index=255)
        ref = fn(probs[..., 5:].contiguous(), target[..., 5:].contiguous())
        torch.testing.assert_close(ours, ref)
    empty = target.clone()
    empty[0] = 255
    assert torch.isnan(F.softmin(probs, empty, ignore_index=255)[0])


def test_volumes_are_supported():
    g = torch.Generator().manual_seed(3)
    probs = torch.randn(2, 3, 4, 6, 6, generator=g).softmax(1)
    target = probs.argmax(1)
    target[0, 0] = (target[0, 0] + 1) % 3
    sm = F.softmin(probs, target)
    assert sm[0] < sm[1]
    assert F.connected_components(probs, target, downsample=2).shape == (2,)
    assert F.find_label_issues(probs, target).shape == target.shape


@pytest.mark.parametrize(
    ("preds", "target", "kwargs", "error", "match"),
    [
        (torch.rand(2, 3, 4, 4), torch.zeros(2, 4, 5, dtype=torch.long), {}, ValueError, "target"),
        (torch.rand(2, 3, 4, 4), torch.zeros(2, 4, 4), {}, TypeError, "integer"),
        (torch.rand(2, 3, 4, 4).softmax(1), torch.full((2, 4, 4), 3), {}, ValueError, "class id 3"),
        (torch.full((1, 2, 2, 2), float("nan")), torch.zeros(1, 2, 2, dtype=torch.long), {}, ValueError, "NaN"),
        (
            torch.full((1, 2, 2, 2), -0.5),
            torch.zeros(1, 2, 2, dtype=torch.long),
            {"input_format": "probs"},
            ValueError,
            "probabilities",
        ),
        (torch.rand(2, 4), torch.zeros(2, dtype=torch.long), {}, ValueError, "spatial"),
        (torch.rand(1, 2, 2, 2), torch.zeros(1, 2, 2, dtype=torch.long, device="meta"), {}, ValueError, "device"),
        (
            torch.rand(1, 2, 2, 2),
            torch.zeros(1, 2, 2, dtype=torch.long),
            {"input_format": "soft"},
            ValueError,
            "input_format",
        ),
    ],
)
def test_bad_input_messages(preds, target, kwargs, error, match):
    with pytest.raises(error, match=match):
        F.softmin(preds, target, **kwargs)


# ---------------------------------------------------------------- properties
@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    k=st.integers(2, 6),
    temperature=st.floats(0.01, 2.0),
)
def test_softmin_between_min_and_mean(seed, k, temperature):
    probs, target = random_case(seed, n=3, k=k, h=5, w=7)
    s = F.pixel_label_scores(probs, target).flatten(1)
    sm = F.softmin(probs, target, temperature=temperature)
    assert torch.all(sm >= s.min(1).values - 1e-6)
    assert torch.all(sm <= s.mean(1) + 1e-6)


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    n=st.sampled_from([1, 7, 70_000, 200_003]),
    double=st.booleans(),
    distinct=st.sampled_from([3, 1000, None]),
    q=st.floats(0.0, 1.0),
    nan=st.booleans(),
)
def test_kth_smallest_equals_kthvalue(seed, n, double, distinct, q, nan):
    from lightning_segqa.functional.selection import kth_smallest

    g = torch.Generator().manual_seed(seed)
    values = torch.rand(n, generator=g, dtype=torch.float64 if double else torch.float32) ** 4  # dense near 0
    if distinct is not None:  # many ties
        values = (values * distinct).floor() / distinct
    values[: n // 10] = torch.tensor([0.0, -0.0, 1e-40, -0.25], dtype=values.dtype).repeat(n)[: n // 10]
    if nan:  # NaN with and without the sign bit (0/0 sets it on x86): kthvalue sorts both last
        values[n // 3 :: 7] = -torch.tensor(float("nan"), dtype=values.dtype)
        values[n // 2 :: 11] = torch.tensor(float("nan"), dtype=values.dtype)
    k = 1 + int(q * (n - 1))
    ours, ref = kth_smallest(values, k).item(), torch.kthvalue(values, k).values.item()
    assert ours == ref or (math.isnan(ours) and math.isnan(ref))


def test_kth_smallest_rejects_bad_k():
    from lightning_segqa.functional.selection import kth_smallest

    with pytest.raises(ValueError, match=r"`k` must lie in \[1, 3\].*got k=4"):
        kth_smallest(torch.tensor([0.1, 0.2, 0.3]), 4)


def test_images_without_pixels_score_nan(code_path):
    probs, target = torch.rand(2, 3, 0, 4), torch.zeros(2, 0, 4, dtype=torch.long)
    for fn in (F.softmin, F.confidence_in_label, F.correctly_classified_pixels, F.iou):
        assert torch.isnan(fn(probs, target)).all(), fn.__name__


def test_scores_stay_differentiable(code_path):
    """Softmin and CIL of logits that require grad give gradients, on small- and large-batch paths."""
    g = torch.Generator().manual_seed(3)
    logits = torch.randn(3, 4, 8, 8, generator=g, requires_grad=True)
    target = torch.randint(0, 4, (3, 8, 8), generator=g)
    masked = target.clone()
    masked[0, :2] = 255
    for fn in (F.softmin, F.confidence_in_label):
        score = fn(logits, masked, input_format="logits", ignore_index=255)
        (grad,) = torch.autograd.grad(score.sum(), logits)
        expected = fn(logits.detach(), masked, input_format="logits", ignore_index=255)
        torch.testing.assert_close(score.detach(), expected)
        assert grad.abs().sum() > 0 and torch.isfinite(grad).all()
        assert (grad[0, :, :2] == 0).all()  # ignored pixels get no gradient


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_probabilities_are_recognised(dtype):
    """Softmax outputs stored in half precision sum to 1 only within their rounding: still probabilities."""
    probs, target = random_case(5, n=3, k=19, h=16, w=16)
    half = probs.to(dtype)
    assert (half.float().sum(1) - 1).abs().max() > 1e-3 or dtype == torch.float16  # bfloat16 is off by more
    expected = F.softmin(half.float(), target, input_format="probs", validate_args=False)
    for fmt in ("auto", "probs"):
        torch.testing.assert_close(F.softmin(half, target, input_format=fmt), expected)


def test_float64_cutoff_keeps_float64_precision():
    """The confident-learning cutoff is compared in the dtype of s: float64 inputs flag as cleanlab does."""
    s = 0.30000001192092896 + 1e-12  # just above a float32 value: rounding the cutoff would unflag it
    probs64 = torch.tensor([[s, 0.9, 0.9], [1 - s, 0.1, 0.1]], dtype=torch.float64).view(1, 2, 1, 3)
    target = torch.zeros(1, 1, 3, dtype=torch.long)
    ref = cleanlab_filter.find_label_issues(target.numpy(), probs64.numpy(), downsample=1, n_jobs=1, verbose=False)
    assert ref.sum() == 1
    np.testing.assert_array_equal(F.find_label_issues(probs64, target, downsample=1).numpy(), ref)
    random_probs, random_target = random_case(7, n=3, k=4, h=10, w=10)
    ref = cleanlab_filter.find_label_issues(
        random_target.numpy(), random_probs.double().numpy(), downsample=1, n_jobs=1, verbose=False
    )
    np.testing.assert_array_equal(F.find_label_issues(random_probs.double(), random_target, downsample=1).numpy(), ref)


@settings(max_examples=40, deadline=None)
@given(
    st.integers(0, 2**16),
    st.integers(1, 9),
    st.integers(1, 9),
    st.sampled_from([2, 3, 4]),
    st.integers(2, 5),
    st.booleans(),
)
def test_downsample_labels_equal_a_brute_force_vote(seed, h, w, factor, k, ignore):
    """Every block's label is its most frequent valid label (ties: the lowest id), padding and ignored pixels aside."""
    g = torch.Generator().manual_seed(seed)
    probs = torch.rand(2, k, h, w, generator=g).softmax(1)
    target = torch.randint(0, k, (2, h, w), generator=g)
    if ignore:
        target[torch.rand(2, h, w, generator=g) < 0.3] = 255
    small = downsample(prepare_inputs(probs, target, ignore_index=255 if ignore else None), factor)
    for b in range(2):
        for i in range(-(-h // factor)):
            for j in range(-(-w // factor)):
                block = target[b, i * factor : (i + 1) * factor, j * factor : (j + 1) * factor].flatten()
                block = block[block != 255]
                assert bool(small.valid[b, i, j]) == (block.numel() > 0)
                if block.numel():
                    assert int(small.target[b, i, j]) == int(torch.bincount(block, minlength=k).argmax())
