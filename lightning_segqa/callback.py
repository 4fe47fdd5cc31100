"""``LabelQualityMonitor``: the Lightning callback that scores masks during validation."""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.utilities import rank_zero_only, rank_zero_warn
from torch import Tensor

from lightning_segqa.agreement import warn_if_weak_model
from lightning_segqa.gate import ON_FAIL, GateDecision, LabelQualityError, check_gate_args, evaluate_gate
from lightning_segqa.loggers.steps import scalar_step
from lightning_segqa.metric import LabelQuality
from lightning_segqa.monitor_metric import configured_metric
from lightning_segqa.monitor_publish import is_remote, publish_report, scalar_values, suspect_entries
from lightning_segqa.monitor_state import export_state, merge_exported
from lightning_segqa.outputs import OutputReader
from lightning_segqa.publishing import run_dir_of
from lightning_segqa.report import LabelQualityReport, wait_for_writes
from lightning_segqa.scores import per_image
from lightning_segqa.suspects import SuspectHeap


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
    (``image_key``), ground truth (``mislabeled_key``) and image names (``name_key``, read from
    the returned dict or else from the batch). Or pass ``extract(outputs, batch)`` returning
    such a dict. Several validation dataloaders are scored apart: one report per
    ``dataloader_idx`` (:attr:`reports`), logged under ``{prefix}_dataloader_{i}`` for ``i > 0``.
    Predictions must be out of sample (see :func:`~lightning_segqa.cross_validate`) for the
    scores to mean "mislabeled".

    Configure the scoring either with the arguments below (``num_classes``, ``methods``,
    ``temperature``, ``ignore_index``, ``downsample``, ``input_format``, ``validate_args``,
    ``compile``) or by passing ``metric=LabelQuality(...)``; the monitor then scores with that
    metric (it resets it each scored epoch) and those arguments stay at their defaults. Under
    ``Trainer(fast_dev_run=...)`` the monitor does nothing (no scores, logs, files or gate).

    Args:
        num_classes: number of classes (not needed with ``metric=``).
        methods: scores to compute. Default ``("softmin",)``, the paper's method, which keeps the
            callback under 5 % of a validation epoch; pass :data:`~lightning_segqa.METHODS` for
            all seven (about 30 % with a light model: see ``docs/performance.md``).
        rank_by: the score that ranks suspects, defines the suspect share and gates.
        suspect_threshold: images scoring below it by ``rank_by`` are suspects (None: the default
            rule, :data:`~lightning_segqa.suspect_rule.DEFAULT_RULE`).
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
            ``log_dir`` or the trainer's ``default_root_dir``); remote URLs (``s3://``, ``gs://``,
            any fsspec protocol) work as in Lightning's own callbacks.
        log_prefix: prefix of logged names.
        every_n_epochs: score every n-th validation epoch.
        max_suspect_fraction: gate limit on the suspect share (None: no gate).
        on_fail: what a failed gate does: ``"warn"``, ``"stop"`` (``trainer.should_stop``) or
            ``"raise"`` (:class:`~lightning_segqa.gate.LabelQualityError`).
        validate_args: check inputs on every batch (one or two device syncs per batch).
        draw_pictures: draw the ``top_k`` suspects (set False to log numbers and tables only).
        compile: score with compiled one-pass kernels (None: for large batches; see
            :class:`~lightning_segqa.LabelQuality`).
        name_key: key of each image's name (e.g. file stem) in the returned dict or the batch; shown
            in tables, captions, the report files and the gate's message (None: no names).
        start_epoch: first epoch (0-based) at which the gate decides during ``fit``; earlier
            epochs are scored and logged but never gated (the model is still untrained).
        metric: a configured :class:`~lightning_segqa.LabelQuality` to score with, instead of the
            scoring arguments above.

    Examples:
        >>> monitor = LabelQualityMonitor(num_classes=12, top_k=8, ignore_index=255)
        >>> monitor.state_key
        "LabelQualityMonitor{'rank_by': 'softmin', 'prefix': 'segqa'}"
        >>> LabelQualityMonitor(metric=LabelQuality(12, methods=["softmin", "iou"], ignore_index=255)).ignore_index
        255
    """

    def __init__(
        self,
        num_classes: int | None = None,
        methods: Sequence[str] = ("softmin",),
        rank_by: str = "softmin",
        suspect_threshold: float | None = None,
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
        compile: bool | None = None,
        name_key: str | None = "name",
        start_epoch: int = 0,
        metric: LabelQuality | None = None,
    ) -> None:
        super().__init__()
        self.metric = configured_metric(
            metric,
            num_classes,
            methods=methods,
            temperature=temperature,
            ignore_index=ignore_index,
            input_format=input_format,
            downsample=downsample,
            validate_args=validate_args,
            compile=compile,
        )
        num_classes = self.metric.num_classes
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
        if isinstance(start_epoch, bool) or not isinstance(start_epoch, int) or start_epoch < 0:
            raise ValueError(f"`start_epoch` must be a non-negative int, got {start_epoch!r}.")
        self.num_classes = num_classes
        self.input_format = self.metric.input_format
        self.rank_by = rank_by
        self.suspect_threshold = None if suspect_threshold is None else float(suspect_threshold)
        self.top_k = top_k
        self.ignore_index = self.metric.ignore_index
        self.keys = {
            "preds": preds_key,
            "target": target_key,
            "index": index_key,
            "image": image_key,
            "is_mislabeled": mislabeled_key,
            "name": name_key,
        }
        self.reader = OutputReader(self.keys, extract)
        self.extract = extract
        self.class_names = list(class_names) if class_names is not None else None
        self.palette = palette
        self.report_dir = report_dir if report_dir is None or is_remote(report_dir) else Path(report_dir)
        self.log_prefix = log_prefix
        self.every_n_epochs = every_n_epochs
        self.max_suspect_fraction = max_suspect_fraction
        self.on_fail = on_fail
        self.start_epoch = start_epoch
        # the heap ranks by a per-image score: rank_by when it is one, else softmin/first local
        ranked = [m for m in self.metric.methods if per_image(m)]  # scores known after each batch
        self.heap_method = rank_by if rank_by in ranked else (ranked[0] if ranked else None)
        self.heap = SuspectHeap(top_k if self.heap_method else 0, downsample=self.metric.downsample)
        self.draw_pictures = draw_pictures
        self.report: LabelQualityReport | None = None
        #: one report per validation dataloader (``dataloader_idx`` -> report) of the last scored epoch
        self.reports: dict[int, LabelQualityReport] = {}
        self.decision: GateDecision | None = None
        self.decisions: dict[int, GateDecision] = {}
        self.last_states: dict[str, Tensor] | None = None
        self._active = False
        self._others: dict[int, tuple[LabelQuality, SuspectHeap]] = {}  # dataloaders after the first

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
            rank_zero_warn(f"LabelQualityMonitor: the report files could not be written: {err}", category=UserWarning)

    def on_validation_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Start afresh (nothing is scored during the sanity check, ``fast_dev_run`` or skipped epochs)."""
        self.metric.to(pl_module.device)
        self.metric.reset()
        self.heap.clear()
        self._others = {}
        self._prepare(self.metric)
        self._active = (
            not trainer.sanity_checking
            and not trainer.fast_dev_run
            and (trainer.state.fn != "fit" or (trainer.current_epoch + 1) % self.every_n_epochs == 0)
        )

    def _prepare(self, metric: LabelQuality) -> None:
        metric.track_class_confidence = self.draw_pictures and self.heap.k > 0  # thresholds that mark wrong pixels

    def _scorer(self, dataloader_idx: int, device: torch.device) -> tuple[LabelQuality, SuspectHeap]:
        """The metric and heap of one validation dataloader (made on first use for loaders after the first)."""
        if dataloader_idx == 0:
            return self.metric, self.heap
        if dataloader_idx not in self._others:
            metric = copy.deepcopy(self.metric).to(device)
            metric.reset()
            self._prepare(metric)
            self._others[dataloader_idx] = (metric, SuspectHeap(self.heap.k, downsample=self.heap.downsample))
        return self._others[dataloader_idx]

    def on_validation_batch_end(
        self,
        trainer: Trainer,
        pl_module: LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        """Stream one batch into its dataloader's metric and suspect heap."""
        if not self._active:
            return
        got = self.reader.read(outputs, batch)
        metric, heap = self._scorer(dataloader_idx, pl_module.device)
        if self.input_format == "auto":  # an output named "logits" or "probs" says what it holds
            metric.input_format = self.reader.format_for(got["preds_key"], got["preds"])
        names = got.get("names")
        batch = metric(got["preds"], got["target"], got["index"], got.get("is_mislabeled"), names=names)
        drawn = heap.k and self.draw_pictures and len(batch) and batch.inputs is not None
        if drawn and batch.inputs.target.ndim == 3:  # pictures for 2-D images only
            heap.push(
                batch.scores[self.heap_method],
                got["index"],
                batch.inputs,
                images=got.get("image"),
                is_mislabeled=got.get("is_mislabeled"),
                names=names,
            )

    def on_validation_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Compute one report per dataloader, log and write them, and apply the gate."""
        if not self._active:
            return
        self._active = False
        self.last_states = self.metric.state_tensors()
        scorers = {0: (self.metric, self.heap), **self._others}
        self.reports = {idx: scorers[idx][0].compute() for idx in sorted(scorers)}
        self.report = self.reports[0]
        for idx, report in self.reports.items():
            heap = scorers[idx][1]
            self._log_scalars(pl_module, report, self.log_prefix + _tag(idx))
            heap.gather(trainer.world_size)
            if trainer.is_global_zero:  # pictures at the step of the `self.log` scalars
                self.publish(trainer, report, step=scalar_step(trainer), tag=_tag(idx), heap=heap)
        self._apply_gate(trainer)

    def on_fit_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Warn once per fit when the final model agrees too little with the masks to judge them."""
        warn_if_weak_model(self.report)

    # ------------------------------------------------------------------ pieces
    def _log_scalars(self, pl_module: LightningModule, report: LabelQualityReport, prefix: str) -> None:
        for name, value in scalar_values(self, report, prefix).items():
            # every rank holds the same value (computed from gathered states): "max" keeps it as it is
            pl_module.log(name, value, on_epoch=True, sync_dist=True, reduce_fx="max", rank_zero_only=False)

    def suspect_images(self, report: LabelQualityReport, heap: SuspectHeap | None = None) -> list:
        """The drawn suspects of ``heap`` (default: the first dataloader's), with the report's scores and names."""
        return suspect_entries(self, report, self.heap if heap is None else heap)

    @rank_zero_only
    def publish(
        self, trainer: Trainer, report: LabelQualityReport, step: int, tag: str = "", heap: SuspectHeap | None = None
    ) -> None:
        """Draw suspects, the ranked table and curves to every logger; queue the report files.

        The JSON/CSV report (and the curves PNG) are written atomically on a background thread to
        :meth:`resolve_report_dir`, then attached to W&B/MLflow runs;
        :meth:`teardown` or :func:`~lightning_segqa.report.wait_for_writes` waits for them.
        """
        publish_report(self, report, trainer.loggers, self.resolve_report_dir(trainer), step, tag, heap)

    @rank_zero_only
    def publish_to(
        self, loggers: Sequence[Any], report: LabelQualityReport, report_dir: str | Path
    ) -> list[Path] | None:
        """Publish ``report`` (e.g. merged from :meth:`merge_exported`) to ``loggers`` and ``report_dir``, no Trainer.

        As :meth:`publish` at step 0 (rank zero only; other ranks get None);
        :func:`~lightning_segqa.report.wait_for_writes` waits for the files.
        """
        return publish_report(self, report, loggers, report_dir)

    def resolve_report_dir(self, trainer: Trainer) -> Path | str:
        """Where the report files go: ``report_dir``, else the first logger's run folder, else ``default_root_dir``.

        The run folder is the ``log_dir`` of TensorBoard and CSV loggers, ``segqa/`` in a W&B run's
        files, and ``segqa/`` in an MLflow run's artifacts, so each run keeps its own files.
        """
        return self.report_dir if self.report_dir is not None else run_dir_of(trainer)

    def _apply_gate(self, trainer: Trainer) -> None:
        if self.max_suspect_fraction is None:
            return
        if trainer.state.fn == "fit" and trainer.current_epoch < self.start_epoch:
            return  # warm-up: no decision on a model that has barely trained (same on every rank)
        self.decisions = {
            idx: evaluate_gate(report, self.rank_by, self.suspect_threshold, self.max_suspect_fraction)
            for idx, report in self.reports.items()
        }
        self.decision = self.decisions[0]
        failing = [(idx, d) for idx, d in self.decisions.items() if not d.passed]
        failed = trainer.strategy.reduce_boolean_decision(bool(failing), all=False)
        if not failed:
            return
        several = len(self.decisions) > 1
        message = " ".join(f"[dataloader {idx}] {d.message}" if several else d.message for idx, d in failing)
        if self.on_fail == "raise":
            wait_for_writes()  # the report that failed the gate is on disk before the error
            err = LabelQualityError.from_decision(failing[0][1] if failing else self.decision)
            err.args = (message or err.args[0],)
            raise err
        if self.on_fail == "stop":
            trainer.should_stop = True
        rank_zero_warn(message or self.decision.message, category=UserWarning)

    # ------------------------------------------------------------------ export
    def export_state(self) -> dict[str, Any]:
        """The last scored epoch's states and suspects (:func:`~lightning_segqa.monitor_state.export_state`)."""
        return export_state(self)

    def merge_exported(self, exported: Iterable[Mapping[str, Any]]) -> LabelQualityReport:
        """Merge :meth:`export_state` results (e.g. every fold's) here; sets and returns :attr:`report`.

        See :func:`~lightning_segqa.monitor_state.merge_exported`; :meth:`publish_to` then logs and writes it.
        """
        return merge_exported(self, exported)

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


def _tag(dataloader_idx: int) -> str:
    """Suffix of logged names and file names of one validation dataloader ("" for the first)."""
    return "" if dataloader_idx == 0 else f"_dataloader_{dataloader_idx}"
