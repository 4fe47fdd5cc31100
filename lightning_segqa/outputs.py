"""Reading what ``validation_step`` returns: the keys the monitor needs, image names, and the output format."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from torch import Tensor

from lightning_segqa.functional._inputs import detect_format

PREDS_KEYS = ("logits", "probs", "preds")
KEY_FORMATS = {"logits": "logits", "probs": "probs"}  # input_format="auto" trusts these names
_HOW = (
    "Return those keys from `validation_step`, or configure preds_key=/target_key=/index_key=, "
    "or pass extract=lambda outputs, batch: {'preds': ..., 'target': ..., 'index': ...}."
)


class OutputReader:
    """Pick the model output, given mask, indexes, names and extras out of each validation batch.

    Args:
        keys: output key per role: ``preds`` (None: first of ``logits``, ``probs``, ``preds``),
            ``target``, ``index``, and the optional ``image``, ``is_mislabeled``, ``name``.
        extract: ``extract(outputs, batch) -> dict`` used instead of ``outputs``.

    Image names are read from the returned dict, else from the batch (datasets that yield
    ``"name"``, such as :class:`~lightning_segqa.data.FolderSegmentationDataset`).

    Examples:
        >>> import torch
        >>> reader = OutputReader({"preds": None, "target": "target", "index": "index", "name": "name"})
        >>> got = reader.read({"logits": torch.zeros(1, 2, 3, 3), "target": torch.zeros(1, 3, 3),
        ...                    "index": torch.tensor([7])}, {"name": ["frame_007"]})
        >>> got["preds_key"], got["names"]
        ('logits', ['frame_007'])
    """

    def __init__(self, keys: Mapping[str, str | None], extract: Callable[[Any, Any], Mapping[str, Any]] | None = None):
        if extract is not None and not callable(extract):
            raise TypeError(f"`extract` must be callable as extract(outputs, batch), got {type(extract).__name__}.")
        self.keys = dict(keys)
        self.extract = extract
        self._checked_keys: dict[str, bool] = {}  # output key -> its values match its name

    def read(self, outputs: Any, batch: Any) -> dict[str, Any]:
        """The batch's ``preds``, ``preds_key``, ``target``, ``index`` (and ``image``, ``is_mislabeled``, ``names``).

        Raises:
            TypeError: the output is not a dict, or the indexes are None.
            KeyError: a needed key is missing (the message lists the keys that are there).
        """
        data = self.extract(outputs, batch) if self.extract is not None else outputs
        if not isinstance(data, Mapping):
            raise TypeError(
                "LabelQualityMonitor needs `validation_step` to return a dict (e.g. "
                "{'logits': logits, 'target': mask, 'index': index}) or an `extract(outputs, batch)` "
                f"callable returning one; got {type(data).__name__}."
            )
        preds_key = self.keys.get("preds") or next((k for k in PREDS_KEYS if k in data), PREDS_KEYS[0])
        needed = {"preds": preds_key, "target": self.keys["target"], "index": self.keys["index"]}
        missing = [key for key in needed.values() if key not in data]
        if missing:
            raise KeyError(
                f"LabelQualityMonitor: the validation output has no {missing}; it has {sorted(map(str, data))}. " + _HOW
            )
        got = {name: data[key] for name, key in needed.items()}
        index = got["index"]
        if index is None or (isinstance(index, (list, tuple)) and any(i is None for i in index)):
            raise TypeError(
                f"LabelQualityMonitor: the validation output's {needed['index']!r} is None; it must hold each "
                "image's dataset index. Give your dataset items an 'index' (their position) and return "
                f"'{needed['index']}': batch['index'] from `validation_step`, or set index_key= or extract=."
            )
        got["preds_key"] = preds_key
        for name in ("image", "is_mislabeled"):
            key = self.keys.get(name)
            if key is not None and key in data:
                got[name] = data[key]
        names = self._names(data, batch)
        if names is not None:
            got["names"] = names
        return got

    def _names(self, data: Mapping[str, Any], batch: Any) -> list[str] | None:
        key = self.keys.get("name")
        if key is None:
            return None
        for source in (data, batch):
            if isinstance(source, Mapping) and source.get(key) is not None:
                value = source[key]
                if isinstance(value, str):
                    return [value]
                if isinstance(value, Sequence):
                    return [str(v) for v in value]
                raise TypeError(
                    f"LabelQualityMonitor: {key!r} must hold one name (str) per image, got {type(value).__name__}; "
                    "set name_key=None to read no names."
                )
        return None

    def format_for(self, key: str, preds: Tensor) -> str:
        """The format the key names, checked against the values of the first batch that uses it."""
        claimed = KEY_FORMATS.get(key)
        if claimed is None:
            return "auto"
        if key not in self._checked_keys:
            self._checked_keys[key] = detect_format(preds.detach()) == claimed
            if not self._checked_keys[key]:
                warnings.warn(
                    f"LabelQualityMonitor: the output under {key!r} does not look like {claimed}; its format is "
                    "detected from the values of every batch instead. Set input_format= to say what it holds.",
                    UserWarning,
                    stacklevel=3,
                )
        return claimed if self._checked_keys[key] else "auto"
