"""The gate: decisions, helper for retraining, and the `segqa gate` exit codes."""

import subprocess
import sys

import pytest
import torch

from lightning_segqa import LabelQualityReport
from lightning_segqa.cli import main
from lightning_segqa.gate import LabelQualityError, evaluate_gate, indices_to_keep, suspect_fraction


@pytest.fixture
def report():
    scores = torch.tensor([0.9, 0.05, 0.6, 0.02, 0.8, 0.09, 0.7, 0.95, 0.5, 0.4])
    return LabelQualityReport(torch.arange(10) * 10, {"softmin": scores, "iou": 1 - scores})


def test_decision_values(report):
    d = evaluate_gate(report, "softmin", threshold=0.1, max_suspect_fraction=0.25)
    assert d.suspect_fraction == pytest.approx(0.3)
    assert not d.passed
    assert [i for i, _ in d.worst[:3]] == [30, 10, 50]
    assert "30 (0.020)" in d.message.replace("#", "") and "FAILED" in d.message
    assert evaluate_gate(report, "softmin", 0.1, 0.3).passed
    assert suspect_fraction(report, "iou", 0.1) == pytest.approx(0.1)


def test_indices_to_keep(report):
    assert indices_to_keep(report, threshold=0.1).tolist() == [0, 20, 40, 60, 70, 80, 90]
    assert indices_to_keep(report, threshold=None, k=2, train_indices=[10, 20, 30]).tolist() == [20]
    with pytest.raises(ValueError, match="threshold"):
        indices_to_keep(report, threshold=None)


def test_bad_gate_arguments(report):
    with pytest.raises(ValueError, match="max_suspect_fraction"):
        evaluate_gate(report, max_suspect_fraction=2)
    with pytest.raises(ValueError, match="method"):
        evaluate_gate(report, method="nope")


def test_gate_cli_exit_codes(report, tmp_path, capsys):
    path = tmp_path / "label_quality.json"
    report.to_json(path)
    assert main(["gate", str(path), "--max-suspect-fraction", "0.3"]) == 0
    assert "passed" in capsys.readouterr().out
    assert main(["gate", str(path), "--max-suspect-fraction", "0.05"]) == 1
    err = capsys.readouterr().err
    assert "FAILED" in err and "30" in err
    assert main(["gate", str(path), "--max-suspect-fraction", "0.5", "--method", "iou", "--threshold", "0.5"]) == 0
    assert main(["gate", str(tmp_path / "missing.json"), "--max-suspect-fraction", "0.1"]) == 2
    assert "No report" in capsys.readouterr().err
    (tmp_path / "bad.json").write_text('{"x": 1}')
    assert main(["gate", str(tmp_path / "bad.json"), "--max-suspect-fraction", "0.1"]) == 2


def test_gate_cli_as_a_process(report, tmp_path):
    path = tmp_path / "r.json"
    report.to_json(path)
    proc = subprocess.run(
        [sys.executable, "-m", "lightning_segqa.cli", "gate", str(path), "--max-suspect-fraction", "0.1"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 1, proc.stderr
    assert "FAILED" in proc.stderr


def test_error_type_is_runtime_error():
    assert issubclass(LabelQualityError, RuntimeError)
