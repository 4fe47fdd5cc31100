"""The ranked table of a report: its columns and rows (for loggers) and its plain-text form."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from lightning_segqa.detection import DETECTION_METRICS
from lightning_segqa.methods import short_name

if TYPE_CHECKING:
    from lightning_segqa.report import LabelQualityReport


def table_columns(report: LabelQualityReport) -> list[str]:
    """Columns of the ranked table: rank, index, name (when the report has names), each method, error.

    Examples:
        >>> import torch
        >>> from lightning_segqa.report import LabelQualityReport
        >>> table_columns(LabelQualityReport(torch.arange(2), {"softmin": torch.rand(2)}, names=["a", "b"]))
        ['rank', 'index', 'name', 'SM']
    """
    columns = ["rank", "index", *(["name"] if report.names is not None else [])]
    columns += [short_name(m) for m in report.methods]
    if report.is_mislabeled is not None:
        columns.append("error")
    return columns


def report_rows(report: LabelQualityReport, method: str, k: int) -> list[list[Any]]:
    """Rows of the ranked table (see :func:`table_columns`) for the ``k`` worst images by ``method``.

    Scores are rounded to 4 decimals; the error column (when known) holds bools.

    Raises:
        ValueError: ``method`` is not in the report, or ``k`` is not a non-negative int.

    Examples:
        >>> import torch
        >>> from lightning_segqa.report import LabelQualityReport
        >>> r = LabelQualityReport(torch.tensor([5, 6]), {"softmin": torch.tensor([0.9, 0.1])}, names=["a", "b"])
        >>> report_rows(r, "softmin", k=1)
        [[1, 6, 'b', 0.1]]
    """
    pos = {int(i): p for p, i in enumerate(report.indexes.tolist())}
    rows = []
    for rank, idx in enumerate(report.suspects(method, k=k).tolist(), start=1):
        p = pos[idx]
        name = [report.names[p]] if report.names is not None else []
        row: list[Any] = [rank, idx, *name, *(round(float(report.scores[m][p]), 4) for m in report.methods)]
        if report.is_mislabeled is not None:
            row.append(bool(report.is_mislabeled[p]))
        rows.append(row)
    return rows


def format_table(report: LabelQualityReport, method: str, k: int) -> str:
    """Render the ranked table used by ``str(report)`` and the command line.

    The ``k`` worst images by ``method`` (scores to 4 decimals, ``yes`` for known errors), then,
    when the report knows its errors, the detection metrics of every method.

    Raises:
        ValueError: ``method`` is not in the report, or ``k`` is not a non-negative int.

    Examples:
        >>> import torch
        >>> from lightning_segqa.report import LabelQualityReport
        >>> r = LabelQualityReport(torch.tensor([5, 6]), {"softmin": torch.tensor([0.9, 0.1])})
        >>> print(format_table(r, "softmin", k=1))
        2 images ranked by softmin (lower = more likely mislabeled); worst 1:
        rank  index      SM
           1      6  0.1000
    """
    named = report.names is not None
    rows = [
        [f"{v:.4f}" if isinstance(v, float) else ("yes" if v else "") if isinstance(v, bool) else str(v) for v in row]
        for row in report_rows(report, method, k)
    ]
    lines = [f"{len(report)} images ranked by {method} (lower = more likely mislabeled); worst {len(rows)}:"]
    lines += _columns([table_columns(report), *rows], left=2 if named else None)
    if report.is_mislabeled is not None:
        det = report.detection()
        lines += ["", f"Detection of {int(report.is_mislabeled.sum())} known errors:"]
        grid = [["method", "AUROC", "AUPRC", "Lift@T", "Lift@100"]]
        grid += [[m, *(f"{det[m][key]:.3f}" for key in DETECTION_METRICS)] for m in report.methods]
        lines += _columns(grid)
    return "\n".join(lines)


def _columns(rows: Sequence[Sequence[str]], left: int | None = None) -> list[str]:
    """Align ``rows`` in columns: right-aligned, except column ``left``."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return [
        "  ".join(c.ljust(w) if i == left else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True)))
        for r in rows
    ]
