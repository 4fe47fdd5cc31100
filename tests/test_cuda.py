"""The scores on a GPU against the same scores on CPU (skipped without CUDA).

On a machine with a GPU the whole suite runs as on CPU; these tests add the device itself:
every method of the metric, eager and compiled (Triton), at full and at working resolution,
must give the CPU's answers. Run them with ``python -m pytest -q tests/test_cuda.py``.
"""

from __future__ import annotations

import pytest
import torch

from lightning_segqa import LabelQuality
from lightning_segqa import functional as F
from lightning_segqa.functional import fused, kernels
from lightning_segqa.functional._inputs import prepare_inputs
from lightning_segqa.functional.pixel import PixelPass
from lightning_segqa.functional.pooling import majority_labels
from lightning_segqa.image_ids import mask_fingerprint
from tests.test_functional import random_case

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA (a GPU machine)")

# per-image scores that count pixels: equal on both devices; the others to float rounding
COUNTS = ("correctly_classified_pixels", "iou", "connected_components", "confident_learning_counts")


def _report(probs, target, device, **options):
    metric = LabelQuality(probs.shape[1], **options).to(device)
    for start in range(0, len(probs), 4):
        stop = start + 4
        idx = torch.arange(start, min(stop, len(probs)), device=device)
        metric.update(probs[start:stop].to(device), target[start:stop].to(device), indexes=idx)
    return metric.compute()


@pytest.mark.parametrize("compile", [False, True])
@pytest.mark.parametrize("downsample", [1, 4])
@pytest.mark.parametrize("ignore", [False, True])
def test_every_method_on_the_gpu_equals_cpu(compile, downsample, ignore):
    probs, target = random_case(21, n=8, k=6, h=32, w=40)
    if ignore:
        target[:, :3] = 255
    options = {"downsample": downsample, "ignore_index": 255 if ignore else None}
    cpu = _report(probs, target, "cpu", compile=False, **options)
    gpu = _report(probs, target, "cuda", compile=compile, **options)
    assert gpu.indexes.tolist() == cpu.indexes.tolist()
    for method, score in cpu.scores.items():
        other = gpu.scores[method].cpu()
        if method in COUNTS:
            torch.testing.assert_close(other.double(), score.double(), atol=1e-6, rtol=0)
        else:
            torch.testing.assert_close(other.double(), score.double(), atol=1e-5, rtol=1e-5)


def test_find_label_issues_on_the_gpu_equals_cpu():
    probs, target = random_case(22, n=6, k=5, h=24, w=24)
    for compile in (False, True):
        mask = F.find_label_issues(probs.cuda(), target.cuda(), downsample=1, compile=compile)
        assert torch.equal(mask.cpu(), F.find_label_issues(probs, target, downsample=1, compile=False))


def test_compiled_pooling_vote_and_fingerprint_on_the_gpu():
    probs, target = random_case(23, n=4, k=5, h=16, w=24)
    out = fused.pool_vote(probs.cuda(), target.cuda(), 4)
    assert out is not None and out[1] is not None
    torch.testing.assert_close(out[0].cpu(), kernels._pool_vote(probs, target, 4, False)[0])
    assert torch.equal(out[1].cpu(), majority_labels(target, None, 4, 5))
    pp = PixelPass(prepare_inputs(probs.cuda(), target.cuda()), compile=True)
    assert pp.fingerprint is not None
    assert torch.equal(pp.fingerprint.cpu(), mask_fingerprint(target))
