"""Batched connected-component labelling in pure torch.

The functions here run on any device torch supports (CPU, CUDA, ...) and use only tensor
operations: there is no Python loop over pixels and no numpy/scipy round trip.

:func:`label_connected_components` labels the connected regions of equal value in a batch of
1-, 2- or 3-D integer maps (every value forms components, not only the foreground).

Algorithm:
    A dense-grid variant of FastSV (Zhang, Azad & Hu, "FastSV: a distributed-memory connected
    component algorithm with fast convergence", 2020). Every pixel ``u`` holds a parent
    pointer ``f[u]`` into the flat ``B * N`` index space, with the invariant that ``f[u] <= u``
    and that ``f[u]`` lies in the same component as ``u``. Pointers start at the first pixel of
    the run of equal pixels along the last spatial axis (one ``cummax``), which already
    collapses that axis. Each round then

    1. takes the grandparent ``gf = f[f]``;
    2. computes ``mn[u] = min(gf[u], min over equal neighbours v of gf[v])`` with shifted
       views of the grid (one pair of slices per neighbour offset);
    3. hooks the parent tree onto it (``f[f[u]] = min(f[f[u]], mn[u])``, a ``scatter_reduce``
       with ``amin``) and moves ``u`` itself (``f[u] = min(f[u], mn[u])``).

    Pointer values only decrease, so the loop terminates; when a round changes nothing, ``f``
    is a forest of stars and neighbouring equal pixels share their root, which is the smallest
    flat index of the component, i.e. its first pixel in raster order. Thanks to the
    pointer jumping the number of rounds grows roughly logarithmically with the component
    diameter for blob-like regions (adversarial shapes such as spirals need more rounds, but
    still far fewer than their diameter). Memory is ``O(B * N)``: a handful of int32 arrays (int64
    beyond 2**31 pixels) and one bool mask per neighbour offset.
"""

from __future__ import annotations

import itertools

import torch
from torch import Tensor

__all__ = ["label_connected_components"]

_MAX_SPATIAL_DIMS = 3


def _forward_offsets(ndim: int, connectivity: int) -> list[tuple[int, ...]]:
    """Half of the neighbourhood of ``generate_binary_structure(ndim, connectivity)``.

    Offsets are the nonzero vectors in ``{-1, 0, 1}^ndim`` with at most ``connectivity`` nonzero
    entries whose first nonzero entry is positive (the other half is their negation).
    """
    offsets = []
    for off in itertools.product((-1, 0, 1), repeat=ndim):
        nonzero = [o for o in off if o != 0]
        if not nonzero or len(nonzero) > connectivity or nonzero[0] < 0:
            continue
        offsets.append(off)
    return offsets


def _pair_slices(off: tuple[int, ...]) -> tuple[tuple[slice, ...], tuple[slice, ...]]:
    """Slices ``(a, b)`` of a (B, *spatial) grid: ``grid[b]`` is ``grid[a]`` moved by ``off``."""
    a: list[slice] = [slice(None)]
    b: list[slice] = [slice(None)]
    for o in off:
        if o == 1:
            a.append(slice(None, -1))
            b.append(slice(1, None))
        elif o == -1:
            a.append(slice(1, None))
            b.append(slice(None, -1))
        else:
            a.append(slice(None))
            b.append(slice(None))
    return tuple(a), tuple(b)


def _check_labels(labels: Tensor, connectivity: int, valid: Tensor | None) -> None:
    if not isinstance(labels, Tensor):
        raise TypeError(f"`labels` must be a torch.Tensor, got {type(labels).__name__}.")
    if labels.is_floating_point() or labels.is_complex():
        raise TypeError(
            f"`labels` must have an integer (or bool) dtype, got {labels.dtype}. "
            "Round or cast float label maps explicitly, e.g. `labels.long()`."
        )
    if not 2 <= labels.ndim <= _MAX_SPATIAL_DIMS + 1:
        raise ValueError(
            "`labels` must have shape (B, *spatial) with 1 to 3 spatial dims (ndim 2, 3 or 4), "
            f"got ndim {labels.ndim} (shape {tuple(labels.shape)})."
        )
    spatial = labels.ndim - 1
    if isinstance(connectivity, bool) or not isinstance(connectivity, int):
        raise TypeError(
            f"`connectivity` must be an int in [1, {spatial}], got {type(connectivity).__name__} {connectivity!r}."
        )
    if not 1 <= connectivity <= spatial:
        raise ValueError(
            f"`connectivity` must be in [1, {spatial}] for {spatial} spatial dim(s) "
            f"(1 = faces only, {spatial} = full neighbourhood), got {connectivity}."
        )
    if valid is not None:
        if not isinstance(valid, Tensor):
            raise TypeError(f"`valid` must be a torch.Tensor or None, got {type(valid).__name__}.")
        if valid.dtype != torch.bool:
            raise TypeError(f"`valid` must have dtype torch.bool, got {valid.dtype}.")
        if valid.shape != labels.shape:
            raise ValueError(
                f"`valid` must have the same shape as `labels` {tuple(labels.shape)}, got {tuple(valid.shape)}."
            )
        if valid.device != labels.device:
            raise ValueError(f"`valid` must be on the same device as `labels` ({labels.device}), got {valid.device}.")


