"""Inject the paper's three kinds of annotation errors into segmentation masks.

Lad & Mueller (section 4.1) benchmark label-quality scores on masks corrupted with one of three
errors: *drop* (a class is forgotten and left as "unlabeled"), *swap* (two classes exchange their
labels) and *shift* (a class's outline is drawn sloppily: random morphological dilation or
erosion along its edges). :func:`inject_label_errors` reproduces them deterministically from a
seed, in pure torch. The morphology helpers (:func:`structuring_element`, :func:`dilate`,
:func:`erode`) follow OpenCV's conventions (centred anchor, border pixels do not contribute).
"""

from __future__ import annotations

import math
import numbers
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "ERROR_KINDS",
    "KERNEL_SHAPES",
    "PAPER_FRACTIONS",
    "SHIFT_SIZES",
    "ErrorKind",
    "default_min_changed_pixels",
    "dilate",
    "erode",
    "inject_label_errors",
    "structuring_element",
]

ErrorKind = Literal["drop", "swap", "shift"]
ERROR_KINDS: tuple[str, ...] = ("drop", "swap", "shift")
KERNEL_SHAPES: tuple[str, ...] = ("rect", "ellipse", "cross")
PAPER_FRACTIONS: dict[str, float] = {"drop": 0.2, "swap": 0.3, "shift": 0.2}
SHIFT_SIZES: tuple[int, ...] = (3, 5, 7, 9, 11)
_SHIFT_TRIES_PER_CLASS = 6


def _int_arg(value: object, name: str, minimum: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"`{name}` must be an int, got {type(value).__name__} ({value!r})")
    if minimum is not None and value < minimum:
        raise ValueError(f"`{name}` must be >= {minimum}, got {value}")
    return int(value)


def structuring_element(shape: str, size: int | tuple[int, int]) -> Tensor:
    """Build a boolean structuring element, identical to ``cv2.getStructuringElement``.

    Args:
        shape: ``"rect"``, ``"ellipse"`` or ``"cross"`` (``cv2.MORPH_RECT/ELLIPSE/CROSS``).
        size: side length, or ``(height, width)``. Note that OpenCV's ``ksize`` is
            ``(width, height)``.

    Returns:
        Bool tensor of shape ``(height, width)``; its anchor is the centre
        ``(height // 2, width // 2)``.

    Raises:
        ValueError: unknown ``shape`` or non-positive size.

    Examples:
        >>> structuring_element("cross", 3).int()
        tensor([[0, 1, 0],
                [1, 1, 1],
                [0, 1, 0]], dtype=torch.int32)
        >>> structuring_element("ellipse", 5).sum().item()
        17

    """
    if shape not in KERNEL_SHAPES:
        raise ValueError(f"`shape` must be one of {KERNEL_SHAPES}, got {shape!r}")
    pair = (size, size) if isinstance(size, int) and not isinstance(size, bool) else size
    if not (isinstance(pair, tuple) and len(pair) == 2):
        raise TypeError(f"`size` must be an int or a (height, width) tuple, got {size!r}")
    kh, kw = (_int_arg(v, "size", minimum=1) for v in pair)
    kernel = torch.zeros(kh, kw, dtype=torch.bool)
    r, c = kh // 2, kw // 2
    if shape == "rect" or (kh, kw) == (1, 1):
        kernel[:] = True
    elif shape == "cross":
        kernel[r, :] = True
        kernel[:, c] = True
    else:  # same integer arithmetic as OpenCV (round half to even, like cvRound)
        inv_r2 = 1.0 / (r * r) if r else 0.0
        for i in range(kh):
            dy = i - r
            dx = round(c * math.sqrt((r * r - dy * dy) * inv_r2))
            kernel[i, max(c - dx, 0) : min(c + dx + 1, kw)] = True
    return kernel


