"""The result of a label-quality run: per-image scores, rankings, suspects, detection metrics and files.

:class:`LabelQualityReport` lives here. The names around it are defined in their own modules and
importable from here too: method names (:mod:`lightning_segqa.methods`), detection metrics
(:mod:`lightning_segqa.detection`), file writing (:mod:`lightning_segqa.writing`) and the ranked
table (:mod:`lightning_segqa.report_table`).
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from lightning_segqa.detection import DETECTION_METRICS, detection_metrics, lift_at_k, worst_first
from lightning_segqa.methods import METHODS, SHORT_NAMES, method_legend
from lightning_segqa.report_table import format_table
from lightning_segqa.writing import atomic_write, run_in_background, wait_for_writes, write_in_background

__all__ = [
    "DETECTION_METRICS",
    "METHODS",
    "SHORT_NAMES",
    "LabelQualityReport",
    "atomic_write",
    "detection_metrics",
    "format_table",
    "lift_at_k",
    "method_legend",
    "run_in_background",
    "wait_for_writes",
    "write_in_background",
]


@dataclass
class LabelQualityReport:
    """Per-image label-quality scores of a dataset, ordered by dataset index.

    Attributes:
        indexes: ``(N,)`` int64 dataset indexes, ascending, each once.
        scores: method name -> ``(N,)`` float scores; lower means more likely mislabeled.
        is_mislabeled: ``(N,)`` bool ground truth when it was given, else None.
        details: dataset-level quantities (confident-learning cutoff and thresholds, TCCP
            thresholds, ...), JSON-serialisable.
        names: ``N`` image names aligned with ``indexes`` (e.g. file stems; ``""`` where a name
            is unknown), or None when no name was given.

    Examples:
        >>> r = LabelQualityReport(torch.tensor([0, 1, 2]), {"softmin": torch.tensor([0.9, 0.1, 0.5])})
        >>> r.ranking("softmin").tolist()
        [1, 2, 0]
        >>> r.suspects("softmin", threshold=0.6).tolist()
        [1, 2]
        >>> named = LabelQualityReport(torch.tensor([4, 9]), {"softmin": torch.tensor([0.2, 0.1])}, names=["a", "b"])
        >>> named.label(9), named.name_of(4)
        ('b (#9)', 'a')
    """

    indexes: Tensor
    scores: dict[str, Tensor]
    is_mislabeled: Tensor | None = None
    details: dict[str, Any] = field(default_factory=dict)
    names: list[str] | None = None

    def __setattr__(self, name: str, value: Any) -> None:
        # torchmetrics squeezes one-element tensors in what `compute()` returns, dataclass fields
        # included: a report of one image must keep 1-D tensors
        if isinstance(value, Tensor) and value.ndim == 0 and name in ("indexes", "is_mislabeled"):
            value = value.reshape(1)
        elif name == "scores" and isinstance(value, Mapping):
            value = {m: s.reshape(1) if isinstance(s, Tensor) and s.ndim == 0 else s for m, s in value.items()}
        object.__setattr__(self, name, value)

    def __post_init__(self) -> None:
        n = self.indexes.numel()
        for name, s in self.scores.items():
            if s.shape != (n,):
                raise ValueError(f"scores[{name!r}] has shape {tuple(s.shape)}, expected ({n},).")
        if self.is_mislabeled is not None and self.is_mislabeled.shape != (n,):
            raise ValueError(f"`is_mislabeled` has shape {tuple(self.is_mislabeled.shape)}, expected ({n},).")
        if self.names is not None:
            if isinstance(self.names, str) or not all(isinstance(v, str) for v in self.names):
                raise TypeError(f"`names` must be a list of str (one per image), got {self.names!r:.80}.")
            if len(self.names) != n:
                raise ValueError(f"`names` has {len(self.names)} entries, expected one per image ({n}).")
            object.__setattr__(self, "names", list(self.names))

    @property
    def methods(self) -> list[str]:
        """Names of the scored methods."""
        return list(self.scores)

    def __len__(self) -> int:
        return self.indexes.numel()

    def _method(self, method: str) -> Tensor:
        if method not in self.scores:
            raise ValueError(f"`method` must be one of {self.methods}, got {method!r}.")
        return self.scores[method]

    def name_of(self, index: int) -> str | None:
        """The name of the image with dataset index ``index`` (None when the report has no name for it)."""
        if self.names is None:
            return None
        hits = (self.indexes == int(index)).nonzero().flatten().tolist()
        if not hits:
            raise KeyError(f"The report has no image with index {index}.")
        return self.names[hits[0]] or None

    def label(self, index: int) -> str:
        """How an image is shown to people: ``"NAME (#INDEX)"``, or ``"#INDEX"`` without a name."""
        name = self.name_of(index)
        return f"{name} (#{int(index)})" if name else f"#{int(index)}"

    def ranking(self, method: str = "softmin") -> Tensor:
        """Dataset indexes from most to least likely mislabeled (NaN scores last)."""
        return self.indexes[worst_first(self._method(method))]

    def suspects(self, method: str = "softmin", k: int | None = None, threshold: float | None = None) -> Tensor:
        """Indexes of suspect images, worst first.

        Args:
            method: which score to rank by.
            k: keep at most the ``k`` worst.
            threshold: keep images whose score is below this value. With neither ``k`` nor
                ``threshold``, the default rule picks the suspects
                (:data:`~lightning_segqa.suspect_rule.DEFAULT_RULE`).

        Returns:
            The selected indexes (NaN scores are never suspects by threshold or rule).
        """
        if k is not None and (isinstance(k, bool) or not isinstance(k, int) or k < 0):
            raise ValueError(f"`k` must be a non-negative int, got {k!r}.")
        if threshold is not None and (not isinstance(threshold, (int, float)) or math.isnan(threshold)):
            raise ValueError(f"`threshold` must be a number or None (the default rule), got {threshold!r}.")
        scores = self._method(method)
        order = worst_first(scores)
        if threshold is not None:
            order = order[scores[order] < threshold]
        elif k is None:
            from lightning_segqa.suspect_rule import default_suspect_mask

            order = order[default_suspect_mask(scores, method)[order]]
        if k is not None:
            order = order[:k]
        return self.indexes[order]

    def detection(self) -> dict[str, dict[str, float]]:
        """Detection metrics per method (needs ``is_mislabeled``)."""
        if self.is_mislabeled is None:
            raise ValueError("This report has no `is_mislabeled`; pass it to `update` to get detection metrics.")
        return {m: detection_metrics(s, self.is_mislabeled) for m, s in self.scores.items()}

    def to_dict(self) -> dict[str, Any]:
        """Plain-Python form (lists), the inverse of :meth:`from_dict`."""
        out: dict[str, Any] = {
            "indexes": self.indexes.tolist(),
            "scores": {m: [None if math.isnan(v) else v for v in s.tolist()] for m, s in self.scores.items()},
            "is_mislabeled": None if self.is_mislabeled is None else self.is_mislabeled.tolist(),
            "details": self.details,
            "names": self.names,
        }
        if self.is_mislabeled is not None:
            out["detection"] = self.detection()
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LabelQualityReport:
        """Rebuild a report from :meth:`to_dict` output."""
        try:
            scores = {
                m: torch.tensor([float("nan") if v is None else v for v in s], dtype=torch.float32)
                for m, s in data["scores"].items()
            }
            truth = data.get("is_mislabeled")
            names = data.get("names")
            return cls(
                indexes=torch.tensor(data["indexes"], dtype=torch.long),
                scores=scores,
                is_mislabeled=None if truth is None else torch.tensor(truth, dtype=torch.bool),
                details=dict(data.get("details", {})),
                names=None if names is None else list(names),
            )
        except (KeyError, TypeError) as err:
            raise ValueError(f"Not a label-quality report: {err!r}") from err

    def to_json(self, path: str | os.PathLike | None = None) -> str:
        """JSON text; also written atomically to ``path`` when given."""
        text = json.dumps(self.to_dict(), indent=1, allow_nan=True)
        if path is not None:
            atomic_write(Path(path), text)
        return text

    @classmethod
    def from_json(cls, source: str | os.PathLike) -> LabelQualityReport:
        """Load from a JSON file path or a JSON string."""
        text = str(source)
        if not text.lstrip().startswith("{"):
            path = Path(source)
            if not path.is_file():
                raise FileNotFoundError(f"No report at {path}.")
            text = path.read_text(encoding="utf-8")
        return cls.from_dict(json.loads(text))

    def to_csv(self, path: str | os.PathLike | None = None, method: str | None = None) -> str:
        """CSV with one row per image, ranked by ``method`` (default: first method).

        Columns: ``rank``, ``index``, ``name`` (empty when unknown), one per method, and
        ``is_mislabeled`` when known.
        """
        method = method or self.methods[0]
        buf = io.StringIO()
        writer = csv.writer(buf)
        writer.writerow(
            ["rank", "index", "name", *self.methods, *(["is_mislabeled"] if self.is_mislabeled is not None else [])]
        )
        order = worst_first(self._method(method))
        names = self.names or [""] * len(self)
        columns = [range(1, len(order) + 1), self.indexes[order].tolist(), [names[p] for p in order.tolist()]]
        columns += [[f"{v:.6g}" for v in self.scores[m][order].tolist()] for m in self.methods]
        if self.is_mislabeled is not None:
            columns.append(self.is_mislabeled[order].int().tolist())
        writer.writerows(zip(*columns, strict=True))
        if path is not None:
            atomic_write(Path(path), buf.getvalue())
        return buf.getvalue()

    def table(self, method: str = "softmin", k: int = 10) -> str:
        """Plain-text table of the ``k`` worst images and, if known, detection metrics."""
        return format_table(self, method, k)

    def __str__(self) -> str:
        return self.table(self.methods[0] if "softmin" not in self.scores else "softmin")
