"""One small adapter per Lightning logger (no common image API) for suspects, tables and figures.

:func:`adapter_for` looks the logger's nearest registered class up in :data:`ADAPTERS`. tensorboard,
wandb and mlflow are never imported here: the loggers import them when creating their experiment.

Layout: :mod:`~lightning_segqa.loggers.base` (the abstract :class:`LoggerAdapter` and shared helpers),
:mod:`~lightning_segqa.loggers.files` (file, CSV and null adapters), one module per tracking service
(``tensorboard_adapter``, ``wandb_adapter``, ``mlflow_adapter``) and :mod:`~lightning_segqa.loggers.registry`.
"""

from __future__ import annotations

from lightning_segqa.loggers.base import LoggerAdapter
from lightning_segqa.loggers.files import CSVAdapter, FileAdapter, NullAdapter
from lightning_segqa.loggers.mlflow_adapter import MLFlowAdapter
from lightning_segqa.loggers.registry import ADAPTERS, adapter_class_for, adapter_for, adapters_for
from lightning_segqa.loggers.tensorboard_adapter import TensorBoardAdapter
from lightning_segqa.loggers.wandb_adapter import WandbAdapter

__all__ = [
    "ADAPTERS",
    "CSVAdapter",
    "FileAdapter",
    "LoggerAdapter",
    "MLFlowAdapter",
    "NullAdapter",
    "TensorBoardAdapter",
    "WandbAdapter",
    "adapter_class_for",
    "adapter_for",
    "adapters_for",
]
