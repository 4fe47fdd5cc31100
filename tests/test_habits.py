"""torchmetrics and Lightning habits: forward's per-batch scores, MetricCollection, self.log, the monitor's
configured metric, fast_dev_run, and the monitor's public export/merge/publish (no side channels)."""

import warnings

import pytest
import torch
from lightning.pytorch import LightningModule, Trainer
from torch import nn
from torch.utils.data import DataLoader, Subset
from torchmetrics import MetricCollection

from lightning_segqa import LabelQuality
from lightning_segqa.batch_scores import BatchScores
from lightning_segqa.callback import LabelQualityMonitor
from lightning_segqa.data import TensorSegmentationDataset
from lightning_segqa.experiments import STREET_CLASSES, make_street_scenes
from lightning_segqa.experiments.models import SegmentationModule
from lightning_segqa.log_guard import LOG_HINT
from lightning_segqa.report import wait_for_writes

K = len(STREET_CLASSES)
warnings.filterwarnings("ignore", ".*does not have many workers.*")


def batch(b=4, k=3, h=6, w=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    probs = torch.randn(b, k, h, w, generator=g).softmax(1)
    target = torch.randint(0, k, (b, h, w), generator=g)
    return probs, target


def softmin_by_hand(probs, target, temperature=0.1):
    """Per image: sum_j s_j exp(-s_j/T) / sum_j exp(-s_j/T), s_j the probability of pixel j's given class."""
    out = []
    for p, t in zip(probs.double(), target, strict=True):
        s = [float(p[t[i, j], i, j]) for i in range(t.shape[0]) for j in range(t.shape[1])]
        w = [torch.exp(torch.tensor(-v / temperature, dtype=torch.float64)) for v in s]
        out.append(float(sum(v * wi for v, wi in zip(s, w, strict=True)) / sum(w)))
    return torch.tensor(out, dtype=torch.float64)


# ---------------------------------------------------------------- forward
def test_forward_returns_the_batch_scores_and_adds_the_batch_once():
    probs, target = batch()
    metric = LabelQuality(3, methods=["softmin", "iou", "thresholded_ccp"])
    out = metric(probs, target, indexes=torch.tensor([7, 3, 5, 1]))
    assert isinstance(out, BatchScores) and len(out) == 4
    assert sorted(out.scores) == ["iou", "softmin"]  # thresholded CCP needs the whole dataset
    torch.testing.assert_close(out.scores["softmin"].double(), softmin_by_hand(probs, target), atol=1e-5, rtol=0)
    assert out.indexes.tolist() == [7, 3, 5, 1] and out.inputs.probs.shape == probs.shape
    assert metric.update_count == 1
    report = metric.compute()  # the batch is in the states exactly once, ordered by index
    assert report.indexes.tolist() == [1, 3, 5, 7]
    torch.testing.assert_close(report.scores["softmin"], out.scores["softmin"][torch.tensor([3, 1, 2, 0])])


def test_forward_does_not_compute(monkeypatch):
    def no_compute(self):
        raise AssertionError("forward must not build a report")

    monkeypatch.setattr(LabelQuality, "compute", no_compute)  # before building: torchmetrics wraps it then
    metric = LabelQuality(3, methods=["softmin"])
    probs, target = batch()
    metric(probs, target, indexes=torch.arange(4))
    metric(probs, target, indexes=torch.arange(4, 8))
    assert metric.update_count == 2


def test_failed_forward_changes_nothing():
    metric = LabelQuality(3, methods=["softmin"])
    probs, target = batch()
    target[0, 0, 0] = 9  # not a class
    with pytest.raises(ValueError, match="target"):
        metric(probs, target, indexes=torch.arange(4))
    assert metric.update_count == 0 and metric.indexes == []


def test_metric_has_no_last_batch_side_channel():
    metric = LabelQuality(3)
    assert not hasattr(metric, "keep_last_batch") and not hasattr(metric, "last_batch")


# ---------------------------------------------------------------- MetricCollection
@pytest.mark.parametrize("compute_groups", [True, False])
def test_metric_collection_updates_and_computes(compute_groups):
    probs, target = batch(b=6, seed=1)
    idx = torch.arange(6)
    collection = MetricCollection(
        {"sm": LabelQuality(3, methods=["softmin"]), "all": LabelQuality(3, methods=["softmin", "iou"])},
        compute_groups=compute_groups,
    )
    step = collection(probs[:3], target[:3], indexes=idx[:3])
    assert set(step) == {"sm", "all"} and sorted(step["all"].scores) == ["iou", "softmin"]
    collection.update(probs[3:], target[3:], indexes=idx[3:])
    reports = collection.compute()
    alone = LabelQuality(3, methods=["softmin", "iou"])
    alone.update(probs, target, indexes=idx)
    expected = alone.compute()
    for key, methods in (("sm", ["softmin"]), ("all", ["softmin", "iou"])):
        assert reports[key].indexes.tolist() == list(range(6)) and reports[key].methods == methods
        for m in methods:
            torch.testing.assert_close(reports[key].scores[m], expected.scores[m])
    assert reports["all"].suspects("softmin", k=2).tolist() == expected.suspects("softmin", k=2).tolist()
    collection.reset()
    assert collection["sm"].update_count == 0


def test_metric_collection_groups_identical_metrics():
    probs, target = batch(b=6, seed=4)
    collection = MetricCollection(
        {"a": LabelQuality(3, methods=["softmin"]), "b": LabelQuality(3, methods=["softmin"])}
    )
    collection.update(probs, target, indexes=torch.arange(6))
    collection.update(probs, target, indexes=torch.arange(6, 12))
    assert list(collection.compute_groups.values()) == [["a", "b"]]  # one update serves both
    reports = collection.compute()
    alone = LabelQuality(3, methods=["softmin"])
    alone.update(torch.cat([probs, probs]), torch.cat([target, target]), indexes=torch.arange(12))
    for key in ("a", "b"):
        torch.testing.assert_close(reports[key].scores["softmin"], alone.compute().scores["softmin"])


# ---------------------------------------------------------------- self.log
class Logs(LightningModule):
    def __init__(self, on_step):
        super().__init__()
        self.net = nn.Conv2d(3, 3, 1)
        self.label_quality = LabelQuality(3, methods=["softmin"])
        self.on_step = on_step

    def validation_step(self, batch, batch_idx):
        image, mask, index = batch
        self.label_quality(self.net(image).softmax(1), mask, index)
        self.log("label_quality", self.label_quality, on_step=self.on_step, on_epoch=True)


@pytest.mark.parametrize("on_step", [True, False])
def test_logging_the_metric_says_what_to_log(on_step):
    data = [(torch.rand(3, 4, 4), torch.randint(0, 3, (4, 4)), i) for i in range(4)]
    trainer = Trainer(logger=False, enable_progress_bar=False, enable_checkpointing=False, enable_model_summary=False)
    with pytest.raises(TypeError) as err:
        trainer.validate(Logs(on_step), DataLoader(data, batch_size=2), verbose=False)
    assert str(err.value) == LOG_HINT
    assert "suspect_fraction" in LOG_HINT and "not a scalar" in LOG_HINT


def test_compute_outside_lightning_still_returns_the_report():
    metric = LabelQuality(3, methods=["softmin"])
    metric(*batch(), indexes=torch.arange(4))
    assert metric.compute().indexes.tolist() == [0, 1, 2, 3]


# ---------------------------------------------------------------- the monitor's metric
def small_data(n, seed):
    images, masks = make_street_scenes(n, 16, 24, seed=seed)
    return TensorSegmentationDataset(images, masks)


def validate(monitor, data, tmp_path, **trainer_kwargs):
    torch.manual_seed(0)
    model = SegmentationModule(K, arch="tiny")
    trainer = Trainer(
        logger=False, callbacks=[monitor], enable_progress_bar=False, enable_model_summary=False,
        enable_checkpointing=False, default_root_dir=tmp_path, **trainer_kwargs,
    )  # fmt: skip
    trainer.validate(model, DataLoader(data, batch_size=4), verbose=False)
    return trainer


def test_monitor_scores_with_a_configured_metric(tmp_path):
    data = small_data(6, 3)
    given = LabelQuality(K, methods=["softmin", "iou"], temperature=0.2, ignore_index=255)
    with_metric = LabelQualityMonitor(metric=given, top_k=2, report_dir=tmp_path / "a")
    with_args = LabelQualityMonitor(K, methods=["softmin", "iou"], temperature=0.2, ignore_index=255, top_k=2,
                                    report_dir=tmp_path / "b")  # fmt: skip
    validate(with_metric, data, tmp_path)
    validate(with_args, data, tmp_path)
    assert with_metric.metric is given and with_metric.ignore_index == 255 and with_metric.num_classes == K
    for m in ("softmin", "iou"):
        torch.testing.assert_close(with_metric.report.scores[m], with_args.report.scores[m])
    wait_for_writes()


def test_monitor_metric_clashes_are_named():
    with pytest.raises(ValueError, match=r"\['temperature', 'downsample'\]"):
        LabelQualityMonitor(metric=LabelQuality(3), temperature=0.3, downsample=2)
    with pytest.raises(ValueError, match=r"\['num_classes'\]"):
        LabelQualityMonitor(4, metric=LabelQuality(3))
    with pytest.raises(ValueError, match="num_classes"):
        LabelQualityMonitor()
    with pytest.raises(TypeError, match="LabelQuality, got dict"):
        LabelQualityMonitor(metric={"num_classes": 3})
    assert LabelQualityMonitor(3, metric=LabelQuality(3, methods=["iou"]), rank_by="iou").rank_by == "iou"


def test_monitor_does_nothing_under_fast_dev_run(tmp_path):
    monitor = LabelQualityMonitor(K, top_k=2, report_dir=tmp_path / "report")
    calls = []
    monitor.metric.register_forward_hook(lambda *args: calls.append(1))
    trainer = validate(monitor, small_data(8, 4), tmp_path, fast_dev_run=True)
    assert calls == [] and monitor.report is None and monitor.last_states is None
    assert not (tmp_path / "report").exists()
    assert not any(k.startswith("segqa") for k in trainer.callback_metrics)


def test_monitor_streams_through_forward(tmp_path, monkeypatch):
    """The callback reads each batch's scores from forward's return: one call per batch, no `update` on the side."""
    calls = {"forward": 0, "update": 0}
    forward, update = LabelQuality.forward, LabelQuality.update

    def counted(name, fn):
        def wrapper(self, *args, **kwargs):
            calls[name] += 1
            return fn(self, *args, **kwargs)

        return wrapper

    monkeypatch.setattr(LabelQuality, "forward", counted("forward", forward))
    monkeypatch.setattr(LabelQuality, "update", counted("update", update))
    monitor = LabelQualityMonitor(K, top_k=3, report_dir=tmp_path / "r")
    validate(monitor, small_data(10, 5), tmp_path)  # batches of 4, 4, 2
    assert calls == {"forward": 3, "update": 0}
    assert len(monitor.heap.state()) == 3
    wait_for_writes()


# ---------------------------------------------------------------- export, merge, publish
def test_export_merge_and_publish_without_a_trainer(tmp_path):
    data = small_data(10, 6)
    parts = [Subset(data, range(0, 6)), Subset(data, range(6, 10))]
    exported = []
    for i, part in enumerate(parts):
        monitor = LabelQualityMonitor(K, top_k=2, methods=["softmin", "confident_learning_counts"],
                                      report_dir=tmp_path / f"part{i}")  # fmt: skip
        validate(monitor, part, tmp_path)
        exported.append(monitor.export_state())
    whole = LabelQualityMonitor(K, top_k=2, methods=["softmin", "confident_learning_counts"], report_dir=tmp_path / "w")
    validate(whole, data, tmp_path)
    merged = LabelQualityMonitor(K, top_k=2, methods=["softmin", "confident_learning_counts"])
    report = merged.merge_exported(reversed(exported))
    assert merged.report is report and report.indexes.tolist() == list(range(10))
    for m in report.methods:
        torch.testing.assert_close(report.scores[m], whole.report.scores[m])
    assert sorted(e["index"] for e in merged.heap.state()) == sorted(e["index"] for e in whole.heap.state())
    paths = merged.publish_to([], report, tmp_path / "merged")
    wait_for_writes()
    assert (tmp_path / "merged" / "label_quality.csv").read_text() == (tmp_path / "w" / "label_quality.csv").read_text()
    assert [p.name for p in paths] == ["label_quality.json", "label_quality.csv"]


def test_export_and_merge_errors():
    monitor = LabelQualityMonitor(3)
    with pytest.raises(RuntimeError, match="scored nothing yet"):
        monitor.export_state()
    with pytest.raises(ValueError, match="empty"):
        monitor.merge_exported([])
    with pytest.raises(ValueError, match=r"exported\[0\].*got \['states'\]"):
        monitor.merge_exported([{"states": {}}])
    other = LabelQuality(3, methods=["iou"])
    other.update(*batch(), indexes=torch.arange(4))
    with pytest.raises(ValueError, match="same methods"):
        monitor.merge_exported([{"states": other.state_tensors(), "heap": []}])
    assert monitor.metric.update_count == 0 and monitor.heap.state() == []  # left empty, not half-merged


# ---------------------------------------------------------------- plot
def auroc_by_pairs(score, truth):
    """P(a mislabeled image scores below a clean one), ties counted half: AUROC with lower = mislabeled."""
    bad, good = score[truth], score[~truth]
    wins = sum(float((b < g) + 0.5 * (b == g)) for b in bad for g in good)
    return wins / (len(bad) * len(good))


def test_plot_draws_distributions_and_curves_when_truth_is_known():
    import numpy as np

    probs, target = batch(b=12, seed=2)
    truth = torch.tensor([True, False, False, True] + [False] * 8)
    metric = LabelQuality(3, methods=["softmin", "iou"])
    metric.update(probs, target, indexes=torch.arange(12), is_mislabeled=truth)
    fig, axes = metric.plot()
    assert [a.get_title() for a in axes] == ["score distributions", "ROC", "precision-recall"]
    report = metric.compute()
    assert [t.get_text() for t in axes[0].get_legend().get_texts()] == ["softmin (12)", "iou (12)"]
    for line, m in zip(axes[1].get_lines(), ["softmin", "iou"], strict=False):
        fpr, tpr = line.get_data()
        assert float(np.trapezoid(tpr, fpr)) == pytest.approx(auroc_by_pairs(report.scores[m], truth), abs=1e-6)

    no_truth = LabelQuality(3, methods=["softmin"])
    no_truth.update(probs, target, indexes=torch.arange(12))
    fig, ax = no_truth.plot()
    assert ax.get_title() == "score distributions" and len(fig.axes) == 1
    _, same = metric.plot(ax=ax)  # a given Axes gets the distributions only
    assert same is ax and len(fig.axes) == 1
    with pytest.raises(TypeError, match="LabelQualityReport"):
        metric.plot(val={"softmin": torch.ones(2)})


def test_write_failure_on_exception_warns_on_rank_zero_only(monkeypatch):
    from lightning.pytorch.utilities import rank_zero_only

    def failing():
        raise OSError("disk full")

    monkeypatch.setattr("lightning_segqa.callback.wait_for_writes", failing)
    monitor = LabelQualityMonitor(3)
    with pytest.warns(UserWarning, match="could not be written: disk full"):
        monitor.on_exception(None, None, RuntimeError("boom"))
    monkeypatch.setattr(rank_zero_only, "rank", 1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        monitor.on_exception(None, None, RuntimeError("boom"))  # other ranks stay quiet


def test_report_dir_accepts_a_remote_url(tmp_path):
    import fsspec

    memory = fsspec.filesystem("memory")
    data = small_data(6, 7)
    remote = LabelQualityMonitor(K, top_k=2, report_dir="memory://segqa-test/run")
    local = LabelQualityMonitor(K, top_k=2, report_dir=tmp_path / "local")
    validate(remote, data, tmp_path)
    validate(local, data, tmp_path)
    wait_for_writes()
    assert remote.report_dir == "memory://segqa-test/run"
    for name in ("label_quality.csv", "label_quality.json"):
        assert memory.cat(f"/segqa-test/run/{name}") == (tmp_path / "local" / name).read_bytes()
    memory.rm("/segqa-test", recursive=True)
