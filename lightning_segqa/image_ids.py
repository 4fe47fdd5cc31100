"""What identifies each scored image besides its index: its name and a fingerprint of its given mask."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor
from torchmetrics.utilities import rank_zero_warn

from lightning_segqa.functional.kernels import fingerprint_weights

__all__ = ["check_indexes", "decode_names", "encode_names", "mask_fingerprint", "warn_conflicting_repeats"]


def check_indexes(indexes: Any, batch: int, device: torch.device, name: str = "indexes") -> Tensor:
    """``indexes`` as a ``(batch,)`` int64 tensor on ``device``, after checking they are one integer per image.

    Raises:
        TypeError: ``indexes`` is None or not integers.
        ValueError: not one index per image.

    Examples:
        >>> check_indexes([3, 1], 2, torch.device("cpu")).tolist()
        [3, 1]
        >>> check_indexes(torch.tensor([0.5]), 1, torch.device("cpu"))
        Traceback (most recent call last):
        ...
        TypeError: `indexes` must hold integer dataset indexes, got dtype torch.float32.
    """
    if indexes is None:
        raise TypeError(
            f"`{name}` is None: pass each image's dataset index, e.g. a dataset whose items carry "
            "'index': position, collated into a (B,) int tensor."
        )
    if not isinstance(indexes, Tensor):
        indexes = torch.as_tensor(indexes)
    if indexes.is_floating_point() or indexes.dtype == torch.bool:
        raise TypeError(f"`{name}` must hold integer dataset indexes, got dtype {indexes.dtype}.")
    if indexes.shape != (batch,):
        raise ValueError(f"`{name}` must have shape ({batch},), one index per image, got {tuple(indexes.shape)}.")
    return indexes.to(device=device, dtype=torch.long)


def encode_names(names: Sequence[str] | None, batch: int, device: torch.device) -> Tensor:
    """``batch`` NUL-terminated UTF-8 names as one uint8 tensor (``batch`` zeros without names).

    Raises:
        ValueError: ``names`` is not ``batch`` strings, or a name holds a NUL character.

    Examples:
        >>> encode_names(["a", "bc"], 2, torch.device("cpu")).tolist()
        [97, 0, 98, 99, 0]
        >>> encode_names(None, 2, torch.device("cpu")).tolist()
        [0, 0]
    """
    if names is None:
        return torch.zeros(batch, dtype=torch.uint8, device=device)
    if isinstance(names, str) or not isinstance(names, Sequence) or len(names) != batch:
        raise ValueError(f"`names` must be a sequence of {batch} strings (one per image), got {names!r:.80}.")
    text = [str(v) for v in names]
    if any("\0" in v for v in text):
        raise ValueError("`names` must not contain NUL characters.")
    # surrogatepass: os.fsdecode keeps the bytes of an undecodable file name as lone surrogates
    blob = "".join(v + "\0" for v in text).encode("utf-8", errors="surrogatepass")
    return torch.frombuffer(bytearray(blob), dtype=torch.uint8).to(device)


def decode_names(blob: Tensor, n: int, keep: Tensor) -> list[str] | None:
    """The names at positions ``keep`` of ``n`` names made by :func:`encode_names`; None when no image has one.

    Raises:
        RuntimeError: ``blob`` does not hold ``n`` names.

    Examples:
        >>> blob = encode_names(["a", "bc"], 2, torch.device("cpu"))
        >>> decode_names(blob, 2, torch.tensor([1, 0]))
        ['bc', 'a']
    """
    if blob.numel() == n:  # only empty names (or none at all)
        return None
    parts = bytes(blob.cpu().tolist()).split(b"\0")
    if len(parts) != n + 1:
        raise RuntimeError(f"Corrupt `names` state: {len(parts) - 1} names for {n} images.")
    return [parts[p].decode("utf-8", errors="surrogatepass") for p in keep.tolist()]


def mask_fingerprint(target: Tensor, valid: Tensor | None = None) -> Tensor:
    """A cheap int64 hash of each given mask, to spot repeats that differ.

    ``sum((class id + 1) * weight)`` over the valid pixels, with the position weights of
    :func:`~lightning_segqa.functional.kernels.fingerprint_weights` (exact integers: the
    compiled pixel pass gives the same values).

    Args:
        target: ``(B, *spatial)`` class ids (0 at ignored pixels).
        valid: same shape, bool (None: every pixel is valid).

    Examples:
        >>> masks = torch.tensor([[[0, 1]], [[1, 0]], [[0, 1]]])
        >>> fp = mask_fingerprint(masks)
        >>> bool(fp[0] == fp[2]), bool(fp[0] == fp[1])
        (True, False)
    """
    flat = target.reshape(target.shape[0], -1)
    labels = flat + 1 if valid is None else torch.where(valid.reshape(flat.shape), flat + 1, 0)
    return (labels * _fingerprint_weights(flat.shape[1], flat.device)).sum(1, dtype=torch.long)


@functools.lru_cache(maxsize=8)
def _fingerprint_weights(num_pixels: int, device: torch.device) -> Tensor:
    """The per-position weights of :func:`mask_fingerprint` (made once per image size and device)."""
    return fingerprint_weights(torch.arange(num_pixels, device=device, dtype=torch.long))


def warn_conflicting_repeats(fingerprints_by_index: Tensor, first: Tensor) -> None:
    """Warn once when an index repeats with a mask that differs from the kept (first) one.

    Args:
        fingerprints_by_index: mask fingerprints sorted by dataset index.
        first: True at the first occurrence of each index in that order.

    Examples:
        >>> warn_conflicting_repeats(torch.tensor([5, 5, 7]), torch.tensor([True, False, True]))  # same mask: silent
    """
    group = torch.cumsum(first.long(), 0) - 1
    differ = fingerprints_by_index != fingerprints_by_index[first][group]
    count = int(torch.unique(group[differ]).numel())
    if count:
        rank_zero_warn(
            f"{count} dataset index(es) were given more than once with different masks; each kept its first "
            "mask's scores. Repeats are normal (a DistributedSampler pads with repeats), different masks "
            "are not: give every image its own index (e.g. its position in the dataset).",
            UserWarning,
        )
