"""Why ``self.log(name, LabelQuality)`` fails, said plainly: the metric's result is a report, not a scalar."""

from __future__ import annotations

import sys

__all__ = ["LOG_HINT", "refuse_lightning_logging"]

LOG_HINT = (
    "`self.log(name, LabelQuality)` cannot log this metric: its `compute()` returns a LabelQualityReport (a score "
    "per image), not a scalar. Log a number taken from the report instead, e.g. in `on_validation_epoch_end`: "
    "`report = self.label_quality.compute()`, then `self.log('val/suspect_fraction', "
    "lightning_segqa.gate.suspect_fraction(report, 'softmin'))`, or with known errors (`is_mislabeled`) "
    "`self.log('val/auprc', report.detection()['softmin']['auprc'])`, and `self.label_quality.reset()`. "
    "Or use LabelQualityMonitor, which logs `segqa/suspect_fraction` itself."
)


def refuse_lightning_logging() -> None:
    """Raise :data:`LOG_HINT` when Lightning's logged-metric store calls ``compute`` (``self.log(name, metric)``).

    Lightning's own error would only say that the result is not a tensor. Every process makes the
    same call at the same point, so every process raises.

    Raises:
        TypeError: with :data:`LOG_HINT`, when called (through one caller) from Lightning's store.

    Examples:
        >>> refuse_lightning_logging()  # called from elsewhere: nothing happens
    """
    frame = sys._getframe(2)  # skip this function and its caller (`compute` or `_forward_cache`)
    for _ in range(4):  # Lightning's `_ResultMetric`, possibly behind torchmetrics' compute wrapper
        if frame is None:
            return
        if frame.f_globals.get("__name__", "").endswith("logger_connector.result"):
            raise TypeError(LOG_HINT)
        frame = frame.f_back
