"""Adapter for ``MLFlowLogger``: run artifacts through its ``MlflowClient`` (``mlflow`` is never imported here)."""

from __future__ import annotations

import tempfile
import weakref
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse
from urllib.request import url2pathname

from torch import Tensor

from lightning_segqa.loggers.base import (
    LoggerAdapter,
    Names,
    _records,
    _safe_key,
)
from lightning_segqa.visuals import SuspectImage, render_suspect

_STAGING: weakref.WeakKeyDictionary[Any, Path] = weakref.WeakKeyDictionary()  # remote stores: local copies
_ARTIFACT_URIS: dict[str, str] = {}  # run id -> artifact URI (fixed for a run's life)


class MLFlowAdapter(LoggerAdapter):
    """``MLFlowLogger``: run artifacts through its ``MlflowClient`` (``logger.experiment``).

    Suspects: ``{key}/step{step:06d}/rank01_idx{index}.png`` plus ``suspects.json``; tables:
    ``{key}_step{step:06d}_table.json``; figures:
    ``{key}_step{step:06d}.png``.

    Examples:
        >>> from lightning.pytorch.loggers import MLFlowLogger
        >>> from lightning_segqa.loggers import adapter_class_for
        >>> adapter_class_for(MLFlowLogger) is MLFlowAdapter
        True

    """

    def _log_suspects(
        self,
        key: str,
        suspects: list[SuspectImage],
        step: int,
        class_names: Names,
        palette: Tensor | None,
        ignore_index: int | None,
    ) -> None:
        """Log one PNG artifact per suspect and a JSON index of them."""
        client, run_id = self.logger.experiment, self.logger.run_id
        prefix = f"{_safe_key(key)}/step{step:06d}/"
        for r, s in enumerate(suspects, start=1):
            arr = render_suspect(s, class_names, palette, ignore_index)
            client.log_image(run_id, arr, artifact_file=f"{prefix}rank{r:02d}_idx{s.index}.png")
        client.log_dict(run_id, {"suspects": _records(suspects)}, f"{prefix}suspects.json")

    def _log_table(self, key: str, columns: list[str], data: list[list[Any]], step: int) -> None:
        """Log the table column-wise with ``MlflowClient.log_table``."""
        table = {c: [row[i] for row in data] for i, c in enumerate(columns)}
        name = f"{_safe_key(key)}_step{step:06d}_table.json"
        try:
            self.logger.experiment.log_table(self.logger.run_id, data=table, artifact_file=name)
        except ImportError:  # MlflowClient.log_table needs pandas
            self.logger.experiment.log_dict(self.logger.run_id, table, name)

    def _log_figure(self, key: str, figure: Any, step: int) -> None:
        """Log the figure with ``MlflowClient.log_figure``."""
        name = f"{_safe_key(key)}_step{step:06d}.png"
        self.logger.experiment.log_figure(self.logger.run_id, figure, name)

    def __init__(self, logger: Any) -> None:
        super().__init__(logger)
        self._artifact_uri()  # here, on the caller's thread: see `_artifact_uri`

    def _artifact_uri(self) -> str:
        """The run's artifact URI, read once per run.

        ``get_run`` reads every metric file of a file-store run; on the report writer thread it
        could read one that the training loop is appending to ("metric ... is malformed"), so the
        URI is read when the adapter is made and kept.
        """
        run_id = self.logger.run_id
        if run_id not in _ARTIFACT_URIS:
            _ARTIFACT_URIS[run_id] = self.logger.experiment.get_run(run_id).info.artifact_uri
        return _ARTIFACT_URIS[run_id]

    def _local_artifacts(self) -> Path | None:
        """The run's artifact folder when the artifact store is a local folder, else None."""
        uri = self._artifact_uri()
        parsed = urlparse(uri)
        if parsed.scheme not in ("", "file"):
            return None
        return Path(url2pathname(unquote(parsed.path)))

    def run_dir(self) -> Path:
        """``segqa/`` in the run's local artifact folder; for a remote store, a local folder to upload from."""
        local = self._local_artifacts()
        if local is not None:
            return local / "segqa"
        if self.logger not in _STAGING:
            _STAGING[self.logger] = Path(tempfile.mkdtemp(prefix=f"segqa_{self.logger.run_id}_"))
        return _STAGING[self.logger]

    def upload_files(self, paths: Sequence[Path]) -> None:
        """Log the files as run artifacts under ``segqa/`` (files already in the run's artifact folder stay)."""
        local = self._local_artifacts()
        for path in paths:
            path = Path(path).resolve()
            if local is not None and path.is_relative_to(local.resolve()):
                continue
            self.logger.experiment.log_artifact(self.logger.run_id, str(path), artifact_path="segqa")
