"""How far the model agrees with the given masks, and a warning when it is too weak to judge them.

Label-quality scores rank images by how little probability the model gives the annotated
classes. That only points at *label* errors when the model itself is mostly right: a weak model
(a few epochs, a tiny network) disagrees with correct masks over much of every image, and the
"suspects" are then its own mistakes. The report therefore records the per-image pixel
agreement (share of an image's valid pixels whose most probable class is the given label) and
its spread, and :func:`weak_model_message` turns a low agreement into a warning with a remedy.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor
from torchmetrics.utilities import rank_zero_warn

from lightning_segqa.functional._inputs import PreparedInputs
from lightning_segqa.functional.pixel import PixelPass

#: a typical image (the median) must agree with its mask on at least this share of pixels
MIN_AGREEMENT = 0.65
#: key of the agreement summary in :attr:`LabelQualityReport.details`
DETAILS_KEY = "agreement"
_QUANTILES = {"q10": 0.1, "median": 0.5, "q90": 0.9}


def pixel_agreement(prepared: PreparedInputs) -> Tensor:
    """Per image, the share of valid pixels where the model's most probable class is the given label.

    Ties count as agreement (as in the correctly-classified-pixels score). An image without a
    valid pixel gives NaN.

    Args:
        prepared: output of :func:`~lightning_segqa.functional._inputs.prepare_inputs`.

    Returns:
        ``(B,)`` float32 agreement in [0, 1].

    Examples:
        >>> from lightning_segqa.functional._inputs import prepare_inputs
        >>> probs = torch.tensor([[[[0.9, 0.2, 0.6, 0.5]], [[0.1, 0.8, 0.4, 0.5]]]])
        >>> pixel_agreement(prepare_inputs(probs, torch.tensor([[[0, 0, 0, 1]]])))
        tensor([0.7500])
    """
    if not isinstance(prepared, PreparedInputs):
        raise TypeError(f"`prepared` must be PreparedInputs from prepare_inputs, got {type(prepared).__name__}.")
    probs, b = prepared.probs, prepared.probs.shape[0]
    s = probs.gather(1, prepared.target.unsqueeze(1)).squeeze(1)
    agree = (s >= probs.amax(1)).reshape(b, -1)
    if prepared.all_valid:
        return agree.float().mean(-1)
    valid = prepared.valid.reshape(b, -1)
    count = valid.sum(-1).float()
    return (agree & valid).sum(-1).float() / count  # 0 / 0 = NaN for an image without valid pixels


def pass_agreement(pp: PixelPass) -> Tensor:
    """:func:`pixel_agreement` read from a batch's pixel pass (which marks the mispredicted pixels).

    Args:
        pp: the batch's :class:`~lightning_segqa.functional.pixel.PixelPass` at full resolution.

    Returns:
        ``(B,)`` float32 agreement in [0, 1] (NaN for an image without valid pixels).

    Examples:
        >>> from lightning_segqa.functional._inputs import prepare_inputs
        >>> from lightning_segqa.functional.pixel import pixel_pass
        >>> probs = torch.tensor([[[[0.9, 0.2, 0.6, 0.5]], [[0.1, 0.8, 0.4, 0.5]]]])
        >>> pass_agreement(pixel_pass(prepare_inputs(probs, torch.tensor([[[0, 0, 0, 1]]]))))
        tensor([0.7500])
    """
    counted = vars(pp).get("mis_counts")  # already counted for a score (CCP, IoU, confident learning)
    wrong = pp.wrong.sum(-1) if counted is None else counted[0].sum(-1)
    return (pp.num_valid - wrong).float() / pp.num_valid.float()


def agreement_stats(agreement: Tensor) -> dict[str, float]:
    """Summary of per-image agreement: mean, 10th/50th/90th percentiles and the number of images.

    NaN entries (images without a valid pixel) are left out.

    Args:
        agreement: ``(N,)`` per-image pixel agreement in [0, 1].

    Returns:
        ``{"mean", "q10", "median", "q90", "num_images"}``; the figures are NaN for no image.

    Examples:
        >>> agreement_stats(torch.tensor([0.5, 0.9, 1.0, float("nan")]))
        {'mean': 0.8, 'q10': 0.58, 'median': 0.9, 'q90': 0.98, 'num_images': 3}
    """
    if not isinstance(agreement, Tensor) or agreement.ndim != 1 or not agreement.is_floating_point():
        got = (
            type(agreement).__name__
            if not isinstance(agreement, Tensor)
            else f"{agreement.dtype} {tuple(agreement.shape)}"
        )
        raise ValueError(f"`agreement` must be a 1-D float tensor (one value per image), got {got}.")
    a = agreement[~torch.isnan(agreement)].double()
    if a.numel() == 0:
        nan = float("nan")
        return {"mean": nan, "q10": nan, "median": nan, "q90": nan, "num_images": 0}
    q = torch.quantile(a, torch.tensor(list(_QUANTILES.values()), dtype=a.dtype, device=a.device)).tolist()
    out = {"mean": round(float(a.mean()), 6)}
    out.update({name: round(v, 6) for name, v in zip(_QUANTILES, q, strict=True)})
    out["num_images"] = int(a.numel())
    return out


def agreement_summary(report: Any) -> dict[str, float] | None:
    """The model-vs-mask agreement of a report, or None when it cannot be known.

    Read from ``report.details["agreement"]`` (written by :class:`~lightning_segqa.LabelQuality`);
    for older reports, derived from the ``correctly_classified_pixels`` score when present.

    Args:
        report: a :class:`~lightning_segqa.LabelQualityReport`.

    Examples:
        >>> from lightning_segqa.report import LabelQualityReport
        >>> r = LabelQualityReport(torch.arange(2), {"correctly_classified_pixels": torch.tensor([0.4, 0.6])})
        >>> agreement_summary(r)["median"]
        0.5
    """
    details = getattr(report, "details", None)
    scores = getattr(report, "scores", None)
    if not isinstance(details, dict) or not isinstance(scores, dict):
        raise TypeError(f"`report` must be a LabelQualityReport, got {type(report).__name__}.")
    stored = details.get(DETAILS_KEY)
    if isinstance(stored, dict) and "median" in stored:
        return dict(stored)
    ccp = scores.get("correctly_classified_pixels")
    return None if ccp is None else agreement_stats(ccp.float())


def weak_model_message(report: Any, min_agreement: float = MIN_AGREEMENT) -> str | None:
    """A warning when the model agrees too little with the masks for suspects to mean label errors.

    Args:
        report: a :class:`~lightning_segqa.LabelQualityReport`.
        min_agreement: the median per-image pixel agreement below which the model is too weak.

    Returns:
        The warning text, or None when the agreement is high enough or unknown.

    Examples:
        >>> from lightning_segqa.report import LabelQualityReport
        >>> r = LabelQualityReport(torch.arange(3), {"correctly_classified_pixels": torch.tensor([0.3, 0.4, 0.5])})
        >>> print(weak_model_message(r))  # doctest: +ELLIPSIS
        The model agrees with the given masks on only 40% of the pixels of a typical image...
        >>> r.scores["correctly_classified_pixels"] += 0.5
        >>> weak_model_message(r) is None
        True
    """
    if not isinstance(min_agreement, (int, float)) or isinstance(min_agreement, bool) or not 0 <= min_agreement <= 1:
        raise ValueError(f"`min_agreement` must be a number in [0, 1], got {min_agreement!r}.")
    summary = agreement_summary(report)
    if summary is None or math.isnan(summary["median"]) or summary["median"] >= min_agreement:
        return None
    return (
        f"The model agrees with the given masks on only {summary['median']:.0%} of the pixels of a typical image "
        f"(median over {summary['num_images']} images; a tenth of them below {summary['q10']:.0%}). "
        "The model is too weak to tell label errors from its own mistakes: the ranking is unreliable and the "
        "suspects' highlighted pixels are mostly where the model is wrong, not the masks. Train longer or use a "
        "stronger model (more epochs, a larger encoder, pretrained weights) until the median agreement is above "
        f"{min_agreement:.0%}, then score again."
    )


def warn_if_weak_model(report: Any, min_agreement: float = MIN_AGREEMENT) -> str | None:
    """Emit :func:`weak_model_message` as a ``UserWarning`` on rank zero; return it (None: no warning).

    Args:
        report: a :class:`~lightning_segqa.LabelQualityReport`, or None (nothing to judge).
        min_agreement: see :func:`weak_model_message`.

    Examples:
        >>> import warnings
        >>> from lightning_segqa.report import LabelQualityReport
        >>> r = LabelQualityReport(torch.arange(2), {"correctly_classified_pixels": torch.tensor([0.1, 0.2])})
        >>> with warnings.catch_warnings(record=True) as caught:
        ...     warnings.simplefilter("always")
        ...     _ = warn_if_weak_model(r)
        >>> "too weak" in str(caught[0].message)
        True
    """
    if report is None:
        return None
    message = weak_model_message(report, min_agreement)
    if message is not None:
        rank_zero_warn(message, category=UserWarning, stacklevel=4)  # points at the caller
    return message
