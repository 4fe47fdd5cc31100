"""Every logger adapter checks its arguments in one place before its own logging runs."""

import numpy as np
import pytest
import torch
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger
from lightning.pytorch.loggers.logger import DummyLogger

from lightning_segqa.loggers import adapter_for
from lightning_segqa.loggers.base import LoggerAdapter


class Recording(LoggerAdapter):
    """Implements only the private hooks and records what reaches them."""

    def __init__(self, logger):
        super().__init__(logger)
        self.calls = []

    def _log_suspects(self, key, suspects, step, class_names, palette, ignore_index):
        self.calls.append(("suspects", key, suspects, step))

    def _log_table(self, key, columns, data, step):
        self.calls.append(("table", key, columns, data, step))

    def _log_figure(self, key, figure, step):
        self.calls.append(("figure", key, figure, step))


def test_hooks_get_checked_plain_values_and_no_empty_suspects():
    adapter = Recording(DummyLogger())
    adapter.log_table("t", ("a", "b"), [[torch.tensor(0.5), np.int64(3)]], np.int64(2))
    adapter.log_suspects("s", [], 4, None, None, None)  # nothing to log: the hook is not called
    adapter.log_figure("f", "fig", 5)
    assert adapter.calls == [("table", "t", ["a", "b"], [[0.5, 3]], 2), ("figure", "f", "fig", 5)]
    assert type(adapter.calls[0][3][0][1]) is int  # a numpy value became plain Python


@pytest.mark.parametrize("make", [lambda p: Recording(DummyLogger()), lambda p: adapter_for(CSVLogger(p)),
                                  lambda p: adapter_for(TensorBoardLogger(p))])  # fmt: skip
def test_every_adapter_refuses_the_same_bad_arguments_before_logging(tmp_path, make):
    adapter = make(tmp_path)
    with pytest.raises(TypeError, match="`step` must be a non-negative int, got -1"):
        adapter.log_figure("f", None, -1)
    with pytest.raises(TypeError, match="`suspects` must be a sequence of SuspectImage, got items of type"):
        adapter.log_suspects("s", [{"index": 1}], 0, None, None, None)
    with pytest.raises(ValueError, match=r"`rows\[0\]` must have 2 values, got 1"):
        adapter.log_table("t", ["a", "b"], [[1]], 0)
    assert getattr(adapter, "calls", []) == [] and not any(tmp_path.rglob("*.csv"))
