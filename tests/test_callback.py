"""The callback inside real Trainer runs: values logged, files written, gate modes, checkpoints."""

import csv
import json
import time
import warnings
from pathlib import Path

import pytest
import torch
from lightning.pytorch import Trainer
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger
from torch.utils.data import DataLoader

from lightning_segqa import LabelQuality
from lightning_segqa.callback import LabelQualityMonitor
from lightning_segqa.data import TensorSegmentationDataset
from lightning_segqa.experiments import STREET_CLASSES, UNLABELED_INDEX, make_street_scenes
from lightning_segqa.experiments.models import SegmentationModule
from lightning_segqa.gate import LabelQualityError
from lightning_segqa.noise import inject_label_errors

K = len(STREET_CLASSES)
warnings.filterwarnings("ignore", ".*does not have many workers.*")


@pytest.fixture(scope="module")
def data():
    images, masks = make_street_scenes(24, 32, 48, seed=1)
    noisy, truth = inject_label_errors(masks, "drop", 0.25, seed=1, unlabeled_index=UNLABELED_INDEX)
    return TensorSegmentationDataset(images, noisy, truth)


def fit(data, tmp_path, monitor, loggers, epochs=2):
    torch.manual_seed(0)
    model = SegmentationModule(K, arch="tiny", lr=5e-3)
    trainer = Trainer(
        max_epochs=epochs,
        logger=loggers,
        callbacks=[monitor],
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        log_every_n_steps=1,
        default_root_dir=tmp_path,
        num_sanity_val_steps=1,
    )
    trainer.fit(model, DataLoader(data, batch_size=8, shuffle=True), DataLoader(data, batch_size=8))
    return trainer, model


def by_hand(model, data, **kwargs):
    metric = LabelQuality(K, **kwargs)
    model.eval()
    with torch.no_grad():
        for batch in DataLoader(data, batch_size=5):
            metric.update(model(batch["image"]), batch["mask"], batch["index"], batch.get("is_mislabeled"))
    return metric.compute()


