"""Flip test-time augmentation at held-out scoring: exact per batch, any output shape."""

import json

import pytest
import torch
from lightning.pytorch import LightningModule

from lightning_segqa.tta import FlipTTA, check_tta, flip_batch
from tests.cv_helpers import make_cv, score_by_hand, small_dataset


class Probe(LightningModule):
    """Logits that depend on position, so a flip changes them."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 3, padding=1)

    def validation_step(self, batch, batch_idx):
        return self.conv(batch[0])


def test_flip_tta_averages_probabilities_flipped_back():
    torch.manual_seed(0)
    module = Probe()
    x = torch.rand(2, 3, 5, 7)
    mask = torch.zeros(2, 5, 7, dtype=torch.long)
    with torch.no_grad():
        plain, flipped = module.conv(x).softmax(1), module.conv(x.flip(-1)).softmax(1).flip(-1)
        up = module.conv(x.flip(-2)).softmax(1).flip(-2)
    tta = FlipTTA(["hflip"], extract=lambda out, batch: {"logits": out, "target": batch[1]})
    with tta.applied(module):  # a bare tensor output, read through the monitor's extract
        out = module.validation_step((x, mask, torch.arange(2)), 0)
    torch.testing.assert_close(out, (plain + flipped) / 2)
    both = FlipTTA(("hflip", "vflip"), extract=lambda out, batch: {"logits": out})
    with both.applied(module):
        out = module.validation_step((x, mask), 0)
    torch.testing.assert_close(out, (plain + flipped + up) / 3)
    assert "validation_step" not in vars(module)  # unwrapped afterwards


def test_flip_batch_flips_images_and_masks_only():
    batch = {"image": torch.rand(2, 3, 4, 5), "mask": torch.randint(0, 3, (2, 4, 5)), "index": torch.arange(2)}
    out = flip_batch(batch, -1)
    assert torch.equal(out["image"], batch["image"].flip(-1)) and torch.equal(out["mask"], batch["mask"].flip(-1))
    assert torch.equal(out["index"], batch["index"])
    with pytest.raises(ValueError, match="tta"):
        check_tta("rot90")


def test_cross_validation_with_flip_tta_equals_averaging_by_hand(tmp_path):
    dataset = small_dataset()
    report = make_cv(tmp_path, dataset, tta="hflip").run()
    folds = json.loads((tmp_path / "splits.json").read_text())["folds"]
    ckpts = [tmp_path / f"fold_{f}" / "checkpoints" / "last.ckpt" for f in range(2)]
    expected = score_by_hand(dataset, folds, ckpts, tta=True)
    plain = score_by_hand(dataset, folds, ckpts, tta=False)
    for m in report.methods:
        torch.testing.assert_close(report.scores[m], expected.scores[m], atol=1e-6, rtol=0)
    # (a 1-epoch model: flipping changes the scores by about 1e-4, far above the tolerance)
    assert (report.scores["confidence_in_label"] - plain.scores["confidence_in_label"]).abs().max() > 1e-5
