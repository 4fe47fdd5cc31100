"""A ``LabelQualityMonitor``'s scored states as plain data: exported after scoring, merged back later."""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Mapping
from typing import Any

from lightning_segqa.report import LabelQualityReport

__all__ = ["export_state", "merge_exported"]


def export_state(monitor: Any) -> dict[str, Any]:
    """The last scored epoch's metric states (first dataloader) and drawn suspects, on the CPU.

    The result is plain tensors and lists (``torch.save`` it): ``{"states": {name: tensor},
    "heap": [...]}``; ``states["indexes"]`` holds the scored dataset indexes.

    Raises:
        RuntimeError: the monitor has scored nothing yet.

    Examples:
        >>> import torch
        >>> from lightning_segqa import LabelQualityMonitor
        >>> monitor = LabelQualityMonitor(3)
        >>> export_state(monitor)
        Traceback (most recent call last):
        ...
        RuntimeError: The monitor has scored nothing yet: ...
    """
    if monitor.last_states is None:
        raise RuntimeError(
            "The monitor has scored nothing yet: export its state after a validation epoch that it scored "
            "(not the sanity check, not under fast_dev_run), e.g. after `trainer.validate(...)`."
        )
    return {"states": {k: v.detach().cpu() for k, v in monitor.last_states.items()}, "heap": monitor.heap.state()}


def merge_exported(monitor: Any, exported: Iterable[Mapping[str, Any]]) -> LabelQualityReport:
    """Merge :func:`export_state` results (e.g. one per fold) into ``monitor`` and compute the report.

    Each item needs the keys ``"states"`` and ``"heap"``; other keys (e.g. saved alongside in
    the same file) are ignored.

    This process only: nothing is gathered across processes. The monitor's metric and suspects
    are replaced by the merged ones and ``monitor.report`` is set. Repeated indexes are kept
    once, as in :meth:`~lightning_segqa.LabelQuality.compute`.

    Raises:
        ValueError: ``exported`` is empty, an item is not an export, or its states come from a
            metric with other methods (then the monitor's metric and suspects are left empty).

    Examples:
        >>> import torch
        >>> from lightning_segqa import LabelQuality, LabelQualityMonitor
        >>> def scored(idx):
        ...     metric = LabelQuality(3, methods=["softmin"])
        ...     target = torch.zeros(1, 2, 2, dtype=torch.long)
        ...     metric.update(torch.full((1, 3, 2, 2), 1 / 3), target, torch.tensor([idx]))
        ...     return {"states": metric.state_tensors(), "heap": []}
        >>> merge_exported(LabelQualityMonitor(3), [scored(4), scored(1)]).indexes.tolist()
        [1, 4]
    """
    exported = list(exported)
    if not exported:
        raise ValueError("`exported` is empty: pass the results of `monitor.export_state()` to merge.")
    for i, item in enumerate(exported):
        if not isinstance(item, Mapping) or not {"states", "heap"} <= set(item):
            got = sorted(item) if isinstance(item, Mapping) else type(item).__name__
            raise ValueError(
                f"`exported[{i}]` must be a `monitor.export_state()` result (keys 'heap', 'states'; others are "
                f"ignored), got {got}."
            )
    metric = monitor.metric
    metric.reset()
    monitor.heap.clear()
    distributed = metric.distributed_available_fn
    metric.distributed_available_fn = _never  # every part is here: no gathering across processes
    try:
        for item in exported:
            metric.load_state_tensors(item["states"])
            monitor.heap.load(item["heap"])
        with warnings.catch_warnings():  # loaded states, not update(): torchmetrics' "before update" warning is moot
            warnings.filterwarnings("ignore", ".*called before the ``update`` method.*")
            report = metric.compute()
    except Exception:
        metric.reset()
        monitor.heap.clear()
        raise
    finally:
        metric.distributed_available_fn = distributed
    monitor.report, monitor.reports = report, {0: report}
    return report


def _never() -> bool:
    return False
