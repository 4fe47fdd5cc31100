"""Procedural street scenes with pixel-exact masks: the demo's and the tests' data, no download needed.

:func:`make_street_scenes` draws CamVid-like scenes (classes :data:`STREET_CLASSES`, display
colours :data:`STREET_PALETTE`); :class:`~lightning_segqa.data.TensorSegmentationDataset` serves
such tensors as dicts ``{"image", "mask", "index", ...}``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from lightning_segqa.data.tensor import _check_int

__all__ = [
    "BUILDING", "CAR", "PAVEMENT", "PEDESTRIAN", "POLE", "ROAD", "SKY", "STREET_CLASSES", "STREET_PALETTE", "TREE",
    "UNLABELED", "UNLABELED_INDEX", "make_street_scenes",
]  # fmt: skip

STREET_CLASSES: tuple[str, ...] = (
    "sky", "building", "road", "pavement", "tree", "car", "pedestrian", "pole", "unlabeled",
)  # fmt: skip
UNLABELED_INDEX: int = len(STREET_CLASSES) - 1
STREET_PALETTE: Tensor = torch.tensor(  # (K, 3) uint8 display colours, CamVid-like
    [[128, 128, 128], [128, 0, 0], [128, 64, 128], [0, 0, 192], [128, 128, 0],
     [64, 0, 128], [64, 64, 0], [192, 192, 128], [0, 0, 0]], dtype=torch.uint8,
)  # fmt: skip
# Appearance (RGB in [0, 1]) of each class; pole/road/building are deliberately close.
_BASE_COLOURS = torch.tensor(
    [[0.55, 0.72, 0.92], [0.55, 0.45, 0.40], [0.35, 0.35, 0.38], [0.62, 0.60, 0.55],
     [0.25, 0.50, 0.20], [0.60, 0.18, 0.16], [0.40, 0.30, 0.50], [0.45, 0.45, 0.42],
     [0.50, 0.40, 0.20]])  # fmt: skip
SKY, BUILDING, ROAD, PAVEMENT, TREE, CAR, PEDESTRIAN, POLE, UNLABELED = range(9)
# Appearance rows: one per class, then per-object slots (5 buildings, 3 cars, 3 pedestrians).
_SLOT_CLASS = torch.tensor([*range(9), *[BUILDING] * 5, *[CAR] * 3, *[PEDESTRIAN] * 3])
_SLOT_SPREAD = torch.tensor([0.0] * 9 + [0.16] * 5 + [0.7] * 3 + [0.5] * 3).view(1, -1, 1)


def make_street_scenes(num_images: int, height: int = 96, width: int = 128, seed: int = 0) -> tuple[Tensor, Tensor]:
    """Generate procedural street scenes with pixel-exact masks (classes :data:`STREET_CLASSES`).

    Each scene has sky above a tilted horizon, buildings with windows, trees, a road trapezoid
    with lane markings between pavement strips, cars (body, cabin, wheels), pedestrians, poles and
    a few "unlabeled" clutter patches. Pixel colour = class base colour + per-image and per-object
    jitter + texture, times an illumination factor, plus Gaussian noise: colour alone almost (not
    quite) separates the classes. Vectorised torch; deterministic by ``seed``.

    Args:
        num_images: number of scenes ``N`` (>= 0).
        height: image height ``H`` (>= 16).
        width: image width ``W`` (>= 16).
        seed: seed of the ``torch.Generator``.

    Returns:
        ``(images, masks)``: float32 ``(N, 3, H, W)`` in ``[0, 1]`` and int64 ``(N, H, W)``.

    Raises:
        TypeError: an argument is not an int.
        ValueError: an argument is out of range.

    Examples:
        >>> images, masks = make_street_scenes(2, height=48, width=64, seed=1)
        >>> images.shape, images.dtype, masks.shape, masks.dtype
        (torch.Size([2, 3, 48, 64]), torch.float32, torch.Size([2, 48, 64]), torch.int64)
        >>> bool(torch.equal(masks, make_street_scenes(2, 48, 64, seed=1)[1]))
        True

    """
    n = _check_int(num_images, "num_images", 0)
    h, w = _check_int(height, "height", 16), _check_int(width, "width", 16)
    g = torch.Generator().manual_seed(_check_int(seed, "seed", -(2**63)))
    a = w / h  # coordinates are in units of the image height: y in [0, 1], x in [0, a]

    def u(k: int, lo: float = 0.0, hi: float = 1.0) -> Tensor:  # (N, k, 1, 1) uniforms
        return lo + (hi - lo) * torch.rand(n, k, 1, 1, generator=g)

    ys = ((torch.arange(h) + 0.5) / h).view(1, 1, h, 1)
    xs = ((torch.arange(w) + 0.5) / h).view(1, 1, 1, w)
    py, px = torch.arange(h).view(1, h, 1), torch.arange(w).view(1, 1, w)
    mask = torch.full((n, h, w), SKY, dtype=torch.uint8)
    look = mask.clone()  # appearance row: the class id, or a per-object slot (see _SLOT_CLASS)
    tex = torch.zeros(n, h, w)  # brightness texture

    def paint(shapes: Tensor, cls: int, slot: int | None = None, keep: Tensor | None = None,
              ) -> Tensor:  # fmt: skip
        for k in range(shapes.shape[1]):  # objects painted in order, later ones on top
            s = shapes[:, k] if keep is None else shapes[:, k] & keep
            mask.masked_fill_(s, cls)
            look.masked_fill_(s, cls if slot is None else slot + k)
        return mask == cls

    ground = u(1, 0.45, 0.62) + u(1, -0.08, 0.08) * (xs / a - 0.5)  # horizon, (N, 1, 1, W)
    below = (ys > ground)[:, 0]
    bx, bw = u(5, -0.1, 0.95) * a, u(5, 0.12, 0.35) * a  # buildings, with windows
    is_bld = paint(((xs >= bx) & (xs < bx + bw) & (u(5) < 0.8)) & (ys >= u(5, 0.05, 0.42)),
                   BUILDING, 9, keep=~below)  # fmt: skip
    period = torch.randint(5, 9, (n, 1, 1), generator=g)
    tex -= 0.22 * ((((px % period) * 2 < period) & ((py % period) * 9 < period * 5)) & is_bld)
    tx, tr = u(3) * a, u(3, 0.05, 0.13)  # trees: leafy blobs and trunks on the horizon
    ty = ground.expand(n, 3, 1, w).gather(3, (tx / a * (w - 1)).long()) - tr * u(3, 0.6, 1.4)
    dx, dy = xs - tx, ys - ty  # the blob's radius wobbles with x and y
    fx = dx.square() - 0.15 * tr.square() * torch.sin(11 * dx / tr + u(3, 0, 6.3))
    fy = dy.square() - 0.15 * tr.square() * torch.sin(9 * dy / tr + u(3, 0, 6.3))
    trees = ((fx + fy < tr.square()) | ((dx.abs() < 0.012) & (ys > ty))) & (u(3) < 0.75)
    is_tree = paint(trees, TREE, keep=~below)
    tex += 0.8 * F.avg_pool2d(torch.rand(n, 1, h, w, generator=g) - 0.5, 3, 1, 1)[:, 0] * is_tree
    vx, top, bottom = u(1, 0.35, 0.65) * a, u(1, 0.02, 0.08) * a, u(1, 0.35, 0.6) * a  # road
    depth = ((ys - ground) / (1 - ground)).clamp(0, 1)  # 0 at the horizon, 1 at the bottom
    paint(below[:, None], PAVEMENT)
    road = paint(((xs - vx).abs() < top + (bottom - top) * depth) & below[:, None], ROAD)
    lane = ((xs - vx).abs() < 0.004 * a + 0.012 * a * depth) & (torch.sin(40 * depth.sqrt()) > 0)
    tex += 0.45 * (lane[:, 0] & road)
    g0 = ground.mean(-1, keepdim=True)
    cd = u(3, 0.25, 1.0).sort(1).values  # car depths, far to near: bottom and size follow
    cb, ch = g0 + cd * (1 - g0), 0.08 + 0.22 * cd
    cx = vx + (u(3) - 0.5) * 1.4 * (top + (bottom - top) * cd)
    adx, on = (xs - cx).abs(), u(3) < 0.8
    body = ((adx < 0.85 * ch) & on) & ((ys < cb - 0.12 * ch) & (ys > cb - 0.6 * ch))
    cabin = ((adx < 0.5 * ch) & on) & ((ys <= cb - 0.6 * ch) & (ys > cb - ch))
    wheels = ((adx - 0.5 * ch).square() + (ys - cb + 0.15 * ch).square() < (0.15 * ch) ** 2) & on
    is_car = paint(body | cabin | wheels, CAR, 14)
    tex -= (0.3 * wheels.any(1) + 0.15 * cabin.any(1)) * is_car
    pd, side = u(3, 0.05, 0.6), u(3) < 0.5  # pedestrians beside the road
    pb, ph = g0 + pd * (1 - g0), 0.12 + 0.25 * pd
    pdx = (xs - torch.where(side, u(3, 0.02, 0.25), u(3, 0.75, 0.98)) * a).square()
    torso = pdx / (0.13 * ph).square() + ((ys - pb + 0.42 * ph) / (0.42 * ph)).square() < 1
    head = pdx + (ys - pb + 0.9 * ph).square() < (0.09 * ph).square()
    paint((torso | head) & (u(3) < 0.7), PEDESTRIAN, 17)
    qx = torch.where(u(2) < 0.5, u(2, 0.0, 0.22), u(2, 0.78, 1.0)) * a
    poles = ((xs - qx).abs() < u(2, 0.8, 2.2) / h) & (u(2) < 0.85)
    paint(poles & ((ys > u(2, 0.08, 0.35)) & (ys < g0 + u(2, 0.03, 0.15))), POLE)
    ux, uy, us = u(2, 0.0, 0.95) * a, u(2, 0.35, 0.9), u(2, 0.03, 0.08)  # unlabeled clutter
    clutter = ((xs - ux).abs() < us) & (u(2) < 0.6) & ((ys - uy).abs() < 0.7 * us)
    tex += 0.2 * (((px // 2 + py // 2) % 2) - 0.5) * paint(clutter, UNLABELED)
    tex += 0.18 * ys[0] * (mask == SKY)
    jitter = torch.rand(n, 9, 3, generator=g) * 0.14 - 0.07  # colours: per image and class
    table = _BASE_COLOURS[_SLOT_CLASS] + jitter[:, _SLOT_CLASS]
    table += torch.rand(n, len(_SLOT_CLASS), 3, generator=g).sub(0.5) * _SLOT_SPREAD
    colours = F.embedding(look + torch.arange(n).view(-1, 1, 1) * len(_SLOT_CLASS),
                          table.reshape(-1, 3))  # fmt: skip
    images = (colours + tex[..., None]).permute(0, 3, 1, 2) * u(1, 0.85, 1.15)
    images += 0.04 * torch.randn(n, 3, h, w, generator=g)
    return images.clamp(0, 1).contiguous(), mask.long()