def _morphology(mask: Tensor, kernel: Tensor, erosion: bool) -> Tensor:
    name = "erode" if erosion else "dilate"
    if not isinstance(mask, Tensor) or mask.dtype != torch.bool or mask.ndim not in (2, 3):
        got = type(mask).__name__
        if isinstance(mask, Tensor):
            got = f"{mask.dtype} tensor of shape {tuple(mask.shape)}"
        raise TypeError(f"{name}: `mask` must be a bool tensor (H, W) or (B, H, W), got {got}")
    if not isinstance(kernel, Tensor) or kernel.ndim != 2 or not bool(kernel.any()):
        raise ValueError(f"{name}: `kernel` must be a 2D tensor with at least one nonzero entry")
    kh, kw = kernel.shape
    ay, ax = kh // 2, kw // 2
    x = mask.reshape(-1, 1, *mask.shape[-2:]).float()
    # Border pixels never contribute: pad with the operation's neutral element.
    x = F.pad(x, (ax, kw - 1 - ax, ay, kh - 1 - ay), value=1.0 if erosion else 0.0)
    weight = (kernel != 0).float()[None, None]
    hits = F.conv2d(x, weight)
    out = hits > weight.sum() - 0.5 if erosion else hits > 0.5
    return out.reshape(mask.shape)


def dilate(mask: Tensor, kernel: Tensor) -> Tensor:
    """Binary dilation with an arbitrary structuring element, equal to ``cv2.dilate``.

    ``out[y, x] = any(mask[y + i - ay, x + j - ax] for kernel[i, j])`` with the anchor
    ``(ay, ax) = (kh // 2, kw // 2)``; pixels outside the image count as ``False``.

    Args:
        mask: bool tensor ``(H, W)`` or a batch ``(B, H, W)``.
        kernel: 2D structuring element (nonzero = inside), e.g. from :func:`structuring_element`.

    Returns:
        Bool tensor with the shape of ``mask``.

    Raises:
        TypeError: ``mask`` is not a 2D/3D bool tensor.
        ValueError: ``kernel`` is not 2D or is empty.

    Examples:
        >>> m = torch.zeros(5, 5, dtype=torch.bool)
        >>> m[2, 2] = True
        >>> dilate(m, structuring_element("cross", 3)).int()
        tensor([[0, 0, 0, 0, 0],
                [0, 0, 1, 0, 0],
                [0, 1, 1, 1, 0],
                [0, 0, 1, 0, 0],
                [0, 0, 0, 0, 0]], dtype=torch.int32)

    """
    return _morphology(mask, kernel, erosion=False)


def erode(mask: Tensor, kernel: Tensor) -> Tensor:
    """Binary erosion with an arbitrary structuring element, equal to ``cv2.erode``.

    ``out[y, x] = all(mask[y + i - ay, x + j - ax] for kernel[i, j])``; pixels outside the image
    count as ``True`` (the border does not erode), as with OpenCV's default border.

    Args:
        mask: bool tensor ``(H, W)`` or a batch ``(B, H, W)``.
        kernel: 2D structuring element (nonzero = inside).

    Returns:
        Bool tensor with the shape of ``mask``.

    Raises:
        TypeError: ``mask`` is not a 2D/3D bool tensor.
        ValueError: ``kernel`` is not 2D or is empty.

    Examples:
        >>> m = torch.ones(4, 4, dtype=torch.bool)
        >>> m[0, 0] = False
        >>> erode(m, structuring_element("rect", 3)).int()
        tensor([[0, 0, 1, 1],
                [0, 0, 1, 1],
                [1, 1, 1, 1],
                [1, 1, 1, 1]], dtype=torch.int32)

    """
    return _morphology(mask, kernel, erosion=True)


def default_min_changed_pixels(pixels_per_image: int) -> int:
    """Default minimum number of changed pixels: 0.1% of the image, but at least 10.

    Args:
        pixels_per_image: number of pixels (or voxels) in one mask.

    Returns:
        ``max(10, ceil(0.001 * pixels_per_image))``.

    Examples:
        >>> default_min_changed_pixels(96 * 128), default_min_changed_pixels(1000)
        (13, 10)

    """
    _int_arg(pixels_per_image, "pixels_per_image", minimum=0)
    return max(10, math.ceil(0.001 * pixels_per_image))


def _randint(gen: torch.Generator, high: int) -> int:
    return int(torch.randint(high, (1,), generator=gen).item())


def _fill_from_neighbours(mask: Tensor, holes: Tensor, sources: Tensor) -> Tensor:
    """Give each hole pixel the class of the geodesically nearest source pixel (8-connected).

    Labels spread one pixel per step from ``sources`` through ``holes`` only; ties are broken by
    the largest class id. Holes that no source reaches keep their label.
    """
    labels = torch.where(sources, mask.double(), -math.inf)  # exact for any int32 class id
    todo = holes.clone()
    while bool(todo.any()):
        best = F.max_pool2d(labels[None, None], 3, stride=1, padding=1)[0, 0]
        newly = todo & (best > -math.inf)
        if not bool(newly.any()):
            break
        labels[newly] = best[newly]
        todo &= ~newly
    out = mask.clone()
    filled = holes & ~todo
    out[filled] = labels[filled].long()
    return out


