"""ROC and precision-recall curves of how well scores find the mislabeled images.

:func:`plot_detection_curves` returns a :class:`matplotlib.figure.Figure` (one line per method,
AUROC/AUPRC in the legends); matplotlib and torchmetrics are imported lazily.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from lightning_segqa.visuals.pixel_maps import _describe

if TYPE_CHECKING:
    from matplotlib.figure import Figure


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
