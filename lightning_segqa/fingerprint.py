"""Fingerprints of everything that changes a cross-validation result, and what differs between two.

A finished ``work_dir`` is only reused when the new run would give the same answer. The
fingerprint saved with the splits records the dataset (size and a hash of its samples), the
model (class, hyperparameters and initial weights), the monitor's scoring configuration, the
``Trainer`` arguments, the checkpoint choice, test-time augmentation, folds and seed.
"""

from __future__ import annotations

import hashlib
import inspect
import math
import numbers
import pickle
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor

__all__ = ["COSMETIC_TRAINER_KEYS", "describe", "fingerprint_diff", "model_fingerprint", "samples_fingerprint"]

#: ``Trainer`` arguments that change what is shown, not what is computed: left out of the fingerprint
COSMETIC_TRAINER_KEYS = frozenset(
    {"enable_progress_bar", "enable_model_summary", "log_every_n_steps", "num_sanity_val_steps", "profiler"}
)
MAX_HASHED_SAMPLES = 1000


def _update(h: Any, value: Any) -> None:
    """Feed a sample (tensors, arrays, numbers, strings, nested containers) into the hash ``h``."""
    if isinstance(value, Tensor):
        t = value.detach().cpu().contiguous()
        h.update(f"T{t.dtype}{tuple(t.shape)}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    elif isinstance(value, Mapping):
        h.update(b"{")
        for key in sorted(value, key=str):
            h.update(str(key).encode())
            _update(h, value[key])
        h.update(b"}")
    elif isinstance(value, (list, tuple)):
        h.update(b"[")
        for item in value:
            _update(h, item)
        h.update(b"]")
    elif isinstance(value, (str, bytes, numbers.Number, bool)) or value is None:
        h.update(repr(value).encode())
    elif hasattr(value, "__array__"):  # numpy arrays, PIL images
        _update(h, torch.as_tensor(value.__array__()))
    else:
        try:
            h.update(pickle.dumps(value))
        except Exception:  # noqa: BLE001 - an unpicklable object: its type is all we can record
            h.update(type(value).__qualname__.encode())


def samples_fingerprint(dataset: Any, max_samples: int = MAX_HASHED_SAMPLES) -> dict[str, Any]:
    """Size and content hash of a map-style dataset.

    Every sample is hashed when there are at most ``max_samples``; otherwise ``max_samples``
    evenly spaced ones (always the first and the last).

    Examples:
        >>> a = samples_fingerprint([torch.zeros(2), torch.ones(2)])
        >>> a["size"], a == samples_fingerprint([torch.zeros(2), torch.ones(2)])
        (2, True)
        >>> a == samples_fingerprint([torch.zeros(2), torch.zeros(2)])
        False
    """
    n = len(dataset)
    if n <= max_samples:
        positions = list(range(n))
    else:
        positions = sorted({round(i * (n - 1) / (max_samples - 1)) for i in range(max_samples)})
    h = hashlib.sha256()
    for i in positions:
        _update(h, dataset[i])
    return {"size": n, "samples_hashed": len(positions), "content": h.hexdigest()[:16]}


def describe(value: Any) -> Any:
    """A stable, JSON-able description of an argument (no memory addresses).

    Examples:
        >>> describe({"max_epochs": 3, "precision": "bf16-mixed", "plugins": [print]})
        {'max_epochs': 3, 'plugins': ['builtins.print'], 'precision': 'bf16-mixed'}
    """
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return float(value) if math.isfinite(value) else repr(float(value))
    if isinstance(value, Tensor):
        h = hashlib.sha256()
        _update(h, value)
        return f"tensor:{h.hexdigest()[:16]}"
    if isinstance(value, Mapping):
        return {str(k): describe(value[k]) for k in sorted(value, key=str)}
    if isinstance(value, (list, tuple, set, frozenset)):
        items = sorted(value, key=repr) if isinstance(value, (set, frozenset)) else value
        return [describe(v) for v in items]
    if callable(value) and hasattr(value, "__qualname__"):
        return f"{getattr(value, '__module__', '')}.{value.__qualname__}"
    public = {k: v for k, v in vars(value).items() if not k.startswith("_")} if hasattr(value, "__dict__") else {}
    name = f"{type(value).__module__}.{type(value).__qualname__}"
    simple = {k: describe(v) for k, v in public.items() if isinstance(v, (bool, str, numbers.Number, type(None)))}
    return {"type": name, **simple} if simple else name


def model_fingerprint(model_factory: Callable[[int], torch.nn.Module], seed: int) -> dict[str, Any]:
    """Class, hyperparameters and a hash of the initial weights of ``model_factory(0)``.

    The model is built under a private random state seeded with ``seed`` (the caller's global
    random state is left as it was), so equal factories give equal fingerprints.

    Examples:
        >>> fp = model_fingerprint(lambda fold: torch.nn.Linear(2, 3), seed=0)
        >>> fp["class"], fp == model_fingerprint(lambda fold: torch.nn.Linear(2, 3), seed=0)
        ('torch.nn.modules.linear.Linear', True)
        >>> fp == model_fingerprint(lambda fold: torch.nn.Linear(2, 4), seed=0)
        False
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = model_factory(0)
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"`model_factory(fold)` must return a LightningModule, got {type(model).__name__} for fold 0.")
    h = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        h.update(name.encode())
        _update(h, tensor)
    hparams = getattr(model, "hparams", None)
    return {
        "class": f"{type(model).__module__}.{type(model).__qualname__}",
        "hparams": describe(dict(hparams)) if isinstance(hparams, Mapping) else None,
        "initial_weights": h.hexdigest()[:16],
    }


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, Mapping) and value:
        out: dict[str, Any] = {}
        for k, v in value.items():
            out.update(_flatten(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    return {prefix: value}


def fingerprint_diff(saved: Mapping[str, Any], current: Mapping[str, Any]) -> list[str]:
    """Lines naming each setting that differs, with the saved and the current value.

    Examples:
        >>> fingerprint_diff({"seed": 0, "trainer": {"max_epochs": 2}}, {"seed": 0, "trainer": {"max_epochs": 5}})
        ['trainer.max_epochs: 2 before, 5 now']
    """
    old, new = _flatten(saved), _flatten(current)
    lines = []
    for key in sorted(set(old) | set(new)):
        if old.get(key, "<unset>") != new.get(key, "<unset>"):
            a, b = (_short(d.get(key, "<unset>")) for d in (old, new))
            lines.append(f"{key}: {a} before, {b} now")
    return lines


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def callable_name(fn: Any) -> str | None:
    """Module and qualified name of a callable (None for None).

    Examples:
        >>> callable_name(len), callable_name(None)
        ('builtins.len', None)
    """
    if fn is None:
        return None
    target = fn if inspect.isroutine(fn) or inspect.isclass(fn) else type(fn)
    return f"{getattr(target, '__module__', '')}.{getattr(target, '__qualname__', type(fn).__name__)}"


def sequence_names(items: Sequence[Any]) -> list[str]:
    """Type names of callbacks and the like.

    Examples:
        >>> sequence_names([1, "a"])
        ['builtins.int', 'builtins.str']
    """
    return [f"{type(x).__module__}.{type(x).__qualname__}" for x in items]
