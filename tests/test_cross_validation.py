"""K-fold cross-validation: every image once, out of fold; scores equal a by-hand scoring; resume."""

import json
import warnings

import pytest
import torch
from torch.utils.data import DataLoader, Subset

from lightning_segqa import LabelQuality, LabelQualityReport
from lightning_segqa.callback import LabelQualityMonitor
from lightning_segqa.cross_validation import CrossValidation, kfold_splits
from lightning_segqa.data import STREET_CLASSES, UNLABELED_INDEX, TensorSegmentationDataset, make_street_scenes
from lightning_segqa.models import SegmentationModule
from lightning_segqa.noise import inject_label_errors

K = len(STREET_CLASSES)
warnings.filterwarnings("ignore", ".*does not have many workers.*")


def make_cv(tmp_path, dataset, factory=None, **kwargs):
    monitor = LabelQualityMonitor(K, top_k=2, downsample=2)
    return CrossValidation(
        factory or (lambda fold: SegmentationModule(K, arch="tiny", lr=5e-3)),
        dataset,
        monitor,
        tmp_path,
        num_folds=3,
        seed=3,
        batch_size=6,
        trainer_kwargs={
            "max_epochs": 1,
            "enable_progress_bar": False,
            "num_sanity_val_steps": 0,
            "log_every_n_steps": 1,
        },
        **kwargs,
    )


@pytest.fixture(scope="module")
def dataset():
    images, masks = make_street_scenes(18, 32, 48, seed=2)
    noisy, truth = inject_label_errors(masks, "swap", 0.3, seed=2, unlabeled_index=UNLABELED_INDEX)
    return TensorSegmentationDataset(images, noisy, truth)


def test_kfold_splits_are_disjoint_and_seeded():
    a, b = kfold_splits(23, 4, seed=1), kfold_splits(23, 4, seed=1)
    assert a == b and a != kfold_splits(23, 4, seed=2)
    flat = sum(a, [])
    assert sorted(flat) == list(range(23)) and len(flat) == 23
    with pytest.raises(ValueError, match="num_folds"):
        kfold_splits(10, 1)


def test_out_of_fold_scores_match_scoring_by_hand_and_resume(tmp_path, dataset):
    torch.manual_seed(0)
    cv = make_cv(tmp_path, dataset)
    report = cv.run()
    assert cv.trained_folds == [0, 1, 2]
    assert report.indexes.tolist() == list(range(len(dataset)))
    folds = json.loads((tmp_path / "splits.json").read_text())["folds"]
    assert folds == kfold_splits(len(dataset), 3, seed=3)

    # by hand: each fold's last checkpoint predicts its held-out images, one metric for all
    metric = LabelQuality(K, downsample=2)
    for fold, held in enumerate(folds):
        model = SegmentationModule.load_from_checkpoint(tmp_path / f"fold_{fold}" / "checkpoints" / "last.ckpt")
        model.eval()
        with torch.no_grad():
            for batch in DataLoader(Subset(dataset, held), batch_size=4):
                metric.update(model(batch["image"]), batch["mask"], batch["index"], batch["is_mislabeled"])
    expected = metric.compute()
    for m in report.methods:
        torch.testing.assert_close(report.scores[m], expected.scores[m], atol=1e-5, rtol=0)
    saved = LabelQualityReport.from_json(tmp_path / "label_quality.json")
    torch.testing.assert_close(saved.scores["softmin"], report.scores["softmin"])

    # resume: finished folds are not retrained
    def boom(fold):
        raise AssertionError("a finished fold was retrained")

    again = make_cv(tmp_path, dataset, factory=boom).run()
    torch.testing.assert_close(again.scores["softmin"], report.scores["softmin"])


def test_resume_retrains_only_missing_folds(tmp_path, dataset):
    cv = make_cv(tmp_path, dataset)
    cv.run()
    (tmp_path / "fold_1" / "heldout.pt").unlink()
    rerun = make_cv(tmp_path, dataset)
    rerun.run()
    assert rerun.trained_folds == [1]


def test_changed_split_settings_are_refused(tmp_path, dataset):
    make_cv(tmp_path, dataset).run()
    cv = make_cv(tmp_path, dataset)
    cv.seed = 99
    with pytest.raises(ValueError, match="splits.json"):
        cv.run()


def test_bad_checkpoint_choice(tmp_path, dataset):
    with pytest.raises(ValueError, match="checkpoint"):
        make_cv(tmp_path, dataset, checkpoint="worst")