def test_tensorboard_and_csv_logging(data, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    tb = TensorBoardLogger(tmp_path, name="tb")
    csv_logger = CSVLogger(tmp_path, name="csv")
    monitor = LabelQualityMonitor(K, top_k=3, class_names=STREET_CLASSES, downsample=2)
    trainer, model = fit(data, tmp_path, monitor, [tb, csv_logger])
    report = monitor.report
    assert monitor.metric.input_format == "logits"  # "auto" trusts the key `logits`
    expected = by_hand(model, data, downsample=2)
    for m in report.methods:
        torch.testing.assert_close(report.scores[m], expected.scores[m], atol=1e-5, rtol=0)
    auroc = report.detection()["softmin"]["auroc"]
    assert auroc == pytest.approx(expected.detection()["softmin"]["auroc"], abs=1e-6)

    tb.experiment.flush()
    acc = EventAccumulator(tb.log_dir, size_guidance={"images": 0, "tensors": 0, "scalars": 0})
    acc.Reload()
    scalars = acc.Scalars("segqa/auroc_softmin")
    assert len(scalars) == 2  # one per epoch, none from the sanity check
    assert scalars[-1].value == pytest.approx(auroc, abs=1e-6)
    last_step = scalars[-1].step  # pictures sit at the step of the epoch's scalars
    image_tags = [
        t for t in acc.Tags()["images"] if t.startswith("segqa/suspects") and acc.Images(t)[-1].step == last_step
    ]
    assert len(image_tags) == 3
    first = acc.Images(image_tags[0])[-1]
    assert first.width > 48 and first.height >= 32
    worst = report.ranking("softmin")[0].item()
    text_tags = acc.Tags()["tensors"]
    captions = acc.Tensors(next(t for t in text_tags if "captions" in t))[-1].tensor_proto.string_val[0].decode()
    assert f"idx {worst}" in captions.splitlines()[0]
    table_tag = next(t for t in text_tags if "ranking" in t)
    table = acc.Tensors(table_tag)[-1].tensor_proto.string_val[0].decode()
    assert f"| 1 | {worst} |" in table.replace("  ", " ")

    with open(csv_logger.log_dir + "/metrics.csv") as f:
        rows = [r for r in csv.DictReader(f) if r.get("segqa/auroc_softmin")]
    assert float(rows[-1]["segqa/auroc_softmin"]) == pytest.approx(auroc, abs=1e-6)
    assert (monitor.resolve_report_dir(trainer) / "detection_curves.png").stat().st_size > 1000
    saved = json.loads((monitor.resolve_report_dir(trainer) / "label_quality.json").read_text())
    assert saved["indexes"] == list(range(len(data)))
    assert saved["scores"]["softmin"] == pytest.approx(report.scores["softmin"].tolist(), abs=1e-6)


def test_csv_logger_gets_pictures_as_files(data, tmp_path):
    csv_logger = CSVLogger(tmp_path, name="csv")
    monitor = LabelQualityMonitor(K, top_k=2, methods=["softmin", "confident_learning_counts"])
    fit(data, tmp_path, monitor, [csv_logger], epochs=1)
    pngs = sorted((tmp_path / "csv").rglob("*.png"))
    worst = monitor.report.ranking("softmin")[:2].tolist()
    assert len(pngs) >= 2
    assert all(any(f"idx{i}" in p.name for p in pngs) for i in worst)
    csvs = [p for p in (tmp_path / "csv").rglob("*.csv") if "ranking" in p.name]
    assert csvs and str(worst[0]) in csvs[0].read_text().splitlines()[1]


@pytest.mark.parametrize("on_fail", ["warn", "stop", "raise"])
def test_gate_modes(data, tmp_path, on_fail, monkeypatch):
    monitor = LabelQualityMonitor(
        K, top_k=0, methods=["softmin"], suspect_threshold=1.0, max_suspect_fraction=0.0, on_fail=on_fail
    )
    if on_fail == "raise":
        import lightning_segqa.report as report_module

        slow_write = report_module.atomic_write

        def slow(path, data):  # a slow disk: the report must still be there when the error arrives
            time.sleep(0.3)
            slow_write(path, data)

        monkeypatch.setattr(report_module, "atomic_write", slow)
        with pytest.raises(LabelQualityError, match="gate FAILED"):
            fit(data, tmp_path, monitor, False, epochs=3)
        saved = json.loads((tmp_path / "label_quality.json").read_text())
        assert saved["indexes"] == list(range(len(data)))
        return
    with pytest.warns(UserWarning, match="gate FAILED"):
        trainer, _ = fit(data, tmp_path, monitor, False, epochs=3)
    assert trainer.current_epoch == (1 if on_fail == "stop" else 3)
    assert monitor.decision is not None and not monitor.decision.passed


def test_missing_keys_error_lists_what_is_there(data, tmp_path):
    monitor = LabelQualityMonitor(K, target_key="mask_gt")
    with pytest.raises(KeyError, match=r"mask_gt.*'image', 'index', 'is_mislabeled', 'logits', 'target'"):
        fit(data, tmp_path, monitor, False, epochs=1)


def test_custom_extract_and_state_dict(data, tmp_path):
    monitor = LabelQualityMonitor(
        K,
        methods=["softmin", "iou"],
        top_k=1,
        extract=lambda out, batch: {
            "preds": out["logits"].softmax(1),
            "target": batch["mask"],
            "index": batch["index"],
        },
    )
    fit(data, tmp_path, monitor, False, epochs=1)
    assert monitor.report.is_mislabeled is None
    state = monitor.state_dict()
    fresh = LabelQualityMonitor(K, methods=["softmin", "iou"], top_k=1)
    fresh.load_state_dict(state)
    torch.testing.assert_close(fresh.report.scores["softmin"], monitor.report.scores["softmin"])
    assert [e.index for e in fresh.heap.entries()] == [e.index for e in monitor.heap.entries()]


def test_bad_arguments():
    with pytest.raises(ValueError, match="rank_by"):
        LabelQualityMonitor(K, methods=["iou"], rank_by="softmin")
    with pytest.raises(ValueError, match="on_fail"):
        LabelQualityMonitor(K, on_fail="explode")
    with pytest.raises(ValueError, match="class_names"):
        LabelQualityMonitor(K, class_names=["a"])
    with pytest.raises(ValueError, match="top_k"):
        LabelQualityMonitor(K, top_k=-1)


@pytest.mark.slow
def test_ddp_two_processes_give_the_same_report(data, tmp_path, capfd):
    """Validation under DDP (2 CPU processes, gloo): the written report equals one process's.

    The monitor's own scalars raise no "use sync_dist=True" warning (the processes' stderr is read).
    """
    from lightning_segqa import LabelQualityReport

    torch.manual_seed(0)
    model = SegmentationModule(K, arch="tiny")
    subset = Named(torch.utils.data.Subset(data, list(range(11))), "img")  # odd: the sampler repeats an index
    reports = {}
    for name, kwargs in {"ddp": {"devices": 2, "strategy": "ddp_spawn"}, "single": {"devices": 1}}.items():
        monitor = LabelQualityMonitor(K, top_k=2, downsample=2, report_dir=tmp_path / name)
        trainer = Trainer(
            accelerator="cpu",
            logger=False,
            callbacks=[monitor],
            enable_progress_bar=False,
            enable_model_summary=False,
            **kwargs,
        )
        trainer.validate(model, DataLoader(subset, batch_size=3), verbose=False)
        reports[name] = LabelQualityReport.from_json(tmp_path / name / "label_quality.json")
    ddp, single = reports["ddp"], reports["single"]
    err = capfd.readouterr().err
    assert "GLOBAL_RANK: 1" in err  # the second process's stderr is read
    assert "self.log('segqa/" not in err
    assert ddp.indexes.tolist() == single.indexes.tolist() == list(range(11))
    assert ddp.names == single.names == [f"img_{i:03d}" for i in range(11)]  # names are gathered with the scores
    for m in single.methods:
        torch.testing.assert_close(ddp.scores[m], single.scores[m], atol=1e-5, rtol=0)


def test_suspect_heap_keeps_worst_and_nan_when_room():
    from lightning_segqa.functional._inputs import prepare_inputs
    from lightning_segqa.suspects import SuspectHeap

    heap = SuspectHeap(k=3)
    probs = torch.rand(4, 3, 4, 4).softmax(1)
    prepared = prepare_inputs(probs, probs.argmax(1))
    heap.push(torch.tensor([0.5, float("nan"), 0.2, 0.9]), torch.tensor([10, 11, 12, 13]), prepared)
    assert [e.index for e in heap.entries()] == [12, 10, 13]
    heap.push(torch.tensor([0.1, 0.95]), torch.tensor([20, 21]), prepare_inputs(probs[:2], probs[:2].argmax(1)))
    assert [e.index for e in heap.entries()] == [20, 12, 10]
    small = SuspectHeap(k=2)
    small.push(torch.tensor([float("nan")]), torch.tensor([5]), prepare_inputs(probs[:1], probs[:1].argmax(1)))
    assert [e.index for e in small.entries()] == [5]


def test_fit_with_wandb_and_mlflow_loggers(data, tmp_path, monkeypatch):
    """Both loggers attached to one real fit: each gets the pictures, the table, the scalars and the report files.

    The report files land in the W&B run's own folder (the first logger) and in the MLflow run's
    artifacts, readable by others, never in the working directory where the next run would overwrite them.
    """
    wandb = pytest.importorskip("wandb", reason="wandb is not installed")
    pytest.importorskip("mlflow", reason="mlflow / mlflow-skinny is not installed")
    from urllib.parse import unquote, urlparse

    from lightning.pytorch.loggers import MLFlowLogger, WandbLogger

    for key, value in {
        "WANDB_MODE": "offline",
        "WANDB_SILENT": "true",
        "WANDB_DIR": str(tmp_path / "wandb"),
        "WANDB_CACHE_DIR": str(tmp_path / "wandb" / "cache"),
        "WANDB_CONFIG_DIR": str(tmp_path / "wandb" / "config"),
        "WANDB_DATA_DIR": str(tmp_path / "wandb" / "data"),
        "MLFLOW_ALLOW_FILE_STORE": "true",
        "MLFLOW_DISABLE_TELEMETRY": "true",
    }.items():
        monkeypatch.setenv(key, value)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "wandb").mkdir()
    wb = WandbLogger(offline=True, save_dir=str(tmp_path / "wandb"), project="segqa-fit")
    ml = MLFlowLogger(experiment_name="segqa-fit", tracking_uri=f"file:{tmp_path}/mlruns")
    monitor = LabelQualityMonitor(K, top_k=2, class_names=STREET_CLASSES)
    try:
        trainer, _ = fit(data, tmp_path, monitor, [wb, ml])
        run_dir = Path(wb.experiment.dir)
        summary = dict(wb.experiment.summary)
    finally:
        wandb.finish()
    auroc = monitor.report.detection()["softmin"]["auroc"]
    # W&B: masks overlays and panels as images, the ranked table, the AUROC scalar
    assert summary["segqa/auroc_softmin"] == pytest.approx(auroc, abs=1e-6)
    assert len(list((run_dir / "media" / "images" / "segqa" / "suspects").glob("panels_*.png"))) >= 2
    (table_file, *_) = sorted((run_dir / "media" / "table" / "segqa").glob("ranking_*.table.json"))
    assert json.loads(table_file.read_text())["data"][0][1] == int(monitor.report.suspects("softmin", k=1))
    # MLflow: the AUROC metric history (one value per epoch) and the picture artifacts
    client = ml.experiment
    history = client.get_metric_history(ml.run_id, "segqa/auroc_softmin")
    assert len(history) == 2 and history[-1].value == pytest.approx(auroc, abs=1e-6)
    art = Path(unquote(urlparse(client.get_run(ml.run_id).info.artifact_uri).path))
    step_dir = sorted((art / "segqa" / "suspects").glob("step*"))[-1]
    assert len(list(step_dir.glob("rank*.png"))) == 2
    # the report files: in the W&B run's folder and the MLflow run's artifacts, not in the working directory
    assert monitor.resolve_report_dir(trainer) == run_dir / "segqa"
    for folder in (run_dir / "segqa", art / "segqa"):
        saved = json.loads((folder / "label_quality.json").read_text())
        assert saved["indexes"] == list(range(len(data)))
        assert saved["scores"]["softmin"] == pytest.approx(monitor.report.scores["softmin"].tolist(), abs=1e-6)
        assert (folder / "label_quality.csv").stat().st_mode & 0o777 == 0o644
    assert not list(tmp_path.glob("label_quality*")) and not list(tmp_path.glob("**/segqa/segqa"))
    artifacts = {f.path for f in client.list_artifacts(ml.run_id, "segqa")}
    assert {"segqa/label_quality.json", "segqa/label_quality.csv"} <= artifacts


