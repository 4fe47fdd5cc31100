"""One small adapter per Lightning logger (no common image API) for suspects, tables, figures, JSON.

:func:`adapter_for` looks the logger's nearest registered class up in :data:`ADAPTERS`. tensorboard,
wandb and mlflow are never imported here: the loggers import them when creating their experiment.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
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
from lightning.fabric import loggers as _fabric
from lightning.fabric.loggers import Logger
from lightning.pytorch.loggers import MLFlowLogger, WandbLogger
from lightning.pytorch.loggers.logger import DummyLogger
from torch import Tensor

from lightning_segqa import visuals as _v
from lightning_segqa.visuals import SuspectImage, figure_to_array, render_suspect

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


def _check(step: int, suspects: Sequence[Any] = (), data: Any = None) -> None:
    if isinstance(step, bool) or not isinstance(step, (int, np.integer)) or step < 0:
        raise TypeError(f"`step` must be a non-negative int, got {step!r}")
    if not all(isinstance(s, SuspectImage) for s in suspects):
        kinds = sorted({type(s).__name__ for s in suspects})
        raise TypeError(f"`suspects` must be a sequence of SuspectImage, got items of type {kinds}")
    if data is not None and not isinstance(data, Mapping):
        raise TypeError(f"`data` must be a Mapping, got {type(data).__name__}")


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


def _atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _png(array: np.ndarray) -> bytes:
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
    """Logs suspects, tables, figures and JSON through one Lightning (or Fabric) ``logger``.

    :meth:`log_json` defaults to a file in :meth:`files_dir`. Call the methods on global rank zero
    only (Lightning's loggers ignore other ranks; the file adapters would write duplicates).

    Examples:
        >>> from lightning.pytorch.loggers.logger import DummyLogger
        >>> isinstance(adapter_for(DummyLogger()), LoggerAdapter)
        True

    """

    warn_no_images = False

    def __init__(self, logger: Logger) -> None:
        if not isinstance(logger, Logger):
            raise TypeError(f"`logger` must be a Lightning Logger, got {type(logger).__name__}")
        self.logger = logger

    @abstractmethod
    def log_suspects(
        self,
        key: str,
        suspects: Sequence[SuspectImage],
        step: int,
        class_names: Names,
        palette: Tensor | None,
        ignore_index: int | None,
    ) -> None:
        """Log each suspect's rendered picture (suspect ``r`` is ``rank{r:02d}``) and caption."""

    @abstractmethod
    def log_table(self, key: str, columns: Sequence[str], rows: Rows, step: int) -> None:
        """Log a table; each row has one value per column."""

    @abstractmethod
    def log_figure(self, key: str, figure: Any, step: int) -> None:
        """Log a matplotlib figure."""

    def log_json(self, key: str, data: Mapping[str, Any], step: int) -> None:
        """Write ``data`` to ``{key}_step{step:06d}.json`` in the adapter's output folder."""
        _check(step, data=data)
        blob = json.dumps(_plain(data), indent=2, default=str).encode()
        _atomic_write(self._output_dir() / f"{_safe_key(key)}_step{step:06d}.json", blob)

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
                f"{type(self.logger).__name__} {why}; lightning_segqa writes its images, tables and JSON under {root}",
            )
        return root


class FileAdapter(LoggerAdapter):
    """Fallback for loggers without image support: atomic PNG, CSV and JSON files.

    Under :meth:`files_dir`: suspects at ``{key}/step{step:06d}/rank01_idx{index}.png`` (plus a
    ``suspects.csv`` index), tables at ``{key}_step{step:06d}.csv``, figures at
    ``{key}_step{step:06d}.png``, JSON at ``{key}_step{step:06d}.json``. Warns once per logger
    instance that the logger has no image support, naming the folder.

    Examples:
        >>> from lightning.pytorch.loggers.logger import Logger
        >>> adapter_class_for(Logger) is FileAdapter  # any logger without its own adapter
        True

    """

    warn_no_images = True

    def log_suspects(
        self,
        key: str,
        suspects: Sequence[SuspectImage],
        step: int,
        class_names: Names,
        palette: Tensor | None,
        ignore_index: int | None,
    ) -> None:
        """Write one PNG per suspect and a ``suspects.csv`` index next to them."""
        _check(step, suspects)
        if not suspects:
            return
        folder = self._output_dir() / _safe_key(key) / f"step{step:06d}"
        for r, s in enumerate(suspects, start=1):
            arr = render_suspect(s, class_names, palette, ignore_index)
            _atomic_write(folder / f"rank{r:02d}_idx{s.index}.png", _png(arr))
        recs = _records(suspects)
        _atomic_write(folder / "suspects.csv", _csv(list(recs[0]), [[*d.values()] for d in recs]))

    def log_table(self, key: str, columns: Sequence[str], rows: Rows, step: int) -> None:
        """Write ``{key}_step{step:06d}.csv``."""
        _check(step)
        blob = _csv(columns, _table(columns, rows))
        _atomic_write(self._output_dir() / f"{_safe_key(key)}_step{step:06d}.csv", blob)

    def log_figure(self, key: str, figure: Any, step: int) -> None:
        """Write ``{key}_step{step:06d}.png``."""
        _check(step)
        blob = _png(figure_to_array(figure))
        _atomic_write(self._output_dir() / f"{_safe_key(key)}_step{step:06d}.png", blob)


