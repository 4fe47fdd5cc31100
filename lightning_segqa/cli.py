"""The ``segqa`` command line: ``demo``, ``audit``, ``benchmark`` and ``gate``."""

from __future__ import annotations

import argparse
import contextlib
import logging
import sys
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path

from lightning_segqa.experiments.models import ARCHITECTURES


def _training_args(p: argparse.ArgumentParser, epochs: int, folds: int) -> None:
    g = p.add_argument_group("training")
    g.add_argument("--arch", choices=ARCHITECTURES, default="fpn", help="model architecture")
    g.add_argument(
        "--encoder", default="mobilenet_v2", help="segmentation-models-pytorch encoder, no pretrained weights"
    )
    g.add_argument("--decoder-channels", type=int, default=64, help="decoder width (0 = the library's default)")
    g.add_argument("--epochs", type=int, default=epochs, help="epochs per fold")
    g.add_argument("--folds", type=int, default=folds, help="cross-validation folds (each image is scored once)")
    g.add_argument("--batch-size", type=int, default=16, help="images per batch")
    g.add_argument("--lr", type=float, default=2e-3, help="Adam learning rate")
    g.add_argument("--device", default="auto", help="cpu, cuda, mps or auto")
    g.add_argument("--seed", type=int, default=0, help="seed of the data, the folds and the models")
    g.add_argument(
        "--checkpoint", choices=("last", "best"), default="last", help="weights that score each held-out fold"
    )
    g.add_argument("--no-progress", action="store_true", help="hide progress bars")
    g.add_argument(
        "--encoder-weights",
        default=None,
        help="pretrained encoder weights, e.g. imagenet (downloads once; default: none, random init)",
    )
    g.add_argument(
        "--overwrite",
        action="store_true",
        help="delete a previous run in --out and start over (default: resume an identical run, refuse another)",
    )


def _config(args: argparse.Namespace):  # noqa: ANN202
    from lightning_segqa.experiments.pipelines import TrainingConfig

    for name in ("epochs", "folds", "batch_size"):
        if getattr(args, name) < (2 if name == "folds" else 1):
            raise ValueError(f"--{name.replace('_', '-')} must be at least {2 if name == 'folds' else 1}.")
    return TrainingConfig(
        arch=args.arch,
        encoder=args.encoder,
        decoder_channels=args.decoder_channels or None,
        epochs=args.epochs,
        folds=args.folds,
        batch_size=args.batch_size,
        lr=args.lr,
        device=args.device,
        seed=args.seed,
        checkpoint=args.checkpoint,
        progress=not args.no_progress,
        encoder_weights=args.encoder_weights,
        overwrite=args.overwrite,
    )


