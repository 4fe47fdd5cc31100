"""Writing files: one atomic write (never a broken file), and a writer thread that keeps training going.

Every file the package writes (reports, logger fallbacks, cross-validation records and held-out
states, the benchmark's cache and figures) goes through :func:`atomic_write`.
"""

from __future__ import annotations

import io
import os
import tempfile
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any


def _file_mode() -> int:
    """Permissions of a new file under the process's umask (``0o644`` under the usual ``022``)."""
    if hasattr(os, "umask"):
        try:  # Linux: read the umask without changing it (os.umask would race other threads)
            for line in Path("/proc/self/status").read_text().splitlines():
                if line.startswith("Umask:"):
                    return 0o666 & ~int(line.split()[1], 8)
        except (OSError, ValueError):
            pass
    return 0o644


_FILE_MODE = _file_mode()


def atomic_write(path: str | os.PathLike, data: str | bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file and ``os.replace``: never a broken file.

    The temporary file has a unique name in the same folder, so several processes may write the
    same path at once (the last one wins, whole). The file gets the permissions of any other new
    file (``0o644`` under the usual umask), not the owner-only ``0o600`` of a temporary file.
    Missing parent folders are created.

    Args:
        path: where the file goes.
        data: text (written as UTF-8; a lone surrogate, as ``os.fsdecode`` makes of an undecodable
            file name, as a backslash escape) or bytes.

    Raises:
        TypeError: ``data`` is neither ``str`` nor ``bytes``.

    Examples:
        >>> target = Path(tempfile.mkdtemp()) / "sub" / "a.txt"
        >>> atomic_write(target, "hello"); target.read_text()
        'hello'
    """
    if not isinstance(data, (str, bytes, bytearray)):
        raise TypeError(f"`data` must be str or bytes, got {type(data).__name__}; serialise it first.")
    path = Path(path)
    raw = data.encode("utf-8", errors="backslashreplace") if isinstance(data, str) else bytes(data)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(raw)
        os.chmod(tmp, _FILE_MODE)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def torch_bytes(obj: Any) -> bytes:
    """What ``torch.save(obj, path)`` would write, as bytes for :func:`atomic_write`.

    Examples:
        >>> import torch
        >>> target = Path(tempfile.mkdtemp()) / "state.pt"
        >>> atomic_write(target, torch_bytes({"x": torch.arange(3)}))
        >>> torch.load(target, weights_only=True)["x"].tolist()
        [0, 1, 2]
    """
    import torch

    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


_WRITER: ThreadPoolExecutor | None = None
_PENDING: list[Future] = []
_WRITER_LOCK = threading.Lock()


def _forget_writer_after_fork() -> None:
    """A forked child has no writer thread: start afresh (the parent's queue stays the parent's)."""
    global _WRITER, _PENDING, _WRITER_LOCK
    _WRITER, _PENDING, _WRITER_LOCK = None, [], threading.Lock()


if hasattr(os, "register_at_fork"):  # POSIX; DDP "fork" strategies and notebooks fork after a publish
    os.register_at_fork(after_in_child=_forget_writer_after_fork)


def write_in_background(path: Path, data: str | bytes | Callable[[], str | bytes]) -> None:
    """Queue :func:`atomic_write` of ``data`` (or of what ``data()`` returns) on a writer thread.

    One thread writes in submission order, so the training loop never waits on a slow or
    network disk. :func:`wait_for_writes` blocks until everything queued is on disk and
    re-raises a failed write; queued writes also finish when the interpreter exits.

    Examples:
        >>> target = Path(tempfile.mkdtemp()) / "late.txt"
        >>> write_in_background(target, lambda: "written on the writer thread")
        >>> wait_for_writes(); target.read_text()
        'written on the writer thread'
    """

    def job() -> None:
        atomic_write(path, data() if callable(data) else data)

    run_in_background(job)


def run_in_background(job: Callable[[], None]) -> None:
    """Queue ``job`` on the writer thread, after everything queued before it (e.g. an upload of written files).

    :func:`wait_for_writes` waits for it and re-raises its failure like a failed write.

    Raises:
        TypeError: ``job`` is not callable.

    Examples:
        >>> done = []
        >>> run_in_background(lambda: done.append(True))
        >>> wait_for_writes(); done
        [True]
    """
    if not callable(job):
        raise TypeError(f"`job` must be callable with no arguments, got {type(job).__name__}.")
    global _WRITER
    with _WRITER_LOCK:
        if _WRITER is None:
            _WRITER = ThreadPoolExecutor(max_workers=1, thread_name_prefix="segqa-writer")
        _PENDING.append(_WRITER.submit(job))


def wait_for_writes() -> None:
    """Block until every :func:`write_in_background` write is done; re-raise the first failure.

    Examples:
        >>> wait_for_writes()  # nothing queued: returns at once
    """
    with _WRITER_LOCK:
        pending = list(_PENDING)
        _PENDING.clear()
    errors = [err for err in (fut.exception() for fut in pending) if err is not None]
    if errors:
        raise OSError(f"{len(errors)} background report write(s) failed; first: {errors[0]!r}") from errors[0]
