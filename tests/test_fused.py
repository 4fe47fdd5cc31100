"""The compiled one-pass kernels (``compile=True``) against the eager kernels, cleanlab and brute force.

The shared cases (cleanlab conformance, brute-force scores, ignored pixels, empty images,
gradients, streamed confident learning) also run with the compiled kernels through the
``code_path`` fixture; these tests cover what is particular to them.
"""

import warnings

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lightning_segqa import LabelQuality
from lightning_segqa import functional as F
from lightning_segqa.functional import fused, kernels
from lightning_segqa.functional._inputs import prepare_inputs
from lightning_segqa.functional.confident import local_scores_and_issues
from lightning_segqa.functional.local import LOCAL_METHODS, local_scores
from lightning_segqa.functional.pixel import PixelPass
from lightning_segqa.functional.pooling import majority_labels
from tests.test_functional import CASES, brute_iou, random_case, s_map

cleanlab_filter = pytest.importorskip("cleanlab.segmentation.filter")
cleanlab_rank = pytest.importorskip("cleanlab.segmentation.rank")

SCORES = (F.softmin, F.confidence_in_label, F.correctly_classified_pixels, F.iou)


@pytest.fixture(autouse=True)
def kernels_compile(monkeypatch):
    """Every test here runs compiled graphs (no silent fallback) and leaves the kernels on."""
    from tests.conftest import NO_COMPILER, cpp_compiler, strict_compile

    if cpp_compiler() is None:
        pytest.skip(NO_COMPILER)
    state = fused._STATE  # (a test may swap in its own)
    with strict_compile():
        yield
    assert state["broken"] is None, state["broken"]


def tied_case():
    """Probabilities with exact ties: the annotation wins a tie, else the first most probable class."""
    probs = torch.tensor(
        [
            [0.5, 0.5, 0.25, 0.4, 0.3, 0.4],
            [0.5, 0.25, 0.25, 0.3, 0.3, 0.2],
            [0.0, 0.25, 0.5, 0.3, 0.4, 0.4],
        ]
    ).view(1, 3, 1, 6)
    target = torch.tensor([[[1, 2, 0, 1, 2, 1]]])
    return probs, target


def test_pixel_core_matches_brute_force(compiled_calls):
    """s, the mispredicted pixels and the predicted classes, pixel by pixel, ties included."""
    for probs, target in [tied_case(), random_case(11, n=3, k=6, h=7, w=9)]:
        b, k = probs.shape[:2]
        flat, t = probs.reshape(b, k, -1), target.reshape(b, -1)
        core, stats = fused.pixel_core(flat, t, None)
        s, wrong, cell = core.s, core.wrong, core.cell
        assert stats is None
        for i in range(b):
            for j in range(flat.shape[2]):
                column = flat[i, :, j].tolist()
                label = int(t[i, j])
                best = max(column)
                pred = label if column[label] == best else column.index(best)
                assert s[i, j] == column[label]
                assert bool(wrong[i, j]) == (column[label] < best)
                assert int(cell[i, j]) == i * (k * k + 1) + label * k + pred
    assert compiled_calls["pixel_core"] == 2


def test_ties_follow_the_eager_rules():
    probs, target = tied_case()
    # pixels: a tie at the max won by the label; labels below the max (predicted 0, 2, 0);
    # a right label; classes 0 and 2 tied at the max above the label (predicted 0, the first)
    for fn in SCORES:
        torch.testing.assert_close(fn(probs, target, compile=True), fn(probs, target), atol=1e-7, rtol=0)
    eager, compiled = PixelPass(prepare_inputs(probs, target)), PixelPass(prepare_inputs(probs, target), compile=True)
    assert torch.equal(compiled.pred(), eager.pred())
    assert torch.equal(compiled.mis_pred, eager.mis_pred) and torch.equal(compiled.mis_pmax, eager.mis_pmax)


