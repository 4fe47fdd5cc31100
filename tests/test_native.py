"""The C kernel of ``compile=True`` on CPU (``functional/native.py``) against float64 brute force.

The shared cases of ``tests/test_functional.py`` (cleanlab conformance, ignored pixels, empty
images) run through it as well, in the "compiled kernels" run of the ``code_path`` fixture.
"""

import math
import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from lightning_segqa import functional as F
from lightning_segqa.functional import fused, native


@pytest.fixture(autouse=True)
def kernel(monkeypatch):
    """Skip where there is no C compiler; where there is one, the kernel must build."""
    monkeypatch.delenv(native.ENV_SWITCH, raising=False)
    if os.name == "nt" or native._compiler() is None:
        pytest.skip("the C kernel needs a C compiler with OpenMP on Linux or macOS; none was found")
    assert native._kernel() is not None, f"the C kernel did not build: {native.status()}"


def brute_sums(flat, target, valid, neg_inv_t):
    """float64 sums by a plain loop over the pixels, labels clamped, and the out-of-range flag."""
    b, k, npix = flat.shape
    out = []
    for i in range(b):
        num = den = tot = 0.0
        outside = False
        for j in range(npix):
            label = int(target[i, j])
            outside |= not 0 <= label < k
            if valid is not None and not valid[i, j]:
                continue
            s = float(flat[i, min(max(label, 0), k - 1), j])
            w = math.exp(neg_inv_t * s)
            num, den, tot = num + w * s, den + w, tot + s
        out.append((num, den, tot, outside))
    return [torch.tensor(col, dtype=torch.float64) for col in zip(*out, strict=True)]


