"""Pictures of suspect masks and detection curves, drawn without a global matplotlib backend.

Figures are :class:`matplotlib.figure.Figure` objects drawn on their own ``FigureCanvasAgg``: this
module never calls ``matplotlib.use`` or imports ``pyplot``, and imports matplotlib lazily.
"""

from __future__ import annotations

import colorsys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor

if TYPE_CHECKING:
    from matplotlib.figure import Figure

# tab10 followed by its light variants: readable, well separated first colours.
_BASE_COLOURS = (
    "1f77b4ff7f0e2ca02cd627289467bd8c564be377c27f7f7fbcbd2217becf"
    "aec7e8ffbb7898df8aff9896c5b0d5c49c94f7b6d2c7c7c7dbdb8d9edae5"
)
HEAT_RGB = (255, 0, 0)  # colour of a pixel whose given class got probability 0
ISSUE_RGB = (0, 255, 255)  # outline of confident-learning issue pixels
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


def figure_to_array(fig: Figure) -> np.ndarray:
    """Draw a matplotlib figure with Agg and return its pixels as ``(H, W, 3)`` uint8.

    Examples:
        >>> from matplotlib.figure import Figure
        >>> figure_to_array(Figure(figsize=(2, 1), dpi=50)).shape
        (50, 100, 3)

    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    if not isinstance(fig, Figure):
        raise TypeError(f"`fig` must be a matplotlib Figure, got {type(fig).__name__}")
    canvas = fig.canvas if isinstance(fig.canvas, FigureCanvasAgg) else FigureCanvasAgg(fig)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()


def _rank_preds(score: Tensor) -> Tensor:
    """Order-preserving map of ``-score`` into [0, 1] (ties kept): torchmetrics adds no sigmoid."""
    uniq, inv = torch.unique(-score.detach().cpu().double(), return_inverse=True)
    return inv.double() / max(len(uniq) - 1, 1)


def plot_detection_curves(scores: Mapping[str, Tensor], is_mislabeled: Tensor) -> Figure:
    """ROC and precision-recall curves for finding mislabeled images, one line per method.

    Lower score means "predicted mislabeled", so ``-score`` is the positive-class score. Legends
    carry ``AUROC=...`` and ``AUPRC=...`` (average precision) with three decimals. NaN scores
    are dropped for that method (and counted in its legend entry).

    Args:
        scores: Method name -> 1-D tensor of per-image scores.
        is_mislabeled: 1-D bool/0-1 tensor, same length, with both classes present.

    Returns:
        A figure with two axes: ROC (left) and precision-recall (right).

    Examples:
        >>> fig = plot_detection_curves({"softmin": torch.tensor([0.1, 0.9, 0.2, 0.8])},
        ...                             torch.tensor([True, False, False, False]))
        >>> [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
        ['softmin (AUROC=1.000)']

    """
    from matplotlib.figure import Figure
    from torchmetrics.functional import classification as tmc

    if not isinstance(scores, Mapping) or not scores:
        raise TypeError(f"`scores` must be a non-empty mapping name -> Tensor, got {scores!r:.80}")
    if not isinstance(is_mislabeled, Tensor) or is_mislabeled.ndim != 1:
        raise TypeError(f"`is_mislabeled` must be a 1-D Tensor, got {_describe(is_mislabeled)}")
    labels = is_mislabeled.detach().cpu()
    if not bool(((labels == 0) | (labels == 1)).all()):
        raise ValueError("`is_mislabeled` must hold only 0/1 or bools")
    labels = labels.long()
    n_pos = int(labels.sum())
    if n_pos in (0, len(labels)):
        raise ValueError(f"`is_mislabeled` needs both classes, got {n_pos}/{len(labels)} positive")
    fig = Figure(figsize=(10, 4.2), dpi=100, layout="constrained")
    ax_roc, ax_pr = fig.subplots(1, 2)
    for name, score in scores.items():
        if not isinstance(score, Tensor) or score.shape != labels.shape:
            raise ValueError(
                f"`scores[{name!r}]` must be a Tensor of shape {tuple(labels.shape)}, got {_describe(score)}"
            )
        keep = ~torch.isnan(score.detach().cpu().double())
        y, note = labels[keep], f", {int((~keep).sum())} NaN dropped" if not keep.all() else ""
        if int(y.sum()) in (0, len(y)):
            raise ValueError(f"`scores[{name!r}]` leaves one class after dropping NaN scores")
        preds = _rank_preds(score.detach().cpu()[keep])
        fpr, tpr, _ = tmc.binary_roc(preds, y)
        prec, rec, _ = tmc.binary_precision_recall_curve(preds, y)
        auroc = float(tmc.binary_auroc(preds, y))
        auprc = float(tmc.binary_average_precision(preds, y))
        ax_roc.plot(fpr.numpy(), tpr.numpy(), label=f"{name} (AUROC={auroc:.3f}{note})")
        ax_pr.step(rec.numpy(), prec.numpy(), "-", where="post", label=f"{name} (AUPRC={auprc:.3f}{note})")
    ax_roc.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=1)
    ax_pr.axhline(n_pos / len(labels), color="grey", linestyle=":", linewidth=1)
    lims = {"xlim": (0, 1), "ylim": (0, 1.02)}
    ax_roc.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC", **lims)
    ax_pr.set(xlabel="recall", ylabel="precision", title="precision-recall", **lims)
    ax_roc.legend(loc="lower right", fontsize=8)
    ax_pr.legend(loc="lower left", fontsize=8)
    fig.suptitle(f"finding mislabeled images ({n_pos} of {len(labels)} mislabeled)", fontsize=10)
    return fig
