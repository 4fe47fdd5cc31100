"""The callback's share of validation-epoch time, with and without it, side by side in one run.

A small segmentation-models-pytorch model (FPN, mobilenet_v2 encoder, no weights) validates
built-in scenes at 96x128 on the CPU. Runs are interleaved (without, with, without, ...) and
the median is reported, because this machine is shared and noisy.

    python benchmarks/callback_overhead.py            # defaults: 64 images, 5 rounds
    python benchmarks/callback_overhead.py --quick    # smoke run
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run from a checkout without installing
    sys.path.insert(0, str(ROOT))

import torch
from lightning.pytorch import Callback, Trainer
from torch.utils.data import DataLoader

from lightning_segqa import METHODS
from lightning_segqa.callback import LabelQualityMonitor
from lightning_segqa.data import TensorSegmentationDataset
from lightning_segqa.experiments import STREET_CLASSES, make_street_scenes
from lightning_segqa.experiments.models import SegmentationModule

warnings.filterwarnings("ignore")


class EpochTimer(Callback):
    def on_validation_epoch_start(self, trainer, pl_module):
        self.start = time.perf_counter()

    def on_validation_epoch_end(self, trainer, pl_module):
        # registered after the monitor, so its epoch-end work (compute, logging) is included
        self.seconds = time.perf_counter() - self.start


REPORT_DIR = Path(tempfile.mkdtemp(prefix="segqa_overhead_"))
HOOKS = ("on_validation_epoch_start", "on_validation_batch_end", "on_validation_epoch_end")


def time_hooks(monitor):
    """Wrap the monitor's hooks on the instance so the time spent inside them is accumulated."""
    monitor.hook_seconds = 0.0
    for name in HOOKS:
        original = getattr(monitor, name)

        def timed(*args, _original=original, **kwargs):
            start = time.perf_counter()
            try:
                return _original(*args, **kwargs)
            finally:
                monitor.hook_seconds += time.perf_counter() - start

        setattr(monitor, name, timed)
    return monitor


def validate_once(model, loader, monitor):
    timer = EpochTimer()
    callbacks = [monitor, timer] if monitor is not None else [timer]
    if monitor is not None:  # keep the report files out of the working directory; like the
        monitor.report_dir = REPORT_DIR  # epochs of one training run, every run writes to one folder
    trainer = Trainer(
        logger=False,
        callbacks=callbacks,
        enable_progress_bar=False,
        enable_model_summary=False,
        accelerator="cpu",
        devices=1,
    )
    trainer.validate(model, loader, verbose=False)
    return timer.seconds, getattr(monitor, "hook_seconds", 0.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--train-epochs", type=int, default=3, help="train first so predictions are realistic")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.images, args.rounds, args.train_epochs = 16, 2, 1
    if args.threads:
        torch.set_num_threads(args.threads)
    k = len(STREET_CLASSES)
    images, masks = make_street_scenes(args.images, 96, 128, seed=0)
    loader = DataLoader(TensorSegmentationDataset(images, masks), batch_size=args.batch_size)
    model = SegmentationModule(k, arch="fpn", encoder="mobilenet_v2", decoder_channels=64)
    trainer = Trainer(
        max_epochs=args.train_epochs,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        accelerator="cpu",
    )
    trainer.fit(model, DataLoader(loader.dataset, batch_size=8, shuffle=True))
    model.eval()
    configs = {
        "monitor, defaults (softmin)": lambda: time_hooks(LabelQualityMonitor(k, draw_pictures=False)),
        "monitor, all 7 methods": lambda: time_hooks(LabelQualityMonitor(k, methods=METHODS, draw_pictures=False)),
        "monitor, defaults, 10 suspects kept": lambda: time_hooks(LabelQualityMonitor(k, top_k=10)),
    }
    validate_once(model, loader, None)  # warm-up
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, {args.images} images 96x128, "
        f"batch {args.batch_size}; each configuration alternates with a run without the callback, "
        f"{args.rounds} pairs (median)"
    )
    print("overhead = extra epoch time against its paired runs without; in hooks = time inside the monitor's hooks")
    print(f"{'configuration':32s} {'without s':>9s} {'with s':>8s} {'overhead':>9s} {'in hooks':>9s}")
    results = {}
    for name, make in configs.items():
        base_runs, with_runs, hook_runs = [], [], []
        for _ in range(args.rounds):
            base_runs.append(validate_once(model, loader, None)[0])
            epoch, hooks = validate_once(model, loader, make())
            with_runs.append(epoch)
            hook_runs.append(hooks)
        base, med, hooks = (statistics.median(v) for v in (base_runs, with_runs, hook_runs))
        results[name] = 100 * hooks / base
        print(f"{name:32s} {base:9.3f} {med:8.3f} {100 * (med - base) / base:8.1f}% {100 * hooks / base:8.1f}%")
    over = results["monitor, defaults (softmin)"]
    print(
        f"target: default monitor without pictures under 5% (time in its hooks): {'PASS' if over < 5 else 'MISS'} "
        f"({over:.1f}%)"
    )


if __name__ == "__main__":
    main()
