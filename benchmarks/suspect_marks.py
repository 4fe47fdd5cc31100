"""How well the suspect pictures' marks find the pixels that were made wrong, on real CamVid masks.

The masks are CamVid's (val split, downscaled to 96x128); errors of one kind are injected into a
share of them (:func:`lightning_segqa.noise.inject_label_errors`). The "model" is a stand-in with
known behaviour: it predicts the *original* mask, sure inside regions and unsure near borders
(a blurred one-hot plus smooth noise), so what is measured is the marking rule, not a model. The
masks go through ``LabelQuality`` (softmin, as the monitor's default) and a ``SuspectHeap`` that
keeps every image, as the callback does, and the marks are compared with the changed pixels.
Last, the per-batch cost of collecting the per-class self-confidence (what the monitor adds to
each validation batch while it draws pictures) next to the softmin update itself.

    python benchmarks/suspect_marks.py --data /work/shared/data/camvid

With ``--audit DIR`` (the output folder of ``segqa audit``), it also scores every image with its
fold's trained model (out of fold, as the audit did) and compares, per image, the share of
pixels marked with the share below 0.5, on the natural masks (no truth: all images, and the
audit's ten worst):

    segqa audit --images /work/shared/data/camvid/val/images --masks /work/shared/data/camvid/val/masks \
        --num-classes 12 --class-names docs/camvid_classes.txt --size 96 128 --epochs 6 --folds 3 \
        --out runs/camvid_audit --seed 0
    python benchmarks/suspect_marks.py --data /work/shared/data/camvid --audit runs/camvid_audit
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run from a checkout without installing
    sys.path.insert(0, str(ROOT))

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from lightning_segqa.functional._inputs import prepare_inputs
from lightning_segqa.functional.class_confidence import class_confidence_sums
from lightning_segqa.metric import LabelQuality
from lightning_segqa.noise import inject_label_errors
from lightning_segqa.suspects import SuspectHeap

K, UNLABELLED = 12, 11


def load_masks(root: Path, size: tuple[int, int]) -> torch.Tensor:
    files = sorted((root / "val" / "masks").glob("*.png"))
    if not files:
        raise SystemExit(f"no masks under {root / 'val' / 'masks'}: pass --data pointing at the CamVid folder")
    masks = torch.stack([torch.from_numpy(np.array(Image.open(f))).long() for f in files])
    return F.interpolate(masks[:, None].float(), size=size, mode="nearest")[:, 0].long()


def stand_in_probs(true: torch.Tensor, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    onehot = F.one_hot(true, K).permute(0, 3, 1, 2).float()
    soft = F.avg_pool2d(onehot, 5, stride=1, padding=2, count_include_pad=False)
    noise = F.avg_pool2d(torch.randn(onehot.shape, generator=g), 3, stride=1, padding=1) * 2
    return (6.0 * soft + noise).softmax(1)


def audit_shares(data: Path, audit: Path) -> None:
    """Per image of a `segqa audit` run: share of pixels marked against share with s < 0.5."""
    from lightning_segqa.data import FolderSegmentationDataset
    from lightning_segqa.experiments.models import SegmentationModule

    splits = json.loads((audit / "splits.json").read_text())["folds"]
    dataset = FolderSegmentationDataset(data / "val" / "images", data / "val" / "masks", K, size=(96, 128))
    metric = LabelQuality(K, methods=["softmin"])
    metric.track_class_confidence = True
    heap = SuspectHeap(len(dataset))
    for fold, held in enumerate(splits):
        model = SegmentationModule.load_from_checkpoint(audit / f"fold_{fold}" / "checkpoints" / "last.ckpt")
        model.eval()
        for start in range(0, len(held), 16):
            items = [dataset[i] for i in held[start : start + 16]]
            images = torch.stack([it["image"] for it in items])
            masks = torch.stack([it["mask"] for it in items])
            indexes = torch.stack([it["index"] for it in items])
            with torch.no_grad():
                logits = model(images)
            batch = metric(logits, masks, indexes=indexes)
            heap.push(batch.scores["softmin"], indexes, batch.inputs)
    report = metric.compute()
    entries = heap.entries(class_thresholds=report.details["class_confidence"])  # worst first
    marked = np.array([float(e.issue_mask.float().mean()) for e in entries])
    low = np.array([float((e.pixel_scores < 0.5).float().mean()) for e in entries])
    print(f"{len(entries)} CamVid val images scored out of fold by the audit's models (96x128)")
    print("| images | share marked: median (max) | share with s < 0.5: median (max) |")
    print("|---|---|---|")
    for name, sl in (("all", slice(None)), ("10 worst by softmin", slice(0, 10)), ("the rest", slice(10, None))):
        print(
            f"| {name} | {np.median(marked[sl]):.1%} ({marked[sl].max():.1%}) "
            f"| {np.median(low[sl]):.1%} ({low[sl].max():.1%}) |"
        )
    print()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("/work/shared/data/camvid"))
    parser.add_argument("--fraction", type=float, default=0.3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--audit", type=Path, default=None, help="output folder of `segqa audit` (optional)")
    args = parser.parse_args()
    if args.audit is not None:
        audit_shares(args.data, args.audit)
    true = load_masks(args.data, (96, 128))
    n = len(true)
    print(f"{n} CamVid val masks at 96x128; {args.fraction:.0%} corrupted per kind; stand-in model")
    print(
        "| error | corrupted: changed px marked (recall) | marks on changed px (precision) "
        "| clean: share marked, mean (max) | clean: share with s < 0.5, mean (max) |"
    )
    print("|---|---|---|---|---|")
    for kind in ("swap", "drop", "shift"):
        given, is_bad = inject_label_errors(true, kind, args.fraction, args.seed, UNLABELLED)
        probs = stand_in_probs(true, args.seed)
        metric = LabelQuality(K, methods=["softmin"])
        metric.track_class_confidence = True
        heap = SuspectHeap(n)
        for start in range(0, n, 16):
            sl = slice(start, start + 16)
            batch = metric(probs[sl], given[sl], indexes=torch.arange(n)[sl])
            heap.push(batch.scores["softmin"], torch.arange(n)[sl], batch.inputs)
        report = metric.compute()
        entries = heap.entries(class_thresholds=report.details["class_confidence"])
        hits = changed = marked = 0
        clean_marked, clean_low = [], []
        for e in entries:
            changed_px = given[e.index] != true[e.index]
            if is_bad[e.index]:
                hits += int((e.issue_mask & changed_px).sum())
                changed += int(changed_px.sum())
                marked += int(e.issue_mask.sum())
            else:
                clean_marked.append(float(e.issue_mask.float().mean()))
                clean_low.append(float((e.pixel_scores < 0.5).float().mean()))
        print(
            f"| {kind} ({int(is_bad.sum())} images) | {hits / changed:.1%} | {hits / max(marked, 1):.1%} "
            f"| {np.mean(clean_marked):.2%} ({np.max(clean_marked):.2%}) "
            f"| {np.mean(clean_low):.2%} ({np.max(clean_low):.2%}) |"
        )
    print()
    for b, k, h, w in ((16, 9, 96, 128), (8, 12, 192, 256)):
        g = torch.Generator().manual_seed(0)
        logits = torch.randn(b, k, h, w, generator=g)
        target = logits.argmax(1)
        metric = LabelQuality(k, methods=["softmin"], input_format="logits")
        prepared = prepare_inputs(logits, target, num_classes=k, input_format="logits")
        t_sums, t_update = [], []
        for _ in range(60):
            t0 = time.perf_counter()
            class_confidence_sums(prepared)
            t_sums.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            metric.update(logits, target, torch.arange(b))
            t_update.append(time.perf_counter() - t0)
        print(
            f"batch {b}x{k}x{h}x{w}, {torch.get_num_threads()} threads, fastest of 60: per-class self-confidence "
            f"{min(t_sums) * 1e3:.2f} ms; softmin update from logits {min(t_update) * 1e3:.2f} ms"
        )


if __name__ == "__main__":
    main()
