from __future__ import annotations

import csv
import io
import json
import tempfile
import warnings
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import unquote, urlparse

import numpy as np
import pytest
import torch
from lightning.pytorch.loggers import CSVLogger, MLFlowLogger, TensorBoardLogger, WandbLogger
from lightning.pytorch.loggers.logger import DummyLogger, Logger
from PIL import Image

from lightning_segqa.loggers import (
    ADAPTERS,
    CSVAdapter,
    FileAdapter,
    MLFlowAdapter,
    NullAdapter,
    TensorBoardAdapter,
    WandbAdapter,
    adapter_class_for,
    adapter_for,
    adapters_for,
)
from lightning_segqa.loggers import base as loggers_base
from lightning_segqa.visuals import (
    SuspectImage,
    figure_to_array,
    plot_detection_curves,
    render_suspect,
)

NAMES = ["road", "car", "bus"]
COLUMNS = ["rank", "index", "softmin", "error"]
ROWS = [[1, 17, 0.0312, True], [2, 4, 0.25, False]]
STEP = 5


def make_suspects() -> list[SuspectImage]:
    h, w = 20, 28
    target = torch.zeros(h, w, dtype=torch.long)
    target[5:12, 4:15] = 1
    target[0] = 255
    pred = target.clone()
    pred[5:12, 4:15] = 2
    scores = torch.linspace(0, 1, h * w).reshape(h, w)
    issue = torch.zeros(h, w, dtype=torch.bool)
    issue[6:10, 5:9] = True
    image = torch.rand(3, h, w, generator=torch.Generator().manual_seed(0))
    return [
        SuspectImage(17, 0.0312, "softmin", target, pred, scores, image, issue, True),
        SuspectImage(4, 0.25, "softmin", target, target.clone(), scores.flip(0), None, None, False),
    ]


SUSPECTS = make_suspects()


def rendered(s: SuspectImage) -> np.ndarray:
    return render_suspect(s, NAMES, None, 255)


def make_figure():
    return plot_detection_curves({"softmin": torch.tensor([0.1, 0.8, 0.3, 0.9])}, torch.tensor([1, 0, 1, 0]))


def log_everything(adapter) -> None:
    adapter.log_suspects("suspects", SUSPECTS, STEP, NAMES, None, 255)
    adapter.log_table("ranking", COLUMNS, ROWS, STEP)
    adapter.log_figure("curves", make_figure(), STEP)


def decode(data: bytes | Path) -> np.ndarray:
    data = data.read_bytes() if isinstance(data, Path) else data
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def segqa_warnings(record) -> list[str]:
    return [str(w.message) for w in record if "lightning_segqa" in str(w.message)]


class PlainLogger(Logger):
    """A logger with no image API; ``root=None`` means it has no directory at all."""

    def __init__(self, root: Path | None) -> None:
        super().__init__()
        self.root = root

    name = property(lambda self: "plain")
    version = property(lambda self: 0)
    log_dir = property(lambda self: None if self.root is None else str(self.root))

    def log_hyperparams(self, *args, **kwargs) -> None:
        pass

    def log_metrics(self, metrics, step=None) -> None:
        pass


# ---------------------------------------------------------------- registry


def test_registry_dispatch(tmp_path, monkeypatch):
    assert adapter_class_for(TensorBoardLogger) is TensorBoardAdapter
    assert adapter_class_for(CSVLogger) is CSVAdapter
    assert adapter_class_for(WandbLogger) is WandbAdapter
    assert adapter_class_for(MLFlowLogger) is MLFlowAdapter
    assert adapter_class_for(DummyLogger) is NullAdapter
    assert adapter_class_for(PlainLogger) is FileAdapter

    class MyCSV(CSVLogger):  # subclasses use their nearest registered base
        pass

    assert adapter_class_for(MyCSV) is CSVAdapter
    monkeypatch.setitem(ADAPTERS, MyCSV, NullAdapter)
    assert isinstance(adapter_for(MyCSV(tmp_path)), NullAdapter)
    kinds = [type(a) for a in adapters_for([CSVLogger(tmp_path), PlainLogger(tmp_path)])]
    assert kinds == [CSVAdapter, FileAdapter]


def test_registry_errors(tmp_path):
    with pytest.raises(TypeError, match="`logger` must be a Lightning Logger, got str"):
        adapter_for("tensorboard")
    with pytest.raises(TypeError, match="`loggers` must be a sequence"):
        adapters_for(CSVLogger(tmp_path))
    with pytest.raises(TypeError, match="`logger_cls` must be a class"):
        adapter_class_for(CSVLogger(tmp_path))


