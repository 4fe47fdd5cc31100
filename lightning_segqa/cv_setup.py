"""What each fold of a cross-validation run trains and scores with, checked before anything trains.

:func:`check_trainer_kwargs` merges or refuses ``Trainer`` arguments the runner owns (logger,
callbacks, ``default_root_dir``, checkpointing) and strategies it cannot score under;
:class:`IndexSplitDataModule` is the datamodule of the dataset path; :func:`check_heldout_loader`
refuses a held-out loader that would not visit every held-out sample exactly once.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from lightning.pytorch import LightningDataModule
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from lightning.pytorch.strategies import DDPStrategy, SingleDeviceStrategy, Strategy
from torch.utils.data import (
    BatchSampler,
    DataLoader,
    Dataset,
    IterableDataset,
    RandomSampler,
    SequentialSampler,
    Subset,
)

__all__ = [
    "SCORING_KEYS",
    "SUPPORTED_STRATEGIES",
    "IndexSplitDataModule",
    "check_heldout_loader",
    "check_trainer_kwargs",
    "scoring_kwargs",
]

SUPPORTED_STRATEGIES = ("auto", "single_device", "ddp", "ddp_spawn", "ddp_fork", "ddp_notebook",
                        "ddp_find_unused_parameters_true", "ddp_spawn_find_unused_parameters_true")  # fmt: skip
#: ``Trainer`` arguments the held-out scoring (one process, one device) takes from ``trainer_kwargs``
SCORING_KEYS = ("accelerator", "precision", "deterministic", "benchmark", "inference_mode", "enable_progress_bar")


def check_trainer_kwargs(trainer_kwargs: dict[str, Any]) -> tuple[dict[str, Any], list[Callback], bool]:
    """Split ``trainer_kwargs`` into the fold's ``Trainer`` arguments, extra callbacks and "log or not".

    Returns:
        ``(kwargs, callbacks, logging)``: the arguments without ``callbacks``/``logger``, the
        callbacks given there, and False when ``logger=False`` turned logging off.

    Raises:
        ValueError: an argument the runner owns or cannot support; the message names the right one.

    Examples:
        >>> check_trainer_kwargs({"max_epochs": 2, "logger": False})
        ({'max_epochs': 2}, [], False)
        >>> check_trainer_kwargs({"default_root_dir": "runs"})
        Traceback (most recent call last):
        ...
        ValueError: trainer_kwargs['default_root_dir']: each fold writes under work_dir/fold_<i>; pass work_dir=...
    """
    from lightning_segqa.callback import LabelQualityMonitor

    kwargs = dict(trainer_kwargs)
    if "default_root_dir" in kwargs:
        raise ValueError(
            "trainer_kwargs['default_root_dir']: each fold writes under work_dir/fold_<i>; pass work_dir= instead."
        )
    logging = True
    if "logger" in kwargs:
        logger = kwargs.pop("logger")
        if logger is False or logger is None:
            logging = False
        elif logger is not True:
            raise ValueError(
                f"trainer_kwargs['logger'] got {type(logger).__name__}: one logger cannot hold K folds. Pass "
                "logger_factory=lambda name, version: CSVLogger('runs', name=name, version=version) (called "
                "once per fold and once for the merged report), or logger=False to log nothing."
            )
    callbacks = kwargs.pop("callbacks", None) or []
    callbacks = [callbacks] if isinstance(callbacks, Callback) else list(callbacks)
    for cb in callbacks:
        if isinstance(cb, LabelQualityMonitor):
            raise ValueError("trainer_kwargs['callbacks'] holds a LabelQualityMonitor: pass it as monitor= instead.")
        if isinstance(cb, ModelCheckpoint):
            raise ValueError(
                "trainer_kwargs['callbacks'] holds a ModelCheckpoint: the runner keeps one checkpoint per fold. "
                "Choose it with checkpoint='last' or checkpoint='best', checkpoint_monitor='val/loss', "
                "checkpoint_mode='min'."
            )
    if kwargs.get("enable_checkpointing") is False:
        raise ValueError(
            "trainer_kwargs['enable_checkpointing']=False: the held-out part is scored from the fold's checkpoint. "
            "Pass keep_checkpoints=False to delete it once the fold is scored."
        )
    if kwargs.get("fast_dev_run"):
        raise ValueError(
            "trainer_kwargs['fast_dev_run'] turns off checkpoints and logging, which the runner needs; use "
            "max_epochs=1, limit_train_batches=2 for a quick run."
        )
    strategy = kwargs.get("strategy", "auto")
    ok = (
        strategy in SUPPORTED_STRATEGIES
        if isinstance(strategy, str)
        else isinstance(strategy, (DDPStrategy, SingleDeviceStrategy))
    )
    if not ok:
        name = strategy if isinstance(strategy, str) else type(strategy).__name__
        raise ValueError(
            f"trainer_kwargs['strategy']={name!r} is not supported: each fold's checkpoint is scored in one "
            f"process, which needs whole (unsharded) weights. Use one of {SUPPORTED_STRATEGIES} or a DDPStrategy."
        )
    if isinstance(strategy, Strategy):  # one instance would be shared by K trainers
        raise ValueError(
            "trainer_kwargs['strategy'] must be a name such as 'ddp' (a Strategy instance cannot be reused by "
            "the K folds' trainers); pass its options as further trainer_kwargs."
        )
    return kwargs, callbacks, logging


def scoring_kwargs(trainer_kwargs: dict[str, Any]) -> dict[str, Any]:
    """Arguments of the one-process ``Trainer`` that scores a fold's held-out part.

    Examples:
        >>> kwargs = scoring_kwargs({"accelerator": "gpu", "devices": [2, 3], "strategy": "ddp", "max_epochs": 9})
        >>> kwargs["accelerator"], kwargs["devices"], "strategy" in kwargs, kwargs["limit_val_batches"]
        ('gpu', [2], False, 1.0)
    """
    devices = trainer_kwargs.get("devices", 1)
    if isinstance(devices, (list, tuple)) and devices:
        devices = [devices[0]]
    elif isinstance(devices, str) and "," in devices:
        devices = [int(devices.split(",")[0])]
    else:
        devices = 1
    out = {k: trainer_kwargs[k] for k in SCORING_KEYS if k in trainer_kwargs}
    return {
        **out,
        "devices": devices,
        "enable_model_summary": False,
        "enable_checkpointing": False,
        "limit_val_batches": 1.0,
    }


class IndexSplitDataModule(LightningDataModule):
    """Training and held-out loaders over index subsets of one map-style dataset.

    Examples:
        >>> dm = IndexSplitDataModule(list(range(10)), [0, 1, 2], [3, 4], batch_size=2)
        >>> [b.tolist() for b in dm.val_dataloader()]
        [[3, 4]]
    """

    def __init__(
        self,
        dataset: Dataset,
        train_indexes: Sequence[int],
        heldout_indexes: Sequence[int],
        batch_size: int = 8,
        num_workers: int = 0,
    ) -> None:
        super().__init__()
        self.dataset = dataset
        self.train_indexes, self.heldout_indexes = list(train_indexes), list(heldout_indexes)
        self.batch_size, self.num_workers = batch_size, num_workers

    def train_dataloader(self) -> DataLoader:
        """Shuffled training part."""
        return DataLoader(
            Subset(self.dataset, self.train_indexes), self.batch_size, shuffle=True, num_workers=self.num_workers
        )

    def val_dataloader(self) -> DataLoader:
        """Held-out part, in order."""
        return DataLoader(Subset(self.dataset, self.heldout_indexes), self.batch_size, num_workers=self.num_workers)


def check_dataset(dataset: Any) -> int:
    """Length of a map-style dataset, or a clear error.

    Examples:
        >>> check_dataset([1, 2, 3])
        3
    """
    if isinstance(dataset, IterableDataset) or not hasattr(dataset, "__getitem__") or not hasattr(dataset, "__len__"):
        raise TypeError(
            f"`dataset` must be a map-style dataset (with __len__ and __getitem__), got {type(dataset).__name__}; "
            "for an iterable pipeline pass datamodule_factory= and num_samples=."
        )
    return len(dataset)


def check_heldout_loader(loaders: Any, fold: int, num_heldout: int) -> None:
    """Refuse a held-out loader that would not visit each of its ``num_heldout`` samples exactly once.

    Raises:
        ValueError: several loaders, ``drop_last``, a sampler that repeats or skips samples, or a
            dataset whose length is not the held-out part's.

    Examples:
        >>> check_heldout_loader(DataLoader(list(range(5)), batch_size=2, drop_last=True), 0, 5)
        Traceback (most recent call last):
        ...
        ValueError: fold 0: the held-out val_dataloader() drops its last incomplete batch (drop_last=True); ...
    """
    where = f"fold {fold}: the held-out val_dataloader()"
    if isinstance(loaders, (list, tuple, dict)):
        if len(loaders) != 1:
            raise ValueError(f"{where} must return one DataLoader, got {len(loaders)}.")
        loaders = next(iter(loaders.values())) if isinstance(loaders, dict) else loaders[0]
    if not isinstance(loaders, DataLoader):
        raise ValueError(f"{where} must return a torch DataLoader, got {type(loaders).__name__}.")
    if isinstance(loaders.dataset, IterableDataset):
        return  # its length cannot be checked up front; the scored indexes are checked after scoring
    batch_sampler = loaders.batch_sampler
    if batch_sampler is not None and type(batch_sampler) is not BatchSampler:
        raise ValueError(
            f"{where} uses a custom batch_sampler ({type(batch_sampler).__name__}); scoring needs every held-out "
            "sample exactly once: use batch_size= with a SequentialSampler."
        )
    if loaders.drop_last:
        raise ValueError(
            f"{where} drops its last incomplete batch (drop_last=True); every held-out sample must be scored: "
            "set drop_last=False."
        )
    sampler = loaders.sampler
    once = isinstance(sampler, SequentialSampler) or (
        isinstance(sampler, RandomSampler) and not sampler.replacement and sampler._num_samples is None
    )
    if not once:
        raise ValueError(
            f"{where} samples with {type(sampler).__name__}, which may repeat or skip samples; scoring needs each "
            "held-out sample exactly once: use shuffle=False (a SequentialSampler)."
        )
    if len(loaders.dataset) != num_heldout:
        raise ValueError(
            f"{where} has {len(loaders.dataset)} samples but the fold holds out {num_heldout}: build it from "
            "heldout_indexes (e.g. Subset(eval_dataset, heldout_indexes))."
        )
