"""The gate: decisions, helper for retraining, and the `segqa gate` exit codes."""

import subprocess
import sys

import pytest
import torch

from lightning_segqa import LabelQualityReport
from lightning_segqa.cli import main
from lightning_segqa.gate import LabelQualityError, evaluate_gate, indexes_to_keep, suspect_fraction


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


def test_indexes_to_keep(report):
    assert indexes_to_keep(report, threshold=0.1).tolist() == [0, 20, 40, 60, 70, 80, 90]
    assert indexes_to_keep(report, threshold=None, k=2, train_indexes=[10, 20, 30]).tolist() == [20]
    rule = report.suspects("softmin")  # neither k nor threshold: the default rule
    assert indexes_to_keep(report).tolist() == sorted(set(report.indexes.tolist()) - set(rule.tolist()))


def test_bad_gate_arguments(report):
    with pytest.raises(ValueError, match="max_suspect_fraction"):
        evaluate_gate(report, max_suspect_fraction=2)
    with pytest.raises(ValueError, match="method"):
        evaluate_gate(report, method="nope")


def test_gate_cli_exit_codes(report, tmp_path, capsys):
    path = tmp_path / "label_quality.json"
    report.to_json(path)
    # the default rule: no image of this fixture is a low outlier, so even a zero limit passes
    assert main(["gate", str(path), "--max-suspect-fraction", "0"]) == 0
    assert "passed" in capsys.readouterr().out
    assert main(["gate", str(path), "--max-suspect-fraction", "0.3", "--threshold", "0.1"]) == 0
    assert "passed" in capsys.readouterr().out
    assert main(["gate", str(path), "--max-suspect-fraction", "0.05", "--threshold", "0.1"]) == 1
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
        [
            sys.executable,
            "-m",
            "lightning_segqa.cli",
            "gate",
            str(path),
            "--max-suspect-fraction",
            "0.1",
            "--threshold",
            "0.1",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 1, proc.stderr
    assert "FAILED" in proc.stderr


def test_error_type_is_runtime_error():
    assert issubclass(LabelQualityError, RuntimeError)


@pytest.fixture
def named():
    g = torch.Generator().manual_seed(0)
    scores = 0.5 + 0.05 * torch.rand(30, generator=g)
    scores[[4, 11]] = torch.tensor([1e-3, 1e-4])
    return LabelQualityReport(torch.arange(30), {"softmin": scores}, names=[f"frame_{i:02d}" for i in range(30)])


def test_default_rule_and_names_in_the_decision(named):
    from lightning_segqa.suspect_rule import default_suspect_mask

    d = evaluate_gate(named, max_suspect_fraction=0.01)  # threshold=None: the default rule
    expected = torch.arange(30)[default_suspect_mask(named.scores["softmin"], "softmin")]
    assert sorted(d.suspects) == expected.tolist() == [4, 11]
    assert d.suspects == [11, 4] and d.suspect_names == ["frame_11", "frame_04"]
    assert d.suspect_fraction == pytest.approx(2 / 30) and not d.passed and d.threshold is None
    assert "frame_11 (#11, 0.000), frame_04 (#4, 0.001)" in d.message and "default rule" in d.message
    err = LabelQualityError.from_decision(d)
    assert (err.fraction, err.limit, err.method, err.suspects, err.names) == (
        pytest.approx(2 / 30),
        0.01,
        "softmin",
        [11, 4],
        ["frame_11", "frame_04"],
    )
    import pickle

    back = pickle.loads(pickle.dumps(err))
    assert (back.suspects, back.names, str(back)) == (err.suspects, err.names, str(err))


def test_gate_cli_names_the_images_and_uses_the_default_rule(named, tmp_path, capsys):
    path = tmp_path / "label_quality.json"
    named.to_json(path)
    assert main(["gate", str(path), "--max-suspect-fraction", "0.05"]) == 1
    err = capsys.readouterr().err
    assert "6.7% of 30 images (2) are suspects by the default rule" in err and "frame_11 (#11" in err
    assert main(["gate", str(path), "--max-suspect-fraction", "0.1"]) == 0


def test_benchmark_without_camvid_is_one_line_and_exit_2(tmp_path, capsys):
    assert main(["benchmark", "--data", str(tmp_path / "nowhere")]) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and "CamVid not found at" in lines[0] and "--data" in lines[0]
    assert "Traceback" not in captured.err + captured.out


def test_every_option_says_its_default():
    import argparse

    from lightning_segqa.cli import build_parser

    parser = build_parser()
    (sub,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    for name, command in sub.choices.items():
        text = command.format_help()
        for action in command._actions:
            if action.required or isinstance(action, argparse._HelpAction) or not action.option_strings:
                continue
            assert action.help, f"segqa {name} {action.option_strings[0]} has no help"
            if action.default is not False:
                help_text = command._get_formatter()._get_help_string(action)
                assert "default" in help_text, f"segqa {name} {action.option_strings[0]}: {help_text!r}"
        assert "(default: " in text
