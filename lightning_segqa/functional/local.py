"""Scores computed from one image's own pixels: softmin, CIL, CCP and IoU (paper eqs. 1, 5, 6, 8).

Each public function takes ``preds`` ``(B, K, *spatial)`` (probabilities or logits) and
``target`` ``(B, *spatial)`` and returns a ``(B,)`` tensor where **lower means more likely
mislabeled**. Pixels equal to ``ignore_index`` are left out; an image without any valid pixel
scores NaN.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from lightning_segqa.functional import fused
from lightning_segqa.functional._inputs import PreparedInputs, prepare_with_pass
from lightning_segqa.functional.pixel import PixelPass

LOCAL_METHODS = ("softmin", "confidence_in_label", "correctly_classified_pixels", "iou")
S_METHODS = frozenset(("softmin", "confidence_in_label"))  # need only ``s``


def local_scores(
    prepared: PreparedInputs | PixelPass,
    temperature: float = 0.1,
    methods: Sequence[str] = LOCAL_METHODS,
    compile: bool | None = None,
) -> dict[str, Tensor]:
    """The pixel-local image scores of one batch from a single pass over the probabilities.

    Args:
        prepared: output of :func:`~lightning_segqa.functional._inputs.prepare_inputs`, or a
            :class:`PixelPass` already computed from it.
        temperature: softmin temperature.
        methods: which of ``softmin``, ``confidence_in_label``,
            ``correctly_classified_pixels``, ``iou`` to compute.
        compile: use the compiled one-pass kernels (None: for large batches; see
            :func:`~lightning_segqa.functional.fused.wanted`).

    Returns:
        Dict of ``(B,)`` scores for the requested methods.

    Examples:
        >>> import torch
        >>> from lightning_segqa.functional._inputs import prepare_inputs
        >>> p = prepare_inputs(torch.tensor([[[[0.9, 0.2]], [[0.1, 0.8]]]]), torch.tensor([[[0, 0]]]))
        >>> out = local_scores(p)
        >>> round(out["confidence_in_label"].item(), 4), out["correctly_classified_pixels"].item()
        (0.55, 0.5)
    """
    return _local_scores(prepared, temperature, methods, compile, check=False)[0]


def _local_scores(
    prepared: PreparedInputs | PixelPass,
    temperature: float,
    methods: Sequence[str],
    compile: bool | None,
    check: bool,
) -> tuple[dict[str, Tensor], Tensor | None]:
    """:func:`local_scores`; with ``check``, only on the compiled pass, with its value statistics.

    With ``check`` the class ids may be unchecked: where no compiled kernel serves, nothing is
    read and ``({}, None)`` comes back.
    """
    if not isinstance(prepared, PixelPass) and set(methods) <= S_METHODS:
        out = _compiled_label_scores(prepared, temperature, methods, compile, check)
        if out is not None:
            return out
    if isinstance(prepared, PixelPass):
        pp = prepared
    elif check:
        checked = PixelPass.checked(prepared, compile)
        if checked is None:
            return {}, None
        pp = checked
    else:
        pp = PixelPass(prepared, compile)
    s = pp.s
    denom = pp.num_valid.to(s.dtype)
    out = {}
    if "softmin" in methods:
        out["softmin"] = pp.softmin(temperature)
    if "confidence_in_label" in methods:
        out["confidence_in_label"] = s.sum(-1) / denom
    if "correctly_classified_pixels" in methods:
        num_mis = pp.mis_counts[0].sum(-1)
        out["correctly_classified_pixels"] = (pp.num_valid - num_mis).to(s.dtype) / denom
    if "iou" in methods:
        out["iou"] = _mean_iou(pp).to(s.dtype)
    return out, pp.stats


def checked_local_scores(
    preds: Tensor,
    target: Tensor,
    *,
    temperature: float = 0.1,
    methods: Sequence[str] = LOCAL_METHODS,
    compile: bool | None = None,
    **checks: object,
) -> tuple[PreparedInputs, dict[str, Tensor]]:
    """Prepare one batch and score it, the value checks riding on the scores' pass over the values.

    Args:
        preds: ``(B, K, *spatial)`` probabilities or logits.
        target: ``(B, *spatial)`` integer class ids.
        temperature: softmin temperature.
        methods: which local scores (see :func:`local_scores`).
        compile: use the compiled one-pass kernels (None: for large batches).
        checks: ``num_classes``, ``ignore_index``, ``input_format``, ``validate_args``,
            ``scan_logits`` of :func:`~lightning_segqa.functional._inputs.prepare_inputs`.

    Returns:
        The prepared inputs and the scores (a dict of ``(B,)`` tensors).

    Examples:
        >>> import torch
        >>> probs = torch.tensor([[[[0.9, 0.2]], [[0.1, 0.8]]]])
        >>> checked_local_scores(probs, torch.tensor([[[0, 0]]]), methods=["softmin"])[1]
        {'softmin': tensor([0.2006])}
    """

    def first_pass(candidate: PreparedInputs) -> tuple[dict[str, Tensor], Tensor] | None:
        out, stats = _local_scores(candidate, temperature, methods, compile, check=True)
        return None if stats is None else (out, stats)

    prepared, scores = prepare_with_pass(preds, target, first_pass, compile=compile, **checks)  # type: ignore[arg-type]
    if scores is None:
        scores = local_scores(prepared, temperature, methods, compile)
    return prepared, scores


def _compiled_label_scores(
    prepared: PreparedInputs, temperature: float, methods: Sequence[str], compile: bool | None, check: bool
) -> tuple[dict[str, Tensor], Tensor | None] | None:
    """Softmin and CIL from the compiled kernel that never stores ``s`` (None: not applicable)."""
    b, k = prepared.probs.shape[:2]
    flat = prepared.probs.reshape(b, k, -1)
    if not (fused.wanted(compile, flat) and fused.usable(flat, temperature)):
        return None
    valid = None if prepared.all_valid else prepared.valid.reshape(b, -1)
    target = prepared.target.reshape(b, -1)
    sums = fused.label_sums(flat, target, valid, temperature, prepared.labels_checked, check)
    if sums is None:
        return None
    (num, den, total), stats = sums
    out: dict[str, Tensor] = {}
    if "softmin" in methods:
        out["softmin"] = num / den
    if "confidence_in_label" in methods:
        count = flat.shape[2] if valid is None else valid.sum(-1).to(total.dtype)
        out["confidence_in_label"] = total / count
    return out, stats


def _mean_iou(pp: PixelPass) -> Tensor:
    """Mean IoU per image over classes present in the label or the prediction."""
    area_true = pp.class_counts
    mis_true, mis_pred = pp.mis_counts
    inter = (area_true - mis_true).double()
    union = (area_true + mis_pred).double()  # |true| + |pred| - |true & pred|
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
        compile: bool | None = None,
    ) -> Tensor:
        if not temperature > 0:
            raise ValueError(f"`temperature` must be > 0, got {temperature}.")
        from lightning_segqa.scores import REGISTRY, Settings, score_one_batch  # the method's unit (no import cycle)

        checks = {"ignore_index": ignore_index, "input_format": input_format, "validate_args": validate_args}
        return score_one_batch(
            REGISTRY[name], preds, target, Settings(temperature=temperature, compile=compile), **checks
        )

    score.__name__ = score.__qualname__ = name
    score.__doc__ = doc_example
    return score


_ARGS = """
    Args:
        preds: ``(B, K, *spatial)`` probabilities or logits (float16/bfloat16/float32/float64).
        target: ``(B, *spatial)`` integer class ids.
        ignore_index: class id excluded from the score.
        input_format: ``"auto"``, ``"probs"`` or ``"logits"``.
        validate_args: check values: labels in range, no NaN/inf, probabilities that sum to one
            (one device synchronisation per call).
        temperature: softmin temperature (used by ``softmin`` only).
        compile: use the compiled one-pass kernels (:mod:`~lightning_segqa.functional.fused`),
            which read the probabilities once, checks included: same results. None (default):
            for batches of at least 4M values (``B*K*H*W``); compiling takes seconds, once per
            process. False: never (one-off calls on small inputs); True: always.

    Returns:
        ``(B,)`` scores in [0, 1]; lower means more likely mislabeled; NaN for an image with no
        valid pixel.
"""

softmin = _public(
    "softmin",
    """Softmin of the per-pixel label probabilities (paper eq. 6, the proposed method).

    ``sum_ij s_ij * w_ij`` with ``w = softmax((1 - s) / temperature)`` over the image's valid
    pixels: a soft minimum that is pulled towards the worst-labelled region while still
    seeing the whole image. Computed stably: the eager path shifts the weights by the image
    minimum; the compiled one (``compile=True``) uses ``exp(-s / T)``, which lies in
    ``[exp(-1/T), 1]`` for ``s`` in [0, 1] and is only used for ``1/T <= 80``.
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