def test_probabilities_under_the_logits_key_are_caught(data, tmp_path):
    """`auto` trusts the key `logits` only after checking the first batch: probabilities there warn, not mis-score."""

    def extract(outputs, batch):
        return {"logits": outputs["logits"].softmax(1), "target": outputs["target"], "index": outputs["index"]}

    monitor = LabelQualityMonitor(K, top_k=0, methods=["softmin"], extract=extract)
    with pytest.warns(UserWarning, match="does not look like logits"):
        _, model = fit(data, tmp_path, monitor, False, epochs=1)
    assert monitor.metric.input_format == "auto"
    expected = by_hand(model, data, methods=["softmin"])
    torch.testing.assert_close(monitor.report.scores["softmin"], expected.scores["softmin"], atol=1e-5, rtol=0)


def test_compiled_kernels_in_a_real_fit(data, tmp_path):
    """`compile=True` inside Lightning's validation loop (inference mode) gives the eager report."""
    from lightning_segqa.functional import fused
    from tests.conftest import NO_COMPILER, cpp_compiler

    if cpp_compiler() is None:
        pytest.skip(NO_COMPILER)

    methods = ["softmin", "confidence_in_label", "correctly_classified_pixels", "iou"]
    monitor = LabelQualityMonitor(K, top_k=0, methods=methods, ignore_index=UNLABELED_INDEX, compile=True)
    _, model = fit(data, tmp_path, monitor, False, epochs=1)
    assert monitor.metric.compiled_kernels and fused._STATE["broken"] is None
    expected = by_hand(model, data, methods=methods, ignore_index=UNLABELED_INDEX)
    for m in methods:
        torch.testing.assert_close(monitor.report.scores[m], expected.scores[m], atol=1e-5, rtol=0)


