"""The main job end to end (reduced size) and the folder audit, through the command line."""

import json
import warnings
from pathlib import Path

import pytest
import torch

from lightning_segqa import LabelQualityReport
from lightning_segqa.cli import main
from lightning_segqa.data import write_folder_dataset
from lightning_segqa.experiments import make_street_scenes

warnings.filterwarnings("ignore", ".*does not have many workers.*")
CAMVID = Path(__file__).resolve().parents[2] / "shared" / "data" / "camvid"


@pytest.mark.slow
def test_demo_reduced_finds_drop_errors(tmp_path, capsys):
    """The demo at a reduced size (60 scenes 48x64, the tiny model, 3 folds x 8 epochs) in CI.

    Measured with these settings: softmin AUROC 0.701 (seed 0) and 0.693 (seed 1), chance is 0.5
    (the errors spread over the three folds); the bound 0.6 leaves a margin for run-to-run differences.
    """
    code = main(
        [
            "demo",
            "--out",
            str(tmp_path),
            "--images",
            "60",
            "--height",
            "48",
            "--width",
            "64",
            "--arch",
            "tiny",
            "--epochs",
            "8",
            "--folds",
            "3",
            "--seed",
            "0",
            "--no-progress",
        ]
    )
    assert code == 0
    out = capsys.readouterr().out
    assert "tensorboard --logdir" in out and "AUROC" in out
    report = LabelQualityReport.from_json(tmp_path / "label_quality.json")
    assert report.indexes.tolist() == list(range(60))
    assert report.names == [f"scene_{i:03d}" for i in range(60)]  # every output names the scene
    assert "scene_" in out  # the ranked table too
    assert int(report.is_mislabeled.sum()) == 12  # 20% drop errors, the paper's default
    auroc = report.detection()["softmin"]["auroc"]
    assert auroc > 0.6, auroc
    assert (tmp_path / "label_quality.csv").exists()
    events = list((tmp_path / "logs").rglob("events.out.tfevents.*"))
    assert any("merged" in str(p) for p in events)


def test_audit_reports_folder_errors_before_training(tmp_path, capsys):
    images, masks = make_street_scenes(4, 16, 24, seed=0)
    img_dir, mask_dir = write_folder_dataset(tmp_path / "data", images, masks)
    next(Path(mask_dir).glob("*.png")).unlink()
    out = tmp_path / "out"
    code = main(["audit", "--images", str(img_dir), "--masks", str(mask_dir), "--num-classes", "9", "--out", str(out)])
    assert code == 2
    err = capsys.readouterr().err
    assert "has no mask" in err and ".png" in err
    assert not out.exists()  # nothing half-written


def test_audit_class_id_out_of_range(tmp_path, capsys):
    images, masks = make_street_scenes(4, 16, 24, seed=0)
    img_dir, mask_dir = write_folder_dataset(tmp_path / "data", images, masks)
    code = main(["audit", "--images", str(img_dir), "--masks", str(mask_dir), "--num-classes", "3"])
    assert code == 2
    err = capsys.readouterr().err
    assert "class id" in err and "num_classes=9 covers every id" in err.splitlines()[-1]


@pytest.mark.slow
def test_audit_runs_on_a_folder(tmp_path, capsys):
    images, masks = make_street_scenes(12, 32, 48, seed=3)
    masks[0, :16] = 8  # an obvious wrong mask: the top half left unlabeled
    img_dir, mask_dir = write_folder_dataset(tmp_path / "data", images, masks)
    names = tmp_path / "names.txt"
    names.write_text("\n".join(f"class{i}" for i in range(9)))
    out = tmp_path / "out"
    code = main(
        [
            "audit",
            "--images",
            str(img_dir),
            "--masks",
            str(mask_dir),
            "--num-classes",
            "9",
            "--class-names",
            str(names),
            "--folds",
            "3",
            "--epochs",
            "2",
            "--arch",
            "tiny",
            "--out",
            str(out),
            "--no-progress",
        ]
    )
    assert code == 0
    data = json.loads((out / "label_quality.json").read_text())
    assert sorted(data["indexes"]) == list(range(12))
    assert data["names"] == [f"{i:05d}" for i in data["indexes"]]  # the file stems, aligned with the indexes
    captured = capsys.readouterr()
    assert "Worst masks:" in captured.out and "name" in captured.out
    assert "GPU available" not in captured.err + captured.out  # Lightning's banners stay out of the way


