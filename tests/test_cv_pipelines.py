"""Cross-validation with the user's own pipeline: datamodules, tuple batches, checkpoints, loggers, refusals."""

import csv
import importlib.util
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from lightning.pytorch import Callback, LightningDataModule
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger
from torch.utils.data import DataLoader, Dataset, WeightedRandomSampler

from lightning_segqa.callback import LabelQualityMonitor
from tests.cv_helpers import DictModule, K, make_cv, score_by_hand, small_dataset

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "cv_own_pipeline.py"


@pytest.fixture(scope="module")
def dataset():
    return small_dataset()


class Tagged(Dataset):
    """Tuple samples ``(image, mask, index)``; records which indexes its transform saw."""

    def __init__(self, base, indexes, shift):
        self.base, self.indexes, self.shift, self.seen = base, list(indexes), shift, []

    def __len__(self):
        return len(self.indexes)

    def __getitem__(self, i):
        item = self.base[self.indexes[i]]
        self.seen.append(int(item["index"]))
        return item["image"] + self.shift, item["mask"], item["index"]


class TupleData(LightningDataModule):
    made: list = []

    def __init__(self, base, train, held, drop_last=False, sampler=False):
        super().__init__()
        self.train_set = Tagged(base, train, shift=0.5)  # "augmentation": training only
        self.held_set = Tagged(base, held, shift=0.0)
        self.drop_last, self.sampler = drop_last, sampler
        TupleData.made.append(self)

    def train_dataloader(self):
        return DataLoader(self.train_set, batch_size=4, shuffle=True)

    def val_dataloader(self):
        if self.sampler:
            weights = torch.ones(len(self.held_set))
            return DataLoader(self.held_set, batch_size=4, sampler=WeightedRandomSampler(weights, len(weights)))
        return DataLoader(self.held_set, batch_size=4, drop_last=self.drop_last)


class TupleModule(DictModule):
    def training_step(self, batch, batch_idx):
        image, mask, _ = batch
        return F.cross_entropy(self(image), mask)

    def validation_step(self, batch, batch_idx):
        return self(batch[0])  # logits only: the monitor's `extract` reads the rest from the tuple


def tuple_monitor():
    return LabelQualityMonitor(
        K, top_k=2, downsample=2, methods=("softmin", "confidence_in_label"),
        extract=lambda logits, batch: {"logits": logits, "target": batch[1], "index": batch[2]},
    )  # fmt: skip


def test_datamodule_factory_keeps_train_transforms_out_of_scoring(tmp_path, dataset):
    TupleData.made.clear()
    cv = make_cv(
        tmp_path, None, factory=lambda fold: TupleModule(), monitor=tuple_monitor(), num_samples=len(dataset),
        datamodule_factory=lambda fold, train, held: TupleData(dataset, train, held),
    )  # fmt: skip
    report = cv.run()
    assert report.indexes.tolist() == list(range(len(dataset)))
    folds = [sorted(dm.held_set.indexes) for dm in TupleData.made[-2:]]
    for dm, held in zip(TupleData.made[-2:], folds, strict=True):
        assert set(dm.train_set.seen) == set(range(len(dataset))) - set(held)  # augmented: training part only
        assert set(dm.held_set.seen) == set(held)
    # the held-out scores are those of the evaluation pipeline (no shift), by hand
    ckpts = [tmp_path / f"fold_{f}" / "checkpoints" / "last.ckpt" for f in range(2)]
    expected = score_by_hand(dataset, folds, ckpts, module_cls=TupleModule)
    torch.testing.assert_close(report.scores["softmin"], expected.scores["softmin"], atol=1e-5, rtol=0)


@pytest.mark.parametrize(("dm_kwargs", "match"), [({"drop_last": True}, "drop_last"),
                                                  ({"sampler": True}, "WeightedRandomSampler")])  # fmt: skip
def test_a_held_out_loader_that_cannot_be_scored_is_refused_before_training(tmp_path, dataset, dm_kwargs, match):
    fits = []

    class Count(Callback):
        def on_fit_start(self, trainer, pl_module):
            fits.append(1)

    cv = make_cv(
        tmp_path, dataset, factory=lambda fold: TupleModule(), monitor=tuple_monitor(), callbacks=[Count()],
        datamodule_factory=lambda fold, train, held: TupleData(dataset, train, held, **dm_kwargs),
    )  # fmt: skip
    with pytest.raises(ValueError, match=match):
        cv.run()
    assert fits == [] and not list(tmp_path.glob("fold_*"))


@pytest.mark.parametrize("log_key", ["val/loss", None])
def test_default_checkpoint_needs_no_val_loss_and_keeps_one_file(tmp_path, dataset, log_key):
    cv = make_cv(tmp_path, dataset, factory=lambda fold: DictModule(log_key=log_key), keep_checkpoints=False)
    assert cv.run() is not None
    assert list(tmp_path.rglob("*.ckpt")) == []  # deleted once each fold was scored