class Named(torch.utils.data.Dataset):
    """A dataset whose items carry a file-like name (the monitor reads it from the batch)."""

    def __init__(self, base, prefix):
        self.base, self.prefix = base, prefix

    def __len__(self):
        return len(self.base)

    def __getitem__(self, i):
        return {**self.base[i], "name": f"{self.prefix}_{i:03d}"}


def small_data(n, seed):
    images, masks = make_street_scenes(n, 16, 24, seed=seed)
    return TensorSegmentationDataset(images, masks)


class MultiLoaderModule(SegmentationModule):
    def validation_step(self, batch, batch_idx, dataloader_idx=0):
        return super().validation_step(batch, batch_idx)


def validate(monitor, loaders, tmp_path, loggers=False):
    torch.manual_seed(0)
    model = MultiLoaderModule(K, arch="tiny")
    trainer = Trainer(
        logger=loggers, callbacks=[monitor], enable_progress_bar=False, enable_model_summary=False,
        default_root_dir=tmp_path,
    )  # fmt: skip
    trainer.validate(model, loaders, verbose=False)
    return trainer, model


def test_names_from_the_batch_and_one_report_per_dataloader(tmp_path):
    """Two validation sets with overlapping indexes stay apart; every output names the images."""
    first, second = Named(small_data(6, 1), "street"), Named(small_data(4, 2), "other")
    monitor = LabelQualityMonitor(K, top_k=2, methods=["softmin", "iou"], report_dir=tmp_path / "r")
    csv_logger = CSVLogger(tmp_path)
    loaders = [DataLoader(first, batch_size=4), DataLoader(second, batch_size=3)]
    trainer, model = validate(monitor, loaders, tmp_path, csv_logger)
    assert sorted(monitor.reports) == [0, 1] and monitor.report is monitor.reports[0]
    for idx, data in enumerate((first, second)):
        report, expected = monitor.reports[idx], by_hand(model, data, methods=["softmin", "iou"])
        assert report.indexes.tolist() == list(range(len(data)))
        torch.testing.assert_close(report.scores["softmin"], expected.scores["softmin"], atol=1e-5, rtol=0)
        assert report.names == [data.prefix + f"_{i:03d}" for i in range(len(data))]
    files = {0: tmp_path / "r" / "label_quality.json", 1: tmp_path / "r" / "label_quality_dataloader_1.json"}
    for idx, path in files.items():
        saved = json.loads(path.read_text())
        assert saved["names"] == monitor.reports[idx].names
    rows = list(csv.DictReader((tmp_path / "r" / "label_quality.csv").open()))
    assert [r["name"] for r in rows] == [monitor.report.names[i] for i in monitor.report.ranking("softmin").tolist()]
    assert {"segqa/suspect_fraction", "segqa_dataloader_1/suspect_fraction"} <= set(trainer.callback_metrics)
    worst = monitor.report.ranking("softmin")[0].item()
    assert [s.name for s in monitor.suspect_images(monitor.report)][0] == f"street_{worst:03d}"
    files_dir = Path(csv_logger.log_dir) / "segqa"
    header, top = next(files_dir.glob("ranking_step*.csv")).read_text().splitlines()[:2]
    assert header.startswith("rank,index,name,") and top.startswith(f"1,{worst},street_{worst:03d},")
    assert (files_dir / "segqa_dataloader_1").is_dir() and not (files_dir / "segqa").exists()


