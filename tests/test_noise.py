"""Tests for lightning_segqa.noise: error semantics, counts, determinism, OpenCV parity."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from lightning_segqa.noise import (
    PAPER_FRACTIONS,
    default_min_changed_pixels,
    dilate,
    erode,
    inject_label_errors,
    structuring_element,
)

UNL, IGN = 5, 255
CV_SHAPES = {"rect": cv2.MORPH_RECT, "ellipse": cv2.MORPH_ELLIPSE, "cross": cv2.MORPH_CROSS}


def random_masks(n: int, h: int = 40, w: int = 48, seed: int = 0, ignore: bool = False) -> torch.Tensor:
    """Numpy-painted masks: class 0 with rectangles/discs of 1..4 and unlabeled 5 (+ ignore)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:h, :w]
    out = np.zeros((n, h, w), dtype=np.int64)
    for i in range(n):
        for _ in range(6):
            c = rng.integers(1, 6)
            y0, x0 = rng.integers(0, h - 6), rng.integers(0, w - 6)
            if rng.random() < 0.5:
                out[i, y0 : y0 + rng.integers(5, 20), x0 : x0 + rng.integers(5, 20)] = c
            else:
                out[i][(yy - y0) ** 2 + (xx - x0) ** 2 < rng.integers(9, 100)] = c
        if ignore:
            y0, x0 = rng.integers(0, h - 8), rng.integers(0, w - 8)
            out[i, y0 : y0 + 8, x0 : x0 + 8] = IGN
    return torch.from_numpy(out)


def cv_band(region: np.ndarray, size: int = 11) -> np.ndarray:
    """Pixels within a size x size square of the region's edge (OpenCV reference)."""
    k = np.ones((size, size), np.uint8)
    r = region.astype(np.uint8)
    return (cv2.dilate(r, k) > 0) & ~(cv2.erode(r, k) > 0)


@pytest.fixture(scope="module")
def clean() -> torch.Tensor:
    return random_masks(30)


# ---------------------------------------------------------------- error semantics


def test_drop_changes_exactly_one_class_to_unlabeled(clean: torch.Tensor) -> None:
    noisy, flags = inject_label_errors(clean, "drop", 0.5, seed=1, unlabeled_index=UNL)
    assert int(flags.sum()) == 15
    assert torch.equal(noisy[~flags], clean[~flags])
    for c, nz in zip(clean[flags], noisy[flags], strict=True):
        diff = c != nz
        dropped = torch.unique(c[diff])
        assert len(dropped) == 1 and int(dropped) != UNL
        assert torch.equal(diff, c == dropped)  # all pixels of that class, nothing else
        assert bool((nz[diff] == UNL).all())
        assert int(diff.sum()) >= default_min_changed_pixels(c.numel())


