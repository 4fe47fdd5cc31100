"""Why softmin costs about one read of the probabilities: gathering one class per pixel.

Softmin needs only ``s``, the probability of each pixel's annotated class. In a ``(B, K, H, W)``
tensor that value sits in another class plane from pixel to pixel. This script gathers ``s``
(``torch.gather`` along the class dimension, the same tensor as ``benchmarks/scoring.py``) for
label maps that touch the same number of 64-byte lines but hop between planes differently, and
times a plain ``preds.sum()`` beside them. A cold cache is forced before every call (a 256 MB
write).

Run: ``python benchmarks/gather_patterns.py`` (about 20 s).
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import torch

from benchmarks.scoring import make_inputs


def cold_ms(fn, flush: torch.Tensor, repeats: int = 9) -> float:
    times = []
    for _ in range(repeats):
        flush.add_(1.0)
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e3


def main() -> None:
    inp = make_inputs(32, 19, 256, 256, seed=0, device=torch.device("cpu"), batch_size=8)
    b, k, h, w = inp.probs.shape
    npix = h * w
    flat = inp.probs.view(b, k, npix)
    out = torch.empty(b, 1, npix)
    flush = torch.ones(64 << 20)
    g = torch.Generator().manual_seed(0)

    def runs(length: int) -> torch.Tensor:  # a random class per run of `length` pixels
        return torch.randint(0, k, (b, npix // length), generator=g).repeat_interleave(length, 1)

    blocks = torch.arange(npix // 16)
    patterns = {
        "every label 0 (one plane)": torch.zeros(b, npix, dtype=torch.long),
        "2 classes, alternating every 16 px": (blocks % 2).repeat_interleave(16).expand(b, npix).contiguous(),
        "19 classes, cycling every 16 px": (blocks % k).repeat_interleave(16).expand(b, npix).contiguous(),
        "random class per 16 px": runs(16),
        "random class per 64 px": runs(64),
        "random class per 256 px": runs(256),
        "random class per pixel": torch.randint(0, k, (b, npix), generator=g),
        "the scoring benchmark's labels": inp.target.view(b, npix),
    }
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {b} x {k} x {h} x {w} float32")
    print(f"{'label map':<36} {'gather ms':>10}")
    for name, labels in patterns.items():
        index = labels.unsqueeze(1)
        print(f"{name:<36} {cold_ms(lambda index=index: torch.gather(flat, 1, index, out=out), flush):>10.2f}")
    print(f"{'preds.sum() (reads everything)':<36} {cold_ms(inp.probs.sum, flush):>10.2f}")


if __name__ == "__main__":
    main()
