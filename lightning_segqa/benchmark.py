"""The paper's Tables 1-4 (AUROC, AUPRC, Lift@T, Lift@100) on CamVid (``segqa benchmark``).

As Lad & Mueller (section 4): per error kind, errors go into train and val *before* the split; a
model fit on noisy train gives out-of-sample softmax on noisy val (cached under ``--out/cache``,
so reruns only re-score), scored with all seven methods. Numbers: ``docs/benchmark.md``.
"""

from __future__ import annotations

import argparse
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import torch
from torch import Tensor

from lightning_segqa.benchmark_cache import _load_cache, _save_cache, cache_path
from lightning_segqa.benchmark_tables import PAPER_ROWS, TABLES, BenchmarkResult, format_tables
from lightning_segqa.benchmark_tables import Metrics as Metrics
from lightning_segqa.data import FolderSegmentationDataset, TensorSegmentationDataset
from lightning_segqa.metric import LabelQuality
from lightning_segqa.models import ARCHITECTURES, SegmentationModule
from lightning_segqa.noise import ERROR_KINDS, PAPER_FRACTIONS, inject_label_errors
from lightning_segqa.writing import atomic_write

__all__ = [
    "CAMVID_NUM_CLASSES", "CAMVID_UNLABELED", "DEFAULT_LR", "PAPER_ROWS", "TABLES", "BenchmarkData", "BenchmarkResult",
    "cache_path", "format_tables", "inject_before_split", "load_camvid", "predict_probs", "run_benchmark",
    "score_predictions", "train_model",
]  # fmt: skip

CAMVID_NUM_CLASSES = 12
CAMVID_UNLABELED = 11  # "Unlabelled": the class a drop error maps an object to
DEFAULT_LR = 2e-3


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
        >>> from lightning_segqa.data import make_street_scenes, write_folder_dataset
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


def train_model(
    train_set: TensorSegmentationDataset, num_classes: int, arch: str, encoder: str = "resnet18", epochs: int = 1,
    batch_size: int = 16, lr: float = DEFAULT_LR, device: str = "auto", seed: int = 0,
    log_dir: str | Path | None = None, progress: bool = True, encoder_weights: str | None = None,
    augment: Sequence[str] = (),
) -> SegmentationModule:  # fmt: skip
    """Fit a :class:`~lightning_segqa.models.SegmentationModule` (no pretrained weights).

    Lightning ``Trainer``: no checkpoints, no validation loop, a CSV logger under ``log_dir``
    (or no logger), the given ``epochs`` with Adam at ``lr`` on shuffled batches. The encoder
    starts from ``encoder_weights`` (e.g. ``"imagenet"``, downloaded once) or, by default, at random.
    ``augment`` (flip names, e.g. ``("hflip",)``) flips each training image and its mask with
    probability 1/2 per flip; the default trains without augmentation.

    Examples:
        >>> from lightning_segqa.data import make_street_scenes
        >>> ds = TensorSegmentationDataset(*make_street_scenes(4, 32, 32))
        >>> module = train_model(ds, 9, "tiny", batch_size=2, device="cpu", progress=False)
        >>> module.hparams.arch
        'tiny'
    """
    from lightning.pytorch import Trainer, seed_everything
    from lightning.pytorch.loggers import CSVLogger

    seed_everything(seed, workers=True, verbose=False)
    module = SegmentationModule(num_classes, arch=arch, encoder=encoder, lr=lr, encoder_weights=encoder_weights)
    if augment:
        train_set = RandomFlips(train_set, augment)
    loader = torch.utils.data.DataLoader(
        train_set, batch_size=batch_size, shuffle=True, generator=torch.Generator().manual_seed(seed)
    )
    logger = False if log_dir is None else CSVLogger(Path(log_dir).parent, name=Path(log_dir).name)
    trainer = Trainer(
        max_epochs=epochs, accelerator=device, devices=1, enable_checkpointing=False, logger=logger,
        enable_progress_bar=progress, enable_model_summary=False, num_sanity_val_steps=0, limit_val_batches=0,
        log_every_n_steps=5,
    )  # fmt: skip
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", ".*does not have many workers.*")
        warnings.filterwarnings("ignore", ".*number of training batches.*")
        warnings.filterwarnings("ignore", ".*no `val_dataloader`.*")
        trainer.fit(module, loader)
    return module


