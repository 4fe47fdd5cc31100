"""The report's pieces: names importable from where they were, the ranked table against a hand-built one."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from lightning_segqa import report as report_module
from lightning_segqa.detection import worst_first
from lightning_segqa.methods import method_legend
from lightning_segqa.publishing import report_rows, table_columns
from lightning_segqa.report import LabelQualityReport, format_table


def test_public_names_stay_importable_from_the_report_module():
    for name in report_module.__all__:
        assert getattr(report_module, name) is not None
    from lightning_segqa import METHODS, detection_metrics  # noqa: F401


def reference_table(report, method, k):
    """The ranked table built with plain Python loops: sort, format, pad."""
    keys = report.scores[method].tolist()
    positions = sorted(range(len(report)), key=lambda p: (math.inf if math.isnan(keys[p]) else keys[p], p))[:k]
    short = {"softmin": "SM", "iou": "IoU"}
    head = ["rank", "index", *(["name"] if report.names else []), *(short[m] for m in report.methods)]
    head += ["error"] if report.is_mislabeled is not None else []
    rows = [head]
    for rank, p in enumerate(positions, start=1):
        row = [str(rank), str(int(report.indexes[p])), *([report.names[p]] if report.names else [])]
        row += [f"{report.scores[m][p].item():.4f}" for m in report.methods]
        if report.is_mislabeled is not None:
            row.append("yes" if report.is_mislabeled[p] else "")
        rows.append(row)
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    name_col = 2 if report.names else -1
    lines = [f"{len(report)} images ranked by {method} (lower = more likely mislabeled); worst {len(positions)}:"]
    for r in rows:
        cells = [c.ljust(w) if i == name_col else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True))]
        lines.append("  ".join(cells))
    return lines


@settings(max_examples=30, deadline=None)
@given(
    scores=st.lists(st.floats(0, 1) | st.just(float("nan")), min_size=1, max_size=12),
    k=st.integers(0, 14),
    named=st.booleans(),
    with_truth=st.booleans(),
)
def test_table_matches_a_hand_built_reference(scores, k, named, with_truth):
    n = len(scores)
    report = LabelQualityReport(
        torch.arange(n) * 3 + 1,
        {"softmin": torch.tensor(scores), "iou": torch.tensor(scores[::-1])},
        is_mislabeled=torch.arange(n) % 2 == 0 if with_truth else None,
        names=[f"img{i}" for i in range(n)] if named else None,
    )
    text = format_table(report, "softmin", k).splitlines()
    assert text[: k + 2 if k < n else n + 2] == reference_table(report, "softmin", k)
    assert len(report_rows(report, "softmin", k)) == min(k, n)
    assert table_columns(report) == reference_table(report, "softmin", 0)[1].split()


def test_bad_arguments_name_what_was_wrong():
    with pytest.raises(ValueError, match="`scores` must be a 1-D floating tensor, got torch.float32 of shape"):
        worst_first(torch.zeros(2, 2))
    with pytest.raises(ValueError, match="`scores` must be a 1-D floating tensor, got list"):
        worst_first([0.1, 0.2])  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="`methods` must be a sequence of method names, got the string 'softmin'"):
        method_legend("softmin")


@pytest.mark.parametrize(
    "scores",
    [
        [float("nan")] * 4,  # nothing finite: every image ties
        [0.2, float("nan"), float("inf"), 0.1],  # NaN and +inf after every finite score
        [float("-inf"), 0.5, float("nan"), 0.3],  # -inf before every finite score
    ],
)
def test_detection_with_non_finite_scores_matches_sklearn(scores):
    from sklearn.metrics import average_precision_score, roc_auc_score

    from lightning_segqa.detection import detection_metrics

    truth = [True, False, True, False]
    # reference ranks: -inf most suspect, then finite ascending, then NaN and +inf tied last
    finite = [s for s in scores if math.isfinite(s)]
    top, bottom = (max(finite) + 1, min(finite) - 1) if finite else (0.0, -1.0)
    ref = [bottom if s == float("-inf") else top if (math.isnan(s) or s == float("inf")) else s for s in scores]
    got = detection_metrics(torch.tensor(scores), torch.tensor(truth))
    assert got["auroc"] == pytest.approx(roc_auc_score(truth, [-v for v in ref]))
    assert got["auprc"] == pytest.approx(average_precision_score(truth, [-v for v in ref]))
