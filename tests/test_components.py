"""Tests for lightning_segqa.functional.components against scipy.ndimage.label."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy import ndimage

from lightning_segqa.functional.components import label_connected_components

# ----------------------------------------------------------------------------- helpers


def scipy_components(
    labels: np.ndarray, connectivity: int, valid: np.ndarray | None = None
) -> tuple[np.ndarray, list[int]]:
    """Reference: scipy.ndimage.label per image and per label value; -1 outside ``valid``."""
    out = np.full(labels.shape, -1, dtype=np.int64)
    nums = []
    structure = ndimage.generate_binary_structure(labels.ndim - 1, connectivity)
    for b in range(labels.shape[0]):
        n = 0
        for value in np.unique(labels[b]):
            mask = labels[b] == value
            if valid is not None:
                mask &= valid[b]
            comp, k = ndimage.label(mask, structure=structure)
            out[b][mask] = comp[mask] - 1 + n
            n += k
        nums.append(n)
    return out, nums


def canonical(ids: np.ndarray) -> np.ndarray:
    """Renumber each image's components 0.. by first appearance in raster order (-1 kept)."""
    out = np.full(ids.shape, -1, dtype=np.int64)
    for b in range(ids.shape[0]):
        flat = ids[b].reshape(-1)
        keep = flat >= 0
        if not keep.any():
            continue
        uniq, first, inverse = np.unique(flat[keep], return_index=True, return_inverse=True)
        rank = np.empty(len(uniq), dtype=np.int64)
        rank[np.argsort(first)] = np.arange(len(uniq))
        res = np.full(flat.shape, -1, dtype=np.int64)
        res[keep] = rank[inverse.reshape(-1)]
        out[b] = res.reshape(ids.shape[1:])
    return out


def same_partition(a: np.ndarray, b: np.ndarray) -> bool:
    """Two pixels share a component in ``a`` iff they share one in ``b`` (per image)."""
    for ia, ib in zip(a, b, strict=True):
        ia, ib = ia.reshape(-1), ib.reshape(-1)
        if not np.array_equal(ia < 0, ib < 0):
            return False
        keep = ia >= 0
        pairs = np.unique(np.stack([ia[keep], ib[keep]], axis=1), axis=0)
        if not len(pairs) == len(np.unique(ia[keep])) == len(np.unique(ib[keep])):
            return False
    return True


