"""The bodies of the compiled one-pass kernels (:mod:`~lightning_segqa.functional.fused` runs them).

Each body is plain PyTorch over a batch flattened to ``(B, K, P)`` (the pooling's over
``(B, K, H, W)``): what it computes, per pixel and per image, in one loop over each pixel's
classes. :mod:`~lightning_segqa.functional.fused`
compiles them, decides when they serve and wraps their results.
"""

from __future__ import annotations

import torch
from torch import Tensor

#: above any mispredicted pixel's ``s`` (see :mod:`~lightning_segqa.functional.confident`)
LOW_S = 0.51

# Labels are clamped into [0, K) inside the kernels: an out-of-range label must neither crash
# the process (an index check that fails inside an OpenMP region aborts it) nor spill into
# another image's confusion cells. Labels nobody checked (``validate_args=False``) are then
# checked by a per-image flag (`label_sums`) or one `aminmax` (`pixel_core`), and refused.


def _class_loop(flat: Tensor, t32: Tensor, need_max: bool, check: bool) -> dict[str, Tensor]:
    """Per pixel: ``s``, and on request the largest, smallest and summed value over the classes."""
    k = flat.shape[1]
    out: dict[str, Tensor] = {}
    if k <= fused.UNROLL_CLASSES:
        # written out: one pointwise loop that reads each label once and each class plane once
        # (in a reduction over the classes inductor reloads the label for every class)
        x = flat[:, 0]
        s = torch.where(t32 == 0, x, 0)
        pmax = pmin = total = x
        first = torch.zeros_like(t32)  # the first most probable class (``need_max``)
        for c in range(1, k):
            x = flat[:, c]
            s = torch.where(t32 == c, x, s)
            if need_max:
                first = torch.where(x > pmax, c, first)
            if need_max or check:
                pmax = torch.maximum(pmax, x)
            if check:
                pmin = torch.minimum(pmin, x)
                total = total + x
        if need_max:
            out["first"] = first
    else:
        classes = torch.arange(k, device=flat.device, dtype=torch.int32).view(1, k, 1)
        # a masked sum over the classes (exact: the other terms are 0) shares the loop of the amax
        s = torch.where(classes == t32.unsqueeze(1), flat, 0).sum(1)
        pmax = flat.amax(1)
        if check:
            pmin, total = flat.amin(1), flat.sum(1)
    out["s"] = s
    if need_max or check:
        out["max"] = pmax
    if check:
        out["min"], out["total"] = pmin, total
    return out


def _stats(per_pixel: dict[str, Tensor], target: Tensor, valid: Tensor | None, k: int) -> tuple[Tensor, ...]:
    """Per image: smallest and largest value, largest per-pixel sum error, valid label range."""
    labels_low, labels_high = target, target
    if valid is not None:
        labels_low, labels_high = torch.where(valid, target, k), torch.where(valid, target, -1)
    return (
        per_pixel["min"].amin(-1),
        per_pixel["max"].amax(-1),
        (per_pixel["total"] - 1).abs().amax(-1),
        labels_low.amin(-1),
        labels_high.amax(-1),
    )


def _label_sums(
    flat: Tensor, target: Tensor, valid: Tensor | None, neg_inv_t: float, check: bool
) -> tuple[Tensor, ...]:
    k = flat.shape[1]
    safe = target.clamp(0, k - 1)
    per_pixel = _class_loop(flat, safe.to(torch.int32), False, check)
    s = per_pixel["s"]
    w = torch.exp(s * neg_inv_t)
    if valid is not None:
        s = torch.where(valid, s, 0)
        w = torch.where(valid, w, 0)
    out = ((w * s).sum(-1), w.sum(-1), s.sum(-1), (safe != target).amax(-1))
    return out + _stats(per_pixel, target, valid, k) if check else out


def fingerprint_weights(position: Tensor) -> Tensor:
    """The weight of each pixel position in a mask's fingerprint: a multiplicative hash in ``[1, 2**20]``.

    The fingerprint of a mask is ``sum((class id + 1) * weight)`` over its valid pixels (int64,
    exact): :func:`~lightning_segqa.image_ids.mask_fingerprint` eagerly, the compiled pixel pass
    in the same read as the scores.

    Examples:
        >>> fingerprint_weights(torch.arange(4)).tolist()
        [1, 247536, 495071, 742606]
    """
    return ((position * 2654435761) >> 11 & 0xFFFFF) + 1


def _pixel_core(
    flat: Tensor, target: Tensor, valid: Tensor | None, check: bool, neg_inv_t: float | None = None
) -> tuple[Tensor, ...]:
    b, k = flat.shape[:2]
    t32 = target.clamp(0, k - 1).to(torch.int32)
    per_pixel = _class_loop(flat, t32, True, check)
    s, pmax = per_pixel["s"], per_pixel["max"]
    if "first" in per_pixel:
        first = per_pixel["first"]
    else:
        classes = torch.arange(k, device=flat.device, dtype=torch.int32).view(1, k, 1)
        first = torch.where(flat == pmax.unsqueeze(1), classes, k).amin(1)
    wrong = s < pmax
    cell = t32 * k + torch.where(wrong, first, t32)
    low = (s <= LOW_S) & ~wrong
    if valid is not None:
        wrong = wrong & valid
        low = low & valid
        s = torch.where(valid, s, 0)
        cell = torch.where(valid, cell, k * k)
    offset = torch.arange(b, device=flat.device, dtype=torch.int32).unsqueeze(1) * (k * k + 1)
    # the mask's fingerprint, while its labels are at hand (see `fingerprint_weights`)
    labels = target + 1 if valid is None else torch.where(valid, target + 1, 0)
    weights = fingerprint_weights(torch.arange(target.shape[1], device=target.device, dtype=torch.int64))
    fingerprint = (labels * weights).sum(-1)
    # the flags as int32: storing a bool per pixel costs inductor's CPU code more than the rest of the pass
    out = (s, wrong.to(torch.int32), offset + cell, low.to(torch.int32), low.sum(-1), fingerprint)
    if neg_inv_t is not None:  # the softmin's two sums (as `_weighted_sums`), while `s` is at hand
        w = torch.exp(s * neg_inv_t)
        if valid is not None:
            w = torch.where(valid, w, 0)
        out += ((w * s).sum(-1), w.sum(-1))
    return out + _stats(per_pixel, target, valid, k) if check else out


