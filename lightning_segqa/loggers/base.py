"""The abstract :class:`LoggerAdapter` and the helpers its subclasses share.

Argument checks, key sanitising, JSON-safe values, PNG/CSV encoding and warn-once.
"""

from __future__ import annotations

import csv
import io
import os
import re
import tempfile
import warnings
import weakref
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from lightning.fabric.loggers import Logger
from torch import Tensor

from lightning_segqa import visuals as _v
from lightning_segqa.visuals import SuspectImage

Names = Sequence[str] | None
Rows = Sequence[Sequence[Any]]
_WARNED: weakref.WeakKeyDictionary[Any, set[str]] = weakref.WeakKeyDictionary()
_TEMP_DIRS: weakref.WeakKeyDictionary[Any, Path] = weakref.WeakKeyDictionary()


def _warn_once(logger: Any, tag: str, message: str) -> None:
    seen = _WARNED.setdefault(logger, set())
    if tag not in seen:
        seen.add(tag)
        warnings.warn(message, UserWarning, stacklevel=4)


def _safe_key(key: str) -> str:
    # ``/`` nests folders; other odd characters become ``_``
    if not isinstance(key, str):
        raise TypeError(f"`key` must be a str, got {type(key).__name__}")
    parts = [re.sub(r"[^A-Za-z0-9._=-]+", "_", p).strip(".") or "_" for p in key.split("/") if p]
    if not parts:
        raise ValueError(f"`key` must contain a name, got {key!r}")
    return "/".join(parts)


def _check(step: int, suspects: Sequence[Any] = ()) -> None:
    if isinstance(step, bool) or not isinstance(step, (int, np.integer)) or step < 0:
        raise TypeError(f"`step` must be a non-negative int, got {step!r}")
    if not all(isinstance(s, SuspectImage) for s in suspects):
        kinds = sorted({type(s).__name__ for s in suspects})
        raise TypeError(f"`suspects` must be a sequence of SuspectImage, got items of type {kinds}")


def _plain(value: Any) -> Any:
    if isinstance(value, Tensor):
        value = value.detach().cpu()
        return value.item() if value.numel() == 1 else value.tolist()
    if isinstance(value, (np.generic, np.ndarray)):
        return value.tolist()
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    return [_plain(v) for v in value] if isinstance(value, (list, tuple)) else value


def _table(columns: Sequence[str], rows: Rows) -> list[list[Any]]:
    out = [[_plain(v) for v in row] for row in rows]
    for i, row in enumerate(out):
        if len(row) != len(columns):
            raise ValueError(f"`rows[{i}]` must have {len(columns)} values, got {len(row)}")
    return out


def png_bytes(array: np.ndarray) -> bytes:
    """Encode an ``(H, W, 3)`` uint8 array as PNG bytes.

    Examples:
        >>> png_bytes(np.zeros((2, 2, 3), dtype=np.uint8))[1:4]
        b'PNG'
    """
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(array)).save(buf, format="PNG")
    return buf.getvalue()


def _csv(columns: Sequence[str], rows: Rows) -> bytes:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerows([list(columns), *rows])
    return buf.getvalue().encode()


def _records(suspects: Sequence[SuspectImage]) -> list[dict[str, Any]]:
    return [
        {
            "rank": r,
            "index": int(s.index),
            "score": float(s.score),
            "method": s.method,
            "is_mislabeled": _plain(s.is_mislabeled),
            "caption": _v.suspect_caption(s),
            "file": f"rank{r:02d}_idx{s.index}.png",
        }
        for r, s in enumerate(suspects, start=1)
    ]


