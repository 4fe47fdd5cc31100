"""RGB arrays of masks and pixel scores: the class palette, coloured masks, heat maps and marks.

:func:`default_palette` picks class colours and :func:`colorize_mask` paints a mask with them;
:func:`score_heat_map` colours each pixel's score (probability of its given class) with
:data:`HEAT_CMAP`; :func:`mark_colour` picks the colour of marked (likely mislabeled) pixels,
away from every class colour, the ignore colour and the heat map; :func:`mark_pixels` tints
and outlines them on any RGB array. matplotlib is imported lazily (colormaps only, no pyplot).
"""

from __future__ import annotations

import colorsys
from typing import Any

import numpy as np
import torch
from torch import Tensor

# tab10 followed by its light variants: readable, well separated first colours.
_BASE_COLOURS = (
    "1f77b4ff7f0e2ca02cd627289467bd8c564be377c27f7f7fbcbd2217becf"
    "aec7e8ffbb7898df8aff9896c5b0d5c49c94f7b6d2c7c7c7dbdb8d9edae5"
)
HEAT_CMAP = "RdYlBu"  # score 0 (the model rules the given class out) red, score 1 blue
#: candidate colours for marked pixels, in order of preference on ties
MARK_CANDIDATES = (
    (255, 0, 255),
    (0, 255, 0),
    (255, 255, 255),
    (0, 255, 255),
    (255, 255, 0),
    (128, 0, 255),
    (255, 128, 0),
    (0, 0, 0),
)
MARK_MIN_GAP = 100.0  # RGB distance kept from every class colour, black and the heat map when possible


def _describe(value: Any) -> str:
    return f"Tensor {tuple(value.shape)}" if isinstance(value, Tensor) else type(value).__name__


def _np(t: Tensor) -> np.ndarray:
    return t.detach().cpu().numpy()


def default_palette(num_classes: int) -> Tensor:
    """Return ``num_classes`` distinct, deterministic RGB colours (never pure black).

    Args:
        num_classes: Number of colours wanted, at least 1.

    Returns:
        A ``(num_classes, 3)`` uint8 tensor.

    Examples:
        >>> p = default_palette(30)
        >>> p.shape, p.dtype, len({tuple(c) for c in p.tolist()})
        (torch.Size([30, 3]), torch.uint8, 30)
        >>> p[0].tolist()
        [31, 119, 180]

    """
    if isinstance(num_classes, bool) or not isinstance(num_classes, int):
        raise TypeError(f"`num_classes` must be an int, got {type(num_classes).__name__}")
    if not 1 <= num_classes <= 65536:
        raise ValueError(f"`num_classes` must lie in [1, 65536], got {num_classes}")
    colours = [tuple(bytes.fromhex(_BASE_COLOURS[i : i + 6])) for i in range(0, 120, 6)]
    seen, i = set(colours), 0
    while len(colours) < num_classes:  # low-discrepancy (R3) walk through hue/saturation/value
        i += 1
        h, s, v = ((i * g) % 1.0 for g in (0.8191725134, 0.6710436067, 0.5497004779))
        rgb = tuple(round(255 * c) for c in colorsys.hsv_to_rgb(h, 0.35 + 0.6 * s, 0.45 + 0.5 * v))
        if rgb not in seen:
            seen.add(rgb)
            colours.append(rgb)
    return torch.tensor(colours[:num_classes], dtype=torch.uint8)


