"""Small data, modules and runners shared by the cross-validation tests (kept fast: tiny images)."""

from __future__ import annotations

import warnings

import torch
import torch.nn.functional as F
from lightning.pytorch import LightningModule
from torch.utils.data import DataLoader, Subset

from lightning_segqa import LabelQuality
from lightning_segqa.callback import LabelQualityMonitor
from lightning_segqa.cross_validation import CrossValidation
from lightning_segqa.data import TensorSegmentationDataset
from lightning_segqa.experiments import STREET_CLASSES, UNLABELED_INDEX, make_street_scenes
from lightning_segqa.experiments.models import TinySegNet
from lightning_segqa.noise import inject_label_errors

K = len(STREET_CLASSES)
# logger=False keeps the tests fast; tests of logging pass trainer_kwargs={"logger": True}
FAST = {"max_epochs": 1, "enable_progress_bar": False, "num_sanity_val_steps": 0, "log_every_n_steps": 1,
        "logger": False}  # fmt: skip
warnings.filterwarnings("ignore", ".*does not have many workers.*")
warnings.filterwarnings("ignore", ".*number of training batches.*")


def small_dataset(n: int = 12, h: int = 16, w: int = 24, seed: int = 2) -> TensorSegmentationDataset:
    images, masks = make_street_scenes(n, h, w, seed=seed)
    noisy, truth = inject_label_errors(masks, "swap", 0.3, seed=seed, unlabeled_index=UNLABELED_INDEX)
    return TensorSegmentationDataset(images, noisy, truth)


class DictModule(LightningModule):
    """Dict batches; logs ``val/loss`` (not ``val_loss``), or nothing with ``log_key=None``."""

    def __init__(self, lr: float = 5e-3, log_key: str | None = "val/loss") -> None:
        super().__init__()
        self.save_hyperparameters()
        self.net = TinySegNet(3, K, width=8)

    def forward(self, x):
        return self.net(x)

    def training_step(self, batch, batch_idx):
        return F.cross_entropy(self(batch["image"]), batch["mask"])

    def validation_step(self, batch, batch_idx):
        logits = self(batch["image"])
        if self.hparams.log_key:
            self.log(self.hparams.log_key, F.cross_entropy(logits, batch["mask"]), batch_size=len(logits))
        return {"logits": logits, "target": batch["mask"], "index": batch["index"],
                "is_mislabeled": batch["is_mislabeled"]}  # fmt: skip

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=self.hparams.lr)


def make_cv(work_dir, dataset, factory=None, monitor=None, trainer_kwargs=None, **kwargs) -> CrossValidation:
    kwargs.setdefault("num_folds", 2)
    kwargs.setdefault("seed", 3)
    kwargs.setdefault("batch_size", 4)
    return CrossValidation(
        factory or (lambda fold: DictModule()),
        dataset,
        monitor or LabelQualityMonitor(K, top_k=2, downsample=2, methods=("softmin", "confidence_in_label")),
        work_dir,
        trainer_kwargs={**FAST, **(trainer_kwargs or {})},
        **kwargs,
    )


def score_by_hand(dataset, folds, checkpoints, module_cls=DictModule, methods=("softmin", "confidence_in_label"),
                  tta=False):  # fmt: skip
    """Each fold's checkpoint predicts its held-out images; one metric for all (the reference)."""
    metric = LabelQuality(K, downsample=2, methods=list(methods), input_format="probs")
    for held, path in zip(folds, checkpoints, strict=True):
        model = module_cls.load_from_checkpoint(path)
        model.eval()
        with torch.no_grad():
            for batch in DataLoader(Subset(dataset, held), batch_size=3):
                probs = model(batch["image"]).softmax(1)
                if tta:
                    probs = (probs + model(batch["image"].flip(-1)).softmax(1).flip(-1)) / 2
                metric.update(probs, batch["mask"], batch["index"], batch["is_mislabeled"])
    return metric.compute()
