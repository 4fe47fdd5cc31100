"""The documented example runs and does what its docs say."""

import importlib.util
from pathlib import Path

import torch

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "callback_cv_gate.py"


def test_callback_cv_gate_example(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("callback_cv_gate", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    torch.manual_seed(0)
    out = module.main(["--out", str(tmp_path), "--images", "30", "--epochs", "4"])
    report = out["report"]
    assert report.indexes.tolist() == list(range(30))
    assert out["dropped"] == int(report.is_mislabeled.sum()) == 9
    # swap errors are the easiest kind: even a tiny model catches most of them
    assert report.detection()["softmin"]["auroc"] > 0.7
    assert out["caught"] >= 4  # chance: 9 * 9 / 30 = 2.7 of the 9 dropped images
    text = capsys.readouterr().out
    assert "Label-quality gate" in text and "Retraining on 21 images" in text
    assert (tmp_path / "label_quality.json").exists()
