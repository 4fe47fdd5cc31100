"""The ``LabelQuality`` metric a ``LabelQualityMonitor`` scores with: built from its arguments or given ready."""

from __future__ import annotations

from typing import Any

from lightning_segqa.metric import LabelQuality

__all__ = ["METRIC_DEFAULTS", "configured_metric"]

#: the monitor's scoring arguments and their defaults (the monitor computes softmin only by default)
METRIC_DEFAULTS: dict[str, Any] = {
    "methods": ("softmin",),
    "temperature": 0.1,
    "ignore_index": None,
    "input_format": "auto",
    "downsample": 4,
    "validate_args": True,
    "compile": None,
}


def configured_metric(metric: LabelQuality | None, num_classes: int | None, **scoring: Any) -> LabelQuality:
    """``metric`` when given (the scoring arguments must then keep their defaults), else a new one from them.

    Args:
        metric: a configured :class:`~lightning_segqa.LabelQuality`, or None.
        num_classes: number of classes (needed without ``metric``; with it, None or the metric's).
        scoring: the monitor's scoring arguments (the keys of :data:`METRIC_DEFAULTS`).

    Raises:
        TypeError: ``metric`` is not a ``LabelQuality``.
        ValueError: neither ``metric`` nor ``num_classes`` is given, or a scoring argument was
            set besides ``metric`` (the message names it).

    Examples:
        >>> configured_metric(None, 3, methods=["iou"]).methods
        ['iou']
        >>> configured_metric(LabelQuality(3, temperature=0.2), None).temperature
        0.2
        >>> configured_metric(LabelQuality(3), None, temperature=0.2)
        Traceback (most recent call last):
        ...
        ValueError: LabelQualityMonitor got metric= and also ['temperature']: ...
    """
    unknown = sorted(set(scoring) - set(METRIC_DEFAULTS))
    if unknown:
        raise TypeError(f"Unknown scoring arguments {unknown}; expected some of {sorted(METRIC_DEFAULTS)}.")
    if metric is None:
        if num_classes is None:
            raise ValueError("LabelQualityMonitor needs `num_classes` (or a configured metric=LabelQuality(...)).")
        return LabelQuality(num_classes=num_classes, **{**METRIC_DEFAULTS, **scoring})
    if not isinstance(metric, LabelQuality):
        raise TypeError(f"`metric` must be a lightning_segqa.LabelQuality, got {type(metric).__name__}.")
    clashes = [name for name, value in scoring.items() if not _same(value, METRIC_DEFAULTS[name])]
    if num_classes is not None and num_classes != metric.num_classes:
        clashes.insert(0, "num_classes")
    if clashes:
        raise ValueError(
            f"LabelQualityMonitor got metric= and also {clashes}: the metric's own settings are used. "
            f"Set {clashes} on the LabelQuality you pass, and leave them out of the monitor."
        )
    return metric


def _same(value: Any, default: Any) -> bool:
    if isinstance(default, tuple):  # methods: any sequence with the same names
        return not isinstance(value, str) and tuple(value) == default
    return value is default if default is None else value == default
