"""How many images the default suspect rule flags, with clean and with corrupted masks.

Reproduces the tables of ``docs/suspects.md``:

* **CamVid** (``--data``, the SegNet split at 96x128): an FPN/resnet18 (random init) is trained on
  the *clean* training split with Adam (lr 2e-3, batch 8); after each epoch of ``--epochs`` its
  softmax on the 101 validation images is saved. Those out-of-sample predictions are scored
  against the clean validation masks and against copies with 20 % and 30 % of the masks
  corrupted by :func:`~lightning_segqa.inject_label_errors` (drop, swap, shift, and "mixed": a
  third of the corrupted images each), two seeds each.
* **Demo scenes**: the ``segqa demo`` setting (120 street scenes 64x96, errors injected before
  training, 3 folds of FPN/mobilenet_v2, Adam 2e-3, batch 16) with clean masks and with 20 %/30 %
  mixed errors, at ``--demo-epochs``, trained in a plain loop (no per-epoch validation).

For every report it applies the default rule
(:func:`~lightning_segqa.suspect_rule.default_suspect_mask`) and the old fixed threshold
(softmin < 0.1) and prints the flagged share of images, the precision (share of flagged images
that are corrupted) and the recall (share of corrupted images that are flagged).

Everything is cached under ``--out`` (predictions and reports); a rerun only re-evaluates.
Run: ``nice -n 10 python benchmarks/suspect_rule.py --data ../shared/data/camvid`` (about 15 min
on 2 free CPU cores; ``--skip-demo`` or ``--skip-camvid`` for a part of it).
"""

from __future__ import annotations

import argparse
import math
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

from lightning_segqa import LabelQuality, LabelQualityReport, detection_metrics, inject_label_errors
from lightning_segqa.agreement import agreement_summary
from lightning_segqa.suspect_rule import default_suspect_mask

KINDS = ("drop", "swap", "shift")
FRACTIONS = (0.2, 0.3)
SEEDS = (0, 1)


