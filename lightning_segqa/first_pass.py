"""A batch's first pass over its values in ``LabelQuality.update``: the input checks ride on the scoring."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from lightning_segqa.functional._inputs import PreparedInputs, prepare_inputs
from lightning_segqa.functional.confident import checked_pixel_pass
from lightning_segqa.functional.local import LOCAL_METHODS, checked_local_scores, local_scores
from lightning_segqa.functional.pixel import PixelPass

__all__ = ["check_finite_scores", "first_pass"]


def first_pass(
    metric: Any, preds: Tensor, target: Tensor, scan_logits: bool
) -> tuple[PreparedInputs, PixelPass | None, dict[str, Tensor]]:
    """Check a batch and make its first pass over the values, the checks riding on it.

    Args:
        metric: the :class:`~lightning_segqa.LabelQuality` whose settings apply.
        preds: ``(B, K, *spatial)`` probabilities or logits.
        target: ``(B, *spatial)`` given masks.
        scan_logits: check logits for NaN/inf in a pass of their own (False when a NaN score
            reveals them, see :func:`check_finite_scores`).

    Returns:
        The prepared inputs, the full-resolution pixel pass when the region scores work at full
        resolution (``downsample=1``), and the per-image local scores.

    Raises:
        ValueError, TypeError: the inputs fail the metric's checks (the messages name the argument).

    Examples:
        >>> from lightning_segqa import LabelQuality
        >>> metric = LabelQuality(2, methods=["softmin"])
        >>> prepared, pp, scores = first_pass(metric, torch.tensor([[[[0.8]], [[0.2]]]]), torch.tensor([[[0]]]), True)
        >>> pp is None, [round(v, 2) for v in scores["softmin"].tolist()]
        (True, [0.8])
    """
    checks = {
        "num_classes": metric.num_classes,
        "ignore_index": metric.ignore_index,
        "input_format": metric.input_format,
        "validate_args": metric.validate_args,
        "scan_logits": scan_logits,
    }
    compile = metric.compiled_kernels
    local_methods = [m for m in LOCAL_METHODS if m in metric.methods]
    region = "connected_components" in metric.methods or "confident_learning_counts" in metric.methods
    if isinstance(preds, Tensor) and preds.numel() == 0:  # nothing to read: checks only
        return prepare_inputs(preds, target, compile=compile, **checks), None, {}
    if region and metric.downsample == 1:
        prepared, pp = checked_pixel_pass(preds, target, 1, compile=compile, **checks)
        return prepared, pp, local_scores(pp, metric.temperature, local_methods, compile) if local_methods else {}
    if local_methods:
        prepared, scores = checked_local_scores(
            preds, target, temperature=metric.temperature, methods=local_methods, compile=compile, **checks
        )
        return prepared, None, scores
    return prepare_inputs(preds, target, compile=compile, **checks), None, {}


def check_finite_scores(new: dict[str, Tensor], method: str) -> None:
    """Raise if an image with valid pixels scored NaN: its logits held NaN or +inf.

    Args:
        new: the batch's new states: ``score_{method}`` and ``num_valid`` per image.
        method: the score to look at.

    Raises:
        ValueError: naming the batch positions of the images with NaN or infinite values.

    Examples:
        >>> check_finite_scores({"score_softmin": torch.tensor([0.5, float("nan")]),
        ...                      "num_valid": torch.tensor([4.0, 4.0])}, "softmin")
        Traceback (most recent call last):
        ...
        ValueError: `preds` contains NaN or infinite values (images at batch positions [1]).
    """
    bad = torch.isnan(new[f"score_{method}"]) & (new["num_valid"] > 0)
    if bool(bad.any()):
        raise ValueError(
            f"`preds` contains NaN or infinite values (images at batch positions {bad.nonzero().flatten().tolist()})."
        )
