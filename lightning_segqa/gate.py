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
    """Raised when a label-quality gate fails with ``on_fail="raise"``.

    Attributes:
        fraction: share of scored images that are suspects.
        limit: the largest acceptable share (``max_suspect_fraction``).
        method: the score used.
        suspects: dataset indexes of the suspect images, worst first.
        names: their names (None where unknown), aligned with ``suspects``.

    Examples:
        >>> r = LabelQualityReport(torch.arange(3), {"softmin": torch.tensor([0.01, 0.5, 0.9])}, names=["a", "b", "c"])
        >>> err = LabelQualityError.from_decision(evaluate_gate(r, threshold=0.1, max_suspect_fraction=0.0))
        >>> err.fraction, err.limit, err.method, err.suspects, err.names
        (0.3333333333333333, 0.0, 'softmin', [0], ['a'])
    """

    def __init__(
        self,
        message: str,
        fraction: float | None = None,
        limit: float | None = None,
        method: str | None = None,
        suspects: Sequence[int] = (),
        names: Sequence[str | None] | None = None,
    ) -> None:
        super().__init__(message)
        self.fraction = fraction
        self.limit = limit
        self.method = method
        self.suspects = [int(i) for i in suspects]
        self.names = list(names) if names is not None else [None] * len(self.suspects)

    def __reduce__(self) -> tuple:  # keeps the attributes through pickling (e.g. from a spawned process)
        return (type(self), (str(self), self.fraction, self.limit, self.method, self.suspects, self.names))

    @classmethod
    def from_decision(cls, decision: GateDecision) -> LabelQualityError:
        """The error for a failed :class:`GateDecision`, its figures and suspects as attributes."""
        return cls(
            decision.message,
            fraction=decision.suspect_fraction,
            limit=decision.max_suspect_fraction,
            method=decision.method,
            suspects=decision.suspects,
            names=decision.suspect_names,
        )


@dataclass(frozen=True)
class GateDecision:
    """The outcome of :func:`evaluate_gate`.

    Attributes:
        passed: whether the report meets the limit.
        method: the score used.
        threshold: images scoring below it are suspects (None: the default rule picked them).
        suspect_fraction: share of scored images that are suspects.
        max_suspect_fraction: the limit.
        num_images: how many images the report scored.
        worst: ``(index, score)`` of the worst images, worst first.
        worst_names: names of the ``worst`` images (None where unknown).
        suspects: indexes of every suspect, worst first.
        suspect_names: names of the ``suspects`` (None where unknown).
    """

    passed: bool
    method: str
    threshold: float | None
    suspect_fraction: float
    max_suspect_fraction: float
    num_images: int
    worst: list[tuple[int, float]] = field(default_factory=list)
    worst_names: list[str | None] = field(default_factory=list)
    suspects: list[int] = field(default_factory=list)
    suspect_names: list[str | None] = field(default_factory=list)

    @property
    def message(self) -> str:
        """One readable paragraph: verdict, figures and the worst images by name and index."""
        verdict = "passed" if self.passed else "FAILED"
        names = self.worst_names or [None] * len(self.worst)
        worst = ", ".join(
            f"{name} (#{i}, {s:.3f})" if name else f"#{i} ({s:.3f})"
            for (i, s), name in zip(self.worst, names, strict=True)
        )
        rule = (
            f"are suspects by the default rule on {self.method}"
            if self.threshold is None
            else f"score below {self.threshold:g} by {self.method}"
        )
        return (
            f"Label-quality gate {verdict}: {self.suspect_fraction:.1%} of {self.num_images} images "
            f"({len(self.suspects)}) {rule} (limit {self.max_suspect_fraction:.1%}). "
            f"Worst images: {worst or 'none'}."
        )


def check_gate_args(method: str, threshold: float | None, max_suspect_fraction: float) -> None:
    """Validate gate arguments, naming what was wrong.

    Examples:
        >>> check_gate_args("softmin", 0.1, 1.5)
        Traceback (most recent call last):
        ...
        ValueError: `max_suspect_fraction` must lie in [0, 1], got 1.5.
    """
    if not isinstance(method, str):
        raise TypeError(f"`method` must be a method name, got {type(method).__name__}.")
    if threshold is not None and (
        isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or math.isnan(threshold)
    ):
        raise ValueError(f"`threshold` must be a number, or None for the default rule, got {threshold!r}.")
    if (
        isinstance(max_suspect_fraction, bool)
        or not isinstance(max_suspect_fraction, (int, float))
        or not 0 <= max_suspect_fraction <= 1
    ):
        raise ValueError(f"`max_suspect_fraction` must lie in [0, 1], got {max_suspect_fraction!r}.")


