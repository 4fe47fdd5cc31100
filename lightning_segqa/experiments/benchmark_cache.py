"""The benchmark's cache of validation probabilities, one ``.pt`` file per (error kind, model) run.

:func:`cache_path` names the file; an entry is reused only when its settings and noisy masks match
(otherwise it warns and the run is retrained), and is written atomically. Used by
:mod:`lightning_segqa.experiments.benchmark`, which re-exports :func:`cache_path`.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from lightning_segqa.writing import atomic_write, torch_bytes


def cache_path(
    out: str | Path, error: str, model: str, encoder: str, size: Sequence[int], epochs: int, seed: int
) -> Path:
    """Where one run's validation probabilities are cached.

    Examples:
        >>> cache_path("runs", "drop", "fpn", "resnet18", (96, 128), 6, 0).as_posix()
        'runs/cache/drop_fpn_resnet18_96x128_e6_s0.pt'
    """
    name = f"{error}_{model}_{encoder}_{size[0]}x{size[1]}_e{epochs}_s{seed}.pt"
    return Path(out) / "cache" / name


def _load_cache(path: Path, masks: Tensor, flags: Tensor, meta: dict) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    entry = torch.load(path, map_location="cpu", weights_only=True)
    if entry.get("meta") != meta:
        why = f"other settings ({entry.get('meta')} instead of {meta})"
    elif not (torch.equal(entry["masks"].long(), masks) and torch.equal(entry["is_mislabeled"], flags)):
        why = "other noisy masks"
    else:
        return entry
    warnings.warn(f"{path} was made with {why}; retraining.", UserWarning, stacklevel=3)
    return None


def _save_cache(path: Path, entry: dict[str, Any]) -> None:
    atomic_write(path, torch_bytes(entry))
