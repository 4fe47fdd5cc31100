"""The registry of scores: one unit per method, read by the metric, functional scores, report and callback."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from lightning_segqa import METHODS, LabelQuality, LabelQualityMonitor
from lightning_segqa import functional as F
from lightning_segqa.functional import pixel
from lightning_segqa.methods import method_legend
from lightning_segqa.report_table import table_columns
from lightning_segqa.scores import REGISTRY, Settings, image_score, per_image, score_one_batch
from tests.test_functional import structured_case

K = 4


def worst_pixel(batch, settings):
    """A toy eighth method: the lowest label probability of each image (valid pixels only)."""
    pp = batch.full
    s = pp.s if pp.valid is None else pp.s.masked_fill(~pp.valid, float("inf"))
    return s.amin(-1)


TOY = image_score("worst_pixel", "WP", "lowest label probability", "pixels", worst_pixel)


@pytest.fixture
def toy(monkeypatch):
    monkeypatch.setitem(REGISTRY, TOY.name, TOY)
    return TOY


def test_registry_is_the_one_list_of_methods():
    assert tuple(REGISTRY) == METHODS
    assert [m for m in METHODS if per_image(m)] == [
        "softmin",
        "confidence_in_label",
        "correctly_classified_pixels",
        "iou",
        "connected_components",
    ]
    for name, unit in REGISTRY.items():
        assert unit.name == name and unit.short and unit.long
        assert set(unit.ragged) <= set(unit.states) and set(unit.ragged.values()) <= set(unit.states)
    states = [s for unit in REGISTRY.values() for s in unit.states]
    assert len(states) == len(set(states))  # no two methods share a state


def test_an_eighth_method_flows_through_metric_report_and_callback(toy):
    probs, target = structured_case(0, n=6, k=K, h=12, w=12, wrong_rate=0.0)
    target[0, :4] = 255
    metric = LabelQuality(K, methods=["softmin", "worst_pixel", "thresholded_ccp"], ignore_index=255)
    batch = metric(probs[:3], target[:3], indexes=torch.tensor([5, 3, 4]))
    assert sorted(batch.scores) == ["softmin", "worst_pixel"]  # per-image: known after the batch
    metric.update(probs[3:], target[3:], indexes=torch.tensor([0, 1, 2]))
    report = metric.compute()
    valid = target != 255
    s = probs.gather(1, torch.where(valid, target, 0).unsqueeze(1)).squeeze(1)
    expected = torch.where(valid, s, 1.0).flatten(1).amin(-1)
    order = torch.tensor([3, 4, 5, 1, 2, 0])  # the images of indexes 0..5
    torch.testing.assert_close(report.scores["worst_pixel"], expected[order])
    functional = score_one_batch(toy, probs, target, Settings(), ignore_index=255)
    torch.testing.assert_close(report.scores["worst_pixel"], functional[order])
    assert "WP" in table_columns(report) and "WP = lowest label probability" in method_legend(report.methods)
    # merging states of another fold keeps the toy's states too
    other = LabelQuality(K, methods=["softmin", "worst_pixel", "thresholded_ccp"], ignore_index=255)
    other.load_state_tensors(metric.state_tensors())
    torch.testing.assert_close(other.compute().scores["worst_pixel"], report.scores["worst_pixel"])
    # the callback ranks by a per-image method, never by a dataset-level one
    both = ["thresholded_ccp", "worst_pixel"]
    assert LabelQualityMonitor(K, methods=both, rank_by="worst_pixel").heap_method == "worst_pixel"
    assert LabelQualityMonitor(K, methods=both, rank_by="thresholded_ccp").heap_method == "worst_pixel"
    assert LabelQualityMonitor(K, methods=["thresholded_ccp"], rank_by="thresholded_ccp").heap_method is None


FUNCTIONAL = {
    "softmin": lambda p, t, o: F.softmin(p, t, ignore_index=o["ignore_index"], temperature=o["temperature"]),
    "confidence_in_label": lambda p, t, o: F.confidence_in_label(p, t, ignore_index=o["ignore_index"]),
    "correctly_classified_pixels": lambda p, t, o: F.correctly_classified_pixels(p, t, ignore_index=o["ignore_index"]),
    "thresholded_ccp": lambda p, t, o: F.thresholded_ccp(p, t, ignore_index=o["ignore_index"]),
    "iou": lambda p, t, o: F.iou(p, t, ignore_index=o["ignore_index"]),
    "connected_components": lambda p, t, o: F.connected_components(
        p, t, downsample=o["downsample"], ignore_index=o["ignore_index"]
    ),
    "confident_learning_counts": lambda p, t, o: F.confident_learning_counts(
        p, t, downsample=o["downsample"], ignore_index=o["ignore_index"]
    ),
}


def test_every_method_has_its_functional_score():
    assert set(FUNCTIONAL) == set(METHODS)


@settings(max_examples=12, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    splits=st.integers(1, 4),
    downsample=st.sampled_from([1, 2, 4]),
    ignore=st.booleans(),
    temperature=st.sampled_from([0.05, 0.1, 0.5]),
)
def test_streamed_metric_equals_functional_score_of_every_method(seed, splits, downsample, ignore, temperature):
    """Streamed in batches (some images twice), every method equals its functional score of the whole set."""
    n = 7
    probs, target = structured_case(seed, n=n, k=K, h=12, w=8, wrong_rate=0.1)
    options = {"ignore_index": 255 if ignore else None, "downsample": downsample, "temperature": temperature}
    if ignore:
        target[seed % n, : 1 + seed % 5] = 255
    metric = LabelQuality(K, **options)
    for chunk in torch.tensor_split(torch.randperm(n, generator=torch.Generator().manual_seed(seed)), splits):
        metric.update(probs[chunk], target[chunk], indexes=chunk)
    metric.update(probs[:2], target[:2], indexes=torch.arange(2))  # repeats are kept once
    report = metric.compute()
    for name in METHODS:
        expected = FUNCTIONAL[name](probs, target, options).float()
        torch.testing.assert_close(report.scores[name], expected, atol=1e-6, rtol=0, msg=name)


@pytest.mark.parametrize("downsample", [1, 4])
def test_one_pixel_pass_per_batch_and_resolution(monkeypatch, downsample):
    """All seven methods with the suspect thresholds: ``s`` is gathered once at full resolution, once at working one."""
    calls = []
    take = pixel._take_label
    monkeypatch.setattr(pixel, "_take_label", lambda flat, target: calls.append(flat.shape[-1]) or take(flat, target))
    probs, target = structured_case(1, n=4, k=K, h=16, w=16, wrong_rate=0.1)
    metric = LabelQuality(K, downsample=downsample, compile=False)
    metric.track_class_confidence = True
    metric.update(probs, target, indexes=torch.arange(4))
    assert calls == [256] if downsample == 1 else calls == [256, 16]
    report = metric.compute()
    assert {"class_confidence", "agreement", "cl_cutoff", "tccp_thresholds"} <= set(report.details)


def test_a_new_method_gets_a_row_in_the_benchmark_tables(toy):
    from lightning_segqa.experiments.tables import PAPER_ROWS, format_tables, table_rows

    assert table_rows()[: len(PAPER_ROWS)] == PAPER_ROWS and table_rows()[-1][0] == TOY.name
    det = {m: {"auroc": 0.5, "auprc": 0.5, "lift_at_t": 1.0, "lift_at_100": 1.0} for m, _ in table_rows()}
    text = format_tables({"drop": {"fpn": det}})
    assert text.splitlines()[3 + len(PAPER_ROWS)].startswith(TOY.long[:1].upper() + TOY.long[1:])
