import inspect
import math
from pathlib import Path

import pytest
import torch

from lightning_segqa.experiments import benchmark, make_street_scenes
from lightning_segqa.experiments.benchmark import (
    PAPER_ROWS,
    BenchmarkData,
    cache_path,
    format_tables,
    inject_before_split,
    load_camvid,
    run_benchmark,
)
from lightning_segqa.noise import PAPER_FRACTIONS
from lightning_segqa.report import DETECTION_METRICS, METHODS

CAMVID = Path(__file__).resolve().parents[2] / "shared/data/camvid"


@pytest.fixture(scope="module")
def scenes() -> BenchmarkData:
    train_images, train_masks = make_street_scenes(12, 32, 32, seed=0)
    val_images, val_masks = make_street_scenes(10, 32, 32, seed=1)
    return BenchmarkData(train_images, train_masks, val_images, val_masks, 9, 8)


def _args(out: Path, **kw) -> dict:
    base = dict(
        data_dir="unused",
        out=str(out),
        models=["tiny"],
        errors=["drop"],
        encoder="resnet18",
        epochs=1,
        size=(32, 32),
        batch_size=8,
        device="cpu",
        seed=0,
        markdown=None,
        progress=False,
    )
    base.update(kw)
    return base


# --- injection before the split ---------------------------------------------------------------


@pytest.mark.parametrize("kind", ["drop", "swap", "shift"])
def test_inject_before_split_union_fraction_and_both_splits(kind):
    masks = make_street_scenes(60, 32, 32, seed=3)[1]  # 60: both splits get errors
    train, val = masks[:40], masks[40:]
    tn, tf, vn, vf = inject_before_split(train, val, kind, seed=5, unlabeled_index=8)
    assert tn.shape == train.shape and vn.shape == val.shape
    assert int(tf.sum() + vf.sum()) == round(PAPER_FRACTIONS[kind] * 60)
    assert tf.any() and vf.any()  # errors land in train and val alike
    # flags mark exactly the changed masks; clean masks are untouched
    assert torch.equal((tn != train).flatten(1).any(1), tf)
    assert torch.equal((vn != val).flatten(1).any(1), vf)
    again = inject_before_split(train, val, kind, seed=5, unlabeled_index=8)
    assert all(torch.equal(a, b) for a, b in zip(again, (tn, tf, vn, vf), strict=True))
    other = inject_before_split(train, val, kind, seed=6, unlabeled_index=8)
    assert not torch.equal(torch.cat([other[1], other[3]]), torch.cat([tf, vf]))


def test_inject_before_split_equals_injecting_the_union():
    from lightning_segqa.noise import inject_label_errors

    masks = make_street_scenes(20, 32, 32, seed=2)[1]
    tn, tf, vn, vf = inject_before_split(masks[:13], masks[13:], "drop", 0, 8, fraction=0.25)
    noisy, flags = inject_label_errors(masks, "drop", 0.25, 0, unlabeled_index=8)
    assert torch.equal(torch.cat([tn, vn]), noisy) and torch.equal(torch.cat([tf, vf]), flags)
    assert set(torch.cat([tn, vn])[flags].unique().tolist()) >= {8}


# --- tables -----------------------------------------------------------------------------------


def _report(value: float) -> dict:
    return {m: {k: value + i / 100 for k in DETECTION_METRICS} for i, m in enumerate(METHODS)}


def test_format_tables_layout():
    metrics = {
        "drop": {"deeplabv3plus": _report(0.5), "fpn": _report(0.6)},
        "swap": {"deeplabv3plus": _report(0.7), "fpn": _report(0.8)},
    }
    text = format_tables(metrics)
    blocks = text.split("\n\n")
    assert [b.splitlines()[0] for b in blocks] == [
        "Table 1. AUROC",
        "Table 2. AUPRC",
        "Table 3. Lift@T (T = number of mislabeled images)",
        "Table 4. Lift@100",
    ]
    lines = blocks[0].splitlines()
    assert lines[1].split() == ["Error", "Drop", "Drop", "Swap", "Swap"]
    assert lines[2].split() == ["Model", "DeepLabV3+", "FPN", "DeepLabV3+", "FPN"]
    names = [name for _, name in PAPER_ROWS]
    assert names[0] == "Correctly Classified Pixels" and names[-1] == "Softmin"
    for row, (method, name) in zip(lines[3:], PAPER_ROWS, strict=True):
        assert row.startswith(name)
        i = METHODS.index(method)
        assert row.split()[-4:] == [f"{v + i / 100:.3f}" for v in (0.5, 0.6, 0.7, 0.8)]


