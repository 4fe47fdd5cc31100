"""One atomic write for every file the package writes: whole files, no leftovers, readable permissions."""

import json
import os
import threading

import pytest
import torch

from lightning_segqa import writing
from lightning_segqa.experiments.benchmark_cache import _save_cache
from lightning_segqa.folds import RECORD_NAME, save_or_check_record
from lightning_segqa.writing import atomic_write, torch_bytes


def current_umask() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return umask


def test_concurrent_writers_of_one_path_leave_one_whole_file(tmp_path):
    target = tmp_path / "record.json"
    texts = [json.dumps({"writer": i, "pad": "x" * 200_000}) for i in range(8)]
    threads = [threading.Thread(target=atomic_write, args=(target, t)) for t in texts]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert target.read_text() in texts  # one writer's text, whole
    assert [p.name for p in tmp_path.iterdir()] == ["record.json"]  # no temporary file left
    assert target.stat().st_mode & 0o777 == 0o666 & ~current_umask()


def test_refuses_what_is_not_text_or_bytes_and_writes_nothing(tmp_path):
    with pytest.raises(TypeError, match="`data` must be str or bytes, got dict"):
        atomic_write(tmp_path / "a" / "x.json", {"a": 1})  # type: ignore[arg-type]
    assert not (tmp_path / "a").exists()


def test_failed_replace_keeps_the_old_file_and_no_temporary(tmp_path, monkeypatch):
    target = tmp_path / "x.txt"
    atomic_write(str(target), "old")  # a str path works as well as a Path

    def refuse(*args):
        raise OSError("disk full")

    monkeypatch.setattr(writing.os, "replace", refuse)
    with pytest.raises(OSError, match="disk full"):
        atomic_write(target, b"new")
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["x.txt"]


def test_torch_bytes_round_trip_equals_torch_save(tmp_path):
    obj = {"x": torch.arange(5), "y": torch.rand(2, 3)}
    torch.save(obj, tmp_path / "direct.pt")
    atomic_write(tmp_path / "atomic.pt", torch_bytes(obj))
    direct = torch.load(tmp_path / "direct.pt", weights_only=True)
    atomic = torch.load(tmp_path / "atomic.pt", weights_only=True)
    assert direct.keys() == atomic.keys() and all(torch.equal(direct[k], atomic[k]) for k in direct)


def test_fold_record_failed_write_leaves_no_temporary(tmp_path, monkeypatch):
    monkeypatch.setattr(writing.os, "replace", lambda *a: (_ for _ in ()).throw(OSError("disk full")))
    with pytest.raises(OSError, match="disk full"):
        save_or_check_record(tmp_path, 10, 2, 0, {"model": "a"}, {})
    assert list(tmp_path.iterdir()) == []  # neither a record nor a temporary file


def test_fold_record_and_benchmark_cache_are_readable_files(tmp_path):
    folds = save_or_check_record(tmp_path, 10, 2, 0, {"model": "a"}, {})
    record = tmp_path / RECORD_NAME
    assert json.loads(record.read_text())["folds"] == folds
    _save_cache(tmp_path / "cache" / "run.pt", {"masks": torch.zeros(2, 3, dtype=torch.uint8)})
    entry = torch.load(tmp_path / "cache" / "run.pt", weights_only=True)
    assert torch.equal(entry["masks"], torch.zeros(2, 3, dtype=torch.uint8))
    mode = 0o666 & ~current_umask()
    assert {p.stat().st_mode & 0o777 for p in (record, tmp_path / "cache" / "run.pt")} == {mode}