def case(seed, b, k, npix, masked, runs=False):
    g = torch.Generator().manual_seed(seed)
    flat = torch.rand(b, k, npix, generator=g).softmax(1)
    if runs:  # labels in runs, as in real masks (one prefetch per run)
        target = torch.randint(0, k, (b, npix // 7 + 1), generator=g).repeat_interleave(7, 1)[:, :npix].contiguous()
    else:
        target = torch.randint(0, k, (b, npix), generator=g)
    valid = torch.rand(b, npix, generator=g) > 0.3 if masked else None
    if valid is not None:
        target = torch.where(valid, target, 0)
    return flat, target, valid


def assert_sums(flat, target, valid, neg_inv_t=-10.0):
    out = native.label_sums(flat, target, valid, neg_inv_t)
    ref = brute_sums(flat, target, valid, neg_inv_t)
    for got, want in zip(out[:3], ref[:3], strict=True):
        assert got.dtype == torch.float32
        torch.testing.assert_close(got.double(), want, rtol=2e-6, atol=1e-6)
    assert torch.equal(out[3], ref[3].bool())


@pytest.mark.parametrize("masked", [False, True])
@pytest.mark.parametrize(
    ("b", "k", "npix", "runs"),
    [(3, 5, 7, False), (2, 4, 16, False), (2, 3, 601, True), (1, 19, 1500, True), (5, 2, 1037, False)],
)
def test_sums_equal_brute_force(b, k, npix, runs, masked):
    """Fewer pixels than one vector, exact vectors, a tail, runs of labels, one class plane each."""
    assert_sums(*case(b * npix + k, b, k, npix, masked, runs))


@pytest.mark.parametrize(("b", "npix", "min_part"), [(1, 5000, 100), (3, 5000, 100), (2, 17, 1), (5, 40, 1)])
def test_images_split_across_threads_give_the_same_sums(monkeypatch, b, npix, min_part):
    """Few images are cut into parts (some empty when the images are tiny); the sums do not change."""
    flat, target, valid = case(3, b, 6, npix, masked=True)
    target[-1, -1] = 6  # the flag must survive the split as well
    one = native.label_sums(flat, target, valid, -10.0)
    threads = torch.get_num_threads()
    monkeypatch.setattr(native, "MIN_PART_PIXELS", min_part)
    torch.set_num_threads(4)
    try:
        split = native.label_sums(flat, target, valid, -10.0)
        assert_sums(flat, target, valid)
    finally:
        torch.set_num_threads(threads)
    for x, y in zip(one, split, strict=True):
        torch.testing.assert_close(x, y, rtol=1e-6, atol=0)
    assert split[3].tolist() == [False] * (b - 1) + [True]


def test_large_images_keep_float64_precision():
    """Four million pixels per image: lanes are added into float64 every 1024 pixels."""
    g = torch.Generator().manual_seed(0)
    flat = torch.rand(2, 3, 1 << 22, generator=g)
    target = torch.randint(0, 3, (2, 1 << 22), generator=g)
    num, den, tot, _ = native.label_sums(flat, target, None, -10.0)
    s = flat.double().gather(1, target.unsqueeze(1)).squeeze(1)
    w = torch.exp(-10.0 * s)
    torch.testing.assert_close(num.double(), (w * s).sum(-1), rtol=2e-7, atol=0)
    torch.testing.assert_close(den.double(), w.sum(-1), rtol=2e-7, atol=0)
    torch.testing.assert_close(tot.double(), s.sum(-1), rtol=2e-7, atol=0)


def test_exp_is_accurate_over_all_floats():
    """One pixel per image makes ``den`` the kernel's exp itself: about 1 ulp, subnormals, inf, NaN."""
    x = torch.cat([torch.linspace(-120.0, 100.0, 200001), torch.tensor([-math.inf, math.inf, math.nan])])
    flat = x.view(-1, 1, 1).contiguous()
    den = native.label_sums(flat, torch.zeros(len(x), 1, dtype=torch.int64), None, 1.0)[1].double()
    ref = torch.exp(x.double()).float().double()  # exp of the same float32 argument, rounded to float32
    normal = torch.isfinite(ref) & (ref >= torch.finfo(torch.float32).tiny)
    assert ((den - ref) / ref)[normal].abs().max() < 1.3e-7
    small = (ref < torch.finfo(torch.float32).tiny) & torch.isfinite(x)
    assert small.sum() > 1000 and (den - ref)[small].abs().max() <= 2**-149  # subnormals, 0
    assert torch.equal(den[x > 88.73], ref[x > 88.73])  # inf, +inf included
    assert den[-3] == 0 and torch.isnan(den[-1])


def test_out_of_range_labels_are_flagged_and_never_read_past():
    flat, target, _ = case(5, 4, 3, 40, masked=False)
    target[0, 3] = 3
    target[1, 0] = -1
    target[2, 39] = 1 << 40
    target[3, 17] = -(1 << 62)
    out = native.label_sums(flat, target, None, -10.0)
    assert out[3].tolist() == [True, True, True, True]
    assert_sums(flat, target, None)  # the clamped values, as the brute force reads them
    probs, labels = flat.view(4, 3, 5, 8), target.view(4, 5, 8)
    with pytest.raises(ValueError, match="outside \\[0, 3\\)"):
        F.softmin(probs, labels, input_format="probs", validate_args=False, compile=True)


def test_nan_probabilities_give_nan_scores_unless_ignored():
    flat, target, valid = case(8, 2, 3, 50, masked=True)
    j = int(valid[0].nonzero()[0])
    i = int((~valid[1]).nonzero()[0])
    flat[0, :, j] = float("nan")
    flat[1, :, i] = float("nan")
    num, den, tot, _ = native.label_sums(flat, target, valid, -10.0)
    assert torch.isnan(num[0]) and torch.isnan(den[0]) and torch.isnan(tot[0])
    assert torch.isfinite(torch.stack([num[1], den[1], tot[1]])).all()


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 2**16),
    b=st.integers(1, 3),
    k=st.integers(2, 6),
    npix=st.integers(1, 700),
    temperature=st.sampled_from([1 / 80, 0.05, 0.1, 1.0]),
    masked=st.booleans(),
)
def test_softmin_equals_the_eager_path(seed, b, k, npix, temperature, masked):
    """Through the public score, any shape, mask and temperature: the eager kernels' softmin and CIL."""
    flat, target, valid = case(seed, b, k, npix, masked)
    probs = flat.view(b, k, 1, npix)
    labels = target.masked_fill(~valid, 255) if masked else target
    labels = labels.view(b, 1, npix)
    kw = {"ignore_index": 255 if masked else None, "input_format": "probs"}
    for fn in (F.softmin, F.confidence_in_label):
        extra = {"temperature": temperature} if fn is F.softmin else {}
        ours = fn(probs, labels, compile=True, **kw, **extra)
        ref = fn(probs, labels, **kw, **extra)
        torch.testing.assert_close(ours, ref, atol=1e-6, rtol=0, equal_nan=True)


def test_other_inputs_are_left_to_the_checked_paths():
    """The C code reads raw host pointers: any other device, dtype, shape or layout is refused."""
    flat, target, valid = case(1, 2, 3, 20, masked=True)
    assert native.label_sums(flat.double(), target, None, -10.0) is None
    assert native.label_sums(flat.transpose(1, 2).contiguous().transpose(1, 2), target, None, -10.0) is None
    assert native.label_sums(flat, target.int(), None, -10.0) is None
    assert native.label_sums(flat, target, valid.to(torch.uint8), -10.0) is None
    assert native.label_sums(flat[:, :, :0], target[:, :0], None, -10.0) is None
    assert native.label_sums(flat, target.to("meta"), None, -10.0) is None
    assert native.label_sums(flat, target, valid.to("meta"), -10.0) is None
    assert native.label_sums(flat, target[:1], None, -10.0) is None
    assert native.label_sums(flat, target, valid[:, :10], -10.0) is None
    assert native.label_sums(flat.view(2, 3, 4, 5), target.view(2, 4, 5), None, -10.0) is None


