"""Segmentation datasets stored as image folders, and class-name files.

:class:`FolderSegmentationDataset` pairs ``images_dir/NAME.ext`` with ``masks_dir/NAME.ext``,
validates every pair up front and reports all problems at once; :func:`write_folder_dataset`
writes tensors in that layout and :func:`load_class_names` reads a class-name list.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from lightning_segqa.data.tensor import TensorSegmentationDataset, _check_int, _position

__all__ = ["IMAGE_SUFFIXES", "MASK_SUFFIXES", "FolderSegmentationDataset", "load_class_names", "write_folder_dataset"]

IMAGE_SUFFIXES: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
MASK_SUFFIXES: tuple[str, ...] = (".png", ".bmp", ".tif", ".tiff", ".jpg", ".jpeg")
_MAX_LISTED = 10


def _pil() -> Any:
    try:
        from PIL import Image
    except ImportError as err:  # pragma: no cover - pillow is in the demo extra
        raise ImportError("folder datasets need Pillow (pip install pillow)") from err
    return Image


def _list_files(folder: Path, suffixes: tuple[str, ...], problems: list[str]) -> dict[str, Path]:
    files: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        if path.is_file() and not path.name.startswith(".") and path.suffix.lower() in suffixes:
            if path.stem in files:
                problems.append(f"duplicate stem: {files[path.stem].name} and {path.name}")
            files[path.stem] = path
    return files


class FolderSegmentationDataset(Dataset):
    """Dataset over ``images_dir/NAME.ext`` and ``masks_dir/NAME.ext`` pairs, paired by stem.

    Images (PNG, JPEG, BMP, TIFF) are read as RGB floats in ``[0, 1]``; masks (PNG, BMP, TIFF;
    JPEG warns: lossy compression corrupts ids) are single-channel images of class ids. All pairs
    are checked up front and one ``ValueError`` lists (up to 10) problems, naming the files: a
    missing or empty folder, an image without a mask or a mask without an image, different
    sizes, a multi-channel mask, or a class id ``>= num_classes`` other than ``ignore_index``.
    Items are :class:`TensorSegmentationDataset` dicts plus ``"name"``, the file stem; the
    attribute ``names`` lists the sorted stems and ``max_class_id`` the largest class id found in
    the masks (``ignore_index`` left out; None when no mask has a class pixel).

    Args:
        images_dir: folder of images.
        masks_dir: folder of masks.
        num_classes: number of classes; valid ids are ``0 .. num_classes - 1``.
        ignore_index: an extra id allowed in masks (e.g. 255), or ``None``.
        size: optional ``(height, width)`` to resize to (bilinear images, nearest masks).

    Examples:
        >>> import tempfile
        >>> images, masks = torch.rand(2, 3, 32, 48), torch.randint(0, 9, (2, 32, 48))
        >>> with tempfile.TemporaryDirectory() as root:
        ...     ds = FolderSegmentationDataset(*write_folder_dataset(root, images, masks), 9)
        ...     item = ds[0]
        >>> ds.names, item["image"].shape, bool(torch.equal(item["mask"], masks[0])), ds.max_class_id
        (['00000', '00001'], torch.Size([3, 32, 48]), True, 8)

    """

    def __init__(
        self, images_dir: str | Path, masks_dir: str | Path, num_classes: int,
        ignore_index: int | None = None, size: tuple[int, int] | None = None,
    ) -> None:  # fmt: skip
        pil = _pil()
        _check_int(num_classes, "num_classes", 1)
        if ignore_index is not None:
            _check_int(ignore_index, "ignore_index", -(2**31))
        if size is not None and not (isinstance(size, (tuple, list)) and len(size) == 2
                                     and all(type(s) is int and s > 0 for s in size)):  # fmt: skip
            raise ValueError(f"`size` must be a (height, width) of positive ints, got {size!r}")
        self.size = None if size is None else (int(size[0]), int(size[1]))
        self.images_dir, self.masks_dir = Path(images_dir), Path(masks_dir)
        self.num_classes, self.ignore_index = num_classes, ignore_index
        for arg, folder in (("images_dir", self.images_dir), ("masks_dir", self.masks_dir)):
            if not folder.is_dir():
                raise ValueError(f"`{arg}` is not an existing folder: {folder}")
        problems: list[str] = []
        images = _list_files(self.images_dir, IMAGE_SUFFIXES, problems)
        masks = _list_files(self.masks_dir, MASK_SUFFIXES, problems)
        if not images:
            problems.append(f"no images ({', '.join(IMAGE_SUFFIXES)}) in {self.images_dir}")
        problems += [f"image {images[s].name} has no mask" for s in images if s not in masks]
        problems += [f"mask {masks[s].name} has no image" for s in masks if s not in images]
        self.names: list[str] = sorted(set(images) & set(masks))
        lossy = [masks[s].name for s in self.names if masks[s].suffix.lower() in (".jpg", ".jpeg")]
        if lossy:
            msg = f"JPEG masks ({', '.join(lossy[:_MAX_LISTED])}): lossy compression corrupts ids"
            warnings.warn(msg + "; save masks as PNG", UserWarning, stacklevel=2)
        self.max_class_id: int | None = None
        for name in self.names:
            image_file, mask_file = images[name], masks[name]
            with pil.open(image_file) as img, pil.open(mask_file) as msk:
                if img.size != msk.size:
                    problems.append(f"size mismatch for {name!r}: image {image_file.name} is "
                                    f"{img.width}x{img.height}, mask {mask_file.name} is "
                                    f"{msk.width}x{msk.height} (width x height)")  # fmt: skip
                if len(msk.getbands()) != 1:
                    problems.append(f"mask {mask_file.name} is {msk.mode}, not one channel")
                    continue
                ids = np.unique(np.asarray(msk)).astype(np.int64).tolist()
            labelled = [i for i in ids if i != ignore_index]
            if labelled:
                self.max_class_id = max(labelled[-1], -1 if self.max_class_id is None else self.max_class_id)
            bad = [i for i in ids if not 0 <= i < num_classes and i != ignore_index]
            if bad:
                extra = "" if ignore_index is None else f" (ignore_index={ignore_index})"
                problems.append(f"mask {mask_file.name} has class ids {bad[:5]} outside "
                                f"0..{num_classes - 1}{extra}")  # fmt: skip
        if problems:
            extra = len(problems) - _MAX_LISTED
            more = [f"... and {extra} more"] if extra > 0 else []
            if self.max_class_id is not None and self.max_class_id >= num_classes:
                top = self.max_class_id
                more.append(f"(the largest class id in the masks is {top}: num_classes={top + 1} covers "
                            "every id; or set ignore_index for an id to leave out)")  # fmt: skip
            head = f"invalid dataset (images_dir={self.images_dir}, masks_dir={self.masks_dir}):"
            raise ValueError("\n  ".join([head, *problems[:_MAX_LISTED], *more]))
        self._files = [(images[s], masks[s]) for s in self.names]

    def __len__(self) -> int:
        return len(self.names)

    def __getitem__(self, index: int) -> dict[str, Any]:
        index, pil = _position(index, len(self)), _pil()
        with pil.open(self._files[index][0]) as img, pil.open(self._files[index][1]) as msk:
            img, msk = img.convert("RGB"), msk.copy()
        if self.size is not None:
            img = img.resize(self.size[::-1], pil.Resampling.BILINEAR)
            msk = msk.resize(self.size[::-1], pil.Resampling.NEAREST)
        image = torch.from_numpy(np.asarray(img, dtype=np.float32) / 255.0).permute(2, 0, 1)
        return {"image": image.contiguous(), "mask": torch.from_numpy(np.asarray(msk, np.int64)),
                "index": torch.tensor(index), "name": self.names[index]}  # fmt: skip


def load_class_names(path: str | Path) -> list[str]:
    r"""Read class names from a text file (one per line, blank lines ignored) or a JSON list.

    Args:
        path: file to read.

    Returns:
        The class names, in order (index = class id).

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: empty file, invalid JSON, not a list of non-empty strings, or duplicates.

    Examples:
        >>> import tempfile, os
        >>> with tempfile.TemporaryDirectory() as d:
        ...     p = os.path.join(d, "classes.txt")
        ...     _ = open(p, "w").write("sky\n\nroad\n")
        ...     load_class_names(p)
        ['sky', 'road']

    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"class names file not found: {path}")
    text = path.read_text(encoding="utf-8").strip()
    if text.startswith(("[", "{")):
        try:
            names = json.loads(text)
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}: invalid JSON list of class names ({err})") from err
        if not isinstance(names, list) or not all(isinstance(n, str) and n.strip() for n in names):
            raise ValueError(f"{path}: expected a JSON list of non-empty strings, got {names!r}")
        names = [n.strip() for n in names]
    else:
        names = [line.strip() for line in text.splitlines() if line.strip()]
    if not names:
        raise ValueError(f"{path}: no class names found (expected one per line or a JSON list)")
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(f"{path}: duplicate class names {duplicates}")
    return names