def suspect_fraction(report: LabelQualityReport, method: str, threshold: float | None = None) -> float:
    """Share of images whose ``method`` score is below ``threshold`` (NaN scores are not suspects).

    With ``threshold=None`` the default rule (:data:`~lightning_segqa.suspect_rule.DEFAULT_RULE`)
    picks the suspects.

    Examples:
        >>> r = LabelQualityReport(torch.arange(4), {"softmin": torch.tensor([0.05, 0.5, 0.02, 0.9])})
        >>> suspect_fraction(r, "softmin", 0.1)
        0.5
    """
    return len(report.suspects(method, threshold=threshold)) / max(len(report), 1)


def evaluate_gate(
    report: LabelQualityReport,
    method: str = "softmin",
    threshold: float | None = None,
    max_suspect_fraction: float = 0.05,
    num_worst: int = 5,
) -> GateDecision:
    """Decide whether a report passes: at most ``max_suspect_fraction`` of images are suspects.

    Args:
        report: the label-quality report.
        method: score to use.
        threshold: images scoring below it count as suspects (None: the default rule,
            :data:`~lightning_segqa.suspect_rule.DEFAULT_RULE`).
        max_suspect_fraction: the largest acceptable share of suspects.
        num_worst: how many worst images the decision lists.

    Returns:
        The decision; images are named where the report has names.

    Examples:
        >>> r = LabelQualityReport(torch.arange(4), {"softmin": torch.tensor([0.05, 0.5, 0.02, 0.9])})
        >>> d = evaluate_gate(r, threshold=0.1, max_suspect_fraction=0.25)
        >>> d.passed, d.worst[0][0], d.suspects
        (False, 2, [2, 0])
    """
    check_gate_args(method, threshold, max_suspect_fraction)
    suspects = report.suspects(method, threshold=threshold).tolist()
    fraction = len(suspects) / max(len(report), 1)
    worst_idx = report.suspects(method, k=num_worst).tolist()
    pos = {int(i): p for p, i in enumerate(report.indexes.tolist())}
    scores = report.scores[method]

    def names(indexes: list[int]) -> list[str | None]:
        return [(report.names[pos[i]] or None) if report.names is not None else None for i in indexes]

    return GateDecision(
        passed=fraction <= max_suspect_fraction,
        method=method,
        threshold=None if threshold is None else float(threshold),
        suspect_fraction=fraction,
        max_suspect_fraction=float(max_suspect_fraction),
        num_images=len(report),
        worst=[(i, float(scores[pos[i]])) for i in worst_idx],
        worst_names=names(worst_idx),
        suspects=suspects,
        suspect_names=names(suspects),
    )


def indexes_to_keep(
    report: LabelQualityReport,
    method: str = "softmin",
    threshold: float | None = None,
    k: int | None = None,
    train_indexes: Sequence[int] | Tensor | None = None,
) -> Tensor:
    """Training indexes with the suspects removed, to retrain on cleaner data.

    Args:
        report: the label-quality report.
        method: score to rank by.
        threshold: drop images scoring below it.
        k: drop (at most) the ``k`` worst images; with ``threshold`` both apply. With neither,
            the default rule (:data:`~lightning_segqa.suspect_rule.DEFAULT_RULE`) picks the images to drop.
        train_indexes: the indexes to filter (default: every index in the report).

    Returns:
        Sorted int64 indexes to keep.

    Examples:
        >>> r = LabelQualityReport(torch.arange(4), {"softmin": torch.tensor([0.05, 0.5, 0.02, 0.9])})
        >>> indexes_to_keep(r, threshold=0.1).tolist()
        [1, 3]
        >>> indexes_to_keep(r, threshold=None, k=1).tolist()
        [0, 1, 3]
    """
    drop = report.suspects(method, k=k, threshold=threshold)
    base = report.indexes if train_indexes is None else torch.as_tensor(train_indexes, dtype=torch.long)
    return torch.sort(base[~torch.isin(base, drop)]).values
