"""The scoring methods' names, from :data:`~lightning_segqa.scores.REGISTRY`: full, short and long."""

from __future__ import annotations

from collections.abc import Sequence

from lightning_segqa.scores.registry import REGISTRY

#: every per-image scoring method, the paper's softmin first
METHODS: tuple[str, ...] = tuple(REGISTRY)

#: method -> the short name used as a table column
SHORT_NAMES: dict[str, str] = {name: unit.short for name, unit in REGISTRY.items()}

#: method -> how a legend explains it
LONG_NAMES: dict[str, str] = {name: unit.long for name, unit in REGISTRY.items()}


def short_name(method: str) -> str:
    """The table column of a method (a name outside the registry is shown as it is).

    Examples:
        >>> short_name("softmin"), short_name("my_score")
        ('SM', 'my_score')
    """
    unit = REGISTRY.get(method)
    return method if unit is None else unit.short


def method_legend(methods: Sequence[str]) -> str:
    """One line explaining the short method names used in tables.

    Args:
        methods: the methods shown (names outside the registry are shown as they are).

    Returns:
        ``"SM = softmin (the paper method), ...; lower = more likely mislabeled."``

    Raises:
        TypeError: ``methods`` is a single string instead of a sequence of names.

    Examples:
        >>> method_legend(["softmin", "iou"])
        'SM = softmin (the paper method), IoU = intersection over union; lower = more likely mislabeled.'
    """
    if isinstance(methods, str):
        raise TypeError(f"`methods` must be a sequence of method names, got the string {methods!r}.")
    units = {m: REGISTRY.get(m) for m in methods}
    parts = [f"{m} = {m}" if u is None else f"{u.short} = {u.long}" for m, u in units.items()]
    return ", ".join(parts) + "; lower = more likely mislabeled."