@pytest.mark.parametrize("case", range(len(CASES)))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_compiled_scores_equal_eager_and_references(case, dtype, compiled_calls):
    probs, target = CASES[case]
    probs = probs.to(dtype)
    ref_softmin = cleanlab_rank.get_label_quality_scores(
        target.numpy(), probs.numpy(), method="softmin", verbose=False
    )[0]
    np.testing.assert_allclose(F.softmin(probs, target, compile=True).numpy(), ref_softmin, atol=1e-6, rtol=0)
    compiled = local_scores(prepare_inputs(probs, target), 0.1, compile=True)
    eager = local_scores(prepare_inputs(probs, target), 0.1)
    for m in LOCAL_METHODS:
        assert compiled[m].dtype == eager[m].dtype == dtype
        torch.testing.assert_close(compiled[m], eager[m], atol=1e-6, rtol=0)
    pred, t = probs.argmax(1).numpy(), target.numpy()
    ref_iou = [brute_iou(pred[b], t[b], probs.shape[1]) for b in range(len(t))]
    np.testing.assert_allclose(compiled["iou"].numpy(), ref_iou, atol=1e-12)
    s = s_map(probs.numpy(), t)
    np.testing.assert_allclose(compiled["confidence_in_label"].numpy(), s.mean((1, 2)), atol=1e-6)
    cil = F.confidence_in_label(probs, target, compile=True)  # label_sums
    np.testing.assert_allclose(cil.numpy(), s.mean((1, 2)), atol=1e-6)
    scores, issues = local_scores_and_issues(probs, target, compile=True)
    ref = cleanlab_filter.find_label_issues(target.numpy(), probs.numpy(), downsample=1, n_jobs=1, verbose=False)
    np.testing.assert_array_equal(issues.numpy(), ref)
    assert compiled_calls["pixel_core"] >= 2 and compiled_calls["label_sums"] >= 1


def test_ignored_pixels_volumes_and_logits():
    g = torch.Generator().manual_seed(5)
    logits = torch.randn(3, 4, 5, 6, 7, generator=g) * 3
    target = torch.randint(0, 4, (3, 5, 6, 7), generator=g)
    target[0, :2] = 255
    target[2] = 255  # an image without a valid pixel scores NaN
    for fn in SCORES:
        ours = fn(logits, target, ignore_index=255, compile=True)
        ref = fn(logits, target, ignore_index=255)
        torch.testing.assert_close(ours, ref, atol=1e-6, rtol=0, equal_nan=True)
        assert torch.isnan(ours[2]) and torch.isfinite(ours[:2]).all()
    for ds in (1, 2):
        mask = F.find_label_issues(logits, target, ignore_index=255, downsample=ds, compile=True)
        assert torch.equal(mask, F.find_label_issues(logits, target, ignore_index=255, downsample=ds))
    probs, target2 = random_case(12, n=3, k=5, h=9, w=8)
    target2[1, :3] = 255
    pp = PixelPass(prepare_inputs(probs, target2, ignore_index=255), compile=True)
    ref = PixelPass(prepare_inputs(probs, target2, ignore_index=255))
    assert torch.equal(pp.pred(), ref.pred()) and torch.equal(pp.class_counts, ref.class_counts)
    assert all(torch.equal(a, b) for a, b in zip(pp.mis_counts, ref.mis_counts, strict=True))


def test_connected_components_and_metric_report_equal_eager():
    probs, target = CASES[5]
    torch.testing.assert_close(
        F.connected_components(probs, target, compile=True), F.connected_components(probs, target)
    )
    reports = []
    for compile in (False, True):
        metric = LabelQuality(num_classes=probs.shape[1], downsample=2, compile=compile)
        with torch.inference_mode():  # as in Lightning's validation loop
            for start in range(0, len(probs), 2):
                stop = min(start + 2, len(probs))
                metric.update(probs[start:stop], target[start:stop], indexes=torch.arange(start, stop))
        reports.append(metric.compute())
    for m in reports[0].scores:
        torch.testing.assert_close(reports[1].scores[m], reports[0].scores[m], atol=1e-6, rtol=0)


