"""Scores computed from one image's own pixels: softmin, CIL, CCP and IoU (paper eqs. 1, 5, 6, 8).

Each public function takes ``preds`` ``(B, K, *spatial)`` (probabilities or logits) and
``target`` ``(B, *spatial)`` and returns a ``(B,)`` tensor where **lower means more likely
mislabeled**. Pixels equal to ``ignore_index`` are left out; an image without any valid pixel
scores NaN.
"""

from __future__ import annotations

import torch
from torch import Tensor

from lightning_segqa.functional._inputs import PreparedInputs, prepare_inputs


def _flat(x: Tensor, keep: int) -> Tensor:
    return x.reshape(*x.shape[:keep], -1)


def label_probabilities(prepared: PreparedInputs) -> Tensor:
    """``s_ij``: the probability of the annotated class at every pixel, shape ``(B, *spatial)``.

    Ignored pixels get NaN.
    """
    s = prepared.probs.gather(1, prepared.target.unsqueeze(1)).squeeze(1)
    return torch.where(prepared.valid, s, torch.full_like(s, float("nan")))


def pixel_label_scores(
    preds: Tensor,
    target: Tensor,
    *,
    ignore_index: int | None = None,
    input_format: str = "auto",
    validate_args: bool = True,
) -> Tensor:
    """Per-pixel label quality ``s_ij`` = predicted probability of the annotated class.

    Args:
        preds: ``(B, K, *spatial)`` probabilities or logits.
        target: ``(B, *spatial)`` integer class ids.
        ignore_index: class id to skip; those pixels get NaN.
        input_format: ``"auto"``, ``"probs"`` or ``"logits"``.
        validate_args: check values (one device synchronisation).

    Returns:
        ``(B, *spatial)`` float tensor in [0, 1] (NaN at ignored pixels).

    Examples:
        >>> import torch
        >>> probs = torch.tensor([[[[0.9, 0.2]], [[0.1, 0.8]]]])  # B=1, K=2, H=1, W=2
        >>> pixel_label_scores(probs, torch.tensor([[[0, 0]]]))
        tensor([[[0.9000, 0.2000]]])
    """
    prepared = prepare_inputs(
        preds, target, ignore_index=ignore_index, input_format=input_format,
        validate_args=validate_args,
    )
    return label_probabilities(prepared)


def _softmin_from_pixels(s: Tensor, valid: Tensor, temperature: float) -> Tensor:
    """Softmin over the last dimension of ``s`` (B, P), restricted to ``valid``."""
    big = torch.finfo(s.dtype).max
    masked = torch.where(valid, s, torch.full_like(s, big))
    smin = masked.amin(dim=-1, keepdim=True)
    w = torch.exp((smin - masked) / temperature)  # exp(0) at the minimum, 0 at invalid pixels
    w = torch.where(valid, w, torch.zeros_like(w))
    s0 = torch.where(valid, s, torch.zeros_like(s))
    return (s0 * w).sum(-1) / w.sum(-1)


def local_scores(prepared: PreparedInputs, temperature: float = 0.1) -> dict[str, Tensor]:
    """All pixel-local image scores of one batch, sharing the per-pixel work.

    Args:
        prepared: output of :func:`~lightning_segqa.functional._inputs.prepare_inputs`.
        temperature: softmin temperature.

    Returns:
        Dict with ``softmin``, ``confidence_in_label``, ``correctly_classified_pixels`` and
        ``iou``, each ``(B,)``; plus ``num_valid`` ``(B,)`` and ``pred`` ``(B, *spatial)``.

    Examples:
        >>> import torch
        >>> p = prepare_inputs(torch.tensor([[[[0.9, 0.2]], [[0.1, 0.8]]]]), torch.tensor([[[0, 0]]]))
        >>> out = local_scores(p)
        >>> round(out["confidence_in_label"].item(), 4), out["correctly_classified_pixels"].item()
        (0.55, 0.5)
    """
    probs, target, valid = prepared.probs, prepared.target, prepared.valid
    b, k = probs.shape[:2]
    pmax, pred = probs.max(dim=1)
    s = probs.gather(1, target.unsqueeze(1)).squeeze(1)
    s_flat, valid_flat = _flat(s, 1), _flat(valid, 1)
    n_valid = valid_flat.sum(-1)
    denom = n_valid.to(s.dtype)
    s_valid = torch.where(valid_flat, s_flat, torch.zeros_like(s_flat))
    correct = (_flat(pred, 1) == _flat(target, 1)) & valid_flat
    return {
        "softmin": _softmin_from_pixels(s_flat, valid_flat, temperature),
        "confidence_in_label": s_valid.sum(-1) / denom,
        "correctly_classified_pixels": correct.sum(-1).to(s.dtype) / denom,
        "iou": _mean_iou(_flat(pred, 1), _flat(target, 1), valid_flat, correct, k).to(s.dtype),
        "num_valid": n_valid,
        "pred": pred,
    }


