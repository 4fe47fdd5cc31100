"""Exact k-th smallest value of many non-negative floats: confident learning's dataset-level cutoff."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

__all__ = ["KTH_DIRECT_MAX", "kth_smallest"]

KTH_DIRECT_MAX = 1 << 16  # up to this many values `kth_smallest` calls `torch.kthvalue` directly


def kth_smallest(values: Tensor, k: int) -> Tensor:
    """The ``k``-th smallest (1-based) of a 1-D float tensor of non-negative values, exactly.

    Equal to ``torch.kthvalue(values, k).values`` but for large inputs about three times
    faster on CPU: the float bit patterns (monotone for non-negative floats) are bucketed by
    their top bits, the bucket holding the ``k``-th value is found from a histogram, and only
    that bucket is searched. Negative values (never probabilities) share the lowest bucket.

    Examples:
        >>> kth_smallest(torch.tensor([0.5, 0.1, 0.3, 0.1]), 3)
        tensor(0.3000)
    """
    if values.ndim != 1 or not 1 <= k <= values.numel():
        raise ValueError(
            f"`k` must lie in [1, {values.numel()}] for a 1-D `values`, got k={k} and shape {tuple(values.shape)}."
        )
    return _kth_smallest_of([values], k)


def _kth_smallest_of(parts: Sequence[Tensor], k: int) -> Tensor:
    """:func:`kth_smallest` of the 1-D tensors ``parts`` taken together (one dtype), without joining them."""
    parts = [p for p in parts if p.numel()] or list(parts[:1])
    dtype = parts[0].dtype
    if sum(p.numel() for p in parts) <= KTH_DIRECT_MAX or dtype not in (torch.float32, torch.float64):
        return torch.kthvalue(torch.cat(parts), k).values
    if any(bool(p.sum().isnan()) for p in parts):  # NaN sorts last in kthvalue, a sign bit would bucket it first
        return torch.kthvalue(torch.cat(parts), k).values
    # the top bits of the bit pattern: below 1 << 15 (float32) or 1 << 18 (float64) for non-negative floats
    int_type, shift, size = (torch.int32, 16, 1 << 15) if dtype == torch.float32 else (torch.int64, 45, 1 << 18)
    buckets = [(p.view(int_type) >> shift).clamp_(min=0) for p in parts]
    counts = buckets[0].bincount(minlength=size)
    for bucket in buckets[1:]:
        counts += bucket.bincount(minlength=size)
    ends = counts.cumsum(0)
    where = torch.searchsorted(ends, torch.tensor([k], device=ends.device, dtype=ends.dtype))
    below = int((ends[where] - counts[where]).sum())
    inside = [p.masked_select(bucket == where) for p, bucket in zip(parts, buckets, strict=True)]
    return torch.kthvalue(torch.cat(inside), k - below).values
