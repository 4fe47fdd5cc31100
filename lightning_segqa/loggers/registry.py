"""The logger-class -> adapter-class registry (:data:`ADAPTERS`) and the functions that dispatch on it."""

from __future__ import annotations

from collections.abc import Sequence

from lightning.fabric import loggers as _fabric
from lightning.fabric.loggers import Logger
from lightning.pytorch.loggers import MLFlowLogger, WandbLogger
from lightning.pytorch.loggers.logger import DummyLogger

from lightning_segqa.loggers.base import LoggerAdapter
from lightning_segqa.loggers.files import CSVAdapter, FileAdapter, NullAdapter
from lightning_segqa.loggers.mlflow_adapter import MLFlowAdapter
from lightning_segqa.loggers.tensorboard_adapter import TensorBoardAdapter
from lightning_segqa.loggers.wandb_adapter import WandbAdapter

#: Logger class -> adapter class; the nearest registered base class wins. Extend it freely.
ADAPTERS: dict[type, type[LoggerAdapter]] = {
    _fabric.TensorBoardLogger: TensorBoardAdapter,  # base of lightning.pytorch's TensorBoardLogger
    WandbLogger: WandbAdapter,
    MLFlowLogger: MLFlowAdapter,
    _fabric.CSVLogger: CSVAdapter,  # base of lightning.pytorch's CSVLogger
    DummyLogger: NullAdapter,
}


def adapter_class_for(logger_cls: type) -> type[LoggerAdapter]:
    """Return the adapter class for a logger class (see :data:`ADAPTERS`), else ``FileAdapter``.

    Examples:
        >>> from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger
        >>> adapter_class_for(TensorBoardLogger).__name__, adapter_class_for(CSVLogger).__name__
        ('TensorBoardAdapter', 'CSVAdapter')

    """
    if not isinstance(logger_cls, type):
        raise TypeError(f"`logger_cls` must be a class, got {type(logger_cls).__name__}")
    return next((ADAPTERS[c] for c in logger_cls.__mro__ if c in ADAPTERS), FileAdapter)


def adapter_for(logger: Logger) -> LoggerAdapter:
    """Wrap ``logger`` in the adapter registered for its class.

    Examples:
        >>> from lightning.pytorch.loggers.logger import DummyLogger
        >>> type(adapter_for(DummyLogger())).__name__
        'NullAdapter'

    """
    if not isinstance(logger, Logger):
        raise TypeError(f"`logger` must be a Lightning Logger, got {type(logger).__name__}")
    return adapter_class_for(type(logger))(logger)


def adapters_for(loggers: Sequence[Logger]) -> list[LoggerAdapter]:
    """One adapter per logger, e.g. ``adapters_for(trainer.loggers)``.

    Examples:
        >>> from lightning.pytorch.loggers.logger import DummyLogger
        >>> [type(a).__name__ for a in adapters_for([DummyLogger()])]
        ['NullAdapter']

    """
    if isinstance(loggers, (Logger, str)) or not isinstance(loggers, Sequence):
        raise TypeError(f"`loggers` must be a sequence of Loggers, got {type(loggers).__name__}")
    return [adapter_for(lg) for lg in loggers]
