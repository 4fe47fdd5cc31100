"""Connected Components score (CoCo, paper section 3.7).

Our exact reading of the paper:

1. Work at the downsampled resolution (default block 4, as the paper).
2. Components are the connected regions (``connectivity`` as in ``scipy.ndimage``: 1 = faces,
   the default) on which both the predicted class ``P`` and the annotated class ``l`` are
   constant, i.e. components of each unique ``(P, l)`` pair.
3. A component's probability vector ``p_c`` is the mean of its pixels' probability vectors;
   its score ``s_c = p_c[l]`` is therefore the mean over its pixels of ``s_ij``.
4. The paper averages "over components and classes": we average the component scores of each
   annotated class, then average those class means over the classes annotated in the image,
   so that many tiny boundary fragments of one class cannot outweigh every other class.
"""

from __future__ import annotations

import torch
from torch import Tensor

from lightning_segqa.functional._inputs import PreparedInputs
from lightning_segqa.functional.components import label_connected_components
from lightning_segqa.functional.pixel import PixelPass, pixel_pass


def coco_from_prepared(prepared: PreparedInputs | PixelPass, connectivity: int = 1) -> Tensor:
    """CoCo score of each image from prepared (already downsampled) inputs or their pixel pass.

    Examples:
        >>> import torch
        >>> probs = torch.tensor([[[[0.9, 0.2, 0.7]], [[0.1, 0.8, 0.3]]]])
        >>> from lightning_segqa.functional._inputs import prepare_inputs
        >>> coco_from_prepared(prepare_inputs(probs, torch.tensor([[[0, 0, 1]]])))
        tensor([0.4250])
    """
    pp = prepared if isinstance(prepared, PixelPass) else pixel_pass(prepared)
    b, k = pp.s.shape[0], pp.num_classes
    s, target = pp.s, pp.target
    valid = torch.ones_like(target, dtype=torch.bool) if pp.valid is None else pp.valid
    code = pp.pred() * k + target.view(b, *pp.shape)
    ids, num = label_connected_components(code, connectivity=connectivity, valid=valid.view(b, *pp.shape))
    ids = ids.reshape(b, -1)
    offsets = torch.cumsum(num, 0) - num
    gid = (ids + offsets.view(b, 1))[valid]
    total = int(num.sum()) if num.numel() else 0
    dtype = torch.float64
    comp_sum = torch.zeros(total, dtype=dtype, device=s.device).index_add_(0, gid, s[valid].to(dtype))
    comp_size = torch.zeros(total, dtype=dtype, device=s.device).index_add_(0, gid, torch.ones_like(gid, dtype=dtype))
    comp_label = torch.zeros(total, dtype=torch.long, device=s.device).scatter_(0, gid, target[valid])
    comp_image = torch.repeat_interleave(torch.arange(b, device=s.device), num)
    s_c = comp_sum / comp_size
    # mean of s_c per (image, annotated class), then mean over the classes present
    cls = comp_image * k + comp_label
    cls_sum = torch.zeros(b * k, dtype=dtype, device=s.device).index_add_(0, cls, s_c)
    cls_n = torch.zeros(b * k, dtype=dtype, device=s.device).index_add_(0, cls, torch.ones_like(s_c))
    present = cls_n.view(b, k) > 0
    cls_mean = torch.where(present, cls_sum.view(b, k) / cls_n.view(b, k).clamp_min(1), 0)
    return (cls_mean.sum(-1) / present.sum(-1)).to(s.dtype)


def connected_components(
    preds: Tensor,
    target: Tensor,
    *,
    downsample: int = 4,
    connectivity: int = 1,
    ignore_index: int | None = None,
    input_format: str = "auto",
    validate_args: bool = True,
    compile: bool | None = None,
) -> Tensor:
    """Connected Components (CoCo) label quality of each image.

    See the module docstring for the exact definition.

    Args:
        preds: ``(B, K, *spatial)`` probabilities or logits.
        target: ``(B, *spatial)`` integer class ids.
        downsample: block size of the working resolution (paper: 4; 1 = full resolution).
        connectivity: 1 (faces) up to the number of spatial dims (full), as in scipy.
        ignore_index: class id excluded.
        input_format: ``"auto"``, ``"probs"`` or ``"logits"``.
        validate_args: check values (one device synchronisation).
        compile: use the compiled one-pass kernels (None: for large batches; see :mod:`~.fused`).

    Returns:
        ``(B,)`` scores in [0, 1]; lower means more likely mislabeled; NaN without valid pixels.

    Examples:
        >>> import torch
        >>> probs = torch.tensor([[[[0.9, 0.2, 0.7]], [[0.1, 0.8, 0.3]]]])
        >>> connected_components(probs, torch.tensor([[[0, 0, 1]]]), downsample=1)
        tensor([0.4250])
    """
    from lightning_segqa.scores import REGISTRY, Settings, score_one_batch  # the method's unit (no import cycle)

    checks = {"ignore_index": ignore_index, "input_format": input_format, "validate_args": validate_args}
    settings = Settings(downsample=downsample, connectivity=connectivity, compile=compile)
    return score_one_batch(REGISTRY["connected_components"], preds, target, settings, **checks)