def _value_stats(flat: Tensor, target: Tensor, valid: Tensor | None) -> tuple[Tensor, ...]:
    k = flat.shape[1]
    per_pixel = _class_loop(flat, target.clamp(0, k - 1).to(torch.int32), False, True)
    return _stats(per_pixel, target, valid, k)


def _weighted_sums(s: Tensor, valid: Tensor | None, neg_inv_t: float) -> tuple[Tensor, Tensor]:
    w = torch.exp(s * neg_inv_t)
    if valid is not None:
        w = torch.where(valid, w, 0)
    return (w * s).sum(-1), w.sum(-1)


#: the vote of :func:`_pool_vote` keeps one bit per class in an int64
VOTE_MAX_CLASSES = 63


def _bit_add(a: list[Tensor], b: list[Tensor]) -> list[Tensor]:
    """The sum of two bit-sliced counters (bit planes, lowest first): a ripple-carry adder, bit by bit."""
    out, carry = [], None
    for i in range(max(len(a), len(b))):
        terms = [t for t in (a[i] if i < len(a) else None, b[i] if i < len(b) else None, carry) if t is not None]
        if len(terms) == 1:
            out.append(terms[0])
            carry = None
        elif len(terms) == 2:
            out.append(terms[0] ^ terms[1])
            carry = terms[0] & terms[1]
        else:
            x, y, c = terms
            out.append(x ^ y ^ c)
            carry = (x & y) | (c & (x ^ y))
    return out if carry is None else [*out, carry]


def _bit_sum(counters: list[list[Tensor]]) -> list[Tensor]:
    """The sum of bit-sliced counters, added as a balanced tree."""
    while len(counters) > 1:
        pairs = [_bit_add(counters[i], counters[i + 1]) for i in range(0, len(counters) - 1, 2)]
        counters = pairs + ([counters[-1]] if len(counters) % 2 else [])
    return counters[0]


def _majority(target: Tensor, factor: int) -> Tensor:
    """Each block's most frequent label, ties to the lowest class id, in vectorised integer operations.

    Bit ``c`` of a pixel's word is 1 when its label is ``c``. The words of a block are added as
    bit-sliced counters, one count per class in each bit position: first down the rows of each
    column (contiguous loads), then across the columns. From the highest count bit down, the
    classes whose count has that bit are kept where any has it; what remains are the classes
    of the largest count, and the lowest set bit is the label.
    """
    f = factor
    word = torch.bitwise_left_shift(torch.ones_like(target), target)  # int64, labels < VOTE_MAX_CLASSES
    rows = _bit_sum([[word[:, i::f]] for i in range(f)])
    planes = _bit_sum([[plane[..., j::f] for plane in rows] for j in range(f)])
    present = planes[0]
    for plane in planes[1:]:
        present = present | plane
    keep = present
    for plane in reversed(planes):
        both = keep & plane
        keep = torch.where(both != 0, both, keep)
    low = keep & -keep  # the lowest class among the largest counts
    label = torch.zeros_like(low)
    for shift in (32, 16, 8, 4, 2, 1):  # its bit position, by halving
        above = (low & ((1 << shift) - 1)) == 0
        label = label + torch.where(above, shift, 0)
        low = torch.where(above, low >> shift, low)
    return label


def _pool_vote(probs: Tensor, target: Tensor, factor: int, vote: bool) -> tuple[Tensor, ...]:
    """Block means of ``(B, K, H, W)`` probabilities, renormalised, and (``vote``) each block's majority label.

    A fixed sequence of elementwise operations, so the compiled kernel and this eager body give
    the same bits: the sums run over the rows of a block first (contiguous, vectorised), then
    over its columns; the division by ``factor**2`` is exact for a power of two; each block's
    means are divided by their sum over the classes, added in class order. The vote
    (:func:`_majority`, at most :data:`VOTE_MAX_CLASSES` classes) equals that of
    :func:`~lightning_segqa.functional.pooling.majority_labels`.
    """
    f, k = factor, probs.shape[1]
    rows = probs[:, :, 0::f]
    for i in range(1, f):
        rows = rows + probs[:, :, i::f]
    mean = rows[..., 0::f]
    for j in range(1, f):
        mean = mean + rows[..., j::f]
    mean = mean / (f * f)
    total = mean[:, 0]
    for c in range(1, k):
        total = total + mean[:, c]
    small = mean / total.unsqueeze(1)
    return (small, _majority(target, f)) if vote else (small,)


# last: `fused` imports this module; the class loop reads its limit when a kernel is traced
from lightning_segqa.functional import fused  # noqa: E402
