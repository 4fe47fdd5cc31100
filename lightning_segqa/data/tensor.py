"""A dataset over in-memory image and mask tensors.

:class:`TensorSegmentationDataset` serves ``(N, C, H, W)`` images and ``(N, H, W)`` masks as dicts
``{"image", "mask", "index", ...}``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import Dataset

__all__ = ["TensorSegmentationDataset"]


def _check_int(value: object, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"`{name}` must be an int, got {type(value).__name__} ({value!r})")
    if value < minimum:
        raise ValueError(f"`{name}` must be >= {minimum}, got {value}")
    return value


class TensorSegmentationDataset(Dataset):
    """Dataset over in-memory images, masks and optional mislabeled flags.

    Items are dicts: ``"image"`` float ``(C, H, W)``, ``"mask"`` int64 ``(H, W)``, ``"index"``
    int64 scalar (the position in the dataset) and, if given, ``"is_mislabeled"`` bool scalar and
    ``"name"`` (the image's name, carried into reports and captions).

    Args:
        images: float tensor ``(N, C, H, W)``.
        masks: integer tensor ``(N, H, W)``.
        is_mislabeled: optional tensor ``(N,)``, converted to bool.
        names: optional ``N`` image names (e.g. file stems or scene ids).

    Raises:
        TypeError: wrong tensor types.
        ValueError: inconsistent shapes.

    Examples:
        >>> images, masks = torch.rand(3, 3, 32, 32), torch.randint(0, 4, (3, 32, 32))
        >>> ds = TensorSegmentationDataset(images, masks, torch.tensor([False, True, False]))
        >>> item = ds[1]
        >>> sorted(item), item["index"].item(), item["is_mislabeled"].item(), len(ds)
        (['image', 'index', 'is_mislabeled', 'mask'], 1, True, 3)
        >>> TensorSegmentationDataset(images, masks, names=["a", "b", "c"])[2]["name"]
        'c'

    """

    def __init__(
        self, images: Tensor, masks: Tensor, is_mislabeled: Tensor | None = None, names: Sequence[str] | None = None
    ) -> None:
        if not isinstance(images, Tensor) or not images.is_floating_point() or images.ndim != 4:
            raise TypeError(f"`images` must be a float tensor (N, C, H, W), got {_desc(images)}")
        if not isinstance(masks, Tensor) or masks.is_floating_point() or masks.ndim != 3:
            raise TypeError(f"`masks` must be an integer tensor (N, H, W), got {_desc(masks)}")
        if masks.shape[0] != images.shape[0] or masks.shape[1:] != images.shape[2:]:
            raise ValueError(f"`masks` must be (N, H, W) matching `images` {tuple(images.shape)}, "
                             f"got {tuple(masks.shape)}")  # fmt: skip
        if is_mislabeled is not None and (
            not isinstance(is_mislabeled, Tensor) or is_mislabeled.shape != (len(images),)
        ):
            raise ValueError(f"`is_mislabeled` must have shape ({len(images)},), got "
                             f"{_desc(is_mislabeled)}")  # fmt: skip
        if names is not None and (
            isinstance(names, str)
            or not isinstance(names, Sequence)
            or len(names) != len(images)
            or not all(isinstance(n, str) for n in names)
        ):
            raise ValueError(f"`names` must be a sequence of {len(images)} strings (one per image), got {names!r:.80}")
        self.images, self.masks = images, masks.long()
        self.names = None if names is None else list(names)
        self.is_mislabeled = None if is_mislabeled is None else is_mislabeled.bool()

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, index: int) -> dict[str, Any]:
        index = _position(index, len(self))
        item = {"image": self.images[index], "mask": self.masks[index]}
        item["index"] = torch.tensor(index)
        if self.is_mislabeled is not None:
            item["is_mislabeled"] = self.is_mislabeled[index].clone()
        if self.names is not None:
            item["name"] = self.names[index]
        return item


def _desc(value: object) -> str:
    return f"{value.dtype} tensor {tuple(value.shape)}" if isinstance(value, Tensor) else (
        type(value).__name__)  # fmt: skip


def _position(index: int, length: int) -> int:
    if not -length <= index < length:
        raise IndexError(f"index {index} out of range for a dataset of length {length}")
    return index % length
