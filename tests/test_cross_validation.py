"""K-fold cross-validation: every image once, out of fold; scores equal a by-hand scoring; resume."""

import json
import shutil

import pytest
import torch
from scipy.stats import hypergeom

from lightning_segqa import LabelQualityReport, kfold_splits, merge_folds
from lightning_segqa.experiments.pipelines import make_demo_dataset
from lightning_segqa.folds import heldout_path
from tests.cv_helpers import DictModule, make_cv, score_by_hand, small_dataset


@pytest.fixture(scope="module")
def dataset():
    return small_dataset()


def test_kfold_splits_are_disjoint_and_seeded():
    a, b = kfold_splits(23, 4, seed=1), kfold_splits(23, 4, seed=1)
    assert a == b and a != kfold_splits(23, 4, seed=2)
    flat = sum(a, [])
    assert sorted(flat) == list(range(23)) and len(flat) == 23
    with pytest.raises(ValueError, match="num_folds"):
        kfold_splits(10, 1)


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_demo_errors_spread_over_the_folds(seed):
    """The demo's corrupted images are not all in one fold (they were: [24, 0, 0] with seed 0)."""
    dataset = make_demo_dataset(120, 16, 24, "drop", seed=seed)
    truth = dataset.is_mislabeled
    folds = kfold_splits(120, 3, seed=seed)
    errors = int(truth.sum())
    for held in folds:
        # errors in a fold of len(held) drawn without replacement: two-sided 99.9 % bounds
        dist = hypergeom(120, errors, len(held))
        lo, hi = dist.ppf(0.0005), dist.ppf(0.9995)
        assert lo <= int(truth[held].sum()) <= hi, [int(truth[f].sum()) for f in folds]


def test_out_of_fold_scores_match_scoring_by_hand_and_resume(tmp_path, dataset):
    cv = make_cv(tmp_path, dataset)
    report = cv.run()
    assert cv.trained_folds == [0, 1]
    assert report.indexes.tolist() == list(range(len(dataset)))
    folds = json.loads((tmp_path / "splits.json").read_text())["folds"]
    assert folds == kfold_splits(len(dataset), 2, seed=3)
    ckpts = [tmp_path / f"fold_{f}" / "checkpoints" / "last.ckpt" for f in range(2)]
    expected = score_by_hand(dataset, folds, ckpts)
    for m in report.methods:
        torch.testing.assert_close(report.scores[m], expected.scores[m], atol=1e-5, rtol=0)
    saved = LabelQualityReport.from_json(tmp_path / "label_quality.json")
    torch.testing.assert_close(saved.scores["softmin"], report.scores["softmin"])
    # one checkpoint per fold, and the cost of each fold is recorded
    assert sorted(p.name for p in tmp_path.rglob("*.ckpt")) == ["last.ckpt", "last.ckpt"]
    cost = torch.load(heldout_path(tmp_path, 0), weights_only=False)["cost"]
    assert cost["checkpoint_bytes"] == ckpts[0].stat().st_size and cost["score_seconds"] > 0

    again = make_cv(tmp_path, dataset)  # identical fingerprint: resumes, trains nothing
    torch.testing.assert_close(again.run().scores["softmin"], report.scores["softmin"])
    assert again.trained_folds == []


def test_resume_retrains_only_missing_folds(tmp_path, finished, dataset):
    shutil.copytree(finished, tmp_path, dirs_exist_ok=True)
    heldout_path(tmp_path, 1).unlink()
    rerun = make_cv(tmp_path, dataset)
    rerun.run()
    assert rerun.trained_folds == [1]


@pytest.fixture(scope="module")
def finished(tmp_path_factory, dataset):
    """A finished 2-fold run, copied by each test that changes something."""
    work_dir = tmp_path_factory.mktemp("finished")
    make_cv(work_dir, dataset).run()
    return work_dir