def _shift_one(mask: Tensor, cls: int, dilation: bool, kernel: Tensor, ignore: Tensor) -> Tensor:
    region = mask == cls
    out = mask.clone()
    if dilation:
        out[dilate(region, kernel) & ~region & ~ignore] = cls
        return out
    # Ignore pixels count as the class so that edges shared with them are never eroded.
    eroded = region & ~erode(region | ignore, kernel)
    return _fill_from_neighbours(mask, eroded, ~region & ~ignore)


def _corrupt_one(
    mask: Tensor, kind: str, gen: torch.Generator, unlabeled: int, ignore: int | None, min_px: int
) -> Tensor | None:
    """Return a corrupted copy of one int64 mask, or None if it cannot take the error."""
    ids, counts = torch.unique(mask, return_counts=True)
    excluded = {unlabeled} if ignore is None else {unlabeled, ignore}
    present = [(int(i), int(n)) for i, n in zip(ids, counts, strict=True) if int(i) not in excluded]
    if kind == "drop":
        options = [c for c, n in present if n >= min_px]
        if not options:
            return None
        cls = options[_randint(gen, len(options))]
        return torch.where(mask == cls, torch.full_like(mask, unlabeled), mask)
    if kind == "swap":
        pairs = [(a, b) for k, (a, na) in enumerate(present) for b, nb in present[k + 1 :] if na + nb >= min_px]
        if not pairs:
            return None
        a, b = pairs[_randint(gen, len(pairs))]
        out = mask.clone()
        out[mask == a], out[mask == b] = b, a
        return out
    ignore_px = torch.zeros_like(mask, dtype=torch.bool) if ignore is None else mask == ignore
    for k in torch.randperm(len(present), generator=gen).tolist():
        for _ in range(_SHIFT_TRIES_PER_CLASS):
            dilation = _randint(gen, 2) == 0
            shape = KERNEL_SHAPES[_randint(gen, len(KERNEL_SHAPES))]
            size = SHIFT_SIZES[_randint(gen, len(SHIFT_SIZES))]
            kernel = structuring_element(shape, size)
            out = _shift_one(mask, present[k][0], dilation, kernel, ignore_px)
            if int((out != mask).sum()) >= min_px:
                return out
    return None