def test_index_none_names_the_key(tmp_path):
    def extract(outputs, batch):
        return {"logits": outputs["logits"], "target": outputs["target"], "idx": None}

    monitor = LabelQualityMonitor(K, top_k=0, methods=["softmin"], index_key="idx", extract=extract)
    with pytest.raises(TypeError, match=r"'idx' is None; it must hold each image's dataset index"):
        validate(monitor, DataLoader(small_data(4, 1), batch_size=2), tmp_path)


def test_gate_waits_for_start_epoch_and_the_error_names_the_suspects(tmp_path):
    data = Named(small_data(6, 1), "img")
    monitor = LabelQualityMonitor(
        K, top_k=0, methods=["softmin"], suspect_threshold=1.0, max_suspect_fraction=0.5, on_fail="raise",
        start_epoch=1,
    )  # fmt: skip
    torch.manual_seed(0)
    trainer = Trainer(
        max_epochs=3, logger=False, callbacks=[monitor], enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, num_sanity_val_steps=0, default_root_dir=tmp_path, limit_train_batches=1,
    )  # fmt: skip
    with pytest.raises(LabelQualityError) as info:
        trainer.fit(SegmentationModule(K, arch="tiny"), DataLoader(data, batch_size=6), DataLoader(data, batch_size=4))
    assert trainer.current_epoch == 1  # epoch 0 was scored but not gated
    err, report = info.value, monitor.report
    assert (err.fraction, err.limit, err.method) == (1.0, 0.5, "softmin")
    assert err.suspects == report.ranking("softmin").tolist()
    assert err.names == [f"img_{i:03d}" for i in err.suspects]
    assert f"img_{err.suspects[0]:03d} (#{err.suspects[0]}," in str(err)