def test_format_tables_markdown_bold_best_and_nan():
    det = _report(0.5)
    det["iou"]["auroc"] = float("nan")
    md = format_tables({"shift": {"fpn": det}}, markdown=True)
    lines = md.splitlines()[: 4 + len(PAPER_ROWS)]
    assert lines[0] == "### Table 1. AUROC"
    assert lines[2] == "| Method | Shift FPN |" and lines[3] == "|---|---:|"
    best = max(METHODS, key=lambda m: det[m]["auroc"] if not math.isnan(det[m]["auroc"]) else -1)
    rows = {line.split(" | ")[0][2:]: line for line in lines[4:]}
    assert list(rows) == [name for _, name in PAPER_ROWS]
    assert rows[dict(PAPER_ROWS)[best]].endswith(f"**{det[best]['auroc']:.3f}** |")
    assert rows["IoU"].endswith("| – |")
    assert md.count("### Table") == 4


def test_format_tables_column_order_and_missing_runs():
    metrics = {"drop": {"fpn": _report(0.5)}, "swap": {"fpn": _report(0.6), "tiny": _report(0.7)}}
    text = format_tables(metrics, errors=["swap", "drop"], models=["tiny", "fpn"])
    lines = text.splitlines()
    assert lines[1].split() == ["Error", "Swap", "Swap", "Drop"]
    assert lines[2].split() == ["Model", "Tiny", "FPN", "FPN"]
    partial = format_tables({"drop": {"fpn": _report(0.5)}, "shift": {"deeplabv3plus": _report(0.6)}}).splitlines()
    assert partial[1].split() == ["Error", "Drop", "Shift"]
    assert partial[2].split() == ["Model", "FPN", "DeepLabV3+"]


# --- cache round trip -------------------------------------------------------------------------


def test_cache_round_trip_does_not_retrain(scenes, tmp_path, monkeypatch):
    md = tmp_path / "tables.md"
    args = _args(tmp_path / "out", markdown=str(md), errors=["drop", "swap"])
    first = run_benchmark(**args, data=scenes, echo=lambda s: None)
    for error in ("drop", "swap"):
        path = cache_path(args["out"], error, "tiny", "resnet18", (32, 32), 1, 0)
        entry = torch.load(path, weights_only=True)
        assert entry["probs"].dtype == torch.float16 and entry["probs"].shape == (10, 9, 32, 32)
        assert entry["masks"].shape == (10, 32, 32) and entry["is_mislabeled"].shape == (10,)
        assert torch.equal(entry["clean"].long(), scenes.val_masks)
    assert "### Table 4. Lift@100" in md.read_text()
    from PIL import Image

    for error in ("drop", "swap"):  # ROC/PR curves per run, as files
        with Image.open(tmp_path / "out" / "curves" / f"{error}_tiny.png") as img:
            assert img.size[0] > 400 and img.size[1] > 200

    def boom(*a, **k):
        raise AssertionError("must not train when the cache exists")

    monkeypatch.setattr(benchmark, "train_model", boom)
    lines: list[str] = []
    second = run_benchmark(**args, data=scenes, echo=lines.append)
    assert any("re-scoring cached" in line for line in lines)
    assert second.metrics == first.metrics
    assert second.train_seconds == first.train_seconds
    assert set(second.metrics["drop"]["tiny"]) == set(METHODS)
    # another seed means other noisy masks: no cache, so it trains
    with pytest.raises(AssertionError, match="must not train"):
        run_benchmark(**_args(tmp_path / "out", seed=1), data=scenes, echo=lambda s: None)