class CSVAdapter(FileAdapter):
    """:class:`FileAdapter` for ``CSVLogger``: the same files under its ``log_dir``, no warning.

    Examples:
        >>> import tempfile
        >>> from lightning.pytorch.loggers import CSVLogger
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     adapter_for(CSVLogger(tmp, name="run")).log_json("summary", {"auroc": 0.9}, step=2)
        ...     json.loads((Path(tmp) / "run/version_0/segqa/summary_step000002.json").read_text())
        {'auroc': 0.9}

    """

    warn_no_images = False


def _skip(*args: Any, **kwargs: Any) -> None:
    """Do nothing."""


class NullAdapter(LoggerAdapter):
    """Does nothing: for Lightning's ``DummyLogger`` (e.g. under ``fast_dev_run``).

    Examples:
        >>> from lightning.pytorch.loggers.logger import DummyLogger
        >>> adapter_for(DummyLogger()).log_table("t", ["a"], [[1]], step=0)  # writes nothing

    """

    log_suspects = log_table = log_figure = log_json = _skip  # type: ignore[assignment]


def _markdown(columns: Sequence[str], rows: Rows) -> str:
    def cell(v: Any) -> str:
        text = f"{v:.6g}" if isinstance(v, float) else str(v)
        return text.replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(map(cell, columns)) + " |", "|" + "---|" * len(columns)]
    return "\n".join(lines + ["| " + " | ".join(map(cell, row)) + " |" for row in rows])


class TensorBoardAdapter(LoggerAdapter):
    """``TensorBoardLogger``: images via ``add_image``, captions and tables via ``add_text``.

    Suspect ``r`` is the image ``{key}/rank{r:02d}_idx{index}``; captions go to the text
    ``{key}/captions``, tables to the text ``{key}`` as Markdown. Figures are drawn with Agg and
    sent through ``add_image`` (what ``add_figure`` does, minus its ``pyplot`` import).

    Examples:
        >>> from lightning.pytorch.loggers import TensorBoardLogger
        >>> adapter_class_for(TensorBoardLogger) is TensorBoardAdapter
        True

    """

    def log_suspects(
        self,
        key: str,
        suspects: Sequence[SuspectImage],
        step: int,
        class_names: Names,
        palette: Tensor | None,
        ignore_index: int | None,
    ) -> None:
        """Add one rendered image per suspect and one Markdown list of captions."""
        _check(step, suspects)
        writer, lines = self.logger.experiment, []
        for r, s in enumerate(suspects, start=1):
            arr = render_suspect(s, class_names, palette, ignore_index)
            writer.add_image(f"{key}/rank{r:02d}_idx{s.index}", arr, step, dataformats="HWC")
            lines.append(f"- **rank{r:02d}_idx{s.index}**: {_v.suspect_caption(s)}")
        if lines:
            writer.add_text(f"{key}/captions", "\n".join(lines), step)
        writer.flush()

    def log_table(self, key: str, columns: Sequence[str], rows: Rows, step: int) -> None:
        """Add the table as Markdown text."""
        _check(step)
        self.logger.experiment.add_text(key, _markdown(columns, _table(columns, rows)), step)
        self.logger.experiment.flush()

    def log_figure(self, key: str, figure: Any, step: int) -> None:
        """Add the figure as an image."""
        _check(step)
        self.logger.experiment.add_image(key, figure_to_array(figure), step, dataformats="HWC")
        self.logger.experiment.flush()


