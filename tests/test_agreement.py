"""Model-vs-mask agreement: per-image values against a pixel loop, the report summary, the warning."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from lightning_segqa import LabelQuality, LabelQualityReport
from lightning_segqa.agreement import (
    DETAILS_KEY,
    MIN_AGREEMENT,
    agreement_stats,
    agreement_summary,
    pixel_agreement,
    weak_model_message,
)
from lightning_segqa.functional._inputs import prepare_inputs


def loop_agreement(probs: torch.Tensor, target: torch.Tensor, ignore_index: int | None) -> list[float]:
    """Brute force: visit every pixel; agreement when no class has more probability than the label."""
    out = []
    for b in range(probs.shape[0]):
        agree = total = 0
        for i in range(probs.shape[2]):
            for j in range(probs.shape[3]):
                label = int(target[b, i, j])
                if label == ignore_index:
                    continue
                total += 1
                agree += all(float(probs[b, label, i, j]) >= float(probs[b, k, i, j]) for k in range(probs.shape[1]))
        out.append(agree / total if total else float("nan"))
    return out


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 2**31 - 1), st.booleans())
def test_pixel_agreement_matches_a_pixel_loop(seed: int, with_ignore: bool) -> None:
    g = torch.Generator().manual_seed(seed)
    probs = torch.randint(0, 4, (3, 3, 4, 5), generator=g).float().softmax(1)  # small ints: many ties
    target = torch.randint(0, 3, (3, 4, 5), generator=g)
    ignore = 255 if with_ignore else None
    if with_ignore:
        target[torch.rand(3, 4, 5, generator=g) < 0.3] = 255
        target[2] = 255  # an image without a valid pixel
    got = pixel_agreement(prepare_inputs(probs, target, ignore_index=ignore)).tolist()
    want = loop_agreement(probs, target, ignore)
    for a, b in zip(got, want, strict=True):
        assert (math.isnan(a) and math.isnan(b)) or a == pytest.approx(b, abs=1e-6)


def test_stats_match_torch_quantiles_and_skip_nan() -> None:
    values = torch.tensor([0.2, 0.9, 0.5, float("nan"), 0.7, 1.0])
    kept = torch.tensor([0.2, 0.9, 0.5, 0.7, 1.0], dtype=torch.float64)
    s = agreement_stats(values)
    assert s["num_images"] == 5 and s["mean"] == pytest.approx(0.66)
    assert s["median"] == pytest.approx(0.7) and s["q10"] == pytest.approx(float(kept.quantile(0.1)))
    assert s["q90"] == pytest.approx(float(kept.quantile(0.9)))
    empty = agreement_stats(torch.tensor([float("nan")]))
    assert empty["num_images"] == 0 and math.isnan(empty["median"])
    with pytest.raises(ValueError, match="1-D float tensor"):
        agreement_stats(torch.ones(2, 2))


@pytest.mark.parametrize("methods", [["softmin"], ["softmin", "correctly_classified_pixels"]])
def test_metric_reports_the_agreement(methods: list[str]) -> None:
    """The report's summary is that of the per-image agreement, over repeated indexes kept once."""
    g = torch.Generator().manual_seed(3)
    probs = torch.rand(6, 4, 8, 8, generator=g).softmax(1)
    target = torch.randint(0, 4, (6, 8, 8), generator=g)
    target[0, :2] = 255
    metric = LabelQuality(4, methods=methods, ignore_index=255)
    metric.update(probs[:4], target[:4], torch.arange(4))
    metric.update(probs[3:], target[3:], torch.tensor([3, 4, 5]))  # index 3 again (sampler padding)
    report = metric.compute()
    want = agreement_stats(torch.tensor(loop_agreement(probs, target, 255)))
    assert report.details[DETAILS_KEY] == pytest.approx(want)
    back = LabelQualityReport.from_json(report.to_json())
    assert agreement_summary(back) == pytest.approx(want)


def test_summary_falls_back_to_ccp_and_is_none_without_it() -> None:
    r = LabelQualityReport(torch.arange(3), {"correctly_classified_pixels": torch.tensor([0.1, 0.5, 0.9])})
    assert agreement_summary(r)["median"] == pytest.approx(0.5)
    assert agreement_summary(LabelQualityReport(torch.arange(3), {"softmin": torch.rand(3)})) is None
    with pytest.raises(TypeError, match="LabelQualityReport"):
        agreement_summary({"details": {}})


def _report(median: float) -> LabelQualityReport:
    r = LabelQualityReport(torch.arange(3), {"softmin": torch.rand(3)})
    r.details[DETAILS_KEY] = {"mean": median, "q10": median - 0.1, "median": median, "q90": median, "num_images": 3}
    return r


def test_weak_model_message() -> None:
    weak = weak_model_message(_report(MIN_AGREEMENT - 0.01))
    assert weak is not None and "Train longer" in weak and f"{MIN_AGREEMENT:.0%}" in weak
    assert weak_model_message(_report(MIN_AGREEMENT)) is None
    assert weak_model_message(_report(0.5), min_agreement=0.4) is None
    assert weak_model_message(LabelQualityReport(torch.arange(2), {"softmin": torch.rand(2)})) is None
    with pytest.raises(ValueError, match="min_agreement"):
        weak_model_message(_report(0.5), min_agreement=1.5)
    with pytest.raises(TypeError, match="PreparedInputs"):
        pixel_agreement(torch.rand(1, 2, 3, 3))  # type: ignore[arg-type]


def test_monitor_warns_at_the_end_of_a_fit_only_when_weak() -> None:
    from lightning_segqa import LabelQualityMonitor

    monitor = LabelQualityMonitor(num_classes=3, top_k=0)
    monitor.on_fit_end(None, None)  # type: ignore[arg-type]  # no report yet: nothing to say
    monitor.report = _report(0.3)
    with pytest.warns(UserWarning, match="too weak to tell label errors"):
        monitor.on_fit_end(None, None)  # type: ignore[arg-type]
    monitor.report = _report(0.95)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        monitor.on_fit_end(None, None)  # type: ignore[arg-type]


@pytest.mark.parametrize("median", [0.3, 0.95])
def test_demo_and_audit_print_the_warning(monkeypatch: pytest.MonkeyPatch, tmp_path: object, median: float) -> None:
    from lightning_segqa.data import write_folder_dataset
    from lightning_segqa.experiments import make_street_scenes, pipelines

    monkeypatch.setattr(pipelines, "run_cross_validation", lambda *args, **kwargs: _report(median))
    lines: list[str] = []
    pipelines.run_demo(tmp_path, num_images=10, height=32, width=32, echo=lines.append)
    images, masks = make_street_scenes(3, 32, 32)
    write_folder_dataset(f"{tmp_path}/data", images, masks)
    pipelines.run_audit(f"{tmp_path}/data/images", f"{tmp_path}/data/masks", 9, tmp_path, top_k=2, echo=lines.append)
    warned = [line for line in lines if "WARNING" in line and "Train longer" in line]
    assert len(warned) == (2 if median < MIN_AGREEMENT else 0)
