"""Suspect pictures mark the pixels the evidence says are wrong, and sit at the scalars' step.

References: brute-force loops, cleanlab's confident thresholds, and a synthetic batch where one
region was relabelled (the marks must be that region, and nearly nothing on clean images).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from lightning_segqa.experiments.synthetic import CAR, ROAD, STREET_CLASSES, make_street_scenes
from lightning_segqa.functional._inputs import prepare_inputs
from lightning_segqa.functional.class_confidence import (
    class_confidence_sums,
    class_thresholds,
    confident_mispredictions,
)
from lightning_segqa.metric import LabelQuality
from lightning_segqa.suspects import SuspectHeap
from lightning_segqa.visuals import (
    MARK_CONFIDENT,
    SuspectImage,
    default_palette,
    figure_to_array,
    heat_colours,
    mark_colour,
    render_suspect_figure,
    suspect_caption,
)
from lightning_segqa.visuals.pixel_maps import MARK_CANDIDATES, MARK_MIN_GAP, outline

K = len(STREET_CLASSES)


# ---------------------------------------------------------------- per-class self-confidence
def _brute_sums(probs: torch.Tensor, target: torch.Tensor, valid: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    b, k = probs.shape[:2]
    sums, counts = np.zeros((b, k)), np.zeros((b, k))
    for i in range(b):
        for y, x in np.ndindex(*target.shape[1:]):
            if valid[i, y, x]:
                c = int(target[i, y, x])
                sums[i, c] += float(probs[i, c, y, x])
                counts[i, c] += 1
    return sums, counts


@settings(max_examples=25, deadline=None)
@given(
    b=st.integers(1, 3),
    k=st.integers(2, 5),
    h=st.integers(1, 6),
    w=st.integers(1, 6),
    seed=st.integers(0, 2**16),
    ignore=st.booleans(),
)
def test_class_confidence_sums_match_a_pixel_loop(b, k, h, w, seed, ignore):
    g = torch.Generator().manual_seed(seed)
    probs = torch.rand(b, k, h, w, generator=g).softmax(1)
    target = torch.randint(0, k, (b, h, w), generator=g)
    if ignore:
        target[torch.rand(b, h, w, generator=g) < 0.3] = 255
    prepared = prepare_inputs(probs, target, num_classes=k, ignore_index=255 if ignore else None)
    sums, counts = class_confidence_sums(prepared)
    ref_sums, ref_counts = _brute_sums(probs, target.clamp_max(k - 1), target != 255)
    np.testing.assert_allclose(sums.numpy(), ref_sums, rtol=1e-6, atol=1e-9)
    np.testing.assert_array_equal(counts.numpy(), ref_counts)


def test_metric_class_confidence_is_cleanlabs_confident_thresholds():
    from cleanlab.count import get_confident_thresholds

    g = torch.Generator().manual_seed(3)
    probs = torch.rand(6, 4, 5, 7, generator=g).pow(3)
    probs = probs / probs.sum(1, keepdim=True)
    target = torch.randint(0, 4, (6, 5, 7), generator=g)
    target[0, :2] = 255
    metric = LabelQuality(4, methods=["softmin"], ignore_index=255)
    metric.track_class_confidence = True
    metric.update(probs[:4], target[:4], indexes=torch.arange(4))
    metric.update(probs[2:], target[2:], indexes=torch.arange(2, 6))  # images 2 and 3 seen twice: counted once
    got = metric.compute().details["class_confidence"]
    flat_p = probs.permute(0, 2, 3, 1).reshape(-1, 4).numpy()
    flat_y = target.reshape(-1).numpy()
    keep = flat_y != 255
    ref = get_confident_thresholds(flat_y[keep], flat_p[keep])
    np.testing.assert_allclose(got, ref, rtol=1e-6)
    untracked = LabelQuality(4, methods=["softmin"], ignore_index=255)
    untracked.update(probs, target, indexes=torch.arange(6))
    assert "class_confidence" not in untracked.compute().details


def test_class_thresholds_clip_and_absent_classes():
    t = class_thresholds(torch.tensor([0.0, 1.8, 0.0], dtype=torch.float64), torch.tensor([4.0, 2.0, 0.0]))
    assert t.tolist() == [2e-6, 0.9, 0.5]
    with pytest.raises(ValueError, match="same shape|one shape"):
        class_thresholds(torch.zeros(3), torch.zeros(4))


@settings(max_examples=25, deadline=None)
@given(k=st.integers(2, 5), n=st.integers(1, 40), seed=st.integers(0, 2**16))
def test_confident_mispredictions_match_a_pixel_loop(k, n, seed):
    g = torch.Generator().manual_seed(seed)
    probs = torch.rand(k, 1, n, generator=g).softmax(0)
    target = torch.randint(0, k, (1, n), generator=g)
    s = probs.gather(0, target.unsqueeze(0)).squeeze(0)
    s[0, 0] = float("nan")  # an ignored pixel
    p_pred, pred = probs.max(0)
    t = torch.rand(k, generator=g).tolist()
    got = confident_mispredictions(s, pred, p_pred, t)
    for j in range(n):
        sj, c, pc = float(s[0, j]), int(pred[0, j]), float(p_pred[0, j])
        expected = not np.isnan(sj) and sj < pc and pc >= t[c] - 1e-6
        assert bool(got[0, j]) == expected


def test_confident_mispredictions_errors():
    s = torch.rand(2, 2)
    with pytest.raises(ValueError, match="pred"):
        confident_mispredictions(s, torch.zeros(2, 3, dtype=torch.long), s, [0.5, 0.5])
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        confident_mispredictions(s, torch.full((2, 2), 2), s, [0.5, 0.5])
    with pytest.raises(TypeError, match="integer"):
        confident_mispredictions(s, s, s, [0.5, 0.5])


# ---------------------------------------------------------------- a relabelled region
def _model_probs(true: torch.Tensor, seed: int) -> torch.Tensor:
    """A stand-in for a good out-of-sample model: sure inside regions, unsure at borders."""
    g = torch.Generator().manual_seed(seed)
    onehot = F.one_hot(true, K).permute(0, 3, 1, 2).float()
    soft = F.avg_pool2d(onehot, 5, stride=1, padding=2, count_include_pad=False)
    noise = F.avg_pool2d(torch.randn(onehot.shape, generator=g), 3, stride=1, padding=1) * 2
    return (6.0 * soft + noise).softmax(1)


@pytest.fixture(scope="module")
def relabelled():
    """Six scenes; in image 0 every car pixel is relabelled road. Suspects drawn as the callback does."""
    images, true = make_street_scenes(6, 96, 128, seed=0)
    probs = _model_probs(true, 0)
    given_mask, region = true.clone(), torch.zeros_like(true, dtype=torch.bool)
    region[0] = true[0] == CAR
    given_mask[0][region[0]] = ROAD
    metric = LabelQuality(K, methods=["softmin"])
    metric.track_class_confidence = True
    batch = metric(probs, given_mask, indexes=torch.arange(6))
    heap = SuspectHeap(6)
    heap.push(batch.scores["softmin"], torch.arange(6), batch.inputs, images=images)
    report = metric.compute()
    entries = heap.entries(class_thresholds=report.details["class_confidence"])
    return {e.index: e for e in entries}, region


def test_marks_are_the_relabelled_region_and_almost_nothing_on_clean_images(relabelled):
    entries, region = relabelled
    bad = entries[0]
    assert bad.mark_rule == MARK_CONFIDENT
    marked, truth = bad.issue_mask, region[0]
    assert int(truth.sum()) > 500
    recall = float((marked & truth).sum() / truth.sum())
    precision = float((marked & truth).sum() / marked.sum())
    assert recall > 0.7 and precision > 0.95  # measured: 0.79 and 0.98
    for i in range(1, 6):
        clean = entries[i]
        share = float(clean.issue_mask.float().mean())
        low = float((clean.pixel_scores < 0.5).float().mean())  # the old "pixels < 0.5" overlay
        assert share < 0.005 and low > 0.03  # measured: 0.07-0.33 % marked, 3.6-5.3 % below 0.5


def test_thresholds_mark_at_full_resolution_cl_issues_otherwise_and_nothing_without_either():
    images, true = make_street_scenes(2, 16, 16, seed=1)
    given_mask = true.clone()
    given_mask[0, :8, :8] = (true[0, :8, :8] + 1) % K  # a wrong 8x8 block
    probs = _model_probs(true, 1)
    heap = SuspectHeap(2, downsample=4)
    heap.push(torch.tensor([0.1, 0.2]), torch.arange(2), prepare_inputs(probs, given_mask))
    assert all(e.issue_mask is None and e.mark_rule is None for e in heap.entries())
    both = heap.entries(cl_cutoff=1.0, class_thresholds=[0.3] * K)
    assert [e.mark_rule for e in both] == [MARK_CONFIDENT] * 2
    s = probs.gather(1, given_mask.unsqueeze(1)).squeeze(1)
    p_pred = probs.amax(1)
    expected = (s < p_pred) & (p_pred >= 0.3 - 1e-6)
    by_index = {e.index: e for e in both}
    for i in range(2):
        assert torch.equal(by_index[i].issue_mask, expected[i])
    cl_only = heap.entries(cl_cutoff=1.0)
    assert [e.mark_rule for e in cl_only] == ["confident-learning label issues"] * 2
    blocks = {e.index: e.issue_mask for e in cl_only}[0]
    assert torch.equal(blocks, blocks[::4, ::4].repeat_interleave(4, 0).repeat_interleave(4, 1))  # 4x4 cells


# ---------------------------------------------------------------- the picture
def _panel(fig, arr: np.ndarray, title: str) -> np.ndarray:
    ax = next(a for a in fig.axes if a.get_title() == title)
    box = ax.get_window_extent()
    top, bottom = arr.shape[0] - int(np.ceil(box.y1)), arr.shape[0] - int(box.y0)
    return arr[top:bottom, int(np.ceil(box.x0)) : int(box.x1)]


def test_picture_marks_exactly_the_marked_pixels_with_a_colour_bar_and_legend():
    h, w = 40, 64
    target = torch.zeros(h, w, dtype=torch.long)
    target[10:30, 8:40] = 1
    marked = torch.zeros(h, w, dtype=torch.bool)
    marked[12:28, 10:30] = True
    scores = torch.full((h, w), 0.97)
    scores[marked] = 0.02
    s = SuspectImage(5, 0.01, "softmin", target, target.clone(), scores, None, marked, True, "f001", MARK_CONFIDENT)
    palette = default_palette(2)
    fig = render_suspect_figure(s, ["road", "car"], palette)
    arr = figure_to_array(fig)
    colour = np.array(mark_colour(palette))
    # the given-mask panel shows the mark colour on the marked region's outline and nowhere else
    panel = _panel(fig, arr, "given mask")
    is_mark = np.abs(panel.astype(int) - colour).sum(-1) < 30
    ys, xs = np.nonzero(is_mark)
    ph, pw = panel.shape[:2]
    assert is_mark.sum() > 50
    assert ys.min() >= ph * 12 / h - 2 and ys.max() <= ph * 28 / h + 2
    assert xs.min() >= pw * 10 / w - 2 and xs.max() <= pw * 30 / w + 2
    inside = is_mark[int(ph * 16 / h) : int(ph * 24 / h), int(pw * 14 / w) : int(pw * 26 / w)]
    assert not inside.any()  # an outline, the given class stays visible inside
    # the heat panel: marked pixels low (red end), the rest high (blue end)
    heat = _panel(fig, arr, "P(given class)").astype(int)
    lut = heat_colours().astype(int)
    centre = heat[int(ph * 20 / h), int(pw * 20 / w)]
    corner = heat[int(ph * 3 / h), int(pw * 55 / w)]
    assert np.abs(centre - lut[5]).sum() < 40 and np.abs(corner - lut[247]).sum() < 40
    # a colour bar from 0 to 1, and a legend entry naming the rule, count and share
    bars = [a for a in fig.axes if a.get_title() == "" and a.get_ylim() == (0.0, 1.0)]
    assert len(bars) == 1
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert labels == ["road", "car", f"marked: {MARK_CONFIDENT} (320 px, 12.5%)"]
    assert fig._suptitle.get_text() == "idx 5 (f001) | softmin score 0.0100 | true error"
    assert suspect_caption(s) == fig._suptitle.get_text()


def test_mark_colour_stands_apart_from_every_class_colour():
    black = np.zeros(3)
    for k in (1, 2, 9, 12, 20, 40):
        palette = default_palette(k)
        colour = np.array(mark_colour(palette))
        gaps = np.sqrt(((palette.numpy().astype(float) - colour) ** 2).sum(-1))
        assert gaps.min() >= MARK_MIN_GAP, (k, mark_colour(palette))
        assert mark_colour(palette) == (255, 0, 255)  # one colour for every default palette
        assert np.sqrt(((colour - black) ** 2).sum()) > 200  # ignored pixels are black


@settings(max_examples=30, deadline=None)
@given(st.lists(st.tuples(*[st.integers(0, 255)] * 3), min_size=1, max_size=30))
def test_mark_colour_is_the_candidate_farthest_from_the_palette(colours):
    palette = torch.tensor(colours, dtype=torch.uint8)
    chosen = mark_colour(palette)
    avoid = np.concatenate([heat_colours(32), np.zeros((1, 3)), palette.numpy()]).astype(float)

    def gap(c):
        return np.sqrt(((avoid - np.array(c, dtype=float)) ** 2).sum(-1)).min()

    far = [c for c in MARK_CANDIDATES if gap(c) >= MARK_MIN_GAP]
    assert chosen == (far[0] if far else max(MARK_CANDIDATES, key=gap))
    if any(c not in set(colours) for c in MARK_CANDIDATES):
        assert chosen not in set(colours)


def test_outline_is_the_border_band():
    m = np.zeros((8, 9), bool)
    m[1:7, 2:8] = True
    one, two = outline(m), outline(m, width=2)
    ref_inner = np.zeros_like(m)
    ref_inner[2:6, 3:7] = True
    np.testing.assert_array_equal(one, m & ~ref_inner)
    ref_inner2 = np.zeros_like(m)
    ref_inner2[3:5, 4:6] = True
    np.testing.assert_array_equal(two, m & ~ref_inner2)


# ---------------------------------------------------------------- TensorBoard: tags and steps
class _TwoOptimizers:
    """Built lazily: a tiny segmentation module with two optimizers stepped per batch (as a GAN)."""

    @staticmethod
    def make():
        from lightning.pytorch import LightningModule

        class Module(LightningModule):
            def __init__(self):
                super().__init__()
                self.automatic_optimization = False
                self.a = torch.nn.Conv2d(3, K, 1)
                self.b = torch.nn.Conv2d(K, K, 1)

            def forward(self, x):
                return self.b(self.a(x))

            def training_step(self, batch, batch_idx):
                for opt in self.optimizers():
                    opt.zero_grad()
                    loss = F.cross_entropy(self(batch["image"]), batch["mask"])
                    self.manual_backward(loss)
                    opt.step()

            def validation_step(self, batch, batch_idx):
                logits = self(batch["image"])
                return {"logits": logits, "target": batch["mask"], "index": batch["index"], "image": batch["image"]}

            def configure_optimizers(self):
                return torch.optim.SGD(self.a.parameters(), lr=0.1), torch.optim.SGD(self.b.parameters(), lr=0.1)

        return Module()


def test_tensorboard_pictures_have_stable_tags_and_the_scalars_step(tmp_path):
    from lightning.pytorch import Trainer
    from lightning.pytorch.loggers import TensorBoardLogger
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from torch.utils.data import DataLoader

    from lightning_segqa import LabelQualityMonitor
    from lightning_segqa.data import TensorSegmentationDataset

    images, masks = make_street_scenes(8, 16, 16, seed=2)
    loader = DataLoader(TensorSegmentationDataset(images, masks), batch_size=4)
    logger = TensorBoardLogger(str(tmp_path), name="tb", version=0)
    monitor = LabelQualityMonitor(num_classes=K, top_k=1, class_names=list(STREET_CLASSES))
    trainer = Trainer(
        max_epochs=2,
        logger=logger,
        callbacks=[monitor],
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        log_every_n_steps=1,
    )
    trainer.fit(_TwoOptimizers.make(), loader, loader)
    assert trainer.global_step == 8  # 2 epochs x 2 batches x 2 optimizers: not the logging step
    events = EventAccumulator(logger.log_dir, size_guidance={"images": 0, "scalars": 0, "tensors": 0})
    events.Reload()
    images_tags = sorted(t for t in events.Tags()["images"] if t.startswith("segqa/suspects/"))
    assert images_tags == ["segqa/suspects/rank01"]  # the same tag every epoch, whichever image ranks first
    scalar_steps = [e.step for e in events.Scalars("segqa/suspect_fraction")]
    assert len(set(scalar_steps)) == 2 and scalar_steps != [4, 8]  # Lightning's logging step, not global_step
    for tag in images_tags:
        assert [e.step for e in events.Images(tag)] == scalar_steps
    captions = events.Tensors("segqa/suspects/captions/text_summary")
    assert [e.step for e in captions] == scalar_steps
    text = captions[-1].tensor_proto.string_val[0].decode()
    assert text.startswith("- **rank01**: idx ") and "softmin score" in text
