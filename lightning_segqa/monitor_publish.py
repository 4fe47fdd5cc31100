"""What a ``LabelQualityMonitor`` hands to loggers and to disk for one report, with or without a ``Trainer``."""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import Any

from lightning_segqa.publishing import queue_report_files, report_rows, table_columns
from lightning_segqa.report import DETECTION_METRICS, LabelQualityReport
from lightning_segqa.writing import run_in_background

__all__ = ["is_remote", "publish_report", "scalar_values", "suspect_entries"]


def publish_report(
    monitor: Any,
    report: LabelQualityReport,
    loggers: Sequence[Any],
    out_dir: str | Path,
    step: int = 0,
    tag: str = "",
    heap: Any = None,
) -> list[Path] | list[str]:
    """Draw ``monitor``'s suspects, ranked table and curves to ``loggers``; queue the report files in ``out_dir``.

    Args:
        monitor: the :class:`~lightning_segqa.LabelQualityMonitor` whose settings (``rank_by``,
            ``top_k``, ``log_prefix``, class names, palette) and suspects are used.
        report: the report to publish.
        loggers: Lightning loggers (e.g. ``trainer.loggers``; empty: files only).
        out_dir: folder of ``label_quality{tag}.json``/``.csv`` (and ``detection_curves{tag}.png``);
            a remote URL (``s3://...``, ``gs://...``, any fsspec protocol) gets the files written
            locally first, then copied there by the writer thread.
        step: the loggers' step.
        tag: suffix of logged names and file names (e.g. ``"_dataloader_1"``).
        heap: the :class:`~lightning_segqa.suspects.SuspectHeap` to draw (default: the monitor's).

    Returns:
        The paths (URLs for a remote ``out_dir``) the files will have once the writer thread
        wrote them (:func:`~lightning_segqa.report.wait_for_writes` waits for it).

    Examples:
        >>> import tempfile, torch
        >>> from lightning_segqa import LabelQualityMonitor
        >>> from lightning_segqa.report import wait_for_writes
        >>> report = LabelQualityReport(torch.arange(3), {"softmin": torch.tensor([0.9, 0.2, 0.7])})
        >>> paths = publish_report(LabelQualityMonitor(3), report, [], tempfile.mkdtemp())
        >>> wait_for_writes(); [p.name for p in paths if p.is_file()]
        ['label_quality.json', 'label_quality.csv']
    """
    from lightning_segqa.loggers import adapters_for

    key = f"{monitor.log_prefix}{tag}"
    adapters = adapters_for(list(loggers))
    suspects = monitor.suspect_images(report, heap) if monitor.draw_pictures and adapters else []
    rows = report_rows(report, monitor.rank_by, monitor.top_k or 10) if adapters else []
    columns = table_columns(report)
    figure = None
    truth = report.is_mislabeled
    if truth is not None and 0 < int(truth.sum()) < truth.numel():
        from lightning_segqa.visuals import plot_detection_curves

        figure = plot_detection_curves(report.scores, report.is_mislabeled)
    for adapter in adapters:
        if suspects:
            adapter.log_suspects(
                f"{key}/suspects", suspects, step, monitor.class_names, monitor.palette, monitor.ignore_index
            )
        adapter.log_table(f"{key}/ranking", columns, rows, step)
        if figure is not None:
            adapter.log_figure(f"{key}/detection_curves", figure, step)
    # files go through a writer thread: the loop never waits on the disk (see the monitor's `teardown`)
    if not is_remote(out_dir):
        return queue_report_files(report, Path(out_dir), tag, monitor.rank_by, figure, adapters)
    staging = Path(tempfile.mkdtemp(prefix="segqa_report_"))
    local = queue_report_files(report, staging, tag, monitor.rank_by, figure, adapters)
    urls = [f"{str(out_dir).rstrip('/')}/{p.name}" for p in local]
    # after the writes and uploads (one writer thread, in order); the staging copy stays while loggers may read it
    run_in_background(partial(_copy_to_remote, local, urls, keep_local=bool(adapters)))
    return urls


def is_remote(path: str | Path | None) -> bool:
    """True for a URL with a protocol other than ``file`` (e.g. ``s3://bucket/run``), as Lightning decides.

    Examples:
        >>> is_remote("s3://bucket/run"), is_remote("memory://run"), is_remote("runs/x"), is_remote("file:///tmp")
        (True, True, False, False)
    """
    if path is None or isinstance(path, Path):
        return False
    from fsspec.utils import get_protocol

    return "://" in str(path) and get_protocol(str(path)) not in ("file", "local")


def _copy_to_remote(local: Sequence[Path], urls: Sequence[str], keep_local: bool) -> None:
    from lightning.fabric.utilities.cloud_io import get_filesystem

    fs = get_filesystem(urls[0])
    fs.makedirs(urls[0].rsplit("/", 1)[0], exist_ok=True)
    for path, url in zip(local, urls, strict=True):
        if path.is_file():
            fs.put_file(str(path), url)
            if not keep_local:
                path.unlink()


def scalar_values(monitor: Any, report: LabelQualityReport, prefix: str) -> dict[str, float]:
    """The scalars the monitor logs: ``{prefix}/suspect_fraction`` and, with known errors, detection metrics.

    Examples:
        >>> import torch
        >>> from lightning_segqa import LabelQualityMonitor
        >>> report = LabelQualityReport(torch.arange(4), {"softmin": torch.tensor([0.9, 0.8, 0.1, 0.7])})
        >>> scalar_values(LabelQualityMonitor(3, suspect_threshold=0.5), report, "segqa")
        {'segqa/suspect_fraction': 0.25}
    """
    from lightning_segqa.gate import suspect_fraction

    values = {f"{prefix}/suspect_fraction": float(suspect_fraction(report, monitor.rank_by, monitor.suspect_threshold))}
    if report.is_mislabeled is not None:
        for method, metrics in report.detection().items():
            for name in DETECTION_METRICS:
                values[f"{prefix}/{name}_{method}"] = float(metrics[name])
    return values


def suspect_entries(monitor: Any, report: LabelQualityReport, heap: Any) -> list:
    """The suspects drawn in ``heap``, with ``report``'s scores and names (see ``SuspectHeap.entries``).

    Examples:
        >>> import torch
        >>> from lightning_segqa import LabelQualityMonitor
        >>> monitor = LabelQualityMonitor(3)
        >>> suspect_entries(monitor, LabelQualityReport(torch.arange(1), {"softmin": torch.ones(1)}), monitor.heap)
        []
    """
    scores = report.scores.get(monitor.heap_method or "", None)
    by_index = {} if scores is None else dict(zip(report.indexes.tolist(), scores.tolist(), strict=True))
    entries = heap.entries(
        monitor.heap_method or monitor.rank_by,
        report.details.get("cl_cutoff"),
        monitor.ignore_index,
        by_index,
        class_thresholds=report.details.get("class_confidence"),
    )
    if report.names is not None:
        for entry in entries:
            if getattr(entry, "name", None) is None and entry.index in by_index:
                entry.name = report.name_of(entry.index)
    return entries