def test_best_checkpoint_by_the_key_and_mode_given(tmp_path, dataset):
    cv = make_cv(
        tmp_path, dataset, trainer_kwargs={"max_epochs": 3}, checkpoint="best", checkpoint_monitor="val/loss",
        checkpoint_mode="max",
    )  # fmt: skip
    report = cv.run()
    ckpts = sorted(tmp_path.rglob("*.ckpt"))
    assert [p.name for p in ckpts] == ["best.ckpt", "best.ckpt"]
    for path in ckpts:  # mode="max": the epoch with the highest val/loss was kept
        saved = torch.load(path, weights_only=False)
        callback = next(v for k, v in saved["callbacks"].items() if k.startswith("ModelCheckpoint"))
        assert callback["monitor"] == "val/loss" and callback["best_model_score"] is not None
    folds = [cv_fold for cv_fold in __import__("json").loads((tmp_path / "splits.json").read_text())["folds"]]
    expected = score_by_hand(dataset, folds, [tmp_path / f"fold_{f}" / "checkpoints" / "best.ckpt" for f in range(2)])
    torch.testing.assert_close(report.scores["softmin"], expected.scores["softmin"], atol=1e-5, rtol=0)


@pytest.mark.parametrize(
    ("trainer_kwargs", "match"),
    [
        ({"logger": CSVLogger("x")}, "logger_factory="),
        ({"default_root_dir": "x"}, "pass work_dir="),
        ({"callbacks": [ModelCheckpoint()]}, "checkpoint_monitor="),
        ({"callbacks": [LabelQualityMonitor(K)]}, "monitor="),
        ({"enable_checkpointing": False}, "keep_checkpoints=False"),
        ({"strategy": "fsdp"}, "not supported"),
        ({"strategy": "deepspeed_stage_3"}, "not supported"),
        ({"fast_dev_run": True}, "max_epochs=1"),
    ],
)
def test_trainer_arguments_the_runner_owns_are_refused_naming_the_right_one(tmp_path, dataset, trainer_kwargs, match):
    with pytest.raises(ValueError, match=match):
        make_cv(tmp_path, dataset, trainer_kwargs=trainer_kwargs)
    assert not list(tmp_path.iterdir())


def test_callbacks_in_trainer_kwargs_join_every_fold(tmp_path, dataset):
    starts = []

    class Count(Callback):
        def on_fit_start(self, trainer, pl_module):
            starts.append(trainer.default_root_dir)

    make_cv(tmp_path, dataset, trainer_kwargs={"callbacks": [Count()]}).run()
    assert [Path(p).name for p in starts] == ["fold_0", "fold_1"]


def test_progress_and_the_merged_report_go_to_the_users_logger(tmp_path, dataset, caplog):
    def csv_logger(name, version):
        return CSVLogger(tmp_path / "csv", name=name, version=version)

    cv = make_cv(tmp_path, dataset, logger_factory=csv_logger, trainer_kwargs={"logger": True})
    cv.run()
    assert "fold 1 of 2 (fold_0): training on" in caplog.text
    assert "fold 2 of 2 (fold_1) done; elapsed" in caplog.text and "s left (2 of 2 folds" in caplog.text
    for fold in (0, 1):  # each fold's logger gets the progress and the fold's cost
        with open(tmp_path / "csv" / "logs" / f"fold_{fold}" / "metrics.csv") as f:
            row = [r for r in csv.DictReader(f) if r.get("cv/folds_done")][-1]
        assert int(float(row["cv/folds_done"])) == fold + 1 and float(row["cv/checkpoint_bytes"]) > 0
    assert float(row["cv/remaining_seconds"]) == 0 and float(row["cv/elapsed_seconds"]) > 0
    merged = tmp_path / "csv" / "logs" / "merged"
    tables = sorted(merged.rglob("*ranking*"))
    assert tables, sorted(merged.rglob("*"))
    stamp = [p.stat().st_mtime_ns for p in tables]
    cv2 = make_cv(tmp_path, dataset, logger_factory=csv_logger, trainer_kwargs={"logger": True})
    cv2.run()  # nothing new: the merged report is not logged a second time
    assert [p.stat().st_mtime_ns for p in sorted(merged.rglob("*ranking*"))] == stamp


def test_own_pipeline_example_runs(tmp_path, capsys):
    """The complete example of docs/cross_validation.md: own module, tuple batches, datamodule, CSV logs."""
    spec = importlib.util.spec_from_file_location("cv_own_pipeline", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    out = module.main(["--out", str(tmp_path), "--images", "12", "--epochs", "1", "--folds", "0", "1"])
    assert out["report"] is None  # fold 2 missing: the job array's last job merges
    out = module.main(["--out", str(tmp_path), "--images", "12", "--epochs", "1", "--folds", "2"])
    report = out["report"]
    assert report.indexes.tolist() == list(range(12))
    assert "ranked by softmin" in capsys.readouterr().out
    assert sorted(p.name for p in tmp_path.rglob("*.ckpt")) == ["best.ckpt"] * 3
    assert (tmp_path / "logs" / "fold_0" / "metrics.csv").exists()