def inject_label_errors(
    masks: Tensor,
    kind: str,
    fraction: float,
    seed: int,
    unlabeled_index: int,
    ignore_index: int | None = None,
    min_changed_pixels: int | None = None,
) -> tuple[Tensor, Tensor]:
    """Corrupt a fraction of the masks with one of the paper's annotation errors.

    Exactly ``round(fraction * N)`` masks (Python ``round``) are corrupted. Images are visited in
    a random order drawn from a ``torch.Generator`` seeded with ``seed``; an image that cannot take
    the error (no suitable class, or every attempt changes fewer than ``min_changed_pixels``
    pixels) is skipped and the next one is tried. Kinds:

    * ``"drop"``: one object class present in the image is relabelled ``unlabeled_index``.
    * ``"swap"``: two classes present in the image exchange labels over all their pixels.
    * ``"shift"``: one class is dilated or eroded (random choice) with a random structuring element
      (rect / ellipse / cross, size in :data:`SHIFT_SIZES`). Dilation grows the class over its
      neighbours except ``ignore_index`` pixels. Eroded pixels take the class of the geodesically
      nearest pixel outside the class (spreading 8-connected through the eroded band, ties broken
      by the larger class id); edges against ``ignore_index`` pixels or the image border are not
      eroded. Up to 6 random parameter draws are tried per class before trying another class.

    The chosen classes never include ``unlabeled_index`` or ``ignore_index``, and ``ignore_index``
    pixels never change. Swap and drop accept volumes ``(N, D, H, W)``; shift needs ``(N, H, W)``.

    Args:
        masks: integer tensor ``(N, H, W)`` (or ``(N, D, H, W)`` for drop/swap) of class ids.
            Never modified.
        kind: ``"drop"``, ``"swap"`` or ``"shift"``.
        fraction: share of images to corrupt, in ``[0, 1]`` (paper: :data:`PAPER_FRACTIONS`).
        seed: seed of the generator that draws images, classes and morphology parameters.
        unlabeled_index: the "unlabeled" class id that drop maps to.
        ignore_index: class id of pixels that must never change, or ``None``.
        min_changed_pixels: a corrupted mask differs from the clean one in at least this many
            pixels. Default: :func:`default_min_changed_pixels` (0.1% of the pixels, at least 10).

    Returns:
        ``(noisy_masks, is_mislabeled)``: a new tensor with the shape and dtype of ``masks``, and a
        bool ``(N,)`` tensor marking the corrupted images.

    Raises:
        TypeError: ``masks`` is not an integer tensor, or an index/seed is not an int.
        ValueError: unknown ``kind``, ``fraction`` outside ``[0, 1]``, bad shape, or fewer than
            ``round(fraction * N)`` images can take the error (nothing is marked then; lower
            ``fraction`` or ``min_changed_pixels``).

    Examples:
        >>> masks = torch.zeros(4, 8, 8, dtype=torch.long)
        >>> masks[:, :, 4:] = 1
        >>> noisy, flags = inject_label_errors(masks, "swap", 0.5, seed=0, unlabeled_index=2)
        >>> int(flags.sum()), bool(torch.equal(noisy[~flags], masks[~flags]))
        (2, True)
        >>> bool((noisy[flags] == 1 - masks[flags]).all())
        True

    """
    if not isinstance(masks, Tensor):
        raise TypeError(f"`masks` must be a torch.Tensor, got {type(masks).__name__}")
    if masks.dtype == torch.bool or masks.is_floating_point() or masks.is_complex():
        raise TypeError(f"`masks` must be an integer tensor of class ids, got dtype {masks.dtype}")
    if kind not in ERROR_KINDS:
        raise ValueError(f"`kind` must be one of {ERROR_KINDS}, got {kind!r}")
    allowed = (3,) if kind == "shift" else (3, 4)
    if masks.ndim not in allowed:
        what = "(N, H, W)" if kind == "shift" else "(N, H, W) or (N, D, H, W)"
        raise ValueError(f"`masks` must be {what} for kind={kind!r}, got {tuple(masks.shape)}")
    if isinstance(fraction, bool) or not isinstance(fraction, numbers.Real):
        raise TypeError(f"`fraction` must be a float in [0, 1], got {type(fraction).__name__}")
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"`fraction` must be in [0, 1], got {fraction}")
    seed, unlabeled_index = _int_arg(seed, "seed"), _int_arg(unlabeled_index, "unlabeled_index")
    ignore_index = None if ignore_index is None else _int_arg(ignore_index, "ignore_index")
    if ignore_index == unlabeled_index:
        raise ValueError(f"`ignore_index` must differ from `unlabeled_index` (both {ignore_index})")
    info = torch.iinfo(masks.dtype)
    if not info.min <= unlabeled_index <= info.max:
        raise ValueError(f"`unlabeled_index`={unlabeled_index} does not fit the masks' dtype {masks.dtype}")
    pixels = math.prod(masks.shape[1:])
    if min_changed_pixels is None:
        min_changed_pixels = default_min_changed_pixels(pixels)
    min_changed_pixels = _int_arg(min_changed_pixels, "min_changed_pixels", minimum=1)

    n = masks.shape[0]
    target = round(float(fraction) * n)
    noisy = masks.clone()
    flags = torch.zeros(n, dtype=torch.bool)
    gen = torch.Generator().manual_seed(seed)
    done = 0
    for i in torch.randperm(n, generator=gen).tolist():
        if done == target:
            return noisy, flags
        new = _corrupt_one(masks[i].long(), kind, gen, unlabeled_index, ignore_index, min_changed_pixels)
        if new is not None:
            noisy[i], flags[i] = new.to(masks.dtype), True
            done += 1
    if done == target:
        return noisy, flags
    raise ValueError(
        f"only {done} of {n} masks can take a {kind!r} error changing at least "
        f"{min_changed_pixels} pixels, but fraction={fraction} asks for {target}; lower "
        "`fraction` or `min_changed_pixels`"
    )
