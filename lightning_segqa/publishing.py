"""What the monitor hands to loggers besides pictures: the ranked table's rows and the report files' upload."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lightning_segqa.report import SHORT_NAMES, LabelQualityReport


def table_columns(report: LabelQualityReport) -> list[str]:
    """Columns of the ranked table: rank, index, name (when the report has names), each method, error.

    Examples:
        >>> import torch
        >>> table_columns(LabelQualityReport(torch.arange(2), {"softmin": torch.rand(2)}, names=["a", "b"]))
        ['rank', 'index', 'name', 'SM']
    """
    columns = ["rank", "index", *(["name"] if report.names is not None else [])]
    columns += [SHORT_NAMES.get(m, m) for m in report.methods]
    if report.is_mislabeled is not None:
        columns.append("error")
    return columns


def report_rows(report: LabelQualityReport, method: str, k: int) -> list[list[Any]]:
    """Rows of the ranked table (see :func:`table_columns`) for the ``k`` worst images by ``method``.

    Examples:
        >>> import torch
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


def upload_report_files(adapters: Sequence[Any], paths: Sequence[Path]) -> None:
    """Attach written report files to every logger's run (W&B run files, MLflow artifacts; others: no-op).

    Examples:
        >>> upload_report_files([], [Path("label_quality.json")])  # no logger: nothing to do
    """
    written = [Path(p) for p in paths if Path(p).is_file()]
    for adapter in adapters:
        adapter.upload_files(written)