class LoggerAdapter(ABC):
    """Logs suspects, tables and figures through one Lightning (or Fabric) ``logger``.

    The public methods check their arguments, then call the subclass's ``_log_suspects`` (never
    with an empty list), ``_log_table`` (rows as plain Python values) or ``_log_figure``.
    Call the methods on global rank zero only (Lightning's loggers ignore other ranks; the file
    adapters would write duplicates).

    Examples:
        >>> from lightning.pytorch.loggers.logger import DummyLogger
        >>> from lightning_segqa.loggers import adapter_for
        >>> isinstance(adapter_for(DummyLogger()), LoggerAdapter)
        True

    """

    warn_no_images = False

    def __init__(self, logger: Logger) -> None:
        if not isinstance(logger, Logger):
            raise TypeError(f"`logger` must be a Lightning Logger, got {type(logger).__name__}")
        self.logger = logger

    def log_suspects(
        self,
        key: str,
        suspects: Sequence[SuspectImage],
        step: int,
        class_names: Names,
        palette: Tensor | None,
        ignore_index: int | None,
    ) -> None:
        """Log each suspect's rendered picture (suspect ``r`` is ``rank{r:02d}``) and caption; none: nothing.

        Raises:
            TypeError: ``step`` is not a non-negative int, or a suspect is not a ``SuspectImage``.
        """
        _check(step, suspects)
        if len(suspects):
            self._log_suspects(key, list(suspects), step, class_names, palette, ignore_index)

    def log_table(self, key: str, columns: Sequence[str], rows: Rows, step: int) -> None:
        """Log a table; each row has one value per column (tensors and numpy values become plain Python).

        Raises:
            TypeError: ``step`` is not a non-negative int.
            ValueError: a row has another number of values than ``columns``.
        """
        _check(step)
        self._log_table(key, list(columns), _table(columns, rows), step)

    def log_figure(self, key: str, figure: Any, step: int) -> None:
        """Log a matplotlib figure.

        Raises:
            TypeError: ``step`` is not a non-negative int.
        """
        _check(step)
        self._log_figure(key, figure, step)

    @abstractmethod
    def _log_suspects(
        self,
        key: str,
        suspects: list[SuspectImage],
        step: int,
        class_names: Names,
        palette: Tensor | None,
        ignore_index: int | None,
    ) -> None:
        """Log checked, non-empty ``suspects``."""

    @abstractmethod
    def _log_table(self, key: str, columns: list[str], data: list[list[Any]], step: int) -> None:
        """Log checked rows of plain Python values."""

    @abstractmethod
    def _log_figure(self, key: str, figure: Any, step: int) -> None:
        """Log ``figure`` at a checked ``step``."""

    def run_dir(self) -> Path | None:
        """The run's own local folder for report files: ``log_dir`` when the logger has one, else None.

        Examples:
            >>> import tempfile
            >>> from lightning.pytorch.loggers import CSVLogger
            >>> from lightning_segqa.loggers import adapter_for
            >>> root = tempfile.mkdtemp()
            >>> adapter_for(CSVLogger(root, name="run")).run_dir() == Path(root) / "run" / "version_0"
            True
        """
        log_dir = getattr(self.logger, "log_dir", None)
        return Path(log_dir) if isinstance(log_dir, (str, os.PathLike)) else None

    def upload_files(self, paths: Sequence[Path]) -> None:
        """Attach report files written on disk to the run (a no-op where the files already are the run's)."""
        return None

    def _key_path(self, key: str, suffix: str = "") -> Path:
        """``files_dir() / key + suffix``, without repeating the folder's own name (no ``segqa/segqa/``)."""
        root = self._output_dir()
        parts = _safe_key(key).split("/")
        if len(parts) > 1 and parts[0] == root.name:
            parts = parts[1:]
        return root.joinpath(*parts[:-1], parts[-1] + suffix)

    def files_dir(self) -> Path:
        """Return ``segqa/`` under the logger's ``log_dir``, else ``save_dir``, else a temp dir."""
        root = getattr(self.logger, "log_dir", None) or getattr(self.logger, "save_dir", None)
        if not isinstance(root, (str, os.PathLike)):
            if self.logger not in _TEMP_DIRS:
                _TEMP_DIRS[self.logger] = Path(tempfile.mkdtemp(prefix="segqa_"))
            root = _TEMP_DIRS[self.logger]
        return Path(root) / "segqa"

    def _output_dir(self) -> Path:
        root = self.files_dir()
        if self.warn_no_images or self.logger in _TEMP_DIRS:  # one warning per logger instance
            why = "has no image support" if self.warn_no_images else "has no log_dir or save_dir"
            _warn_once(
                self.logger,
                "files",
                f"{type(self.logger).__name__} {why}; lightning_segqa writes its images and tables under {root}",
            )
        return root