def test_outside_the_kernels_domain_the_eager_path_runs(monkeypatch, compiled_calls):
    """Low temperatures, gradients and huge confusion tables fall back, with the same results."""
    probs, target = random_case(13)
    eager = F.softmin(probs, target, temperature=0.005)
    torch.testing.assert_close(F.softmin(probs, target, temperature=0.005, compile=True), eager)
    assert set(compiled_calls) == {"pixel_core"}  # s compiled, the weights (exp(-200 s)) eager
    compiled_calls.clear()
    logits = probs.log().requires_grad_()
    score = F.softmin(logits, target, input_format="logits", compile=True)
    assert score.requires_grad
    assert not compiled_calls
    monkeypatch.setattr(fused, "MAX_CELLS", 10)
    pp = PixelPass(prepare_inputs(probs, target), compile=True)
    assert pp._cell is None
    torch.testing.assert_close(local_scores(pp)["iou"], F.iou(probs, target))


@pytest.fixture
def no_compiler(monkeypatch):
    """``torch.compile`` gives kernels that fail as a missing C++ compiler would; fresh fused state."""

    def broken(fn, **options):
        def run(*args):
            raise RuntimeError("no C++ compiler\nmore detail")

        return run

    monkeypatch.setattr(fused, "_COMPILED", {})
    monkeypatch.setattr(fused, "_STATE", {"broken": None})
    monkeypatch.setattr(torch, "compile", broken)


