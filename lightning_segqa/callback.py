"""``LabelQualityMonitor``: the Lightning callback that scores masks during validation."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.utilities import rank_zero_only
from torch import Tensor

from lightning_segqa.functional._inputs import detect_format
from lightning_segqa.gate import ON_FAIL, GateDecision, LabelQualityError, check_gate_args, evaluate_gate
from lightning_segqa.metric import LOCAL_METHODS, LabelQuality
from lightning_segqa.report import (
    DETECTION_METRICS,
    SHORT_NAMES,
    LabelQualityReport,
    wait_for_writes,
    write_in_background,
)
from lightning_segqa.suspects import SuspectHeap

PREDS_KEYS = ("logits", "probs", "preds")
KEY_FORMATS = {"logits": "logits", "probs": "probs"}  # input_format="auto" trusts these names


class LabelQualityMonitor(Callback):
    """Score every validation image's mask, log the worst ones, and optionally gate training.

    Each validation epoch (sanity check excluded) the callback streams what ``validation_step``
    returns into a :class:`~lightning_segqa.LabelQuality` metric on the module's device. At the
    epoch end it logs ``{prefix}/suspect_fraction`` (and, when batches carry ``is_mislabeled``,
    ``{prefix}/{metric}_{method}`` for AUROC, AUPRC and Lift) through ``pl_module.log`` so that
    ``EarlyStopping``/``ModelCheckpoint`` can monitor them; on rank zero it draws the ``top_k``
    worst images to every attached logger, logs a ranked table and writes the report.

    ``validation_step`` must return a dict holding the model output (key ``preds_key``, by
    default the first of ``logits``, ``probs``, ``preds``), the given mask (``target_key``),
    the dataset index of each image (``index_key``), and optionally the input image
    (``image_key``) and ground truth (``mislabeled_key``). Or pass ``extract(outputs, batch)``
    returning such a dict. Predictions must be out of sample (see
    :func:`~lightning_segqa.cross_validate`) for the scores to mean "mislabeled".

    Args:
        num_classes: number of classes.
        methods: scores to compute. Default ``("softmin",)``, the paper's method, which keeps the
            callback under 5 % of a validation epoch; pass :data:`~lightning_segqa.METHODS` for
            all seven (about 30 % with a light model: see ``docs/performance.md``).
        rank_by: the score that ranks suspects, defines the suspect share and gates.
        suspect_threshold: images scoring below it by ``rank_by`` are suspects.
        top_k: how many worst images to draw each epoch (0: no pictures).
        temperature: softmin temperature.
        ignore_index: class id excluded from every score.
        downsample: working resolution of connected components and confident learning.
        input_format: ``"auto"``, ``"probs"`` or ``"logits"``. With ``"auto"`` an output under
            the key ``logits`` is taken as logits and one under ``probs`` as probabilities;
            any other key is detected from its values.
        preds_key: key of the model output in the returned dict (None: first found of
            ``logits``, ``probs``, ``preds``).
        target_key: key of the given mask.
        index_key: key of the dataset indexes.
        image_key: key of the input images (optional; drawn when present).
        mislabeled_key: key of known-error flags (optional; enables detection metrics).
        extract: ``extract(outputs, batch) -> dict`` used instead of the keys.
        class_names: names shown in legends.
        palette: ``(K, 3)`` uint8 colours for masks.
        report_dir: folder for ``label_quality.json``/``.csv`` (default: the first logger's
            ``log_dir`` or the trainer's ``default_root_dir``).
        log_prefix: prefix of logged names.
        every_n_epochs: score every n-th validation epoch.
        max_suspect_fraction: gate limit on the suspect share (None: no gate).
        on_fail: what a failed gate does: ``"warn"``, ``"stop"`` (``trainer.should_stop``) or
            ``"raise"`` (:class:`~lightning_segqa.gate.LabelQualityError`).
        validate_args: check inputs on every batch (one or two device syncs per batch).
        draw_pictures: draw the ``top_k`` suspects (set False to log numbers and tables only).
        compile: score with compiled one-pass kernels (see :class:`~lightning_segqa.LabelQuality`).

    Examples:
        >>> monitor = LabelQualityMonitor(num_classes=12, top_k=8, ignore_index=255)
        >>> monitor.state_key
        "LabelQualityMonitor{'rank_by': 'softmin', 'prefix': 'segqa'}"
    """

    def __init__(
        self,
        num_classes: int,
        methods: Sequence[str] = ("softmin",),
        rank_by: str = "softmin",
        suspect_threshold: float = 0.1,
        top_k: int = 10,
        temperature: float = 0.1,
        ignore_index: int | None = None,
        downsample: int = 4,
        input_format: str = "auto",
        preds_key: str | None = None,
        target_key: str = "target",
        index_key: str = "index",
        image_key: str | None = "image",
        mislabeled_key: str | None = "is_mislabeled",
        extract: Callable[[Any, Any], Mapping[str, Any]] | None = None,
        class_names: Sequence[str] | None = None,
        palette: Tensor | None = None,
        report_dir: str | Path | None = None,
        log_prefix: str = "segqa",
        every_n_epochs: int = 1,
        max_suspect_fraction: float | None = None,
        on_fail: str = "warn",
        validate_args: bool = True,
        draw_pictures: bool = True,
        compile: bool = False,
    ) -> None:
        super().__init__()
        self.metric = LabelQuality(
            num_classes,
            methods=methods,
            temperature=temperature,
            ignore_index=ignore_index,
            input_format=input_format,
            downsample=downsample,
            validate_args=validate_args,
            compile=compile,
        )
        if rank_by not in self.metric.methods:
            raise ValueError(f"`rank_by` must be one of the computed methods {self.metric.methods}, got {rank_by!r}.")
        check_gate_args(rank_by, suspect_threshold, 0.0 if max_suspect_fraction is None else max_suspect_fraction)
        if on_fail not in ON_FAIL:
            raise ValueError(f"`on_fail` must be one of {ON_FAIL}, got {on_fail!r}.")
        if not isinstance(top_k, int) or top_k < 0:
            raise ValueError(f"`top_k` must be a non-negative int, got {top_k!r}.")
        if not isinstance(every_n_epochs, int) or every_n_epochs < 1:
            raise ValueError(f"`every_n_epochs` must be a positive int, got {every_n_epochs!r}.")
        if class_names is not None and len(class_names) != num_classes:
            raise ValueError(f"`class_names` must name all {num_classes} classes, got {len(class_names)} names.")
        if extract is not None and not callable(extract):
            raise TypeError(f"`extract` must be callable as extract(outputs, batch), got {type(extract).__name__}.")
        self.num_classes = num_classes
        self.input_format = input_format
        self.rank_by = rank_by
        self.suspect_threshold = float(suspect_threshold)
        self.top_k = top_k
        self.ignore_index = ignore_index
        self.keys = {
            "preds": preds_key,
            "target": target_key,
            "index": index_key,
            "image": image_key,
            "is_mislabeled": mislabeled_key,
        }
        self.extract = extract
        self.class_names = list(class_names) if class_names is not None else None
        self.palette = palette
        self.report_dir = Path(report_dir) if report_dir is not None else None
        self.log_prefix = log_prefix
        self.every_n_epochs = every_n_epochs
        self.max_suspect_fraction = max_suspect_fraction
        self.on_fail = on_fail
        # the heap ranks by a per-image score: rank_by when it is one, else softmin/first local
        per_image = [m for m in self.metric.methods if m in (*LOCAL_METHODS, "connected_components")]
        self.heap_method = rank_by if rank_by in per_image else (per_image[0] if per_image else None)
        self.heap = SuspectHeap(top_k if self.heap_method else 0, downsample=downsample)
        self.draw_pictures = draw_pictures
        self.report: LabelQualityReport | None = None
        self.decision: GateDecision | None = None
        self.last_states: dict[str, Tensor] | None = None
        self._active = False
        self._checked_keys: dict[str, bool] = {}  # output key -> its values match its name

    @property
    def state_key(self) -> str:
        """Identifies this callback's state in checkpoints."""
        return self._generate_state_key(rank_by=self.rank_by, prefix=self.log_prefix)

    # ------------------------------------------------------------------ hooks
    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        """Move the metric to the module's device."""
        self.metric.to(pl_module.device)

    def teardown(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        """Wait until the report files queued for writing are on disk."""
        wait_for_writes()

    def on_exception(self, trainer: Trainer, pl_module: LightningModule, exception: BaseException) -> None:
        """Finish the queued report writes (Lightning skips ``teardown`` when an exception escapes)."""
        try:
            wait_for_writes()
        except OSError as err:  # do not hide the exception that is already on its way
            warnings.warn(f"LabelQualityMonitor: {err}", UserWarning, stacklevel=2)

    def on_validation_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Start afresh (nothing is scored during the sanity check or skipped epochs)."""
        self.metric.to(pl_module.device)
        self.metric.reset()
        self.heap.clear()
        self.metric.keep_last_batch = self.draw_pictures and self.heap.k > 0
        self._active = not trainer.sanity_checking and (
            trainer.state.fn != "fit" or (trainer.current_epoch + 1) % self.every_n_epochs == 0
        )

    def on_validation_batch_end(
        self,
        trainer: Trainer,
        pl_module: LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        """Stream one batch into the metric and the suspect heap."""
        if not self._active:
            return
        got = self._extract(outputs, batch)
        if self.input_format == "auto":  # an output named "logits" or "probs" says what it holds
            self.metric.input_format = self._format_for(got["preds_key"], got["preds"])
        self.metric.update(got["preds"], got["target"], got["index"], got.get("is_mislabeled"))
        if self.heap.k and self.metric.last_batch is not None:
            prepared, scores = self.metric.last_batch
            self.metric.last_batch = None
            if prepared.target.ndim == 3:  # pictures for 2-D images only
                self.heap.push(
                    scores[f"score_{self.heap_method}"],
                    got["index"],
                    prepared,
                    images=got.get("image"),
                    is_mislabeled=got.get("is_mislabeled"),
                )

    def on_validation_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Compute the report, log it, write it, and apply the gate."""
        if not self._active:
            return
        self._active = False
        self.last_states = self.metric.state_tensors()
        report = self.metric.compute()
        self.report = report
        self._log_scalars(pl_module, report)
        self._gather_heap(trainer)
        if trainer.is_global_zero:
            self.publish(trainer, report, step=trainer.global_step)
        self._apply_gate(trainer, report)

    # ------------------------------------------------------------------ pieces
    def _format_for(self, key: str, preds: Tensor) -> str:
        """The format the key names, checked against the values of the first batch that uses it."""
        claimed = KEY_FORMATS.get(key)
        if claimed is None:
            return "auto"
        if key not in self._checked_keys:
            self._checked_keys[key] = detect_format(preds.detach()) == claimed
            if not self._checked_keys[key]:
                warnings.warn(
                    f"LabelQualityMonitor: the output under {key!r} does not look like {claimed}; its format is "
                    "detected from the values of every batch instead. Set input_format= to say what it holds.",
                    UserWarning,
                    stacklevel=2,
                )
        return claimed if self._checked_keys[key] else "auto"

    def _extract(self, outputs: Any, batch: Any) -> dict[str, Any]:
        data = self.extract(outputs, batch) if self.extract is not None else outputs
        if not isinstance(data, Mapping):
            raise TypeError(
                "LabelQualityMonitor needs `validation_step` to return a dict (e.g. "
                "{'logits': logits, 'target': mask, 'index': index}) or an `extract(outputs, batch)` "
                f"callable returning one; got {type(data).__name__}."
            )
        preds_key = self.keys["preds"] or next((k for k in PREDS_KEYS if k in data), PREDS_KEYS[0])
        needed = {"preds": preds_key, "target": self.keys["target"], "index": self.keys["index"]}
        missing = [key for key in needed.values() if key not in data]
        if missing:
            raise KeyError(
                f"LabelQualityMonitor: the validation output has no {missing}; it has {sorted(map(str, data))}. "
                "Return those keys from `validation_step`, or configure preds_key=/target_key=/index_key=, "
                "or pass extract=lambda outputs, batch: {'preds': ..., 'target': ..., 'index': ...}."
            )
        got = {name: data[key] for name, key in needed.items()}
        got["preds_key"] = preds_key
        for name in ("image", "is_mislabeled"):
            key = self.keys[name]
            if key is not None and key in data:
                got[name] = data[key]
        return got

    def _log_scalars(self, pl_module: LightningModule, report: LabelQualityReport) -> None:
        from lightning_segqa.gate import suspect_fraction

        values = {f"{self.log_prefix}/suspect_fraction": suspect_fraction(report, self.rank_by, self.suspect_threshold)}
        if report.is_mislabeled is not None:
            for method, metrics in report.detection().items():
                for name in DETECTION_METRICS:
                    values[f"{self.log_prefix}/{name}_{method}"] = metrics[name]
        for name, value in values.items():
            pl_module.log(name, float(value), on_epoch=True, sync_dist=False, rank_zero_only=False)

    def _gather_heap(self, trainer: Trainer) -> None:
        if trainer.world_size > 1 and self.heap.k and torch.distributed.is_initialized():
            gathered: list[Any] = [None] * trainer.world_size
            torch.distributed.all_gather_object(gathered, self.heap.state())
            for items in gathered:
                self.heap.load(items)

    def suspect_images(self, report: LabelQualityReport) -> list:
        """The drawn suspects of the current heap, with the report's final scores."""
        scores = report.scores.get(self.heap_method or "", None)
        by_index = {} if scores is None else dict(zip(report.indexes.tolist(), scores.tolist(), strict=True))
        return self.heap.entries(
            self.heap_method or self.rank_by, report.details.get("cl_cutoff"), self.ignore_index, by_index
        )

    @rank_zero_only
    def publish(self, trainer: Trainer, report: LabelQualityReport, step: int, tag: str = "") -> None:
        """Draw suspects, the ranked table and curves to every logger; queue the report files.

        The JSON/CSV report (and the curves PNG) are written atomically on a background
        thread; :meth:`teardown` or :func:`~lightning_segqa.report.wait_for_writes` waits for them.
        """
        from lightning_segqa.loggers import adapters_for

        key = f"{self.log_prefix}{tag}"
        adapters = adapters_for(trainer.loggers)
        suspects = self.suspect_images(report) if self.draw_pictures and adapters else []
        rows = report_rows(report, self.rank_by, self.top_k or 10) if adapters else []
        columns = ["rank", "index", *(SHORT_NAMES[m] for m in report.methods)]
        if report.is_mislabeled is not None:
            columns.append("error")
        figure = None
        truth = report.is_mislabeled
        if truth is not None and 0 < int(truth.sum()) < truth.numel():
            from lightning_segqa.visuals import plot_detection_curves

            figure = plot_detection_curves(report.scores, report.is_mislabeled)
        for adapter in adapters:
            if suspects:
                adapter.log_suspects(
                    f"{key}/suspects", suspects, step, self.class_names, self.palette, self.ignore_index
                )
            adapter.log_table(f"{key}/ranking", columns, rows, step)
            if figure is not None:
                adapter.log_figure(f"{key}/detection_curves", figure, step)
        # files go through a writer thread: the loop never waits on the disk (see `teardown`)
        out_dir = self.resolve_report_dir(trainer)
        write_in_background(out_dir / f"label_quality{tag}.json", report.to_json)
        write_in_background(out_dir / f"label_quality{tag}.csv", partial(report.to_csv, method=self.rank_by))
        if figure is not None:
            from lightning_segqa.loggers.base import png_bytes
            from lightning_segqa.visuals import figure_to_array

            write_in_background(out_dir / f"detection_curves{tag}.png", png_bytes(figure_to_array(figure)))

    def resolve_report_dir(self, trainer: Trainer) -> Path:
        """Where the report files go."""
        if self.report_dir is not None:
            return self.report_dir
        for logger in trainer.loggers:
            log_dir = getattr(logger, "log_dir", None)
            if isinstance(log_dir, str):
                return Path(log_dir)
        return Path(trainer.default_root_dir)

    def _apply_gate(self, trainer: Trainer, report: LabelQualityReport) -> None:
        if self.max_suspect_fraction is None:
            return
        decision = evaluate_gate(report, self.rank_by, self.suspect_threshold, self.max_suspect_fraction)
        failed = trainer.strategy.reduce_boolean_decision(not decision.passed, all=False)
        self.decision = decision
        if not failed:
            return
        if self.on_fail == "raise":
            wait_for_writes()  # the report that failed the gate is on disk before the error
            raise LabelQualityError(decision.message)
        if self.on_fail == "stop":
            trainer.should_stop = True
        warnings.warn(decision.message, UserWarning, stacklevel=2)

    # ------------------------------------------------------------------ checkpointing
    def state_dict(self) -> dict[str, Any]:
        """Last report, gate decision and the running epoch's accumulated states."""
        return {
            "report": None if self.report is None else self.report.to_dict(),
            "states": {k: v.cpu() for k, v in self.metric.state_tensors().items()} if self._active else None,
            "heap": self.heap.state(),
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` saved."""
        if state_dict.get("report") is not None:
            self.report = LabelQualityReport.from_dict(state_dict["report"])
        if state_dict.get("states"):
            self.metric.reset()
            self.metric.load_state_tensors(state_dict["states"])
        self.heap.clear()
        self.heap.load(state_dict.get("heap", []))


def report_rows(report: LabelQualityReport, method: str, k: int) -> list[list[Any]]:
    """Rows of the ranked table: rank, index, every score, and the known error flag."""
    pos = {int(i): p for p, i in enumerate(report.indexes.tolist())}
    rows = []
    for rank, idx in enumerate(report.suspects(method, k=k).tolist(), start=1):
        p = pos[idx]
        row: list[Any] = [rank, idx, *(round(float(report.scores[m][p]), 4) for m in report.methods)]
        if report.is_mislabeled is not None:
            row.append(bool(report.is_mislabeled[p]))
        rows.append(row)
    return rows
