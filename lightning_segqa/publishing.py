"""Where the monitor's report files go and how they reach the loggers' runs.

The ranked table's columns and rows are defined in :mod:`lightning_segqa.report_table` (and
importable from here).
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import Any

from lightning_segqa.report import LabelQualityReport
from lightning_segqa.report_table import report_rows, table_columns
from lightning_segqa.writing import run_in_background, write_in_background

__all__ = ["queue_report_files", "report_rows", "run_dir_of", "table_columns", "upload_report_files"]


def upload_report_files(adapters: Sequence[Any], paths: Sequence[Path]) -> None:
    """Attach written report files to every logger's run (W&B run files, MLflow artifacts; others: no-op).

    Examples:
        >>> upload_report_files([], [Path("label_quality.json")])  # no logger: nothing to do
    """
    written = [Path(p) for p in paths if Path(p).is_file()]
    for adapter in adapters:
        adapter.upload_files(written)


def run_dir_of(trainer: Any) -> Path:
    """The first logger's own run folder (see ``LoggerAdapter.run_dir``), else ``trainer.default_root_dir``.

    Examples:
        >>> from lightning.pytorch import Trainer
        >>> from lightning.pytorch.loggers import CSVLogger
        >>> import tempfile
        >>> root = tempfile.mkdtemp()
        >>> trainer = Trainer(logger=CSVLogger(root, name="run"), enable_progress_bar=False)
        >>> run_dir_of(trainer) == Path(root) / "run" / "version_0"
        True
    """
    from lightning_segqa.loggers import adapters_for

    for adapter in adapters_for(trainer.loggers):
        run_dir = adapter.run_dir()
        if run_dir is not None:
            return run_dir
    return Path(trainer.default_root_dir)


def queue_report_files(
    report: LabelQualityReport,
    out_dir: Path,
    tag: str = "",
    method: str = "softmin",
    figure: Any = None,
    adapters: Sequence[Any] = (),
) -> list[Path]:
    """Queue ``label_quality{tag}.json``/``.csv`` (and ``detection_curves{tag}.png``) on the writer thread.

    Once written, the files are attached to every logger's run (:func:`upload_report_files`).
    :func:`~lightning_segqa.writing.wait_for_writes` waits for all of it.

    Returns:
        The paths the files will have.

    Examples:
        >>> import tempfile, torch
        >>> from lightning_segqa.writing import wait_for_writes
        >>> r = LabelQualityReport(torch.arange(2), {"softmin": torch.tensor([0.3, 0.1])}, names=["a", "b"])
        >>> paths = queue_report_files(r, Path(tempfile.mkdtemp()))
        >>> wait_for_writes(); paths[1].read_text().splitlines()[1]
        '1,1,b,0.1'
    """
    paths = [out_dir / f"label_quality{tag}.json", out_dir / f"label_quality{tag}.csv"]
    write_in_background(paths[0], report.to_json)
    write_in_background(paths[1], partial(report.to_csv, method=method))
    if figure is not None:
        from lightning_segqa.loggers.base import png_bytes
        from lightning_segqa.visuals import figure_to_array

        paths.append(out_dir / f"detection_curves{tag}.png")
        write_in_background(paths[-1], png_bytes(figure_to_array(figure)))
    run_in_background(partial(upload_report_files, adapters, paths))
    return paths