def _monitor(ignore_index=None):
    from lightning_segqa.callback import LabelQualityMonitor
    from tests.cv_helpers import K

    return LabelQualityMonitor(K, top_k=2, downsample=2, methods=("softmin", "confidence_in_label"),
                               ignore_index=ignore_index)  # fmt: skip


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"dataset": small_dataset(seed=5)}, "data.content"),
        ({"dataset": small_dataset(n=14)}, "data.size: 12 before, 14 now"),
        ({"trainer_kwargs": {"max_epochs": 2}}, "trainer.max_epochs: 1 before, 2 now"),
        ({"factory": lambda fold: DictModule(lr=1e-2)}, "model.hparams.lr: 0.005 before, 0.01 now"),
        ({"monitor": _monitor(ignore_index=0)}, "monitor.ignore_index: None before, 0 now"),
        ({"checkpoint": "best", "checkpoint_monitor": "val/loss"}, "checkpoint.choice: 'last' before, 'best' now"),
        ({"seed": 4}, "seed: 3 before, 4 now"),
        ({"tta": "hflip"}, "tta"),
    ],
)
def test_a_changed_run_is_refused_listing_what_differs(tmp_path, finished, dataset, change, named):
    shutil.copytree(finished, tmp_path, dirs_exist_ok=True)
    change = dict(change)
    data = change.pop("dataset", dataset)
    with pytest.raises(ValueError, match="other settings") as err:
        make_cv(tmp_path, data, **change).run()
    assert named in str(err.value) and "overwrite=True" in str(err.value)


def test_overwrite_starts_over(tmp_path, finished, dataset):
    shutil.copytree(finished, tmp_path, dirs_exist_ok=True)
    cv = make_cv(tmp_path, dataset, overwrite=True, trainer_kwargs={"max_epochs": 2})
    assert cv.run() is not None and cv.trained_folds == [0, 1]
    assert json.loads((tmp_path / "splits.json").read_text())["fingerprint"]["trainer"]["max_epochs"] == 2


def test_cosmetic_trainer_arguments_do_not_block_a_resume(tmp_path, finished, dataset):
    shutil.copytree(finished, tmp_path, dirs_exist_ok=True)
    cv = make_cv(tmp_path, dataset, trainer_kwargs={"enable_progress_bar": True, "log_every_n_steps": 7})
    cv.run()
    assert cv.trained_folds == []


def test_a_fold_run_alone_is_bit_identical_and_merges_when_all_are_done(tmp_path, finished, dataset, caplog):
    alone = tmp_path / "alone"
    assert make_cv(alone, dataset, folds=[1]).run() is None  # fold 0 is missing
    assert "folds [0] of 2 are not done" in caplog.text
    a = torch.load(heldout_path(alone, 1), weights_only=False)["states"]
    b = torch.load(heldout_path(finished, 1), weights_only=False)["states"]  # run with fold 0 before it
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    with pytest.raises(FileNotFoundError, match=r"folds \[0\] of 2 are not done"):
        merge_folds(alone)
    report = make_cv(alone, dataset, folds=[0]).run()  # the last job merges
    assert report is not None and report.indexes.tolist() == list(range(len(dataset)))
    merged = merge_folds(alone, log=False)
    torch.testing.assert_close(merged.scores["softmin"], report.scores["softmin"])


def test_bad_arguments_are_refused_up_front(tmp_path, dataset):
    with pytest.raises(ValueError, match="checkpoint"):
        make_cv(tmp_path, dataset, checkpoint="worst")
    with pytest.raises(ValueError, match="checkpoint_monitor="):
        make_cv(tmp_path, dataset, checkpoint="best")
    with pytest.raises(ValueError, match=r"`folds` must list fold numbers in 0..1, got \[2\]"):
        make_cv(tmp_path, dataset, folds=[2])
    with pytest.raises(ValueError, match="num_samples"):
        make_cv(tmp_path, None, datamodule_factory=lambda f, t, h: None)
    assert not list(tmp_path.iterdir())