def test_argument_validation(tmp_path):
    adapter = adapter_for(CSVLogger(tmp_path))
    with pytest.raises(TypeError, match="`step` must be a non-negative int, got -1"):
        adapter.log_table("t", ["a"], [[1]], -1)
    with pytest.raises(TypeError, match="`step`"):
        adapter.log_table("t", ["a"], [[1]], True)
    with pytest.raises(ValueError, match=r"`rows\[1\]` must have 2 values, got 1"):
        adapter.log_table("t", ["a", "b"], [[1, 2], [3]], 0)
    with pytest.raises(TypeError, match="SuspectImage.*'dict'"):
        adapter.log_suspects("s", [{"index": 1}], 0, None, None, None)
    with pytest.raises(ValueError, match="`key` must contain a name"):
        adapter.log_table("//", ["a"], [[1]], 0)
    assert not (Path(adapter.logger.log_dir) / "segqa").exists()  # nothing half-written


def test_null_adapter_for_dummy_logger(tmp_path):
    adapter = adapter_for(DummyLogger())
    log_everything(adapter)  # accepted and ignored
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------- TensorBoard


def test_tensorboard_images_text_and_figure(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.util import tensor_util

    logger = TensorBoardLogger(tmp_path, name="tb")
    adapter = adapter_for(logger)
    assert isinstance(adapter, TensorBoardAdapter)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        log_everything(adapter)
    assert segqa_warnings(record) == []
    logger.experiment.flush()

    acc = EventAccumulator(logger.log_dir, size_guidance={"images": 0, "tensors": 0})
    acc.Reload()
    images = set(acc.Tags()["images"])
    assert images == {"suspects/rank01", "suspects/rank02", "curves"}  # stable tags: index and name in captions
    for r, s in enumerate(SUSPECTS, start=1):
        (event,) = acc.Images(f"suspects/rank{r:02d}")
        expected = rendered(s)
        assert event.step == STEP
        assert (event.height, event.width) == expected.shape[:2]
        np.testing.assert_array_equal(decode(event.encoded_image_string), expected)
    (curves,) = acc.Images("curves")
    expected = figure_to_array(make_figure())
    np.testing.assert_array_equal(decode(curves.encoded_image_string), expected)

    def text(tag: str) -> str:
        (event,) = acc.Tensors(f"{tag}/text_summary")
        assert event.step == STEP
        return tensor_util.make_ndarray(event.tensor_proto).item().decode()

    table = text("ranking").splitlines()
    assert table[0] == "| rank | index | softmin | error |"
    assert table[2:] == ["| 1 | 17 | 0.0312 | True |", "| 2 | 4 | 0.25 | False |"]
    captions = text("suspects/captions").splitlines()
    assert captions == [
        "- **rank01**: idx 17 | softmin score 0.0312 | true error",
        "- **rank02**: idx 4 | softmin score 0.2500 | clean",
    ]


# ---------------------------------------------------------------- files


def check_files(root: Path) -> None:
    folder = root / "suspects" / "step000005"
    for r, s in enumerate(SUSPECTS, start=1):
        np.testing.assert_array_equal(decode(folder / f"rank{r:02d}_idx{s.index}.png"), rendered(s))
    with open(folder / "suspects.csv", newline="") as f:
        index = list(csv.DictReader(f))
    assert [(d["rank"], d["index"], d["score"], d["is_mislabeled"], d["file"]) for d in index] == [
        ("1", "17", "0.0312", "True", "rank01_idx17.png"),
        ("2", "4", "0.25", "False", "rank02_idx4.png"),
    ]
    with open(root / "ranking_step000005.csv", newline="") as f:
        assert list(csv.reader(f)) == [COLUMNS, *[[str(v) for v in row] for row in ROWS]]
    expected = figure_to_array(make_figure())
    np.testing.assert_array_equal(decode(root / "curves_step000005.png"), expected)
    assert [p for p in root.rglob(".*")] == []  # no temp files left behind


def test_csv_logger_writes_files_without_warning(tmp_path):
    logger = CSVLogger(tmp_path, name="csv")
    adapter = adapter_for(logger)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        log_everything(adapter)
    assert segqa_warnings(record) == []
    root = tmp_path / "csv" / "version_0" / "segqa"
    assert adapter.files_dir() == root
    check_files(root)


def test_generic_logger_warns_exactly_once_per_instance(tmp_path):
    first, second = PlainLogger(tmp_path / "a"), PlainLogger(tmp_path / "b")
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        log_everything(adapter_for(first))
        log_everything(adapter_for(first))  # a new adapter for the same logger: still once
        adapter_for(second).log_table("ranking", COLUMNS, ROWS, STEP)
    messages = segqa_warnings(record)
    assert len(messages) == 2
    assert "PlainLogger has no image support" in messages[0]
    assert str(tmp_path / "a" / "segqa") in messages[0]
    assert str(tmp_path / "b" / "segqa") in messages[1]
    check_files(tmp_path / "a" / "segqa")


def test_logger_without_directory_uses_temp_dir_with_one_warning(tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # keep mkdtemp inside tmp_path
    logger = PlainLogger(None)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        log_everything(adapter_for(logger))
    (message,) = segqa_warnings(record)
    root = adapter_for(logger).files_dir()
    assert root.parent.parent == tmp_path and root.parent.name.startswith("segqa_")
    assert str(root) in message
    check_files(root)


def test_writes_are_atomic(tmp_path, monkeypatch):
    adapter = adapter_for(CSVLogger(tmp_path))
    adapter.log_table("t", ["a"], [[1]], 0)
    path = adapter.files_dir() / "t_step000000.csv"

    def broken_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(loggers_base.os, "replace", broken_replace)  # where atomic_write lives
    with pytest.raises(OSError, match="disk full"):
        adapter.log_table("t", ["a"], [[2]], 0)
    assert path.read_text() == "a\n1\n"  # old content intact
    assert sorted(p.name for p in path.parent.iterdir()) == ["t_step000000.csv"]


def test_keys_cannot_escape_the_output_folder(tmp_path):
    adapter = adapter_for(CSVLogger(tmp_path))
    adapter.log_table("../evil key", ["a"], [[1]], 0)
    assert (adapter.files_dir() / "_" / "evil_key_step000000.csv").is_file()


# ---------------------------------------------------------------- Weights & Biases


@pytest.fixture(scope="module")
def wandb_run(tmp_path_factory):
    wandb = pytest.importorskip("wandb", reason="wandb is not installed")
    root = tmp_path_factory.mktemp("wandb")
    env = {
        "WANDB_MODE": "offline",
        "WANDB_SILENT": "true",
        "WANDB_DIR": str(root),
        "WANDB_CACHE_DIR": str(root / "cache"),
        "WANDB_CONFIG_DIR": str(root / "config"),
        "WANDB_DATA_DIR": str(root / "data"),
    }
    with pytest.MonkeyPatch.context() as mp:
        for key, value in env.items():
            mp.setenv(key, value)
        logger = WandbLogger(offline=True, save_dir=str(root), project="segqa-tests")
        adapter = adapter_for(logger)
        log_everything(adapter)
        run = logger.experiment
        keys = set(run.summary.keys())
        files = Path(run.dir)
        report_dir = adapter.run_dir()
        outside = root / "elsewhere" / "label_quality.json"  # a report written outside the run: attached
        outside.parent.mkdir()
        outside.write_text('{"indexes": []}')
        adapter.upload_files([outside])
        wandb.finish()
    return SimpleNamespace(adapter=adapter, keys=keys, files=files, report_dir=report_dir)


def test_wandb_logged_keys(wandb_run):
    assert isinstance(wandb_run.adapter, WandbAdapter)
    assert {"suspects/masks", "suspects/panels", "ranking", "curves"} <= wandb_run.keys


def test_wandb_media_files(wandb_run):
    media = wandb_run.files / "media"
    panels = [decode(p) for p in sorted((media / "images" / "suspects").glob("panels_*.png"))]
    assert len(panels) == 2
    expected = [rendered(s) for s in SUSPECTS]
    h, w = max(e.shape[0] for e in expected), max(e.shape[1] for e in expected)
    for e in expected:  # each rendered panel, padded with white to the common size
        padded = np.full((h, w, 3), 255, np.uint8)
        padded[: e.shape[0], : e.shape[1]] = e
        assert any(p.shape == padded.shape and np.array_equal(p, padded) for p in panels)
    overlays = list((media / "images" / "suspects").glob("masks_*.png"))
    assert len(overlays) == 2
    masks = [np.asarray(Image.open(p)) for p in (media / "images" / "mask").rglob("*.png")]
    given = np.where(SUSPECTS[0].target.numpy() == 255, 255, SUSPECTS[0].target.numpy())
    assert any(np.array_equal(m, given.astype(np.uint8)) for m in masks)
    (table_file,) = (media / "table").glob("ranking_*.table.json")
    table = json.loads(table_file.read_text())
    assert table["columns"] == COLUMNS and table["data"] == ROWS


# ---------------------------------------------------------------- MLflow


@pytest.fixture(scope="module")
def mlflow_run(tmp_path_factory):
    pytest.importorskip("mlflow", reason="mlflow / mlflow-skinny is not installed")
    root = tmp_path_factory.mktemp("mlflow")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow >= 3.x refuses file stores otherwise
        mp.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
        logger = MLFlowLogger(experiment_name="segqa", tracking_uri=f"file:{root}/mlruns")
        adapter = adapter_for(logger)
        log_everything(adapter)
        uri = logger.experiment.get_run(logger.run_id).info.artifact_uri
        report_dir = adapter.run_dir()
        report_dir.mkdir(parents=True)
        (report_dir / "label_quality.csv").write_text("rank,index\n")  # already in the run: left as it is
        outside = root / "elsewhere" / "label_quality.json"  # written outside the run: uploaded
        outside.parent.mkdir()
        outside.write_text('{"indexes": []}')
        adapter.upload_files([outside, report_dir / "label_quality.csv"])
        artifacts = {f.path for f in logger.experiment.list_artifacts(logger.run_id, "segqa")}
        logger.finalize("success")
    return SimpleNamespace(
        adapter=adapter, artifacts=Path(unquote(urlparse(uri).path)), report_dir=report_dir, listed=artifacts
    )


def test_mlflow_artifacts(mlflow_run):
    assert isinstance(mlflow_run.adapter, MLFlowAdapter)
    art = mlflow_run.artifacts
    folder = art / "suspects" / "step000005"
    for r, s in enumerate(SUSPECTS, start=1):
        np.testing.assert_array_equal(decode(folder / f"rank{r:02d}_idx{s.index}.png"), rendered(s))
    index = json.loads((folder / "suspects.json").read_text())["suspects"]
    summary = [(d["rank"], d["index"], d["is_mislabeled"]) for d in index]
    assert summary == [(1, 17, True), (2, 4, False)]
    table = json.loads((art / "ranking_step000005_table.json").read_text())
    assert table["columns"] == COLUMNS and table["data"] == ROWS
    assert decode(art / "curves_step000005.png").shape == figure_to_array(make_figure()).shape


def test_wandb_report_files_go_to_the_run(wandb_run):
    assert wandb_run.report_dir == wandb_run.files / "segqa"
    assert json.loads((wandb_run.files / "label_quality.json").read_text()) == {"indexes": []}


def test_mlflow_report_files_go_to_the_run(mlflow_run):
    assert mlflow_run.report_dir == mlflow_run.artifacts / "segqa"
    assert mlflow_run.listed == {"segqa/label_quality.json", "segqa/label_quality.csv"}
    assert json.loads((mlflow_run.artifacts / "segqa" / "label_quality.json").read_text()) == {"indexes": []}


def test_mlflow_uploads_never_read_the_run_off_the_calling_thread(tmp_path, monkeypatch):
    """The writer thread must not call ``get_run``: it reads every metric file of a file-store run,
    racing the training loop's appends ("Metric ... is malformed. No data found")."""
    import threading

    pytest.importorskip("mlflow", reason="mlflow / mlflow-skinny is not installed")
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
    logger = MLFlowLogger(experiment_name="segqa", tracking_uri=f"file:{tmp_path}/mlruns")
    adapter = adapter_for(logger)  # made on this thread, as the monitor does
    report_dir = adapter.run_dir()
    report_dir.mkdir(parents=True)
    (report_dir / "label_quality.csv").write_text("rank,index\n")
    real_get_run, calls = logger.experiment.get_run, []

    def get_run(run_id):
        calls.append(threading.current_thread() is threading.main_thread())
        return real_get_run(run_id)

    monkeypatch.setattr(logger.experiment, "get_run", get_run)
    worker = threading.Thread(target=adapter.upload_files, args=([report_dir / "label_quality.csv"],))
    worker.start()
    worker.join()
    assert calls == []  # the artifact location was read once, when the adapter was made
    logger.finalize("success")


def test_run_dir_of_file_loggers(tmp_path):
    assert adapter_for(CSVLogger(tmp_path, name="csv")).run_dir() == tmp_path / "csv" / "version_0"
    assert adapter_for(TensorBoardLogger(tmp_path, name="tb")).run_dir() == tmp_path / "tb" / "version_0"
    assert adapter_for(PlainLogger(None)).run_dir() is None


def test_files_are_readable_and_never_under_segqa_segqa(tmp_path):
    import os

    umask = os.umask(0)
    os.umask(umask)
    adapter = adapter_for(CSVLogger(tmp_path, name="csv"))
    adapter.log_table("segqa/ranking", ["a"], [[1]], 3)  # the monitor's keys start with its prefix
    adapter.log_figure("segqa/curves", make_figure(), 3)
    adapter.log_suspects("segqa/suspects", SUSPECTS, 3, NAMES, None, 255)
    root = adapter.files_dir()
    expected = {"ranking_step000003.csv", "curves_step000003.png", "suspects"}
    assert {p.name for p in root.iterdir()} == expected
    assert not (root / "segqa").exists()
    files = [p for p in root.rglob("*") if p.is_file()]
    assert len(files) >= 5 and {p.stat().st_mode & 0o777 for p in files} == {0o666 & ~umask}
    adapter.log_table("other/ranking", ["a"], [[1]], 3)  # another first folder stays
    assert (root / "other" / "ranking_step000003.csv").is_file()
