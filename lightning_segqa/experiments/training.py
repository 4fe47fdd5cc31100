"""Training a benchmark model and predicting with it: :func:`train_model` and :func:`predict_probs`.

Plain Lightning ``Trainer`` fits of a :class:`~lightning_segqa.experiments.models.SegmentationModule`
(optionally with random flips, :class:`RandomFlips`), and batched softmax predictions as float16,
optionally flip-averaged (test-time augmentation). Used by :mod:`lightning_segqa.experiments.benchmark`.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from lightning_segqa.data import TensorSegmentationDataset
from lightning_segqa.experiments.models import SegmentationModule

__all__ = ["DEFAULT_LR", "RandomFlips", "predict_probs", "train_model"]

DEFAULT_LR = 2e-3


def train_model(
    train_set: TensorSegmentationDataset, num_classes: int, arch: str, encoder: str = "resnet18", epochs: int = 1,
    batch_size: int = 16, lr: float = DEFAULT_LR, device: str = "auto", seed: int = 0,
    log_dir: str | Path | None = None, progress: bool = True, encoder_weights: str | None = None,
    augment: Sequence[str] = (),
) -> SegmentationModule:  # fmt: skip
    """Fit a :class:`~lightning_segqa.experiments.models.SegmentationModule` (no pretrained weights).

    Lightning ``Trainer``: no checkpoints, no validation loop, a CSV logger under ``log_dir``
    (or no logger), the given ``epochs`` with Adam at ``lr`` on shuffled batches. The encoder
    starts from ``encoder_weights`` (e.g. ``"imagenet"``, downloaded once) or, by default, at random.
    ``augment`` (flip names, e.g. ``("hflip",)``) flips each training image and its mask with
    probability 1/2 per flip; the default trains without augmentation.

    Examples:
        >>> from lightning_segqa.experiments.synthetic import make_street_scenes
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
        >>> from lightning_segqa.experiments.models import TinySegNet
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
