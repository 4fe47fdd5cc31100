"""K-fold cross-validation with out-of-fold label-quality scores (Lightning has no K-fold).

Every image is scored exactly once, by a model that never trained on it. Splits are fixed by a
seed and saved up front with a fingerprint of everything that changes the result; each fold
gets its own seed, model, data, ``Trainer`` and logger version, trains (DDP allowed), and its
checkpoint then scores the held-out part in one process. Finished folds are kept, so a run
resumes, and folds can run as separate jobs (``folds=[i]``) and be merged later
(:func:`merge_folds`). The merged report picks dataset-level thresholds over all folds together.
"""

from __future__ import annotations

import copy
import shutil
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch import LightningDataModule, LightningModule, Trainer, seed_everything
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.utilities import rank_zero_info
from lightning.pytorch.utilities.rank_zero import rank_zero_only
from torch.utils.data import Dataset

from lightning_segqa.callback import LabelQualityMonitor
from lightning_segqa.cv_setup import (
    IndexSplitDataModule,
    check_dataset,
    check_heldout_loader,
    check_trainer_kwargs,
    scoring_kwargs,
)
from lightning_segqa.fingerprint import (
    COSMETIC_TRAINER_KEYS,
    callable_name,
    describe,
    model_fingerprint,
    samples_fingerprint,
    sequence_names,
)
from lightning_segqa.folds import RECORD_NAME, heldout_path, kfold_splits, missing_folds, save_or_check_record
from lightning_segqa.heldout import check_scored, score_heldout
from lightning_segqa.merge import merge_folds, merged_monitor, monitor_config
from lightning_segqa.report import LabelQualityReport
from lightning_segqa.seeding import derive_seed
from lightning_segqa.tta import check_tta
from lightning_segqa.writing import atomic_write, torch_bytes

__all__ = ["CHECKPOINTS", "CrossValidation", "cross_validate", "kfold_splits", "merge_folds"]

CHECKPOINTS = ("last", "best")
DatamoduleFactory = Callable[[int, list[int], list[int]], LightningDataModule]


def _barrier() -> None:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.barrier()


