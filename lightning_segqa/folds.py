"""K-fold splits and the run record (``splits.json``) that ties a ``work_dir`` to one configuration.

The record holds the folds, the fingerprint of everything that changes the result (see
:mod:`lightning_segqa.fingerprint`) and the monitor's scoring configuration (so that
:func:`~lightning_segqa.cross_validation.merge_folds` can merge folds run as separate jobs).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from lightning_segqa.fingerprint import fingerprint_diff
from lightning_segqa.seeding import derive_seed
from lightning_segqa.writing import atomic_write

__all__ = ["RECORD_NAME", "heldout_path", "kfold_splits", "load_record", "missing_folds", "save_or_check_record"]

RECORD_NAME = "splits.json"
RECORD_VERSION = 2


class StaleWorkDirError(ValueError):
    """A cross-validation ``work_dir`` holds a run made with other settings (resuming it would give a stale answer)."""


def kfold_splits(num_samples: int, num_folds: int, seed: int = 0) -> list[list[int]]:
    """Seeded, disjoint held-out index lists covering ``range(num_samples)``.

    The permutation comes from the ``"folds"`` stream of ``seed`` (see
    :func:`~lightning_segqa.seeding.derive_seed`), so it is independent of anything else drawn
    with the same seed, e.g. :func:`~lightning_segqa.noise.inject_label_errors`.

    Examples:
        >>> folds = kfold_splits(10, 3, seed=0)
        >>> sorted(sum(folds, [])) == list(range(10)), [len(f) for f in folds]
        (True, [4, 3, 3])
    """
    if isinstance(num_folds, bool) or not isinstance(num_folds, int) or num_folds < 2:
        raise ValueError(f"`num_folds` must be an int >= 2, got {num_folds!r}.")
    if isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < num_folds:
        raise ValueError(f"Cannot split {num_samples!r} samples into {num_folds} folds: need at least one per fold.")
    gen = torch.Generator().manual_seed(derive_seed(seed, "folds"))
    perm = torch.randperm(num_samples, generator=gen)
    return [sorted(chunk.tolist()) for chunk in torch.tensor_split(perm, num_folds)]


def heldout_path(work_dir: str | Path, fold: int) -> Path:
    """Where fold ``fold`` saves its held-out metric state.

    Examples:
        >>> heldout_path("runs/cv", 2).as_posix()
        'runs/cv/fold_2/heldout.pt'
    """
    return Path(work_dir) / f"fold_{fold}" / "heldout.pt"


def missing_folds(work_dir: str | Path, num_folds: int) -> list[int]:
    """Folds whose held-out state is not in ``work_dir`` yet.

    Examples:
        >>> missing_folds("/nonexistent", 3)
        [0, 1, 2]
    """
    return [f for f in range(num_folds) if not heldout_path(work_dir, f).exists()]


def load_record(work_dir: str | Path) -> dict[str, Any]:
    """Read ``work_dir/splits.json``.

    Raises:
        FileNotFoundError: ``work_dir`` holds no cross-validation run.

    Examples:
        >>> load_record("/nonexistent")
        Traceback (most recent call last):
        ...
        FileNotFoundError: /nonexistent/splits.json not found: /nonexistent is not a cross-validation work_dir...
    """
    path = Path(work_dir) / RECORD_NAME
    if not path.exists():
        raise FileNotFoundError(
            f"{path} not found: {work_dir} is not a cross-validation work_dir (or its run has not started)."
        )
    return json.loads(path.read_text())


def save_or_check_record(
    work_dir: str | Path,
    num_samples: int,
    num_folds: int,
    seed: int,
    fingerprint: Mapping[str, Any],
    monitor_config: Mapping[str, Any],
    write: bool = True,
) -> list[list[int]]:
    """Return the folds of ``work_dir``: saved ones when the fingerprint matches, else new ones.

    A record made with a different fingerprint is refused (the message lists what differs);
    delete it (``overwrite=True`` in :class:`~lightning_segqa.CrossValidation`) to start over.
    ``write=False`` (processes other than rank zero) checks but never writes.

    Examples:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as d:
        ...     a = save_or_check_record(d, 10, 2, 0, {"model": "a"}, {})
        ...     b = save_or_check_record(d, 10, 2, 0, {"model": "a"}, {})
        ...     save_or_check_record(d, 10, 2, 0, {"model": "b"}, {})
        Traceback (most recent call last):
        ...
        lightning_segqa.folds.StaleWorkDirError: ...was made with other settings (model: 'a' before, 'b' now)...
    """
    path = Path(work_dir) / RECORD_NAME
    current = dict(fingerprint)
    if path.exists():
        saved = json.loads(path.read_text())
        old = saved.get("fingerprint")
        if old is None:
            differs = ["fingerprint: none saved (made by an older version of lightning-segqa)"]
        else:
            differs = fingerprint_diff(old, current)
        if differs:
            raise StaleWorkDirError(
                f"{work_dir} was made with other settings ({'; '.join(differs)}); its folds would give a stale "
                "answer. Pass overwrite=True to start over in it, or use another work_dir."
            )
        return saved["folds"]
    folds = kfold_splits(num_samples, num_folds, seed)
    if write:
        record = {
            "version": RECORD_VERSION,
            "num_samples": num_samples,
            "num_folds": num_folds,
            "seed": seed,
            "folds": folds,
            "fingerprint": current,
            "monitor": dict(monitor_config),
        }
        atomic_write(path, json.dumps(record, indent=1))  # a unique temporary name: jobs of an array may write at once
    return folds