class RandomFlips(torch.utils.data.Dataset):
    """Training augmentation: flip each sample's tensors of 2+ dimensions (image, mask) with probability 1/2.

    Examples:
        >>> item = {"image": torch.arange(3.0).view(1, 1, 3), "mask": torch.arange(3).view(1, 3)}
        >>> ds = RandomFlips([item], ("hflip",))
        >>> seen = {tuple(ds[0]["mask"].flatten().tolist()) for _ in range(20)}
        >>> sorted(seen)
        [(0, 1, 2), (2, 1, 0)]
    """

    def __init__(self, dataset: Any, flips: Sequence[str]) -> None:
        from lightning_segqa.tta import TTA_TRANSFORMS, check_tta

        self.dataset, self.dims = dataset, [TTA_TRANSFORMS[f] for f in check_tta(flips)]

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict[str, Any]:
        item = dict(self.dataset[index])
        for dim in self.dims:
            if bool(torch.rand(()) < 0.5):
                item = {k: v.flip(dim) if isinstance(v, Tensor) and v.ndim >= 2 else v for k, v in item.items()}
        return item


@torch.inference_mode()
def predict_probs(module: torch.nn.Module, images: Tensor, batch_size: int = 16, tta: Sequence[str] = ()) -> Tensor:
    """Softmax of ``module(images)`` in eval mode, batch by batch, as float16 on the CPU.

    ``tta`` (names from :data:`~lightning_segqa.tta.TTA_TRANSFORMS`): also predict each flipped
    batch, flip its softmax back and average the probabilities per pixel.

    Examples:
        >>> from lightning_segqa.models import TinySegNet
        >>> probs = predict_probs(TinySegNet(3, 4), torch.rand(3, 3, 8, 8), batch_size=2)
        >>> probs.shape, probs.dtype, round(probs.float().sum(1).mean().item(), 2)
        (torch.Size([3, 4, 8, 8]), torch.float16, 1.0)
        >>> predict_probs(TinySegNet(3, 4), torch.rand(3, 3, 8, 8), tta=("hflip",)).shape
        torch.Size([3, 4, 8, 8])
    """
    from lightning_segqa.tta import TTA_TRANSFORMS, check_tta

    flips = [TTA_TRANSFORMS[name] for name in check_tta(tta)]
    module.eval()
    device = next(module.parameters()).device
    out = []
    for s in range(0, images.shape[0], batch_size):
        x = images[s : s + batch_size].to(device)
        probs = module(x).float().softmax(1)
        for dim in flips:
            probs += module(x.flip(dim)).float().softmax(1).flip(dim)
        out.append((probs / (1 + len(flips))).half().cpu())
    return torch.cat(out)


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


def _check_args(args: argparse.Namespace) -> None:
    bad = [e for e in args.errors if e not in ERROR_KINDS]
    bad += [m for m in args.models if m not in ARCHITECTURES]
    if bad:
        raise ValueError(f"unknown error kinds or models {bad}: errors are {ERROR_KINDS}, models {ARCHITECTURES}")
    if args.epochs < 1 or args.batch_size < 1:
        raise ValueError("--epochs and --batch-size must be at least 1")


