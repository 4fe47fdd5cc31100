"""The step at which Lightning logs the scalars of ``self.log``, so pictures can share it.

Lightning sends the epoch-level values of ``self.log`` (and ``LearningRateMonitor``'s) to the
loggers at ``trainer.fit_loop.epoch_loop._batches_that_stepped``: the number of training batches
that ended with an optimizer step. ``trainer.global_step`` counts optimizer steps instead, which
is larger when one batch steps several optimizers (manual optimization, e.g. a GAN's two), and
after resuming mid-epoch. :func:`scalar_step` returns Lightning's logging step, so the suspect
pictures of an epoch sit at the same TensorBoard step as its ``segqa/...`` scalars.
"""

from __future__ import annotations

from typing import Any


def scalar_step(trainer: Any) -> int:
    """The step Lightning gives the values logged with ``self.log`` right now.

    Falls back to ``trainer.global_step`` for trainers without a fit loop (e.g. stand-ins in tests).

    Args:
        trainer: a :class:`lightning.pytorch.Trainer`.

    Returns:
        A non-negative int.

    Examples:
        >>> from lightning.pytorch import Trainer
        >>> scalar_step(Trainer(logger=False, enable_progress_bar=False, enable_model_summary=False))
        0

    """
    loop = getattr(getattr(trainer, "fit_loop", None), "epoch_loop", None)
    step = getattr(loop, "_batches_that_stepped", None)
    if step is None:
        step = getattr(trainer, "global_step", None)
    if isinstance(step, bool) or not isinstance(step, int):
        raise TypeError(
            f"`trainer` must be a Lightning Trainer (with fit_loop or global_step), got {type(trainer).__name__}"
        )
    return max(int(step), 0)