class _HelpWithDefaults(argparse.ArgumentDefaultsHelpFormatter):
    """Adds ``(default: ...)`` to options with a value default; ``None`` defaults are explained in their help."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.required or action.default is None or action.default is False or "default" in (action.help or ""):
            return action.help
        return super()._get_help_string(action)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``segqa``; every option's help shows its default.

    Examples:
        >>> build_parser().parse_args(["gate", "r.json", "--max-suspect-fraction", "0.1"]).max_suspect_fraction
        0.1
    """
    fmt = _HelpWithDefaults
    parser = argparse.ArgumentParser(prog="segqa", description="Find the wrong masks in a segmentation dataset.")
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser(
        "demo", help="end-to-end run on built-in street scenes with injected errors", formatter_class=fmt
    )
    demo.add_argument("--out", default="segqa_runs/demo", help="output folder (logs, checkpoints, report)")
    demo.add_argument("--images", type=int, default=120, help="number of scenes")
    demo.add_argument("--height", type=int, default=64, help="scene height in pixels")
    demo.add_argument("--width", type=int, default=96, help="scene width in pixels")
    demo.add_argument("--error", choices=("drop", "swap", "shift"), default="drop", help="kind of injected error")
    demo.add_argument(
        "--fraction",
        type=float,
        default=None,
        help="share of images with an error (default: the paper's, 20/30/20%% for drop/swap/shift)",
    )
    _training_args(demo, epochs=8, folds=3)

    audit = sub.add_parser(
        "audit", help="audit a folder of images and masks with K-fold cross-validation", formatter_class=fmt
    )
    audit.add_argument("--images", required=True, help="folder of images")
    audit.add_argument("--masks", required=True, help="folder of masks (class ids), same file stems")
    audit.add_argument("--num-classes", type=int, required=True, help="number of classes K (ids 0..K-1)")
    audit.add_argument(
        "--ignore-index", type=int, default=None, help="mask id to leave out of every score (default: none)"
    )
    audit.add_argument(
        "--class-names", default=None, help="file with one class name per line, or a JSON list (default: ids)"
    )
    audit.add_argument(
        "--size", type=int, nargs=2, default=None, metavar=("H", "W"), help="resize to H W (default: keep the size)"
    )
    audit.add_argument("--top-k", type=int, default=10, help="how many worst masks to print and draw")
    audit.add_argument("--out", default="segqa_runs/audit", help="output folder (logs, checkpoints, report)")
    _training_args(audit, epochs=10, folds=5)

    bench = sub.add_parser("benchmark", help="the paper's tables (AUROC, AUPRC, Lift) on CamVid", formatter_class=fmt)
    bench.add_argument("--data", default="../shared/data/camvid", help="CamVid folder with train/ and val/")
    bench.add_argument("--out", default="segqa_runs/benchmark", help="output folder (cache, logs)")
    bench.add_argument("--models", nargs="+", default=["deeplabv3plus", "fpn"], help="architectures to train")
    bench.add_argument("--errors", nargs="+", default=["drop", "swap", "shift"], help="kinds of injected error")
    bench.add_argument("--encoder", default="resnet18", help="segmentation-models-pytorch encoder")
    bench.add_argument("--epochs", type=int, default=4, help="epochs per run (4: all six runs in ~30 min on 2 CPUs)")
    bench.add_argument("--size", type=int, nargs=2, default=[96, 128], metavar=("H", "W"), help="resize to H W")
    bench.add_argument("--batch-size", type=int, default=8, help="images per batch")
    bench.add_argument("--device", default="auto", help="cpu, cuda, mps or auto")
    bench.add_argument("--seed", type=int, default=0, help="seed of the errors and the models")
    bench.add_argument("--augment", nargs="*", default=[], choices=["hflip", "vflip"],
                       help="flip training images at random (default: no augmentation)")  # fmt: skip
    bench.add_argument("--tta", nargs="*", default=[], choices=["hflip", "vflip"],
                       help="also score flip-averaged predictions (columns MODEL+hflip; default: none)")  # fmt: skip
    bench.add_argument(
        "--encoder-weights",
        default=None,
        help="pretrained encoder weights, e.g. imagenet (downloads; default: none, random init)",
    )
    bench.add_argument(
        "--markdown", default=None, help="also write the tables to this Markdown file (default: no file)"
    )

    gate = sub.add_parser(
        "gate", help="exit non-zero when a report has too many suspect images (for CI)", formatter_class=fmt
    )
    gate.add_argument("report", help="label_quality.json written by the monitor, the demo or the audit")
    gate.add_argument("--max-suspect-fraction", type=float, required=True, help="largest acceptable share of suspects")
    gate.add_argument("--method", default="softmin", help="method whose score decides")
    gate.add_argument(
        "--threshold",
        type=float,
        default=None,
        help="score below which an image is a suspect (default: the default rule, see docs/cli.md)",
    )
    return parser


#: Lightning warnings about settings the command line chose on purpose, and per-fold repeats of what
#: the final summary says once
_HIDDEN_WARNINGS = (
    ".*does not have many workers.*",
    ".*[Cc]heckpoint directory .* exists and is not empty.*",
    ".*callbacks used to create the checkpoint need to be provided.*",
    ".*smaller than the logging interval.*",
    ".*The model agrees with the given masks on only.*",
)