def test_swap_exchanges_exactly_two_classes(clean: torch.Tensor) -> None:
    noisy, flags = inject_label_errors(clean, "swap", 0.3, seed=2, unlabeled_index=UNL)
    assert int(flags.sum()) == 9
    assert torch.equal(noisy[~flags], clean[~flags])
    for c, nz in zip(clean[flags], noisy[flags], strict=True):
        diff = c != nz
        a, b = torch.unique(c[diff]).tolist()
        assert UNL not in (a, b)
        assert torch.equal(diff, (c == a) | (c == b))
        assert bool((nz[c == a] == b).all()) and bool((nz[c == b] == a).all())


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_shift_changes_one_class_along_its_edge(clean: torch.Tensor, seed: int) -> None:
    noisy, flags = inject_label_errors(clean, "shift", 0.5, seed=seed, unlabeled_index=UNL)
    assert int(flags.sum()) == 15
    assert torch.equal(noisy[~flags], clean[~flags])
    kinds = set()
    for c, nz in zip(clean[flags].numpy(), noisy[flags].numpy(), strict=True):
        diff = c != nz
        assert diff.sum() >= default_min_changed_pixels(c.size)
        new, old = np.unique(nz[diff]), np.unique(c[diff])
        # dilation: every changed pixel became one class; erosion: every one stopped being one.
        hypotheses = [("dilate", new[0])] if len(new) == 1 and new[0] not in old else []
        hypotheses += [("erode", old[0])] if len(old) == 1 and old[0] not in new else []
        valid = []
        for kind, cls in hypotheses:
            in_band = not (diff & ~cv_band(c == cls)).any()  # within 11x11 of the class edge
            near = cv2.dilate((c == cls).astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
            fills_ok = kind == "dilate" or set(new) <= set(np.unique(c[near & (c != cls)]))
            if cls != UNL and in_band and fills_ok:
                valid.append(kind)
        assert valid, (new, old)
        if len(hypotheses) == 1:
            kinds.add(valid[0])
    assert kinds == {"dilate", "erode"}


@pytest.mark.parametrize("kind", ["drop", "swap", "shift"])
def test_ignore_pixels_never_change(kind: str) -> None:
    masks = random_masks(20, ignore=True, seed=3)
    noisy, flags = inject_label_errors(masks, kind, 1.0, 0, unlabeled_index=UNL, ignore_index=IGN)
    assert bool(flags.all())
    ignore = masks == IGN
    assert torch.equal(noisy[ignore], masks[ignore])
    assert not bool((noisy[~ignore] == IGN).any())  # nothing becomes ignore either


def test_shift_never_moves_edges_shared_with_ignore() -> None:
    mask = torch.zeros(1, 40, 40, dtype=torch.long)
    mask[0, 2:38, 10:30] = 1
    mask[0, :, 30:] = IGN  # class 1 touches ignore on its right edge
    changed = torch.zeros(40, 40, dtype=torch.bool)
    for seed in range(16):
        noisy, _ = inject_label_errors(mask, "shift", 1.0, seed, UNL, IGN, min_changed_pixels=1)
        changed |= noisy[0] != mask[0]
    assert bool(changed.any())
    assert not bool(changed[:, 30:].any())  # ignore pixels
    assert not bool(changed[8:32, 16:30].any())  # > 5 px from any non-ignore edge of class 1
    only_ignore = torch.full((2, 10, 10), IGN)
    only_ignore[:, 2:8, :] = 1  # class 1 bordered by ignore and the image border only
    with pytest.raises(ValueError, match="shift"):
        inject_label_errors(only_ignore, "shift", 0.5, 0, UNL, IGN, min_changed_pixels=1)


def test_input_not_modified_and_dtype_kept(clean: torch.Tensor) -> None:
    masks = clean.to(torch.uint8)
    before = masks.clone()
    for kind in ("drop", "swap", "shift"):
        noisy, flags = inject_label_errors(masks, kind, 0.2, 0, unlabeled_index=UNL)
        assert noisy.dtype == torch.uint8 and noisy.shape == masks.shape
        assert flags.dtype == torch.bool and flags.shape == (30,)
        assert noisy.data_ptr() != masks.data_ptr()
    assert torch.equal(masks, before)


def test_volumes_for_drop_and_swap() -> None:
    vol = random_masks(12, seed=5).view(6, 2, 40, 48)
    noisy, flags = inject_label_errors(vol, "drop", 0.5, 0, unlabeled_index=UNL)
    assert noisy.shape == vol.shape and int(flags.sum()) == 3
    for c, nz in zip(vol[flags], noisy[flags], strict=True):
        cls = torch.unique(c[c != nz])
        assert len(cls) == 1 and torch.equal(c != nz, c == cls)
    with pytest.raises(ValueError, match="shift"):
        inject_label_errors(vol, "shift", 0.5, 0, unlabeled_index=UNL)


# ---------------------------------------------------------------- counts and determinism


@pytest.mark.parametrize("fraction", [0.0, 0.1, 0.25, 0.5, 0.7, 1.0])
@pytest.mark.parametrize("kind", ["drop", "swap"])
def test_exact_count(clean: torch.Tensor, kind: str, fraction: float) -> None:
    _, flags = inject_label_errors(clean, kind, fraction, 7, unlabeled_index=UNL)
    assert int(flags.sum()) == round(fraction * 30)


def test_paper_fractions_and_count() -> None:
    assert PAPER_FRACTIONS == {"drop": 0.2, "swap": 0.3, "shift": 0.2}
    masks = random_masks(50, 24, 24, seed=9)
    for kind, fraction in PAPER_FRACTIONS.items():
        _, flags = inject_label_errors(masks, kind, fraction, 0, unlabeled_index=UNL)
        assert int(flags.sum()) == round(fraction * 50)


@pytest.mark.parametrize("kind", ["drop", "swap", "shift"])
def test_deterministic_by_seed(clean: torch.Tensor, kind: str) -> None:
    a = inject_label_errors(clean, kind, 0.3, 11, unlabeled_index=UNL)
    b = inject_label_errors(clean, kind, 0.3, 11, unlabeled_index=UNL)
    c = inject_label_errors(clean, kind, 0.3, 12, unlabeled_index=UNL)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[1], c[1])


def test_ineligible_images_are_skipped() -> None:
    masks = torch.full((6, 10, 10), UNL)  # all unlabeled: nothing to drop
    masks[:3, :5] = 2  # 50 px of class 2 in the first three images
    masks[3, 0, :3] = 2  # only 3 px: too few for min_changed_pixels=10
    _, flags = inject_label_errors(masks, "drop", 0.5, 0, unlabeled_index=UNL)
    assert flags.tolist() == [True, True, True, False, False, False]
    with pytest.raises(ValueError, match=r"only 3 of 6 masks can take a 'drop' error"):
        inject_label_errors(masks, "drop", 4 / 6, 0, unlabeled_index=UNL)
    _, flags = inject_label_errors(masks, "drop", 4 / 6, 0, UNL, min_changed_pixels=3)
    assert flags.tolist() == [True, True, True, True, False, False]
    with pytest.raises(ValueError, match="swap"):  # swap needs two object classes
        inject_label_errors(masks, "swap", 0.2, 0, unlabeled_index=UNL)


