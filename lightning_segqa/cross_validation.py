"""K-fold cross-validation with out-of-fold label-quality scores (Lightning has no K-fold).

Every image is scored exactly once, by a model that never trained on it. Splits are fixed by
a seed and saved up front; each fold gets a fresh model, loaders, ``Trainer`` and logger
version; each finished fold saves its held-out metric state, so an interrupted run resumes
without retraining finished folds. The merged report chooses dataset-level thresholds (TCCP,
confident learning) over all folds together.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from lightning.pytorch.loggers import TensorBoardLogger
from torch.utils.data import DataLoader, Dataset, Subset

from lightning_segqa.callback import LabelQualityMonitor
from lightning_segqa.metric import LabelQuality
from lightning_segqa.report import LabelQualityReport, wait_for_writes

CHECKPOINTS = ("last", "best")


def kfold_splits(num_samples: int, num_folds: int, seed: int = 0) -> list[list[int]]:
    """Seeded, disjoint held-out index lists covering ``range(num_samples)``.

    Examples:
        >>> folds = kfold_splits(10, 3, seed=0)
        >>> sorted(sum(folds, [])) == list(range(10)), [len(f) for f in folds]
        (True, [4, 3, 3])
    """
    if not isinstance(num_folds, int) or num_folds < 2:
        raise ValueError(f"`num_folds` must be an int >= 2, got {num_folds!r}.")
    if num_samples < num_folds:
        raise ValueError(f"Cannot split {num_samples} samples into {num_folds} folds.")
    perm = torch.randperm(num_samples, generator=torch.Generator().manual_seed(seed))
    return [sorted(chunk.tolist()) for chunk in torch.tensor_split(perm, num_folds)]


def _load_or_save_splits(path: Path, num_samples: int, num_folds: int, seed: int) -> list[list[int]]:
    meta = {"num_samples": num_samples, "num_folds": num_folds, "seed": seed}
    if path.exists():
        saved = json.loads(path.read_text())
        if {k: saved.get(k) for k in meta} != meta:
            raise ValueError(
                f"{path} was made for { ({k: saved.get(k) for k in meta}) }, not {meta}; "
                "use another work_dir or delete it to start over."
            )
        return saved["folds"]
    folds = kfold_splits(num_samples, num_folds, seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({**meta, "folds": folds}))
    tmp.replace(path)
    return folds


class CrossValidation:
    """Train K models on K folds and score every image with the model that held it out.

    Each fold runs in the current process on one device; multi-device DDP inside a fold is not
    supported (the saved held-out state would be one process's share).

    Args:
        model_factory: ``model_factory(fold) -> LightningModule``; called once per fold, so every
            fold starts from fresh weights.
        dataset: map-style dataset of dict samples (see
            :class:`~lightning_segqa.data.TensorSegmentationDataset`).
        monitor: a configured :class:`~lightning_segqa.LabelQualityMonitor`; each fold gets a copy.
        work_dir: where splits, checkpoints, logs and reports go.
        num_folds: number of folds.
        seed: seed of the split.
        batch_size: loader batch size.
        num_workers: loader workers.
        trainer_kwargs: passed to each fold's ``Trainer`` (e.g. ``max_epochs``, ``accelerator``).
        checkpoint: which weights score the held-out fold: ``"last"`` or ``"best"`` (lowest
            ``val_loss``).
        pictures_every_epoch: draw suspects at every validation epoch of every fold; by default
            only the held-out scoring and the merged report draw them (pictures cost time).
        callbacks: extra callbacks for every fold's ``Trainer`` (copied per fold).
        logger_factory: ``logger_factory(name, version) -> Logger``; default TensorBoard.

    Examples:
        >>> CrossValidation(lambda fold: None, [], LabelQualityMonitor(3), "/tmp/x", checkpoint="worst")
        Traceback (most recent call last):
        ...
        ValueError: `checkpoint` must be one of ('last', 'best'), got 'worst'.
    """

    def __init__(
        self,
        model_factory: Callable[[int], LightningModule],
        dataset: Dataset,
        monitor: LabelQualityMonitor,
        work_dir: str | Path,
        num_folds: int = 5,
        seed: int = 0,
        batch_size: int = 8,
        num_workers: int = 0,
        trainer_kwargs: dict[str, Any] | None = None,
        checkpoint: str = "last",
        callbacks: Sequence[Callback] = (),
        logger_factory: Callable[[str, str], Any] | None = None,
        pictures_every_epoch: bool = False,
    ) -> None:
        if checkpoint not in CHECKPOINTS:
            raise ValueError(f"`checkpoint` must be one of {CHECKPOINTS}, got {checkpoint!r}.")
        if not callable(model_factory):
            raise TypeError("`model_factory` must be callable as model_factory(fold) -> LightningModule.")
        if not isinstance(monitor, LabelQualityMonitor):
            raise TypeError(f"`monitor` must be a LabelQualityMonitor, got {type(monitor).__name__}.")
        self.model_factory = model_factory
        self.dataset = dataset
        self.monitor = monitor
        self.work_dir = Path(work_dir)
        self.num_folds = num_folds
        self.seed = seed
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.trainer_kwargs = dict(trainer_kwargs or {})
        self.checkpoint = checkpoint
        self.callbacks = list(callbacks)
        self.logger_factory = logger_factory or (
            lambda name, version: TensorBoardLogger(str(self.work_dir), name=name, version=version)
        )
        self.pictures_every_epoch = pictures_every_epoch
        self.trained_folds: list[int] = []

    def fold_dir(self, fold: int) -> Path:
        """Folder of one fold."""
        return self.work_dir / f"fold_{fold}"

    def _loader(self, indices: Sequence[int], shuffle: bool) -> DataLoader:
        return DataLoader(
            Subset(self.dataset, list(indices)),
            batch_size=self.batch_size,
            shuffle=shuffle,
            num_workers=self.num_workers,
        )

    def run_fold(self, fold: int, held_out: Sequence[int]) -> Path:
        """Train on the other folds, score ``held_out`` with the chosen checkpoint, save its state."""
        out = self.fold_dir(fold) / "heldout.pt"
        if out.exists():
            return out
        held = set(held_out)
        train_idx = [i for i in range(len(self.dataset)) if i not in held]
        monitor = copy.deepcopy(self.monitor)
        monitor.report_dir = self.fold_dir(fold)
        monitor.draw_pictures = self.pictures_every_epoch
        ckpt = ModelCheckpoint(
            dirpath=self.fold_dir(fold) / "checkpoints", monitor="val_loss", mode="min", save_last=True, save_top_k=1
        )
        kwargs = {"enable_model_summary": False, **self.trainer_kwargs}
        trainer = Trainer(
            default_root_dir=str(self.fold_dir(fold)),
            logger=self.logger_factory("logs", f"fold_{fold}"),
            callbacks=[monitor, ckpt, *copy.deepcopy(self.callbacks)],
            **kwargs,
        )
        model = self.model_factory(fold)
        val_loader = self._loader(held_out, shuffle=False)
        trainer.fit(model, self._loader(train_idx, shuffle=True), val_loader)
        ckpt_path = ckpt.best_model_path if self.checkpoint == "best" and ckpt.best_model_path else ckpt.last_model_path
        monitor.draw_pictures = True
        trainer.validate(model, val_loader, ckpt_path=ckpt_path or None, verbose=False)
        states = monitor.last_states
        if states is None:
            raise RuntimeError(f"Fold {fold}: the monitor scored nothing; is validation running?")
        seen = sorted(set(states["indexes"].long().tolist()))
        if seen != sorted(held):
            raise RuntimeError(
                f"Fold {fold}: scored indexes differ from the held-out fold ({len(seen)} vs {len(held)})."
            )
        tmp = out.with_suffix(".tmp")
        torch.save(
            {
                "states": {k: v.cpu() for k, v in states.items()},
                "heap": monitor.heap.state(),
                "checkpoint": str(ckpt_path),
            },
            tmp,
        )
        tmp.replace(out)
        self.trained_folds.append(fold)
        return out

    def run(self) -> LabelQualityReport:
        """Run (or resume) every fold and return the merged out-of-fold report."""
        folds = _load_or_save_splits(self.work_dir / "splits.json", len(self.dataset), self.num_folds, self.seed)
        paths = [self.run_fold(f, held) for f, held in enumerate(folds)]
        return self.merge(paths)

    def merge(self, paths: Sequence[Path]) -> LabelQualityReport:
        """Merge the folds' held-out states into one report, log it and write it."""
        merged = copy.deepcopy(self.monitor)
        metric: LabelQuality = merged.metric
        metric.reset()
        merged.heap.clear()
        for path in paths:
            saved = torch.load(path, weights_only=False)
            metric.load_state_tensors(saved["states"])
            merged.heap.load(saved["heap"])
        indexes = torch.cat([s for s in metric.indexes]).long()
        if set(indexes.tolist()) != set(range(len(self.dataset))):
            raise RuntimeError("Cross-validation did not score every image exactly once.")
        report = metric.compute()
        merged.report = report
        trainer = Trainer(
            logger=self.logger_factory("logs", "merged"),
            default_root_dir=str(self.work_dir),
            enable_progress_bar=False,
            enable_model_summary=False,
        )
        merged.report_dir = self.work_dir
        merged.publish(trainer, report, step=0)
        wait_for_writes()  # the merged report is on disk when this returns
        self.merged_monitor = merged
        return report


def cross_validate(
    model_factory: Callable[[int], LightningModule],
    dataset: Dataset,
    monitor: LabelQualityMonitor,
    work_dir: str | Path,
    **kwargs: Any,
) -> LabelQualityReport:
    """Run :class:`CrossValidation` and return the merged out-of-fold report.

    Examples:
        >>> callable(cross_validate)
        True
    """
    return CrossValidation(model_factory, dataset, monitor, work_dir, **kwargs).run()
