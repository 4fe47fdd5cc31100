"""One suspect image (:class:`SuspectImage`) and its picture: image, given and predicted masks, heat.

:func:`render_suspect_figure` builds the figure, :func:`render_suspect` draws it as an RGB array,
:func:`suspect_caption` gives its one-line caption. matplotlib is imported lazily.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor

from lightning_segqa.visuals.canvas import figure_to_array
from lightning_segqa.visuals.pixel_maps import (
    _describe,
    _image_hwc,
    _np,
    colorize_mask,
    default_palette,
    suspicious_pixel_map,
)

if TYPE_CHECKING:
    from matplotlib.figure import Figure

_MAX_LEGEND = 12
_REQUIRED = ("target", "pred", "pixel_scores")


@dataclass
class SuspectImage:
    """One image whose mask the label-quality score flags as possibly wrong.

    Args:
        index: Dataset index of the image.
        score: Label-quality score; lower means more likely mislabeled.
        method: Name of the scoring method, e.g. ``"softmin"``.
        target: ``(H, W)`` integer given mask (may contain ``ignore_index``).
        pred: ``(H, W)`` integer predicted mask (argmax).
        pixel_scores: ``(H, W)`` float in ``[0, 1]``: probability of the given class per pixel.
        image: Optional ``(3, H, W)`` or ``(1, H, W)`` image, float in ``[0, 1]`` or uint8.
        issue_mask: Optional ``(H, W)`` bool mask of pixels flagged by confident learning.
        is_mislabeled: Ground truth when known.

    Examples:
        >>> s = SuspectImage(3, 0.12, "softmin", torch.zeros(4, 5, dtype=torch.long),
        ...                  torch.ones(4, 5, dtype=torch.long), torch.full((4, 5), 0.2))
        >>> s.target.shape, s.is_mislabeled
        (torch.Size([4, 5]), None)

    """

    index: int
    score: float
    method: str
    target: Tensor
    pred: Tensor
    pixel_scores: Tensor
    image: Tensor | None = None
    issue_mask: Tensor | None = None
    is_mislabeled: bool | None = None

    def __post_init__(self) -> None:
        for name in ("target", "pred", "pixel_scores", "issue_mask", "image"):
            value = getattr(self, name)
            if not isinstance(value, Tensor) and (value is not None or name in _REQUIRED):
                raise TypeError(f"`{name}` must be a Tensor, got {_describe(value)}")
        hw = tuple(self.target.shape)
        if len(hw) != 2:
            raise ValueError(f"`target` must be 2-D (H, W), got shape {hw}")
        for name in ("pred", "pixel_scores", "issue_mask"):
            value = getattr(self, name)
            if value is not None and tuple(value.shape) != hw:
                raise ValueError(f"`{name}` must match `target` shape {hw}, got {_describe(value)}")
        img = self.image
        if img is not None and (img.ndim != 3 or img.shape[0] not in (1, 3) or img.shape[1:] != hw):
            raise ValueError(f"`image` must be (C, {hw[0]}, {hw[1]}) with C in (1, 3), got {_describe(img)}")


def suspect_caption(s: SuspectImage) -> str:
    """One-line caption: index, method, score and, when known, whether it is a true error.

    Examples:
        >>> m = torch.zeros(2, 2, dtype=torch.long)
        >>> s = SuspectImage(7, 0.0312, "softmin", m, m, torch.ones(2, 2), is_mislabeled=True)
        >>> suspect_caption(s)
        'idx 7 | softmin score 0.0312 | true error'

    """
    text = f"idx {s.index} | {s.method} score {float(s.score):.4f}"
    if s.is_mislabeled is not None:
        text += " | true error" if s.is_mislabeled else " | clean"
    return text


def render_suspect_figure(
    suspect: SuspectImage,
    class_names: Sequence[str] | None = None,
    palette: Tensor | None = None,
    ignore_index: int | None = None,
    low_score_threshold: float = 0.5,
) -> Figure:
    """Build the suspect figure (see :func:`render_suspect`) and return it undrawn.

    Examples:
        >>> s = SuspectImage(1, 0.2, "softmin", torch.zeros(8, 8, dtype=torch.long),
        ...                  torch.ones(8, 8, dtype=torch.long), torch.full((8, 8), 0.3))
        >>> [ax.get_title() for ax in render_suspect_figure(s).axes]
        ['given mask', 'predicted mask', 'suspicious pixels (100% < 0.5)']

    """
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    if not isinstance(suspect, SuspectImage):
        raise TypeError(f"`suspect` must be a SuspectImage, got {type(suspect).__name__}")
    if not 0.0 <= float(low_score_threshold) <= 1.0:
        raise ValueError(f"`low_score_threshold` must lie in [0, 1], got {low_score_threshold}")
    target, pred = suspect.target.detach().cpu().long(), suspect.pred.detach().cpu().long()
    both = torch.cat([target.flatten(), pred.flatten()])
    ids, counts = torch.unique(both[both != ignore_index] if ignore_index is not None else both, return_counts=True)
    if palette is None:
        top = int(ids.max()) + 1 if ids.numel() else 1
        palette = default_palette(max(top, len(class_names or ()), 1))
    panels: list[tuple[str, np.ndarray]] = []
    if suspect.image is not None:
        panels.append(("image", _image_hwc(suspect.image)))
    panels.append(("given mask", _np(colorize_mask(target, palette, ignore_index))))
    panels.append(("predicted mask", _np(colorize_mask(pred, palette, ignore_index))))
    low = float((suspect.pixel_scores.float() < low_score_threshold).float().mean())
    title = f"suspicious pixels ({low:.0%} < {low_score_threshold:g})"
    if suspect.issue_mask is not None:
        title += f"\n{int(suspect.issue_mask.bool().sum())} CL issue px (cyan)"
    heat = suspicious_pixel_map(suspect.pixel_scores, suspect.image, suspect.issue_mask)
    panels.append((title, heat))

    h, w = target.shape
    panel_w = float(np.clip(w / 100, 3.0, 4.5))
    panel_h = float(np.clip(panel_w * h / max(w, 1), 1.2, 6.0))
    order = torch.argsort(counts, descending=True, stable=True)
    shown = ids[order][:_MAX_LEGEND].sort().values.tolist()
    names = list(class_names or ())
    handles = [
        Patch(
            facecolor=np.asarray(palette[c].tolist()) / 255.0,
            edgecolor="black",
            linewidth=0.5,
            label=names[c] if c < len(names) else f"class {c}",
        )
        for c in shown
    ]
    if ignore_index is not None and bool((both == ignore_index).any()):
        handles.append(Patch(facecolor="black", label="ignore"))
    if len(ids) > _MAX_LEGEND:
        handles.append(Patch(color="white", label=f"+{len(ids) - _MAX_LEGEND} more"))
    n, ncol = len(panels), max(1, min(len(handles), 2 * len(panels)))
    top, bottom = 0.75, 0.1 + 0.25 * -(-len(handles) // ncol)  # inches: titles / legend rows
    fig_w, fig_h = panel_w * n, top + panel_h + bottom
    fig = Figure(figsize=(fig_w, fig_h), dpi=100)  # fixed layout: fast and deterministic
    for i, (name, arr) in enumerate(panels):
        rect = (i / n + 0.05 / fig_w, bottom / fig_h, 1 / n - 0.1 / fig_w, panel_h / fig_h)
        ax = fig.add_axes(rect)
        ax.imshow(arr, interpolation="nearest")
        ax.set_title(name, fontsize=9)
        ax.set_axis_off()
    fig.suptitle(suspect_caption(suspect), fontsize=10, y=1 - 0.06 / fig_h, va="top")
    if handles:
        fig.legend(
            handles=handles,
            loc="lower center",
            ncol=ncol,
            fontsize=8,
            frameon=False,
            bbox_to_anchor=(0.5, 0.0),
            borderaxespad=0.2,
        )
    return fig


def render_suspect(
    suspect: SuspectImage,
    class_names: Sequence[str] | None = None,
    palette: Tensor | None = None,
    ignore_index: int | None = None,
    low_score_threshold: float = 0.5,
) -> np.ndarray:
    """Render one suspect as a single RGB picture.

    Panels, left to right: ``image`` (omitted when ``suspect.image`` is None), ``given mask``,
    ``predicted mask`` and ``suspicious pixels`` (:func:`suspicious_pixel_map`; its title gives the
    share of pixels scoring below ``low_score_threshold``). The title is :func:`suspect_caption`;
    a legend names the classes present in either mask (the 12 most frequent) with their colours.

    Args:
        suspect: The image to draw.
        class_names: Names indexed by class id; ``"class {id}"`` is used when missing.
        palette: ``(K, 3)`` uint8 colours; defaults to :func:`default_palette`.
        ignore_index: Class id drawn in black and labelled ``ignore``.
        low_score_threshold: Pixel score below which a pixel counts as suspicious, in ``[0, 1]``.

    Returns:
        A ``(H, W, 3)`` uint8 array.

    Examples:
        >>> s = SuspectImage(1, 0.2, "softmin", torch.zeros(8, 8, dtype=torch.long),
        ...                  torch.ones(8, 8, dtype=torch.long), torch.full((8, 8), 0.3))
        >>> arr = render_suspect(s, class_names=["road", "car"])
        >>> arr.dtype, arr.ndim, arr.shape[2]
        (dtype('uint8'), 3, 3)

    """
    fig = render_suspect_figure(suspect, class_names, palette, ignore_index, low_score_threshold)
    return figure_to_array(fig)
