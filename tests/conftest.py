"""Shared fixtures."""

import pytest


@pytest.fixture(params=["small-batch paths", "large-batch paths"])
def code_path(request, monkeypatch):
    """Run a test twice: as written, and with the paths large batches take forced on small inputs.

    Large batches gather ``s`` from flat rows, build temporaries a few images at a time and
    select the confident-learning cutoff by buckets; here they kick in from 0 pixels, with
    chunks of one to two images.
    """
    if request.param == "large-batch paths":
        from lightning_segqa.functional import confident, pixel

        monkeypatch.setattr(pixel, "FLAT_GATHER_MIN_PIXELS", 0)
        monkeypatch.setattr(pixel, "CHUNK_PIXELS", 250)
        monkeypatch.setattr(confident, "KTH_DIRECT_MAX", 0)
    return request.param
