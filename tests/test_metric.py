"""The streaming metric: equals the functional scores, invariant to batching, rank-safe."""

import os
import socket
import time
import warnings

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from hypothesis import given, settings
from hypothesis import strategies as st

from lightning_segqa import METHODS, LabelQuality, LabelQualityReport, detection_metrics
from lightning_segqa import functional as F
from tests.test_functional import random_case, structured_case

cleanlab_filter = pytest.importorskip("cleanlab.segmentation.filter")


def dataset(seed=0, n=12):
    probs, target = structured_case(seed, n=n, k=4, h=16, w=16, wrong_rate=0.0)
    truth = torch.zeros(n, dtype=torch.bool)
    truth[::3] = True
    target = target.clone()
    target[truth, :8] = (target[truth, :8] + 1) % 4
    return probs, target, truth


def run(metric, probs, target, truth, splits, order=None):
    order = torch.arange(len(probs)) if order is None else order
    for chunk in torch.tensor_split(order, splits):
        metric.update(probs[chunk], target[chunk], indexes=chunk, is_mislabeled=truth[chunk])
    return metric.compute()


def test_report_equals_functional_scores():
    probs, target, truth = dataset()
    report = run(LabelQuality(num_classes=4, downsample=2), probs, target, truth, splits=3)
    assert report.indexes.tolist() == list(range(len(probs)))
    torch.testing.assert_close(report.scores["softmin"], F.softmin(probs, target))
    torch.testing.assert_close(report.scores["iou"], F.iou(probs, target))
    torch.testing.assert_close(report.scores["thresholded_ccp"], F.thresholded_ccp(probs, target))
    torch.testing.assert_close(
        report.scores["connected_components"], F.connected_components(probs, target, downsample=2)
    )
    torch.testing.assert_close(
        report.scores["confident_learning_counts"], F.confident_learning_counts(probs, target, downsample=2)
    )
    assert report.is_mislabeled.tolist() == truth.tolist()


def test_streamed_confident_learning_matches_cleanlab(code_path):
    probs, target = random_case(11, n=9, k=5, h=12, w=12)
    metric = LabelQuality(num_classes=5, methods=["confident_learning_counts"], downsample=1)
    report = run(metric, probs, target, torch.zeros(9, dtype=torch.bool), splits=4)
    ref = cleanlab_filter.find_label_issues(target.numpy(), probs.numpy(), downsample=1, n_jobs=1, verbose=False)
    np.testing.assert_allclose(report.scores["confident_learning_counts"].numpy(), 1 - ref.mean((1, 2)), atol=1e-6)
    assert report.details["cl_num_issues"] >= ref.sum()


@settings(max_examples=15, deadline=None)
@given(splits=st.integers(1, 6), seed=st.integers(0, 1000))
def test_invariant_to_batch_split_and_order(splits, seed):
    probs, target, truth = dataset(seed % 3)
    order = torch.randperm(len(probs), generator=torch.Generator().manual_seed(seed))
    ref = run(LabelQuality(num_classes=4), probs, target, truth, splits=1)
    got = run(LabelQuality(num_classes=4), probs, target, truth, splits=splits, order=order)
    assert got.indexes.tolist() == ref.indexes.tolist()
    for m in METHODS:
        torch.testing.assert_close(got.scores[m], ref.scores[m], atol=1e-6, rtol=0)


def test_repeated_indexes_are_kept_once():
    probs, target, truth = dataset()
    ref = run(LabelQuality(num_classes=4), probs, target, truth, splits=2)
    metric = LabelQuality(num_classes=4)
    run(metric, probs, target, truth, splits=2)
    metric.update(probs[:3], target[:3], indexes=torch.arange(3), is_mislabeled=truth[:3])
    got = metric.compute()
    assert got.indexes.tolist() == ref.indexes.tolist()
    for m in METHODS:
        torch.testing.assert_close(got.scores[m], ref.scores[m])