def check_against_scipy(
    labels: torch.Tensor, connectivity: int, valid: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    ids, num = label_connected_components(labels, connectivity=connectivity, valid=valid)
    assert ids.dtype == torch.long and num.dtype == torch.long
    assert ids.shape == labels.shape and num.shape == (labels.shape[0],)
    ref, ref_num = scipy_components(labels.numpy(), connectivity, None if valid is None else valid.numpy())
    ours = ids.numpy()
    assert num.tolist() == ref_num
    assert same_partition(ours, ref)
    # Dense ids numbered in order of first appearance (hence equal to canonical scipy ids).
    np.testing.assert_array_equal(ours, canonical(ours))
    np.testing.assert_array_equal(ours, canonical(ref))
    return ids, num


def blobs(batch: int, shape: tuple[int, ...], classes: int, sigma: float, seed: int) -> torch.Tensor:
    """Smoothed random class maps (realistic segmentation-like blobs)."""
    rng = np.random.default_rng(seed)
    noise = rng.standard_normal((batch, classes, *shape))
    smooth = ndimage.gaussian_filter(noise, sigma=(0, 0) + (sigma,) * len(shape))
    return torch.from_numpy(smooth.argmax(1))


def spiral(n: int) -> np.ndarray:
    """Square spiral path of 1s (width 1, gap 1) on 0s; both values form one long spiral."""
    g = np.zeros((n, n), dtype=np.int64)
    k = 0
    while 4 * k < n:
        top = left = 2 * k
        bot = right = n - 1 - 2 * k
        g[top, left : right + 1] = 1
        g[top : bot + 1, right] = 1
        g[bot, left : right + 1] = 1
        if top + 2 <= bot:
            g[top + 2 : bot + 1, left] = 1
            if left + 1 < right:
                g[top + 2, left + 1] = 1
        k += 1
    return g


def snake(h: int, w: int) -> np.ndarray:
    """Boustrophedon: rows of 1s joined alternately at the right and left ends."""
    g = np.zeros((h, w), dtype=np.int64)
    g[::2] = 1
    g[1::4, -1] = 1
    g[3::4, 0] = 1
    return g


# ----------------------------------------------------------------------------- labelling


@st.composite
def label_maps(draw):
    ndim = draw(st.integers(1, 3))
    batch = draw(st.integers(1, 3))
    shape = tuple(draw(st.lists(st.integers(1, 6), min_size=ndim, max_size=ndim)))
    classes = draw(st.integers(1, 3))
    seed = draw(st.integers(0, 2**31 - 1))
    rng = np.random.default_rng(seed)
    labels = torch.from_numpy(rng.integers(0, classes, size=(batch, *shape)))
    valid = None
    if draw(st.booleans()):
        valid = torch.from_numpy(rng.random((batch, *shape)) < draw(st.floats(0.0, 1.0)))
    connectivity = draw(st.integers(1, ndim))
    return labels, connectivity, valid


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(label_maps())
def test_random_small_maps_match_scipy(case):
    labels, connectivity, valid = case
    check_against_scipy(labels, connectivity, valid)


@pytest.mark.parametrize("connectivity", [1, 2])
def test_2d_blobs_match_scipy(connectivity):
    labels = blobs(4, (48, 40), classes=6, sigma=2.0, seed=0)
    _, num = check_against_scipy(labels, connectivity)
    assert (num > 10).all()


@pytest.mark.parametrize("connectivity", [1, 2, 3])
def test_3d_blobs_match_scipy(connectivity):
    labels = blobs(2, (12, 16, 14), classes=5, sigma=1.5, seed=1)
    check_against_scipy(labels, connectivity)


@pytest.mark.parametrize("connectivity", [1, 2])
def test_2d_random_noise_with_valid_mask(connectivity):
    gen = torch.Generator().manual_seed(2)
    labels = torch.randint(0, 3, (3, 30, 33), generator=gen)
    valid = torch.rand(labels.shape, generator=gen) > 0.3
    check_against_scipy(labels, connectivity, valid)


@pytest.mark.parametrize("connectivity", [1, 3])
def test_3d_with_valid_mask(connectivity):
    labels = blobs(2, (10, 12, 11), classes=4, sigma=1.0, seed=3)
    valid = torch.from_numpy(np.random.default_rng(3).random(labels.shape) > 0.2)
    check_against_scipy(labels, connectivity, valid)


def test_1d():
    labels = torch.tensor([[0, 0, 1, 1, 0, 2, 2, 2], [5, 5, 5, 5, 5, 5, 5, 5]])
    ids, num = check_against_scipy(labels, 1)
    assert ids.tolist() == [[0, 0, 1, 1, 2, 3, 3, 3], [0] * 8]
    assert num.tolist() == [4, 1]


@pytest.mark.parametrize(
    "grid",
    [spiral(64), spiral(64).T.copy(), spiral(63), snake(61, 40), snake(61, 40).T.copy()],
    ids=["spiral", "spiral_T", "spiral_odd", "snake", "snake_T"],
)
@pytest.mark.parametrize("connectivity", [1, 2])
def test_spiral_and_snake(grid, connectivity):
    labels = torch.from_numpy(grid)[None]
    check_against_scipy(labels, connectivity)
    ids, _ = label_connected_components(labels, connectivity)
    # The 1-path is a single component with thousands of pixels.
    path_ids = ids[labels == 1].unique()
    assert path_ids.numel() == 1


def test_large_spiral_single_component():
    """A ~32k pixel long path converges (pointer jumping; naive propagation needs ~32k rounds)."""
    grid = spiral(256)
    labels = torch.from_numpy(grid)[None]
    ids, num = label_connected_components(labels)
    assert num.tolist() == [2]
    assert ids[labels == 1].unique().tolist() == [0]
    assert ids[labels == 0].unique().tolist() == [1]


def test_3d_snake_through_slices():
    """Snake that winds through depth: each slice is a snake, slices joined alternately."""
    depth, h, w = 6, 9, 8
    vol = np.zeros((depth, h, w), dtype=np.int64)
    for z in range(0, depth, 2):
        vol[z] = snake(h, w)
    # join slice z to z+2 through z+1 at alternating corners (odd rows of slice are 0)
    for z in range(1, depth, 2):
        vol[z, (h - 1) if (z // 2) % 2 == 0 else 0, 0 if (z // 2) % 2 == 0 else w - 1] = 1
    labels = torch.from_numpy(vol)[None]
    for connectivity in (1, 2, 3):
        check_against_scipy(labels, connectivity)


def test_all_invalid_image_has_zero_components():
    labels = torch.zeros(3, 5, 6, dtype=torch.long)
    valid = torch.ones_like(labels, dtype=torch.bool)
    valid[1] = False
    ids, num = check_against_scipy(labels, 1, valid)
    assert num.tolist() == [1, 0, 1]
    assert (ids[1] == -1).all()
    assert (ids[0] == 0).all() and (ids[2] == 0).all()


def test_single_pixel():
    for shape in [(1, 1), (1, 1, 1), (1, 1, 1, 1), (3, 1, 1)]:
        labels = torch.zeros(shape, dtype=torch.long)
        ids, num = label_connected_components(labels)
        assert (ids == 0).all()
        assert num.tolist() == [1] * shape[0]
    ids, num = label_connected_components(
        torch.zeros(1, 1, dtype=torch.long), valid=torch.zeros(1, 1, dtype=torch.bool)
    )
    assert ids.tolist() == [[-1]] and num.tolist() == [0]


def test_batch_items_do_not_merge_and_match_single_image_calls():
    labels = blobs(5, (20, 23), classes=3, sigma=2.0, seed=4)
    labels[1] = 0  # constant images: must each be exactly one component
    labels[2] = 0
    valid = torch.from_numpy(np.random.default_rng(4).random(labels.shape) > 0.1)
    valid[1] = True
    valid[2] = True
    for connectivity in (1, 2):
        ids, num = label_connected_components(labels, connectivity, valid)
        assert num[1] == 1 and num[2] == 1
        assert (ids[1] == 0).all() and (ids[2] == 0).all()
        for b in range(labels.shape[0]):
            ids_b, num_b = label_connected_components(labels[b : b + 1], connectivity, valid[b : b + 1])
            assert torch.equal(ids_b[0], ids[b])
            assert num_b.item() == num[b].item()


def test_every_label_value_forms_components_and_code_maps():
    """Used on a code ``pred * K + target``: regions differing in either part are separate."""
    pred = torch.tensor([[[0, 0, 1, 1], [0, 0, 1, 1]]])
    target = torch.tensor([[[0, 1, 1, 1], [0, 1, 1, 0]]])
    ids, num = check_against_scipy(pred * 2 + target, 1)
    assert num.tolist() == [4]
    assert ids.tolist() == [[[0, 1, 2, 2], [0, 1, 2, 3]]]


@pytest.mark.parametrize("dtype", [torch.uint8, torch.int8, torch.int16, torch.int32, torch.bool])
def test_integer_dtypes(dtype):
    labels = blobs(2, (12, 13), classes=2, sigma=1.0, seed=5)
    ref_ids, ref_num = label_connected_components(labels)
    ids, num = label_connected_components(labels.to(dtype))
    assert torch.equal(ids, ref_ids) and torch.equal(num, ref_num)


def test_empty_inputs():
    ids, num = label_connected_components(torch.zeros(0, 4, 4, dtype=torch.long))
    assert ids.shape == (0, 4, 4) and num.shape == (0,)
    ids, num = label_connected_components(torch.zeros(2, 0, 4, dtype=torch.long))
    assert ids.shape == (2, 0, 4) and num.tolist() == [0, 0]


def test_non_contiguous_input():
    labels = blobs(2, (16, 18), classes=3, sigma=1.5, seed=6)
    transposed = labels.transpose(1, 2)
    assert not transposed.is_contiguous()
    check_against_scipy(transposed, 1)
    ids, _ = label_connected_components(transposed)
    assert torch.equal(ids, label_connected_components(transposed.contiguous())[0])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu():
    labels = blobs(4, (40, 37), classes=5, sigma=2.0, seed=7)
    valid = torch.from_numpy(np.random.default_rng(7).random(labels.shape) > 0.1)
    for connectivity in (1, 2):
        ids, num = label_connected_components(labels, connectivity, valid)
        ids_c, num_c = label_connected_components(labels.cuda(), connectivity, valid.cuda())
        assert torch.equal(ids_c.cpu(), ids) and torch.equal(num_c.cpu(), num)
    grid = torch.from_numpy(spiral(128))[None]
    assert torch.equal(label_connected_components(grid.cuda())[0].cpu(), label_connected_components(grid)[0])


def test_input_errors():
    labels = torch.zeros(2, 4, 4, dtype=torch.long)
    with pytest.raises(TypeError, match=r"`labels`.*integer.*torch.float32"):
        label_connected_components(labels.float())
    with pytest.raises(TypeError, match="`labels` must be a torch.Tensor"):
        label_connected_components(np.zeros((2, 4, 4)))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"`labels`.*got ndim 1"):
        label_connected_components(torch.zeros(4, dtype=torch.long))
    with pytest.raises(ValueError, match=r"`labels`.*got ndim 5"):
        label_connected_components(torch.zeros(1, 2, 2, 2, 2, dtype=torch.long))
    with pytest.raises(ValueError, match=r"`valid`.*\(2, 4, 4\).*\(2, 4, 5\)"):
        label_connected_components(labels, valid=torch.ones(2, 4, 5, dtype=torch.bool))
    with pytest.raises(TypeError, match=r"`valid`.*torch.bool.*torch.int64"):
        label_connected_components(labels, valid=torch.ones(2, 4, 4, dtype=torch.long))
    with pytest.raises(ValueError, match=r"`connectivity`.*\[1, 2\].*got 3"):
        label_connected_components(labels, connectivity=3)
    with pytest.raises(ValueError, match=r"`connectivity`.*got 0"):
        label_connected_components(labels, connectivity=0)
    with pytest.raises(TypeError, match="`connectivity`"):
        label_connected_components(labels, connectivity=1.0)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="`connectivity`"):
        label_connected_components(labels, connectivity=True)
