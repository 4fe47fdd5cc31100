"""Compiled one-pass kernels for the per-pixel work (opt-in: ``compile=True``).

Eager PyTorch reads the probabilities ``(B, K, *spatial)`` several times per batch: a gather
of the annotated class, an ``amax`` to find the mispredicted pixels, then a gather of the
``K`` probabilities of each mispredicted pixel. :func:`torch.compile` fuses that work into one
loop over the classes of each pixel, so the probabilities are read once:

* :func:`label_sums` (softmin and CIL, which need only ``s``, the probability of the annotated
  class): per image ``sum w*s``, ``sum w`` (``w = exp(-s / T)``) and ``sum s``.
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
(and once more when the batch shape first changes: shapes are then dynamic). It needs a C++
compiler on CPU and Triton on GPU. When compiling fails, one warning names the error and the
eager kernels serve the rest of the process.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import torch
from torch import Tensor

MAX_INV_T = 80.0  # exp(-80) ~ 1.8e-35 stays a normal float32
_STATE: dict[str, object] = {"broken": None}
_COMPILED: dict[str, Callable] = {}


def _label_sums(flat: Tensor, target: Tensor, valid: Tensor | None, neg_inv_t: float) -> tuple[Tensor, Tensor, Tensor]:
    s = torch.gather(flat, 1, target.unsqueeze(1)).squeeze(1)
    w = torch.exp(s * neg_inv_t)
    if valid is not None:
        s = torch.where(valid, s, 0)
        w = torch.where(valid, w, 0)
    return (w * s).sum(-1), w.sum(-1), s.sum(-1)


def _pixel_core(flat: Tensor, target: Tensor, valid: Tensor | None) -> tuple[Tensor, Tensor, Tensor]:
    b, k = flat.shape[:2]
    classes = torch.arange(k, device=flat.device, dtype=torch.int32).view(1, k, 1)
    t32 = target.to(torch.int32)
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
MAX_CELLS = 1 << 22  # largest B * (K * K + 1) for `pixel_core`: its confusion counts stay small


def usable(flat: Tensor, temperature: float | None = None, cells: bool = False) -> bool:
    """Whether the compiled kernels can score ``flat`` ``(B, K, P)``.

    Args:
        flat: the probabilities.
        temperature: the softmin temperature, when a kernel uses it.
        cells: for :func:`pixel_core` (``B * (K*K + 1) <= MAX_CELLS``).

    Examples:
        >>> usable(torch.rand(2, 3, 4), 0.1), usable(torch.rand(2, 3, 4), 0.001)
        (True, False)
    """
    b, k = flat.shape[:2]
    return (
        _STATE["broken"] is None
        and (temperature is None or 1.0 / temperature <= MAX_INV_T)
        and flat.dtype in (torch.float32, torch.float64)
        and flat.numel() > 0
        and (not cells or b * (k * k + 1) <= MAX_CELLS)
        and not (flat.requires_grad and torch.is_grad_enabled())
    )


def _run(name: str, *args: object) -> tuple[Tensor, ...] | None:
    """Run the compiled kernel ``name``; None (after one warning) when compiling fails."""
    if _STATE["broken"] is not None:
        return None
    fn = _COMPILED.get(name)
    if fn is None:
        fn = _COMPILED[name] = torch.compile(_KERNELS[name])
    try:
        return fn(*args)
    except Exception as err:  # noqa: BLE001 - any compiler or toolchain failure means: go eager
        _STATE["broken"] = f"{type(err).__name__}: {err}".splitlines()[0][:300]
        warnings.warn(
            f"lightning_segqa: `compile=True` could not compile its kernels ({_STATE['broken']}); "
            "the eager kernels are used instead (same results, slower). On CPU torch.compile "
            "needs a working C++ compiler, on GPU Triton.",
            RuntimeWarning,
            stacklevel=3,
        )
        return None


def label_sums(flat: Tensor, target: Tensor, valid: Tensor | None, temperature: float) -> tuple[Tensor, ...] | None:
    """Per image ``(sum w*s, sum w, sum s)`` over valid pixels, ``w = exp(-s / temperature)``.

    Args:
        flat: ``(B, K, P)`` probabilities (float32 or float64).
        target: ``(B, P)`` int64 annotated classes (0 at ignored pixels).
        valid: ``(B, P)`` bool, or None when every pixel counts.
        temperature: softmin temperature (``1 / temperature <= MAX_INV_T``).

    Returns:
        Three ``(B,)`` tensors, or None when the kernels cannot be compiled here.

    Examples:
        >>> flat = torch.tensor([[[0.9, 0.2], [0.1, 0.8]]])
        >>> num, den, total = label_sums(flat, torch.tensor([[0, 0]]), None, 0.1)
        >>> round((num / den).item(), 4), round(total.item(), 2)
        (0.2006, 1.1)
    """
    return _run("label_sums", flat, target, valid, -1.0 / temperature)


def pixel_core(flat: Tensor, target: Tensor, valid: Tensor | None) -> tuple[Tensor, Tensor, Tensor] | None:
    """``s``, the mispredicted pixels and each pixel's confusion cell, in one pass.

    The cell of a valid pixel is ``b * (K*K + 1) + target * K + pred``, where ``pred`` is the
    annotation when it is among the most probable classes, else the first most probable class;
    an ignored pixel gets ``b * (K*K + 1) + K*K``. A ``bincount`` of the cells is every image's
    confusion matrix. Needs ``B * (K*K + 1) <= MAX_CELLS`` (see :func:`usable`).

    Args:
        flat: ``(B, K, P)`` probabilities (float32 or float64).
        target: ``(B, P)`` int64 annotated classes (0 at ignored pixels).
        valid: ``(B, P)`` bool, or None when every pixel counts.

    Returns:
        ``(s, wrong, cell)``: ``s`` ``(B, P)`` (0 at ignored pixels); ``wrong`` ``(B, P)`` bool,
        valid pixels whose annotated class is not the most probable; ``cell`` ``(B, P)`` int32.
        None when the kernels cannot be compiled here.

    Examples:
        >>> flat = torch.tensor([[[0.9, 0.2], [0.1, 0.8]]])
        >>> pixel_core(flat, torch.tensor([[0, 0]]), None)  # cells: (0, 0) and (0, 1)
        (tensor([[0.9000, 0.2000]]), tensor([[False,  True]]), tensor([[0, 1]], dtype=torch.int32))
    """
    return _run("pixel_core", flat, target, valid)


def weighted_sums(s: Tensor, valid: Tensor | None, temperature: float) -> tuple[Tensor, Tensor] | None:
    """Per image ``sum w*s`` and ``sum w`` over valid pixels, ``w = exp(-s / temperature)``.

    Examples:
        >>> num, den = weighted_sums(torch.tensor([[0.9, 0.2]]), None, 0.1)
        >>> round((num / den).item(), 4)
        0.2006
    """
    return _run("weighted_sums", s, valid, -1.0 / temperature)
