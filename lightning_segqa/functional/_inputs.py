"""Input checking and conversion shared by every score.

Every score takes ``preds`` of shape ``(B, K, *spatial)`` (probabilities or logits) and
``target`` of shape ``(B, *spatial)`` (integer class ids). This module turns them into
float probabilities, a target whose ignored pixels are mapped to class 0, and a boolean
``valid`` mask, after checking shapes, dtypes and values.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, TypeVar

import torch
from torch import Tensor

from lightning_segqa.functional import fused

InputFormat = Literal["auto", "probs", "logits"]
_FORMATS = ("auto", "probs", "logits")
T = TypeVar("T")
_PROB_SUM_TOL = 1e-3  # per-pixel sums of float32/float64 probabilities may be off 1 by this


def prob_sum_tolerance(dtype: torch.dtype) -> float:
    """How far per-pixel sums of probabilities stored in ``dtype`` may be off 1.

    Rounding each of the ``K`` values moves the sum by at most half an ulp of 1 in total, so
    half-precision softmax outputs (bfloat16: up to ~4e-3) are still recognised.

    Examples:
        >>> prob_sum_tolerance(torch.float32), prob_sum_tolerance(torch.bfloat16)
        (0.001, 0.0078125)
    """
    return max(_PROB_SUM_TOL, torch.finfo(dtype).eps)


@dataclass(frozen=True)
class PreparedInputs:
    """Checked inputs of one batch.

    Attributes:
        probs: ``(B, K, *spatial)`` probabilities in float32 (float64 kept as is).
        target: ``(B, *spatial)`` int64 class ids; ignored pixels hold 0.
        valid: ``(B, *spatial)`` bool, False at ignored pixels (a read-only expanded view of
            one True when nothing is ignored).
        all_valid: True when no pixel is ignored (lets scores skip masking).
        labels_checked: False when the class ids were not checked (``validate_args=False``).
    """

    probs: Tensor
    target: Tensor
    valid: Tensor
    all_valid: bool = False
    labels_checked: bool = True


def detect_format(preds: Tensor) -> str:
    """``"probs"`` when every value lies in [0, 1] and each pixel sums to 1, else ``"logits"``.

    The rule ``input_format="auto"`` applies (sums within :func:`prob_sum_tolerance`); NaN
    counts as logits. One or two device synchronisations.

    Examples:
        >>> detect_format(torch.tensor([[[0.25], [0.75]]])), detect_format(torch.tensor([[[2.0], [-1.0]]]))
        ('probs', 'logits')
    """
    x = preds.float()
    pmin, pmax = torch.aminmax(x)
    return "probs" if _probability_rule(x, float(pmin), float(pmax), prob_sum_tolerance(preds.dtype))[0] else "logits"


def _probability_rule(preds: Tensor, pmin: float, pmax: float, tol: float) -> tuple[bool, float]:
    """Whether values in ``[pmin, pmax]`` summing per pixel to 1 within ``tol`` are probabilities.

    Returns the verdict and the largest per-pixel sum error (inf when a value leaves [0, 1]; the
    sums are only computed otherwise).
    """
    if not (pmin >= 0 and pmax <= 1):  # NaN fails too
        return False, float("inf")
    sum_err = float((preds.sum(dim=1) - 1).abs().amax())
    return sum_err <= tol, sum_err


def check_format(input_format: str) -> None:
    """Raise if ``input_format`` is not one of ``auto``, ``probs``, ``logits``."""
    if input_format not in _FORMATS:
        raise ValueError(f"`input_format` must be one of {_FORMATS}, got {input_format!r}.")


def _check_shapes(preds: Tensor, target: Tensor, num_classes: int | None) -> None:
    if not isinstance(preds, Tensor):
        raise TypeError(f"`preds` must be a torch.Tensor, got {type(preds).__name__}.")
    if not isinstance(target, Tensor):
        raise TypeError(f"`target` must be a torch.Tensor, got {type(target).__name__}.")
    if not preds.is_floating_point():
        raise TypeError(f"`preds` must be a floating point tensor of probabilities or logits, got {preds.dtype}.")
    if target.is_floating_point() or target.is_complex() or target.dtype == torch.bool:
        raise TypeError(
            f"`target` must be an integer tensor of class ids, got {target.dtype}. "
            "Convert it with `target.long()` if it holds whole numbers."
        )
    if preds.ndim < 3:
        raise ValueError(
            "`preds` must have shape (B, K, *spatial) with at least one spatial dimension, "
            f"got shape {tuple(preds.shape)}."
        )
    if target.device != preds.device:
        raise ValueError(
            f"`target` is on {target.device} but `preds` on {preds.device}; move both to one device "
            "(e.g. `target.to(preds.device)`)."
        )
    if target.shape != preds.shape[:1] + preds.shape[2:]:
        raise ValueError(
            f"`target` must have shape (B, *spatial) = {tuple(preds.shape[:1] + preds.shape[2:])} "
            f"to match `preds` {tuple(preds.shape)}, got {tuple(target.shape)}."
        )
    if num_classes is not None and preds.shape[1] != num_classes:
        raise ValueError(
            f"`preds` must have num_classes={num_classes} channels in dimension 1, "
            f"got {preds.shape[1]} (shape {tuple(preds.shape)})."
        )
    if preds.shape[1] < 2:
        raise ValueError(f"`preds` needs at least 2 classes in dimension 1, got {preds.shape[1]}.")


def prepare_inputs(
    preds: Tensor,
    target: Tensor,
    *,
    num_classes: int | None = None,
    ignore_index: int | None = None,
    input_format: str = "auto",
    validate_args: bool = True,
    scan_logits: bool = True,
    compile: bool | None = None,
) -> PreparedInputs:
    """Check ``preds`` and ``target`` and convert them to probabilities and a valid mask.

    Args:
        preds: ``(B, K, *spatial)`` probabilities or logits; float16/bfloat16 are upcast to
            float32.
        target: ``(B, *spatial)`` integer class ids.
        num_classes: expected ``K``; taken from ``preds`` when None.
        ignore_index: class id excluded from every score.
        input_format: ``"probs"``, ``"logits"`` (softmax applied) or ``"auto"``: probabilities
            when every value lies in [0, 1] and each pixel sums to 1 (within 1e-3; within
            ``eps`` for half-precision inputs, see :func:`prob_sum_tolerance`), else logits.
        validate_args: check values (NaN/Inf, label range, probabilities that do not sum to
            one). Costs one device synchronisation per call; shapes and dtypes are always
            checked, and ``"auto"`` always looks at the values.
        scan_logits: with ``input_format="logits"``, scan the logits for NaN/Inf and for a
            range wide enough to underflow (then exponents are clipped, see :func:`_softmax`).
            False skips that pass over ``preds`` (labels are still checked): non-finite logits
            then give NaN probabilities, which the caller must look for in its results.
        compile: read the values for the checks with one compiled kernel instead of two eager
            ones (see :func:`~lightning_segqa.functional.fused.wanted`; None: large batches).

    Returns:
        The prepared inputs.

    Raises:
        TypeError: wrong dtypes.
        ValueError: wrong shapes, non-finite values, labels out of range, invalid probabilities.

    Examples:
        >>> import torch
        >>> logits = torch.zeros(1, 3, 2, 2)
        >>> p = prepare_inputs(logits + 5, torch.tensor([[[0, 1], [2, 255]]]), ignore_index=255)
        >>> p.probs[0, :, 0, 0]
        tensor([0.3333, 0.3333, 0.3333])
        >>> p.valid
        tensor([[[ True,  True],
                 [ True, False]]])
    """
    checks = {"num_classes": num_classes, "ignore_index": ignore_index, "input_format": input_format}
    checks.update(validate_args=validate_args, scan_logits=scan_logits, compile=compile)
    return prepare_with_pass(preds, target, None, **checks)[0]


def prepare_with_pass(
    preds: Tensor,
    target: Tensor,
    first_pass: Callable[[PreparedInputs], tuple[T, Tensor] | None] | None,
    *,
    num_classes: int | None = None,
    ignore_index: int | None = None,
    input_format: str = "auto",
    validate_args: bool = True,
    scan_logits: bool = True,
    compile: bool | None = None,
) -> tuple[PreparedInputs, T | None]:
    """:func:`prepare_inputs`, with the value checks done by the caller's first pass over the values.

    ``first_pass`` gets the inputs as they will be if they hold valid probabilities (class ids
    not yet checked) and returns its result together with the value statistics of
    :data:`~lightning_segqa.functional.fused.STATS`, read in the same pass; or None when it
    cannot (then the checks read the values themselves). The statistics give the same errors
    and the same ``"auto"`` verdict as :func:`prepare_inputs`. When the values turn out to be
    logits (``"auto"``), the softmax is applied and the first pass's result is dropped.

    Args:
        preds: as :func:`prepare_inputs`.
        target: as :func:`prepare_inputs`.
        first_pass: the caller's pass, or None.
        num_classes: as :func:`prepare_inputs`.
        ignore_index: as :func:`prepare_inputs`.
        input_format: as :func:`prepare_inputs`.
        validate_args: as :func:`prepare_inputs`.
        scan_logits: as :func:`prepare_inputs`.
        compile: as :func:`prepare_inputs` (for the checks when ``first_pass`` gives none).

    Returns:
        The prepared inputs and ``first_pass``'s result for them (None when it did not run on
        them: logits, no value checks to do, or it could not give the statistics).

    Raises:
        TypeError: wrong dtypes, or ``compile`` not a bool or None.
        ValueError: as :func:`prepare_inputs`.

    Examples:
        >>> import torch
        >>> def first_pass(p):  # a pass that happens to read the values as well
        ...     x = p.probs
        ...     stats = torch.tensor([x.min(), x.max(), (x.sum(1) - 1).abs().max(), 0, 0]).double()
        ...     return x.amax(1), stats
        >>> prepared, out = prepare_with_pass(torch.tensor([[[0.25], [0.75]]]), torch.tensor([[0]]), first_pass)
        >>> out
        tensor([[0.7500]])
    """
    check_format(input_format)
    fused.check_compile(compile)
    _check_shapes(preds, target, num_classes)
    k = preds.shape[1]
    tol = prob_sum_tolerance(preds.dtype)
    if preds.dtype in (torch.float16, torch.bfloat16):
        preds = preds.float()
    target = target.long()
    if ignore_index is not None:
        valid = target != ignore_index
        safe_target = torch.where(valid, target, torch.zeros_like(target))
    else:  # a read-only view of one True: nothing allocated or written per pixel
        valid = torch.ones((), dtype=torch.bool, device=target.device).expand(target.shape)
        safe_target = target
    fmt = input_format
    done = {"target": safe_target, "valid": valid, "all_valid": ignore_index is None}
    if preds.numel() == 0:  # an empty batch: nothing to check or convert
        return PreparedInputs(probs=preds.contiguous(), labels_checked=validate_args, **done), None
    if fmt == "logits" and not scan_logits:
        if validate_args:
            lmin, lmax = torch.stack(_label_range(target, valid, k, ignore_index)).tolist()  # one sync
            _check_labels(lmin, lmax, k, ignore_index)
        return PreparedInputs(probs=_softmax(preds, 0.0), labels_checked=validate_args, **done), None
    if fmt == "probs" and not validate_args:
        return PreparedInputs(probs=preds.contiguous(), labels_checked=False, **done), None
    if fmt == "logits":
        spread = math.inf  # unknown: exponents are clipped
        if validate_args:
            spread = _validate_values(preds, target, valid, k, ignore_index, fmt, validate_args, tol)[1]
        return PreparedInputs(probs=_softmax(preds, spread), labels_checked=validate_args, **done), None
    # "auto", or probabilities to check: one read of the values gives the checks and the scores
    candidate = PreparedInputs(probs=preds.contiguous(), labels_checked=False, **done)
    result, stats = None, None
    if first_pass is not None:
        out = first_pass(candidate)
        if out is not None:
            result, stats = out
    if stats is None:
        b = preds.shape[0]
        flat = candidate.probs.reshape(b, k, -1)
        if fused.wanted(compile, flat) and fused.usable(flat):
            stats = fused.value_stats(
                flat, target.reshape(b, -1), None if ignore_index is None else valid.reshape(b, -1)
            )
    if stats is None:  # the eager checks: two or three reads of the values
        fmt, spread = _validate_values(preds, target, valid, k, ignore_index, fmt, validate_args, tol)
    else:
        pmin, pmax, sum_err, lmin, lmax = stats.tolist()  # one sync
        fmt, spread = _resolve(
            preds, (pmin, pmax, lmin, lmax), lambda: sum_err, k, ignore_index, fmt, validate_args, tol
        )
        if not validate_args and lmax >= lmin and (lmin < 0 or lmax >= k):  # the pass clamped them
            fused._refuse_labels(torch.tensor([lmin, lmax]).long(), k)
    if fmt == "probs":
        return PreparedInputs(probs=candidate.probs, labels_checked=validate_args, **done), result
    return PreparedInputs(probs=_softmax(preds, spread), labels_checked=validate_args, **done), None


def _softmax(logits: Tensor, spread: float = float("inf")) -> Tensor:
    """Softmax over dim 1 that never produces subnormal floats.

    Exponents are clipped at -80 below the pixel's maximum: probabilities under ~1e-35 become
    ~1e-35. Subnormal results are 10-100x slower in every later operation on most CPUs, and a
    confident model produces many of them with a plain softmax.

    ``spread`` (max - min of all logits, when known) below 80 means nothing can underflow, and
    the fused ``torch.softmax`` is used.

    Examples:
        >>> _softmax(torch.tensor([[[0.0], [200.0]]])).flatten()
        tensor([1.8049e-35, 1.0000e+00])
    """
    if spread < 80:
        return logits.softmax(dim=1)
    z = logits - logits.amax(dim=1, keepdim=True)
    z.clamp_(min=-80.0).exp_()
    return z.div_(z.sum(dim=1, keepdim=True))


def _validate_values(
    preds: Tensor,
    target: Tensor,
    valid: Tensor,
    k: int,
    ignore_index: int | None,
    fmt: str,
    validate_args: bool,
    tol: float = _PROB_SUM_TOL,
) -> tuple[str, float]:
    """Check values and resolve ``auto`` with eager reductions; returns the format and ``max - min``.

    One host synchronisation (two when the values look like probabilities).
    """
    pmin, pmax = torch.aminmax(preds)  # NaN and +-inf show up here, no separate pass
    lmin, lmax = _label_range(target, valid, k, ignore_index)
    ranges = tuple(torch.stack([pmin.double(), pmax.double(), lmin.double(), lmax.double()]).tolist())

    def sum_err() -> float:
        return float((preds.sum(dim=1) - 1).abs().amax())

    return _resolve(preds, ranges, sum_err, k, ignore_index, fmt, validate_args, tol)


def _resolve(
    preds: Tensor,
    ranges: tuple[float, float, float, float],
    sum_err: Callable[[], float],
    k: int,
    ignore_index: int | None,
    fmt: str,
    validate_args: bool,
    tol: float,
) -> tuple[str, float]:
    """The errors and the format from ``(min, max, label min, label max)`` and the largest sum error."""
    pmin, pmax, lmin, lmax = ranges
    if math.isnan(pmin) or not math.isfinite(pmax):  # -inf alone is a logit of probability 0
        bad = int((torch.isnan(preds) | (preds == math.inf)).sum())
        raise ValueError(f"`preds` contains {bad} NaN or infinite values.")
    if pmin == -math.inf and fmt != "probs" and bool((preds.amax(dim=1) == -math.inf).any()):
        raise ValueError("`preds` has pixels whose logits are all -inf (no class has any probability).")
    if validate_args:
        _check_labels(lmin, lmax, k, ignore_index)
    in_range = pmin >= 0 and pmax <= 1
    spread = pmax - pmin
    if fmt == "logits" or (fmt == "auto" and not in_range) or (fmt == "probs" and not validate_args):
        return ("logits" if fmt == "auto" else fmt), spread
    err = sum_err() if in_range else math.inf
    looks_like_probs = err <= tol
    if fmt == "auto":
        return ("probs" if looks_like_probs else "logits"), spread
    if not looks_like_probs:
        raise ValueError(
            "`preds` were declared probabilities (input_format='probs') but hold values in "
            f"[{pmin:.4g}, {pmax:.4g}] with per-pixel sums off 1 by up to {err:.3g}; "
            "pass input_format='logits' to apply a softmax."
        )
    return fmt, spread


def _label_range(target: Tensor, valid: Tensor, k: int, ignore_index: int | None) -> tuple[Tensor, Tensor]:
    """Smallest and largest class id among valid pixels (``k`` and ``-1`` when there is none)."""
    if ignore_index is None:
        return torch.aminmax(target)
    return torch.where(valid, target, k).amin(), torch.where(valid, target, -1).amax()


def _check_labels(lmin: float, lmax: float, k: int, ignore_index: int | None) -> None:
    """Raise if the valid class ids ``[lmin, lmax]`` leave ``[0, k)``."""
    if lmax >= lmin and (lmin < 0 or lmax >= k):  # lmax < lmin: no valid pixel
        bad = lmin if lmin < 0 else lmax
        hint = "" if ignore_index is not None else " Set `ignore_index` if it marks pixels to skip."
        raise ValueError(
            f"`target` holds class id {int(bad)}, outside [0, {k}) for num_classes={k} "
            f"(ignore_index={ignore_index}).{hint}"
        )
