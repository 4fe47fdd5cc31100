"""The result of a label-quality run: per-image scores, rankings, suspects and detection metrics."""

from __future__ import annotations

import csv
import io
import json
import math
import os
import tempfile
import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torchmetrics.functional.classification import binary_auroc, binary_average_precision

METHODS: tuple[str, ...] = (
    "softmin",
    "confidence_in_label",
    "correctly_classified_pixels",
    "thresholded_ccp",
    "iou",
    "connected_components",
    "confident_learning_counts",
)
SHORT_NAMES = {
    "softmin": "SM",
    "confidence_in_label": "CIL",
    "correctly_classified_pixels": "CCP",
    "thresholded_ccp": "TCCP",
    "iou": "IoU",
    "connected_components": "CoCo",
    "confident_learning_counts": "CLC",
}
DETECTION_METRICS = ("auroc", "auprc", "lift_at_t", "lift_at_100")


def lift_at_k(scores: Tensor, is_mislabeled: Tensor, k: int) -> float:
    """Share of true errors among the ``k`` lowest scores divided by their share overall.

    Examples:
        >>> lift_at_k(torch.tensor([0.1, 0.2, 0.9, 0.8]), torch.tensor([True, False, False, False]), 1)
        4.0
    """
    n = scores.numel()
    positives = int(is_mislabeled.sum())
    if n == 0 or positives == 0 or k <= 0:
        return float("nan")
    k = min(k, n)
    order = _order(scores)
    return float(is_mislabeled[order[:k]].double().mean()) / (positives / n)


def _order(scores: Tensor) -> Tensor:
    """Positions sorted by ascending score, NaN last, ties by position (stable)."""
    filled = torch.where(torch.isnan(scores), torch.full_like(scores, float("inf")), scores)
    return torch.sort(filled, stable=True).indices


def detection_metrics(scores: Tensor, is_mislabeled: Tensor) -> dict[str, float]:
    """AUROC, AUPRC (average precision), Lift@T (T = number of errors) and Lift@100.

    Lower scores must mean "more likely mislabeled"; NaN scores count as the least suspicious.

    Examples:
        >>> m = detection_metrics(torch.tensor([0.1, 0.7, 0.9, 0.8]), torch.tensor([True, False, False, True]))
        >>> round(m["auroc"], 4), m["lift_at_t"]
        (0.75, 1.0)
    """
    if scores.shape != is_mislabeled.shape:
        raise ValueError(f"`scores` {tuple(scores.shape)} and `is_mislabeled` {tuple(is_mislabeled.shape)} differ.")
    truth = is_mislabeled.bool()
    positives = int(truth.sum())
    if positives == 0 or positives == truth.numel():
        nan = float("nan")
        return dict.fromkeys(DETECTION_METRICS, nan)
    s = scores.double()
    finite = torch.where(torch.isnan(s), torch.full_like(s, float("inf")), s)
    finite = torch.where(torch.isinf(finite), finite[~torch.isinf(finite)].max() + 1, finite)
    conf = -finite
    return {
        "auroc": float(binary_auroc(conf, truth.long())),
        "auprc": float(binary_average_precision(conf, truth.long())),
        "lift_at_t": lift_at_k(scores, truth, positives),
        "lift_at_100": lift_at_k(scores, truth, 100),
    }


def _file_mode() -> int:
    """Permissions of a new file under the process's umask (``0o644`` under the usual ``022``)."""
    if hasattr(os, "umask"):
        try:  # Linux: read the umask without changing it (os.umask would race other threads)
            for line in Path("/proc/self/status").read_text().splitlines():
                if line.startswith("Umask:"):
                    return 0o666 & ~int(line.split()[1], 8)
        except (OSError, ValueError):
            pass
    return 0o644


_FILE_MODE = _file_mode()


