"""The paper's Tables 1-4 (AUROC, AUPRC, Lift@T, Lift@100) on CamVid (``segqa benchmark``).

As Lad & Mueller (section 4): per error kind, errors go into train and val *before* the split; a
model fit on noisy train gives out-of-sample softmax on noisy val (cached under ``--out/cache``,
so reruns only re-score), scored with all seven methods. Numbers: ``docs/benchmark.md``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import torch
from torch import Tensor

from lightning_segqa.data import FolderSegmentationDataset, TensorSegmentationDataset
from lightning_segqa.experiments.benchmark_cache import _load_cache, _save_cache, cache_path
from lightning_segqa.experiments.models import ARCHITECTURES
from lightning_segqa.experiments.tables import PAPER_ROWS, TABLES, BenchmarkResult, format_tables
from lightning_segqa.experiments.tables import Metrics as Metrics
from lightning_segqa.experiments.training import DEFAULT_LR, predict_probs, train_model
from lightning_segqa.metric import LabelQuality
from lightning_segqa.noise import ERROR_KINDS, PAPER_FRACTIONS, inject_label_errors
from lightning_segqa.writing import atomic_write

__all__ = [
    "CAMVID_NUM_CLASSES", "CAMVID_UNLABELED", "DEFAULT_LR", "PAPER_ROWS", "TABLES", "BenchmarkData", "BenchmarkResult",
    "cache_path", "format_tables", "inject_before_split", "load_camvid", "predict_probs", "run_benchmark",
    "score_predictions", "train_model",
]  # fmt: skip

CAMVID_NUM_CLASSES = 12
CAMVID_UNLABELED = 11  # "Unlabelled": the class a drop error maps an object to


class BenchmarkData(NamedTuple):
    """Clean images and masks of a training and a validation split."""

    train_images: Tensor  #: float ``(N, 3, H, W)``
    train_masks: Tensor  #: int64 ``(N, H, W)``
    val_images: Tensor  #: float ``(M, 3, H, W)``
    val_masks: Tensor  #: int64 ``(M, H, W)``
    num_classes: int
    unlabeled_index: int  #: the class drop errors map to


def load_camvid(root: str | Path, size: tuple[int, int] | None = None, limit: int | None = None) -> BenchmarkData:
    """Read ``root/train`` and ``root/val`` (``images/`` and ``masks/`` each) into tensors.

    Args:
        root: CamVid folder (e.g. ``../shared/data/camvid``).
        size: ``(H, W)`` to resize to (bilinear images, nearest masks), or ``None``.
        limit: keep only the first ``limit`` images of each split (for smoke tests).

    Returns:
        :class:`BenchmarkData` with 12 classes and ``unlabeled_index`` 11.

    Raises:
        FileNotFoundError: a split folder is missing.

    Examples:
        >>> import tempfile
        >>> from lightning_segqa.data import write_folder_dataset
        >>> from lightning_segqa.experiments.synthetic import make_street_scenes
        >>> images, masks = make_street_scenes(3, 32, 32)
        >>> with tempfile.TemporaryDirectory() as root:
        ...     for split in ("train", "val"):
        ...         _ = write_folder_dataset(f"{root}/{split}", images, masks)
        ...     data = load_camvid(root, size=(16, 24), limit=2)
        >>> data.train_images.shape, data.val_masks.shape, data.unlabeled_index
        (torch.Size([2, 3, 16, 24]), torch.Size([2, 16, 24]), 11)
    """
    splits = []
    for split in ("train", "val"):
        folder = Path(root) / split
        if not (folder / "images").is_dir() or not (folder / "masks").is_dir():
            raise FileNotFoundError(
                f"CamVid split not found: {folder}/images and {folder}/masks (pass the CamVid folder with --data)"
            )
        ds = FolderSegmentationDataset(
            folder / "images", folder / "masks", CAMVID_NUM_CLASSES, size=None if size is None else tuple(size)
        )
        items = [ds[i] for i in range(len(ds) if limit is None else min(limit, len(ds)))]
        splits += [torch.stack([it[k] for it in items]) for k in ("image", "mask")]
    return BenchmarkData(*splits, CAMVID_NUM_CLASSES, CAMVID_UNLABELED)


def inject_before_split(
    train_masks: Tensor, val_masks: Tensor, kind: str, seed: int, unlabeled_index: int, fraction: float | None = None
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Inject errors into the union of both splits, as the paper did, then split back.

    Args:
        train_masks: clean ``(N, H, W)`` training masks.
        val_masks: clean ``(M, H, W)`` validation masks.
        kind: ``"drop"``, ``"swap"`` or ``"shift"``.
        seed: seed of :func:`~lightning_segqa.noise.inject_label_errors`.
        unlabeled_index: class that drop maps to.
        fraction: share of the ``N + M`` images to corrupt (default: the paper's for ``kind``).

    Returns:
        ``(train_noisy, train_is_mislabeled, val_noisy, val_is_mislabeled)``.

    Examples:
        >>> masks = torch.zeros(10, 8, 8, dtype=torch.long)
        >>> masks[:, :, 4:] = 1
        >>> tn, tf, vn, vf = inject_before_split(masks[:6], masks[6:], "swap", 0, 2, fraction=0.5)
        >>> tn.shape, vn.shape, int(tf.sum() + vf.sum())
        (torch.Size([6, 8, 8]), torch.Size([4, 8, 8]), 5)
    """
    fraction = PAPER_FRACTIONS[kind] if fraction is None else fraction
    noisy, flags = inject_label_errors(
        torch.cat([train_masks, val_masks]), kind, fraction, seed, unlabeled_index=unlabeled_index
    )
    n = train_masks.shape[0]
    return noisy[:n], flags[:n], noisy[n:], flags[n:]


