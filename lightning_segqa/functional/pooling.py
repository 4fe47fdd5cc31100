"""Downsampling of probabilities and labels before the region-level scores (paper 3.5 and 3.7).

Probabilities are mean-pooled over each ``f x f`` block and the block's label is the
majority vote of its pixels, as the paper describes. Ignored pixels take no part in either;
a block with no valid pixel is ignored. Sizes that are not multiples of ``f`` are padded with
ignored pixels, so any size works.

cleanlab instead rounds the *mean class id* of the block (``np.round(labels.mean())``), which
can produce a class that appears nowhere in the block (the mean of 0 and 4 is 2); we do not
copy that.
"""

from __future__ import annotations

import functools
import math

import torch
import torch.nn.functional as F
from torch import Tensor

from lightning_segqa.functional import fused, kernels
from lightning_segqa.functional._inputs import PreparedInputs
from lightning_segqa.functional.pixel import PixelPass, pixel_pass


@functools.lru_cache(maxsize=8)
def _block_ids(shape: tuple[int, ...], factor: int, device: torch.device) -> Tensor:
    """For a padded ``(B, *spatial)`` label shape: each pixel's block number, row-major over ``(B, *small)``.

    Made once per shape and kept (broadcast views, so it costs one small tensor per dimension).
    """
    b, spatial = shape[0], shape[1:]
    nd = len(spatial)
    ids = torch.arange(b, device=device).view(b, *[1] * nd)
    for d, size in enumerate(spatial):
        coord = torch.arange(size, device=device) // factor
        ids = ids * (size // factor) + coord.view(*[1] * (1 + d), size, *[1] * (nd - d - 1))
    return ids


def majority_labels(target: Tensor, valid: Tensor | None, factor: int, num_classes: int) -> Tensor:
    """Each ``factor``-block's most frequent valid label (ties: the lowest class id).

    Args:
        target: ``(B, *spatial)`` labels in ``[0, num_classes)``, every size a multiple of ``factor``.
        valid: same shape, bool (None: every pixel is valid).
        factor: block size.
        num_classes: ``K``.

    Returns:
        ``(B, *spatial / factor)`` int64 labels (0 for a block without a valid pixel).

    Examples:
        >>> majority_labels(torch.tensor([[[2, 1], [1, 2]]]), None, 2, 3).tolist()  # a tie: the lower id
        [[[1]]]
    """
    ids = _block_ids(tuple(target.shape), factor, target.device)
    n_small = math.prod(target.shape) // factor ** (target.ndim - 1)
    key = torch.add(ids, target, alpha=n_small)  # class-major: label * n_small + block
    weights = None if valid is None else valid.reshape(-1).to(torch.float32)
    votes = torch.bincount(key.reshape(-1), weights=weights, minlength=num_classes * n_small)
    small_shape = (target.shape[0], *(size // factor for size in target.shape[1:]))
    # max(0).indices: the first maximum (the lowest class id), documented; argmax(0) is ten times slower on CPU
    return votes.view(num_classes, *small_shape).max(0).indices


def _blocks(x: Tensor, lead: int, factor: int) -> Tensor:
    """Reshape ``(*lead_dims, *spatial)`` into ``(*lead_dims, *small_spatial, factor**nd)``."""
    lead_shape, spatial = x.shape[:lead], x.shape[lead:]
    nd = len(spatial)
    split = []
    for size in spatial:
        split += [size // factor, factor]
    x = x.reshape(*lead_shape, *split)
    small_axes = [lead + 2 * i for i in range(nd)]
    block_axes = [lead + 2 * i + 1 for i in range(nd)]
    x = x.permute(*range(lead), *small_axes, *block_axes)
    return x.reshape(*lead_shape, *(s // factor for s in spatial), -1)


def downsample(prepared: PreparedInputs, factor: int, compile: bool | None = None) -> PreparedInputs:
    """Shrink every spatial dimension by ``factor``: mean-pooled probabilities, majority labels.

    Args:
        prepared: checked inputs (see :func:`~lightning_segqa.functional._inputs.prepare_inputs`).
        factor: integer >= 1; 1 returns the input unchanged.
        compile: pool 2-D images by a power-of-two ``factor`` (means and majority labels)
            with one compiled kernel (the same values as without; None: for large batches,
            see :func:`~lightning_segqa.functional.fused.wanted`).

    Returns:
        Inputs at the working resolution ``ceil(size / factor)`` per spatial dimension.

    Examples:
        >>> import torch
        >>> from lightning_segqa.functional._inputs import prepare_inputs
        >>> probs = torch.tensor([[[[1.0, 0.0], [0.0, 0.0]], [[0.0, 1.0], [1.0, 1.0]]]])
        >>> small = downsample(prepare_inputs(probs, torch.tensor([[[0, 1], [1, 1]]])), 2)
        >>> small.probs.flatten().tolist(), small.target.flatten().tolist()
        ([0.25, 0.75], [1])
    """
    if not isinstance(factor, int) or factor < 1:
        raise ValueError(f"`downsample` must be a positive integer, got {factor!r}.")
    if factor == 1:
        return prepared
    probs, target, valid = prepared.probs, prepared.target, prepared.valid
    spatial = target.shape[1:]
    pad = []
    for size in reversed(spatial):
        pad += [0, (-size) % factor]
    if any(pad):
        probs = F.pad(probs, pad)
        target = F.pad(target, pad)
        valid = F.pad(valid, pad)
    b, k = probs.shape[:2]
    nd = len(spatial)
    all_valid = prepared.all_valid and not any(pad)
    small_target = None
    if all_valid and nd == 2:
        small_valid = torch.ones(b, *(size // factor for size in spatial), dtype=torch.bool, device=target.device)
        pooled = None
        if factor & (factor - 1) == 0 and fused.wanted(compile, probs) and fused.usable(probs):
            pooled = fused.pool_vote(probs, target, factor)
        if pooled is None:  # the compiled kernel's body, run eagerly: the same values
            pooled = (kernels._pool_vote(probs, target, factor, False)[0], None)
        small_probs, small_target = pooled
    elif all_valid and nd == 3:
        small_valid = torch.ones(b, *(size // factor for size in spatial), dtype=torch.bool, device=target.device)
        small_probs = F.avg_pool3d(probs, factor)
        small_probs = small_probs / small_probs.sum(1, keepdim=True)
    else:
        vb = _blocks(valid, 1, factor)  # (B, *small, f^nd)
        counts = vb.sum(-1)
        small_valid = counts > 0
        w = vb.to(probs.dtype).unsqueeze(1)
        psum = (_blocks(probs, 2, factor) * w).sum(-1)  # (B, K, *small)
        total = psum.sum(1, keepdim=True)
        small_probs = psum / total.clamp_min(torch.finfo(probs.dtype).tiny)
        small_probs = torch.where(counts.unsqueeze(1) > 0, small_probs, torch.full_like(small_probs, 1.0 / k))
    if small_target is None:
        small_target = majority_labels(target, None if all_valid else valid, factor, k)
    return PreparedInputs(
        probs=small_probs,
        target=small_target,
        valid=small_valid,
        all_valid=all_valid,
        labels_checked=prepared.labels_checked,
    )


def working_pass(prepared: PreparedInputs, factor: int, compile: bool | None = None) -> PixelPass:
    """The pixel pass at the working resolution: the inputs pooled by ``factor``, then read once.

    Whether it runs compiled is decided on the whole batch, not on its smaller copy: a batch
    large enough to compile at full resolution is compiled at the working resolution too.

    Args:
        prepared: checked inputs at full resolution.
        factor: block size (1: the full resolution).
        compile: as :func:`downsample`.

    Examples:
        >>> import torch
        >>> from lightning_segqa.functional._inputs import prepare_inputs
        >>> probs = torch.tensor([[[[1.0, 0.0], [0.0, 0.0]], [[0.0, 1.0], [1.0, 1.0]]]])
        >>> working_pass(prepare_inputs(probs, torch.tensor([[[0, 1], [1, 1]]])), 2).s
        tensor([[0.7500]])
    """
    if factor == 1:
        return pixel_pass(prepared, compile)
    return pixel_pass(downsample(prepared, factor, compile), fused.wanted(compile, prepared.probs))