def test_default_min_changed_pixels() -> None:
    assert default_min_changed_pixels(100) == 10
    assert default_min_changed_pixels(192 * 256) == 50
    assert default_min_changed_pixels(20_001) == 21


# ---------------------------------------------------------------- morphology vs OpenCV


@pytest.mark.parametrize("shape", ["rect", "ellipse", "cross"])
def test_structuring_element_matches_opencv(shape: str) -> None:
    for h in range(1, 14):
        for w in range(1, 14):
            ref = cv2.getStructuringElement(CV_SHAPES[shape], (w, h)) > 0
            assert np.array_equal(structuring_element(shape, (h, w)).numpy(), ref), (h, w)


@settings(max_examples=30, deadline=None, derandomize=True)
@given(
    h=st.integers(1, 24),
    w=st.integers(1, 24),
    density=st.floats(0.05, 0.95),
    shape=st.sampled_from(["rect", "ellipse", "cross", "random"]),
    kh=st.integers(1, 9),
    kw=st.integers(1, 9),
    seed=st.integers(0, 2**31),
)
def test_morphology_matches_opencv(h: int, w: int, density: float, shape: str, kh: int, kw: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    mask = rng.random((h, w)) < density
    if shape == "random":
        kernel = (rng.random((kh, kw)) < 0.6).astype(np.uint8)
        kernel[kh // 2, kw // 2] = 1
    else:
        kernel = cv2.getStructuringElement(CV_SHAPES[shape], (kw, kh))
    m, k = torch.from_numpy(mask), torch.from_numpy(kernel)
    ref_d = cv2.dilate(mask.astype(np.uint8), kernel) > 0
    ref_e = cv2.erode(mask.astype(np.uint8), kernel) > 0
    assert np.array_equal(dilate(m, k).numpy(), ref_d)
    assert np.array_equal(erode(m, k).numpy(), ref_e)
    batch = torch.stack([m, ~m])
    assert torch.equal(dilate(batch, k)[1], dilate(~m, k))


def test_border_does_not_contribute() -> None:
    full = torch.ones(6, 6, dtype=torch.bool)
    assert bool(erode(full, structuring_element("rect", 5)).all())  # border does not erode
    empty = torch.zeros(6, 6, dtype=torch.bool)
    assert not bool(dilate(empty, structuring_element("rect", 5)).any())


# ---------------------------------------------------------------- bad arguments


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"fraction": -0.1}, ValueError, "fraction"),
        ({"fraction": 1.5}, ValueError, "fraction"),
        ({"fraction": float("nan")}, ValueError, "fraction"),
        ({"fraction": "0.2"}, TypeError, "fraction"),
        ({"kind": "flip"}, ValueError, "kind"),
        ({"masks": torch.zeros(2, 4, 4)}, TypeError, "integer"),
        ({"masks": torch.zeros(2, 4, 4, dtype=torch.bool)}, TypeError, "integer"),
        ({"masks": np.zeros((2, 4, 4), dtype=np.int64)}, TypeError, "torch.Tensor"),
        ({"masks": torch.zeros(4, 4, dtype=torch.long)}, ValueError, r"\(N, H, W\)"),
        ({"seed": 1.0}, TypeError, "seed"),
        ({"unlabeled_index": 1.0}, TypeError, "unlabeled_index"),
        ({"ignore_index": UNL}, ValueError, "ignore_index"),
        ({"min_changed_pixels": 0}, ValueError, "min_changed_pixels"),
        ({"masks": torch.zeros(2, 4, 4, dtype=torch.uint8), "unlabeled_index": 300}, ValueError,
         "dtype"),
    ],
)  # fmt: skip
def test_bad_arguments(kwargs: dict, error: type, match: str) -> None:
    args = {"masks": torch.zeros(2, 4, 4, dtype=torch.long), "kind": "drop", "fraction": 0.5,
            "seed": 0, "unlabeled_index": UNL}  # fmt: skip
    with pytest.raises(error, match=match):
        inject_label_errors(**{**args, **kwargs})


def test_bad_morphology_arguments() -> None:
    with pytest.raises(ValueError, match="shape"):
        structuring_element("disk", 3)
    with pytest.raises(ValueError, match="size"):
        structuring_element("rect", 0)
    with pytest.raises(TypeError, match="bool tensor"):
        dilate(torch.zeros(4, 4), structuring_element("rect", 3))
    with pytest.raises(ValueError, match="kernel"):
        erode(torch.zeros(4, 4, dtype=torch.bool), torch.zeros(3, 3))
