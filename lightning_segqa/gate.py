"""Gating training (or a CI pipeline) on label quality, and retraining without the suspects."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor

from lightning_segqa.report import LabelQualityReport

ON_FAIL = ("warn", "stop", "raise")


class LabelQualityError(RuntimeError):
    """Raised when a label-quality gate fails with ``on_fail="raise"``."""


@dataclass(frozen=True)
class GateDecision:
    """The outcome of :func:`evaluate_gate`.

    Attributes:
        passed: whether the report meets the limit.
        method: the score used.
        threshold: images scoring below it are suspects.
        suspect_fraction: share of scored images that are suspects.
        max_suspect_fraction: the limit.
        worst: ``(index, score)`` of the worst images, worst first.
    """

    passed: bool
    method: str
    threshold: float
    suspect_fraction: float
    max_suspect_fraction: float
    num_images: int
    worst: list[tuple[int, float]] = field(default_factory=list)

    @property
    def message(self) -> str:
        """One readable paragraph: verdict, figures and the worst images."""
        verdict = "passed" if self.passed else "FAILED"
        worst = ", ".join(f"#{i} ({s:.3f})" for i, s in self.worst)
        return (
            f"Label-quality gate {verdict}: {self.suspect_fraction:.1%} of {self.num_images} images "
            f"score below {self.threshold:g} by {self.method} (limit {self.max_suspect_fraction:.1%}). "
            f"Worst images: {worst or 'none'}."
        )


def check_gate_args(method: str, threshold: float, max_suspect_fraction: float) -> None:
    """Validate gate arguments, naming what was wrong.

    Examples:
        >>> check_gate_args("softmin", 0.1, 1.5)
        Traceback (most recent call last):
        ...
        ValueError: `max_suspect_fraction` must lie in [0, 1], got 1.5.
    """
    if not isinstance(method, str):
        raise TypeError(f"`method` must be a method name, got {type(method).__name__}.")
    if not isinstance(threshold, (int, float)) or math.isnan(threshold):
        raise ValueError(f"`threshold` must be a number, got {threshold!r}.")
    if not isinstance(max_suspect_fraction, (int, float)) or not 0 <= max_suspect_fraction <= 1:
        raise ValueError(f"`max_suspect_fraction` must lie in [0, 1], got {max_suspect_fraction!r}.")


def suspect_fraction(report: LabelQualityReport, method: str, threshold: float) -> float:
    """Share of images whose ``method`` score is below ``threshold`` (NaN scores are not suspects).

    Examples:
        >>> r = LabelQualityReport(torch.arange(4), {"softmin": torch.tensor([0.05, 0.5, 0.02, 0.9])})
        >>> suspect_fraction(r, "softmin", 0.1)
        0.5
    """
    return len(report.suspects(method, threshold=threshold)) / max(len(report), 1)


def evaluate_gate(
    report: LabelQualityReport,
    method: str = "softmin",
    threshold: float = 0.1,
    max_suspect_fraction: float = 0.05,
    num_worst: int = 5,
) -> GateDecision:
    """Decide whether a report passes: at most ``max_suspect_fraction`` of images below ``threshold``.

    Args:
        report: the label-quality report.
        method: score to use.
        threshold: images scoring below it count as suspects.
        max_suspect_fraction: the largest acceptable share of suspects.
        num_worst: how many worst images the decision lists.

    Returns:
        The decision.

    Examples:
        >>> r = LabelQualityReport(torch.arange(4), {"softmin": torch.tensor([0.05, 0.5, 0.02, 0.9])})
        >>> d = evaluate_gate(r, threshold=0.1, max_suspect_fraction=0.25)
        >>> d.passed, d.worst[0][0]
        (False, 2)
    """
    check_gate_args(method, threshold, max_suspect_fraction)
    fraction = suspect_fraction(report, method, threshold)
    worst_idx = report.suspects(method, k=num_worst)
    pos = {int(i): p for p, i in enumerate(report.indexes.tolist())}
    scores = report.scores[method]
    return GateDecision(
        passed=fraction <= max_suspect_fraction,
        method=method,
        threshold=float(threshold),
        suspect_fraction=fraction,
        max_suspect_fraction=float(max_suspect_fraction),
        num_images=len(report),
        worst=[(int(i), float(scores[pos[int(i)]])) for i in worst_idx.tolist()],
    )


def indices_to_keep(
    report: LabelQualityReport,
    method: str = "softmin",
    threshold: float | None = 0.1,
    k: int | None = None,
    train_indices: Sequence[int] | Tensor | None = None,
) -> Tensor:
    """Training indices with the suspects removed, to retrain on cleaner data.

    Args:
        report: the label-quality report.
        method: score to rank by.
        threshold: drop images scoring below it.
        k: drop (at most) the ``k`` worst images; with ``threshold`` both apply.
        train_indices: the indices to filter (default: every index in the report).

    Returns:
        Sorted int64 indices to keep.

    Examples:
        >>> r = LabelQualityReport(torch.arange(4), {"softmin": torch.tensor([0.05, 0.5, 0.02, 0.9])})
        >>> indices_to_keep(r, threshold=0.1).tolist()
        [1, 3]
        >>> indices_to_keep(r, threshold=None, k=1).tolist()
        [0, 1, 3]
    """
    if threshold is None and k is None:
        raise ValueError("Give `threshold`, `k` or both to say which images to drop.")
    drop = report.suspects(method, k=k, threshold=threshold)
    base = report.indexes if train_indices is None else torch.as_tensor(train_indices, dtype=torch.long)
    return torch.sort(base[~torch.isin(base, drop)]).values