def test_detection_metrics_and_report_round_trip(tmp_path):
    probs, target, truth = dataset()
    report = run(LabelQuality(num_classes=4), probs, target, truth, splits=2)
    det = report.detection()
    assert det["softmin"]["auroc"] > 0.9
    report.to_json(tmp_path / "r.json")
    back = LabelQualityReport.from_json(tmp_path / "r.json")
    for m in METHODS:
        torch.testing.assert_close(back.scores[m], report.scores[m])
    for m in METHODS:
        assert back.detection()[m] == pytest.approx(det[m])
    csv_text = report.to_csv(tmp_path / "r.csv")
    lines = csv_text.strip().splitlines()
    assert len(lines) == len(probs) + 1
    assert lines[1].split(",")[1] == str(report.ranking("softmin")[0].item())
    text = str(report)
    assert "AUROC" in text and "softmin" in text


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), n=st.integers(3, 300))
def test_detection_metrics_match_sklearn(seed, n):
    from sklearn.metrics import average_precision_score, roc_auc_score

    g = torch.Generator().manual_seed(seed)
    truth = torch.rand(n, generator=g) < 0.3
    truth[0], truth[1] = True, False
    scores = torch.rand(n, generator=g) - 0.3 * truth.float()
    det = detection_metrics(scores, truth)
    assert det["auroc"] == pytest.approx(roc_auc_score(truth.numpy(), -scores.numpy()), abs=1e-6)
    assert det["auprc"] == pytest.approx(average_precision_score(truth.numpy(), -scores.numpy()), abs=1e-6)
    for key, k in (("lift_at_t", int(truth.sum())), ("lift_at_100", min(100, n))):
        worst = torch.argsort(scores)[:k]
        expected = truth[worst].double().mean().item() / truth.double().mean().item()
        assert det[key] == pytest.approx(expected)


def test_failed_update_leaves_state_untouched():
    probs, target, truth = dataset()
    metric = LabelQuality(num_classes=4)
    metric.update(probs[:4], target[:4], indexes=torch.arange(4))
    before = {k: [t.clone() for t in v] for k, v in metric.metric_state.items()}
    bad_target = target[4:8].clone()
    bad_target[0, 0, 0] = 9
    with pytest.raises(ValueError, match="class id 9"):
        metric.update(probs[4:8], bad_target, indexes=torch.arange(4, 8))
    with pytest.raises(ValueError, match="indexes"):
        metric.update(probs[4:8], target[4:8], indexes=torch.arange(3))
    with pytest.raises(ValueError, match="num_classes=4"):
        metric.update(probs[4:8, :3], target[4:8].clamp(max=2), indexes=torch.arange(4, 8))
    after = metric.metric_state
    assert before.keys() == after.keys()
    for key in before:
        assert len(before[key]) == len(after[key])
        for a, b in zip(before[key], after[key], strict=True):
            torch.testing.assert_close(a, b, equal_nan=True)


def test_empty_image_scores_nan_with_warning():
    probs, target, truth = dataset()
    target[2] = 255
    metric = LabelQuality(num_classes=4, ignore_index=255)
    metric.update(probs, target, indexes=torch.arange(len(probs)))
    with pytest.warns(UserWarning, match="no valid pixel"):
        report = metric.compute()
    for m in METHODS:
        assert torch.isnan(report.scores[m][2]), m
        assert not torch.isnan(report.scores[m][[0, 1, 3]]).any(), m
    assert report.ranking("softmin")[-1].item() == 2


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"num_classes": 1}, "num_classes"),
        ({"num_classes": 3, "methods": ["softmax"]}, "methods"),
        ({"num_classes": 3, "temperature": 0}, "temperature"),
        ({"num_classes": 3, "downsample": 0}, "downsample"),
        ({"num_classes": 3, "input_format": "x"}, "input_format"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        LabelQuality(**kwargs)


def test_state_memory_does_not_grow_with_pixels():
    """Kept state per image is independent of K*H*W for the local scores."""
    small, big = (
        LabelQuality(num_classes=4, methods=["softmin", "iou"]),
        LabelQuality(num_classes=4, methods=["softmin", "iou"]),
    )
    for metric, size in ((small, 8), (big, 64)):
        probs = torch.rand(2, 4, size, size).softmax(1)
        metric.update(probs, probs.argmax(1), indexes=torch.arange(2))
    nbytes = [sum(t.numel() * t.element_size() for v in m.metric_state.values() for t in v) for m in (small, big)]
    assert nbytes[0] == nbytes[1]


# ---------------------------------------------------------------- two processes (gloo)
def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank, world, port, out_dir):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    probs, target, truth = dataset(n=11)
    # a DistributedSampler-like split: rank r takes r, r+2, ...; the last one repeats index 0
    idx = torch.arange(12) % 11
    mine = idx[rank::world]
    metric = LabelQuality(num_classes=4)
    for chunk in torch.tensor_split(mine, 2):
        metric.update(probs[chunk], target[chunk], indexes=chunk, is_mislabeled=truth[chunk])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        report = metric.compute()
    if rank == 0:
        report.to_json(os.path.join(out_dir, "ddp.json"))
    dist.destroy_process_group()


