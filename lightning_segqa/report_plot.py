"""``LabelQuality.plot``: the score distribution of each method and, with known errors, ROC and PR curves."""

from __future__ import annotations

from typing import Any

import torch

from lightning_segqa.report import LabelQualityReport

__all__ = ["plot_report"]


def plot_report(report: LabelQualityReport, ax: Any = None) -> tuple[Any, Any]:
    """Draw each method's score distribution; with known errors (both kinds present) also ROC and PR curves.

    Args:
        report: the report to draw.
        ax: a matplotlib ``Axes`` to draw the distributions on (then no curves are drawn);
            None: a new figure.

    Returns:
        ``(figure, axes)``: one ``Axes`` (distributions), or three (distributions, ROC,
        precision-recall) when ``report.is_mislabeled`` holds both clean and mislabeled images.
        Lower scores mean "more likely mislabeled"; NaN scores are left out.

    Raises:
        TypeError: ``report`` is not a :class:`~lightning_segqa.LabelQualityReport`.

    Examples:
        >>> report = LabelQualityReport(torch.arange(4), {"softmin": torch.tensor([0.1, 0.9, 0.8, 0.7])},
        ...                             is_mislabeled=torch.tensor([True, False, False, False]))
        >>> fig, axes = plot_report(report)
        >>> [a.get_title() for a in axes]
        ['score distributions', 'ROC', 'precision-recall']
    """
    from matplotlib.figure import Figure
    from torchmetrics.functional import classification as tmc

    if not isinstance(report, LabelQualityReport):
        raise TypeError(f"`report` must be a LabelQualityReport (from `LabelQuality.compute()`), got {type(report)}.")
    truth = report.is_mislabeled
    curves = ax is None and truth is not None and 0 < int(truth.sum()) < truth.numel()
    if ax is None:
        fig = Figure(figsize=(14 if curves else 5, 4.2), dpi=100, layout="constrained")
        axes = fig.subplots(1, 3) if curves else [fig.subplots()]
    else:
        fig, axes = ax.figure, [ax]
    for name, score in report.scores.items():
        values = score.detach().cpu().double()
        values = values[~torch.isnan(values)]
        axes[0].hist(values.numpy(), bins=20, range=(0.0, 1.0), histtype="step", label=f"{name} ({len(values)})")
        if curves:
            keep = ~torch.isnan(score.detach().cpu())
            preds, y = -score.detach().cpu()[keep].double(), truth[keep].long()
            fpr, tpr, _ = tmc.binary_roc(preds, y)
            precision, recall, _ = tmc.binary_precision_recall_curve(preds, y)
            axes[1].plot(fpr.numpy(), tpr.numpy(), label=name)
            axes[2].step(recall.numpy(), precision.numpy(), where="post", label=name)
    axes[0].set(xlabel="score (lower = more likely mislabeled)", ylabel="images", title="score distributions")
    axes[0].legend(fontsize=8)
    if curves:
        axes[1].plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=1)
        axes[1].set(xlabel="false positive rate", ylabel="true positive rate", title="ROC", xlim=(0, 1), ylim=(0, 1.02))
        axes[2].set(xlabel="recall", ylabel="precision", title="precision-recall", xlim=(0, 1), ylim=(0, 1.02))
        axes[1].legend(loc="lower right", fontsize=8)
        axes[2].legend(loc="lower left", fontsize=8)
    return fig, (list(axes) if curves else axes[0])
