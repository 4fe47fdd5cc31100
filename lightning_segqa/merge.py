"""Merge the held-out states of a cross-validation run's folds into one report.

Folds can run in one call or as separate jobs (``folds=[i]``); :func:`merge_folds` reads their
``fold_<i>/heldout.pt`` files, checks that every sample was scored exactly once, picks the
dataset-level thresholds (TCCP, confident learning) over all folds together, logs the report
once to the logger and writes ``work_dir/label_quality.json`` and ``.csv``.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.loggers import TensorBoardLogger

from lightning_segqa.callback import LabelQualityMonitor
from lightning_segqa.fingerprint import callable_name
from lightning_segqa.folds import heldout_path, load_record, missing_folds
from lightning_segqa.report import LabelQualityReport, wait_for_writes

__all__ = ["merge_folds", "merged_monitor", "monitor_config", "monitor_from_config", "never_distributed"]


def never_distributed() -> bool:
    """A metric's ``distributed_available_fn`` that keeps it from gathering across processes.

    Examples:
        >>> never_distributed()
        False
    """
    return False


def monitor_config(monitor: LabelQualityMonitor, scoring_only: bool = False) -> dict[str, Any]:
    """The monitor's settings as JSON: what changes scores (``scoring_only``) or all to rebuild it.

    Examples:
        >>> monitor_config(LabelQualityMonitor(3, ignore_index=255), scoring_only=True)["ignore_index"]
        255
    """
    metric = monitor.metric
    config: dict[str, Any] = {
        "num_classes": monitor.num_classes,
        "methods": list(metric.methods),
        "temperature": metric.temperature,
        "ignore_index": monitor.ignore_index,
        "downsample": metric.downsample,
        "connectivity": metric.connectivity,
        "input_format": monitor.input_format,
        "keys": dict(monitor.keys),
        "extract": callable_name(monitor.extract),
    }
    if not scoring_only:
        config.update(
            rank_by=monitor.rank_by,
            suspect_threshold=monitor.suspect_threshold,
            top_k=monitor.top_k,
            class_names=monitor.class_names,
            log_prefix=monitor.log_prefix,
        )
    return config


def monitor_from_config(config: dict[str, Any]) -> LabelQualityMonitor:
    """Rebuild a monitor (without ``extract``, palette or gate) from :func:`monitor_config`.

    Examples:
        >>> monitor_from_config(monitor_config(LabelQualityMonitor(4, top_k=3))).top_k
        3
    """
    return LabelQualityMonitor(
        config["num_classes"],
        methods=config["methods"],
        rank_by=config["rank_by"],
        suspect_threshold=config["suspect_threshold"],
        top_k=config["top_k"],
        temperature=config["temperature"],
        ignore_index=config["ignore_index"],
        downsample=config["downsample"],
        class_names=config["class_names"],
        log_prefix=config["log_prefix"],
    )


def merged_monitor(
    work_dir: str | Path,
    monitor: LabelQualityMonitor | None = None,
    logger_factory: Callable[[str, str], Any] | None = None,
    log: bool = True,
    publish: bool = True,
) -> LabelQualityMonitor:
    """Merge every fold of ``work_dir`` into a copy of ``monitor``; its ``report`` is the merged report.

    See :func:`merge_folds` for the arguments.
    """
    work_dir = Path(work_dir)
    record = load_record(work_dir)
    num_folds, num_samples = record["num_folds"], record["num_samples"]
    missing = missing_folds(work_dir, num_folds)
    if missing:
        raise FileNotFoundError(
            f"Cannot merge {work_dir}: folds {missing} of {num_folds} are not done (no fold_<i>/heldout.pt). "
            f"Run them with folds={missing}."
        )
    merged = copy.deepcopy(monitor) if monitor is not None else monitor_from_config(record["monitor"])
    saved = [torch.load(heldout_path(work_dir, fold), weights_only=False) for fold in range(num_folds)]
    indexes = torch.cat([part["states"]["indexes"] for part in saved]).long()
    if indexes.numel() != num_samples or set(indexes.tolist()) != set(range(num_samples)):
        raise RuntimeError(
            f"{work_dir}: the folds scored {indexes.numel()} samples ({len(set(indexes.tolist()))} distinct), "
            f"not each of the {num_samples} exactly once; delete the fold_<i> folders (or pass overwrite=True)."
        )
    report = merged.merge_exported(saved)
    merged.report_dir = work_dir
    if publish:
        factory = logger_factory or (lambda name, version: TensorBoardLogger(str(work_dir), name=name, version=version))
        loggers = [factory("logs", "merged")] if log else []
        merged.publish_to(loggers, report, work_dir)
        for logger in loggers:
            logger.finalize("success")
        wait_for_writes()  # the merged report is on disk when this returns
    return merged


def merge_folds(
    work_dir: str | Path,
    monitor: LabelQualityMonitor | None = None,
    logger_factory: Callable[[str, str], Any] | None = None,
    log: bool = True,
    publish: bool = True,
) -> LabelQualityReport:
    """Merge the folds of a cross-validation ``work_dir`` (e.g. after the jobs of an array finished).

    Args:
        work_dir: the run's folder.
        monitor: the run's monitor (for palette, ``extract``...); default: rebuilt from the record.
        logger_factory: ``logger_factory("logs", "merged") -> Logger``; default TensorBoard
            under ``work_dir/logs``.
        log: False writes the report files without logging.
        publish: False only computes (no logging, no files).

    Returns:
        The merged out-of-fold report.

    Raises:
        FileNotFoundError: no run in ``work_dir``, or folds are missing (the message lists them).

    Examples:
        >>> merge_folds("/nonexistent")
        Traceback (most recent call last):
        ...
        FileNotFoundError: /nonexistent/splits.json not found: /nonexistent is not a cross-validation work_dir...
    """
    report = merged_monitor(work_dir, monitor, logger_factory, log, publish).report
    assert report is not None
    return report