@pytest.mark.slow
@pytest.mark.camvid
def test_audit_on_camvid_subset(tmp_path):
    if not CAMVID.exists():
        pytest.skip(f"CamVid not found at {CAMVID} (it sits beside the repository as ../shared/data/camvid)")
    from lightning_segqa.data import FolderSegmentationDataset
    from lightning_segqa.experiments.pipelines import TrainingConfig, run_cross_validation

    full = FolderSegmentationDataset(CAMVID / "val" / "images", CAMVID / "val" / "masks", 12, size=(48, 64))
    subset = torch.utils.data.Subset(full, list(range(12)))
    config = TrainingConfig(arch="tiny", epochs=1, folds=2, batch_size=6, progress=False)
    report = run_cross_validation(subset, 12, tmp_path, config, top_k=2)
    assert report.indexes.tolist() == list(range(12))
    assert torch.isfinite(report.scores["softmin"]).all()


def test_audit_says_where_everything_is_and_warns_about_unused_classes(tmp_path, capsys, monkeypatch):
    """The terminal part of the audit (training replaced by a stub that scores from the file names)."""
    from lightning_segqa.experiments import pipelines

    images, masks = make_street_scenes(4, 16, 24, seed=0)
    stems = [f"shot_{i}" for i in range(4)]
    img_dir, mask_dir = write_folder_dataset(tmp_path / "data", images, masks, names=stems)
    scores = torch.tensor([0.5, 0.01, 0.7, 0.2])

    def stub(dataset, num_classes, work_dir, config, class_names=None, ignore_index=None, top_k=10, palette=None):
        names = [dataset[i]["name"] for i in range(len(dataset))]
        return LabelQualityReport(torch.arange(4), {"softmin": scores, "iou": 1 - scores}, names=names)

    monkeypatch.setattr(pipelines, "run_cross_validation", stub)
    out = tmp_path / "out"
    args = ["audit", "--images", str(img_dir), "--masks", str(mask_dir), "--num-classes", "12", "--out", str(out)]
    assert main([*args, "--top-k", "2"]) == 0
    captured = capsys.readouterr()
    top = int(masks.max())
    assert captured.err.strip() == (
        f"segqa: warning: --num-classes is 12 but the largest class id in the masks is {top}: ids {top + 1}..11 "
        f"never appear. If the masks use ids 0..{top} only, pass --num-classes {top + 1}."
    )
    lines = captured.out.splitlines()
    assert "Worst masks: shot_1, shot_3" in lines
    assert (
        "Methods: SM = softmin (the paper method), IoU = intersection over union; lower = more likely mislabeled."
        in lines
    )
    assert f"See the worst masks: tensorboard --logdir {out / 'logs' / 'merged'}" == lines[-1]
    assert any(line.split()[0] == "label_quality.csv" for line in lines if line.startswith("  "))
    rank_one = next(line for line in lines if line.lstrip().startswith("1 "))
    assert rank_one.split()[:3] == ["1", "1", "shot_1"]


def test_quiet_terminal_hides_lightning_banners(capsys):
    import warnings as w

    from lightning.pytorch.utilities.rank_zero import rank_zero_info

    from lightning_segqa.cli import quiet_terminal

    with quiet_terminal():
        rank_zero_info("GPU available: False, used: False")
        w.warn("something to fix", UserWarning, stacklevel=1)
    err = capsys.readouterr().err
    assert "GPU available" not in err and err.strip() == "segqa: warning: something to fix"


def test_demo_in_a_finished_folder_with_other_settings_says_how_to_start_over(tmp_path, capsys):
    """A resume with other settings is refused in one line naming the difference and --overwrite; then it reruns."""
    base = ["demo", "--out", str(tmp_path), "--images", "8", "--height", "16", "--width", "16"]
    base += ["--arch", "tiny", "--folds", "2", "--batch-size", "4", "--no-progress"]
    assert main([*base, "--epochs", "1"]) == 0
    capsys.readouterr()
    assert main([*base, "--epochs", "2"]) == 2
    err = capsys.readouterr().err
    assert "trainer.max_epochs: 1 before, 2 now" in err and "--overwrite" in err and "Traceback" not in err
    assert main([*base, "--epochs", "2", "--overwrite"]) == 0
    assert '"max_epochs": 2' in (tmp_path / "splits.json").read_text()


def test_demo_with_too_few_images_says_so_in_one_line(tmp_path, capsys):
    """Wrong input on the command line: one line naming the options, exit 2, nothing trained."""
    assert main(["demo", "--out", str(tmp_path), "--images", "2", "--folds", "3"]) == 2
    err = capsys.readouterr().err
    assert err.strip() == "segqa demo: --images (2) must be at least --folds (3)." and not any(tmp_path.iterdir())