def label_connected_components(
    labels: Tensor, connectivity: int = 1, valid: Tensor | None = None
) -> tuple[Tensor, Tensor]:
    """Label the connected regions of equal value in a batch of integer maps.

    Two pixels of the same image belong to the same component iff they are connected by a
    path of neighbouring pixels that all carry the same label value (every value forms
    components, not just a foreground class) and are all valid. Images of the batch never
    merge. The result matches ``scipy.ndimage.label`` applied to each image and each label
    value separately, up to renumbering.

    Args:
        labels: Integer (or bool) tensor of shape ``(B, *spatial)`` with 1, 2 or 3 spatial dims,
            e.g. ``(B, H, W)`` images or ``(B, D, H, W)`` volumes.
        connectivity: Neighbourhood as in
            ``scipy.ndimage.generate_binary_structure(len(spatial), connectivity)``: ``1``
            connects pixels sharing a face (4-neighbourhood in 2-D, 6 in 3-D), ``len(spatial)``
            the full neighbourhood (8 in 2-D, 26 in 3-D).
        valid: Optional bool tensor of the same shape as ``labels``. Invalid pixels (``False``)
            belong to no component and do not connect their neighbours.

    Returns:
        A tuple ``(component_ids, num_components)``:

        - ``component_ids``: int64 tensor of shape ``(B, *spatial)``. Components are numbered
          ``0 .. num_components[b] - 1`` within each image, in order of their first pixel in
          raster (C) order, so the output is deterministic. Invalid pixels get ``-1``.
        - ``num_components``: int64 tensor of shape ``(B,)``.

    Raises:
        TypeError: If ``labels`` is not an integer tensor, ``valid`` is not a bool tensor or
            ``connectivity`` is not an int.
        ValueError: If ``labels`` does not have 1-3 spatial dims, ``valid`` has another shape
            or device than ``labels``, or ``connectivity`` is outside ``[1, len(spatial)]``.

    Example:
        >>> import torch
        >>> labels = torch.tensor([[[0, 0, 1],
        ...                         [1, 0, 1],
        ...                         [1, 1, 0]]])
        >>> ids, num = label_connected_components(labels)
        >>> ids
        tensor([[[0, 0, 1],
                 [2, 0, 1],
                 [2, 2, 3]]])
        >>> num
        tensor([4])
        >>> ids, num = label_connected_components(labels, connectivity=2)
        >>> ids
        tensor([[[0, 0, 1],
                 [1, 0, 1],
                 [1, 1, 0]]])
        >>> valid = labels.new_ones(labels.shape, dtype=torch.bool)
        >>> valid[0, 0, 1] = False
        >>> label_connected_components(labels, valid=valid)
        (tensor([[[ 0, -1,  1],
                 [ 2,  3,  1],
                 [ 2,  2,  4]]]), tensor([5]))

    """
    _check_labels(labels, connectivity, valid)
    device = labels.device
    batch, *spatial = labels.shape
    numel = labels.numel()
    if numel == 0:
        return (
            torch.empty(labels.shape, dtype=torch.long, device=device),
            torch.zeros(batch, dtype=torch.long, device=device),
        )
    ndim = len(spatial)

    # Edge masks: for every forward offset, which pixel pairs (p, p + off) are connected.
    edges: list[tuple[tuple[slice, ...], tuple[slice, ...], Tensor]] = []
    last_axis_mask: Tensor | None = None
    for off in _forward_offsets(ndim, connectivity):
        a, b = _pair_slices(off)
        mask = labels[a] == labels[b]
        if valid is not None:
            mask &= valid[a] & valid[b]
        if device.type == "cpu" and not mask.any():
            continue  # a free check on CPU; skipping saves passes in every round
        edges.append((a, b, mask))
        if all(o == 0 for o in off[:-1]):
            last_axis_mask = mask

    # Pointers are int32 when they fit: half the memory traffic of int64 in every round.
    # (index_select takes int32 indices on every backend; scatter_reduce needs int64.)
    ptr_dtype = torch.int32 if numel < torch.iinfo(torch.int32).max else torch.long
    index = torch.arange(numel, dtype=ptr_dtype, device=device)
    grid_index = index.view(labels.shape)

    # Initial pointers: the first pixel of the run of equal pixels along the last axis.
    if last_axis_mask is not None:
        run_start = torch.ones(labels.shape, dtype=torch.bool, device=device)
        run_start[..., 1:] = ~last_axis_mask
        f = torch.where(run_start, grid_index, 0).cummax(dim=-1).values.reshape(-1)
    else:
        f = index.clone()

    # Convergence is checked with ``torch.equal`` (a host sync). That is free on CPU; on
    # accelerators skip the first few rounds (blob-like maps need ~6-10) and check every other.
    first_check, check_every = (1, 1) if device.type == "cpu" else (4, 2)
    big = torch.iinfo(ptr_dtype).max  # > every pointer
    rounds = 0
    while edges:
        f_prev = f
        gf = f.index_select(0, f)
        mn = gf.clone()
        mn_grid = mn.view(labels.shape)
        gf_grid = gf.view(labels.shape)
        for a, b, mask in edges:
            m_a = mn_grid[a]
            torch.minimum(m_a, torch.where(mask, gf_grid[b], big), out=m_a)
            m_b = mn_grid[b]
            torch.minimum(m_b, torch.where(mask, gf_grid[a], big), out=m_b)
        f = f.scatter_reduce(0, f.long(), mn, reduce="amin", include_self=True)  # hook parents
        torch.minimum(f, mn, out=f)  # hook the pixels themselves (and shortcut)
        rounds += 1
        if rounds >= first_check and (rounds - first_check) % check_every == 0 and torch.equal(f, f_prev):
            break

    is_root = f == index
    if valid is not None:
        is_root &= valid.reshape(-1)
    rank = is_root.view(batch, -1).cumsum(dim=1).sub_(1).view(-1)
    ids = rank.index_select(0, f)
    if valid is not None:
        ids.masked_fill_(~valid.reshape(-1), -1)
    num_components = is_root.view(batch, -1).sum(dim=1)
    return ids.view(labels.shape), num_components
