"""DDP inside each fold (2 CPU processes, gloo): every index scored once, equal to one-process scoring."""

import json
import sys

import pytest
import torch

from tests.cv_helpers import make_cv, score_by_hand, small_dataset

pytestmark = pytest.mark.skipif(
    not torch.distributed.is_available() or sys.platform == "win32", reason="needs torch.distributed with gloo"
)


@pytest.mark.slow
def test_ddp_spawn_folds_score_every_index_once_like_one_process(tmp_path):
    dataset = small_dataset(n=10)
    cv = make_cv(
        tmp_path, dataset, batch_size=2,
        trainer_kwargs={"strategy": "ddp_spawn", "devices": 2, "accelerator": "cpu", "max_epochs": 1},
    )  # fmt: skip
    report = cv.run()
    assert report.indexes.tolist() == list(range(10))  # each once (the loaders of 2 processes padded 5 to 6)
    folds = json.loads((tmp_path / "splits.json").read_text())["folds"]
    ckpts = [tmp_path / f"fold_{f}" / "checkpoints" / "last.ckpt" for f in range(2)]
    expected = score_by_hand(dataset, folds, ckpts)
    for m in report.methods:
        torch.testing.assert_close(report.scores[m], expected.scores[m], atol=1e-5, rtol=0)


@pytest.mark.slow
def test_ddp_subprocess_ranks_agree_and_score_like_one_process(tmp_path):
    """strategy="ddp" re-runs the script per rank: both ranks train, rank zero scores, both merge."""
    import subprocess
    from pathlib import Path

    script = Path(__file__).with_name("ddp_script.py")
    run = subprocess.run([sys.executable, str(script), str(tmp_path)], capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    r0, r1 = (json.loads((tmp_path / f"result_{r}.json").read_text()) for r in (0, 1))
    assert r0["indexes"] == r1["indexes"] == list(range(10))
    assert r0["softmin"] == r1["softmin"]
    torch.testing.assert_close(torch.tensor(r0["softmin"]), torch.tensor(r0["expected"]), atol=1e-5, rtol=0)