def atomic_write(path: Path, data: str | bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file and ``os.replace``: never a broken file.

    The file gets the permissions of any other new file (``0o644`` under the usual umask), not
    the owner-only ``0o600`` of a temporary file.

    Examples:
        >>> import tempfile
        >>> target = Path(tempfile.mkdtemp()) / "sub" / "a.txt"
        >>> atomic_write(target, "hello"); target.read_text()
        'hello'
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    raw = data.encode("utf-8") if isinstance(data, str) else data
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(raw)
        os.chmod(tmp, _FILE_MODE)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


_WRITER: ThreadPoolExecutor | None = None
_PENDING: list[Future] = []
_WRITER_LOCK = threading.Lock()


def _forget_writer_after_fork() -> None:
    """A forked child has no writer thread: start afresh (the parent's queue stays the parent's)."""
    global _WRITER, _PENDING, _WRITER_LOCK
    _WRITER, _PENDING, _WRITER_LOCK = None, [], threading.Lock()


if hasattr(os, "register_at_fork"):  # POSIX; DDP "fork" strategies and notebooks fork after a publish
    os.register_at_fork(after_in_child=_forget_writer_after_fork)


def write_in_background(path: Path, data: str | bytes | Callable[[], str | bytes]) -> None:
    """Queue :func:`atomic_write` of ``data`` (or of what ``data()`` returns) on a writer thread.

    One thread writes in submission order, so the training loop never waits on a slow or
    network disk. :func:`wait_for_writes` blocks until everything queued is on disk and
    re-raises a failed write; queued writes also finish when the interpreter exits.

    Examples:
        >>> target = Path(tempfile.mkdtemp()) / "late.txt"
        >>> write_in_background(target, lambda: "written on the writer thread")
        >>> wait_for_writes(); target.read_text()
        'written on the writer thread'
    """

    def job() -> None:
        atomic_write(path, data() if callable(data) else data)

    run_in_background(job)


def run_in_background(job: Callable[[], None]) -> None:
    """Queue ``job`` on the writer thread, after everything queued before it (e.g. an upload of written files).

    :func:`wait_for_writes` waits for it and re-raises its failure like a failed write.

    Examples:
        >>> done = []
        >>> run_in_background(lambda: done.append(True))
        >>> wait_for_writes(); done
        [True]
    """
    global _WRITER
    with _WRITER_LOCK:
        if _WRITER is None:
            _WRITER = ThreadPoolExecutor(max_workers=1, thread_name_prefix="segqa-writer")
        _PENDING.append(_WRITER.submit(job))


def wait_for_writes() -> None:
    """Block until every :func:`write_in_background` write is done; re-raise the first failure.

    Examples:
        >>> wait_for_writes()  # nothing queued: returns at once
    """
    with _WRITER_LOCK:
        pending = list(_PENDING)
        _PENDING.clear()
    errors = [err for err in (fut.exception() for fut in pending) if err is not None]
    if errors:
        raise OSError(f"{len(errors)} background report write(s) failed; first: {errors[0]!r}") from errors[0]


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
        return self.indexes[_order(self._method(method))]

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
        order = _order(scores)
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
        order = _order(self._method(method))
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


def format_table(report: LabelQualityReport, method: str, k: int) -> str:
    """Render the ranked table used by ``str(report)`` and the command line."""
    methods = report.methods
    named = report.names is not None
    head = ["rank", "index", *(["name"] if named else []), *(SHORT_NAMES.get(m, m) for m in methods)]
    if report.is_mislabeled is not None:
        head.append("error")
    rows = []
    pos = {int(i): p for p, i in enumerate(report.indexes.tolist())}
    for r, idx in enumerate(report.suspects(method, k=k).tolist(), start=1):
        p = pos[idx]
        name = [report.names[p]] if report.names is not None else []
        row = [str(r), str(idx), *name, *(f"{float(report.scores[m][p]):.4f}" for m in methods)]
        if report.is_mislabeled is not None:
            row.append("yes" if bool(report.is_mislabeled[p]) else "")
        rows.append(row)
    lines = [f"{len(report)} images ranked by {method} (lower = more likely mislabeled); worst {len(rows)}:"]
    lines += _columns([head, *rows], left=2 if named else None)
    if report.is_mislabeled is not None:
        det = report.detection()
        lines += ["", f"Detection of {int(report.is_mislabeled.sum())} known errors:"]
        grid = [["method", "AUROC", "AUPRC", "Lift@T", "Lift@100"]]
        grid += [[m, *(f"{det[m][key]:.3f}" for key in DETECTION_METRICS)] for m in methods]
        lines += _columns(grid)
    return "\n".join(lines)


def _columns(rows: Sequence[Sequence[str]], left: int | None = None) -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return [
        "  ".join(c.ljust(w) if i == left else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True)))
        for r in rows
    ]


def method_legend(methods: Sequence[str]) -> str:
    """One line explaining the short method names used in tables.

    Examples:
        >>> method_legend(["softmin", "iou"])
        'SM = softmin (the paper method), IoU = intersection over union; lower = more likely mislabeled.'
    """
    return ", ".join(f"{SHORT_NAMES.get(m, m)} = {_LONG_NAMES.get(m, m)}" for m in methods) + (
        "; lower = more likely mislabeled."
    )


_LONG_NAMES = {
    "softmin": "softmin (the paper method)",
    "confidence_in_label": "mean confidence in the given label",
    "correctly_classified_pixels": "share of correctly classified pixels",
    "thresholded_ccp": "thresholded CCP",
    "iou": "intersection over union",
    "connected_components": "connected components",
    "confident_learning_counts": "confident-learning issue counts",
}
