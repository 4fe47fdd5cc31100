"""The ``segqa`` command line: ``demo``, ``audit``, ``benchmark`` and ``gate``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from lightning_segqa.models import ARCHITECTURES


def _training_args(p: argparse.ArgumentParser, epochs: int, folds: int) -> None:
    g = p.add_argument_group("training")
    g.add_argument("--arch", choices=ARCHITECTURES, default="fpn", help="model architecture (default: fpn)")
    g.add_argument(
        "--encoder",
        default="mobilenet_v2",
        help="segmentation-models-pytorch encoder, no pretrained weights (default: mobilenet_v2)",
    )
    g.add_argument("--decoder-channels", type=int, default=64, help="decoder width (default: 64; 0 = library default)")
    g.add_argument("--epochs", type=int, default=epochs, help=f"epochs per fold (default: {epochs})")
    g.add_argument("--folds", type=int, default=folds, help=f"cross-validation folds (default: {folds})")
    g.add_argument("--batch-size", type=int, default=16)
    g.add_argument("--lr", type=float, default=2e-3)
    g.add_argument("--device", default="auto", help="cpu, cuda, mps or auto (default)")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument(
        "--checkpoint",
        choices=("last", "best"),
        default="last",
        help="weights that score each held-out fold (default: last)",
    )
    g.add_argument("--no-progress", action="store_true", help="hide progress bars")


def _config(args: argparse.Namespace):  # noqa: ANN202
    from lightning_segqa.pipelines import TrainingConfig

    for name in ("epochs", "folds", "batch_size"):
        if getattr(args, name) < (2 if name == "folds" else 1):
            raise SystemExit(f"segqa: --{name.replace('_', '-')} must be at least {2 if name == 'folds' else 1}.")
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
    )


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``segqa``.

    Examples:
        >>> build_parser().parse_args(["gate", "r.json", "--max-suspect-fraction", "0.1"]).max_suspect_fraction
        0.1
    """
    parser = argparse.ArgumentParser(prog="segqa", description="Find the wrong masks in a segmentation dataset.")
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="end-to-end run on built-in street scenes with injected errors")
    demo.add_argument("--out", default="segqa_runs/demo", help="output folder (logs, checkpoints, report)")
    demo.add_argument("--images", type=int, default=120, help="number of scenes (default: 120)")
    demo.add_argument("--height", type=int, default=64)
    demo.add_argument("--width", type=int, default=96)
    demo.add_argument("--error", choices=("drop", "swap", "shift"), default="drop")
    demo.add_argument("--fraction", type=float, default=None, help="share of images with an error (paper default)")
    _training_args(demo, epochs=8, folds=3)

    audit = sub.add_parser("audit", help="audit a folder of images and masks with K-fold cross-validation")
    audit.add_argument("--images", required=True, help="folder of images")
    audit.add_argument("--masks", required=True, help="folder of masks (class ids), same file stems")
    audit.add_argument("--num-classes", type=int, required=True)
    audit.add_argument("--ignore-index", type=int, default=None)
    audit.add_argument("--class-names", default=None, help="file with one class name per line (or a JSON list)")
    audit.add_argument("--size", type=int, nargs=2, default=None, metavar=("H", "W"), help="resize to H W")
    audit.add_argument("--top-k", type=int, default=10)
    audit.add_argument("--out", default="segqa_runs/audit")
    _training_args(audit, epochs=10, folds=5)

    bench = sub.add_parser("benchmark", help="the paper's tables (AUROC, AUPRC, Lift) on CamVid")
    bench.add_argument("--data", default="../shared/data/camvid", help="CamVid folder with train/ and val/")
    bench.add_argument("--out", default="segqa_runs/benchmark")
    bench.add_argument("--models", nargs="+", default=["deeplabv3plus", "fpn"])
    bench.add_argument("--errors", nargs="+", default=["drop", "swap", "shift"])
    bench.add_argument("--encoder", default="resnet18")
    bench.add_argument("--epochs", type=int, default=4, help="default 4: all six runs in ~30 min on 2 CPU cores")
    bench.add_argument("--size", type=int, nargs=2, default=[96, 128], metavar=("H", "W"))
    bench.add_argument("--batch-size", type=int, default=8)
    bench.add_argument("--device", default="auto")
    bench.add_argument("--seed", type=int, default=0)
    bench.add_argument("--markdown", default=None, help="also write the tables to this Markdown file")

    gate = sub.add_parser("gate", help="exit non-zero when a report has too many suspect images (for CI)")
    gate.add_argument("report", help="label_quality.json written by the monitor, the demo or the audit")
    gate.add_argument("--max-suspect-fraction", type=float, required=True)
    gate.add_argument("--method", default="softmin")
    gate.add_argument("--threshold", type=float, default=0.1, help="score below which an image is a suspect")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``segqa``; returns the exit code."""
    args = build_parser().parse_args(argv)
    if args.command == "gate":
        return _gate(args)
    if args.command == "demo":
        from lightning_segqa.pipelines import run_demo

        run_demo(args.out, args.images, args.height, args.width, args.error, args.fraction, _config(args))
        return 0
    if args.command == "audit":
        from lightning_segqa.data import load_class_names
        from lightning_segqa.pipelines import run_audit

        names = load_class_names(args.class_names) if args.class_names else None
        try:
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
            print(f"segqa audit: {err}", file=sys.stderr)
            return 2
        return 0
    from lightning_segqa.benchmark import run_benchmark

    run_benchmark(args)
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
