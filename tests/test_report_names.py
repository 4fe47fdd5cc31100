"""Image names through the metric and the report; repeated indexes that differ; missing indexes."""

import csv
import io
import json
import os
import warnings

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from lightning_segqa import LabelQuality, LabelQualityReport
from lightning_segqa.suspect_rule import default_suspect_mask


def batch(n, seed=0, k=3, size=6):
    g = torch.Generator().manual_seed(seed)
    probs = torch.rand(n, k, size, size, generator=g).softmax(1)
    return probs, probs.argmax(1)


def test_names_follow_their_images_through_shuffled_batches_and_repeats():
    metric = LabelQuality(3, methods=["softmin", "iou"])
    probs, target = batch(6)
    order = [[4, 1, 5], [0, 3, 2], [1, 4]]  # the last batch repeats two images (as a DistributedSampler pads)
    for idx in order:
        i = torch.tensor(idx)
        metric.update(probs[i], target[i], i + 100, names=[f"frame_{j:03d}" for j in idx])
    report = metric.compute()
    assert report.indexes.tolist() == list(range(100, 106))
    assert report.names == [f"frame_{j:03d}" for j in range(6)]  # reference: the name each index was given
    assert report.label(104) == "frame_004 (#104)" and report.name_of(101) == "frame_001"


def test_no_names_gives_none_and_partial_names_keep_their_place():
    probs, target = batch(4)
    metric = LabelQuality(3, methods=["softmin"])
    metric.update(probs, target, torch.arange(4))
    assert metric.compute().names is None
    metric = LabelQuality(3, methods=["softmin"])
    metric.update(probs[:2], target[:2], torch.tensor([3, 2]), names=["c", "b"])
    metric.update(probs[2:], target[2:], torch.tensor([0, 1]))
    report = metric.compute()
    assert report.names == ["", "", "b", "c"]
    assert report.label(0) == "#0" and report.label(3) == "c (#3)"


@settings(max_examples=30, deadline=None)
@given(st.lists(st.text(alphabet=st.characters(blacklist_characters="\0"), max_size=12), min_size=1, max_size=6))
def test_any_unicode_name_survives_the_byte_state(names):
    probs, target = batch(len(names))
    metric = LabelQuality(3, methods=["softmin"])
    perm = torch.randperm(len(names), generator=torch.Generator().manual_seed(len(names)))
    metric.update(probs[perm], target[perm], perm, names=[names[p] for p in perm.tolist()])
    report = metric.compute()
    assert report.names == (None if all(n == "" for n in names) else names)


def test_names_survive_saved_states_and_merging_warns_nothing():
    """The cross-validation path: states saved per fold, loaded into a fresh metric, computed."""
    probs, target = batch(6)
    folds = []
    for held in ([0, 2, 4], [1, 3, 5]):
        m = LabelQuality(3, methods=["softmin"])
        i = torch.tensor(held)
        m.update(probs[i], target[i], i, names=[f"img{j}" for j in held])
        folds.append(m.state_tensors())
    merged = LabelQuality(3, methods=["softmin"])
    for states in folds:
        merged.load_state_tensors(states)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # "compute was called before update" must not appear
        report = merged.compute()
    assert report.names == [f"img{j}" for j in range(6)]


def test_repeated_index_with_a_different_mask_warns_once_with_the_count():
    probs, target = batch(5)
    metric = LabelQuality(3, methods=["softmin"])
    metric.update(probs, target, torch.arange(5))
    metric.update(probs[:3], target[:3], torch.arange(3))  # identical repeats: normal, silent
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        first = metric.compute()
    changed = target[[1, 4]].clone()
    changed[:, 0, 0] = (changed[:, 0, 0] + 1) % 3  # one pixel differs
    metric.update(probs[[1, 4]], changed, torch.tensor([1, 4]))
    with pytest.warns(
        UserWarning, match=r"^2 dataset index\(es\) were given more than once with different masks"
    ) as rec:
        report = metric.compute()
    assert len([w for w in rec if "different masks" in str(w.message)]) == 1
    torch.testing.assert_close(report.scores["softmin"], first.scores["softmin"])  # the first mask's scores kept


@pytest.mark.parametrize("bad", [None])
def test_missing_indexes_name_the_argument(bad):
    probs, target = batch(2)
    metric = LabelQuality(3, methods=["softmin"])
    with pytest.raises(TypeError, match=r"`indexes` is None: pass each image's dataset index"):
        metric.update(probs, target, bad)
    with pytest.raises(ValueError, match=r"`names` must be a sequence of 2 strings"):
        metric.update(probs, target, torch.arange(2), names=["only one"])
    assert metric.metric_state["indexes"] == []  # nothing half-updated


def test_report_files_carry_names():
    scores = torch.tensor([0.9, 0.05, 0.6])
    report = LabelQualityReport(torch.tensor([7, 8, 9]), {"softmin": scores}, names=["a", "b", "c"])
    back = LabelQualityReport.from_json(report.to_json())
    assert back.names == ["a", "b", "c"] and back.indexes.tolist() == [7, 8, 9]
    rows = list(csv.DictReader(io.StringIO(report.to_csv(method="softmin"))))
    assert [(r["rank"], r["index"], r["name"]) for r in rows] == [("1", "8", "b"), ("2", "9", "c"), ("3", "7", "a")]
    table = report.table("softmin", k=2)
    assert "name" in table.splitlines()[1] and "b" in table.splitlines()[2].split()
    assert json.loads(LabelQualityReport(torch.arange(1), {"softmin": scores[:1]}).to_json())["names"] is None
    with pytest.raises(ValueError, match="`names` has 2 entries, expected one per image"):
        LabelQualityReport(torch.arange(3), {"softmin": scores}, names=["a", "b"])


def test_suspects_without_k_or_threshold_follow_the_default_rule():
    g = torch.Generator().manual_seed(3)
    scores = 0.5 + 0.05 * torch.rand(40, generator=g)
    scores[[5, 17]] = torch.tensor([1e-4, 1e-3])
    scores[9] = float("nan")
    report = LabelQualityReport(torch.arange(40) * 2, {"softmin": scores})
    expected = (torch.arange(40) * 2)[default_suspect_mask(scores, "softmin")]
    assert sorted(report.suspects("softmin").tolist()) == sorted(expected.tolist()) == [10, 34]
    assert report.suspects("softmin").tolist() == [10, 34]  # worst first
    assert report.suspects("softmin", k=3).tolist() == [10, 34, int(report.ranking("softmin")[2])]
    assert len(report.suspects("softmin", threshold=0.6)) == 39  # NaN is never a suspect


def test_an_undecodable_file_name_survives_the_state_and_the_files(tmp_path):
    """``os.fsdecode`` turns bytes that are not UTF-8 into lone surrogates: nothing may fail on them."""
    probs, target = batch(2)
    metric = LabelQuality(3, methods=["softmin"])
    odd = os.fsdecode(b"scan_\xff")
    metric.update(probs, target, torch.arange(2), names=[odd, "b"])
    report = metric.compute()
    assert report.names == [odd, "b"]
    report.to_json(tmp_path / "r.json")
    assert LabelQualityReport.from_json(tmp_path / "r.json").names == [odd, "b"]
    report.to_csv(tmp_path / "r.csv")
    assert "scan_\\udcff" in (tmp_path / "r.csv").read_text(encoding="utf-8")