def _wandb_masks(s: SuspectImage, names: Names, ignore_index: int | None) -> dict | None:
    # W&B overlays need ids in 0..255: ignore pixels become 255; None if a class id is > 254
    names, out, labels = list(names or ()), {}, {}
    for kind, mask in (("ground_truth", s.target), ("predictions", s.pred)):
        m = mask.detach().cpu().long().numpy()
        ignore = (m == ignore_index) if ignore_index is not None else np.zeros(m.shape, bool)
        ids = np.unique(m[~ignore])
        if ids.size and (ids.min() < 0 or ids.max() > 254):
            return None
        labels.update({int(c): names[c] if c < len(names) else f"class {c}" for c in ids})
        labels.update({255: "ignore"} if ignore.any() else {})
        out[kind] = {"mask_data": np.where(ignore, 255, m).astype(np.uint8), "class_labels": labels}
    return out


class WandbAdapter(LoggerAdapter):
    """``WandbLogger``: ``log_image`` with mask overlays, ``log_table``, figures as images.

    ``{key}/masks`` gets each suspect's image (or its suspicious-pixel map when there is none)
    with the given and predicted masks as W&B overlays; ``{key}/panels`` gets the rendered panels
    (padded with white to one size).
    Captions are ``rank{r:02d} <caption>``. JSON goes to ``segqa/`` in the run's files folder.

    Examples:
        >>> from lightning.pytorch.loggers import WandbLogger
        >>> adapter_class_for(WandbLogger) is WandbAdapter
        True

    """

    def log_suspects(
        self,
        key: str,
        suspects: Sequence[SuspectImage],
        step: int,
        class_names: Names,
        palette: Tensor | None,
        ignore_index: int | None,
    ) -> None:
        """Log the mask overlays and the rendered panels (two image lists)."""
        _check(step, suspects)
        if not suspects:
            return
        bases = [
            _v._image_hwc(s.image)
            if s.image is not None
            else _v.suspicious_pixel_map(s.pixel_scores, issue_mask=s.issue_mask)
            for s in suspects
        ]
        masks = [_wandb_masks(s, class_names, ignore_index) for s in suspects]
        if any(m is None for m in masks):
            _warn_once(
                self.logger,
                "masks",
                "class ids outside 0..254 cannot be W&B mask overlays; those suspects are logged without them",
            )
        captions = [f"rank{r:02d} {_v.suspect_caption(s)}" for r, s in enumerate(suspects, start=1)]
        panels = [render_suspect(s, class_names, palette, ignore_index) for s in suspects]
        h, w = max(p.shape[0] for p in panels), max(p.shape[1] for p in panels)  # W&B wants 1 size
        panels = [np.pad(p, ((0, h - p.shape[0]), (0, w - p.shape[1]), (0, 0)), constant_values=255) for p in panels]
        self.logger.log_image(key=f"{key}/masks", images=bases, step=step, caption=captions, masks=masks)
        self.logger.log_image(key=f"{key}/panels", images=panels, step=step, caption=captions)

    def log_table(self, key: str, columns: Sequence[str], rows: Rows, step: int) -> None:
        """Log a ``wandb.Table``."""
        _check(step)
        self.logger.log_table(key=key, columns=list(columns), data=_table(columns, rows), step=step)

    def log_figure(self, key: str, figure: Any, step: int) -> None:
        """Log the figure as a ``wandb.Image``."""
        _check(step)
        self.logger.log_image(key=key, images=[figure_to_array(figure)], step=step)

    def _output_dir(self) -> Path:
        return Path(self.logger.experiment.dir) / "segqa"


