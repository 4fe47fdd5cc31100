"""The scoring methods' names: the full names a report uses, the short ones its tables show."""

from __future__ import annotations

from collections.abc import Sequence

#: every per-image scoring method, the paper's softmin first
METHODS: tuple[str, ...] = (
    "softmin",
    "confidence_in_label",
    "correctly_classified_pixels",
    "thresholded_ccp",
    "iou",
    "connected_components",
    "confident_learning_counts",
)

#: method -> the short name used as a table column
SHORT_NAMES: dict[str, str] = {
    "softmin": "SM",
    "confidence_in_label": "CIL",
    "correctly_classified_pixels": "CCP",
    "thresholded_ccp": "TCCP",
    "iou": "IoU",
    "connected_components": "CoCo",
    "confident_learning_counts": "CLC",
}

#: method -> how a legend explains it
LONG_NAMES: dict[str, str] = {
    "softmin": "softmin (the paper method)",
    "confidence_in_label": "mean confidence in the given label",
    "correctly_classified_pixels": "share of correctly classified pixels",
    "thresholded_ccp": "thresholded CCP",
    "iou": "intersection over union",
    "connected_components": "connected components",
    "confident_learning_counts": "confident-learning issue counts",
}


def method_legend(methods: Sequence[str]) -> str:
    """One line explaining the short method names used in tables.

    Args:
        methods: the methods shown (names outside :data:`METHODS` are shown as they are).

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
    return ", ".join(f"{SHORT_NAMES.get(m, m)} = {LONG_NAMES.get(m, m)}" for m in methods) + (
        "; lower = more likely mislabeled."
    )
