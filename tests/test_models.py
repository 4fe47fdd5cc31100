"""The library's models: pretrained encoder weights on request, offline by default, clear errors."""

import sys

import pytest
import torch

from lightning_segqa.experiments.models import SegmentationModule, build_model


def test_encoder_weights_reach_segmentation_models_pytorch(monkeypatch):
    smp = pytest.importorskip("segmentation_models_pytorch")
    seen = []

    class Fake(torch.nn.Module):
        def __init__(self, **kwargs):
            super().__init__()
            seen.append(kwargs)

    monkeypatch.setattr(smp, "FPN", Fake)
    build_model("fpn", 5)
    SegmentationModule(5, arch="fpn", encoder_weights="imagenet")
    assert [k["encoder_weights"] for k in seen] == [None, "imagenet"]  # offline by default


def test_encoder_weights_errors():
    with pytest.raises(ValueError, match="tiny.*encoder_weights='imagenet'"):
        build_model("tiny", 3, encoder_weights="imagenet")
    with pytest.raises(TypeError, match="encoder_weights"):
        build_model("fpn", 3, encoder_weights=True)


def test_missing_smp_names_the_architecture(monkeypatch):
    monkeypatch.setitem(sys.modules, "segmentation_models_pytorch", None)
    with pytest.raises(ImportError, match=r"arch='unet' needs segmentation-models-pytorch"):
        build_model("unet", 3)
