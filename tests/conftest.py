"""Shared fixtures."""

import contextlib
import functools
import shutil

import pytest


@functools.cache
def cpp_compiler() -> str | None:
    """The C++ compiler torch.compile would use on CPU, or None when there is none."""
    try:
        from torch._inductor import cpp_builder

        return shutil.which(cpp_builder.get_cpp_compiler())
    except Exception:  # noqa: BLE001 - no compiler found, in whatever way inductor says it
        return None


NO_COMPILER = "torch.compile needs a C++ compiler (g++ or $CXX) on CPU; none was found"


@contextlib.contextmanager
def strict_compile():
    """Make the compiled kernels fail loudly instead of running their Python bodies.

    Past dynamo's recompile limit (8 graphs per function) a kernel silently runs as plain
    Python; the tests use many more input variants than one training run, so they raise the
    limit and turn hitting it into an error (which ``fused`` reports as a compile failure).
    torch's own ``config.patch`` restores the settings (``monkeypatch`` would delete them).
    """
    import torch._dynamo.config as dynamo_config

    with dynamo_config.patch(recompile_limit=64, fail_on_recompile_limit_hit=True):
        yield


@pytest.fixture(params=["small-batch paths", "large-batch paths", "compiled kernels"])
def code_path(request, monkeypatch):
    """Run a test three times: as written, with the large-batch paths, with ``compile=True``.

    Large batches gather ``s`` from flat rows, build temporaries a few images at a time and
    select the confident-learning cutoff by buckets; here they kick in from 0 pixels, with
    chunks of one to two images. The third run turns on the compiled one-pass kernels
    (the default ``compile=None`` then compiles every batch) in every score and in
    :class:`~lightning_segqa.LabelQuality`.
    """
    if request.param == "large-batch paths":
        from lightning_segqa.functional import pixel, selection

        monkeypatch.setattr(pixel, "FLAT_GATHER_MIN_PIXELS", 0)
        monkeypatch.setattr(pixel, "CHUNK_PIXELS", 250)
        monkeypatch.setattr(selection, "KTH_DIRECT_MAX", 0)
    elif request.param == "compiled kernels":
        if cpp_compiler() is None:
            pytest.skip(NO_COMPILER)
        from lightning_segqa.functional import fused

        monkeypatch.setattr(fused, "AUTO_MIN_VALUES", 0)  # the default (compile=None) compiles every batch
    with strict_compile() if request.param == "compiled kernels" else contextlib.nullcontext():
        yield request.param
    if request.param == "compiled kernels":
        from lightning_segqa.functional import fused

        assert fused._STATE["broken"] is None, f"the kernels did not compile: {fused._STATE['broken']}"


@pytest.fixture
def compiled_calls(monkeypatch):
    """Count the calls of each compiled kernel (to show a test really ran them)."""
    from lightning_segqa.functional import fused

    if cpp_compiler() is None:
        pytest.skip(NO_COMPILER)
    calls = {}
    run = fused._run

    def counting(name, *args):
        out = run(name, *args)
        if out is not None:
            calls[name] = calls.get(name, 0) + 1
        return out

    monkeypatch.setattr(fused, "_run", counting)
    with strict_compile():
        yield calls
