"""Scoring speed and memory: lightning-segqa against cleanlab on the same synthetic inputs.

Measured side by side, repeats interleaved (a new seeded random order every repeat), median reported:

1. ``sum``          ``preds.sum()``: a read-bandwidth reference over the same tensor
2. ``cl_softmin``   ``cleanlab.segmentation.rank.get_label_quality_scores(method="softmin")``
3. ``cl_issues``    ``cleanlab.segmentation.filter.find_label_issues(downsample=1, n_jobs=1)``
4. ``softmin``      ``lightning_segqa.functional.softmin``
5. ``local``        ``local_scores(prepare_inputs(...))``: softmin, CIL, CCP, IoU in one pass
6. ``cl_ours``      ``lightning_segqa.functional.find_label_issues(downsample=1)``
                    (its mask is checked against cleanlab's)
7. ``label_quality`` ``LabelQuality`` with all seven methods (downsample 4), batches of 8

Items 4-7 run twice: with the eager kernels (the default) and with ``compile=True`` (the
compiled one-pass kernels of ``lightning_segqa.functional.fused``, and on CPU the C kernel of
``lightning_segqa.functional.native`` for the softmin; rows marked "compile"). The softmin runs a
third time with ``compile=True`` and the C kernel switched off (``LIGHTNING_SEGQA_NATIVE=0``):
the inductor kernel, which serves on GPU.
Compiling happens in the warm-up, on two images and then on the full input (the kernels are
compiled with dynamic shapes; the second call checks no timed call compiles), and is timed
separately; ``--no-compile`` skips those rows.

Peak memory: on CPU every item runs once more in a fresh subprocess that rebuilds the same
inputs, resets the kernel's resident-set high-water mark (``/proc/self/clear_refs``) and reports
``VmHWM`` minus the resident size just before the call (see ``MEMORY_METHOD``). cleanlab items
also report ``tracemalloc``'s peak (numpy's allocations). On CUDA, our items report
``torch.cuda.max_memory_allocated`` over the call; cleanlab runs on the host (tracemalloc).

Run: ``python benchmarks/scoring.py`` (``--quick`` for a smoke run, ``--help`` for options).
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import random
import re
import statistics
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run from a checkout without installing
    sys.path.insert(0, str(ROOT))

import numpy as np
import torch
import torch.nn.functional as F

EAGER_ITEMS = ("sum", "cl_softmin", "cl_issues", "softmin", "local", "cl_ours", "together", "label_quality")
COMPILED_ITEMS = ("softmin_c", "softmin_ci", "local_c", "together_c", "label_quality_c")
ITEM_ORDER = EAGER_ITEMS + COMPILED_ITEMS
CLEANLAB_ITEMS = ("cl_softmin", "cl_issues")
LABELS = {
    "sum": "preds.sum() (bandwidth ref.)",
    "cl_softmin": "cleanlab softmin",
    "cl_issues": "cleanlab find_label_issues ds=1",
    "softmin": "ours softmin",
    "local": "ours local_scores (1 pass)",
    "cl_ours": "ours find_label_issues ds=1",
    "together": "ours local + CL, one shared pass",
    "label_quality": "ours LabelQuality 7 methods ds=4",
    "combo_cl": "cleanlab softmin + find_label_issues",
    "combo_ours": "ours local + CL (one shared pass)",
    "softmin_c": "ours softmin, compile",
    "softmin_ci": "ours softmin, compile, no C kernel",
    "local_c": "ours local_scores (1 pass), compile",
    "together_c": "ours local + CL, compile",
    "label_quality_c": "ours LabelQuality 7 methods, compile",
    "combo_ours_c": "ours local + CL, compile",
}
MEMORY_METHOD = {
    "cpu": (
        "peak RSS: VmHWM - VmRSS before the call, in a fresh subprocess per item, high-water mark "
        "reset through /proc/self/clear_refs (all allocations: torch, numpy, allocator). "
        "resource.getrusage(...).ru_maxrss is NOT used: a child started from this process "
        "inherits the parent's high-water mark through vfork/exec (measured: 1171 MB reported "
        "by a child that itself peaked at 14 MB). tm = tracemalloc peak of numpy allocations."
    ),
    "cuda": (
        "ours: torch.cuda.max_memory_allocated() - memory_allocated() before the call; "
        "cleanlab (host, numpy): tracemalloc peak."
    ),
}


# --------------------------------------------------------------------------------------------
# inputs


@dataclass
class Inputs:
    probs: torch.Tensor  # (N, K, H, W) float32 on the device
    target: torch.Tensor  # (N, H, W) int64 on the device
    probs_np: np.ndarray  # host copies (views on CPU) for cleanlab
    labels_np: np.ndarray
    device: torch.device
    batch_size: int
    extra: dict = field(default_factory=dict)

    @property
    def n(self) -> int:
        return self.probs.shape[0]


def make_inputs(n: int, k: int, h: int, w: int, seed: int, device: torch.device, batch_size: int) -> Inputs:
    """Synthetic softmax outputs and noisy masks, generated one image at a time (low peak memory).

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
            t[y0 : y0 + max(1, h // 3), x0 : x0 + max(1, w // 3)] = (
                t[y0 : y0 + max(1, h // 3), x0 : x0 + max(1, w // 3)] + 1 + i % (k - 1)
            ) % k
        target[i] = t
        del coarse, logits, p
    probs_np, labels_np = probs.numpy(), target.numpy()  # views, no copy
    if device.type != "cpu":
        probs, target = probs.to(device), target.to(device)
    return Inputs(probs, target, probs_np, labels_np, device, batch_size)


def _slice(inp: Inputs, m: int) -> Inputs:
    return Inputs(inp.probs[:m], inp.target[:m], inp.probs_np[:m], inp.labels_np[:m], inp.device, inp.batch_size)


# --------------------------------------------------------------------------------------------
# the measured items (each returns its result, kept alive until the clock stops)


def _item_sum(inp: Inputs):
    return inp.probs.sum()


def _item_cl_softmin(inp: Inputs):
    from cleanlab.segmentation.rank import get_label_quality_scores

    return get_label_quality_scores(inp.labels_np, inp.probs_np, method="softmin", verbose=False)


def _item_cl_issues(inp: Inputs):
    from cleanlab.segmentation.filter import find_label_issues

    return find_label_issues(inp.labels_np, inp.probs_np, downsample=1, n_jobs=1, verbose=False)


def _item_softmin(inp: Inputs, compile: bool = False):
    from lightning_segqa.functional import softmin

    return softmin(inp.probs, inp.target, input_format="probs", validate_args=False, compile=compile)


def _item_softmin_inductor(inp: Inputs):
    """``softmin(compile=True)`` with the C kernel switched off: the inductor kernel, as on GPU."""
    from lightning_segqa.functional import native

    before = os.environ.get(native.ENV_SWITCH)
    os.environ[native.ENV_SWITCH] = "0"
    try:
        return _item_softmin(inp, compile=True)
    finally:
        if before is None:
            del os.environ[native.ENV_SWITCH]
        else:
            os.environ[native.ENV_SWITCH] = before


def _item_local(inp: Inputs, compile: bool = False):
    from lightning_segqa.functional._inputs import prepare_inputs
    from lightning_segqa.functional.local import local_scores

    prepared = prepare_inputs(inp.probs, inp.target, input_format="probs", validate_args=False, compile=compile)
    return local_scores(prepared, 0.1)


def _item_cl_ours(inp: Inputs):
    from lightning_segqa.functional import find_label_issues

    return find_label_issues(inp.probs, inp.target, downsample=1, input_format="probs", validate_args=False)


def _item_together(inp: Inputs, compile: bool = False):
    from lightning_segqa.functional.confident import local_scores_and_issues

    return local_scores_and_issues(inp.probs, inp.target, input_format="probs", validate_args=False, compile=compile)


def _item_label_quality(inp: Inputs, compile: bool = False):
    from lightning_segqa import LabelQuality

    metric = LabelQuality(
        num_classes=inp.probs.shape[1], input_format="probs", validate_args=False, compile=compile
    ).to(inp.device)
    b = inp.batch_size
    for start in range(0, inp.n, b):
        stop = min(start + b, inp.n)
        metric.update(
            inp.probs[start:stop], inp.target[start:stop], indexes=torch.arange(start, stop, device=inp.device)
        )
    return metric.compute()


ITEMS: dict[str, Callable] = {
    "sum": _item_sum,
    "cl_softmin": _item_cl_softmin,
    "cl_issues": _item_cl_issues,
    "softmin": _item_softmin,
    "local": _item_local,
    "cl_ours": _item_cl_ours,
    "together": _item_together,
    "label_quality": _item_label_quality,
    "softmin_c": lambda inp: _item_softmin(inp, compile=True),
    "softmin_ci": _item_softmin_inductor,
    "local_c": lambda inp: _item_local(inp, compile=True),
    "together_c": lambda inp: _item_together(inp, compile=True),
    "label_quality_c": lambda inp: _item_label_quality(inp, compile=True),
}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(name: str, inp: Inputs) -> tuple[float, object]:
    _sync(inp.device)
    t0 = time.perf_counter()
    out = ITEMS[name](inp)
    _sync(inp.device)
    return time.perf_counter() - t0, out


# --------------------------------------------------------------------------------------------
# memory


def _status_mb(key: str) -> float:
    with open("/proc/self/status") as f:
        return int(re.search(rf"^{key}:\s+(\d+) kB", f.read(), re.M).group(1)) / 1024


def _reset_hwm() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _tracemalloc_peak(name: str, inp: Inputs) -> float:
    gc.collect()
    tracemalloc.start()
    out = ITEMS[name](inp)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    del out
    return peak / 2**20


def memory_child(name: str, args: argparse.Namespace) -> dict:
    """Run inside the per-item subprocess: peak resident memory of one call of ``name``."""
    size = args.sizes[0]
    inp = make_inputs(args.n, args.k, size, size, args.seed, torch.device("cpu"), args.batch_size)
    ITEMS[name](_slice(inp, min(2, inp.n)))  # imports, code paths, thread pools
    if name in COMPILED_ITEMS:
        ITEMS[name](inp)  # the full shape too, as in the timed run
    gc.collect()
    base = _status_mb("VmRSS")
    if not _reset_hwm():
        return {"rss_mb": None, "note": "/proc/self/clear_refs not writable"}
    out = ITEMS[name](inp)
    peak = _status_mb("VmHWM")
    del out
    res = {"rss_mb": peak - base}
    if name in CLEANLAB_ITEMS:
        res["tm_mb"] = _tracemalloc_peak(name, inp)
    return res


def memory_cpu(name: str, size: int, args: argparse.Namespace) -> dict:
    cmd = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--_memory-child",
        name,
        "--sizes",
        str(size),
        "--n",
        str(args.n),
        "--k",
        str(args.k),
        "--seed",
        str(args.seed),
        "--batch-size",
        str(args.batch_size),
    ]
    if args.threads:
        cmd += ["--threads", str(args.threads)]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        return {"rss_mb": None, "note": f"child failed: {proc.stderr.strip()[-300:]}"}
    return json.loads(lines[-1])


def memory_cuda(name: str, inp: Inputs) -> dict:
    if name in CLEANLAB_ITEMS:
        return {"tm_mb": _tracemalloc_peak(name, inp)}
    gc.collect()
    torch.cuda.synchronize(inp.device)
    torch.cuda.reset_peak_memory_stats(inp.device)
    base = torch.cuda.memory_allocated(inp.device)
    out = ITEMS[name](inp)
    torch.cuda.synchronize(inp.device)
    peak = torch.cuda.max_memory_allocated(inp.device)
    del out
    return {"cuda_mb": (peak - base) / 2**20}


def _fmt_mem(m: dict | None) -> str:
    if not m:
        return "-"
    parts = []
    for key, label in (("rss_mb", "rss"), ("cuda_mb", "cuda"), ("tm_mb", "tm")):
        if m.get(key) is not None:
            parts.append(f"{label} {m[key]:.0f}")
    return ", ".join(parts) if parts else "n/a"


# --------------------------------------------------------------------------------------------
# one size


def _load() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "?"


def run_size(size: int, args: argparse.Namespace, device: torch.device) -> dict:
    n, k = args.n, args.k
    t0 = time.perf_counter()
    inp = make_inputs(n, k, size, size, args.seed, device, args.batch_size)
    gen_s = time.perf_counter() - t0
    pixels = n * size * size
    nbytes = n * k * size * size * 4
    print(
        f"\n=== {n} x {k} x {size} x {size} float32 ({nbytes / 2**20:.0f} MiB of probabilities), "
        f"inputs built in {gen_s:.1f} s, load average {_load()} ===",
        flush=True,
    )

    items = _items(args)
    # warm-up on two images: code paths, thread pools, CUDA kernels; compiled items also on the
    # full input, so no timed call compiles
    small = _slice(inp, min(2, n))
    compile_s = 0.0
    for name in items:
        dt, _ = timed(name, small)
        if name in COMPILED_ITEMS:
            compile_s += dt + timed(name, inp)[0]
    if any(name in COMPILED_ITEMS for name in items):
        print(f"  compile=True warm-up (compiling, not timed): {compile_s:.1f} s", flush=True)

    cl_rep = args.cleanlab_repeats if args.cleanlab_repeats is not None else args.repeats
    times: dict[str, list[float]] = {name: [] for name in items}
    outputs: dict[str, object] = {}
    for r in range(args.repeats):
        # a new random order every repeat: in a rotation each item always follows the same
        # one, and an item that touched the same cache lines just before makes it look faster
        order = random.Random(f"{args.seed}:{size}:{r}").sample(items, len(items))
        for name in order:
            if name in CLEANLAB_ITEMS and len(times[name]) >= cl_rep:
                continue
            dt, out = timed(name, inp)
            times[name].append(dt)
            if name in ("cl_issues", "cl_ours", "together", "label_quality", "together_c"):
                outputs[name] = out
            del out
        print(f"  repeat {r + 1}/{args.repeats} done, load average {_load()}", flush=True)
    med = {name: statistics.median(v) for name, v in times.items()}

    ours_mask = outputs["cl_ours"].cpu().numpy()
    cl_mask = outputs["cl_issues"]
    flags = {
        "equal": bool(
            ours_mask.shape == cl_mask.shape
            and (ours_mask == cl_mask).all()
            and (outputs["together"][1].cpu().numpy() == cl_mask).all()
            and ("together_c" not in outputs or (outputs["together_c"][1].cpu().numpy() == cl_mask).all())
        ),
        "ours": int(ours_mask.sum()),
        "cleanlab": int(cl_mask.sum()),
        "differ": int((ours_mask != cl_mask).sum()) if ours_mask.shape == cl_mask.shape else -1,
        "label_quality_cl_num_issues": int(outputs["label_quality"].details["cl_num_issues"]),
    }
    del outputs, ours_mask, cl_mask

    memory: dict[str, dict] = {}
    if not args.no_memory:
        if device.type == "cuda":
            for name in items:
                memory[name] = memory_cuda(name, inp)
            del inp
        else:
            del inp, small
            gc.collect()
            for name in items:
                memory[name] = memory_cpu(name, size, args)
                print(f"  memory {name}: {_fmt_mem(memory[name])} MB", flush=True)
    return {
        "size": size,
        "pixels": pixels,
        "bytes": nbytes,
        "median_s": med,
        "times_s": times,
        "flags": flags,
        "memory": memory,
        "compile_s": compile_s,
    }


def _items(args: argparse.Namespace) -> tuple[str, ...]:
    return EAGER_ITEMS if args.no_compile else ITEM_ORDER


# --------------------------------------------------------------------------------------------
# report


def _targets(res: dict) -> list[tuple[str, float, float, bool]]:
    med = res["median_s"]
    sum_gbs = res["bytes"] / med["sum"] / 1e9
    eq = res["flags"]["equal"]
    out = []
    for suffix, how in (("", "eager"), ("_c", "compile=True")):
        if "softmin" + suffix not in med:
            continue
        local_share = res["bytes"] / med["local" + suffix] / 1e9 / sum_gbs
        softmin_x = med["cl_softmin"] / med["softmin" + suffix]
        combo_x = (med["cl_softmin"] + med["cl_issues"]) / med["together" + suffix]
        out += [
            (f"[{how}] our softmin vs cleanlab softmin (speed-up)", softmin_x, 5.0, softmin_x >= 5.0),
            (
                f"[{how}] our local_scores + find_label_issues vs cleanlab softmin + find_label_issues "
                f"(speed-up; flags equal: {eq})",
                combo_x,
                10.0,
                combo_x >= 10.0 and eq,
            ),
            (
                f"[{how}] local_scores single pass, share of the preds.sum() bandwidth",
                local_share,
                0.30,
                local_share >= 0.30,
            ),
        ]
    return out


def print_report(results: list[dict], args: argparse.Namespace, device: torch.device) -> None:
    cl_rep = args.cleanlab_repeats if args.cleanlab_repeats is not None else args.repeats
    print("\n## Results")
    print(
        f"N={args.n}, K={args.k}, device={device}, torch threads={torch.get_num_threads()}, "
        f"repeats={args.repeats} (cleanlab: {cl_rep}), median of interleaved repeats"
    )
    print(f"memory method: {MEMORY_METHOD[device.type]}")
    head = (
        f"{'size':>5} {'item':<38} {'median ms':>10} {'ns/px':>8} {'vs cl softmin':>13} "
        f"{'GB/s':>7} {'% of sum':>8} {'peak MB':>16}"
    )
    print(head)
    print("-" * len(head))
    for res in results:
        med, size = res["median_s"], res["size"]
        sum_gbs = res["bytes"] / med["sum"] / 1e9
        rows = [(name, med[name], res["memory"].get(name)) for name in ITEM_ORDER if name in med]
        rows += [("combo_cl", med["cl_softmin"] + med["cl_issues"], None), ("combo_ours", med["together"], None)]
        if "together_c" in med:
            rows.append(("combo_ours_c", med["together_c"], None))
        for name, t, mem in rows:
            ns = t / res["pixels"] * 1e9
            if name.startswith("combo_ours"):
                ratio = f"{(med['cl_softmin'] + med['cl_issues']) / t:.2f}x c"
            elif name == "combo_cl":
                ratio = "1.00x c"
            else:
                ratio = f"{med['cl_softmin'] / t:.2f}x"
            gbs = res["bytes"] / t / 1e9
            share = f"{gbs / sum_gbs * 100:.1f}%"
            print(
                f"{size:>5} {LABELS[name]:<38} {t * 1e3:>10.1f} {ns:>8.1f} {ratio:>13} "
                f"{gbs:>7.2f} {share:>8} {_fmt_mem(mem):>16}"
            )
        fl = res["flags"]
        print(
            f"{size:>5} flags equal: {fl['equal']} (ours {fl['ours']}, "
            f"cleanlab {fl['cleanlab']}, {fl['differ']} pixels differ); "
            f"LabelQuality cl_num_issues at downsample 4: {fl['label_quality_cl_num_issues']}"
        )
        if "softmin_c" in med:
            print(f"{size:>5} compile=True: kernels compiled in the warm-up in {res['compile_s']:.1f} s (not timed)")
        print("-" * len(head))
    print(
        "'vs cl softmin': cleanlab softmin time / item time (higher = faster than cleanlab); "
        "'x c' rows compare the two combinations.\n'GB/s': N*K*H*W*4 bytes / time; "
        "'% of sum': that against the preds.sum() reference of the same size."
    )
    print("\n## Targets")
    for res in results:
        for text, value, target, ok in _targets(res):
            shown = (
                f"{value * 100:.1f}% (target >= {target * 100:.0f}%)"
                if target < 1
                else f"{value:.2f}x (target >= {target:.0f}x)"
            )
            print(f"[{res['size']}] {'PASS' if ok else 'MISS'}  {text}: {shown}")


# --------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    p.add_argument("--sizes", type=int, nargs="+", default=[256, 512], help="image sides H = W")
    p.add_argument("--n", type=int, default=32, help="images")
    p.add_argument("--k", type=int, default=19, help="classes")
    p.add_argument("--repeats", type=int, default=3, help="timed repeats per item (median)")
    p.add_argument(
        "--cleanlab-repeats", type=int, default=None, help="repeats for the cleanlab items (default: --repeats)"
    )
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's own choice)")
    p.add_argument("--batch-size", type=int, default=8, help="LabelQuality update batch")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-memory", action="store_true", help="skip the peak-memory runs")
    p.add_argument("--no-compile", action="store_true", help="skip the compile=True rows")
    p.add_argument("--json", type=Path, default=None, help="also write raw results here")
    p.add_argument("--quick", action="store_true", help="smoke run: sizes 64, N=4, K=5, 2 repeats")
    p.add_argument("--_memory-child", dest="memory_child", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.quick:
        args.sizes, args.n, args.k, args.repeats = [64], 4, 5, 2
    if args.k < 2 or args.n < 1 or args.repeats < 1 or min(args.sizes) < 4:
        p.error("need --k >= 2, --n >= 1, --repeats >= 1 and sizes >= 4")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.memory_child:
        print(json.dumps(memory_child(args.memory_child, args)))
        return
    if args.device == "cuda" and not torch.cuda.is_available():
        sys.exit("--device cuda requested but torch.cuda.is_available() is False")
    device = torch.device(args.device)
    import cleanlab

    cpu = "?"
    with contextlib.suppress(OSError, AttributeError):
        info = Path("/proc/cpuinfo").read_text()
        cpu = re.search(r"^model name\s*:\s*(.*)$", info, re.M).group(1)
    print(
        f"lightning-segqa scoring benchmark: torch {torch.__version__}, cleanlab "
        f"{cleanlab.__version__}, numpy {np.__version__}, python {sys.version.split()[0]}"
    )
    print(
        f"CPU: {cpu}, {os.cpu_count()} logical cores, torch threads {torch.get_num_threads()}"
        + (f"; GPU: {torch.cuda.get_device_name(device)}" if device.type == "cuda" else "")
    )
    print("command: python " + " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]]))
    t0 = time.perf_counter()
    results = [run_size(size, args, device) for size in args.sizes]
    print_report(results, args, device)
    print(f"\ntotal wall time {time.perf_counter() - t0:.0f} s, load average now {_load()}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1, default=str))


if __name__ == "__main__":
    main()
