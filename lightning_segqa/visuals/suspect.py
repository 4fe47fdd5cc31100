"""One suspect image (:class:`SuspectImage`) and its picture: image, masks, pixel scores, marks.

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
    HEAT_CMAP,
    _describe,
    _image_hwc,
    _np,
    colorize_mask,
    default_palette,
    mark_colour,
    mark_pixels,
    score_heat_map,
)

if TYPE_CHECKING:
    from matplotlib.figure import Figure

_MAX_LEGEND = 12
_REQUIRED = ("target", "pred", "pixel_scores")
MARK_CL_ISSUES = "confident-learning label issues"  # below the dataset-level cutoff of confident learning
MARK_CONFIDENT = "confidently predicted as another class"  # p of the predicted class >= its usual level


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
        issue_mask: Optional ``(H, W)`` bool mask of the pixels the evidence says are mislabeled
            (marked in the picture).
        is_mislabeled: Ground truth when known.
        name: Optional image name (e.g. file stem), shown in the caption.
        mark_rule: What marked ``issue_mask`` (e.g. :data:`MARK_CONFIDENT`), shown in the legend.

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
    name: str | None = None  # the image's name (e.g. file stem) when the dataset gives one
    mark_rule: str | None = None

    def __post_init__(self) -> None:
        for name in ("name", "mark_rule"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, str):
                raise TypeError(f"`{name}` must be a str or None, got {type(value).__name__}")
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
    """One-line caption: index, name when known, method, score and, when known, whether it is a true error.

    Examples:
        >>> m = torch.zeros(2, 2, dtype=torch.long)
        >>> s = SuspectImage(7, 0.0312, "softmin", m, m, torch.ones(2, 2), is_mislabeled=True)
        >>> suspect_caption(s)
        'idx 7 | softmin score 0.0312 | true error'
        >>> suspect_caption(SuspectImage(7, 0.0312, "softmin", m, m, torch.ones(2, 2), name="0001TP_008550"))
        'idx 7 (0001TP_008550) | softmin score 0.0312'

    """
    name = f" ({s.name})" if s.name else ""
    text = f"idx {s.index}{name} | {s.method} score {float(s.score):.4f}"
    if s.is_mislabeled is not None:
        text += " | true error" if s.is_mislabeled else " | clean"
    return text


def _mark_label(suspect: SuspectImage, marked: Tensor) -> str:
    n, share = int(marked.sum()), float(marked.float().mean()) if marked.numel() else 0.0
    return f"marked: {suspect.mark_rule or 'suspect pixels'} ({n} px, {share:.1%})"


def render_suspect_figure(
    suspect: SuspectImage,
    class_names: Sequence[str] | None = None,
    palette: Tensor | None = None,
    ignore_index: int | None = None,
) -> Figure:
    """Build the suspect figure (see :func:`render_suspect`) and return it undrawn.

    Examples:
        >>> s = SuspectImage(1, 0.2, "softmin", torch.zeros(8, 8, dtype=torch.long),
        ...                  torch.ones(8, 8, dtype=torch.long), torch.full((8, 8), 0.3))
        >>> [ax.get_title() for ax in render_suspect_figure(s).axes]
        ['given mask', 'predicted mask', 'P(given class)', '']

    """
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    if not isinstance(suspect, SuspectImage):
        raise TypeError(f"`suspect` must be a SuspectImage, got {type(suspect).__name__}")
    target, pred = suspect.target.detach().cpu().long(), suspect.pred.detach().cpu().long()
    both = torch.cat([target.flatten(), pred.flatten()])
    ids, counts = torch.unique(both[both != ignore_index] if ignore_index is not None else both, return_counts=True)
    if palette is None:
        top = int(ids.max()) + 1 if ids.numel() else 1
        palette = default_palette(max(top, len(class_names or ()), 1))
    h, w = target.shape
    marked = suspect.issue_mask.detach().cpu().bool() if suspect.issue_mask is not None else None
    colour, width = mark_colour(palette), -(-max(h, w) // 100)  # 1 px per 100: visible at the panel size

    def marks(arr: np.ndarray, fill: float = 0.0) -> np.ndarray:
        return arr if marked is None else mark_pixels(arr, marked, colour, fill=fill, width=width)

    panels: list[tuple[str, np.ndarray]] = []
    if suspect.image is not None:
        panels.append(("image", marks(_image_hwc(suspect.image), fill=0.4)))
    panels.append(("given mask", marks(_np(colorize_mask(target, palette, ignore_index)))))
    panels.append(("predicted mask", _np(colorize_mask(pred, palette, ignore_index))))
    panels.append(("P(given class)", marks(score_heat_map(suspect.pixel_scores))))

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
    if marked is not None:
        rgb = np.asarray(colour) / 255.0
        handles.append(Patch(facecolor=(*rgb, 0.4), edgecolor=rgb, linewidth=2, label=_mark_label(suspect, marked)))
    n, ncol = len(panels), max(1, min(len(handles), 2 * len(panels)))
    bar_w = 0.75  # inches right of the panels: colour bar and its labels
    top, bottom = 0.75, 0.1 + 0.25 * -(-len(handles) // ncol)  # inches: titles / legend rows
    fig_w, fig_h = panel_w * n + bar_w, top + panel_h + bottom
    fig = Figure(figsize=(fig_w, fig_h), dpi=100)  # fixed layout: fast and deterministic
    for i, (name, arr) in enumerate(panels):
        rect = ((i * panel_w + 0.05) / fig_w, bottom / fig_h, (panel_w - 0.1) / fig_w, panel_h / fig_h)
        ax = fig.add_axes(rect)
        ax.imshow(arr, interpolation="nearest")
        ax.set_title(name, fontsize=9)
        ax.set_axis_off()
    cax = fig.add_axes(((n * panel_w + 0.02) / fig_w, bottom / fig_h, 0.14 / fig_w, panel_h / fig_h))
    bar = fig.colorbar(ScalarMappable(norm=Normalize(0.0, 1.0), cmap=HEAT_CMAP), cax=cax)
    bar.set_ticks([0.0, 0.25, 0.5, 0.75, 1.0])
    bar.ax.tick_params(labelsize=7)
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
) -> np.ndarray:
    """Render one suspect as a single RGB picture.

    Panels, left to right: ``image`` (omitted when ``suspect.image`` is None), ``given mask``,
    ``predicted mask`` and ``P(given class)``, each pixel's score as a heat map
    (:func:`~lightning_segqa.visuals.pixel_maps.score_heat_map`, 0 red to 1 blue) with its
    colour bar. The pixels of ``suspect.issue_mask`` (those the evidence says are mislabeled)
    are outlined on the image, the given mask and the heat map, and tinted on the image, in
    :func:`~lightning_segqa.visuals.pixel_maps.mark_colour` (away from every class colour). The
    title is :func:`suspect_caption`; the legend names the classes present in either mask (the
    12 most frequent) and says what marked the pixels and how many.

    Args:
        suspect: The image to draw.
        class_names: Names indexed by class id; ``"class {id}"`` is used when missing.
        palette: ``(K, 3)`` uint8 colours; defaults to :func:`default_palette`.
        ignore_index: Class id drawn in black and labelled ``ignore``.

    Returns:
        A ``(H, W, 3)`` uint8 array.

    Examples:
        >>> s = SuspectImage(1, 0.2, "softmin", torch.zeros(8, 8, dtype=torch.long),
        ...                  torch.ones(8, 8, dtype=torch.long), torch.full((8, 8), 0.3))
        >>> arr = render_suspect(s, class_names=["road", "car"])
        >>> arr.dtype, arr.ndim, arr.shape[2]
        (dtype('uint8'), 3, 3)

    """
    return figure_to_array(render_suspect_figure(suspect, class_names, palette, ignore_index))
