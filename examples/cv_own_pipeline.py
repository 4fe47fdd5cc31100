"""Cross-validation with your own LightningModule and LightningDataModule.

    python examples/cv_own_pipeline.py --out runs/own_pipeline

Your data pipeline stays yours: ``datamodule_factory(fold, train_indexes, heldout_indexes)``
returns a ``LightningDataModule`` whose training part uses training transforms (here: random
horizontal flips and colour jitter) and whose held-out part uses evaluation transforms (none),
so augmentation never leaks into the scores. Batches are tuples ``(image, mask, index)``; the
monitor reads the module's outputs through ``extract``. The module logs ``val/loss`` (any key
works); the held-out part is scored with the best checkpoint by that key, and the logs go to
one CSV logger version per fold.
"""

from __future__ import annotations

import argparse
import warnings

import torch
import torch.nn.functional as F
from lightning.pytorch import LightningDataModule, LightningModule
from lightning.pytorch.loggers import CSVLogger
from torch import nn
from torch.utils.data import DataLoader, Dataset

from lightning_segqa import CrossValidation, LabelQualityMonitor
from lightning_segqa.experiments import STREET_CLASSES, UNLABELED_INDEX, make_street_scenes
from lightning_segqa.noise import inject_label_errors
from lightning_segqa.seeding import derive_seed

warnings.filterwarnings("ignore", ".*does not have many workers.*")
NUM_CLASSES = len(STREET_CLASSES)


class StreetScenes(Dataset):
    """Tuple samples ``(image, mask, index)`` of some indexes, with an optional transform."""

    def __init__(self, images, masks, indexes, transform=None):
        self.images, self.masks, self.indexes, self.transform = images, masks, list(indexes), transform

    def __len__(self):
        return len(self.indexes)

    def __getitem__(self, i):
        index = self.indexes[i]
        image, mask = self.images[index], self.masks[index]
        if self.transform is not None:
            image, mask = self.transform(image, mask)
        return image, mask, index


def train_transform(image, mask):
    """Random horizontal flip and brightness jitter: training only."""
    if torch.rand(()) < 0.5:
        image, mask = image.flip(-1), mask.flip(-1)
    return (image * (0.8 + 0.4 * torch.rand(()))).clamp(0, 1), mask


class StreetDataModule(LightningDataModule):
    def __init__(self, images, masks, train_indexes, heldout_indexes, batch_size=6):
        super().__init__()
        self.train_set = StreetScenes(images, masks, train_indexes, transform=train_transform)
        self.heldout_set = StreetScenes(images, masks, heldout_indexes)  # evaluation: no augmentation
        self.batch_size = batch_size

    def train_dataloader(self):
        return DataLoader(self.train_set, batch_size=self.batch_size, shuffle=True)

    def val_dataloader(self):
        return DataLoader(self.heldout_set, batch_size=self.batch_size)


class SmallSegmenter(LightningModule):
    def __init__(self, num_classes=NUM_CLASSES, lr=5e-3):
        super().__init__()
        self.save_hyperparameters()
        self.net = nn.Sequential(
            nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(),
            nn.Conv2d(16, 16, 3, padding=2, dilation=2), nn.ReLU(),
            nn.Conv2d(16, num_classes, 1),
        )  # fmt: skip

    def forward(self, x):
        return self.net(x)

    def training_step(self, batch, batch_idx):
        image, mask, _ = batch
        loss = F.cross_entropy(self(image), mask)
        self.log("train/loss", loss)
        return loss

    def validation_step(self, batch, batch_idx):
        image, mask, _ = batch
        logits = self(image)
        self.log("val/loss", F.cross_entropy(logits, mask))
        return logits  # the monitor's `extract` pairs it with the batch

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=self.hparams.lr)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="segqa_runs/own_pipeline")
    parser.add_argument("--images", type=int, default=36)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--folds", type=int, nargs="*", default=None, help="run only these folds (job arrays)")
    args = parser.parse_args(argv)

    seed = 0
    images, masks = make_street_scenes(args.images, 32, 48, seed=derive_seed(seed, "scenes"))
    noisy, truth = inject_label_errors(masks, "swap", 0.3, seed=derive_seed(seed, "errors"),
                                       unlabeled_index=UNLABELED_INDEX)  # fmt: skip

    monitor = LabelQualityMonitor(
        NUM_CLASSES,
        class_names=STREET_CLASSES,
        top_k=4,
        # tuple batches: say where the logits, masks and dataset indexes are
        extract=lambda logits, batch: {"logits": logits, "target": batch[1], "index": batch[2], "image": batch[0]},
    )
    cv = CrossValidation(
        model_factory=lambda fold: SmallSegmenter(),
        dataset=None,
        monitor=monitor,
        work_dir=args.out,
        datamodule_factory=lambda fold, train, held: StreetDataModule(images, noisy, train, held),
        num_samples=args.images,
        data_fingerprint="street-scenes-v1-seed0",  # change it when the data changes
        num_folds=3,
        seed=seed,
        trainer_kwargs={
            "max_epochs": args.epochs,
            "enable_progress_bar": False,
            "num_sanity_val_steps": 0,
            "log_every_n_steps": 1,
        },  # fmt: skip
        checkpoint="best",
        checkpoint_monitor="val/loss",
        checkpoint_mode="min",
        logger_factory=lambda name, version: CSVLogger(args.out, name=name, version=version),
        folds=args.folds,
    )
    report = cv.run()
    if report is None:  # some folds still run elsewhere
        return {"report": None, "truth": truth}
    print(report.table("softmin", k=8))
    return {"report": report, "truth": truth}


if __name__ == "__main__":
    main()