def score_predictions(
    probs: Tensor,
    masks: Tensor,
    is_mislabeled: Tensor,
    num_classes: int,
    batch_size: int = 16,
    curves_path: Path | None = None,
) -> dict[str, dict[str, float]]:
    """Score every image with all seven methods (downsample 4) and measure error detection.

    ``probs`` may be float16: each batch is cast to float32 and renormalised. With
    ``curves_path``, the ROC and precision-recall curves of every method are saved there as PNG.

    Returns:
        ``{method: {"auroc", "auprc", "lift_at_t", "lift_at_100"}}``.

    Examples:
        >>> g = torch.Generator().manual_seed(0)
        >>> masks = torch.randint(0, 3, (6, 8, 8), generator=g)
        >>> probs = torch.nn.functional.one_hot(masks, 3).permute(0, 3, 1, 2).float() * 0.9 + 0.05
        >>> masks[:2, :4] = (masks[:2, :4] + 1) % 3  # two images with a wrong region
        >>> det = score_predictions(probs, masks, torch.arange(6) < 2, num_classes=3)
        >>> det["softmin"]["auroc"], len(det)
        (1.0, 7)
    """
    metric = LabelQuality(num_classes, downsample=4, input_format="probs")
    for s in range(0, probs.shape[0], batch_size):
        p = probs[s : s + batch_size].float()
        e = s + p.shape[0]
        metric.update(p / p.sum(1, keepdim=True), masks[s:e].long(), torch.arange(s, e), is_mislabeled[s:e].bool())
    report = metric.compute()
    if curves_path is not None and 0 < int(report.is_mislabeled.sum()) < len(report):
        from lightning_segqa.loggers.base import png_bytes
        from lightning_segqa.visuals import figure_to_array, plot_detection_curves

        figure = plot_detection_curves(report.scores, report.is_mislabeled)
        atomic_write(Path(curves_path), png_bytes(figure_to_array(figure)))
    return report.detection()


def _check_args(models: Sequence[str], errors: Sequence[str], epochs: int, batch_size: int) -> None:
    bad = [e for e in errors if e not in ERROR_KINDS] + [m for m in models if m not in ARCHITECTURES]
    if bad:
        raise ValueError(f"unknown error kinds or models {bad}: errors are {ERROR_KINDS}, models {ARCHITECTURES}")
    if epochs < 1 or batch_size < 1:
        raise ValueError("--epochs and --batch-size must be at least 1")


