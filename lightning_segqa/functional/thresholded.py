"""Thresholded correctly classified pixels (TCCP, paper section 3.2).

The paper's equations pick the threshold per image and count only positives, which makes
``tau = 0`` always win. We implement the stated intent instead:

1. For every class ``k`` and every threshold ``tau`` of a grid, the *one-vs-rest pixel
   accuracy* of the rule ``p_k > tau`` against ``label == k`` is counted per image:
   ``correct[n, k, tau] = #{label == k and p_k > tau} + #{label != k and p_k <= tau}``.
2. ``tau_k`` is the grid value that maximises that accuracy summed over the **whole
   dataset** (ties: the smallest threshold). This is the post-hoc, per-class calibration
   the paper motivates.
3. An image's score is the mean over all ``K`` classes of its own one-vs-rest accuracy at
   ``tau_k``: ``mean_k correct[n, k, tau_k] / num_valid[n]``.

Streaming keeps ``correct`` per image: ``K * G`` int32 values (G thresholds), never pixels.
"""

from __future__ import annotations

import torch
from torch import Tensor

from lightning_segqa.functional._inputs import PreparedInputs

DEFAULT_THRESHOLDS = 20


def threshold_grid(thresholds: int | Tensor, device: torch.device | None = None) -> Tensor:
    """The threshold grid: ``G`` evenly spaced values ``0, 1/G, ..., (G-1)/G``, or a given 1-D tensor.

    Examples:
        >>> threshold_grid(4)
        tensor([0.0000, 0.2500, 0.5000, 0.7500])
    """
    if isinstance(thresholds, int):
        if thresholds < 1:
            raise ValueError(f"`thresholds` must be >= 1, got {thresholds}.")
        return torch.arange(thresholds, device=device, dtype=torch.float32) / thresholds
    if not isinstance(thresholds, Tensor) or thresholds.ndim != 1 or thresholds.numel() == 0:
        raise ValueError("`thresholds` must be an int or a non-empty 1-D tensor of values in [0, 1).")
    grid = thresholds.to(device=device, dtype=torch.float32)
    if not bool((grid[1:] > grid[:-1]).all()):
        raise ValueError(f"`thresholds` must be strictly increasing, got {grid.tolist()}.")
    return grid


def _bins(p: Tensor, grid: Tensor, uniform: int | None) -> Tensor:
    """Number of grid thresholds strictly below each value (0..G), as int32."""
    if uniform:  # grid j / G: p > j / G  <=>  j < ceil(p * G)
        return (p * uniform).ceil_().clamp_(0, uniform).to(torch.int32)
    return torch.bucketize(p.contiguous(), grid, right=False, out_int32=True)


def tccp_counts(prepared: PreparedInputs, grid: Tensor, uniform: int | None = None) -> Tensor:
    """Per-image one-vs-rest correct counts ``(B, K, G)`` (int32) for every class and threshold.

    Args:
        prepared: checked inputs.
        grid: ``(G,)`` thresholds.
        uniform: ``G`` when ``grid`` is ``j / G`` (a faster exact path), else None.

    Examples:
        >>> import torch
        >>> from lightning_segqa.functional._inputs import prepare_inputs
        >>> p = prepare_inputs(torch.tensor([[[[0.9, 0.2]], [[0.1, 0.8]]]]), torch.tensor([[[0, 1]]]))
        >>> tccp_counts(p, threshold_grid(2))[0]
        tensor([[1, 2],
                [1, 2]], dtype=torch.int32)
    """
    probs, target, valid = prepared.probs, prepared.target, prepared.valid
    b, k = probs.shape[:2]
    g = grid.numel()
    dev = probs.device
    flat = probs.reshape(b, k, -1)
    target = target.reshape(b, -1)
    valid_flat = None if prepared.all_valid else valid.reshape(b, -1)
    grid = grid.to(device=dev, dtype=probs.dtype)
    class_offset = (torch.arange(k, device=dev, dtype=torch.int32) * (g + 1)).unsqueeze(1)
    hist_all = torch.empty(b, k * (g + 1), device=dev, dtype=torch.long)
    for i in range(b):  # one image at a time keeps the temporaries at K * P int32
        code = _bins(flat[i], grid, uniform).add_(class_offset)
        if valid_flat is not None:
            code = code[:, valid_flat[i]]
        hist_all[i] = torch.bincount(code.reshape(-1), minlength=k * (g + 1))
    # positives: the bin of the annotated class's probability
    s = flat.gather(1, target.unsqueeze(1)).squeeze(1)
    pos_code = (torch.arange(b, device=dev).view(b, 1) * k + target) * (g + 1) + _bins(s, grid, uniform)
    if valid_flat is not None:
        pos_code = pos_code[valid_flat]
    hist_pos = torch.bincount(pos_code.view(-1), minlength=b * k * (g + 1)).view(b, k, g + 1)
    hist_neg = hist_all.view(b, k, g + 1) - hist_pos
    # positives above grid[j]: bins j+1..G ; negatives at or below grid[j]: bins 0..j
    pos_above = hist_pos.flip(-1).cumsum(-1).flip(-1)[..., 1:]
    neg_below = hist_neg.cumsum(-1)[..., :-1]
    return (pos_above + neg_below).to(torch.int32)