class CrossValidation:
    """Train K models on K folds and score every image with the model that held it out.

    Bring your data either as ``dataset`` (a map-style dataset whose samples the monitor reads;
    the runner makes the loaders) or as ``datamodule_factory(fold, train_indexes,
    heldout_indexes) -> LightningDataModule`` (your own pipeline: training transforms on the
    training part, evaluation transforms on the held-out part; called with positional arguments,
    lists of dataset indexes, so name its parameters as you like). With a datamodule factory,
    ``dataset`` (if given) only counts and fingerprints the samples; else pass ``num_samples``.

    Args:
        model_factory: ``model_factory(fold) -> LightningModule``; fresh weights for each fold.
        dataset: map-style dataset of dict or tuple samples (or None with ``datamodule_factory``).
        monitor: a configured :class:`~lightning_segqa.LabelQualityMonitor`; each fold gets a copy.
        work_dir: where the splits, checkpoints, logs and reports go.
        num_folds: number of folds.
        seed: seed of the split and (one derived stream per fold) of each fold's training.
        batch_size: loader batch size (dataset path).
        num_workers: loader workers (dataset path).
        trainer_kwargs: each fold's ``Trainer`` arguments (``max_epochs``, ``accelerator``,
            ``strategy="ddp"`` with ``devices=n``...). ``callbacks`` there join ``callbacks``;
            ``logger=False`` logs nothing; a logger object, ``default_root_dir``, a
            ``ModelCheckpoint`` or an unsupported strategy are refused with the argument to use.
        checkpoint: weights that score the held-out part: ``"last"`` or ``"best"``.
        checkpoint_monitor: logged key that ``"best"`` selects on (e.g. ``"val/loss"``).
        checkpoint_mode: ``"min"`` or ``"max"`` for ``checkpoint_monitor``.
        keep_checkpoints: keep each fold's single checkpoint; False deletes it once scored.
        callbacks: extra callbacks for every fold's ``Trainer`` (copied per fold).
        logger_factory: ``logger_factory(name, version) -> Logger``; default TensorBoard under
            ``work_dir/logs``. Called once per fold (version ``fold_<i>``) and for the merged
            report (version ``merged``).
        pictures_every_epoch: draw suspects at every validation epoch of every fold (by default
            only held-out scoring and the merged report draw).
        datamodule_factory: see above.
        num_samples: dataset size when ``dataset`` is None.
        data_fingerprint: a string that changes when your data changes (e.g. a hash of the file
            list), recorded when ``dataset`` is None.
        tta: test-time augmentation at held-out scoring: ``"hflip"``, ``"vflip"`` or both.
        folds: run only these folds (e.g. one per job of an array); merge when all are done.
        overwrite: delete a previous run in ``work_dir`` and start over.

    Examples:
        >>> CrossValidation(lambda fold: None, [], LabelQualityMonitor(3), "/tmp/x", checkpoint="worst")
        Traceback (most recent call last):
        ...
        ValueError: `checkpoint` must be one of ('last', 'best'), got 'worst'.
    """

    def __init__(
        self,
        model_factory: Callable[[int], LightningModule],
        dataset: Dataset | None,
        monitor: LabelQualityMonitor,
        work_dir: str | Path,
        num_folds: int = 5,
        seed: int = 0,
        batch_size: int = 8,
        num_workers: int = 0,
        trainer_kwargs: dict[str, Any] | None = None,
        checkpoint: str = "last",
        checkpoint_monitor: str | None = None,
        checkpoint_mode: str = "min",
        keep_checkpoints: bool = True,
        callbacks: Sequence[Callback] = (),
        logger_factory: Callable[[str, str], Any] | None = None,
        pictures_every_epoch: bool = False,
        datamodule_factory: DatamoduleFactory | None = None,
        num_samples: int | None = None,
        data_fingerprint: str | None = None,
        tta: str | Sequence[str] | None = None,
        folds: Sequence[int] | None = None,
        overwrite: bool = False,
    ) -> None:
        if checkpoint not in CHECKPOINTS:
            raise ValueError(f"`checkpoint` must be one of {CHECKPOINTS}, got {checkpoint!r}.")
        if checkpoint == "best" and not checkpoint_monitor:
            raise ValueError(
                "checkpoint='best' needs checkpoint_monitor=, the logged key to select on (e.g. 'val/loss'), "
                "and checkpoint_mode='min' or 'max'."
            )
        if checkpoint_mode not in ("min", "max"):
            raise ValueError(f"`checkpoint_mode` must be 'min' or 'max', got {checkpoint_mode!r}.")
        if not callable(model_factory):
            raise TypeError("`model_factory` must be callable as model_factory(fold) -> LightningModule.")
        if not isinstance(monitor, LabelQualityMonitor):
            raise TypeError(f"`monitor` must be a LabelQualityMonitor, got {type(monitor).__name__}.")
        if isinstance(num_folds, bool) or not isinstance(num_folds, int) or num_folds < 2:
            raise ValueError(f"`num_folds` must be an int >= 2, got {num_folds!r}.")
        if datamodule_factory is not None and not callable(datamodule_factory):
            raise TypeError("`datamodule_factory` must be callable as (fold, train_indexes, heldout_indexes).")
        if dataset is None:
            if datamodule_factory is None:
                raise ValueError("Pass `dataset=` (a map-style dataset) or `datamodule_factory=` with `num_samples=`.")
            if not isinstance(num_samples, int) or num_samples < num_folds:
                raise ValueError(
                    f"With datamodule_factory and no dataset, `num_samples` must be an int >= num_folds "
                    f"({num_folds}), got {num_samples!r}."
                )
            self.num_samples = num_samples
        else:
            self.num_samples = check_dataset(dataset)
            if num_samples is not None and num_samples != self.num_samples:
                raise ValueError(f"`num_samples`={num_samples} but `dataset` has {self.num_samples} samples.")
        if folds is not None:
            folds = sorted(set(folds))
            bad = [f for f in folds if isinstance(f, bool) or not isinstance(f, int) or not 0 <= f < num_folds]
            if bad or not folds:
                raise ValueError(f"`folds` must list fold numbers in 0..{num_folds - 1}, got {bad or folds!r}.")
        fit_kwargs, kw_callbacks, logging = check_trainer_kwargs(dict(trainer_kwargs or {}))
        self.model_factory = model_factory
        self.dataset = dataset
        self.monitor = monitor
        self.work_dir = Path(work_dir)
        self.num_folds = num_folds
        self.seed = seed
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.trainer_kwargs = fit_kwargs
        self.checkpoint = checkpoint
        self.checkpoint_monitor = checkpoint_monitor
        self.checkpoint_mode = checkpoint_mode
        self.keep_checkpoints = keep_checkpoints
        self.callbacks = [*callbacks, *kw_callbacks]
        self.logging = logging
        self.logger_factory = logger_factory or (
            lambda name, version: TensorBoardLogger(str(self.work_dir), name=name, version=version)
        )
        self.pictures_every_epoch = pictures_every_epoch
        self.datamodule_factory = datamodule_factory
        self.data_fingerprint = data_fingerprint
        self.tta = check_tta(tta)
        self.folds = folds
        self.overwrite = overwrite
        self.trained_folds: list[int] = []
        self.fold_costs: dict[int, dict[str, float]] = {}
        self.merged_monitor: LabelQualityMonitor | None = None
        self._fold_loggers: dict[int, Any] = {}

    # ------------------------------------------------------------------ pieces
    def fold_dir(self, fold: int) -> Path:
        """Folder of one fold."""
        return self.work_dir / f"fold_{fold}"

    def fingerprint(self) -> dict[str, Any]:
        """Everything that changes the result, as saved with the splits (see :mod:`lightning_segqa.fingerprint`)."""
        if self.dataset is not None:
            data: dict[str, Any] = samples_fingerprint(self.dataset)
        else:
            data = {"size": self.num_samples, "content": self.data_fingerprint}
        trainer = {k: v for k, v in self.trainer_kwargs.items() if k not in COSMETIC_TRAINER_KEYS}
        return {
            "data": {**data, "datamodule_factory": callable_name(self.datamodule_factory)},
            "model": model_fingerprint(self.model_factory, derive_seed(self.seed, "fingerprint")),
            "monitor": monitor_config(self.monitor, scoring_only=True),
            "trainer": describe(trainer),
            "callbacks": sequence_names(self.callbacks),
            "checkpoint": {"choice": self.checkpoint, "monitor": self.checkpoint_monitor, "mode": self.checkpoint_mode},
            "batch_size": self.batch_size if self.datamodule_factory is None else None,
            "tta": list(self.tta),
            "num_folds": self.num_folds,
            "seed": self.seed,
        }

    def _datamodule(self, fold: int, train_idx: list[int], held: list[int]) -> LightningDataModule:
        if self.datamodule_factory is None:
            return IndexSplitDataModule(self.dataset, train_idx, held, self.batch_size, self.num_workers)
        dm = self.datamodule_factory(fold, list(train_idx), list(held))
        if not isinstance(dm, LightningDataModule):
            raise TypeError(
                f"`datamodule_factory` must return a LightningDataModule, got {type(dm).__name__} for fold {fold}."
            )
        return dm

    def _preflight(self, folds: list[list[int]], todo: list[int]) -> None:
        """Refuse a held-out loader that cannot be scored, before the first fold trains."""
        if self.datamodule_factory is None or not todo:
            return
        fold = todo[0]
        held = folds[fold]
        train_idx = sorted(set(range(self.num_samples)) - set(held))
        dm = self._datamodule(fold, train_idx, held)
        dm.prepare_data()
        dm.setup("validate")
        check_heldout_loader(dm.val_dataloader(), fold, len(held))

    def _logger(self, version: str) -> Any:
        return self.logger_factory("logs", version) if self.logging else False

    def _start_over(self) -> None:
        if rank_zero_only.rank != 0:
            return
        for path in [self.work_dir / RECORD_NAME, *self.work_dir.glob("fold_*"), *self.work_dir.glob("label_quality*"),
                     *self.work_dir.glob("detection_curves*"), self.work_dir / "logs"]:  # fmt: skip
            if path.is_dir():
                shutil.rmtree(path)
            elif path.exists():
                path.unlink()

    # ------------------------------------------------------------------ one fold
    def run_fold(self, fold: int, held_out: Sequence[int]) -> Path:
        """Train on the other folds, score ``held_out`` with the chosen checkpoint, save its state."""
        out = heldout_path(self.work_dir, fold)
        if out.exists():
            return out
        held = sorted(held_out)
        train_idx = sorted(set(range(self.num_samples)) - set(held))
        seed_everything(derive_seed(self.seed, f"fold {fold}") % 2**32, workers=True, verbose=False)
        model = self.model_factory(fold)
        dm = self._datamodule(fold, train_idx, held)
        monitor = copy.deepcopy(self.monitor)
        monitor.report_dir = self.fold_dir(fold)
        monitor.draw_pictures = self.pictures_every_epoch
        best = self.checkpoint == "best"
        ckpt = ModelCheckpoint(
            dirpath=self.fold_dir(fold) / "checkpoints",
            filename=self.checkpoint,
            monitor=self.checkpoint_monitor if best else None,
            mode=self.checkpoint_mode,
            save_top_k=1,
            save_last=False,
            save_on_train_epoch_end=None if best else True,
            enable_version_counter=False,
        )
        logger = self._fold_loggers[fold] = self._logger(f"fold_{fold}")
        trainer = Trainer(
            default_root_dir=str(self.fold_dir(fold)),
            logger=logger,
            callbacks=[monitor, ckpt, *copy.deepcopy(self.callbacks)],
            **{"enable_model_summary": False, **self.trainer_kwargs},
        )
        start = time.perf_counter()
        trainer.fit(model, datamodule=dm)
        train_seconds = time.perf_counter() - start
        ckpt_path = self.fold_dir(fold) / "checkpoints" / f"{self.checkpoint}.ckpt"
        if trainer.global_rank == 0:
            self._score(fold, model, dm, held, ckpt_path, logger, train_seconds)
        _barrier()  # the other processes of a DDP fold wait for rank zero's scoring
        self.trained_folds.append(fold)
        return out

    def _score(
        self, fold: int, model: LightningModule, dm: LightningDataModule, held: list[int], ckpt_path: Path,
        logger: Any, train_seconds: float,
    ) -> None:  # fmt: skip
        """Score the held-out part with the fold's checkpoint in this process; save its state and cost."""
        if not ckpt_path.exists():
            raise RuntimeError(
                f"Fold {fold}: no checkpoint at {ckpt_path}"
                + (f"; was {self.checkpoint_monitor!r} ever logged?" if self.checkpoint == "best" else ".")
            )
        monitor, score_seconds = score_heldout(
            self.monitor, model, dm, ckpt_path, logger, self.fold_dir(fold), self.callbacks,
            scoring_kwargs(self.trainer_kwargs), self.tta,
        )  # fmt: skip
        check_scored(monitor, fold, held)
        size = ckpt_path.stat().st_size
        if not self.keep_checkpoints:
            ckpt_path.unlink()
        cost = {"train_seconds": train_seconds, "score_seconds": score_seconds, "checkpoint_bytes": float(size)}
        out = heldout_path(self.work_dir, fold)
        payload = {**monitor.export_state(), "checkpoint": str(ckpt_path), "cost": cost}
        atomic_write(out, torch_bytes(payload))
        self.fold_costs[fold] = cost

    def _progress(self, done: int, todo: int, fold: int, start: float) -> None:
        elapsed = time.perf_counter() - start
        remaining = elapsed / done * (todo - done)
        rank_zero_info(
            f"Cross-validation: fold {fold + 1} of {self.num_folds} (fold_{fold}) done; elapsed {elapsed:.0f} s, "
            f"about {remaining:.0f} s left ({done} of {todo} folds to run in this call)."
        )
        logger = self._fold_loggers.pop(fold, None)
        if logger and rank_zero_only.rank == 0:  # the fold's own logger version
            metrics = {"cv/folds_done": done, "cv/elapsed_seconds": elapsed, "cv/remaining_seconds": remaining}
            logger.log_metrics({**metrics, **{f"cv/{k}": v for k, v in self.fold_costs.get(fold, {}).items()}})
            logger.finalize("success")

    # ------------------------------------------------------------------ the run
    def run(self) -> LabelQualityReport | None:
        """Run (or resume) the folds; return the merged report, or None while folds are missing.

        Raises:
            ValueError: ``work_dir`` holds a run with another fingerprint (the message lists what
                differs), or a held-out loader cannot be scored; both before anything trains.
        """
        if self.overwrite:
            self._start_over()
            _barrier()
        folds = save_or_check_record(
            self.work_dir, self.num_samples, self.num_folds, self.seed, self.fingerprint(),
            monitor_config(self.monitor), write=rank_zero_only.rank == 0,
        )  # fmt: skip
        selected = self.folds if self.folds is not None else list(range(self.num_folds))
        todo = [f for f in selected if not heldout_path(self.work_dir, f).exists()]
        self._preflight(folds, todo)
        start = time.perf_counter()
        for done, fold in enumerate(todo, start=1):
            rank_zero_info(
                f"Cross-validation: fold {fold + 1} of {self.num_folds} (fold_{fold}): training on "
                f"{self.num_samples - len(folds[fold])} samples, scoring {len(folds[fold])} held out."
            )
            self.run_fold(fold, folds[fold])
            self._progress(done, len(todo), fold, start)
        missing = missing_folds(self.work_dir, self.num_folds)
        if missing:
            rank_zero_info(
                f"Cross-validation: folds {missing} of {self.num_folds} are not done yet; run them (folds={missing}) "
                f"and the last call merges, or call merge_folds({str(self.work_dir)!r}) once they are."
            )
            return None
        # logged once: a call that trained nothing does not log the same report again
        publish = bool(todo) or not (self.work_dir / "label_quality.json").exists()
        return self.merge(publish=publish)

    def merge(self, publish: bool = True) -> LabelQualityReport:
        """Merge the folds' held-out states into one report, log it and write it (see :func:`merge_folds`)."""
        self.merged_monitor = merged_monitor(
            self.work_dir, self.monitor, self.logger_factory, log=self.logging, publish=publish
        )
        assert self.merged_monitor.report is not None
        return self.merged_monitor.report


def cross_validate(
    model_factory: Callable[[int], LightningModule],
    dataset: Dataset | None,
    monitor: LabelQualityMonitor,
    work_dir: str | Path,
    **kwargs: Any,
) -> LabelQualityReport | None:
    """Run :class:`CrossValidation` and return the merged out-of-fold report (None while folds are missing).

    Examples:
        >>> callable(cross_validate)
        True
    """
    return CrossValidation(model_factory, dataset, monitor, work_dir, **kwargs).run()