def colorize_mask(mask: Tensor, palette: Tensor, ignore_index: int | None = None) -> Tensor:
    """Map an integer mask to RGB colours; ``ignore_index`` pixels become black.

    Args:
        mask: ``(H, W)`` integer tensor of class ids.
        palette: ``(K, 3)`` uint8 tensor; class ``c`` gets ``palette[c]``.
        ignore_index: Class id drawn in black, or None.

    Returns:
        A ``(H, W, 3)`` uint8 tensor.

    Examples:
        >>> pal = torch.tensor([[255, 0, 0], [0, 0, 255]], dtype=torch.uint8)
        >>> colorize_mask(torch.tensor([[0, 1, 255]]), pal, ignore_index=255).tolist()
        [[[255, 0, 0], [0, 0, 255], [0, 0, 0]]]

    """
    if not isinstance(mask, Tensor) or mask.ndim != 2:
        raise TypeError(f"`mask` must be a 2-D (H, W) Tensor, got {_describe(mask)}")
    if mask.is_floating_point() or mask.is_complex():
        raise TypeError(f"`mask` must hold integer class ids, got dtype {mask.dtype}")
    if not isinstance(palette, Tensor) or palette.ndim != 2 or palette.shape[1] != 3:
        raise TypeError(f"`palette` must be a (K, 3) Tensor, got {_describe(palette)}")
    mask = mask.detach().cpu().long()
    valid = (mask != ignore_index) if ignore_index is not None else torch.ones_like(mask).bool()
    if valid.any():
        lo, hi = int(mask[valid].min()), int(mask[valid].max())
        if lo < 0 or hi >= palette.shape[0]:
            raise ValueError(
                f"`mask` class ids must lie in [0, {palette.shape[0] - 1}] (palette "
                f"size) or equal `ignore_index`={ignore_index}, got [{lo}, {hi}]"
            )
    out = torch.zeros(*mask.shape, 3, dtype=torch.uint8)
    out[valid] = palette.detach().cpu().to(torch.uint8)[mask[valid]]
    return out


def _image_hwc(image: Tensor) -> np.ndarray:
    """(C, H, W) float/uint8 tensor -> (H, W, 3) uint8; floats outside [0, 1] are min-max scaled."""
    arr = _np(image)
    if arr.dtype != np.uint8:
        arr = arr.astype(np.float32)
        lo, hi = float(np.nanmin(arr)), float(np.nanmax(arr))
        if lo < 0.0 or hi > 1.0:
            arr = (arr - lo) / max(hi - lo, 1e-12)
        arr = np.round(np.clip(np.nan_to_num(arr), 0.0, 1.0) * 255).astype(np.uint8)
    arr = np.moveaxis(arr, 0, -1)
    return np.repeat(arr, 3, axis=-1) if arr.shape[-1] == 1 else np.ascontiguousarray(arr)


def heat_colours(n: int = 256) -> np.ndarray:
    """The ``(n, 3)`` uint8 colours of :data:`HEAT_CMAP` from score 0 to score 1.

    Examples:
        >>> lut = heat_colours(3)
        >>> lut.shape, bool(lut[0, 0] > lut[0, 2]), bool(lut[-1, 2] > lut[-1, 0])  # red to blue
        ((3, 3), True, True)

    """
    from matplotlib import colormaps

    if isinstance(n, bool) or not isinstance(n, int) or n < 2:
        raise ValueError(f"`n` must be an int >= 2, got {n!r}")
    rgba = colormaps[HEAT_CMAP](np.linspace(0.0, 1.0, n))
    return np.round(rgba[:, :3] * 255).astype(np.uint8)


def score_heat_map(pixel_scores: Tensor) -> np.ndarray:
    """Colour each pixel's score with :data:`HEAT_CMAP` (0 red, 0.5 pale yellow, 1 blue).

    Args:
        pixel_scores: ``(H, W)`` float in ``[0, 1]``, the probability of the given class
            (values are clipped; NaN is drawn as score 1).

    Returns:
        A ``(H, W, 3)`` uint8 array (the colours of a colour bar over ``[0, 1]``).

    Examples:
        >>> m = score_heat_map(torch.tensor([[0.0, 1.0]]))
        >>> m[0, 0].tolist() == heat_colours()[0].tolist(), m[0, 1].tolist() == heat_colours()[-1].tolist()
        (True, True)

    """
    if not isinstance(pixel_scores, Tensor) or pixel_scores.ndim != 2:
        raise TypeError(f"`pixel_scores` must be a 2-D Tensor, got {_describe(pixel_scores)}")
    s = np.clip(np.nan_to_num(_np(pixel_scores).astype(np.float64), nan=1.0), 0.0, 1.0)
    lut = heat_colours(256)
    return lut[np.round(s * 255).astype(np.int64)]