class MLFlowAdapter(LoggerAdapter):
    """``MLFlowLogger``: run artifacts through its ``MlflowClient`` (``logger.experiment``).

    Suspects: ``{key}/step{step:06d}/rank01_idx{index}.png`` plus ``suspects.json``; tables:
    ``{key}_step{step:06d}_table.json``; JSON: ``{key}_step{step:06d}.json``; figures:
    ``{key}_step{step:06d}.png``.

    Examples:
        >>> from lightning.pytorch.loggers import MLFlowLogger
        >>> adapter_class_for(MLFlowLogger) is MLFlowAdapter
        True

    """

    def log_suspects(
        self,
        key: str,
        suspects: Sequence[SuspectImage],
        step: int,
        class_names: Names,
        palette: Tensor | None,
        ignore_index: int | None,
    ) -> None:
        """Log one PNG artifact per suspect and a JSON index of them."""
        _check(step, suspects)
        client, run_id = self.logger.experiment, self.logger.run_id
        prefix = f"{_safe_key(key)}/step{step:06d}/"
        for r, s in enumerate(suspects, start=1):
            arr = render_suspect(s, class_names, palette, ignore_index)
            client.log_image(run_id, arr, artifact_file=f"{prefix}rank{r:02d}_idx{s.index}.png")
        if suspects:
            client.log_dict(run_id, {"suspects": _records(suspects)}, f"{prefix}suspects.json")

    def log_table(self, key: str, columns: Sequence[str], rows: Rows, step: int) -> None:
        """Log the table column-wise with ``MlflowClient.log_table``."""
        _check(step)
        data = _table(columns, rows)
        table = {c: [row[i] for row in data] for i, c in enumerate(columns)}
        name = f"{_safe_key(key)}_step{step:06d}_table.json"
        try:
            self.logger.experiment.log_table(self.logger.run_id, data=table, artifact_file=name)
        except ImportError:  # MlflowClient.log_table needs pandas
            self.logger.experiment.log_dict(self.logger.run_id, table, name)

    def log_figure(self, key: str, figure: Any, step: int) -> None:
        """Log the figure with ``MlflowClient.log_figure``."""
        _check(step)
        name = f"{_safe_key(key)}_step{step:06d}.png"
        self.logger.experiment.log_figure(self.logger.run_id, figure, name)

    def log_json(self, key: str, data: Mapping[str, Any], step: int) -> None:
        """Log ``data`` with ``MlflowClient.log_dict``."""
        _check(step, data=data)
        name = f"{_safe_key(key)}_step{step:06d}.json"
        self.logger.experiment.log_dict(self.logger.run_id, _plain(data), name)


#: Logger class -> adapter class; the nearest registered base class wins. Extend it freely.
ADAPTERS: dict[type, type[LoggerAdapter]] = {
    _fabric.TensorBoardLogger: TensorBoardAdapter,  # base of lightning.pytorch's TensorBoardLogger
    WandbLogger: WandbAdapter,
    MLFlowLogger: MLFlowAdapter,
    _fabric.CSVLogger: CSVAdapter,  # base of lightning.pytorch's CSVLogger
    DummyLogger: NullAdapter,
}


def adapter_class_for(logger_cls: type) -> type[LoggerAdapter]:
    """Return the adapter class for a logger class (see :data:`ADAPTERS`), else ``FileAdapter``.

    Examples:
        >>> from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger
        >>> adapter_class_for(TensorBoardLogger).__name__, adapter_class_for(CSVLogger).__name__
        ('TensorBoardAdapter', 'CSVAdapter')

    """
    if not isinstance(logger_cls, type):
        raise TypeError(f"`logger_cls` must be a class, got {type(logger_cls).__name__}")
    return next((ADAPTERS[c] for c in logger_cls.__mro__ if c in ADAPTERS), FileAdapter)


def adapter_for(logger: Logger) -> LoggerAdapter:
    """Wrap ``logger`` in the adapter registered for its class.

    Examples:
        >>> from lightning.pytorch.loggers.logger import DummyLogger
        >>> type(adapter_for(DummyLogger())).__name__
        'NullAdapter'

    """
    if not isinstance(logger, Logger):
        raise TypeError(f"`logger` must be a Lightning Logger, got {type(logger).__name__}")
    return adapter_class_for(type(logger))(logger)


def adapters_for(loggers: Sequence[Logger]) -> list[LoggerAdapter]:
    """One adapter per logger, e.g. ``adapters_for(trainer.loggers)``.

    Examples:
        >>> from lightning.pytorch.loggers.logger import DummyLogger
        >>> [type(a).__name__ for a in adapters_for([DummyLogger()])]
        ['NullAdapter']

    """
    if isinstance(loggers, (Logger, str)) or not isinstance(loggers, Sequence):
        raise TypeError(f"`loggers` must be a sequence of Loggers, got {type(loggers).__name__}")
    return [adapter_for(lg) for lg in loggers]