def test_switch_off_and_failed_build_fall_back_to_inductor(monkeypatch):
    flat, target, _ = case(2, 2, 4, 64, masked=False)
    probs, labels = flat.view(2, 4, 8, 8), target.view(2, 8, 8)
    ref = F.softmin(probs, labels)
    monkeypatch.setenv(native.ENV_SWITCH, "0")
    assert native.label_sums(flat, target, None, -10.0) is None and native.status().startswith("off")
    monkeypatch.delenv(native.ENV_SWITCH)
    monkeypatch.setattr(native, "_STATE", {"fn": None, "error": None})  # a process that has not built it
    monkeypatch.setenv("CC", "/nonexistent/cc")
    assert native.label_sums(flat, target, None, -10.0) is None
    assert "compiling the C kernel failed" in native.status() and "/nonexistent/cc" in native.status()
    calls = []
    run = fused._run
    monkeypatch.setattr(fused, "_run", lambda name, *a: calls.append(name) or run(name, *a))
    torch.testing.assert_close(F.softmin(probs, labels, compile=True), ref, atol=1e-6, rtol=0)
    assert calls == ["label_sums"]  # inductor served
    monkeypatch.setattr(native, "_STATE", {"fn": None, "error": None})
    monkeypatch.setenv("CC", 'gcc "')  # unbalanced quotes
    assert native.label_sums(flat, target, None, -10.0) is None and "cannot be parsed" in native.status()


def test_the_kernel_serves_after_inductor_failed(monkeypatch):
    """A failed inductor compilation (say, no C++ compiler) does not take the C kernel down."""
    monkeypatch.setitem(fused._STATE, "broken", "RuntimeError: no C++ compiler (simulated)")
    calls = []
    sums = native.label_sums
    monkeypatch.setattr(native, "label_sums", lambda *a: calls.append(1) or sums(*a))
    flat, target, _ = case(6, 2, 4, 64, masked=False)
    probs, labels = flat.view(2, 4, 8, 8), target.view(2, 8, 8)
    torch.testing.assert_close(F.softmin(probs, labels, compile=True), F.softmin(probs, labels), atol=1e-6, rtol=0)
    assert calls == [1]


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_fork_during_a_build_does_not_leave_the_lock_held():
    held, release = threading.Event(), threading.Event()

    def builder():  # stands for a thread that is compiling the kernel
        with native._LOCK:
            held.set()
            release.wait(10)

    thread = threading.Thread(target=builder)
    thread.start()
    held.wait(10)
    try:
        pid = os.fork()
        if pid == 0:  # the child: the lock must be free
            os._exit(0 if native._LOCK.acquire(timeout=5) else 1)
        _, status = os.waitpid(pid, 0)
    finally:
        release.set()
        thread.join()
    assert os.waitstatus_to_exitcode(status) == 0


@pytest.mark.slow
def test_the_kernel_is_clean_under_address_and_undefined_behaviour_sanitizers():
    """This file's tests again, with the kernel built with ASan and UBSan (catches reads past a buffer)."""
    libs = []
    for name in ("libasan.so", "libubsan.so"):
        path = subprocess.run(["gcc", f"-print-file-name={name}"], capture_output=True, text=True).stdout.strip()
        if not os.path.isabs(path):
            pytest.skip(f"gcc has no {name}")
        libs.append(path)
    env = {
        **os.environ,
        "CC": "gcc -fsanitize=address,undefined -fno-sanitize-recover=undefined",
        "LD_PRELOAD": " ".join(libs),
        "ASAN_OPTIONS": "detect_leaks=0:alloc_dealloc_mismatch=0",
    }
    env.pop(native.ENV_SWITCH, None)
    here = Path(__file__)
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-s", "-p", "no:xdist", "-p", "no:randomly", str(here)]
        + ["-k", "not sanitizers and not large_images and not fork"],
        capture_output=True,
        text=True,
        env=env,
        cwd=here.parents[1],
        timeout=600,
    )
    out = run.stdout + run.stderr
    assert run.returncode == 0 and "Sanitizer" not in out, out[-3000:]
    assert " passed" in out and "skipped" not in out.split("\n")[-2], out[-1000:]


def test_the_kernel_serves_compile_true_on_cpu(monkeypatch):
    calls = []
    sums = native.label_sums
    monkeypatch.setattr(native, "label_sums", lambda *a: calls.append(1) or sums(*a))
    flat, target, _ = case(4, 3, 5, 256, masked=False, runs=True)
    probs, labels = flat.view(3, 5, 16, 16), target.view(3, 16, 16)
    cleanlab_rank = pytest.importorskip("cleanlab.segmentation.rank")
    ref = cleanlab_rank.get_label_quality_scores(labels.numpy(), probs.numpy(), method="softmin", verbose=False)[0]
    np.testing.assert_allclose(F.softmin(probs, labels, compile=True).numpy(), ref, atol=1e-6, rtol=0)
    assert calls == [1]