@contextlib.contextmanager
def quiet_terminal() -> Iterator[None]:
    """Keep Lightning's banners and hints out of the terminal; one line per warning.

    Lightning's informational lines (accelerator banners, tips, "max_epochs reached") and its
    hints about settings the command chose on purpose are hidden for every fold; other warnings
    stay, printed once each as ``segqa: warning: ...``.

    Examples:
        >>> with quiet_terminal():
        ...     logging.getLogger("lightning.pytorch").isEnabledFor(logging.INFO)
        False
    """
    loggers = [logging.getLogger(name) for name in ("lightning.pytorch", "lightning.fabric", "lightning")]
    levels = [lg.level for lg in loggers]
    show = warnings.showwarning

    def one_line(message: Warning | str, category: type[Warning], *args: object, **kwargs: object) -> None:
        print(f"segqa: warning: {message}", file=sys.stderr)

    with warnings.catch_warnings():
        for lg in loggers:
            lg.setLevel(logging.WARNING)
        warnings.showwarning = one_line
        from lightning.fabric.utilities.warnings import PossibleUserWarning

        for category in (PossibleUserWarning, DeprecationWarning, FutureWarning):  # hints for library authors
            warnings.filterwarnings("ignore", category=category)
        for pattern in _HIDDEN_WARNINGS:
            warnings.filterwarnings("ignore", pattern)
        try:
            yield
        finally:
            for lg, level in zip(loggers, levels, strict=True):
                lg.setLevel(level)
            warnings.showwarning = show


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``segqa``; returns the exit code (0 done or passed, 1 gate failed, 2 bad input)."""
    args = build_parser().parse_args(argv)
    if args.command == "gate":
        return _gate(args)
    with quiet_terminal():
        if args.command == "demo":
            from lightning_segqa.experiments.pipelines import run_demo
            from lightning_segqa.folds import StaleWorkDirError

            try:
                config = _config(args)
                if args.images < args.folds:
                    raise ValueError(f"--images ({args.images}) must be at least --folds ({args.folds}).")
                run_demo(args.out, args.images, args.height, args.width, args.error, args.fraction, config)
            except ValueError as err:
                hint = " On the command line: --overwrite." if isinstance(err, StaleWorkDirError) else ""
                print(f"segqa demo: {err}{hint}", file=sys.stderr)
                return 2
            return 0
        if args.command == "audit":
            return _audit(args)
        return _benchmark(args)


def _audit(args: argparse.Namespace) -> int:
    from lightning_segqa.data import load_class_names
    from lightning_segqa.experiments.pipelines import run_audit
    from lightning_segqa.folds import StaleWorkDirError

    try:
        names = load_class_names(args.class_names) if args.class_names else None
        run_audit(
            args.images,
            args.masks,
            args.num_classes,
            args.out,
            args.ignore_index,
            names,
            tuple(args.size) if args.size else None,
            _config(args),
            args.top_k,
        )
    except (ValueError, FileNotFoundError) as err:
        hint = " On the command line: --overwrite." if isinstance(err, StaleWorkDirError) else ""
        print(f"segqa audit: {err}{hint}", file=sys.stderr)
        return 2
    return 0


def _benchmark(args: argparse.Namespace) -> int:
    from lightning_segqa.experiments.benchmark import run_benchmark

    missing = [split for split in ("train", "val") if not (Path(args.data) / split / "images").is_dir()]
    if missing:
        print(
            f"segqa benchmark: CamVid not found at {args.data} "
            f"(no {' or '.join(m + '/images/' for m in missing)} there). "
            "Pass --data with the folder holding train/ and val/ (images/ and masks/ each); "
            "see docs/benchmark.md for where to get CamVid.",
            file=sys.stderr,
        )
        return 2
    try:
        run_benchmark(
            data_dir=args.data,
            out=args.out,
            models=args.models,
            errors=args.errors,
            encoder=args.encoder,
            epochs=args.epochs,
            size=(args.size[0], args.size[1]),
            batch_size=args.batch_size,
            device=args.device,
            seed=args.seed,
            augment=args.augment,
            tta=args.tta,
            encoder_weights=args.encoder_weights,
            markdown=args.markdown,
        )
    except (ValueError, FileNotFoundError) as err:
        print(f"segqa benchmark: {err}", file=sys.stderr)
        return 2
    return 0


def _gate(args: argparse.Namespace) -> int:
    from lightning_segqa.gate import evaluate_gate
    from lightning_segqa.report import LabelQualityReport

    try:
        report = LabelQualityReport.from_json(args.report)
        decision = evaluate_gate(report, args.method, args.threshold, args.max_suspect_fraction)
    except (ValueError, FileNotFoundError, TypeError) as err:
        print(f"segqa gate: {err}", file=sys.stderr)
        return 2
    print(decision.message, file=sys.stdout if decision.passed else sys.stderr)
    return 0 if decision.passed else 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
