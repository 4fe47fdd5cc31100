"""Pixel-level confident learning and the Confident Learning Counts score (paper section 3.5).

Every pixel (at the working resolution, after :func:`~.pooling.downsample`) is one example
of a classification problem. We reproduce what
``cleanlab.segmentation.filter.find_label_issues`` flags:

1. Per-class confident thresholds ``t_k`` = mean of ``p_k`` over pixels annotated ``k``
   (clipped below at ``2e-6``).
2. The number of issues ``M`` = pixels whose predicted class ``c = argmax p`` differs from
   the annotation and whose ``p_c >= t_c - 1e-6`` (cleanlab's prune count).
3. The ``M`` pixels with the lowest self-confidence ``s_ij`` (probability of the annotated
   class) are issues, except those whose argmax equals the annotation.

Ties at the ``M``-th lowest ``s`` are all kept (cleanlab's ``argsort`` picks arbitrarily), so
results never depend on the order of batches.

Streaming state (what :class:`~lightning_segqa.LabelQuality` keeps):

* per image: ``K`` float64 sums and ``K`` counts for the thresholds, ``K`` int32 counts of
  mispredicted pixels per predicted class, one int32 count of low-confidence pixels;
* per mispredicted pixel: ``s`` and ``p_max`` (float32, 8 bytes);
* per correctly predicted pixel with ``s <= LOW_S`` (0.51): ``s`` (4 bytes); all other pixels:
  nothing. A mispredicted pixel has ``s < p_max`` and ``s + p_max <= 1 + tol`` (``tol``, the
  largest sum error accepted for probabilities, is 1e-3, or 0.0078 for bfloat16), so
  ``s < 0.504``: every pixel that can fall below the cutoff is kept.

So at most 8 bytes per pixel of the working resolution, and usually far less (only the
pixels a model gets wrong or nearly wrong are kept). cleanlab keeps the full ``K``
probabilities per pixel plus its scores.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from lightning_segqa.functional._inputs import PreparedInputs, prepare_inputs, prepare_with_pass
from lightning_segqa.functional.kernels import LOW_S  # above any mispredicted pixel's s (see the docstring)
from lightning_segqa.functional.pixel import PixelPass, pixel_pass
from lightning_segqa.functional.pooling import working_pass
from lightning_segqa.functional.selection import _kth_smallest_of

THRESHOLD_LOWER_BOUND = 2e-6
COMPARISON_EPS = 1e-6


@dataclass
class ConfidentStats:
    """What one batch contributes to dataset-level confident learning (see module docstring).

    Attributes:
        class_sums: ``(B, K)`` float64 sums of ``p_k`` over pixels annotated ``k``.
        class_counts: ``(B, K)`` int32 pixels annotated ``k``.
        mis_counts: ``(B, K)`` int32 mispredicted pixels per predicted class.
        mis_s: ``(M,)`` float32 ``s`` of mispredicted pixels, grouped by image then class.
        mis_pmax: ``(M,)`` float32 ``p_max`` of the same pixels.
        low_counts: ``(B,)`` int32 correctly predicted pixels with ``s <= LOW_S``.
        low_s: ``(L,)`` float32 their ``s``, grouped by image.
        num_valid: ``(B,)`` valid pixels per image at the working resolution.
    """

    class_sums: Tensor
    class_counts: Tensor
    mis_counts: Tensor
    mis_s: Tensor
    mis_pmax: Tensor
    low_counts: Tensor
    low_s: Tensor
    num_valid: Tensor


def confident_stats(prepared: PreparedInputs | PixelPass) -> ConfidentStats:
    """Collect one batch's confident-learning statistics at its (working) resolution.

    Examples:
        >>> import torch
        >>> p = prepare_inputs(torch.tensor([[[[0.9, 0.2]], [[0.1, 0.8]]]]), torch.tensor([[[0, 0]]]))
        >>> st = confident_stats(p)
        >>> st.mis_s.tolist(), st.mis_counts.tolist()
        ([0.20000000298023224], [[0, 1]])
    """
    pp = prepared if isinstance(prepared, PixelPass) else pixel_pass(prepared)
    k = pp.num_classes
    s_flat = pp.s.reshape(-1)
    # group by image, then predicted class
    order = torch.argsort((pp.mis_img * k + pp.mis_pred).int(), stable=True)
    if pp.low_flags is not None:  # from the compiled pass: correctly classified, s <= LOW_S
        low_counts, low_s = pp.low_counts, pp.s.view(-1).index_select(0, pp.low_flags.view(-1).nonzero().squeeze(1))
    else:  # (s <= LOW_S) > wrong: low confidence and not mispredicted
        low = torch.gt(pp.s <= LOW_S, pp.wrong)
        if pp.valid is not None:
            low &= pp.valid
        low_counts, low_s = low.sum(1), pp.s.masked_select(low)
    return ConfidentStats(
        class_sums=pp.class_sums,
        class_counts=pp.class_counts.int(),
        mis_counts=pp.mis_counts[1].int(),  # per predicted class
        mis_s=s_flat.index_select(0, pp.mis_idx[order]).float(),
        mis_pmax=pp.mis_pmax[order].float(),
        low_counts=low_counts.int(),
        low_s=low_s.float(),
        num_valid=pp.num_valid,
    )


def _thresholds(sums: Tensor, counts: Tensor) -> Tensor:
    """Per-class confident thresholds from per-class sums and counts of ``s`` (float64)."""
    return (sums / counts.double().clamp_min(1)).clamp_min(THRESHOLD_LOWER_BOUND)


def _cutoff(
    class_sums: Tensor, class_counts: Tensor, mis_pmax: Tensor, mis_pred: Tensor, candidates: Sequence[Tensor]
) -> tuple[Tensor, Tensor, Tensor]:
    """The dataset-level step of :func:`confident_cutoff` and :func:`batch_cutoff`: thresholds, issues, cutoff.

    ``class_sums``/``class_counts`` are ``(..., K)`` (summed over the leading dimensions);
    ``mis_pmax``/``mis_pred`` give each mispredicted pixel's largest probability and predicted
    class. ``candidates`` (1-D tensors, taken together) must hold the ``s`` of every mispredicted
    pixel, and may hold any others (the cutoff is the ``num_issues``-th smallest, and all
    mispredicted ``s`` lie below ``LOW_S``).
    """
    k = class_sums.shape[-1]
    thresholds = _thresholds(class_sums.reshape(-1, k).sum(0), class_counts.reshape(-1, k).sum(0))
    num_issues = (mis_pmax.double() >= (thresholds - COMPARISON_EPS)[mis_pred]).sum()
    if int(num_issues) == 0:
        return thresholds, num_issues, torch.tensor(float("-inf"), device=candidates[0].device)
    return thresholds, num_issues, _kth_smallest_of(candidates, int(num_issues))  # in the dtype s is compared in


def confident_cutoff(
    class_sums: Tensor,
    class_counts: Tensor,
    mis_counts: Tensor,
    mis_s: Tensor,
    mis_pmax: Tensor,
    low_s: Tensor,
) -> tuple[Tensor, Tensor, Tensor]:
    """Dataset-level step: thresholds, number of issues and the ``s`` cutoff.

    Args:
        class_sums: ``(N, K)`` per-image sums (or already summed ``(K,)``).
        class_counts: same shape, counts.
        mis_counts: ``(N, K)`` mispredicted pixels per image and predicted class.
        mis_s: ``(M,)`` in the order given by ``mis_counts`` (image-major, class-minor).
        mis_pmax: ``(M,)``.
        low_s: ``(L,)``.

    Returns:
        ``(thresholds (K,) float64, num_issues () int64, cutoff () float32)``. Pixels whose
        argmax differs from the annotation and whose ``s <= cutoff`` are issues; ``cutoff`` is
        ``-inf`` when there are none.

    Examples:
        >>> import torch
        >>> t, m, c = confident_cutoff(torch.tensor([[0.9, 0.0]]).double(), torch.tensor([[2, 0]]),
        ...     torch.tensor([[0, 1]]), torch.tensor([0.2]), torch.tensor([0.8]), torch.tensor([]))
        >>> m.item(), round(c.item(), 4)
        (1, 0.2)
    """
    k = class_sums.shape[-1]
    pred_class = torch.repeat_interleave(
        torch.arange(k, device=mis_s.device).repeat(mis_counts.reshape(-1, k).shape[0]),
        mis_counts.reshape(-1).long(),
    )
    return _cutoff(class_sums, class_counts, mis_pmax, pred_class, [mis_s, low_s])


def issue_counts_per_image(mis_counts: Tensor, mis_s: Tensor, cutoff: Tensor) -> Tensor:
    """Flagged pixels per image: mispredicted pixels with ``s <= cutoff``.

    Examples:
        >>> issue_counts_per_image(torch.tensor([[0, 1], [2, 0]]), torch.tensor([0.2, 0.1, 0.7]),
        ...                        torch.tensor(0.3))
        tensor([1, 1])
    """
    ends = mis_counts.reshape(mis_counts.shape[0], -1).sum(-1).long().cumsum(0)
    flagged = torch.zeros(mis_s.numel() + 1, dtype=torch.long, device=mis_s.device)
    torch.cumsum(mis_s <= cutoff, 0, out=flagged[1:])  # flagged[j]: among the first j pixels
    return torch.diff(flagged[ends], prepend=flagged[:1])


def issue_mask(prepared: PreparedInputs | PixelPass, cutoff: Tensor | float) -> Tensor:
    """Per-pixel confident-learning issues ``(B, *spatial)`` given a dataset-level ``cutoff``.

    Examples:
        >>> import torch
        >>> p = prepare_inputs(torch.tensor([[[[0.9, 0.2]], [[0.1, 0.8]]]]), torch.tensor([[[0, 0]]]))
        >>> issue_mask(p, 0.2)
        tensor([[[False,  True]]])
    """
    pp = prepared if isinstance(prepared, PixelPass) else pixel_pass(prepared)
    cut = torch.as_tensor(cutoff, dtype=pp.s.dtype, device=pp.s.device)
    flagged = pp.mis_idx[pp.s.reshape(-1)[pp.mis_idx] <= cut]
    mask = torch.zeros(pp.s.numel(), dtype=torch.bool, device=pp.s.device)
    mask[flagged] = True
    return mask.view(pp.s.shape[0], *pp.shape)


def batch_cutoff(pp: PixelPass) -> Tensor:
    """The ``s`` cutoff of one batch taken as the whole dataset, straight from a pixel pass.

    Examples:
        >>> import torch
        >>> pp = pixel_pass(prepare_inputs(torch.tensor([[[[0.9, 0.2]], [[0.1, 0.8]]]]), torch.tensor([[[0, 0]]])))
        >>> round(batch_cutoff(pp).item(), 4)
        0.2
    """
    s_flat = pp.s.reshape(-1)
    s_valid = s_flat if pp.valid is None else s_flat[pp.valid.view(-1)]
    return _cutoff(pp.class_sums, pp.class_counts, pp.mis_pmax, pp.mis_pred, [s_valid])[2]


def _pass_and_issues(
    preds: Tensor,
    target: Tensor,
    downsample: int,
    ignore_index: int | None,
    input_format: str,
    validate_args: bool,
    compile: bool | None,
) -> tuple[PixelPass, Tensor]:
    """The pixel pass at the working resolution and its issue mask (the batch as the dataset)."""
    checks = {"ignore_index": ignore_index, "input_format": input_format, "validate_args": validate_args}
    pp = checked_pixel_pass(preds, target, downsample, compile=compile, **checks)[1]
    return pp, issue_mask(pp, batch_cutoff(pp))


def checked_pixel_pass(
    preds: Tensor,
    target: Tensor,
    downsample: int = 1,
    *,
    compile: bool | None = None,
    temperature: float | None = None,
    **checks: object,
) -> tuple[PreparedInputs, PixelPass]:
    """Prepare one batch and make its pixel pass at the working resolution.

    At ``downsample=1`` the value checks ride on the pass itself (one read of the values, where
    the compiled kernels serve); otherwise they run before the pooling.

    Args:
        preds: ``(B, K, *spatial)`` probabilities or logits.
        target: ``(B, *spatial)`` integer class ids.
        downsample: block size of the working resolution.
        compile: use the compiled one-pass kernels (None: for large batches; see
            :func:`~lightning_segqa.functional.fused.wanted`).
        temperature: at ``downsample=1``, also take the softmin's sums at this temperature in
            the compiled pass (see :meth:`.PixelPass.checked`).
        checks: ``num_classes``, ``ignore_index``, ``input_format``, ``validate_args`` of
            :func:`~lightning_segqa.functional._inputs.prepare_inputs`.

    Returns:
        The prepared inputs (full resolution) and the pixel pass (working resolution).

    Examples:
        >>> import torch
        >>> probs = torch.tensor([[[[0.9, 0.2]], [[0.1, 0.8]]]])
        >>> checked_pixel_pass(probs, torch.tensor([[[0, 0]]]))[1].wrong
        tensor([[False,  True]])
    """
    if downsample != 1:
        prepared = prepare_inputs(preds, target, compile=compile, **checks)  # type: ignore[arg-type]
        return prepared, working_pass(prepared, downsample, compile)

    def first_pass(candidate: PreparedInputs) -> tuple[PixelPass, Tensor] | None:
        pp = PixelPass.checked(candidate, compile, temperature)
        return None if pp is None or pp.stats is None else (pp, pp.stats)

    prepared, pp = prepare_with_pass(preds, target, first_pass, compile=compile, **checks)  # type: ignore[arg-type]
    return prepared, pixel_pass(prepared, compile) if pp is None else pp


def find_label_issues(
    preds: Tensor,
    target: Tensor,
    *,
    downsample: int = 1,
    ignore_index: int | None = None,
    input_format: str = "auto",
    validate_args: bool = True,
    compile: bool | None = None,
) -> Tensor:
    """Pixel-level confident learning over the batch, taken as the whole dataset.

    At ``downsample=1`` the mask equals ``cleanlab.segmentation.filter.find_label_issues``
    (up to ties at the cutoff, see the module docstring). With ``downsample > 1`` the issues
    are found at the working resolution and returned there (no upsampling).

    Args:
        preds: ``(B, K, *spatial)`` probabilities or logits.
        target: ``(B, *spatial)`` integer class ids.
        downsample: block size of the working resolution.
        ignore_index: class id excluded (never flagged, not in the thresholds).
        input_format: ``"auto"``, ``"probs"`` or ``"logits"``.
        validate_args: check values (one device synchronisation).
        compile: use the compiled one-pass kernels (None: for large batches; see :mod:`~.fused`).

    Returns:
        Bool mask ``(B, *working_spatial)``, True where the label looks wrong.

    Examples:
        >>> import torch
        >>> probs = torch.tensor([[[[0.9, 0.2, 0.7]], [[0.1, 0.8, 0.3]]]])
        >>> find_label_issues(probs, torch.tensor([[[0, 0, 1]]]))
        tensor([[[False,  True,  True]]])
    """
    return _pass_and_issues(preds, target, downsample, ignore_index, input_format, validate_args, compile)[1]


def confident_learning_counts(
    preds: Tensor,
    target: Tensor,
    *,
    downsample: int = 4,
    ignore_index: int | None = None,
    input_format: str = "auto",
    validate_args: bool = True,
    compile: bool | None = None,
) -> Tensor:
    """Confident Learning Counts: 1 minus the share of an image's pixels flagged as issues.

    The batch is taken as the whole dataset; :class:`~lightning_segqa.LabelQuality` streams it.

    Args:
        preds: ``(B, K, *spatial)`` probabilities or logits.
        target: ``(B, *spatial)`` integer class ids.
        downsample: block size of the working resolution (paper: 4).
        ignore_index: class id excluded.
        input_format: ``"auto"``, ``"probs"`` or ``"logits"``.
        validate_args: check values (one device synchronisation).
        compile: use the compiled one-pass kernels (None: for large batches; see :mod:`~.fused`).

    Returns:
        ``(B,)`` scores in [0, 1]; lower means more likely mislabeled.

    Examples:
        >>> import torch
        >>> probs = torch.tensor([[[[0.9, 0.2, 0.7]], [[0.1, 0.8, 0.3]]]])
        >>> confident_learning_counts(probs, torch.tensor([[[0, 0, 1]]]), downsample=1)
        tensor([0.3333])
    """
    from lightning_segqa.scores import REGISTRY, Settings, score_one_batch  # the method's unit (no import cycle)

    checks = {"ignore_index": ignore_index, "input_format": input_format, "validate_args": validate_args}
    settings = Settings(downsample=downsample, compile=compile)
    return score_one_batch(REGISTRY["confident_learning_counts"], preds, target, settings, **checks).float()


def local_scores_and_issues(
    preds: Tensor,
    target: Tensor,
    *,
    temperature: float = 0.1,
    ignore_index: int | None = None,
    input_format: str = "auto",
    validate_args: bool = True,
    compile: bool | None = None,
) -> tuple[dict[str, Tensor], Tensor]:
    """The four pixel-local scores and the confident-learning issue mask from one shared pass.

    Equivalent to :func:`~lightning_segqa.functional.local.local_scores` plus
    :func:`find_label_issues` at ``downsample=1``, reading the probabilities once.

    Returns:
        ``(scores, issues)``: dict of ``(B,)`` scores and the ``(B, *spatial)`` bool issue mask.

    Examples:
        >>> import torch
        >>> probs = torch.tensor([[[[0.9, 0.2, 0.7]], [[0.1, 0.8, 0.3]]]])
        >>> scores, issues = local_scores_and_issues(probs, torch.tensor([[[0, 0, 1]]]))
        >>> issues
        tensor([[[False,  True,  True]]])
    """
    from lightning_segqa.functional.local import local_scores

    pp, issues = _pass_and_issues(preds, target, 1, ignore_index, input_format, validate_args, compile)
    return local_scores(pp, temperature, compile=compile), issues
