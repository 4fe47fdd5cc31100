"""RGB arrays of masks and pixel scores: the class palette, coloured masks, suspicious-pixel maps.

Pure numpy/torch, no matplotlib: :func:`default_palette` picks class colours,
:func:`colorize_mask` paints a mask with them and :func:`suspicious_pixel_map` shows low pixel
scores as red heat (:data:`HEAT_RGB`) with confident-learning issues outlined (:data:`ISSUE_RGB`).
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
HEAT_RGB = (255, 0, 0)  # colour of a pixel whose given class got probability 0
ISSUE_RGB = (0, 255, 255)  # outline of confident-learning issue pixels


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


def suspicious_pixel_map(
    pixel_scores: Tensor, image: Tensor | None = None, issue_mask: Tensor | None = None
) -> np.ndarray:
    """Blend ``1 - pixel_scores`` as red heat over the dimmed greyscale image.

    A pixel with score 1 shows the grey base, score 0 is mostly :data:`HEAT_RGB`; the border of
    ``issue_mask`` regions is painted :data:`ISSUE_RGB`. Without an image the base is flat grey.

    Args:
        pixel_scores: ``(H, W)`` float in ``[0, 1]`` (values are clipped).
        image: Optional ``(C, H, W)`` image, ``C`` in ``{1, 3}``.
        issue_mask: Optional ``(H, W)`` bool mask.

    Returns:
        A ``(H, W, 3)`` uint8 array.

    Examples:
        >>> m = suspicious_pixel_map(torch.tensor([[1.0, 0.0]]))
        >>> m[0, 0].tolist(), m[0, 1].tolist()
        ([160, 160, 160], [241, 24, 24])
        >>> issue = torch.tensor([[True, False]])
        >>> suspicious_pixel_map(torch.ones(1, 2), issue_mask=issue)[0, 0].tolist()
        [0, 255, 255]

    """
    if not isinstance(pixel_scores, Tensor) or pixel_scores.ndim != 2:
        raise TypeError(f"`pixel_scores` must be a 2-D Tensor, got {_describe(pixel_scores)}")
    if issue_mask is not None and (not isinstance(issue_mask, Tensor) or issue_mask.shape != pixel_scores.shape):
        raise TypeError(
            f"`issue_mask` must be a Tensor of shape {tuple(pixel_scores.shape)}, got {_describe(issue_mask)}"
        )
    heat = 1.0 - np.clip(np.nan_to_num(_np(pixel_scores).astype(np.float32), nan=0.0), 0.0, 1.0)
    if image is None:
        base = np.full(heat.shape, 160.0, dtype=np.float32)
    else:
        rgb = _image_hwc(image).astype(np.float32)
        base = 64.0 + 0.5 * (rgb @ np.array([0.299, 0.587, 0.114], dtype=np.float32))
    alpha = (0.85 * heat)[..., None]
    out = (1.0 - alpha) * base[..., None] + alpha * np.array(HEAT_RGB, dtype=np.float32)
    out = np.round(out).astype(np.uint8)
    if issue_mask is not None:
        m = _np(issue_mask).astype(bool)
        inner = np.zeros_like(m)  # flagged with 4 flagged neighbours
        inner[1:-1, 1:-1] = m[1:-1, 1:-1] & m[:-2, 1:-1] & m[2:, 1:-1] & m[1:-1, :-2] & m[1:-1, 2:]
        out[m & ~inner] = ISSUE_RGB
    return out
