"""File-based adapters: :class:`FileAdapter` (any logger), :class:`CSVAdapter` and :class:`NullAdapter`."""

from __future__ import annotations

from typing import Any

from torch import Tensor

from lightning_segqa.loggers.base import (
    LoggerAdapter,
    Names,
    _csv,
    _records,
    png_bytes,
)
from lightning_segqa.visuals import SuspectImage, figure_to_array, render_suspect
from lightning_segqa.writing import atomic_write


class FileAdapter(LoggerAdapter):
    """Fallback for loggers without image support: atomic PNG and CSV files.

    Under :meth:`files_dir`: suspects at ``{key}/step{step:06d}/rank01_idx{index}.png`` (plus a
    ``suspects.csv`` index), tables at ``{key}_step{step:06d}.csv``, figures at
    ``{key}_step{step:06d}.png``. Warns once per logger
    instance that the logger has no image support, naming the folder.

    Examples:
        >>> from lightning.pytorch.loggers.logger import Logger
        >>> from lightning_segqa.loggers import adapter_class_for
        >>> adapter_class_for(Logger) is FileAdapter  # any logger without its own adapter
        True

    """

    warn_no_images = True

    def _log_suspects(
        self,
        key: str,
        suspects: list[SuspectImage],
        step: int,
        class_names: Names,
        palette: Tensor | None,
        ignore_index: int | None,
    ) -> None:
        """Write one PNG per suspect and a ``suspects.csv`` index next to them."""
        folder = self._key_path(key) / f"step{step:06d}"
        for r, s in enumerate(suspects, start=1):
            arr = render_suspect(s, class_names, palette, ignore_index)
            atomic_write(folder / f"rank{r:02d}_idx{s.index}.png", png_bytes(arr))
        recs = _records(suspects)
        atomic_write(folder / "suspects.csv", _csv(list(recs[0]), [[*d.values()] for d in recs]))

    def _log_table(self, key: str, columns: list[str], data: list[list[Any]], step: int) -> None:
        """Write ``{key}_step{step:06d}.csv``."""
        blob = _csv(columns, data)
        atomic_write(self._key_path(key, f"_step{step:06d}.csv"), blob)

    def _log_figure(self, key: str, figure: Any, step: int) -> None:
        """Write ``{key}_step{step:06d}.png``."""
        blob = png_bytes(figure_to_array(figure))
        atomic_write(self._key_path(key, f"_step{step:06d}.png"), blob)


class CSVAdapter(FileAdapter):
    """:class:`FileAdapter` for ``CSVLogger``: the same files under its ``log_dir``, no warning.

    Examples:
        >>> import tempfile
        >>> from pathlib import Path
        >>> from lightning.pytorch.loggers import CSVLogger
        >>> from lightning_segqa.loggers import adapter_for
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     adapter_for(CSVLogger(tmp, name="run")).log_table("summary", ["auroc"], [[0.9]], step=2)
        ...     (Path(tmp) / "run/version_0/segqa/summary_step000002.csv").read_text().split()
        ['auroc', '0.9']

    """

    warn_no_images = False


def _skip(*args: Any, **kwargs: Any) -> None:
    """Do nothing."""


class NullAdapter(LoggerAdapter):
    """Does nothing: for Lightning's ``DummyLogger`` (e.g. under ``fast_dev_run``).

    Examples:
        >>> from lightning.pytorch.loggers.logger import DummyLogger
        >>> from lightning_segqa.loggers import adapter_for
        >>> adapter_for(DummyLogger()).log_table("t", ["a"], [[1]], step=0)  # writes nothing

    """

    log_suspects = log_table = log_figure = _skip  # type: ignore[assignment]
    _log_suspects = _log_table = _log_figure = _skip  # type: ignore[assignment]