def tccp_from_counts(counts: Tensor, num_valid: Tensor) -> tuple[Tensor, Tensor]:
    """Choose ``tau_k`` on the whole set of counts and score each image.

    Args:
        counts: ``(N, K, G)`` from :func:`tccp_counts`, one row per image of the dataset.
        num_valid: ``(N,)`` valid pixels per image.

    Returns:
        ``(scores (N,), tau_index (K,))``.

    Examples:
        >>> counts = torch.tensor([[[1, 2], [1, 2]]])
        >>> tccp_from_counts(counts, torch.tensor([2]))
        (tensor([1.]), tensor([1, 1]))
    """
    total = counts.sum(0, dtype=torch.float64)  # (K, G)
    best = total.argmax(-1)  # first maximum = smallest threshold
    n, k, _ = counts.shape
    chosen = counts.gather(2, best.view(1, k, 1).expand(n, k, 1)).squeeze(-1)
    scores = chosen.double().mean(-1) / num_valid.double()
    return scores.float(), best


def thresholded_ccp(
    preds: Tensor,
    target: Tensor,
    *,
    thresholds: int | Tensor = DEFAULT_THRESHOLDS,
    ignore_index: int | None = None,
    input_format: str = "auto",
    validate_args: bool = True,
) -> Tensor:
    """TCCP score of each image, treating the batch as the whole dataset.

    See the module docstring for the exact definition. Use
    :class:`~lightning_segqa.LabelQuality` to choose the thresholds over a dataset streamed in
    batches.

    Args:
        preds: ``(B, K, *spatial)`` probabilities or logits.
        target: ``(B, *spatial)`` integer class ids.
        thresholds: number of grid points ``G`` (grid ``0, 1/G, ...``) or a 1-D tensor.
        ignore_index: class id excluded from the score.
        input_format: ``"auto"``, ``"probs"`` or ``"logits"``.
        validate_args: check values (one device synchronisation).

    Returns:
        ``(B,)`` scores in [0, 1]; lower means more likely mislabeled.

    Examples:
        >>> import torch
        >>> probs = torch.tensor([[[[0.9, 0.2]], [[0.1, 0.8]]], [[[0.3, 0.6]], [[0.7, 0.4]]]])
        >>> thresholded_ccp(probs, torch.tensor([[[0, 1]], [[0, 1]]]), thresholds=4)
        tensor([1.0000, 0.5000])
    """
    from lightning_segqa.scores import REGISTRY, Settings, score_one_batch  # the method's unit (no import cycle)

    grid = threshold_grid(thresholds, getattr(preds, "device", None))
    settings = Settings(grid=grid, uniform_grid=thresholds if isinstance(thresholds, int) else None)
    checks = {"ignore_index": ignore_index, "input_format": input_format, "validate_args": validate_args}
    return score_one_batch(REGISTRY["thresholded_ccp"], preds, target, settings, **checks)
