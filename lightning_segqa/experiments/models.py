"""A small segmentation ``LightningModule`` whose ``validation_step`` feeds the monitor.

Used by the demo, the audit and the benchmark; any module that returns the same dict from
``validation_step`` works with :class:`~lightning_segqa.LabelQualityMonitor`.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from lightning.pytorch import LightningModule
from torch import Tensor, nn

ARCHITECTURES = ("fpn", "deeplabv3plus", "unet", "tiny")


class TinySegNet(nn.Module):
    """A few convolutions: a fast model for tests and quick demos.

    Examples:
        >>> TinySegNet(3, 4)(torch.zeros(1, 3, 16, 16)).shape
        torch.Size([1, 4, 16, 16])
    """

    def __init__(self, in_channels: int, num_classes: int, width: int = 16) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(in_channels, width, 3, padding=1),
            nn.BatchNorm2d(width),
            nn.ReLU(),
            nn.Conv2d(width, width, 3, padding=2, dilation=2),
            nn.BatchNorm2d(width),
            nn.ReLU(),
            nn.Conv2d(width, width, 3, padding=4, dilation=4),
            nn.BatchNorm2d(width),
            nn.ReLU(),
            nn.Conv2d(width, num_classes, 1),
        )

    def forward(self, x: Tensor) -> Tensor:
        """Logits ``(B, K, H, W)``."""
        return self.net(x)


def build_model(
    arch: str,
    num_classes: int,
    encoder: str = "resnet18",
    in_channels: int = 3,
    decoder_channels: int | None = None,
    encoder_weights: str | None = None,
) -> nn.Module:
    """A segmentation network: ``tiny`` or a segmentation-models-pytorch one.

    ``decoder_channels`` narrows the decoder (FPN pyramid, DeepLabV3+ decoder, U-Net's last
    stage) for speed on CPU; None keeps segmentation-models-pytorch's defaults.
    ``encoder_weights`` (e.g. ``"imagenet"``) starts the encoder from pretrained weights, which
    segmentation-models-pytorch downloads on first use (needs internet once); the default None
    starts from random weights and never downloads.

    Examples:
        >>> build_model("tiny", 5)(torch.zeros(2, 3, 32, 32)).shape
        torch.Size([2, 5, 32, 32])
    """
    if arch not in ARCHITECTURES:
        raise ValueError(f"`arch` must be one of {ARCHITECTURES}, got {arch!r}.")
    if encoder_weights is not None and not isinstance(encoder_weights, str):
        raise TypeError(f"`encoder_weights` must be a string such as 'imagenet' or None, got {encoder_weights!r}.")
    if arch == "tiny":
        if encoder_weights is not None:
            raise ValueError(f"arch='tiny' has no pretrained weights; got encoder_weights={encoder_weights!r}.")
        return TinySegNet(in_channels, num_classes)
    try:
        import segmentation_models_pytorch as smp
    except ImportError as err:  # pragma: no cover - depends on the install
        raise ImportError(
            f"arch={arch!r} needs segmentation-models-pytorch: pip install 'lightning-segqa[demo]'"
        ) from err
    kwargs: dict[str, Any] = {}
    if decoder_channels is not None:
        c = decoder_channels
        kwargs = {
            "fpn": {"decoder_pyramid_channels": c, "decoder_segmentation_channels": max(c // 2, 8)},
            "deeplabv3plus": {"decoder_channels": c},
            "unet": {"decoder_channels": (c * 8, c * 4, c * 2, c, max(c // 2, 8))},
        }[arch]
    cls = {"fpn": smp.FPN, "deeplabv3plus": smp.DeepLabV3Plus, "unet": smp.Unet}[arch]
    return cls(
        encoder_name=encoder, encoder_weights=encoder_weights, in_channels=in_channels, classes=num_classes, **kwargs
    )


class SegmentationModule(LightningModule):
    """Cross-entropy training of a segmentation network on batches of dicts.

    Batches are dicts with ``image`` ``(B, 3, H, W)``, ``mask`` ``(B, H, W)``, ``index`` ``(B,)``
    and optionally ``is_mislabeled``. ``validation_step`` returns what the monitor reads:
    ``logits``, ``target``, ``index``, ``image`` and ``is_mislabeled``.

    Args:
        num_classes: number of classes.
        arch: ``fpn``, ``deeplabv3plus``, ``unet`` or ``tiny``.
        encoder: segmentation-models-pytorch encoder name.
        lr: Adam learning rate.
        ignore_index: class id left out of the loss.
        decoder_channels: narrower decoder for speed (see :func:`build_model`).
        encoder_weights: pretrained encoder weights (e.g. ``"imagenet"``, downloaded on first use);
            None (default): random initialisation, fully offline.

    Examples:
        >>> module = SegmentationModule(num_classes=3, arch="tiny")
        >>> batch = {"image": torch.rand(2, 3, 8, 8), "mask": torch.zeros(2, 8, 8, dtype=torch.long),
        ...          "index": torch.tensor([4, 5])}
        >>> sorted(module.validation_step(batch, 0))
        ['image', 'index', 'logits', 'target']
    """

    def __init__(
        self,
        num_classes: int,
        arch: str = "fpn",
        encoder: str = "resnet18",
        lr: float = 1e-3,
        ignore_index: int | None = None,
        decoder_channels: int | None = None,
        encoder_weights: str | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.model = build_model(
            arch, num_classes, encoder, decoder_channels=decoder_channels, encoder_weights=encoder_weights
        )
        self.lr = lr
        self.ignore_index = -100 if ignore_index is None else ignore_index

    def forward(self, x: Tensor) -> Tensor:
        """Logits ``(B, K, H, W)``; inputs are padded (edge values) to a multiple of 32 and cropped back."""
        h, w = x.shape[-2:]
        ph, pw = (-h) % 32, (-w) % 32
        if ph or pw:
            x = F.pad(x, (0, pw, 0, ph), mode="replicate")
        return self.model(x)[..., :h, :w]

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        """Cross-entropy on the (possibly noisy) given masks."""
        loss = F.cross_entropy(self(batch["image"]), batch["mask"], ignore_index=self.ignore_index)
        self.log("train_loss", loss, prog_bar=True, batch_size=batch["image"].shape[0])
        return loss

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> dict[str, Any]:
        """Loss plus the outputs the label-quality monitor reads."""
        logits = self(batch["image"])
        loss = F.cross_entropy(logits, batch["mask"], ignore_index=self.ignore_index)
        self.log("val_loss", loss, prog_bar=True, batch_size=batch["image"].shape[0])
        out = {"logits": logits, "target": batch["mask"], "index": batch["index"], "image": batch["image"]}
        if "is_mislabeled" in batch:
            out["is_mislabeled"] = batch["is_mislabeled"]
        return out

    def configure_optimizers(self) -> torch.optim.Optimizer:
        """Adam."""
        return torch.optim.Adam(self.parameters(), lr=self.lr)