def write_folder_dataset(
    root: str | Path, images: Tensor, masks: Tensor, names: Sequence[str] | None = None
) -> tuple[Path, Path]:
    """Write ``root/images/NAME.png`` (8-bit RGB) and ``root/masks/NAME.png`` (class ids).

    Args:
        root: output folder (created if needed).
        images: float tensor ``(N, 3, H, W)`` in ``[0, 1]``, saved as ``round(x * 255)``.
        masks: integer tensor ``(N, H, W)``, ids in ``0 .. 65535`` (16-bit PNG above 255).
        names: file stems, default ``00000``, ``00001``, ...

    Returns:
        ``(images_dir, masks_dir)``.

    Raises:
        TypeError: wrong tensor types.
        ValueError: inconsistent shapes or names, or ids outside ``0 .. 65535``.

    Examples:
        >>> import tempfile
        >>> images, masks = torch.rand(1, 3, 16, 16), torch.randint(0, 9, (1, 16, 16))
        >>> with tempfile.TemporaryDirectory() as root:
        ...     image_dir, mask_dir = write_folder_dataset(root, images, masks, names=["a"])
        ...     sorted(p.name for p in mask_dir.iterdir())
        ['a.png']

    """
    pil = _pil()
    TensorSegmentationDataset(images, masks)  # validates types and shapes
    if images.shape[1] != 3:
        raise ValueError(f"`images` must have 3 channels, got shape {tuple(images.shape)}")
    if masks.numel() and (int(masks.min()) < 0 or int(masks.max()) > 65535):
        raise ValueError("`masks` ids must be in 0..65535 to be written as PNG")
    names = [f"{i:05d}" for i in range(len(images))] if names is None else [str(n) for n in names]
    if len(names) != len(images) or len(set(names)) != len(names):
        raise ValueError(f"`names` must be {len(images)} distinct names, got {len(names)}")
    image_dir, mask_dir = Path(root) / "images", Path(root) / "masks"
    for folder in (image_dir, mask_dir):
        folder.mkdir(parents=True, exist_ok=True)
    pixels = (images.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    ids = masks.numpy().astype(np.uint8 if masks.numel() == 0 or masks.max() < 256 else np.uint16)
    for name, pix, mask in zip(names, pixels, ids, strict=True):
        pil.fromarray(np.ascontiguousarray(pix)).save(image_dir / f"{name}.png")
        pil.fromarray(np.ascontiguousarray(mask)).save(mask_dir / f"{name}.png")
    return image_dir, mask_dir