def run_benchmark(
    args: argparse.Namespace, data: BenchmarkData | None = None, echo: Callable[[str], Any] = print
) -> BenchmarkResult:
    """Run (or re-score from the cache) every (error kind, model) and print Tables 1-4.

    Args:
        args: the ``segqa benchmark`` namespace: ``data``, ``out``, ``models``, ``errors``,
            ``encoder``, ``epochs``, ``size``, ``batch_size``, ``device``, ``seed``, ``markdown``
            (optional: ``lr``, default :data:`DEFAULT_LR`; ``progress``, default True;
            ``tta``, flip names: each model also scores flip-averaged predictions, reported as
            column ``{model}+{flips}``; ``encoder_weights``, default None: random init;
            ``augment``, flip names: random flips of the training images).
        data: the splits to use instead of reading CamVid from ``args.data`` at ``args.size``.
        echo: where progress lines and the tables go.

    Returns:
        A :class:`BenchmarkResult`. ``args.markdown``, if set, receives the Markdown tables,
        rewritten after every run (so an interrupted run leaves its partial tables).

    Examples:
        >>> import tempfile
        >>> from lightning_segqa.data import make_street_scenes
        >>> data = BenchmarkData(*make_street_scenes(8, 32, 32), *make_street_scenes(8, 32, 32, 1),
        ...                      num_classes=9, unlabeled_index=8)
        >>> with tempfile.TemporaryDirectory() as out:
        ...     args = argparse.Namespace(out=out, models=["tiny"], errors=["swap"], epochs=1,
        ...         encoder="resnet18", size=[32, 32], batch_size=8, device="cpu", seed=0,
        ...         markdown=None, progress=False, tta=["hflip"])
        ...     result = run_benchmark(args, data, echo=lambda s: None)
        >>> sorted(result.metrics["swap"]["tiny"]["softmin"]), sorted(result.metrics["swap"])
        (['auprc', 'auroc', 'lift_at_100', 'lift_at_t'], ['tiny', 'tiny+hflip'])
    """
    _check_args(args)
    if data is None:
        echo(f"Loading CamVid from {args.data} at {args.size[0]}x{args.size[1]}...")
        data = load_camvid(args.data, tuple(args.size))
    size = tuple(data.train_images.shape[-2:])
    lr, progress = getattr(args, "lr", DEFAULT_LR), getattr(args, "progress", True)
    tta, weights = tuple(getattr(args, "tta", None) or ()), getattr(args, "encoder_weights", None)
    augment = tuple(getattr(args, "augment", None) or ())
    result = BenchmarkResult({})
    for error in args.errors:
        tn, tf, vn, vf = inject_before_split(data.train_masks, data.val_masks, error, args.seed, data.unlabeled_index)
        echo(
            f"[{error}] {int(tf.sum() + vf.sum())} of {len(tf) + len(vf)} images mislabeled "
            f"before the split: {int(tf.sum())}/{len(tf)} train, {int(vf.sum())}/{len(vf)} val"
        )
        for model in args.models:
            path = cache_path(args.out, error, model, args.encoder, size, args.epochs, args.seed)
            meta: dict[str, Any] = {"lr": lr, "batch_size": args.batch_size}
            if tta or weights or augment:  # other files: the plain runs' cache stays valid
                meta.update(tta=list(tta), encoder_weights=weights, augment=list(augment))
                extra = f"_{'+'.join(tta) or 'plain'}_{weights or 'random'}" + (
                    f"_aug-{'+'.join(augment)}" if augment else ""
                )
                path = path.with_name(f"{path.stem}{extra}{path.suffix}")
            entry = _load_cache(path, vn, vf, meta)
            if entry is None:
                echo(f"[{error}/{model}] training {args.epochs} epoch(s) on {len(tf)} images...")
                start = time.perf_counter()
                module = train_model(
                    TensorSegmentationDataset(data.train_images, tn, tf), data.num_classes, model, args.encoder,
                    args.epochs, args.batch_size, lr, args.device, args.seed, Path(args.out) / "logs" / path.stem,
                    progress, weights, augment,
                )  # fmt: skip
                dtype = torch.uint8 if data.num_classes <= 256 else torch.int32
                entry = {
                    "probs": predict_probs(module, data.val_images, args.batch_size), "masks": vn.to(dtype),
                    "clean": data.val_masks.to(dtype), "is_mislabeled": vf, "meta": meta,
                    "train_seconds": time.perf_counter() - start,
                }  # fmt: skip
                if tta:
                    entry["probs_tta"] = predict_probs(module, data.val_images, args.batch_size, tta)
                _save_cache(path, entry)
                echo(f"[{error}/{model}] trained and predicted in {entry['train_seconds']:.0f} s; cached {path}")
            else:
                echo(f"[{error}/{model}] re-scoring cached predictions {path}")
            curves = Path(args.out) / "curves" / f"{error}_{model}.png"
            det = score_predictions(
                entry["probs"], entry["masks"], entry["is_mislabeled"], data.num_classes, args.batch_size, curves
            )
            result.metrics.setdefault(error, {})[model] = det
            result.train_seconds.setdefault(error, {})[model] = float(entry["train_seconds"])
            if tta:
                name = f"{model}+{'+'.join(tta)}"
                curves = Path(args.out) / "curves" / f"{error}_{name}.png"
                result.metrics[error][name] = score_predictions(
                    entry["probs_tta"],
                    entry["masks"],
                    entry["is_mislabeled"],
                    data.num_classes,
                    args.batch_size,
                    curves,
                )
                result.train_seconds[error][name] = float(entry["train_seconds"])
            echo(f"[{error}/{model}] softmin AUROC {det['softmin']['auroc']:.3f}, AUPRC {det['softmin']['auprc']:.3f}")
            if args.markdown:
                atomic_write(args.markdown, result.tables(markdown=True) + "\n")
    echo("")
    echo(result.tables())
    if args.markdown:
        echo(f"Markdown tables written to {args.markdown}")
    return result
