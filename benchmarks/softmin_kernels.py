"""What the compiled softmin kernel's options cost, side by side on the scoring benchmark's inputs.

Items (median of interleaved repeats, a new seeded random order every repeat, warm):

* ``C kernel``: ``native.label_sums``, the kernel ``softmin(compile=True)`` runs on CPU for
  float32 (``functional/label_sums.c``, built with the system C compiler), without the check
  of its out-of-range flag;
* ``C kernel, 5 % pixels ignored``: with an ignore mask (``valid``) that drops 5 % of the pixels;
* ``C kernel, no prefetch``: the same source built with ``-DAHEAD=0``;
* ``C kernel, prefetch first and last``: built with ``-DPREFETCH_FIRST_LAST`` (the planes of
  the first and the last of every 16 pixels, where the library prefetches at every change of
  label among them);
* ``inductor``: the compiled ``fused._label_sums``, the kernel ``softmin(compile=True)`` runs
  where the C kernel does not (GPU, float64, no C compiler, ``LIGHTNING_SEGQA_NATIVE=0``);
  labels clamped, inductor's bounds check of the indirect load off; called as the library
  calls it (``fused._run``); also with the ignore mask above;
* ``bounds check on``: the inductor kernel compiled with inductor's default
  ``assert_indirect_indexing=True``;
* ``all sizes dynamic``: the same kernel compiled with ``dynamic=True`` (the library's has
  only the batch size dynamic until an image size or class count changes);
* ``int64 count flag``: out-of-range labels counted per image (``(safe != target).sum(-1)``)
  instead of the library's ``bool`` max;
* ``cleanlab softmin`` and ``preds.sum()`` for scale.

Run: ``python benchmarks/softmin_kernels.py`` (``--size 512`` for the larger images; about 30 s).
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run from a checkout without installing
    sys.path.insert(0, str(ROOT))

import torch

from benchmarks.scoring import make_inputs
from lightning_segqa.functional import fused, native


def _label_sums_count(
    flat: torch.Tensor, target: torch.Tensor, valid: None, neg_inv_t: float
) -> tuple[torch.Tensor, ...]:
    """``fused._label_sums`` as it was before: the out-of-range labels counted in int64."""
    safe = target.clamp(0, flat.shape[1] - 1)
    s = torch.gather(flat, 1, safe.unsqueeze(1)).squeeze(1)
    w = torch.exp(s * neg_inv_t)
    return (w * s).sum(-1), w.sum(-1), s.sum(-1), (safe != target).sum(-1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=256, help="image side H = W")
    parser.add_argument("--repeats", type=int, default=21)
    args = parser.parse_args()
    from cleanlab.segmentation.rank import get_label_quality_scores

    inp = make_inputs(32, 19, args.size, args.size, seed=0, device=torch.device("cpu"), batch_size=8)
    b, k = inp.probs.shape[:2]
    flat, target = inp.probs.view(b, k, -1), inp.target.view(b, -1)
    checked = torch.compile(fused._label_sums, dynamic=True)  # inductor's default options
    all_dynamic = torch.compile(fused._label_sums, dynamic=True, options=fused._OPTIONS)
    count = torch.compile(_label_sums_count, dynamic=True, options=fused._OPTIONS)
    if native._kernel() is None:
        raise SystemExit(f"the C kernel cannot be built here: {native.status()}")
    no_prefetch = native._build(["-DAHEAD=0"])
    first_last = native._build(["-DPREFETCH_FIRST_LAST"])
    g = torch.Generator().manual_seed(1)
    valid = torch.rand(target.shape, generator=g) > 0.05  # 5 % of the pixels ignored
    masked_target = torch.where(valid, target, 0)

    def c_kernel(fn=None, masked=False):  # noqa: ANN001, ANN202 - the loaded kernel, or another build of it
        if fn is not None:
            native._STATE["fn"], fn = fn, native._STATE["fn"]
        try:
            if masked:
                return native.label_sums(flat, masked_target, valid, -10.0)
            return native.label_sums(flat, target, None, -10.0)
        finally:
            if fn is not None:
                native._STATE["fn"] = fn

    items = {
        "C kernel": c_kernel,
        "C kernel, 5 % pixels ignored": lambda: c_kernel(masked=True),
        "C kernel, no prefetch": lambda: c_kernel(no_prefetch),
        "C kernel, prefetch first and last": lambda: c_kernel(first_last),
        "inductor": lambda: fused._run("label_sums", flat, target, None, -10.0),
        "inductor, 5 % pixels ignored": lambda: fused._run("label_sums", flat, masked_target, valid, -10.0),
        "bounds check on": lambda: checked(flat, target, None, -10.0),
        "all sizes dynamic": lambda: all_dynamic(flat, target, None, -10.0),
        "int64 count flag": lambda: count(flat, target, None, -10.0),
        "cleanlab softmin": lambda: get_label_quality_scores(
            inp.labels_np, inp.probs_np, method="softmin", verbose=False
        ),
        "preds.sum()": inp.probs.sum,
    }
    with torch.no_grad():
        for fn in items.values():  # compile and warm up
            fn()
            fn()
        times: dict[str, list[float]] = {name: [] for name in items}
        names = list(items)
        for r in range(args.repeats):  # a random order: in a rotation each item follows the same one
            for name in random.Random(f"{args.size}:{r}").sample(names, len(names)):
                t0 = time.perf_counter()
                items[name]()
                times[name].append(time.perf_counter() - t0)
    med = {name: statistics.median(t) * 1e3 for name, t in times.items()}
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {b} x {k} x {args.size}^2 float32")
    print(f"{'item':<38} {'ms':>8} {'/ sum':>7} {'cleanlab /':>11}")
    for name, ms in med.items():
        print(f"{name:<38} {ms:8.2f} {ms / med['preds.sum()']:7.2f} {med['cleanlab softmin'] / ms:10.2f}x")


if __name__ == "__main__":
    main()