def mixed_errors(masks: Tensor, fraction: float, seed: int, unlabeled_index: int) -> tuple[Tensor, Tensor]:
    """Corrupt ``round(fraction * N)`` masks, a third each with drop, swap and shift."""
    n_err = round(fraction * masks.shape[0])
    perm = torch.randperm(masks.shape[0], generator=torch.Generator().manual_seed(seed))
    noisy, flags = masks.clone(), torch.zeros(masks.shape[0], dtype=torch.bool)
    counts = [n_err // 3 + (1 if i < n_err % 3 else 0) for i in range(3)]
    for group, kind, count in zip(perm.chunk(3), KINDS, counts, strict=True):
        part, part_flags = inject_label_errors(masks[group], kind, count / len(group), seed, unlabeled_index)
        noisy[group], flags[group] = part, part_flags
    return noisy, flags


def corrupted_variants(masks: Tensor, unlabeled_index: int) -> Iterator[tuple[str, float, Tensor, Tensor]]:
    """``(name, fraction, masks, is_mislabeled)``: clean, then every kind, fraction and seed."""
    yield "clean", 0.0, masks, torch.zeros(masks.shape[0], dtype=torch.bool)
    for fraction in FRACTIONS:
        for kind in (*KINDS, "mixed"):
            for seed in SEEDS:
                if kind == "mixed":
                    noisy, flags = mixed_errors(masks, fraction, seed, unlabeled_index)
                else:
                    noisy, flags = inject_label_errors(masks, kind, fraction, seed, unlabeled_index)
                yield f"{kind}{seed}", fraction, noisy, flags


def train_with_snapshots(data_root: str, out: Path, epochs: list[int]) -> None:
    """Train FPN/resnet18 on clean CamVid train; save the validation softmax after each listed epoch."""
    from lightning_segqa.experiments.benchmark import load_camvid, predict_probs
    from lightning_segqa.experiments.models import SegmentationModule

    todo = [e for e in epochs if not (out / f"fpn_e{e}.pt").exists()]
    if not todo:
        return
    data = load_camvid(data_root, (96, 128))
    torch.save({"val_masks": data.val_masks.to(torch.uint8)}, out / "val_masks.pt")
    torch.manual_seed(0)
    module = SegmentationModule(12, arch="fpn", encoder="resnet18", lr=2e-3)
    optimizer = module.configure_optimizers()
    gen = torch.Generator().manual_seed(0)
    n, start = data.train_images.shape[0], time.perf_counter()
    for epoch in range(1, max(todo) + 1):
        module.train()
        perm = torch.randperm(n, generator=gen)
        for s in range(0, n, 8):
            idx = perm[s : s + 8]
            loss = F.cross_entropy(module(data.train_images[idx]), data.train_masks[idx])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        print(f"[camvid] epoch {epoch} done ({time.perf_counter() - start:.0f} s)", flush=True)
        if epoch in epochs:
            probs = predict_probs(module, data.val_images, 16)
            torch.save({"probs": probs, "epoch": epoch, "arch": "fpn"}, out / f"fpn_e{epoch}.pt")


def score_camvid(out: Path, epoch: int) -> None:
    """Score one snapshot against every mask variant; one JSON report each (skipped when cached)."""
    masks = torch.load(out / "val_masks.pt")["val_masks"].long()
    probs = torch.load(out / f"fpn_e{epoch}.pt")["probs"]
    reports = out / "reports"
    reports.mkdir(exist_ok=True)
    n = masks.shape[0]
    for name, fraction, noisy, flags in corrupted_variants(masks, unlabeled_index=11):
        path = reports / f"fpn_e{epoch}_{name}_{int(fraction * 100)}.json"
        if path.exists():
            continue
        metric = LabelQuality(12, input_format="probs")
        for s in range(0, n, 16):
            p = probs[s : s + 16].float()
            metric.update(
                p / p.sum(1, keepdim=True), noisy[s : s + 16], torch.arange(s, min(s + 16, n)), flags[s : s + 16]
            )
        report = metric.compute()
        report.details.update(truth=flags.tolist(), frac=fraction, kind=name)
        report.to_json(path)


def run_demo_variant(out: Path, variant: str, epochs: int) -> None:
    """The demo's setting with ``variant`` masks (e.g. ``mixed30``), every image scored out of fold.

    120 street scenes 64x96, errors injected before training, 3 folds; per fold an FPN/mobilenet_v2
    (decoder 64, random init) trained on the other two folds with Adam (lr 2e-3, batch 16) in a
    plain loop (the demo's model and optimiser without Lightning's per-epoch validation).
    """
    from lightning_segqa.experiments import STREET_CLASSES, UNLABELED_INDEX, make_street_scenes
    from lightning_segqa.experiments.benchmark import predict_probs
    from lightning_segqa.experiments.models import SegmentationModule

    path = out / f"demo_{variant}_e{epochs}.json"
    if path.exists():
        return
    images, masks = make_street_scenes(120, 64, 96, seed=0)
    if variant == "clean":
        noisy, truth = masks.clone(), torch.zeros(120, dtype=torch.bool)
    else:
        kind, fraction = variant[:-2], int(variant[-2:]) / 100
        if kind == "mixed":
            noisy, truth = mixed_errors(masks, fraction, 0, UNLABELED_INDEX)
        else:
            noisy, truth = inject_label_errors(masks, kind, fraction, 0, unlabeled_index=UNLABELED_INDEX)
    k, start = len(STREET_CLASSES), time.perf_counter()
    probs = torch.zeros(120, k, 64, 96, dtype=torch.float16)
    folds = torch.randperm(120, generator=torch.Generator().manual_seed(0)).chunk(3)
    for f, held in enumerate(folds):
        train = torch.cat([folds[j] for j in range(3) if j != f])
        torch.manual_seed(f)
        module = SegmentationModule(k, arch="fpn", encoder="mobilenet_v2", lr=2e-3, decoder_channels=64)
        optimizer, gen = module.configure_optimizers(), torch.Generator().manual_seed(f)
        for _ in range(epochs):
            module.train()
            perm = train[torch.randperm(len(train), generator=gen)]
            for s in range(0, len(perm), 16):
                idx = perm[s : s + 16]
                loss = F.cross_entropy(module(images[idx]), noisy[idx].long())
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
        probs[held] = predict_probs(module, images[held], 16)
        print(f"[demo {variant}, {epochs} epochs] fold {f} done ({time.perf_counter() - start:.0f} s)", flush=True)
    metric = LabelQuality(k, input_format="probs")
    for s in range(0, 120, 20):
        p = probs[s : s + 20].float()
        metric.update(p / p.sum(1, keepdim=True), noisy[s : s + 20].long(), torch.arange(s, s + 20), truth[s : s + 20])
    report = metric.compute()
    report.details.update(truth=truth.tolist(), frac=float(truth.float().mean()), kind=variant)
    report.to_json(path)


SUMMARY = [(0.0, "clean"), *((f, "mixed") for f in FRACTIONS)]
BY_KIND = [(f, k) for f in FRACTIONS for k in KINDS]
Rule = Callable[[Tensor], Tensor]
RULES: dict[str, Rule] = {"softmin < 0.1": lambda s: s < 0.1, "default rule": default_suspect_mask}


def evaluate(paths: list[Path], method: str = "softmin") -> tuple[dict, dict[str, float] | None, float]:
    """Per rule and (fraction, kind): flagged share, precision, recall; agreement; mean AUROC on mixed errors."""
    cells: dict = defaultdict(lambda: defaultdict(list))
    agreement, aurocs = None, []
    for path in paths:
        report = LabelQualityReport.from_json(path)
        truth = torch.tensor(report.details["truth"], dtype=torch.bool)
        fraction = round(float(report.details["frac"]), 1)
        kind = report.details["kind"].rstrip("0123456789")
        kind = "clean" if fraction == 0 else kind
        if fraction == 0 or agreement is None:  # the clean masks' agreement, else the first report's
            agreement = agreement_summary(report)
        elif kind == "mixed":
            aurocs.append(detection_metrics(report.scores[method], truth)["auroc"])
        for name, rule in RULES.items():
            flagged = rule(report.scores[method])
            hits, count = int((flagged & truth).sum()), int(flagged.sum())
            precision = hits / count if count else float("nan")
            recall = hits / int(truth.sum()) if truth.any() else float("nan")
            cells[name][(fraction, kind)].append((count / len(truth), precision, recall))
    return cells, agreement, _mean(aurocs)


def _mean(values: list[float]) -> float:
    kept = [v for v in values if not math.isnan(v)]
    return sum(kept) / len(kept) if kept else float("nan")


def table_rows(label: str, paths: list[Path], columns: list[tuple[float, str]]) -> list[str]:
    """Markdown rows: setting, agreement, AUROC, rule, then the clean share or share/precision/recall per column."""
    cells, agreement, auroc = evaluate(paths)
    rows = []
    median = "?" if agreement is None else f"{agreement['median']:.2f}"
    for name, per in cells.items():
        row = [label, median, f"{auroc:.2f}", name]
        for key in columns:
            values = per.get(key)
            if not values:
                row.append("")
                continue
            share = _mean([v[0] for v in values])
            if key[0] == 0:
                row.append(f"{share:.0%}")
            else:
                prec, rec = _mean([v[1] for v in values]), _mean([v[2] for v in values])
                row.append(f"{share:.0%} / {prec:.2f} / {rec:.2f}".replace("nan", "-"))
        rows.append("| " + " | ".join(row) + " |")
    return rows


def main() -> None:
    """Command line entry: train/score what is missing, then print the tables."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default="../shared/data/camvid")
    parser.add_argument("--out", default="segqa_runs/suspect_rule", help="cache of predictions and reports")
    parser.add_argument("--epochs", type=int, nargs="+", default=[1, 2, 4, 7], help="CamVid snapshots")
    parser.add_argument("--demo-epochs", type=int, nargs="+", default=[8, 3])
    parser.add_argument(
        "--demo-variants", nargs="+", default=["clean", "mixed20", "mixed30"], help="masks: clean or KIND+PERCENT"
    )
    parser.add_argument("--skip-camvid", action="store_true")
    parser.add_argument("--skip-demo", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(2)
    out = Path(args.out)
    camvid, demo = out / "camvid", out / "demo"
    camvid.mkdir(parents=True, exist_ok=True)
    demo.mkdir(parents=True, exist_ok=True)
    summary, by_kind = _head(SUMMARY), _head(BY_KIND)
    if not args.skip_camvid:
        train_with_snapshots(args.data, camvid, args.epochs)
        for epoch in args.epochs:
            score_camvid(camvid, epoch)
            paths = sorted(camvid.glob(f"reports/fpn_e{epoch}_*.json"))
            summary += table_rows(f"CamVid, {epoch} epochs", paths, SUMMARY)
            by_kind += table_rows(f"CamVid, {epoch} epochs", paths, BY_KIND)
    if not args.skip_demo:
        for epochs in args.demo_epochs:
            for variant in args.demo_variants:
                run_demo_variant(demo, variant, epochs)
            summary += table_rows(f"demo, {epochs} epochs", sorted(demo.glob(f"demo_*_e{epochs}.json")), SUMMARY)
    print("\n".join(summary) + "\n\nBy error kind (CamVid):\n\n" + "\n".join(by_kind))


def _head(columns: list[tuple[float, str]]) -> list[str]:
    names = ["clean" if f == 0 else f"{int(f * 100)} % {k}" for f, k in columns]
    head = "| setting | agreement | AUROC (mixed) | rule | " + " | ".join(names) + " |"
    return [head, "|" + "---|" * (head.count("|") - 1)]


if __name__ == "__main__":
    main()