def mark_colour(palette: Tensor | None = None) -> tuple[int, int, int]:
    """The colour of marked pixels: magenta unless a colour it must stand apart from is close.

    The first of :data:`MARK_CANDIDATES` (magenta, green, white, ...) whose RGB distance to every
    class colour, to black (ignored pixels) and to the heat map's colours is at least
    :data:`MARK_MIN_GAP`; when none is, the one farthest from them (earlier candidates win ties).

    Args:
        palette: ``(K, 3)`` class colours in use (None: only black and the heat map).

    Returns:
        An ``(r, g, b)`` tuple.

    Examples:
        >>> mark_colour(default_palette(12))
        (255, 0, 255)
        >>> mark_colour(torch.tensor([[255, 0, 255], [250, 5, 250]], dtype=torch.uint8)) != (255, 0, 255)
        True

    """
    if palette is not None and (not isinstance(palette, Tensor) or palette.ndim != 2 or palette.shape[1] != 3):
        raise TypeError(f"`palette` must be a (K, 3) Tensor, got {_describe(palette)}")
    avoid = [heat_colours(32).astype(np.float64), np.zeros((1, 3))]
    if palette is not None:
        avoid.append(_np(palette).astype(np.float64))
    avoid_all = np.concatenate(avoid)
    cands = np.array(MARK_CANDIDATES, dtype=np.float64)
    gaps = np.sqrt(((cands[:, None, :] - avoid_all[None]) ** 2).sum(-1)).min(1)
    far = np.nonzero(gaps >= MARK_MIN_GAP)[0]
    return MARK_CANDIDATES[int(far[0]) if far.size else int(np.argmax(gaps))]  # argmax: first of the best


def outline(mask: np.ndarray, width: int = 1) -> np.ndarray:
    """The pixels of ``mask`` within ``width`` pixels of its border (4-neighbourhood; image edges count).

    Examples:
        >>> m = np.zeros((5, 5), bool); m[1:4, 1:4] = True
        >>> int(outline(m).sum()), bool(outline(m)[2, 2])
        (8, False)

    """
    m = np.asarray(mask, dtype=bool)
    if m.ndim != 2:
        raise ValueError(f"`mask` must be 2-D, got shape {m.shape}")
    if isinstance(width, bool) or not isinstance(width, int) or width < 1:
        raise ValueError(f"`width` must be a positive int, got {width!r}")
    inner = m
    for _ in range(width):
        pad = np.pad(inner, 1, constant_values=False)
        inner = inner & pad[:-2, 1:-1] & pad[2:, 1:-1] & pad[1:-1, :-2] & pad[1:-1, 2:]
    return m & ~inner


def mark_pixels(
    rgb: np.ndarray, marked: Tensor, colour: tuple[int, int, int], fill: float = 0.0, width: int = 1
) -> np.ndarray:
    """Outline the marked regions of an RGB array in ``colour`` and tint their inside by ``fill``.

    Args:
        rgb: ``(H, W, 3)`` uint8 array (not modified).
        marked: ``(H, W)`` bool tensor of the pixels to mark.
        colour: ``(r, g, b)`` of the marks, e.g. from :func:`mark_colour`.
        fill: share of ``colour`` blended into the inside of marked regions, in ``[0, 1]``.
        width: outline width in pixels.

    Returns:
        A new ``(H, W, 3)`` uint8 array.

    Examples:
        >>> m = torch.zeros(3, 3, dtype=torch.bool); m[1, 1] = True
        >>> out = mark_pixels(np.zeros((3, 3, 3), np.uint8), m, (255, 0, 255))
        >>> out[1, 1].tolist(), out[0, 0].tolist()
        ([255, 0, 255], [0, 0, 0])

    """
    if not isinstance(rgb, np.ndarray) or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise TypeError(f"`rgb` must be an (H, W, 3) array, got {getattr(rgb, 'shape', type(rgb).__name__)}")
    if not isinstance(marked, Tensor) or tuple(marked.shape) != rgb.shape[:2]:
        raise TypeError(f"`marked` must be a Tensor of shape {rgb.shape[:2]}, got {_describe(marked)}")
    if not 0.0 <= float(fill) <= 1.0:
        raise ValueError(f"`fill` must lie in [0, 1], got {fill}")
    m = _np(marked).astype(bool)
    out = rgb.astype(np.float32)
    col = np.asarray(colour, dtype=np.float32)
    out[m] = (1.0 - fill) * out[m] + fill * col
    out = np.round(out).astype(np.uint8)
    out[outline(m, width)] = np.asarray(colour, dtype=np.uint8)
    return out