def run_benchmark(
    *,
    data_dir: str | Path = "../shared/data/camvid",
    out: str | Path = "segqa_runs/benchmark",
    models: Sequence[str] = ("deeplabv3plus", "fpn"),
    errors: Sequence[str] = ("drop", "swap", "shift"),
    encoder: str = "resnet18",
    epochs: int = 4,
    size: tuple[int, int] = (96, 128),
    batch_size: int = 8,
    device: str = "auto",
    seed: int = 0,
    lr: float = DEFAULT_LR,
    augment: Sequence[str] = (),
    tta: Sequence[str] = (),
    encoder_weights: str | None = None,
    markdown: str | Path | None = None,
    progress: bool = True,
    data: BenchmarkData | None = None,
    echo: Callable[[str], Any] = print,
) -> BenchmarkResult:
    """Run (or re-score from the cache) every (error kind, model) and print Tables 1-4.

    ``segqa benchmark`` calls it with its options (``--data`` is ``data_dir``); the defaults are the
    command line's.

    Args:
        data_dir: CamVid folder with ``train/`` and ``val/`` (``images/`` and ``masks/`` each).
        out: output folder: the prediction cache, training logs and detection curves.
        models: architectures to train (:data:`~lightning_segqa.experiments.models.ARCHITECTURES`).
        errors: kinds of injected error (:data:`~lightning_segqa.noise.ERROR_KINDS`).
        encoder: segmentation-models-pytorch encoder.
        epochs: epochs per run.
        size: ``(H, W)`` CamVid is resized to.
        batch_size: images per batch.
        device: ``cpu``, ``cuda``, ``mps`` or ``auto``.
        seed: seed of the errors and the models.
        lr: Adam learning rate.
        augment: flip names: random flips of the training images (default: no augmentation).
        tta: flip names: each model also scores flip-averaged predictions, reported as column
            ``{model}+{flips}`` (default: none).
        encoder_weights: pretrained encoder weights, e.g. ``"imagenet"`` (default None: random init).
        markdown: a Markdown file that receives the tables, rewritten after every run (so an
            interrupted run leaves its partial tables); None: no file.
        progress: show Lightning's progress bars.
        data: the splits to use instead of reading CamVid from ``data_dir`` at ``size``.
        echo: where progress lines and the tables go.

    Returns:
        A :class:`BenchmarkResult`.

    Raises:
        ValueError: an unknown error kind or model, or ``epochs``/``batch_size`` below 1.

    Examples:
        >>> import tempfile
        >>> from lightning_segqa.experiments.synthetic import make_street_scenes
        >>> data = BenchmarkData(*make_street_scenes(8, 32, 32), *make_street_scenes(8, 32, 32, 1),
        ...                      num_classes=9, unlabeled_index=8)
        >>> with tempfile.TemporaryDirectory() as out:
        ...     result = run_benchmark(out=out, models=["tiny"], errors=["swap"], epochs=1, size=(32, 32),
        ...         device="cpu", progress=False, tta=["hflip"], data=data, echo=lambda s: None)
        >>> sorted(result.metrics["swap"]["tiny"]["softmin"]), sorted(result.metrics["swap"])
        (['auprc', 'auroc', 'lift_at_100', 'lift_at_t'], ['tiny', 'tiny+hflip'])
    """
    _check_args(models, errors, epochs, batch_size)
    if data is None:
        echo(f"Loading CamVid from {data_dir} at {size[0]}x{size[1]}...")
        data = load_camvid(data_dir, (size[0], size[1]))
    size = tuple(data.train_images.shape[-2:])
    tta, augment = tuple(tta or ()), tuple(augment or ())
    result = BenchmarkResult({})
    for error in errors:
        tn, tf, vn, vf = inject_before_split(data.train_masks, data.val_masks, error, seed, data.unlabeled_index)
        echo(
            f"[{error}] {int(tf.sum() + vf.sum())} of {len(tf) + len(vf)} images mislabeled "
            f"before the split: {int(tf.sum())}/{len(tf)} train, {int(vf.sum())}/{len(vf)} val"
        )
        for model in models:
            path = cache_path(out, error, model, encoder, size, epochs, seed)
            meta: dict[str, Any] = {"lr": lr, "batch_size": batch_size}
            if tta or encoder_weights or augment:  # other files: the plain runs' cache stays valid
                meta.update(tta=list(tta), encoder_weights=encoder_weights, augment=list(augment))
                extra = f"_{'+'.join(tta) or 'plain'}_{encoder_weights or 'random'}" + (
                    f"_aug-{'+'.join(augment)}" if augment else ""
                )
                path = path.with_name(f"{path.stem}{extra}{path.suffix}")
            entry = _load_cache(path, vn, vf, meta)
            if entry is None:
                echo(f"[{error}/{model}] training {epochs} epoch(s) on {len(tf)} images...")
                start = time.perf_counter()
                module = train_model(
                    TensorSegmentationDataset(data.train_images, tn, tf), data.num_classes, model, encoder,
                    epochs, batch_size, lr, device, seed, Path(out) / "logs" / path.stem,
                    progress, encoder_weights, augment,
                )  # fmt: skip
                dtype = torch.uint8 if data.num_classes <= 256 else torch.int32
                entry = {
                    "probs": predict_probs(module, data.val_images, batch_size), "masks": vn.to(dtype),
                    "clean": data.val_masks.to(dtype), "is_mislabeled": vf, "meta": meta,
                    "train_seconds": time.perf_counter() - start,
                }  # fmt: skip
                if tta:
                    entry["probs_tta"] = predict_probs(module, data.val_images, batch_size, tta)
                _save_cache(path, entry)
                echo(f"[{error}/{model}] trained and predicted in {entry['train_seconds']:.0f} s; cached {path}")
            else:
                echo(f"[{error}/{model}] re-scoring cached predictions {path}")
            curves = Path(out) / "curves" / f"{error}_{model}.png"
            det = score_predictions(
                entry["probs"], entry["masks"], entry["is_mislabeled"], data.num_classes, batch_size, curves
            )
            result.metrics.setdefault(error, {})[model] = det
            result.train_seconds.setdefault(error, {})[model] = float(entry["train_seconds"])
            if tta:
                name = f"{model}+{'+'.join(tta)}"
                curves = Path(out) / "curves" / f"{error}_{name}.png"
                result.metrics[error][name] = score_predictions(
                    entry["probs_tta"],
                    entry["masks"],
                    entry["is_mislabeled"],
                    data.num_classes,
                    batch_size,
                    curves,
                )
                result.train_seconds[error][name] = float(entry["train_seconds"])
            echo(f"[{error}/{model}] softmin AUROC {det['softmin']['auroc']:.3f}, AUPRC {det['softmin']['auprc']:.3f}")
            if markdown:
                atomic_write(markdown, result.tables(markdown=True) + "\n")
    echo("")
    echo(result.tables())
    if markdown:
        echo(f"Markdown tables written to {markdown}")
    return result
