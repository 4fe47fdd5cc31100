"""Test-time augmentation for held-out scoring: average the softmax over flipped copies of a batch.

:class:`FlipTTA` runs the module's own ``validation_step`` on the batch and on each flipped
copy (every tensor of the batch with at least three dimensions, i.e. images ``(B, C, H, W)``
and masks ``(B, H, W)``, is flipped along its last (``"hflip"``) or second-to-last
(``"vflip"``) dimension), flips each prediction back, and averages the probabilities per
pixel. The target, indexes and images come from the unflipped pass, so the monitor scores the
original masks with the averaged probabilities.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import torch
from lightning.pytorch import LightningModule
from torch import Tensor

from lightning_segqa.functional._inputs import detect_format

__all__ = ["TTA_TRANSFORMS", "FlipTTA", "flip_batch"]

#: flip name -> dimension it flips (counted from the end)
TTA_TRANSFORMS: dict[str, int] = {"hflip": -1, "vflip": -2}
PREDS_KEYS = ("logits", "probs", "preds")


def flip_batch(batch: Any, dim: int) -> Any:
    """Flip every tensor with at least three dimensions along ``dim``; keep the rest.

    Examples:
        >>> b = flip_batch({"image": torch.arange(6.).view(1, 1, 1, 6), "index": torch.tensor([3])}, -1)
        >>> b["image"].flatten().tolist(), b["index"].tolist()
        ([5.0, 4.0, 3.0, 2.0, 1.0, 0.0], [3])
    """
    if isinstance(batch, Tensor):
        return batch.flip(dim) if batch.ndim >= 3 else batch
    if isinstance(batch, Mapping):
        return {k: flip_batch(v, dim) for k, v in batch.items()}
    if isinstance(batch, tuple) and hasattr(batch, "_fields"):  # namedtuple
        return type(batch)(*(flip_batch(v, dim) for v in batch))
    if isinstance(batch, (list, tuple)):
        return type(batch)(flip_batch(v, dim) for v in batch)
    return batch


def check_tta(tta: str | Sequence[str] | None) -> tuple[str, ...]:
    """Normalise the ``tta`` argument to a tuple of flip names.

    Examples:
        >>> check_tta("hflip"), check_tta(None), check_tta([]), check_tta(["hflip", "vflip"])
        (('hflip',), (), (), ('hflip', 'vflip'))
        >>> check_tta("rotate")
        Traceback (most recent call last):
        ...
        ValueError: `tta` must be None or names from ('hflip', 'vflip'), got 'rotate'.
    """
    if tta is None:
        return ()
    names = (tta,) if isinstance(tta, str) else tuple(tta)
    if any(n not in TTA_TRANSFORMS for n in names) or len(set(names)) != len(names):
        raise ValueError(f"`tta` must be None or names from {tuple(TTA_TRANSFORMS)}, got {tta!r}.")
    return names


class FlipTTA:
    """Wrap a module's ``validation_step`` so that it returns flip-averaged probabilities.

    Args:
        transforms: flip names from :data:`TTA_TRANSFORMS`.
        preds_key: key of the model output (None: the first of ``logits``, ``probs``, ``preds``).
        input_format: ``"auto"``, ``"probs"`` or ``"logits"``, as the monitor's.
        extract: the monitor's ``extract(outputs, batch)``, if any.

    Examples:
        >>> class Flip(LightningModule):
        ...     def validation_step(self, batch, batch_idx):
        ...         return {"logits": batch["image"].repeat(1, 2, 1, 1), "target": batch["mask"]}
        >>> module = Flip()
        >>> batch = {"image": torch.arange(4.).view(1, 1, 1, 4), "mask": torch.zeros(1, 1, 4, dtype=torch.long)}
        >>> with FlipTTA(("hflip",)).applied(module):
        ...     out = module.validation_step(batch, 0)
        >>> out["logits"].shape, round(float(out["logits"].sum()), 4)
        (torch.Size([1, 2, 1, 4]), 4.0)
    """

    def __init__(
        self,
        transforms: Sequence[str],
        preds_key: str | None = None,
        input_format: str = "auto",
        extract: Callable[[Any, Any], Mapping[str, Any]] | None = None,
    ) -> None:
        self.transforms = check_tta(transforms)
        self.preds_key = preds_key
        self.input_format = input_format
        self.extract = extract

    def _data(self, outputs: Any, batch: Any) -> dict[str, Any]:
        data = self.extract(outputs, batch) if self.extract is not None else outputs
        if not isinstance(data, Mapping):
            raise TypeError(
                "Test-time augmentation needs `validation_step` to return a dict (or the monitor's `extract` "
                f"to build one); got {type(data).__name__}."
            )
        return dict(data)

    def _probs(self, preds: Tensor, key: str) -> Tensor:
        fmt = self.input_format
        if fmt == "auto":
            fmt = {"logits": "logits", "probs": "probs"}.get(key) or detect_format(preds.detach())
        return preds.float().softmax(1) if fmt == "logits" else preds.float()

    def step(self, original: Callable[..., Any], batch: Any, *args: Any, **kwargs: Any) -> Any:
        """The wrapped ``validation_step``: its own outputs, with the flip-averaged probabilities as the preds."""
        outputs = original(batch, *args, **kwargs)
        data = self._data(outputs, batch)
        key = self.preds_key or next((k for k in PREDS_KEYS if k in data), None)
        if key is None or key not in data:
            raise KeyError(f"Test-time augmentation found no model output in {sorted(map(str, data))}.")
        total = self._probs(data[key], key)
        for name in self.transforms:
            dim = TTA_TRANSFORMS[name]
            flipped = flip_batch(batch, dim)
            other = self._data(original(flipped, *args, **kwargs), flipped)
            total = total + self._probs(other[key], key).flip(dim)
        return _replace(outputs, data[key], total / (1 + len(self.transforms)))

    @contextlib.contextmanager
    def applied(self, module: LightningModule) -> Iterator[LightningModule]:
        """Within the block, ``module.validation_step`` returns flip-averaged probabilities.

        Score them with ``input_format="probs"`` on the monitor and its metric.
        """
        original = module.validation_step

        def validation_step(batch: Any, *args: Any, **kwargs: Any) -> Any:
            with torch.no_grad():
                return self.step(original, batch, *args, **kwargs)

        module.validation_step = validation_step  # type: ignore[method-assign]
        try:
            yield module
        finally:
            del module.validation_step


def _replace(outputs: Any, preds: Tensor, new: Tensor) -> Any:
    """``outputs`` with the tensor ``preds`` (found by identity, at most one level deep) replaced by ``new``."""
    if outputs is preds:
        return new
    if isinstance(outputs, Mapping):
        for key, value in outputs.items():
            if value is preds:
                return {**outputs, key: new}
    if isinstance(outputs, (list, tuple)):
        items = list(outputs)
        for i, value in enumerate(items):
            if value is preds:
                items[i] = new
                return type(outputs)(*items) if hasattr(outputs, "_fields") else type(outputs)(items)
    raise TypeError(
        "Test-time augmentation could not find the model output in what validation_step returns: return the "
        "logits/probabilities themselves, or in a dict, list or tuple (the monitor's `extract` may then pick them)."
    )
