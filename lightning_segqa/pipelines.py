"""End-to-end jobs behind the command line: the demo on built-in data and the audit of a folder."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from lightning_segqa.callback import LabelQualityMonitor
from lightning_segqa.cross_validation import CrossValidation
from lightning_segqa.models import SegmentationModule
from lightning_segqa.report import METHODS, LabelQualityReport


@dataclass
class TrainingConfig:
    """How each fold's model is built and trained.

    Examples:
        >>> TrainingConfig(epochs=2).trainer_kwargs()["max_epochs"]
        2
    """

    arch: str = "fpn"
    encoder: str = "mobilenet_v2"
    decoder_channels: int | None = 64
    epochs: int = 8
    folds: int = 3
    batch_size: int = 16
    lr: float = 2e-3
    device: str = "auto"
    seed: int = 0
    checkpoint: str = "last"
    progress: bool = True
    extra_trainer_kwargs: dict[str, Any] = field(default_factory=dict)

    def trainer_kwargs(self) -> dict[str, Any]:
        """Arguments of each fold's ``Trainer``."""
        return {
            "max_epochs": self.epochs,
            "accelerator": self.device,
            "devices": 1,
            "enable_progress_bar": self.progress,
            "log_every_n_steps": 5,
            "num_sanity_val_steps": 0,
            "deterministic": False,
            **self.extra_trainer_kwargs,
        }


def run_cross_validation(
    dataset: torch.utils.data.Dataset,
    num_classes: int,
    work_dir: str | Path,
    config: TrainingConfig,
    class_names: list[str] | None = None,
    ignore_index: int | None = None,
    top_k: int = 10,
    palette: torch.Tensor | None = None,
) -> LabelQualityReport:
    """K-fold cross-validation of a segmentation model with the monitor; returns the merged report.

    Examples:
        >>> callable(run_cross_validation)
        True
    """
    from lightning.pytorch import seed_everything

    seed_everything(config.seed, workers=True, verbose=False)
    monitor = LabelQualityMonitor(
        num_classes,
        methods=METHODS,  # the demo and the audit compare all seven scores
        class_names=class_names,
        ignore_index=ignore_index,
        top_k=top_k,
        palette=palette,
    )
    cv = CrossValidation(
        lambda fold: SegmentationModule(
            num_classes,
            arch=config.arch,
            encoder=config.encoder,
            lr=config.lr,
            ignore_index=ignore_index,
            decoder_channels=config.decoder_channels,
        ),
        dataset,
        monitor,
        work_dir,
        num_folds=config.folds,
        seed=config.seed,
        batch_size=config.batch_size,
        trainer_kwargs=config.trainer_kwargs(),
        checkpoint=config.checkpoint,
    )
    return cv.run()


def run_demo(
    work_dir: str | Path = "segqa_runs/demo",
    num_images: int = 120,
    height: int = 64,
    width: int = 96,
    error: str = "drop",
    fraction: float | None = None,
    config: TrainingConfig | None = None,
    echo: Any = print,
) -> LabelQualityReport:
    """Built-in street scenes, injected errors, K-fold training with the monitor, ranked suspects.

    Examples:
        >>> callable(run_demo)
        True
    """
    from lightning_segqa.data import (
        STREET_CLASSES,
        STREET_PALETTE,
        UNLABELED_INDEX,
        TensorSegmentationDataset,
        make_street_scenes,
    )
    from lightning_segqa.noise import PAPER_FRACTIONS, inject_label_errors

    config = config or TrainingConfig()
    fraction = PAPER_FRACTIONS[error] if fraction is None else fraction
    start = time.perf_counter()
    images, masks = make_street_scenes(num_images, height, width, seed=config.seed)
    noisy, truth = inject_label_errors(masks, error, fraction, seed=config.seed, unlabeled_index=UNLABELED_INDEX)
    echo(
        f"Built {num_images} street scenes ({height}x{width}, {len(STREET_CLASSES)} classes); "
        f"injected '{error}' errors into {int(truth.sum())} of them."
    )
    echo(
        f"Training {config.folds} {config.arch}/{config.encoder} models ({config.epochs} epochs each), "
        "one per fold, so every image gets an out-of-sample prediction..."
    )
    dataset = TensorSegmentationDataset(images, noisy, truth)
    report = run_cross_validation(
        dataset, len(STREET_CLASSES), work_dir, config, list(STREET_CLASSES), palette=STREET_PALETTE
    )
    echo("")
    echo(report.table("softmin", k=10))
    echo("")
    echo(f"Done in {time.perf_counter() - start:.0f} s. Report: {Path(work_dir) / 'label_quality.json'}")
    echo(f"See the suspects and curves: tensorboard --logdir {work_dir}")
    return report


def run_audit(
    images_dir: str | Path,
    masks_dir: str | Path,
    num_classes: int,
    work_dir: str | Path = "segqa_runs/audit",
    ignore_index: int | None = None,
    class_names: list[str] | None = None,
    size: tuple[int, int] | None = None,
    config: TrainingConfig | None = None,
    top_k: int = 10,
    echo: Any = print,
) -> LabelQualityReport:
    """Audit an image/mask folder pair with K-fold cross-validation; writes report, pictures, logs.

    The folder is fully checked before anything is trained or written.

    Examples:
        >>> callable(run_audit)
        True
    """
    from lightning_segqa.data import FolderSegmentationDataset

    config = config or TrainingConfig()
    dataset = FolderSegmentationDataset(images_dir, masks_dir, num_classes, ignore_index=ignore_index, size=size)
    if class_names is not None and len(class_names) != num_classes:
        raise ValueError(f"--class-names lists {len(class_names)} names for {num_classes} classes.")
    echo(f"Auditing {len(dataset)} image/mask pairs with {config.folds}-fold cross-validation...")
    report = run_cross_validation(dataset, num_classes, work_dir, config, class_names, ignore_index, top_k)
    names = dataset.names
    echo("")
    echo(report.table("softmin", k=top_k))
    echo("")
    echo("Worst masks: " + ", ".join(names[i] for i in report.suspects("softmin", k=top_k).tolist()))
    echo(f"Report: {Path(work_dir) / 'label_quality.json'}; pictures: tensorboard --logdir {work_dir}")
    return report