def _mean_iou(pred: Tensor, target: Tensor, valid: Tensor, correct: Tensor, k: int) -> Tensor:
    """Mean IoU per image over classes present in the label or the prediction."""
    b = pred.shape[0]
    offset = (torch.arange(b, device=pred.device) * k).unsqueeze(1)
    w = valid.to(torch.float32).flatten()
    area_pred = torch.bincount((pred + offset).flatten(), weights=w, minlength=b * k)
    area_true = torch.bincount((target + offset).flatten(), weights=w, minlength=b * k)
    inter = torch.bincount((target + offset).flatten(), weights=correct.flatten().float(), minlength=b * k)
    inter, union = inter.view(b, k), (area_pred + area_true).view(b, k) - inter.view(b, k)
    present = union > 0
    iou = torch.where(present, inter / union.clamp_min(1), torch.zeros_like(union))
    return iou.sum(-1) / present.sum(-1)


def _public(name: str, doc_example: str):  # noqa: ANN202 - small factory for the four wrappers
    def score(
        preds: Tensor,
        target: Tensor,
        *,
        ignore_index: int | None = None,
        input_format: str = "auto",
        validate_args: bool = True,
        temperature: float = 0.1,
    ) -> Tensor:
        if not temperature > 0:
            raise ValueError(f"`temperature` must be > 0, got {temperature}.")
        prepared = prepare_inputs(
            preds, target, ignore_index=ignore_index, input_format=input_format,
            validate_args=validate_args,
        )
        return local_scores(prepared, temperature)[name]

    score.__name__ = score.__qualname__ = name
    score.__doc__ = doc_example
    return score


_ARGS = """
    Args:
        preds: ``(B, K, *spatial)`` probabilities or logits (float16/bfloat16/float32/float64).
        target: ``(B, *spatial)`` integer class ids.
        ignore_index: class id excluded from the score.
        input_format: ``"auto"``, ``"probs"`` or ``"logits"``.
        validate_args: check values (one device synchronisation per call).
        temperature: softmin temperature (used by ``softmin`` only).

    Returns:
        ``(B,)`` scores in [0, 1]; lower means more likely mislabeled; NaN for an image with no
        valid pixel.
"""

softmin = _public(
    "softmin",
    """Softmin of the per-pixel label probabilities (paper eq. 6, the proposed method).

    ``sum_ij s_ij * w_ij`` with ``w = softmax((1 - s) / temperature)`` over the image's valid
    pixels: a soft minimum that is pulled towards the worst-labelled region while still
    seeing the whole image. Computed stably (weights shifted by the image minimum).
"""
    + _ARGS
    + """
    Examples:
        >>> import torch
        >>> probs = torch.tensor([[[[0.9, 0.2]], [[0.1, 0.8]]]])
        >>> softmin(probs, torch.tensor([[[0, 0]]]))
        tensor([0.2006])
""",
)

confidence_in_label = _public(
    "confidence_in_label",
    """Mean per-pixel probability of the annotated class (paper eq. 5, CIL).
"""
    + _ARGS
    + """
    Examples:
        >>> import torch
        >>> probs = torch.tensor([[[[0.9, 0.2]], [[0.1, 0.8]]]])
        >>> confidence_in_label(probs, torch.tensor([[[0, 0]]]))
        tensor([0.5500])
""",
)

correctly_classified_pixels = _public(
    "correctly_classified_pixels",
    """Share of valid pixels whose argmax prediction equals the annotation (paper eq. 1, CCP).
"""
    + _ARGS
    + """
    Examples:
        >>> import torch
        >>> probs = torch.tensor([[[[0.9, 0.2]], [[0.1, 0.8]]]])
        >>> correctly_classified_pixels(probs, torch.tensor([[[0, 0]]]))
        tensor([0.5000])
""",
)

iou = _public(
    "iou",
    """Per-image mean IoU between the predicted and the annotated mask (paper eq. 8).

    The mean runs over the classes present in the annotation or the prediction of that image
    (valid pixels only), so classes absent from both do not count as perfect matches.
"""
    + _ARGS
    + """
    Examples:
        >>> import torch
        >>> probs = torch.tensor([[[[0.9, 0.2]], [[0.1, 0.8]]]])
        >>> iou(probs, torch.tensor([[[0, 0]]]))  # class 0: 1/2, class 1: 0/1
        tensor([0.2500])
""",
)
