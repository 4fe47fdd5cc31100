"""Score one fold's held-out part with its checkpoint, in one process on one device.

Training may have used DDP; scoring never does, so its result equals scoring the checkpoint by
hand in one process, and every held-out sample is scored exactly once.
"""

from __future__ import annotations

import contextlib
import copy
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lightning.pytorch import Callback, LightningDataModule, LightningModule, Trainer
from torch import Tensor

from lightning_segqa.callback import LabelQualityMonitor
from lightning_segqa.merge import never_distributed
from lightning_segqa.tta import FlipTTA

__all__ = ["check_scored", "score_heldout"]


def score_heldout(
    monitor: LabelQualityMonitor,
    model: LightningModule,
    datamodule: LightningDataModule,
    ckpt_path: str | Path,
    logger: Any,
    report_dir: Path,
    callbacks: Sequence[Callback],
    trainer_kwargs: dict[str, Any],
    tta: Sequence[str] = (),
) -> tuple[LabelQualityMonitor, float]:
    """Validate ``model`` with the weights of ``ckpt_path`` on ``datamodule.val_dataloader()``.

    Args:
        monitor: the run's monitor; a copy scores (it draws the suspects and writes the fold's report).
        model: the fold's module (its weights are replaced by the checkpoint's).
        datamodule: the fold's data; its ``val_dataloader()`` is the held-out part.
        ckpt_path: the fold's checkpoint.
        logger: the fold's logger (or False).
        report_dir: where the fold's report files go.
        callbacks: the user's extra callbacks (copied).
        trainer_kwargs: the one-process ``Trainer`` arguments
            (:func:`~lightning_segqa.cv_setup.scoring_kwargs`).
        tta: flips to average over (:class:`~lightning_segqa.tta.FlipTTA`).

    Returns:
        The scoring monitor (``last_states``, ``heap``) and the seconds scoring took.
    """
    monitor = copy.deepcopy(monitor)
    monitor.report_dir = report_dir
    monitor.draw_pictures = True
    monitor.metric.distributed_available_fn = never_distributed  # this process scores the whole part
    flips = FlipTTA(tta, monitor.keys["preds"], monitor.input_format, monitor.extract)
    if tta:  # the wrapped step returns averaged probabilities where the model output was
        monitor.input_format = monitor.metric.input_format = "probs"
    trainer = Trainer(
        default_root_dir=str(report_dir),
        logger=logger,
        callbacks=[monitor, *copy.deepcopy(list(callbacks))],
        **trainer_kwargs,
    )
    start = time.perf_counter()
    with warnings.catch_warnings(), flips.applied(model) if tta else contextlib.nullcontext():
        # the scoring trainer has no ModelCheckpoint on purpose: it only reads the weights
        warnings.filterwarnings("ignore", ".*callbacks used to create the checkpoint need to be provided.*")
        trainer.validate(model, datamodule=datamodule, ckpt_path=str(ckpt_path), verbose=False)
    return monitor, time.perf_counter() - start


def check_scored(monitor: LabelQualityMonitor, fold: int, held: Sequence[int]) -> dict[str, Tensor]:
    """The scoring monitor's states, after checking that it scored each held-out index exactly once.

    Raises:
        RuntimeError: nothing was scored, or the scored indexes are not the held-out ones.

    Examples:
        >>> check_scored(LabelQualityMonitor(3), 0, [1, 2])
        Traceback (most recent call last):
        ...
        RuntimeError: Fold 0: the monitor scored nothing; does the module have a validation_step?
    """
    try:
        states = monitor.export_state()["states"]
    except RuntimeError:
        raise RuntimeError(
            f"Fold {fold}: the monitor scored nothing; does the module have a validation_step?"
        ) from None
    seen = states["indexes"].long().tolist()
    if sorted(seen) != sorted(held):
        raise RuntimeError(
            f"Fold {fold}: the held-out loader gave {len(seen)} samples ({len(set(seen))} distinct indexes), "
            f"but the fold holds out {len(held)}; its val_dataloader() must yield each held-out sample once, "
            "with the dataset index that the monitor reads."
        )
    return states