def test_stale_cache_is_retrained(scenes, tmp_path, monkeypatch):
    args = _args(tmp_path)
    run_benchmark(**args, data=scenes, echo=lambda s: None)
    path = cache_path(args["out"], "drop", "tiny", "resnet18", (32, 32), 1, 0)
    entry = torch.load(path, weights_only=True)
    entry["masks"] = entry["masks"].flip(0)
    torch.save(entry, path)

    def retrain(*a, **k):
        raise RuntimeError("retrained")

    monkeypatch.setattr(benchmark, "train_model", retrain)
    with pytest.warns(UserWarning, match="other noisy masks"), pytest.raises(RuntimeError):
        run_benchmark(**args, data=scenes, echo=lambda s: None)


def test_bad_arguments(scenes, tmp_path):
    with pytest.raises(ValueError, match="unknown error kinds or models"):
        run_benchmark(**_args(tmp_path, errors=["flip"]), data=scenes)
    with pytest.raises(ValueError, match="at least 1"):
        run_benchmark(**_args(tmp_path, epochs=0), data=scenes)
    with pytest.raises(FileNotFoundError, match="--data"):
        load_camvid(tmp_path / "nowhere")


# --- CamVid at tiny scale ---------------------------------------------------------------------


@pytest.mark.camvid
@pytest.mark.skipif(not (CAMVID / "train").is_dir(), reason=f"CamVid not found at {CAMVID}")
def test_camvid_tiny_scale(tmp_path):
    data = load_camvid(CAMVID, size=(32, 48), limit=8)
    assert data.train_images.shape == (8, 3, 32, 48) and data.val_masks.shape == (8, 32, 48)
    assert data.num_classes == 12 and data.unlabeled_index == 11
    assert int(data.train_masks.max()) <= 11
    lines: list[str] = []
    args = _args(tmp_path, data_dir=CAMVID, size=(32, 48), errors=["drop", "swap"], markdown=tmp_path / "t.md")
    result = run_benchmark(**args, data=data, echo=lines.append)
    assert set(result.metrics) == {"drop", "swap"}
    assert set(result.metrics["swap"]["tiny"]) == set(METHODS)
    assert "Table 1. AUROC" in lines[-2] and (tmp_path / "t.md").is_file()


def test_predict_probs_with_flip_tta_averages_flipped_back():
    from lightning_segqa.experiments.models import TinySegNet

    torch.manual_seed(0)
    net = TinySegNet(3, 4).eval()
    x = torch.rand(5, 3, 8, 12)
    with torch.no_grad():
        expected = (net(x).softmax(1) + net(x.flip(-1)).softmax(1).flip(-1)) / 2
    got = benchmark.predict_probs(net, x, batch_size=2, tta=("hflip",))
    torch.testing.assert_close(got.float(), expected, atol=1e-3, rtol=0)  # float16 storage
    assert not torch.allclose(got.float(), benchmark.predict_probs(net, x, batch_size=2).float(), atol=1e-3)


def test_tta_runs_report_both_columns_from_one_training(scenes, tmp_path, monkeypatch):
    calls = []
    train = benchmark.train_model
    monkeypatch.setattr(benchmark, "train_model", lambda *a, **k: calls.append(1) or train(*a, **k))
    args = _args(tmp_path, errors=["swap"], tta=["hflip"])
    result = run_benchmark(**args, data=scenes, echo=lambda s: None)
    assert sorted(result.metrics["swap"]) == ["tiny", "tiny+hflip"] and calls == [1]
    run_benchmark(**args, data=scenes, echo=lambda s: None)  # both come back from the cache
    assert calls == [1]


# --- the command line -------------------------------------------------------------------------


def test_cli_passes_every_option_as_a_keyword_with_the_same_defaults(tmp_path, monkeypatch):
    from lightning_segqa import cli

    for split in ("train", "val"):
        (tmp_path / split / "images").mkdir(parents=True)
    got = {}
    monkeypatch.setattr(benchmark, "run_benchmark", lambda **kw: got.update(kw))
    assert cli.main(["benchmark", "--data", str(tmp_path)]) == 0

    def plain(value):
        return list(value) if isinstance(value, (tuple, list)) else value

    signature = inspect.signature(run_benchmark).parameters
    defaults = {k: plain(p.default) for k, p in signature.items() if k not in ("data", "echo", "lr", "progress")}
    assert {k: plain(v) for k, v in got.items()} == {**defaults, "data_dir": str(tmp_path)}
    assert defaults["data_dir"] == cli.build_parser().parse_args(["benchmark"]).data
