"""Compiled one-pass kernels for the per-pixel work (opt-in: ``compile=True``).

Eager PyTorch reads the probabilities ``(B, K, *spatial)`` several times per batch: a gather
of the annotated class, an ``amax`` to find the mispredicted pixels, then a gather of the
``K`` probabilities of each mispredicted pixel. :func:`torch.compile` fuses that work into one
loop over the classes of each pixel, so the probabilities are read once:

* :func:`label_sums` (softmin and CIL, which need only ``s``, the probability of the annotated
  class): per image ``sum w*s``, ``sum w`` (``w = exp(-s / T)``) and ``sum s``. On CPU, for
  float32, the C kernel of :mod:`~lightning_segqa.functional.native` computes them when it can
  be built (it prefetches the gathered cache lines, which inductor cannot).
* :func:`pixel_core` (:class:`~lightning_segqa.functional.pixel.PixelPass`): ``s``, the
  mispredicted pixels and every pixel's cell of its image's confusion matrix (annotated
  class, predicted class), from which CCP, IoU and the per-class counts of confident
  learning follow by one ``bincount``. :func:`weighted_sums` then gives the softmin from ``s``.

The results are the eager kernels': ``s``, the mispredicted pixels and the predicted classes
exactly (ties go to the annotation, then to the first most probable class), the softmin to
float rounding (tested against the eager path, cleanlab and brute force). The softmin weights
are not shifted by the image minimum: with ``s`` in [0, 1] and ``1 / T <= MAX_INV_T`` they lie
in ``[exp(-80), 1]``, far from float32 underflow. Inputs outside the kernels' domain (a lower
temperature, integer overflow of the cells, inputs that require grad, empty batches, dtypes
other than float32/float64) take the eager path.

Compiling takes a few seconds per kernel, input dtype and masking variant, once per process
(a new batch size reuses the kernel, a batch of one image excepted: torch specializes sizes 0
and 1; the first new image size or class count compiles once more, with that size dynamic
from then on; :func:`pixel_core` compiles once per class count up to ``UNROLL_CLASSES``). It
needs a C++ compiler on CPU and Triton on GPU. When compiling fails, one warning names the
error and the eager kernels serve the rest of the process.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable

import torch
from torch import Tensor

from lightning_segqa.functional import native

MAX_INV_T = 80.0  # exp(-80) ~ 1.8e-35 stays a normal float32
MAX_CELLS = 1 << 22  # largest B * (K * K + 1) for `pixel_core`: its confusion counts stay small
UNROLL_CLASSES = 32  # `pixel_core` writes its class loop out up to this many classes
_STATE: dict[str, str | None] = {"broken": None}
_COMPILED: dict[str, Callable] = {}

# Labels are clamped into [0, K) inside the kernels: an out-of-range label must neither crash
# the process (an index check that fails inside an OpenMP region aborts it) nor spill into
# another image's confusion cells. Unchecked labels (``validate_args=False``) are then checked
# by a per-image flag from the kernel (`label_sums`) or one `aminmax` (`pixel_core`), and refused.


def _label_sums(
    flat: Tensor, target: Tensor, valid: Tensor | None, neg_inv_t: float
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    k = flat.shape[1]
    safe = target.clamp(0, k - 1)
    s = torch.gather(flat, 1, safe.unsqueeze(1)).squeeze(1)
    w = torch.exp(s * neg_inv_t)
    if valid is not None:
        s = torch.where(valid, s, 0)
        w = torch.where(valid, w, 0)
    return (w * s).sum(-1), w.sum(-1), s.sum(-1), (safe != target).amax(-1)


def _pixel_core(flat: Tensor, target: Tensor, valid: Tensor | None) -> tuple[Tensor, Tensor, Tensor]:
    b, k = flat.shape[:2]
    t32 = target.clamp(0, k - 1).to(torch.int32)
    if k <= UNROLL_CLASSES:
        # the class loop written out: one pointwise kernel that reads and converts each label
        # once (in a reduction over the classes inductor reloads it for every class)
        pmax, s = flat[:, 0], torch.where(t32 == 0, flat[:, 0], 0)
        for c in range(1, k):
            pmax = torch.maximum(pmax, flat[:, c])
            s = s + torch.where(t32 == c, flat[:, c], 0)  # exact: the other terms are 0
        first = torch.full_like(t32, k)
        for c in range(k - 1, -1, -1):  # ends at the first most probable class
            first = torch.where(flat[:, c] == pmax, c, first)
    else:
        classes = torch.arange(k, device=flat.device, dtype=torch.int32).view(1, k, 1)
        pmax = flat.amax(1)
        # a masked sum over the classes (exact: the other terms are 0) shares the amax loop
        s = torch.where(classes == t32.unsqueeze(1), flat, 0).sum(1)
        first = torch.where(flat == pmax.unsqueeze(1), classes, k).amin(1)
    wrong = s < pmax
    cell = t32 * k + torch.where(wrong, first, t32)
    if valid is not None:
        wrong = wrong & valid
        s = torch.where(valid, s, 0)
        cell = torch.where(valid, cell, k * k)
    offset = torch.arange(b, device=flat.device, dtype=torch.int32).unsqueeze(1) * (k * k + 1)
    return s, wrong, offset + cell


def _weighted_sums(s: Tensor, valid: Tensor | None, neg_inv_t: float) -> tuple[Tensor, Tensor]:
    w = torch.exp(s * neg_inv_t)
    if valid is not None:
        w = torch.where(valid, w, 0)
    return (w * s).sum(-1), w.sum(-1)


_KERNELS: dict[str, Callable] = {"label_sums": _label_sums, "pixel_core": _pixel_core, "weighted_sums": _weighted_sums}
# The labels are clamped into [0, K) before every indirect load, so inductor's bounds check of
# each gathered index (a vector compare and a branch per 16 pixels) is dropped: it made the
# softmin kernel slower in every side-by-side run, typically by 10-15 %
# (`python benchmarks/softmin_kernels.py`).
_OPTIONS = {"assert_indirect_indexing": False}


def usable(flat: Tensor, temperature: float | None = None, cells: bool = False, compiled: bool = True) -> bool:
    """Whether the compiled kernels can score ``flat`` ``(B, K, P)``.

    Args:
        flat: the probabilities.
        temperature: the softmin temperature, when a kernel uses it.
        cells: for :func:`pixel_core` (``B * (K*K + 1) <= MAX_CELLS``).
        compiled: False for :func:`label_sums`, whose C kernel (on CPU) does not depend on
            inductor: only the domain is checked (the call returns None where neither serves).

    Returns:
        False after a failed compilation (``compiled=True``), and for inputs outside the
        kernels' domain.

    Examples:
        >>> usable(torch.rand(2, 3, 4), 0.001), usable(torch.rand(2, 3, 4, dtype=torch.float16))
        (False, False)
    """
    b, k = flat.shape[:2]
    return (
        (_STATE["broken"] is None or not compiled)
        and (temperature is None or 1.0 / temperature <= MAX_INV_T)
        and flat.dtype in (torch.float32, torch.float64)
        and flat.numel() > 0
        and (not cells or b * (k * k + 1) <= MAX_CELLS)
        and not (flat.requires_grad and torch.is_grad_enabled())
    )


def _run(name: str, *args: object) -> tuple[Tensor, ...] | None:
    """Run the compiled kernel ``name``; None (after one warning) when it cannot be compiled.

    An error that the kernel's plain (eager) body raises as well is a problem of the inputs:
    that error propagates and the kernels stay on.
    """
    if _STATE["broken"] is not None:
        return None
    try:
        fn = _COMPILED.get(name)
        if fn is None:
            fn = _COMPILED[name] = torch.compile(_KERNELS[name], options=_OPTIONS)
        for arg in args:  # any batch size uses the same graph (a batch of one excepted)
            if isinstance(arg, Tensor):
                torch._dynamo.maybe_mark_dynamic(arg, 0)
        with torch.no_grad():  # one grad mode for every caller: fewer graph variants
            return fn(*args)
    except Exception as err:  # noqa: BLE001 - sorted out below
        try:
            with torch.no_grad():
                _KERNELS[name](*args)
        except Exception:  # noqa: BLE001 - the inputs are at fault: raise the eager error
            raise
        _STATE["broken"] = f"{type(err).__name__}: {err}".splitlines()[0][:300]
        warnings.warn(
            f"lightning_segqa: `compile=True` could not compile its kernels ({_STATE['broken']}); "
            "the eager kernels are used instead (same results, slower). On CPU torch.compile "
            "needs a working C++ compiler, on GPU Triton.",
            RuntimeWarning,
            stacklevel=4,
        )
        return None


def _refuse_labels(target: Tensor, k: int) -> None:
    lmin, lmax = torch.aminmax(target)
    bad = int(lmin) if int(lmin) < 0 else int(lmax)
    raise ValueError(
        f"`target` holds class id {bad}, outside [0, {k}) for num_classes={k} (found by the "
        "compiled kernels: `validate_args=False` skips the usual label check)."
    )


def _after_fork_in_child() -> None:
    # inductor's pool of compile workers does not survive a fork: compile in-process instead
    import torch._inductor.config as inductor_config

    inductor_config.compile_threads = 1


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def label_sums(
    flat: Tensor, target: Tensor, valid: Tensor | None, temperature: float, labels_checked: bool = True
) -> tuple[Tensor, Tensor, Tensor] | None:
    """Per image ``(sum w*s, sum w, sum s)`` over valid pixels, ``w = exp(-s / temperature)``.

    Args:
        flat: ``(B, K, P)`` probabilities (float32 or float64).
        target: ``(B, P)`` int64 annotated classes (0 at ignored pixels).
        valid: ``(B, P)`` bool, or None when every pixel counts.
        temperature: softmin temperature (``1 / temperature <= MAX_INV_T``).
        labels_checked: False when ``target`` may hold class ids outside ``[0, K)``.

    Returns:
        Three ``(B,)`` tensors, or None when the kernels cannot be compiled here.

    Raises:
        ValueError: ``labels_checked=False`` and a class id lies outside ``[0, K)`` (on GPU a
            device-side assertion instead, without a host synchronisation).

    Examples:
        >>> from lightning_segqa.functional import softmin
        >>> probs = torch.tensor([[[[0.9, 0.2]], [[0.1, 0.8]]]])
        >>> softmin(probs, torch.tensor([[[0, 0]]]), compile=True)  # label_sums, where it compiles
        tensor([0.2006])
    """
    out = native.label_sums(flat, target, valid, -1.0 / temperature)  # C, where it applies
    if out is None:
        out = _run("label_sums", flat, target, valid, -1.0 / temperature)
    if out is None:
        return None
    num, den, total, outside = out
    if not labels_checked:
        if flat.device.type == "cpu":
            if bool(outside.any()):
                _refuse_labels(target, flat.shape[1])
        else:
            torch._assert_async(~outside.any(), "`target` holds a class id outside [0, num_classes)")
    return num, den, total


def pixel_core(
    flat: Tensor, target: Tensor, valid: Tensor | None, labels_checked: bool = True
) -> tuple[Tensor, Tensor, Tensor] | None:
    """``s``, the mispredicted pixels and each pixel's confusion cell, in one pass.

    The cell of a valid pixel is ``b * (K*K + 1) + target * K + pred``, where ``pred`` is the
    annotation when it is among the most probable classes, else the first most probable class;
    an ignored pixel gets ``b * (K*K + 1) + K*K``. A ``bincount`` of the cells is every image's
    confusion matrix. Needs ``B * (K*K + 1) <= MAX_CELLS`` (see :func:`usable`).

    Args:
        flat: ``(B, K, P)`` probabilities (float32 or float64).
        target: ``(B, P)`` int64 annotated classes (0 at ignored pixels).
        valid: ``(B, P)`` bool, or None when every pixel counts.
        labels_checked: False when ``target`` may hold class ids outside ``[0, K)``.

    Returns:
        ``(s, wrong, cell)``: ``s`` ``(B, P)`` (0 at ignored pixels); ``wrong`` ``(B, P)`` bool,
        valid pixels whose annotated class is not the most probable; ``cell`` ``(B, P)`` int32.
        None when the kernels cannot be compiled here.

    Raises:
        ValueError: ``labels_checked=False`` and a class id lies outside ``[0, K)``.

    Examples:
        >>> from lightning_segqa.functional._inputs import prepare_inputs
        >>> from lightning_segqa.functional.pixel import PixelPass
        >>> probs = torch.tensor([[[[0.9, 0.2, 0.5]], [[0.1, 0.8, 0.5]]]])
        >>> pp = PixelPass(prepare_inputs(probs, torch.tensor([[[0, 0, 1]]]), compile=True))
        >>> pp.s, pp.wrong, pp.pred()  # a tie goes to the label
        (tensor([[0.9000, 0.2000, 0.5000]]), tensor([[False,  True, False]]), tensor([[[0, 1, 1]]]))
    """
    if not labels_checked:
        lmin, lmax = torch.aminmax(target)
        if int(lmin) < 0 or int(lmax) >= flat.shape[1]:
            _refuse_labels(target, flat.shape[1])
    return _run("pixel_core", flat, target, valid)


def weighted_sums(s: Tensor, valid: Tensor | None, temperature: float) -> tuple[Tensor, Tensor] | None:
    """Per image ``sum w*s`` and ``sum w`` over valid pixels, ``w = exp(-s / temperature)``.

    Args:
        s: ``(B, P)`` probabilities of the annotated classes, in [0, 1].
        valid: ``(B, P)`` bool, or None when every pixel counts.
        temperature: softmin temperature (``1 / temperature <= MAX_INV_T``).

    Returns:
        Two ``(B,)`` tensors (their ratio is the softmin), or None when the kernels cannot be
        compiled here.

    Examples:
        >>> from lightning_segqa.functional.local import local_scores
        >>> from lightning_segqa.functional._inputs import prepare_inputs
        >>> probs = torch.tensor([[[[0.9, 0.2]], [[0.1, 0.8]]]])
        >>> prepared = prepare_inputs(probs, torch.tensor([[[0, 0]]]), compile=True)
        >>> local_scores(prepared, 0.1, ["softmin", "iou"])["softmin"]  # pixel_core, weighted_sums
        tensor([0.2006])
    """
    return _run("weighted_sums", s, valid, -1.0 / temperature)
