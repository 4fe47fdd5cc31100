"""Scoring speed: lightning-segqa with its defaults against cleanlab, side by side in one run.

Every item runs on the same synthetic inputs; repeats are interleaved (a new seeded random
order every repeat, so no item always follows the same one) and the median is reported.
The default rows come first: what a user gets without setting any option.

Default rows:

* ``preds.sum()``: a read-bandwidth reference over the same tensor;
* cleanlab ``get_label_quality_scores(method="softmin")`` and ``softmin(preds, target)``;
* cleanlab ``find_label_issues(downsample=1, n_jobs=1)`` and ours (``find_label_issues(preds,
  target, downsample=1)``; the masks must be equal pixel for pixel);
* ``LabelQuality(num_classes, methods=[softmin, CIL, CCP, IoU, confident learning],
  downsample=1)``, batches of ``--batch-size``, update + compute: its per-image confident-learning
  flags must equal cleanlab's (compared with cleanlab softmin + ``find_label_issues``);
* the same metric at its default ``downsample=4``, against cleanlab softmin +
  ``find_label_issues(downsample=4)`` (its flags differ by design there: cleanlab rounds the
  mean label id of each block, the paper takes the majority label), and ``LabelQuality(num_classes)``
  with all seven methods.

Option rows: ``compile=False`` (the eager kernels), and the softmin with its checks off
(``input_format="probs", validate_args=False``).

Every call checks its inputs as the defaults do (NaN/inf, labels, sums), in the same pass as
the scores where the compiled kernels serve. Compiling happens in the warm-up (timed apart).

Run: ``python benchmarks/scoring.py`` (``--quick`` for a smoke run, ``--help`` for options).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import re
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run from a checkout without installing
    sys.path.insert(0, str(ROOT))

import numpy as np
import torch
import torch.nn.functional as F

FIVE = ["softmin", "confidence_in_label", "correctly_classified_pixels", "iou", "confident_learning_counts"]
DEFAULT_ITEMS = (
    "sum", "cl_softmin", "softmin", "cl_issues", "issues", "metric_ds1", "cl_issues_ds4", "metric", "metric_all",
)  # fmt: skip
OPTION_ITEMS = ("softmin_eager", "softmin_unchecked", "metric_ds1_eager")
CLEANLAB_ITEMS = ("cl_softmin", "cl_issues")
LABELS = {
    "sum": "preds.sum() (read-bandwidth reference)",
    "cl_softmin": "cleanlab softmin",
    "softmin": "softmin(preds, target)",
    "cl_issues": "cleanlab find_label_issues ds=1",
    "cl_issues_ds4": "cleanlab find_label_issues ds=4",
    "issues": "find_label_issues(preds, target, downsample=1)",
    "metric_ds1": "LabelQuality 5 methods, downsample=1",
    "metric": "LabelQuality 5 methods (downsample=4)",
    "metric_all": "LabelQuality(num_classes), all 7 methods",
    "softmin_eager": "softmin, compile=False",
    "softmin_unchecked": "softmin, probs, validate_args=False",
    "metric_ds1_eager": "LabelQuality 5 methods ds=1, compile=False",
    "combo_cl": "cleanlab softmin + find_label_issues",
    "combo_cl4": "cleanlab softmin + find_label_issues ds=4",
}


@dataclass
class Inputs:
    probs: torch.Tensor  # (N, K, H, W) float32
    target: torch.Tensor  # (N, H, W) int64
    probs_np: np.ndarray  # host views for cleanlab
    labels_np: np.ndarray
    batch_size: int


def make_inputs(n: int, k: int, h: int, w: int, seed: int, device: torch.device, batch_size: int) -> Inputs:
    """Synthetic softmax outputs and noisy masks, one image at a time.

    Logits are random on a grid 16x coarser than the image, bilinearly upsampled (smooth
    regions) plus a little pixel noise, then softmaxed. Labels are the argmax, with 2 % of the
    pixels set to a random class and, in every fourth image, a rectangle relabelled to another
    class (a "wrong mask").
    """
    g = torch.Generator().manual_seed(seed)
    probs = torch.empty(n, k, h, w, dtype=torch.float32)
    target = torch.empty(n, h, w, dtype=torch.int64)
    for i in range(n):
        coarse = torch.randn(1, k, max(2, h // 16), max(2, w // 16), generator=g) * 4.0
        logits = F.interpolate(coarse, size=(h, w), mode="bilinear", align_corners=False)[0]
        logits += 0.3 * torch.randn(k, h, w, generator=g)
        p = logits.softmax(0)
        probs[i] = p
        t = p.max(0).indices
        flip = torch.rand(h, w, generator=g) < 0.02
        t = torch.where(flip, torch.randint(0, k, (h, w), generator=g), t)
        if i % 4 == 0:
            y0, x0 = (int(v) for v in torch.randint(0, max(1, h // 2), (2,), generator=g))
            box = (slice(y0, y0 + max(1, h // 3)), slice(x0, x0 + max(1, w // 3)))
            t[box] = (t[box] + 1 + i % (k - 1)) % k
        target[i] = t
    probs_np, labels_np = probs.numpy(), target.numpy()  # views, no copy
    return Inputs(probs.to(device), target.to(device), probs_np, labels_np, batch_size)


def _cl_softmin(inp: Inputs):
    from cleanlab.segmentation.rank import get_label_quality_scores

    return get_label_quality_scores(inp.labels_np, inp.probs_np, method="softmin", verbose=False)


def _cl_issues(inp: Inputs, downsample: int = 1):
    from cleanlab.segmentation.filter import find_label_issues

    return find_label_issues(inp.labels_np, inp.probs_np, downsample=downsample, n_jobs=1, verbose=False)


def _softmin(inp: Inputs, **options):
    from lightning_segqa.functional import softmin

    return softmin(inp.probs, inp.target, **options)


def _issues(inp: Inputs):
    from lightning_segqa.functional import find_label_issues

    return find_label_issues(inp.probs, inp.target, downsample=1)


def _metric(inp: Inputs, **options):
    from lightning_segqa import LabelQuality

    metric = LabelQuality(num_classes=inp.probs.shape[1], **options).to(inp.probs.device)
    b, n = inp.batch_size, inp.probs.shape[0]
    for start in range(0, n, b):
        stop = min(start + b, n)
        indexes = torch.arange(start, stop, device=inp.probs.device)
        metric.update(inp.probs[start:stop], inp.target[start:stop], indexes=indexes)
    return metric.compute()


ITEMS: dict[str, Callable] = {
    "sum": lambda inp: inp.probs.sum(),
    "cl_softmin": _cl_softmin,
    "softmin": _softmin,
    "cl_issues": _cl_issues,
    "cl_issues_ds4": lambda inp: _cl_issues(inp, downsample=4),
    "issues": _issues,
    "metric_ds1": lambda inp: _metric(inp, methods=FIVE, downsample=1),
    "metric": lambda inp: _metric(inp, methods=FIVE),
    "metric_all": _metric,
    "softmin_eager": lambda inp: _softmin(inp, compile=False),
    "softmin_unchecked": lambda inp: _softmin(inp, input_format="probs", validate_args=False),
    "metric_ds1_eager": lambda inp: _metric(inp, methods=FIVE, downsample=1, compile=False),
}


def timed(name: str, inp: Inputs) -> tuple[float, object]:
    if inp.probs.is_cuda:
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    out = ITEMS[name](inp)
    if inp.probs.is_cuda:
        torch.cuda.synchronize()
    return time.perf_counter() - t0, out


def _load() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "?"


def _flags(outputs: dict[str, object], inp: Inputs) -> dict[str, object]:
    """Our confident-learning flags against cleanlab's: the functional mask and the metric's counts."""
    cl_mask = outputs["cl_issues"]
    ours_mask = outputs["issues"].cpu().numpy()
    report = outputs["metric_ds1"]
    npix = inp.target[0].numel()
    per_image = ((1 - report.scores["confident_learning_counts"].double()) * npix).round().long().numpy()
    return {
        "mask_equal": bool(ours_mask.shape == cl_mask.shape and (ours_mask == cl_mask).all()),
        "metric_counts_equal": bool((per_image == cl_mask.reshape(len(cl_mask), -1).sum(1)).all()),
        "flagged": int(cl_mask.sum()),
    }


def run_size(size: int, args: argparse.Namespace, device: torch.device) -> dict:
    inp = make_inputs(args.n, args.k, size, size, args.seed, device, args.batch_size)
    nbytes = inp.probs.numel() * 4
    print(f"\n=== {args.n} x {args.k} x {size} x {size} float32, load average {_load()} ===", flush=True)
    items = DEFAULT_ITEMS + (() if args.defaults_only else OPTION_ITEMS)
    t0 = time.perf_counter()
    for name in items:  # warm-up: imports, thread pools, compiling (twice: no timed call compiles)
        if name not in CLEANLAB_ITEMS:
            timed(name, inp)
            timed(name, inp)
    warmup_s = time.perf_counter() - t0
    print(f"  warm-up (compiling included) {warmup_s:.1f} s", flush=True)
    times: dict[str, list[float]] = {name: [] for name in items}
    outputs: dict[str, object] = {}
    for r in range(args.repeats):
        for name in random.Random(f"{args.seed}:{size}:{r}").sample(items, len(items)):
            dt, out = timed(name, inp)
            times[name].append(dt)
            if name in ("cl_issues", "issues", "metric_ds1"):
                outputs[name] = out
            del out
        print(f"  repeat {r + 1}/{args.repeats}, load average {_load()}", flush=True)
    med = {name: statistics.median(v) for name, v in times.items()}
    med["combo_cl"] = med["cl_softmin"] + med["cl_issues"]
    if "cl_issues_ds4" in med:
        med["combo_cl4"] = med["cl_softmin"] + med["cl_issues_ds4"]
    return {"size": size, "bytes": nbytes, "median_s": med, "flags": _flags(outputs, inp), "warmup_s": warmup_s}


def targets(res: dict) -> list[tuple[str, float, float, bool]]:
    """The targets: default softmin >= 3x cleanlab's; the 5-method metric >= 10x, same flags at
    ``downsample=1``, and at its default ``downsample=4`` against cleanlab at 4 as well."""
    med, fl = res["median_s"], res["flags"]
    softmin_x = med["cl_softmin"] / med["softmin"]
    metric_x = med["combo_cl"] / med["metric_ds1"]
    same = fl["mask_equal"] and fl["metric_counts_equal"]
    rows = [
        ("softmin(preds, target) vs cleanlab softmin", softmin_x, 3.0, softmin_x >= 3.0),
        (
            f"LabelQuality 5 methods ds=1 vs cleanlab softmin + find_label_issues (same flags: {same})",
            metric_x,
            10.0,
            metric_x >= 10.0 and same,
        ),
    ]
    if "combo_cl4" in med:
        default_x = med["combo_cl4"] / med["metric"]
        label = "LabelQuality 5 methods, default downsample=4, vs cleanlab softmin + find_label_issues ds=4"
        rows.append((label, default_x, 10.0, default_x >= 10.0))
    return rows


def print_report(results: list[dict], args: argparse.Namespace) -> None:
    head = f"{'size':>5} {'item':<46} {'median ms':>10} {'vs cleanlab':>12} {'of a read':>10}"
    print("\n## Results (median of interleaved repeats)")
    print(head)
    print("-" * len(head))
    for res in results:
        med, size = res["median_s"], res["size"]
        for name in (*DEFAULT_ITEMS, "combo_cl", "combo_cl4", *OPTION_ITEMS):
            if name not in med:
                continue
            if name == OPTION_ITEMS[0]:
                print(f"{size:>5} {'--- options ---':<46}")
            t = med[name]
            if name.startswith("metric_ds1") or name == "combo_cl":
                ratio = f"{med['combo_cl'] / t:.2f}x c"
            elif name == "cl_issues_ds4":
                ratio = "-"
            elif name in ("metric", "combo_cl4") and "combo_cl4" in med:
                ratio = f"{med['combo_cl4'] / t:.2f}x c4"
            elif name in ("cl_issues", "issues"):
                ratio = f"{med['cl_issues'] / t:.2f}x i"
            else:
                ratio = f"{med['cl_softmin'] / t:.2f}x"
            print(f"{size:>5} {LABELS[name]:<46} {t * 1e3:>10.1f} {ratio:>12} {t / med['sum']:>9.2f}x")
        fl = res["flags"]
        print(
            f"{size:>5} flags: functional mask equal to cleanlab's: {fl['mask_equal']}; metric per-image "
            f"counts equal: {fl['metric_counts_equal']} ({fl['flagged']} pixels flagged)"
        )
        print("-" * len(head))
    print(
        "'vs cleanlab': cleanlab softmin time / item time; 'x c': cleanlab softmin + find_label_issues "
        "time / item time; 'x c4': the same at downsample=4; 'x i': cleanlab find_label_issues / item; "
        "'of a read': item time / preds.sum() time."
    )
    print("\n## Targets")
    for res in results:
        for text, value, target, ok in targets(res):
            print(f"[{res['size']}] {'PASS' if ok else 'MISS'}  {text}: {value:.2f}x (target >= {target:.0f}x)")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    p.add_argument("--sizes", type=int, nargs="+", default=[256], help="image sides H = W")
    p.add_argument("--n", type=int, default=16, help="images")
    p.add_argument("--k", type=int, default=19, help="classes")
    p.add_argument("--repeats", type=int, default=5, help="timed repeats per item (median)")
    p.add_argument("--batch-size", type=int, default=8, help="LabelQuality update batch")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's choice)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--defaults-only", action="store_true", help="skip the option rows")
    p.add_argument("--json", type=Path, default=None, help="also write raw results here")
    p.add_argument("--quick", action="store_true", help="smoke run: size 64, N=4, K=5, 2 repeats")
    args = p.parse_args(argv)
    if args.quick:
        args.sizes, args.n, args.k, args.repeats, args.batch_size = [64], 4, 5, 2, 2
    if args.k < 2 or args.n < 1 or args.repeats < 1 or min(args.sizes) < 4:
        p.error("need --k >= 2, --n >= 1, --repeats >= 1 and sizes >= 4")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.device == "cuda" and not torch.cuda.is_available():
        sys.exit("--device cuda requested but torch.cuda.is_available() is False")
    import cleanlab

    cpu = "?"
    with contextlib.suppress(OSError, AttributeError):
        cpu = re.search(r"^model name\s*:\s*(.*)$", Path("/proc/cpuinfo").read_text(), re.M).group(1)
    device = torch.device(args.device)
    print(
        f"torch {torch.__version__}, cleanlab {cleanlab.__version__}, numpy {np.__version__}, "
        f"python {sys.version.split()[0]}; CPU {cpu}, {os.cpu_count()} cores, torch threads "
        f"{torch.get_num_threads()}" + (f"; GPU {torch.cuda.get_device_name(device)}" if device.type == "cuda" else "")
    )
    print("command: python " + " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]]))
    t0 = time.perf_counter()
    results = [run_size(size, args, device) for size in args.sizes]
    print_report(results, args)
    print(f"\ntotal wall time {time.perf_counter() - t0:.0f} s, load average now {_load()}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1, default=str))


if __name__ == "__main__":
    main()
