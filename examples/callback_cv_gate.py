"""The callback, K-fold cross-validation and the gate, end to end on built-in data.

    python examples/callback_cv_gate.py --out runs/example

1. builds street scenes and injects Swap errors into 30% of the masks;
2. 3-fold cross-validation with `LabelQualityMonitor`: every image scored out of fold;
3. prints the ranked suspects and detection metrics, checks the gate like `segqa gate` would;
4. retrains one model on the images that pass (suspects removed).
"""

from __future__ import annotations

import argparse
import warnings

import torch
from lightning.pytorch import Trainer
from torch.utils.data import DataLoader, Subset

from lightning_segqa import CrossValidation, LabelQualityMonitor, evaluate_gate, indexes_to_keep
from lightning_segqa.data import TensorSegmentationDataset
from lightning_segqa.experiments import STREET_CLASSES, UNLABELED_INDEX, make_street_scenes
from lightning_segqa.experiments.models import SegmentationModule
from lightning_segqa.noise import inject_label_errors
from lightning_segqa.seeding import derive_seed

warnings.filterwarnings("ignore", ".*does not have many workers.*")


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="segqa_runs/example")
    parser.add_argument("--images", type=int, default=36)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--arch", default="tiny", help="tiny (fast) or an smp architecture such as fpn")
    args = parser.parse_args(argv)

    k = len(STREET_CLASSES)
    # one seed, independent streams: scenes, error images and folds must not draw the same numbers
    seed = 0
    images, masks = make_street_scenes(args.images, 32, 48, seed=derive_seed(seed, "scenes"))
    noisy, truth = inject_label_errors(
        masks, "swap", 0.3, seed=derive_seed(seed, "errors"), unlabeled_index=UNLABELED_INDEX
    )
    dataset = TensorSegmentationDataset(images, noisy, truth)

    monitor = LabelQualityMonitor(k, class_names=STREET_CLASSES, top_k=4, suspect_threshold=0.1)
    cv = CrossValidation(
        lambda fold: SegmentationModule(k, arch=args.arch, lr=5e-3),
        dataset,
        monitor,
        args.out,
        num_folds=3,
        seed=seed,
        batch_size=6,
        trainer_kwargs={"max_epochs": args.epochs, "enable_progress_bar": False, "num_sanity_val_steps": 0},
    )
    report = cv.run()
    print(report.table("softmin", k=8))

    decision = evaluate_gate(report, "softmin", threshold=0.1, max_suspect_fraction=0.05)
    print(decision.message)

    keep = indexes_to_keep(report, "softmin", threshold=None, k=int(truth.sum()))
    dropped = sorted(set(range(len(dataset))) - set(keep.tolist()))
    caught = int(truth[dropped].sum())
    print(f"Retraining on {len(keep)} images; {caught} of the {len(dropped)} dropped images had injected errors.")
    trainer = Trainer(max_epochs=1, logger=False, enable_checkpointing=False, enable_progress_bar=False)
    trainer.fit(SegmentationModule(k, arch=args.arch), DataLoader(Subset(dataset, keep.tolist()), batch_size=6))
    return {"report": report, "decision": decision, "caught": caught, "dropped": len(dropped)}


if __name__ == "__main__":
    torch.manual_seed(0)
    main()
