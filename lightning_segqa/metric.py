"""``LabelQuality``: a torchmetrics ``Metric`` that streams softmax outputs and scores every image."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor
from torchmetrics import Metric
from torchmetrics.utilities.data import dim_zero_cat
from torchmetrics.utilities.exceptions import TorchMetricsUserError

from lightning_segqa.agreement import DETAILS_KEY as _AGREEMENT_KEY
from lightning_segqa.agreement import agreement_stats, pass_agreement
from lightning_segqa.batch_scores import BatchScores
from lightning_segqa.functional._inputs import check_format
from lightning_segqa.functional.class_confidence import class_thresholds
from lightning_segqa.functional.fused import check_compile
from lightning_segqa.functional.thresholded import DEFAULT_THRESHOLDS, threshold_grid
from lightning_segqa.image_ids import (
    check_indexes,
    decode_names,
    encode_names,
    mask_fingerprint,
    warn_conflicting_repeats,
)
from lightning_segqa.log_guard import refuse_lightning_logging
from lightning_segqa.report import LabelQualityReport
from lightning_segqa.scores import REGISTRY, ScoreMethod, Settings, kept_rows, read_batch
from lightning_segqa.scores.unit import NUM_VALID, check_finite_scores


class LabelQuality(Metric):
    """Label quality of every image of a segmentation dataset, from streamed model outputs.

    Feed it out-of-sample softmax outputs (or logits) batch by batch with each image's dataset
    index; :meth:`compute` returns a :class:`~lightning_segqa.LabelQualityReport` with one
    score per image and method (lower = more likely mislabeled). Each method is a unit of
    :data:`~lightning_segqa.scores.REGISTRY` that keeps its own states: scores that depend on one
    image only are computed in ``update``; thresholded CCP and confident learning keep small
    per-image summaries (see ``docs/metric.md`` for bytes per image and per pixel), never the
    probabilities. Everything runs on the metric's device.

    Repeated indexes (a ``DistributedSampler`` pads the last batch with repeats) are kept once,
    and the report is ordered by index, so one process and many give the same report.

    Args:
        num_classes: number of classes ``K``.
        methods: which of the registered scores to compute (default: all of
            :data:`~lightning_segqa.scores.REGISTRY`, the seven of :data:`~lightning_segqa.METHODS`).
        temperature: softmin temperature (paper: 0.1).
        ignore_index: class id excluded from every score (e.g. 255).
        input_format: ``"auto"``, ``"probs"`` or ``"logits"``.
        downsample: block size for connected components and confident learning (paper: 4).
        connectivity: neighbourhood of connected components (1 = faces, as scipy's default).
        thresholds: TCCP threshold grid: a count ``G`` (``0, 1/G, ...``) or a 1-D tensor.
        validate_args: check values on every update (one device synchronisation each; two when
            only softmin/CIL are computed from logits: labels first, then the scores for NaN).
        compile: score with the compiled one-pass kernels (:mod:`~lightning_segqa.functional.fused`):
            the same scores, reading each batch's probabilities once (value checks included)
            instead of three to five times. None (default): for batches of at least 4M values
            (``B*K*H*W``); True: always; False: never. Compiling takes a few seconds once per
            process (a new batch size does not compile again). Falls back to the eager kernels,
            with a warning, where ``torch.compile`` does not work.
        kwargs: passed to :class:`torchmetrics.Metric`.

    Examples:
        >>> import torch
        >>> metric = LabelQuality(num_classes=3, methods=["softmin", "iou"])
        >>> g = torch.Generator().manual_seed(0)
        >>> logits = torch.randn(4, 3, 8, 8, generator=g)
        >>> target = logits.argmax(1)
        >>> target[0, :4] = (target[0, :4] + 1) % 3  # a wrong region in image 0
        >>> metric.update(logits, target, indexes=torch.arange(4))
        >>> report = metric.compute()
        >>> report.ranking("softmin")[0].item()
        0
    """

    is_differentiable = False
    higher_is_better = None
    full_state_update = False

    def __init__(
        self,
        num_classes: int,
        methods: Sequence[str] | None = None,
        temperature: float = 0.1,
        ignore_index: int | None = None,
        input_format: str = "auto",
        downsample: int = 4,
        connectivity: int = 1,
        thresholds: int | Tensor = DEFAULT_THRESHOLDS,
        validate_args: bool = True,
        compile: bool | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if not isinstance(num_classes, int) or isinstance(num_classes, bool) or num_classes < 2:
            raise ValueError(f"`num_classes` must be an int >= 2, got {num_classes!r}.")
        methods = list(REGISTRY if methods is None else methods)
        unknown = [m for m in methods if m not in REGISTRY]
        if unknown or not methods:
            raise ValueError(f"`methods` must be a non-empty subset of {tuple(REGISTRY)}, got {methods!r}.")
        if not isinstance(temperature, (int, float)) or not temperature > 0:
            raise ValueError(f"`temperature` must be a positive number, got {temperature!r}.")
        if ignore_index is not None and not isinstance(ignore_index, int):
            raise ValueError(f"`ignore_index` must be an int or None, got {ignore_index!r}.")
        check_format(input_format)
        if not isinstance(downsample, int) or downsample < 1:
            raise ValueError(f"`downsample` must be a positive int, got {downsample!r}.")
        if connectivity not in (1, 2, 3):
            raise ValueError(f"`connectivity` must be 1, 2 or 3, got {connectivity!r}.")
        self.num_classes = num_classes
        self.methods = methods
        self.temperature = float(temperature)
        self.ignore_index = ignore_index
        self.input_format = input_format
        self.downsample = downsample
        self.connectivity = connectivity
        self.validate_args = validate_args
        check_compile(compile)
        self.compiled_kernels = compile  # not `self.compile`: that is nn.Module.compile
        self.register_buffer("grid", threshold_grid(thresholds), persistent=False)
        self._uniform_grid = thresholds if isinstance(thresholds, int) else None
        #: when True, ``update`` also sums each class's self-confidence per image (``2 K`` numbers)
        #: and ``compute`` reports ``details["class_confidence"]``: the per-class thresholds that
        #: mark confidently mispredicted pixels in the suspect pictures (the callback sets it)
        self.track_class_confidence = False

        # every state is a 1-D list state gathered with "cat" (safe under distributed gather)
        for name in ("indexes", "is_mislabeled", "num_valid"):
            self.add_state(name, default=[], dist_reduce_fx="cat")
        # per-image pixel agreement of the model with the given mask (report.details["agreement"])
        self.add_state("agreement", default=[], dist_reduce_fx="cat")
        # image names as NUL-terminated UTF-8 bytes (gathered with the scores); a hash of each given mask
        self.add_state("names", default=[], dist_reduce_fx="cat")
        self.add_state("mask_fingerprint", default=[], dist_reduce_fx="cat")
        for unit in self._units:  # each method's own states (see lightning_segqa.scores)
            for name in unit.states:
                self.add_state(name, default=[], dist_reduce_fx="cat")
        for name in ("conf_sums", "conf_counts"):  # filled only while `track_class_confidence`
            self.add_state(name, default=[], dist_reduce_fx="cat")

    @property
    def _units(self) -> list[ScoreMethod]:
        """The chosen methods' units, in the order of ``methods``."""
        return [REGISTRY[m] for m in self.methods]

    def _settings(self) -> Settings:
        """The settings the methods read (the threshold grid as the buffer on the metric's device)."""
        grid, uniform = self.grid, self._uniform_grid
        return Settings(self.temperature, self.downsample, self.connectivity, grid, uniform, self.compiled_kernels)

    @property
    def _forward_cache(self) -> Any:
        """The last ``forward``'s per-image scores; reading it is how ``self.log(name, metric)`` starts."""
        refuse_lightning_logging()
        return self.__dict__.get("_last_forward")

    @_forward_cache.setter
    def _forward_cache(self, value: Any) -> None:
        self.__dict__["_last_forward"] = value

    def update(
        self,
        preds: Tensor,
        target: Tensor,
        indexes: Tensor,
        is_mislabeled: Tensor | None = None,
        names: Sequence[str] | None = None,
    ) -> None:
        """Score one batch.

        Args:
            preds: ``(B, K, *spatial)`` out-of-sample probabilities or logits.
            target: ``(B, *spatial)`` given masks (integer class ids).
            indexes: ``(B,)`` dataset index of each image.
            is_mislabeled: optional ``(B,)`` bool ground truth, for detection metrics.
            names: optional ``B`` image names (e.g. file stems), carried into the report.
        """
        self._score_batch(preds, target, indexes, is_mislabeled, names)

    def forward(
        self,
        preds: Tensor,
        target: Tensor,
        indexes: Tensor,
        is_mislabeled: Tensor | None = None,
        names: Sequence[str] | None = None,
    ) -> BatchScores:
        """Score one batch, add it to the states (as :meth:`update`) and return its per-image scores.

        One pass over the batch: unlike torchmetrics' default ``forward``, nothing is computed
        twice and no report is built. The arguments are those of :meth:`update`.

        Returns:
            The batch's :class:`~lightning_segqa.batch_scores.BatchScores`: its indexes, the
            per-image scores (every computed method except ``thresholded_ccp`` and
            ``confident_learning_counts``, which need the whole dataset) and the checked inputs.

        Examples:
            >>> import torch
            >>> metric = LabelQuality(num_classes=3, methods=["softmin", "iou"])
            >>> logits = torch.randn(2, 3, 4, 4, generator=torch.Generator().manual_seed(0))
            >>> batch = metric(logits, logits.argmax(1), indexes=torch.tensor([10, 11]))
            >>> sorted(batch.scores), batch.scores["iou"].tolist()
            (['iou', 'softmin'], [1.0, 1.0])
            >>> metric.compute().indexes.tolist()  # the batch is in the states too
            [10, 11]
        """
        if self._is_synced:
            raise TorchMetricsUserError(
                "`LabelQuality` is synced: call `unsync()` before scoring another batch with `forward`."
            )
        with torch.set_grad_enabled(False):
            batch = self._score_batch(preds, target, indexes, is_mislabeled, names)
        self._computed = None  # as the wrapped `update`: a later `compute` sees the new batch
        self._update_count += 1
        if self.compute_on_cpu:
            self._move_list_states_to_cpu()
        self._forward_cache = dict(batch.scores)  # what Lightning reads when the metric is logged per step
        return batch

    def _score_batch(
        self,
        preds: Tensor,
        target: Tensor,
        indexes: Tensor,
        is_mislabeled: Tensor | None,
        names: Sequence[str] | None,
    ) -> BatchScores:
        """Score one batch and append it to the states; the states stay untouched when it raises."""
        units, settings = self._units, self._settings()
        # scores of s alone (softmin, CIL) need no scan of the logits: a NaN score reveals bad values
        s_only = self.input_format == "logits" and all(u.s_only and u.per_image for u in units)
        checks = {"num_classes": self.num_classes, "ignore_index": self.ignore_index}
        checks.update(input_format=self.input_format, validate_args=self.validate_args, scan_logits=not s_only)
        # one checked pass at full resolution (the agreement reads it too); the working one on demand
        batch = read_batch(preds, target, units, settings, pixels=True, **checks)
        b = preds.shape[0]
        idx = check_indexes(indexes, b, self.device)
        name_bytes = encode_names(names, b, self.device)
        if b == 0:  # e.g. an uneven split across processes: nothing to add
            return BatchScores(idx, {}, batch.prepared)
        if is_mislabeled is None:
            truth = torch.full((b,), -1.0, device=self.device)  # unknown (not NaN: MetricCollection compares states)
        else:
            truth_t = torch.as_tensor(is_mislabeled)
            if truth_t.shape != (b,):
                raise ValueError(f"`is_mislabeled` must have shape ({b},), got {tuple(truth_t.shape)}.")
            truth = truth_t.to(device=self.device, dtype=torch.float32)
        new: dict[str, Tensor] = {"indexes": idx, "is_mislabeled": truth, "names": name_bytes}
        fingerprint = batch.full.fingerprint  # taken by the compiled pass, else here (same values)
        if fingerprint is None:
            prepared = batch.prepared
            fingerprint = mask_fingerprint(prepared.target, None if prepared.all_valid else prepared.valid)
        new["mask_fingerprint"] = fingerprint.to(self.device)
        new[NUM_VALID] = batch.num_valid
        for unit in units:
            out = unit.update(batch, settings)
            new.update({k: v.float() for k, v in out.items()} if unit.per_image else out)
        scores = {u.name: u.compute(kept_rows(u, new), settings)[0] for u in units if u.per_image}
        if s_only and self.validate_args:
            check_finite_scores(scores[units[0].name], new[NUM_VALID])
        new["agreement"] = pass_agreement(batch.full)
        if self.track_class_confidence:
            full = batch.full  # per class: sums of s over its pixels, and their count
            new.update(conf_sums=full.class_sums.flatten(), conf_counts=full.class_counts.double().flatten())
        # all work is done: only now touch the states, so a failed update changes nothing
        for name, value in new.items():
            getattr(self, name).append(value)
        return BatchScores(idx, scores, batch.prepared)

    def compute(self) -> LabelQualityReport:
        """Merge everything seen so far into a report (repeated indexes kept once, ordered by index).

        The report is not a number: ``self.log("name", metric)`` raises a ``TypeError`` that says
        which scalars to log instead (see ``docs/metric.md``).
        """
        refuse_lightning_logging()
        if isinstance(self.indexes, list) and not self.indexes:
            raise ValueError("`LabelQuality.compute()` was called before any `update()`.")
        idx = dim_zero_cat(self.indexes)
        n = idx.numel()
        sorted_idx, perm = torch.sort(idx, stable=True)
        first = torch.ones(n, dtype=torch.bool, device=idx.device)
        first[1:] = sorted_idx[1:] != sorted_idx[:-1]
        keep = perm[first]  # positions of the first occurrence of each index, by index
        keep_mask = torch.zeros(n, dtype=torch.bool, device=idx.device)
        keep_mask[keep] = True
        order = torch.argsort(idx[keep_mask])  # kept rows (in state order) -> by index
        details: dict[str, Any] = {
            "num_classes": self.num_classes,
            "temperature": self.temperature,
            "downsample": self.downsample,
            "ignore_index": self.ignore_index,
        }
        units, settings = self._units, self._settings()
        states = {name: dim_zero_cat(getattr(self, name)) for u in units for name in u.states}
        states[NUM_VALID] = dim_zero_cat(self.num_valid)
        scores: dict[str, Tensor] = {}
        rows_kept = None if bool(first.all()) else keep_mask  # no repeats: no gathers of the ragged states
        for unit in units:
            unit_scores, unit_details = unit.compute(kept_rows(unit, states, rows_kept), settings)
            scores[unit.name] = unit_scores.to(idx.device)[order]
            details.update(unit_details)
        warn_conflicting_repeats(dim_zero_cat(self.mask_fingerprint)[perm], first)
        names = decode_names(dim_zero_cat(self.names), n, keep)
        if isinstance(self.conf_sums, Tensor) or self.conf_sums:  # every image tracked: thresholds
            conf_sums, conf_counts = dim_zero_cat(self.conf_sums), dim_zero_cat(self.conf_counts)
            if conf_sums.numel() == n * self.num_classes:
                k = self.num_classes
                thresholds = class_thresholds(conf_sums.view(n, k)[keep_mask], conf_counts.view(n, k)[keep_mask])
                details["class_confidence"] = thresholds.tolist()
        if isinstance(self.agreement, Tensor) or self.agreement:
            details[_AGREEMENT_KEY] = agreement_stats(dim_zero_cat(self.agreement)[keep].float())
        truth = dim_zero_cat(self.is_mislabeled)[keep]
        unknown = torch.isnan(truth) | (truth < 0)  # -1 marks unknown; NaN reads as unknown too
        if unknown.all():
            is_mislabeled = None
        elif unknown.any():
            warnings.warn(
                "`is_mislabeled` was given for some batches only; detection metrics are skipped.",
                UserWarning,
                stacklevel=2,
            )
            is_mislabeled = None
        else:
            is_mislabeled = truth.bool().cpu()
        empty = int((states[NUM_VALID][keep] == 0).sum())
        if empty:
            warnings.warn(
                f"{empty} image(s) have no valid pixel (all `ignore_index`); they score NaN.", UserWarning, stacklevel=2
            )
        return LabelQualityReport(
            indexes=sorted_idx[first].cpu(),
            scores={m: s.float().cpu() for m, s in scores.items()},
            is_mislabeled=is_mislabeled,
            details=details,
            names=names,
        )

    def plot(self, val: LabelQualityReport | None = None, ax: Any = None) -> tuple[Any, Any]:
        """Score distributions per method, and ROC/PR curves with known errors: ``(figure, axes)``.

        ``val``: a report (default: :meth:`compute`'s); ``ax``: an ``Axes`` for the distributions
        alone. See :func:`~lightning_segqa.report_plot.plot_report`.
        """
        from lightning_segqa.report_plot import plot_report

        return plot_report(self.compute() if val is None else val, ax)

    def state_tensors(self) -> dict[str, Tensor]:
        """Accumulated states of this process, each concatenated into one tensor (for saving)."""
        return {
            name: dim_zero_cat(value)
            if isinstance(value, list) and value
            else (value if isinstance(value, Tensor) else torch.zeros(0, device=self.device))
            for name, value in self.metric_state.items()
        }

    def load_state_tensors(self, states: dict[str, Tensor]) -> None:
        """Append states produced by :meth:`state_tensors` (e.g. another fold's held-out images).

        Raises:
            ValueError: when ``states`` come from a metric with other methods.
        """
        if set(states) != set(self.metric_state):
            raise ValueError(
                f"Cannot merge states with keys {sorted(states)} into a metric with {sorted(self.metric_state)}: "
                "configure both metrics with the same methods."
            )
        for name, value in states.items():
            current = getattr(self, name)
            if not isinstance(current, list):
                current = [current]
                setattr(self, name, current)
            current.append(value.to(self.device))
        self._update_count += 1  # loaded states count as an update: compute() has something to merge
        self._computed = None
