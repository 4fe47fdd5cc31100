"""End-to-end jobs behind the command line: the demo on built-in data and the audit of a folder."""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from lightning_segqa.agreement import weak_model_message
from lightning_segqa.callback import LabelQualityMonitor
from lightning_segqa.cross_validation import CrossValidation
from lightning_segqa.experiments.models import SegmentationModule
from lightning_segqa.report import METHODS, LabelQualityReport, method_legend


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
    encoder_weights: str | None = None
    progress: bool = True
    overwrite: bool = False
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
            encoder_weights=config.encoder_weights,
        ),
        dataset,
        monitor,
        work_dir,
        num_folds=config.folds,
        seed=config.seed,
        batch_size=config.batch_size,
        trainer_kwargs=config.trainer_kwargs(),
        checkpoint=config.checkpoint,
        checkpoint_monitor="val_loss" if config.checkpoint == "best" else None,
        overwrite=config.overwrite,
    )
    return cv.run()


def make_demo_dataset(
    num_images: int = 120, height: int = 64, width: int = 96, error: str = "drop", fraction: float | None = None,
    seed: int = 0,
) -> torch.utils.data.Dataset:  # fmt: skip
    """The demo's street scenes with injected errors (``is_mislabeled`` known), named ``scene_000``, ...

    Scenes, error images and folds each draw from their own stream of ``seed`` (see
    :func:`~lightning_segqa.seeding.derive_seed`), so the corrupted images spread over the folds.

    Examples:
        >>> ds = make_demo_dataset(10, 32, 32, "swap", 0.3)
        >>> len(ds), int(ds.is_mislabeled.sum()), ds[7]["name"]
        (10, 3, 'scene_007')
    """
    from lightning_segqa.data import TensorSegmentationDataset
    from lightning_segqa.experiments.synthetic import UNLABELED_INDEX, make_street_scenes
    from lightning_segqa.noise import PAPER_FRACTIONS, inject_label_errors
    from lightning_segqa.seeding import derive_seed

    fraction = PAPER_FRACTIONS[error] if fraction is None else fraction
    images, masks = make_street_scenes(num_images, height, width, seed=derive_seed(seed, "scenes"))
    noisy, truth = inject_label_errors(
        masks, error, fraction, seed=derive_seed(seed, "errors"), unlabeled_index=UNLABELED_INDEX
    )
    names = [f"scene_{i:0{max(3, len(str(num_images - 1)))}d}" for i in range(num_images)]
    return TensorSegmentationDataset(images, noisy, truth, names=names)


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
    from lightning_segqa.experiments.synthetic import STREET_CLASSES, STREET_PALETTE

    config = config or TrainingConfig()
    start = time.perf_counter()
    dataset = make_demo_dataset(num_images, height, width, error, fraction, config.seed)
    truth = dataset.is_mislabeled
    echo(
        f"Built {num_images} street scenes ({height}x{width}, {len(STREET_CLASSES)} classes); "
        f"injected '{error}' errors into {int(truth.sum())} of them."
    )
    echo(
        f"Training {config.folds} {config.arch}/{config.encoder} models ({config.epochs} epochs each), "
        "one per fold, so every image gets an out-of-sample prediction..."
    )
    report = run_cross_validation(
        dataset, len(STREET_CLASSES), work_dir, config, list(STREET_CLASSES), palette=STREET_PALETTE
    )
    echo("")
    echo(report.table("softmin", k=10))
    if (weak := weak_model_message(report)) is not None:
        echo(f"\nWARNING: {weak}\n")
    echo(f"Done in {time.perf_counter() - start:.0f} s.")
    echo_outputs(report, work_dir, echo)
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
    top = dataset.max_class_id
    if top is not None and top < num_classes - 1:
        warnings.warn(
            f"--num-classes is {num_classes} but the largest class id in the masks is {top}: ids {top + 1}.."
            f"{num_classes - 1} never appear. If the masks use ids 0..{top} only, pass --num-classes {top + 1}.",
            UserWarning,
            stacklevel=2,
        )
    echo(f"Auditing {len(dataset)} image/mask pairs with {config.folds}-fold cross-validation...")
    report = run_cross_validation(dataset, num_classes, work_dir, config, class_names, ignore_index, top_k)
    names = dataset.names
    echo("")
    echo(report.table("softmin", k=top_k))
    echo("")
    echo("Worst masks: " + ", ".join(names[i] for i in report.suspects("softmin", k=top_k).tolist()))
    if (weak := weak_model_message(report)) is not None:
        echo(f"\nWARNING: {weak}\n")
    echo_outputs(report, work_dir, echo)
    return report


def echo_outputs(report: LabelQualityReport, work_dir: str | Path, echo: Any = print) -> None:
    """Explain the table's method names and say where the report files and the pictures are.

    Examples:
        >>> import tempfile
        >>> r = LabelQualityReport(torch.arange(2), {"softmin": torch.tensor([0.2, 0.9])})
        >>> echo_outputs(r, tempfile.mkdtemp())  # doctest: +ELLIPSIS
        Methods: SM = softmin (the paper method); lower = more likely mislabeled.
        Files in ...:
        ...
    """
    work_dir = Path(work_dir)
    echo(f"Methods: {method_legend(report.methods)}")
    echo(f"Files in {work_dir}:")
    files = {
        "label_quality.json": "every image's scores (and names); input of `segqa gate`",
        "label_quality.csv": "the same, one row per image, ranked by softmin",
        "detection_curves.png": "ROC and precision-recall curves of the known errors",
    }
    for name, what in files.items():
        if name != "detection_curves.png" or (work_dir / name).exists():
            echo(f"  {name:<22} {what}")
    merged = work_dir / "logs" / "merged"
    echo(f"  {'logs/merged/':<22} TensorBoard run of the merged report: suspect pictures, ranked table")
    echo(f"See the worst masks: tensorboard --logdir {merged}")