@pytest.mark.slow
def test_two_processes_give_the_same_report(tmp_path):
    mp.spawn(_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    ddp = LabelQualityReport.from_json(tmp_path / "ddp.json")
    probs, target, truth = dataset(n=11)
    single = run(LabelQuality(num_classes=4), probs, target, truth, splits=3)
    assert ddp.indexes.tolist() == single.indexes.tolist()
    for m in METHODS:
        torch.testing.assert_close(ddp.scores[m], single.scores[m], atol=1e-6, rtol=0)
    assert ddp.details["cl_num_issues"] == single.details["cl_num_issues"]


def test_empty_batch_adds_nothing():
    probs, target, truth = dataset()
    metric = LabelQuality(num_classes=4)
    metric.update(probs[:0], target[:0], indexes=torch.arange(0))
    assert metric.metric_state["indexes"] == []
    metric.update(probs[:3], target[:3], indexes=torch.arange(3))
    assert metric.compute().indexes.tolist() == [0, 1, 2]


def test_background_writes_keep_order_and_report_failures(tmp_path):
    from lightning_segqa.report import wait_for_writes, write_in_background

    target = tmp_path / "r.json"
    for i in range(20):
        write_in_background(target, f"version {i}")
    wait_for_writes()
    assert target.read_text() == "version 19"
    (tmp_path / "a_file").write_text("x")
    write_in_background(tmp_path / "a_file" / "r.json", "cannot: the parent is a file")
    with pytest.raises(OSError, match="1 background report write"):
        wait_for_writes()
    wait_for_writes()  # the failure was reported once


@pytest.mark.parametrize("methods", [("softmin",), ("softmin", "confidence_in_label"), ("softmin", "iou")])
def test_logits_without_a_scan_still_reject_non_finite_values(methods, code_path):
    """Softmin/CIL on declared logits skip the value scan; a NaN or +inf still raises and changes nothing."""
    probs, target, _ = dataset()
    logits = probs.clamp_min(1e-6).log() * 3  # wide but finite logits
    scanned = LabelQuality(num_classes=4, methods=methods, input_format="auto")
    fast = LabelQuality(num_classes=4, methods=methods, input_format="logits", ignore_index=255)
    scanned.update(logits[:4], target[:4], indexes=torch.arange(4))
    fast.update(logits[:4], target[:4], indexes=torch.arange(4))
    torch.testing.assert_close(fast.compute().scores["softmin"], scanned.compute().scores["softmin"])
    before = {k: [t.clone() for t in v] for k, v in fast.metric_state.items()}
    for value in (float("nan"), float("inf")):
        bad = logits[4:8].clone()
        bad[2, 1, 3, 3] = value
        with pytest.raises(ValueError, match=r"NaN or infinite values"):
            fast.update(bad, target[4:8], indexes=torch.arange(4, 8))
    bad_target = target[4:8].clone()
    bad_target[1, 0, 0] = 7
    with pytest.raises(ValueError, match="class id 7"):
        fast.update(logits[4:8], bad_target, indexes=torch.arange(4, 8))
    assert all(len(fast.metric_state[k]) == len(v) for k, v in before.items())
    # without the scan a value at an ignored pixel never matters; with it (other methods) it is refused
    masked = target[4:8].clone()
    masked[0] = 255
    bad = logits[4:8].clone()
    bad[0] = float("nan")
    if "iou" in methods:
        with pytest.raises(ValueError, match="NaN or infinite"):
            fast.update(bad, masked, indexes=torch.arange(4, 8))
        return
    fast.update(bad, masked, indexes=torch.arange(4, 8))
    with pytest.warns(UserWarning, match="no valid pixel"):
        assert torch.isnan(fast.compute().scores["softmin"][4])


def test_streamed_cutoff_equals_batch_cutoff_when_probs_sum_slightly_over_one():
    """Probabilities may sum to 1 +- 1e-3: a mispredicted pixel's s can exceed 0.5 and must still count."""
    from lightning_segqa import functional as F

    probs = torch.tensor([[0.5004, 0.5002, 0.55], [0.5005, 0.4998, 0.45]]).view(1, 2, 1, 3)
    target = torch.tensor([[[0, 0, 1]]])
    batch = F.confident_learning_counts(probs, target, downsample=1, input_format="probs")
    metric = LabelQuality(num_classes=2, methods=["confident_learning_counts"], downsample=1, input_format="probs")
    metric.update(probs, target, indexes=torch.arange(1))
    torch.testing.assert_close(metric.compute().scores["confident_learning_counts"], batch)
    ref = cleanlab_filter.find_label_issues(target.numpy(), probs.numpy(), downsample=1, n_jobs=1, verbose=False)
    torch.testing.assert_close(batch, torch.tensor([1 - ref.mean()], dtype=torch.float32))


def test_one_image_report_keeps_one_dimensional_tensors():
    """torchmetrics squeezes one-element results; a report of one image stays (1,) everywhere."""
    probs, target, truth = dataset()
    metric = LabelQuality(num_classes=4)
    metric.update(probs[:1], target[:1], indexes=torch.tensor([7]), is_mislabeled=truth[:1])
    report = metric.compute()
    assert report.indexes.tolist() == [7] and report.is_mislabeled.shape == (1,)
    assert all(s.shape == (1,) for s in report.scores.values())
    assert report.suspects("softmin", k=1).tolist() == [7]


def test_background_writer_works_in_a_forked_child(tmp_path):
    """A forked child (DDP fork strategies, notebooks) gets its own writer, not the parent's dead thread."""
    import os
    import signal

    from lightning_segqa.report import wait_for_writes, write_in_background

    if not hasattr(os, "fork"):
        pytest.skip("no os.fork on this platform")
    write_in_background(tmp_path / "parent.txt", "parent")
    wait_for_writes()
    pid = os.fork()
    if pid == 0:  # child: write and leave without running pytest's teardown
        try:
            write_in_background(tmp_path / "child.txt", "child")
            wait_for_writes()
        finally:
            os._exit(0)
    for _ in range(100):  # up to 10 s
        done, _status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        time.sleep(0.1)
    else:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        pytest.fail("the forked child's background write never finished")
    assert (tmp_path / "child.txt").read_text() == "child"


@pytest.mark.parametrize("methods", [("softmin",), ("softmin", "iou")])
def test_minus_inf_logits_mean_probability_zero_whatever_the_methods(methods, code_path):
    """A -inf logit is a class with probability 0 on every path; a pixel with only -inf is refused."""
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 3, 4, 4, generator=g)
    target = logits.argmax(1)
    logits[0, 2, 1, 1] = -float("inf")
    target[0, 1, 1] = 2  # the annotated class has probability 0 there
    metric = LabelQuality(num_classes=3, methods=methods, input_format="logits")
    metric.update(logits, target, indexes=torch.arange(2))
    expected = F.softmin(logits.clamp_min(-1e4), target, input_format="logits")
    torch.testing.assert_close(metric.compute().scores["softmin"], expected, atol=1e-6, rtol=0)
    dead = logits.clone()
    dead[1, :, 0, 0] = -float("inf")
    with pytest.raises(ValueError, match="-inf|NaN or infinite"):
        metric.update(dead, target, indexes=torch.arange(2, 4))