def test_a_compiler_failure_warns_once_and_falls_back(no_compiler):
    probs, target = random_case(14)
    with pytest.warns(RuntimeWarning, match=r"could not be built \(RuntimeError: no C\+\+ compiler\)"):
        ours = F.iou(probs, target, compile=True)
    torch.testing.assert_close(ours, F.iou(probs, target))
    assert not fused.usable(probs.reshape(4, 5, -1), 0.1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no second warning
        torch.testing.assert_close(F.softmin(probs, target, compile=True), F.softmin(probs, target))


def test_unchecked_labels_are_refused_where_compiling_fails(no_compiler):
    """The kernels cannot compile: an out-of-range label is still refused, never clamped.

    (ValueError from the label check, or, where the eager path takes over in the same call, the
    RuntimeError of its gather, as with ``compile=False``.)
    """
    probs, target = random_case(16)
    target[1, 2, 3] = 7  # K = 5
    for score in SCORES:
        with pytest.raises((ValueError, RuntimeError), match=r"7.*(out of bounds|outside)"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # the compile failure's warning
            score(probs, target, input_format="probs", validate_args=False, compile=True)


def test_compile_must_be_a_bool_or_none():
    probs, target = random_case(15)
    with pytest.raises(TypeError, match="`compile` must be True, False or None .*, got 'yes'"):
        F.softmin(probs, target, compile="yes")
    with pytest.raises(TypeError, match="`compile` must be True, False or None .*, got 1"):
        LabelQuality(num_classes=5, compile=1)


def test_unchecked_out_of_range_labels_are_refused_and_leak_nowhere():
    """``validate_args=False``: a class id >= K or < 0 raises (no crash, no spill into other images)."""
    probs, target = random_case(16, n=3, k=4, h=5, w=6)
    for bad in (4, -1):
        wrong = target.clone()
        wrong[1, 2, 3] = bad
        for fn in SCORES:
            with pytest.raises(ValueError, match=rf"class id {bad}, outside \[0, 4\).*validate_args=False"):
                fn(probs, wrong, input_format="probs", validate_args=False, compile=True)
        with pytest.raises(RuntimeError):  # the eager gather refuses it too
            F.softmin(probs, wrong, input_format="probs", validate_args=False)
    metric = LabelQuality(num_classes=4, input_format="probs", validate_args=False, compile=True)
    with pytest.raises(ValueError, match="class id 4"):
        metric.update(probs, torch.full_like(target, 4), indexes=torch.arange(3))
    assert not metric.indexes  # nothing stored


def test_an_error_of_the_inputs_propagates_and_keeps_the_kernels_on():
    flat, target = torch.rand(2, 3, 8).softmax(1), torch.zeros(2, 9, dtype=torch.long)
    with pytest.raises(RuntimeError, match="(?i)size"):
        fused.label_sums(flat, target, None, 0.1)  # 9 labels for 8 pixels
    assert fused._STATE["broken"] is None
    assert fused.usable(flat, 0.1)


def test_the_module_compile_method_is_not_shadowed():
    metric = LabelQuality(num_classes=3, compile=True)
    assert metric.compiled_kernels is True
    metric.compile()  # nn.Module.compile still works


def test_softmin_over_several_chunks_and_its_fallback(monkeypatch):
    from lightning_segqa.functional import pixel

    probs, target = random_case(17, n=5, k=4, h=6, w=7)
    target[2] = 255
    eager = F.softmin(probs, target, ignore_index=255)
    monkeypatch.setattr(pixel, "CHUNK_PIXELS", 84)  # two images (42 pixels each) per chunk
    pp = PixelPass(prepare_inputs(probs, target, ignore_index=255), compile=True)
    torch.testing.assert_close(pp.softmin(0.1), eager, atol=1e-6, rtol=0, equal_nan=True)
    calls = []

    def fails_on_second_chunk(s, valid, temperature):
        calls.append(s.shape[0])
        return None if len(calls) == 2 else fused._run("weighted_sums", s, valid, -1.0 / temperature)

    monkeypatch.setattr(fused, "weighted_sums", fails_on_second_chunk)
    torch.testing.assert_close(pp.softmin(0.1), eager, atol=1e-6, rtol=0, equal_nan=True)
    assert calls == [2, 2]


def test_lowest_temperature_on_the_kernels_keeps_weights_normal(compiled_calls):
    """At ``1/T = MAX_INV_T`` and every ``s = 1`` the unshifted weights are exp(-80): no underflow."""
    probs = torch.zeros(2, 3, 4, 4)
    probs[:, 1] = 1.0
    target = torch.ones(2, 4, 4, dtype=torch.long)
    target[1, 0, 0] = 0  # one pixel at s = 0
    t = 1 / fused.MAX_INV_T
    ours = F.softmin(probs, target, temperature=t, compile=True)
    torch.testing.assert_close(ours, F.softmin(probs, target, temperature=t), atol=1e-6, rtol=0)
    assert ours[0] == 1.0 and ours[1] < 1e-6
    assert compiled_calls["label_sums"] == 1


def test_a_forked_child_compiles_new_kernels():
    """inductor's compile workers do not survive a fork: the child compiles in-process."""
    import os
    import time

    probs, target = random_case(18, n=2, k=3, h=4, w=4)
    F.softmin(probs, target, compile=True)  # the parent has compiled (and started its workers)
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # a new variant: float64 with ignored pixels
        try:
            masked = target.clone()
            masked[0, 0] = 255
            out = F.iou(probs.double(), masked, ignore_index=255, compile=True)
            ok = fused._STATE["broken"] is None and torch.isfinite(out).all()
            os.write(write, b"ok" if ok else b"bad")
        finally:
            os._exit(0)
    os.close(write)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        time.sleep(0.2)
    else:
        os.kill(pid, 9)
        os.waitpid(pid, 0)
        pytest.fail("the forked child hung while compiling")
    assert os.read(read, 8) == b"ok"


def test_non_contiguous_probabilities_on_the_compiled_pass():
    """A PixelPass built by hand from a channels-last view reads the mispredicted values by index."""
    from lightning_segqa.functional._inputs import PreparedInputs

    probs, target = random_case(19, n=3, k=5, h=6, w=7)
    strided = probs.permute(0, 2, 3, 1).contiguous().permute(0, 3, 1, 2)
    valid = torch.ones_like(target, dtype=torch.bool)
    pp = PixelPass(PreparedInputs(strided, target, valid, all_valid=True), compile=True)
    ref = PixelPass(PreparedInputs(probs, target, valid, all_valid=True))
    assert pp._cell is not None and not pp._flat.is_contiguous()
    assert torch.equal(pp.mis_pmax, ref.mis_pmax) and torch.equal(pp.mis_pred, ref.mis_pred)
    assert torch.equal(pp.s, ref.s) and torch.equal(pp.pred(), ref.pred())


def test_a_new_batch_size_does_not_compile_again(monkeypatch):
    """Any batch size reuses a kernel's graph; a new image size or class count compiles once more.

    (`pixel_core` and `label_sums` compile once per class count: their class loop is written out.)

    The first graph has the image size and class count fixed (the fast code); after one of
    them changes, torch makes it dynamic and later values reuse the second graph. Batches with
    as many images as classes must not tie the two sizes. (A batch of one image compiles once
    more: torch specializes sizes 0 and 1.)
    """
    import types

    from torch._dynamo.utils import counters

    # fresh code objects under new names: dynamo keeps graphs per code object, and which sizes
    # it has seen change per (file, line, name), so earlier tests must not leave either behind
    fresh = {
        n: types.FunctionType(f.__code__.replace(co_name=f"{f.__name__}_fresh"), f.__globals__)
        for n, f in fused._KERNELS.items()
    }
    monkeypatch.setattr(fused, "_KERNELS", fresh)
    monkeypatch.setattr(fused, "_COMPILED", {})
    shapes = [(2, 2, 6, 7), (3, 2, 6, 7), (4, 2, 9, 4), (3, 2, 5, 5), (5, 5, 3, 3), (3, 4, 8, 8), (5, 2, 6, 7)]
    cases = [random_case(30 + i, n=n, k=k, h=h, w=w) for i, (n, k, h, w) in enumerate(shapes)]
    graphs = []
    for probs, target in cases:
        torch.testing.assert_close(F.softmin(probs, target, compile=True), F.softmin(probs, target), atol=1e-6, rtol=0)
        compiled = local_scores(prepare_inputs(probs, target), 0.1, compile=True)
        eager = local_scores(prepare_inputs(probs, target), 0.1)
        for m in LOCAL_METHODS:
            torch.testing.assert_close(compiled[m], eager[m], atol=1e-6, rtol=0)
        graphs.append(counters["stats"]["unique_graphs"])
    assert sorted(fused._COMPILED) == ["label_sums", "pixel_core", "weighted_sums"]
    # new batch size: 0; first new image size: one more graph for each of the three kernels;
    # first new class count: one more for the two kernels that see classes; a further class
    # count: one more for each of them again (their class loop is written out, up to
    # UNROLL_CLASSES); a class count seen before: none
    assert [b - a for a, b in zip(graphs[:-1], graphs[1:], strict=True)] == [0, 3, 0, 2, 2, 0]


@pytest.mark.parametrize("unroll", [0, 32], ids=["class loop as a reduction", "class loop written out"])
def test_both_forms_of_the_class_loop_equal_eager(unroll, monkeypatch):
    """`pixel_core` writes its class loop out up to UNROLL_CLASSES classes, above it reduces: same results."""
    monkeypatch.setattr(fused, "UNROLL_CLASSES", unroll)
    for probs, target in [tied_case(), random_case(40, n=3, k=7, h=5, w=9)]:
        eager = PixelPass(prepare_inputs(probs, target))
        compiled = PixelPass(prepare_inputs(probs, target), compile=True)
        assert compiled._cell is not None  # the kernel ran
        assert torch.equal(compiled.s, eager.s) and torch.equal(compiled.wrong, eager.wrong)
        assert torch.equal(compiled.pred(), eager.pred())
        for fn in SCORES:
            torch.testing.assert_close(fn(probs, target, compile=True), fn(probs, target), atol=1e-7, rtol=0)


# --- the value checks in the same pass as the scores -------------------------------------------


def _bad_inputs(kind):
    """A batch broken in one way, with the input format that exposes it."""
    probs, target = random_case(50, n=3, k=4, h=5, w=6)
    fmt = "auto"
    if kind == "nan":
        probs[1, 2, 3, 4] = float("nan")
    elif kind == "inf":
        probs[0, 1, 0, 0] = float("inf")
    elif kind == "label too large":
        target[2, 1, 1] = 4
    elif kind == "negative label":
        target[0, 0, 0] = -3
    elif kind == "sums off one":
        probs[1, :, 2, 2] *= 0.9
        fmt = "probs"
    elif kind == "negative probability":
        probs[2, 0, 0, 0] = -0.01
        fmt = "probs"
    elif kind == "all logits -inf":
        probs = probs.log()
        probs[1, :, 0, 0] = float("-inf")
    return probs, target, fmt


BAD = ["nan", "inf", "label too large", "negative label", "sums off one", "negative probability", "all logits -inf"]


def _error(fn):
    try:
        fn()
    except (ValueError, RuntimeError) as err:
        return type(err), str(err)
    return None


@pytest.mark.parametrize("kind", BAD)
def test_the_checks_in_the_pass_raise_the_eager_errors(kind, compiled_calls):
    """NaN/inf, bad labels and probabilities that do not sum to one: same error, same message."""
    probs, target, fmt = _bad_inputs(kind)
    calls = [
        lambda c: F.softmin(probs, target, input_format=fmt, compile=c),
        lambda c: F.iou(probs, target, input_format=fmt, compile=c),
        lambda c: F.find_label_issues(probs, target, input_format=fmt, compile=c),
        lambda c: F.connected_components(probs, target, input_format=fmt, downsample=2, compile=c),
        lambda c: LabelQuality(4, input_format=fmt, downsample=1, compile=c).update(probs, target, torch.arange(3)),
    ]
    for call in calls:
        eager = _error(lambda call=call: call(False))
        assert eager is not None and eager[0] is ValueError, (kind, eager)
        assert _error(lambda call=call: call(True)) == eager
    assert compiled_calls  # the compiled passes did the checking


def test_the_checks_ride_on_the_scoring_pass(monkeypatch, compiled_calls):
    """With the compiled kernels the default checks read nothing of their own: one pass per score."""
    from lightning_segqa.functional import _inputs

    eager_checks = []
    validate = _inputs._validate_values
    monkeypatch.setattr(_inputs, "_validate_values", lambda *a, **kw: eager_checks.append(1) or validate(*a, **kw))
    probs, target = random_case(51)
    target[0, 0, 0] = 255
    assert torch.isfinite(F.softmin(probs, target, ignore_index=255, compile=True)).all()
    assert compiled_calls == {"label_sums": 1}
    compiled_calls.clear()
    local_scores_and_issues(probs, target, ignore_index=255, compile=True)
    assert compiled_calls == {"pixel_core": 1, "weighted_sums": 1}
    assert not eager_checks
    compiled_calls.clear()
    F.thresholded_ccp(probs, target, ignore_index=255)  # small: the eager checks
    assert compiled_calls == {} and len(eager_checks) == 1
    monkeypatch.setattr(fused, "AUTO_MIN_VALUES", 0)
    F.thresholded_ccp(probs, target, ignore_index=255)  # no pass of its own to share: the checks kernel
    assert compiled_calls == {"value_stats": 1} and len(eager_checks) == 1


def test_auto_resolves_logits_as_the_eager_checks_do(compiled_calls):
    """Values outside [0, 1], or inside it with sums off one, are logits: softmax, then the scores."""
    probs, target = random_case(52)
    for preds in (probs.log(), probs * 0.5):
        for fn in SCORES:
            torch.testing.assert_close(
                fn(preds, target, compile=True), fn(preds, target, compile=False), atol=1e-6, rtol=0
            )
    assert compiled_calls["label_sums"] >= 2


def test_the_default_compiles_large_batches_only(monkeypatch, compiled_calls):
    probs, target = random_case(53)
    F.softmin(probs, target)
    assert not compiled_calls  # 1200 values: eager
    monkeypatch.setattr(fused, "AUTO_MIN_VALUES", probs.numel())
    torch.testing.assert_close(F.softmin(probs, target), F.softmin(probs, target, compile=False), atol=1e-6, rtol=0)
    assert compiled_calls == {"label_sums": 1}
    assert not fused.wanted(None, probs[:1]) and fused.wanted(None, probs) and not fused.wanted(False, probs)


def test_value_stats_match_brute_force(compiled_calls):
    probs, target = random_case(54, n=3, k=6, h=4, w=5)
    probs[1, :, 0, 0] = torch.tensor([0.5, 0.1, 0.1, 0.1, 0.1, 0.3])  # sums to 1.2
    probs[2, 3, 1, 1] = -0.25
    target[0, 0, 0], target[2, 3, 4] = 9, -2  # ignored below
    valid = torch.ones_like(target, dtype=torch.bool)
    valid[0, 0, 0] = valid[2, 3, 4] = False
    b, k = probs.shape[:2]
    stats = fused.value_stats(probs.reshape(b, k, -1), target.reshape(b, -1), valid.reshape(b, -1))
    err = max(abs(sum(probs[i, :, y, x].tolist()) - 1) for i in range(b) for y in range(4) for x in range(5))
    labels = [int(target[i, y, x]) for i in range(b) for y in range(4) for x in range(5) if valid[i, y, x]]
    expected = [float(probs.min()), float(probs.max()), err, min(labels), max(labels)]
    np.testing.assert_allclose(stats.tolist(), expected, atol=1e-6)
    assert compiled_calls == {"value_stats": 1}


def test_the_metric_at_full_resolution_reads_each_batch_once(compiled_calls):
    """Local scores and confident learning at ``downsample=1`` share one checked pass, the softmin's sums included."""
    probs, target = CASES[5]
    methods = ["softmin", "correctly_classified_pixels", "iou", "confident_learning_counts"]
    reports = []
    for compile in (True, False):
        metric = LabelQuality(probs.shape[1], methods=methods, downsample=1, compile=compile)
        metric.update(probs, target, indexes=torch.arange(len(probs)))
        reports.append(metric.compute())
    assert compiled_calls == {"pixel_core": 1}
    for m in methods:
        torch.testing.assert_close(reports[0].scores[m], reports[1].scores[m], atol=1e-6, rtol=0)
    flags = cleanlab_filter.find_label_issues(target.numpy(), probs.numpy(), downsample=1, n_jobs=1, verbose=False)
    per_image = (1 - reports[0].scores["confident_learning_counts"].double()) * target[0].numel()
    np.testing.assert_array_equal(per_image.round().long().numpy(), flags.reshape(len(flags), -1).sum(1))


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    factor=st.sampled_from([0.5, 0.99, 0.998, 0.9995, 1.0, 1.0005, 1.002, 1.5]),
    offset=st.sampled_from([0.0, -0.2, 0.3]),
    pixel=st.integers(0, 2 * 4 * 5 - 1),
    label=st.sampled_from([None, -1, 3, 200]),
    fmt=st.sampled_from(["auto", "probs"]),
    ignore_index=st.sampled_from([None, 200]),
    seed=st.integers(0, 5),
)
def test_fused_and_eager_checks_agree(factor, offset, pixel, label, fmt, ignore_index, seed, compiled_calls):
    """Any perturbation: the compiled checks give the eager checks' error, or the same scores."""
    probs, target = random_case(60 + seed, n=2, k=3, h=4, w=5)
    i, y, x = pixel // 20, pixel // 5 % 4, pixel % 5
    probs[i, :, y, x] = probs[i, :, y, x] * factor
    probs[i, 0, y, x] += offset
    if label is not None:
        target[i, y, x] = label

    def outcome(compile):
        try:
            return F.softmin(probs, target, input_format=fmt, ignore_index=ignore_index, compile=compile)
        except ValueError as err:
            return str(err)

    eager, compiled = outcome(False), outcome(True)
    if isinstance(eager, str):
        assert compiled == eager
    else:
        torch.testing.assert_close(compiled, eager, atol=1e-6, rtol=0, equal_nan=True)


@pytest.mark.parametrize(
    ("factor", "shape", "dtype"),
    [(2, (2, 3, 8, 8), torch.float32), (4, (3, 3, 8, 8), torch.float32), (8, (3, 2, 16, 32), torch.float64)],
)
def test_pool_vote_equals_its_eager_body_avg_pool_and_the_majority(dtype, factor, shape):
    """The compiled pooling of ``downsample``: its eager body's bits, ``avg_pool2d`` to rounding, the majority vote."""
    g = torch.Generator().manual_seed(factor)
    probs = torch.rand(*shape, generator=g, dtype=torch.float64).to(dtype).softmax(1)
    target = torch.randint(0, shape[1], (shape[0], *shape[2:]), generator=g)  # few classes: many tied blocks
    out = fused.pool_vote(probs, target, factor)
    assert out is not None and out[0].dtype == dtype
    eager = kernels._pool_vote(probs, target, factor, True)
    assert torch.equal(out[0], eager[0])
    ref = torch.nn.functional.avg_pool2d(probs, factor)
    torch.testing.assert_close(out[0], ref / ref.sum(1, keepdim=True), rtol=4 * torch.finfo(dtype).eps, atol=0)
    assert torch.equal(out[1], eager[1])
    assert torch.equal(out[1], majority_labels(target, None, factor, shape[1]))


def test_pool_vote_leaves_the_vote_of_many_classes_to_bincount():
    """Above 63 classes (one bit each in an int64) the kernel pools only; ``downsample`` still votes."""
    probs = torch.rand(2, 64, 4, 4, generator=torch.Generator().manual_seed(0)).softmax(1)
    target = torch.arange(32).view(2, 4, 4) * 2  # classes up to 62 and the tie rule matter below
    out = fused.pool_vote(probs, target, 2)
    assert out is not None and out[1] is None
    assert torch.equal(out[0], kernels._pool_vote(probs, target, 2, False)[0])


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2**16), st.sampled_from([2, 4]), st.integers(2, 3))
def test_compiled_vote_equals_a_brute_force_vote(seed, factor, b):
    """Each block's label from the compiled kernel is its most frequent label, ties to the lowest id."""
    g = torch.Generator().manual_seed(seed)
    probs = torch.rand(b, 3, 8, 8, generator=g).softmax(1)
    target = torch.randint(0, 3, (b, 8, 8), generator=g)
    out = fused.pool_vote(probs, target, factor)
    assert out is not None
    for i in range(b):
        for r in range(8 // factor):
            for c in range(8 // factor):
                block = target[i, r * factor : (r + 1) * factor, c * factor : (c + 1) * factor].flatten()
                assert int(out[1][i, r, c]) == int(torch.bincount(block, minlength=3).argmax())


def test_the_compiled_pass_takes_each_masks_fingerprint():
    """The pass's fingerprints equal ``mask_fingerprint`` and a brute-force sum; ignored pixels count 0."""
    from lightning_segqa.functional.kernels import fingerprint_weights
    from lightning_segqa.image_ids import mask_fingerprint

    probs, target = random_case(12, n=3, k=4, h=6, w=5)
    target[1, 0, :3] = 255
    target[2] = target[0]  # the same mask twice
    prepared = prepare_inputs(probs, target, ignore_index=255)
    pp = PixelPass(prepared, compile=True)
    assert pp.fingerprint is not None
    assert torch.equal(pp.fingerprint, mask_fingerprint(prepared.target, prepared.valid))
    weights = fingerprint_weights(torch.arange(30)).tolist()
    for i, mask in enumerate(target.reshape(3, -1).tolist()):
        assert int(pp.fingerprint[i]) == sum((c + 1) * w for c, w in zip(mask, weights, strict=True) if c != 255)
    assert pp.fingerprint[0] == pp.fingerprint[2] != pp.fingerprint[1]
    changed = target.clone()
    changed[0, 0, 0] = (changed[0, 0, 0] + 1) % 4
    again = PixelPass(prepare_inputs(probs, changed, ignore_index=255), compile=True).fingerprint
    assert again[0] != pp.fingerprint[0] and again[1] == pp.fingerprint[1]


def test_a_repeat_scored_once_eagerly_and_once_compiled_keeps_its_fingerprint(compiled_calls):
    """The eager and the compiled fingerprint of a mask agree: an identical repeat stays silent."""
    probs, target = random_case(13, n=4, k=3, h=8, w=8)
    target[0, :2] = 255
    metric = LabelQuality(3, methods=["softmin"], ignore_index=255, compile=False)
    metric.update(probs, target, torch.arange(4))
    metric.compiled_kernels = True  # the same metric, the next batch through the compiled pass
    metric.update(probs[:2], target[:2], torch.arange(2))
    assert compiled_calls == {"pixel_core": 1}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        metric.compute()
    changed = target[:1].clone()
    changed[0, 5, 5] = (changed[0, 5, 5] + 1) % 3
    metric.update(probs[:1], changed, torch.arange(1))
    with pytest.warns(UserWarning, match=r"^1 dataset index\(es\) were given more than once with different masks"):
        metric.compute()
