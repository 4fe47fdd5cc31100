"""Compiled one-pass kernels for the per-pixel work, with the input checks in the same pass.

Eager PyTorch reads the probabilities ``(B, K, *spatial)`` once per operation: the value checks
(range, per-pixel sums, NaN/inf), a gather of the annotated class, an ``amax``. With
:func:`torch.compile` one loop over the classes of each pixel does it all, reading them once:

* :func:`label_sums` (softmin and CIL): per image ``sum w*s``, ``sum w`` (``w = exp(-s / T)``)
  and ``sum s``, where ``s`` is the probability of the annotated class;
* :func:`pixel_core` (:class:`~lightning_segqa.functional.pixel.PixelPass`): ``s``, the
  mispredicted pixels and every pixel's cell of its image's confusion matrix, from which CCP,
  IoU and confident learning follow by one ``bincount``;
* :func:`value_stats`: the checks alone, for scores that read the probabilities their own way.
* :func:`pool_vote`: the block means and majority labels of
  :func:`~lightning_segqa.functional.pooling.downsample`.

With ``check=True`` the first two also return the value statistics (:data:`STATS`) that
:func:`~lightning_segqa.functional._inputs.prepare_with_pass` turns into the usual errors and
the ``input_format="auto"`` verdict.

Which kernels run is an argument of each computation, ``compile``: True, False, or None (the
default), which compiles for batches of at least :data:`AUTO_MIN_VALUES` values (see
:func:`wanted`): compiling takes seconds, once per process, and pays on large inputs only.

The results are the eager kernels': ``s``, the mispredicted pixels and the predicted classes
exactly (ties go to the annotation, then to the first most probable class), the softmin to
float rounding. The softmin weights are not shifted by the image minimum: with ``s`` in [0, 1]
and ``1 / T <= MAX_INV_T`` they lie in ``[exp(-80), 1]``, far from underflow. Inputs outside the
kernels' domain (a lower temperature, too many confusion cells, inputs that require grad, empty
batches, dtypes other than float32/float64) take the eager path.

A kernel compiles once per input dtype and masking variant (and per class count up to
``UNROLL_CLASSES``, where its class loop is written out); any batch size reuses it (a batch of
one image excepted), and the first new image size compiles once more, with that size dynamic
from then on. It needs a C++ compiler on CPU and Triton on GPU. When compiling fails, one
warning names the error and the eager kernels serve the rest of the process. The kernels'
bodies are in :mod:`~lightning_segqa.functional.kernels`.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable
from typing import NamedTuple

import torch
from torch import Tensor

from lightning_segqa.functional import kernels

MAX_INV_T = 80.0  # exp(-80) ~ 1.8e-35 stays a normal float32
MAX_CELLS = 1 << 22  # largest B * (K * K + 1) for `pixel_core`: its confusion counts stay small
UNROLL_CLASSES = 32  # the class loop is written out up to this many classes
AUTO_MIN_VALUES = 1 << 22  # `compile=None` compiles for batches of at least this many values
#: the value statistics of ``check=True``, in this order
STATS = ("min", "max", "sum_error", "label_min", "label_max")
_STATE: dict[str, str | None] = {"broken": None}
_COMPILED: dict[str, Callable] = {}

_KERNELS: dict[str, Callable] = {
    "label_sums": kernels._label_sums,
    "pixel_core": kernels._pixel_core,
    "value_stats": kernels._value_stats,
    "weighted_sums": kernels._weighted_sums,
    "pool_vote": kernels._pool_vote,
}
_OPTIONS = {
    # the labels are clamped into [0, K) before every use as an index: no bounds check needed
    "assert_indirect_indexing": False,
    # keep the written-out class loop in one kernel: by default inductor stores its partial
    # results after ~30 operations and reads them back in a second loop
    "realize_opcount_threshold": 4096,
}
#: options of single kernels, on top of :data:`_OPTIONS`
_KERNEL_OPTIONS: dict[str, dict[str, object]] = {
    # store the row sums of each block (a vectorised pass over the probabilities) before the
    # column sums read them back: inlined, the whole pooling runs as scalar strided loads
    "pool_vote": {"realize_reads_threshold": 2},
}


def wanted(compile: bool | None, flat: Tensor) -> bool:
    """Whether to score ``flat`` with the compiled kernels, for the ``compile`` argument given.

    Args:
        compile: ``True`` or ``False`` decide; ``None`` (the default of every score) compiles
            batches of at least :data:`AUTO_MIN_VALUES` values, unless compiling failed before.
        flat: the probabilities.

    Returns:
        The decision (:func:`usable` checks the kernels' domain).

    Examples:
        >>> wanted(None, torch.zeros(2, 3, 4)), wanted(True, torch.zeros(2, 3, 4))
        (False, True)
    """
    if compile is None:
        return flat.numel() >= AUTO_MIN_VALUES and _STATE["broken"] is None
    return bool(compile)


def check_compile(compile: object) -> None:
    """Raise if ``compile`` is not ``True``, ``False`` or ``None``.

    Examples:
        >>> check_compile(None)
    """
    if compile is not None and not isinstance(compile, bool):
        raise TypeError(f"`compile` must be True, False or None (compile large batches), got {compile!r}.")


def usable(flat: Tensor, temperature: float | None = None, cells: bool = False) -> bool:
    """Whether the compiled kernels can score ``flat`` ``(B, K, P)``.

    Args:
        flat: the probabilities.
        temperature: the softmin temperature, when a kernel uses it.
        cells: for :func:`pixel_core` (``B * (K*K + 1) <= MAX_CELLS``).

    Returns:
        False after a failed compilation, and for inputs outside the kernels' domain.

    Examples:
        >>> usable(torch.rand(2, 3, 4), 0.001), usable(torch.rand(2, 3, 4, dtype=torch.float16))
        (False, False)
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
    """Run the compiled kernel ``name``; None (after one warning) when it cannot be compiled.

    An error that the kernel's plain (eager) body raises as well is a problem of the inputs:
    that error propagates and the kernels stay on.
    """
    if _STATE["broken"] is not None:
        return None
    try:
        fn = _COMPILED.get(name)
        if fn is None:
            options = {**_OPTIONS, **_KERNEL_OPTIONS.get(name, {})}
            fn = _COMPILED[name] = torch.compile(_KERNELS[name], options=options)
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
            f"lightning_segqa: the compiled kernels could not be built ({_STATE['broken']}); "
            "the eager kernels are used instead (same results, slower). On CPU torch.compile "
            "needs a working C++ compiler, on GPU Triton; pass `compile=False` to skip trying.",
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


def _after_fork_in_child() -> None:  # inductor's compile workers do not survive a fork
    import torch._inductor.config as inductor_config

    inductor_config.compile_threads = 1


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def _split_stats(out: tuple[Tensor, ...], n: int) -> tuple[tuple[Tensor, ...], Tensor | None]:
    """The first ``n`` results and, after them, the per-image statistics reduced to :data:`STATS`."""
    if len(out) == n:
        return out, None
    lo, hi, err, lmin, lmax = out[n:]
    stats = torch.stack([lo.amin(), hi.amax(), err.amax(), lmin.amin().to(lo.dtype), lmax.amax().to(lo.dtype)])
    return out[:n], stats.double()


def label_sums(
    flat: Tensor,
    target: Tensor,
    valid: Tensor | None,
    temperature: float,
    labels_checked: bool = True,
    check: bool = False,
) -> tuple[tuple[Tensor, Tensor, Tensor], Tensor | None] | None:
    """Per image ``(sum w*s, sum w, sum s)`` over valid pixels, ``w = exp(-s / temperature)``.

    Args:
        flat: ``(B, K, P)`` probabilities (float32 or float64).
        target: ``(B, P)`` int64 annotated classes (0 at ignored pixels).
        valid: ``(B, P)`` bool, or None when every pixel counts.
        temperature: softmin temperature (``1 / temperature <= MAX_INV_T``).
        labels_checked: False when ``target`` may leave ``[0, K)`` and ``check`` is False.
        check: also return the value statistics (:data:`STATS`, float64) of the same pass.

    Returns:
        The three ``(B,)`` sums and the statistics (None without ``check``); None when the
        kernels cannot be compiled here.

    Raises:
        ValueError: ``labels_checked=False``, ``check=False`` and a class id lies outside
            ``[0, K)`` (on GPU a device-side assertion instead, without a host synchronisation).

    Examples:
        >>> probs = torch.tensor([[[0.9, 0.2], [0.1, 0.8]]])  # B=1, K=2, P=2
        >>> out = label_sums(probs, torch.tensor([[0, 0]]), None, 0.1, check=True)
        >>> out is None or (torch.allclose(out[0][0] / out[0][1], torch.tensor([0.2006]), atol=1e-4)
        ...                 and [round(v, 4) for v in out[1].tolist()] == [0.1, 0.9, 0.0, 0.0, 0.0])
        True
    """
    out = _run("label_sums", flat, target, valid, -1.0 / temperature, check)
    if out is None:
        return None
    (num, den, total, outside), stats = _split_stats(out, 4)
    if not labels_checked and not check:
        if flat.device.type == "cpu":
            if bool(outside.any()):
                _refuse_labels(target, flat.shape[1])
        else:
            torch._assert_async(~outside.any(), "`target` holds a class id outside [0, num_classes)")
    return (num, den, total), stats


class PixelCore(NamedTuple):
    """What :func:`pixel_core` reads from one batch in one pass.

    Attributes:
        s: ``(B, P)`` probability of the annotated class (0 at ignored pixels).
        wrong: ``(B, P)`` int32, 1 at the valid pixels whose annotated class is not the most
            probable, else 0.
        cell: ``(B, P)`` int32 confusion cell of each pixel (see :func:`pixel_core`).
        low: ``(B, P)`` int32, 1 at the valid, correctly classified pixels with ``s <= LOW_S``.
        low_counts: ``(B,)`` int64 count of those per image.
        fingerprint: ``(B,)`` int64 fingerprint of each mask (see
            :func:`~lightning_segqa.functional.kernels.fingerprint_weights`).
        softmin_sums: the two ``(B,)`` sums of :func:`weighted_sums` at the temperature given,
            else None.
    """

    s: Tensor
    wrong: Tensor
    cell: Tensor
    low: Tensor
    low_counts: Tensor
    fingerprint: Tensor
    softmin_sums: tuple[Tensor, Tensor] | None


def pixel_core(
    flat: Tensor,
    target: Tensor,
    valid: Tensor | None,
    labels_checked: bool = True,
    check: bool = False,
    temperature: float | None = None,
) -> tuple[PixelCore, Tensor | None] | None:
    """``s``, the mispredicted pixels and each pixel's confusion cell, in one pass.

    The cell of a valid pixel is ``b * (K*K + 1) + target * K + pred``, where ``pred`` is the
    annotation when it is among the most probable classes, else the first most probable class;
    an ignored pixel gets ``b * (K*K + 1) + K*K``. A ``bincount`` of the cells is every image's
    confusion matrix. Needs ``B * (K*K + 1) <= MAX_CELLS`` (see :func:`usable`). The same pass
    marks confident learning's low-confidence pixels and takes each mask's fingerprint.

    Args:
        flat: ``(B, K, P)`` probabilities (float32 or float64).
        target: ``(B, P)`` int64 annotated classes (0 at ignored pixels).
        valid: ``(B, P)`` bool, or None when every pixel counts.
        labels_checked: as :func:`label_sums`.
        check: as :func:`label_sums`.
        temperature: also take the softmin's sums at this temperature, as :func:`weighted_sums`
            (``1 / temperature <= MAX_INV_T``).

    Returns:
        ``(core, stats)``: the :class:`PixelCore` and the value statistics (None without
        ``check``); None where compiling fails.

    Raises:
        ValueError: ``labels_checked=False``, ``check=False`` and a class id lies outside ``[0, K)``.

    Examples:
        >>> from lightning_segqa.functional._inputs import prepare_inputs
        >>> from lightning_segqa.functional.pixel import PixelPass
        >>> probs = torch.tensor([[[[0.9, 0.2, 0.5]], [[0.1, 0.8, 0.5]]]])
        >>> pp = PixelPass(prepare_inputs(probs, torch.tensor([[[0, 0, 1]]])), compile=True)
        >>> pp.s, pp.wrong, pp.pred()  # a tie goes to the label
        (tensor([[0.9000, 0.2000, 0.5000]]), tensor([[False,  True, False]]), tensor([[[0, 1, 1]]]))
    """
    if not labels_checked and not check:
        lmin, lmax = torch.aminmax(target)
        if int(lmin) < 0 or int(lmax) >= flat.shape[1]:
            _refuse_labels(target, flat.shape[1])
    neg_inv_t = None if temperature is None else -1.0 / temperature
    out = _run("pixel_core", flat, target, valid, check, neg_inv_t)
    if out is None:
        return None
    core, stats = _split_stats(out, 6 if temperature is None else 8)
    sums = None if temperature is None else (core[6], core[7])
    return PixelCore(*core[:6], softmin_sums=sums), stats


def value_stats(flat: Tensor, target: Tensor, valid: Tensor | None) -> Tensor | None:
    """The value statistics (:data:`STATS`, float64) of ``flat`` and ``target`` in one pass.

    Args:
        flat: ``(B, K, P)`` values (float32 or float64).
        target: ``(B, P)`` int64 class ids (any value at ignored pixels).
        valid: ``(B, P)`` bool, or None when every pixel counts.

    Returns:
        ``(5,)`` float64: smallest and largest value, largest ``|sum over classes - 1|`` of a
        pixel, smallest and largest valid class id (``K`` and ``-1`` when no pixel is valid);
        None when the kernels cannot be compiled here.

    Examples:
        >>> out = value_stats(torch.tensor([[[0.9, 0.2], [0.1, 0.8]]]), torch.tensor([[0, 1]]), None)
        >>> out is None or [round(v, 4) for v in out.tolist()] == [0.1, 0.9, 0.0, 0.0, 1.0]
        True
    """
    out = _run("value_stats", flat, target, valid)
    return None if out is None else _split_stats(out, 0)[1]


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
        >>> out = weighted_sums(torch.tensor([[0.9, 0.2]]), None, 0.1)
        >>> out is None or torch.allclose(out[0] / out[1], torch.tensor([0.2006]), atol=1e-4)
        True
    """
    out = _run("weighted_sums", s, valid, -1.0 / temperature)
    return None if out is None else (out[0], out[1])


def pool_vote(probs: Tensor, target: Tensor, factor: int) -> tuple[Tensor, Tensor | None] | None:
    """Block means (renormalised) and majority labels of a 2-D batch, in one compiled call.

    The values are those of the eager body (:func:`~lightning_segqa.functional.kernels._pool_vote`)
    to the bit; the means equal ``F.avg_pool2d`` to float rounding (the sums run in another order).

    Args:
        probs: ``(B, K, H, W)`` float32 or float64 probabilities, ``H`` and ``W`` multiples of
            ``factor``, every pixel valid.
        target: ``(B, H, W)`` int64 labels in ``[0, K)``.
        factor: block size, a power of two (the division by ``factor**2`` is then exact).

    Returns:
        ``(B, K, H / factor, W / factor)`` block means divided by their sum over the classes,
        and the ``(B, H / factor, W / factor)`` majority labels (None above
        :data:`~lightning_segqa.functional.kernels.VOTE_MAX_CLASSES` classes: take
        :func:`~lightning_segqa.functional.pooling.majority_labels`); None when the kernels
        cannot be compiled here.

    Examples:
        >>> x = torch.tensor([[[[1.0, 0.0], [0.0, 0.0]], [[0.0, 1.0], [1.0, 1.0]]]])
        >>> out = pool_vote(x, torch.tensor([[[0, 1], [1, 1]]]), 2)
        >>> out is None or (out[0].flatten().tolist(), out[1].flatten().tolist()) == ([0.25, 0.75], [1])
        True
    """
    vote = probs.shape[1] <= kernels.VOTE_MAX_CLASSES  # one bit per class in an int64
    out = _run("pool_vote", probs, target, factor, vote)
    if out is None:
        return None
    return (out[0], out[1]) if vote else (out[0], None)
