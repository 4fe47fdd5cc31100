from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from sklearn.metrics import average_precision_score, roc_auc_score

from lightning_segqa.visuals import (
    HEAT_CMAP,
    SuspectImage,
    colorize_mask,
    default_palette,
    figure_to_array,
    heat_colours,
    mark_colour,
    mark_pixels,
    plot_detection_curves,
    render_suspect,
    render_suspect_figure,
    score_heat_map,
    suspect_caption,
)

H, W = 24, 32


def make_suspect(image: str | None = "float", issue: bool = False, **kw) -> SuspectImage:
    target = torch.zeros(H, W, dtype=torch.long)
    target[8:16, 4:12] = 1
    target[0, :] = 255
    pred = target.clone()
    pred[8:16, 4:12] = 2
    pixel_scores = torch.full((H, W), 0.95)
    pixel_scores[:, : W // 2] = 0.05  # left half suspicious, right half fine
    img = None
    if image == "float":
        img = torch.linspace(0, 1, H * W).reshape(1, H, W).repeat(3, 1, 1)
    elif image == "uint8":
        img = torch.full((3, H, W), 200, dtype=torch.uint8)
    elif image == "grey":
        img = torch.full((1, H, W), 0.5)
    issue_mask = None
    if issue:
        issue_mask = torch.zeros(H, W, dtype=torch.bool)
        issue_mask[6:18, 2:14] = True
    return SuspectImage(
        index=17,
        score=0.0312,
        method="softmin",
        target=target,
        pred=pred,
        pixel_scores=pixel_scores,
        image=img,
        issue_mask=issue_mask,
        **kw,
    )


def test_default_palette_distinct_deterministic_and_never_black():
    for k in (1, 20, 21, 300):
        p = default_palette(k)
        assert p.shape == (k, 3) and p.dtype == torch.uint8
        rows = {tuple(c) for c in p.tolist()}
        assert len(rows) == k
        assert (0, 0, 0) not in rows
    assert torch.equal(default_palette(50), default_palette(50))
    assert torch.equal(default_palette(50)[:20], default_palette(20))
    assert default_palette(3).tolist() == [[31, 119, 180], [255, 127, 14], [44, 160, 44]]


@pytest.mark.parametrize(("arg", "exc"), [(0, ValueError), (70000, ValueError), (2.0, TypeError), (True, TypeError)])
def test_default_palette_rejects(arg, exc):
    with pytest.raises(exc, match="num_classes"):
        default_palette(arg)


def test_colorize_mask_exact_colours():
    pal = torch.tensor([[10, 20, 30], [40, 50, 60], [70, 80, 90]], dtype=torch.uint8)
    mask = torch.tensor([[0, 1], [2, -100]])
    out = colorize_mask(mask, pal, ignore_index=-100)
    assert out.dtype == torch.uint8 and out.shape == (2, 2, 3)
    assert out.tolist() == [[[10, 20, 30], [40, 50, 60]], [[70, 80, 90], [0, 0, 0]]]
    assert colorize_mask(torch.full((1, 1), 2), pal).tolist() == [[[70, 80, 90]]]


def test_colorize_mask_errors():
    pal = default_palette(2)
    with pytest.raises(ValueError, match=r"\[0, 1\].*got \[0, 5\]"):
        colorize_mask(torch.tensor([[0, 5]]), pal)
    with pytest.raises(ValueError, match="ignore_index"):
        colorize_mask(torch.tensor([[255]]), pal)  # 255 is not ignored without ignore_index
    with pytest.raises(TypeError, match="integer"):
        colorize_mask(torch.zeros(2, 2), pal)
    with pytest.raises(TypeError, match="palette"):
        colorize_mask(torch.zeros(2, 2, dtype=torch.long), torch.zeros(2, 4, dtype=torch.uint8))


def test_suspect_image_validation():
    good = make_suspect()
    with pytest.raises(ValueError, match="pred"):
        SuspectImage(1, 0.1, "m", good.target, good.pred[:-1], good.pixel_scores)
    with pytest.raises(TypeError, match="pixel_scores"):
        SuspectImage(1, 0.1, "m", good.target, good.pred, good.pixel_scores.numpy())
    with pytest.raises(ValueError, match="image"):
        SuspectImage(1, 0.1, "m", good.target, good.pred, good.pixel_scores, torch.zeros(2, H, W))
    with pytest.raises(TypeError, match="name"):
        SuspectImage(1, 0.1, "m", good.target, good.pred, good.pixel_scores, name=3)
    with pytest.raises(TypeError, match="mark_rule"):
        SuspectImage(1, 0.1, "m", good.target, good.pred, good.pixel_scores, mark_rule=["x"])


def test_suspect_caption():
    assert suspect_caption(make_suspect()) == "idx 17 | softmin score 0.0312"
    assert suspect_caption(make_suspect(is_mislabeled=True)).endswith("| true error")
    assert suspect_caption(make_suspect(is_mislabeled=False)).endswith("| clean")
    assert suspect_caption(make_suspect(name="0016E5_07290")) == "idx 17 (0016E5_07290) | softmin score 0.0312"


def test_score_heat_map_is_the_colormap():
    from matplotlib import colormaps

    scores = torch.tensor([[1.0, 0.5, 0.0, float("nan"), 1.7, -0.2]])
    out = score_heat_map(scores)
    assert out.dtype == np.uint8 and out.shape == (1, 6, 3)
    ref = colormaps[HEAT_CMAP](np.array([1.0, 128 / 255, 0.0, 1.0, 1.0, 0.0]))[:, :3]  # NaN drawn as 1; clipped
    np.testing.assert_allclose(out[0], np.round(ref * 255), atol=1)
    assert out[0, 2, 0] > 150 > out[0, 2, 2] and out[0, 0, 2] > 100 > out[0, 0, 0]  # 0 red, 1 blue
    np.testing.assert_array_equal(heat_colours()[[0, -1]], out[0, [2, 0]])
    with pytest.raises(TypeError, match="pixel_scores"):
        score_heat_map(torch.ones(2, 2, 2))


def test_mark_pixels_outline_and_fill():
    issue = torch.zeros(7, 7, dtype=torch.bool)
    issue[1:6, 1:6] = True
    base = np.full((7, 7, 3), 100, dtype=np.uint8)
    out = mark_pixels(base, issue, (255, 0, 255), fill=0.5)
    is_mark = (out == np.array([255, 0, 255], dtype=np.uint8)).all(-1)
    border = issue.numpy().copy()
    border[2:5, 2:5] = False
    np.testing.assert_array_equal(is_mark, border)
    assert out[3, 3].tolist() == [178, 50, 178]  # inside: half way to the mark colour
    assert out[0, 0].tolist() == [100, 100, 100] and base[3, 3].tolist() == [100, 100, 100]  # input untouched
    with pytest.raises(ValueError, match="fill"):
        mark_pixels(base, issue, (255, 0, 255), fill=2.0)
    with pytest.raises(TypeError, match="marked"):
        mark_pixels(base, issue[:3], (255, 0, 255))


@pytest.mark.parametrize("image", ["float", "uint8", "grey", None])
@pytest.mark.parametrize("issue", [False, True])
def test_render_suspect_panels_and_colours(image, issue):
    pal = default_palette(3)
    arr = render_suspect(make_suspect(image, issue), ["road", "car", "bus"], pal, ignore_index=255)
    assert arr.dtype == np.uint8 and arr.ndim == 3 and arr.shape[2] == 3
    assert arr.shape[0] > 100 and arr.shape[1] >= (900 if image is None else 1200)
    codes = set(np.unique(_rgb_codes(arr)).tolist())
    assert len(codes) > 20  # text, panels, legend
    for colour in (*pal.tolist(), [0, 0, 0]):  # all three classes and ignore are drawn
        assert _rgb_codes(np.array(colour)).item() in codes
    assert (_rgb_codes(np.array(mark_colour(pal))).item() in codes) == issue


def _rgb_codes(arr: np.ndarray) -> np.ndarray:
    arr = arr.astype(np.int64)
    return (arr[..., 0] << 16) | (arr[..., 1] << 8) | arr[..., 2]


def _panel_pixels(fig, title_prefix: str) -> np.ndarray:
    arr = figure_to_array(fig)
    ax = next(a for a in fig.axes if a.get_title().startswith(title_prefix))
    box = ax.get_window_extent()
    top, bottom = arr.shape[0] - int(np.ceil(box.y1)), arr.shape[0] - int(box.y0)
    return arr[top:bottom, int(np.ceil(box.x0)) : int(box.x1)]


def test_heat_panel_is_redder_where_pixel_scores_are_low():
    s = make_suspect("grey")
    fig = render_suspect_figure(s, ignore_index=255)
    titles = [a.get_title() for a in fig.axes]
    assert titles == ["image", "given mask", "predicted mask", "P(given class)", ""]  # the last: colour bar
    panel = _panel_pixels(fig, "P(given class)").astype(int)
    h, w, _ = panel.shape
    left = panel[h // 4 : 3 * h // 4, w // 8 : 3 * w // 8].reshape(-1, 3)
    right = panel[h // 4 : 3 * h // 4, 5 * w // 8 : 7 * w // 8].reshape(-1, 3)
    redness = lambda px: (px[:, 0] - px[:, 2]).mean()  # noqa: E731
    assert redness(left) > 100 and redness(right) < -50
    expected = score_heat_map(s.pixel_scores)
    np.testing.assert_allclose(np.median(left, 0), expected[H // 2, 2], atol=2)
    np.testing.assert_allclose(np.median(right, 0), expected[H // 2, -3], atol=2)


def test_render_suspect_legend_and_title():
    s = make_suspect(is_mislabeled=True)
    fig = render_suspect_figure(s, ["road", "car", "bus", "sky"], ignore_index=255)
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert labels == ["road", "car", "bus", "ignore"]  # "sky" is in neither mask; nothing marked
    assert fig._suptitle.get_text() == "idx 17 | softmin score 0.0312 | true error"
    fig = render_suspect_figure(make_suspect(issue=True, mark_rule="confident-learning label issues"), ignore_index=255)
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert labels == [
        "class 0",
        "class 1",
        "class 2",
        "ignore",
        "marked: confident-learning label issues (144 px, 18.8%)",
    ]


def test_render_suspect_errors():
    with pytest.raises(TypeError, match="suspect"):
        render_suspect("not a suspect")
    with pytest.raises(ValueError, match="palette"):
        render_suspect(make_suspect(), palette=default_palette(2), ignore_index=255)


def test_figure_to_array_size():
    from matplotlib.figure import Figure

    fig = Figure(figsize=(3, 2), dpi=40)
    fig.add_subplot().plot([0, 1], [0, 1])
    arr = figure_to_array(fig)
    assert arr.shape == (80, 120, 3) and arr.dtype == np.uint8
    assert arr.min() < 100 and arr.max() == 255
    with pytest.raises(TypeError, match="fig"):
        figure_to_array(np.zeros((2, 2, 3)))


def _legend_values(ax, metric: str) -> dict[str, float]:
    texts = [t.get_text() for t in ax.get_legend().get_texts()]
    return {m.group(1): float(m.group(2)) for m in (re.fullmatch(rf"(.+) \({metric}=([0-9.]+)\)", t) for t in texts)}


def test_plot_detection_curves_matches_sklearn():
    gen = torch.Generator().manual_seed(0)
    labels = torch.rand(200, generator=gen) < 0.3
    good = torch.rand(200, generator=gen) - 0.4 * labels  # mislabeled score lower
    tied = torch.round(good * 4) / 4  # many ties
    scores = {"softmin": good, "rounded": tied, "huge": good * 1e4 + 5e4}  # no sigmoid squashing
    fig = plot_detection_curves(scores, labels)
    assert len(fig.axes) == 2
    assert [a.get_title() for a in fig.axes] == ["ROC", "precision-recall"]
    aurocs, auprcs = _legend_values(fig.axes[0], "AUROC"), _legend_values(fig.axes[1], "AUPRC")
    assert set(aurocs) == set(auprcs) == set(scores)
    for name, s in scores.items():
        assert aurocs[name] == pytest.approx(roc_auc_score(labels.numpy(), -s.numpy()), abs=5e-4)
        assert auprcs[name] == pytest.approx(average_precision_score(labels.numpy(), -s.numpy()), abs=5e-4)
    assert aurocs["huge"] == aurocs["softmin"] > 0.7
    # sigmoid would saturate these to ties (AUROC 0.5); the true value is 3/4
    fig = plot_detection_curves({"m": torch.tensor([100.0, 200.0, 300.0, 400.0])}, torch.tensor([1, 0, 1, 0]))
    assert _legend_values(fig.axes[0], "AUROC") == {"m": 0.75}
    assert figure_to_array(fig).shape == (420, 1000, 3)
    # NaN scores (e.g. images with every pixel ignored) are dropped and counted
    fig = plot_detection_curves({"m": torch.tensor([0.1, float("nan"), 0.9, 0.2])}, torch.tensor([1, 1, 0, 0]))
    assert fig.axes[0].get_legend().get_texts()[0].get_text() == "m (AUROC=1.000, 1 NaN dropped)"


def test_plot_detection_curves_errors():
    y = torch.tensor([True, False, True])
    with pytest.raises(ValueError, match="both classes"):
        plot_detection_curves({"m": torch.rand(3)}, torch.ones(3, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"scores\['m'\].*shape \(3,\)"):
        plot_detection_curves({"m": torch.rand(4)}, y)
    with pytest.raises(ValueError, match="one class after dropping NaN"):
        plot_detection_curves({"m": torch.tensor([float("nan"), 0.2, float("nan")])}, y)
    with pytest.raises(TypeError, match="scores"):
        plot_detection_curves({}, y)
    with pytest.raises(ValueError, match="0/1"):
        plot_detection_curves({"m": torch.rand(3)}, torch.tensor([0, 2, 1]))


def test_rendering_never_touches_pyplot_or_the_global_backend(monkeypatch):
    import matplotlib
    import matplotlib.pyplot as plt

    def boom(*args, **kwargs):
        raise AssertionError("global matplotlib state touched")

    for name in ("figure", "subplots", "switch_backend", "gcf", "close"):
        monkeypatch.setattr(plt, name, boom)
    monkeypatch.setattr(matplotlib, "use", boom)
    backend = matplotlib.rcParams._get_backend_or_none()
    render_suspect(make_suspect(issue=True), ignore_index=255)
    figure_to_array(plot_detection_curves({"a": torch.rand(4)}, torch.tensor([0, 1, 0, 1])))
    assert matplotlib.rcParams._get_backend_or_none() == backend
