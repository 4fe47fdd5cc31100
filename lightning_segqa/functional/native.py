"""A C kernel for the softmin and CIL sums on CPU, built with the system compiler (``compile=True``).

:func:`label_sums` gives the same per-image sums as the inductor kernel
:func:`lightning_segqa.functional.fused.label_sums` for contiguous float32 inputs on CPU, in
0.65-0.8 of its time (``benchmarks/scoring.py``, ``docs/performance.md``). The probability each
pixel needs sits in the class plane of its label, which changes from pixel to pixel; the C loop
prefetches the cache lines of the pixels further on, so those loads overlap (inductor cannot
emit a prefetch), and it is one loop with vectorized float lanes where inductor makes several.
Sums are gathered in float32 lanes and added into float64 every 1024 pixels.
Source: ``label_sums.c`` beside this module.

The library is compiled the first time it is needed, once per process (about 0.2 s), with the
C compiler named by ``$CC`` or else the first of ``cc``, ``gcc``, ``clang`` on the ``PATH``, and
loaded through :mod:`ctypes` (which releases the GIL). It needs OpenMP (``-fopenmp``): on
Linux with gcc or clang; macOS's own clang has none (point ``$CC`` at a compiler that has it).
It runs with ``torch.get_num_threads()`` threads on the OpenMP runtime that ``libgomp.so.1``
names: the one torch bundles under that name in its Linux x86-64 wheels, else the system's,
as for inductor's kernels. Where it cannot be built (no compiler, no OpenMP, Windows) or
``LIGHTNING_SEGQA_NATIVE=0`` is set, :func:`label_sums` returns None and the inductor kernel
serves instead; :func:`status` says why.
"""

from __future__ import annotations

import ctypes
import logging
import os
import shlex
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import Tensor

SOURCE = Path(__file__).with_name("label_sums.c")
ENV_SWITCH = "LIGHTNING_SEGQA_NATIVE"  # "0" turns the C kernel off
MIN_PART_PIXELS = 1 << 14  # an image is split across threads only into parts this large
# Tried in order; each set drops what an older or non-x86 compiler may refuse.
_FLAG_SETS = (  # the kernel is built for this process's machine only: -march=native is safe
    ["-O3", "-march=native", "-mprefer-vector-width=512"],
    ["-O3", "-march=native"],
    ["-O3"],
)
_COMMON = ["-fno-math-errno", "-fno-trapping-math", "-fopenmp", "-shared", "-fPIC", "-x", "c"]
_LOCK = threading.Lock()
_STATE: dict[str, object] = {"fn": None, "error": None}
_log = logging.getLogger(__name__)


def _compiler() -> list[str] | None:
    """The compiler command: ``$CC`` (which may carry a wrapper, e.g. ``ccache gcc``) or the first found."""
    try:
        named = shlex.split(os.environ.get("CC", ""))
    except ValueError as err:  # unbalanced quotes
        raise OSError(f"$CC={os.environ['CC']!r} cannot be parsed: {err}") from err
    if named:
        return named
    found = next((path for path in map(shutil.which, ("cc", "gcc", "clang")) if path), None)
    return None if found is None else [found]


def _build(extra: Sequence[str] = ()) -> ctypes._CFuncPtr:
    """Compile ``label_sums.c`` into a temporary directory and load it (the file is removed after).

    ``extra`` compiler arguments serve the benchmarks (``-DAHEAD=0``: no prefetch).
    """
    if os.name == "nt":
        raise OSError("the C kernel is built on Linux and macOS only")
    cc = _compiler()
    if cc is None:
        raise OSError("no C compiler found (set $CC, or install gcc or clang)")
    errors, fn = [], None
    with tempfile.TemporaryDirectory(prefix="segqa-native-") as tmp:
        lib = Path(tmp) / "label_sums.so"
        for flags in _FLAG_SETS:
            cmd = [*cc, *flags, *_COMMON, *extra, str(SOURCE), "-o", str(lib)]
            try:
                run = subprocess.run(
                    cmd, capture_output=True, text=True, timeout=60, check=False, stdin=subprocess.DEVNULL
                )
            except (OSError, subprocess.SubprocessError) as err:
                errors.append(f"{cc[0]}: {err}")
                break  # the compiler itself does not run: other flags will not help
            if run.returncode == 0:
                fn = ctypes.CDLL(str(lib)).segqa_label_sums_f32  # mapped: the file may go
                break
            lines = run.stderr.strip().splitlines()
            said = [ln.strip() for ln in lines if "error" in ln.lower()] or lines[-1:] or [f"exit {run.returncode}"]
            errors.append(f"{' '.join(flags)}: {said[0]}")
    if fn is None:
        raise OSError("compiling the C kernel failed: " + " | ".join(errors))
    fn.restype = None
    fn.argtypes = [ctypes.c_void_p] * 3 + [ctypes.c_int64] * 4 + [ctypes.c_float] + [ctypes.c_void_p] * 2
    fn.argtypes += [ctypes.c_int]
    return fn


def _kernel() -> ctypes._CFuncPtr | None:
    if os.environ.get(ENV_SWITCH, "1").strip().lower() in ("0", "false", "no", "off"):
        return None
    if _STATE["fn"] is None and _STATE["error"] is None:
        with _LOCK:
            if _STATE["fn"] is None and _STATE["error"] is None:
                try:
                    _STATE["fn"] = _build()
                except Exception as err:  # noqa: BLE001 - whatever fails, inductor serves
                    _STATE["error"] = f"{type(err).__name__}: {err}"[:500]
                    _log.info("lightning_segqa: C kernel unavailable (%s); inductor serves.", _STATE["error"])
    return _STATE["fn"]  # type: ignore[return-value]


def _reset_lock_in_child() -> None:
    # a fork while another thread builds would leave the child waiting on a lock nobody holds
    global _LOCK
    _LOCK = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_lock_in_child)


def status() -> str:
    """Whether the C kernel is in use in this process, and if not, why.

    Returns:
        ``"loaded"``, ``"not built yet"``, ``"off (LIGHTNING_SEGQA_NATIVE=0)"`` or the build error.

    Examples:
        >>> status() in ("loaded", "not built yet") or status().startswith(("off", "OSError"))
        True
    """
    if os.environ.get(ENV_SWITCH, "1").strip().lower() in ("0", "false", "no", "off"):
        return f"off ({ENV_SWITCH}=0)"
    if _STATE["fn"] is not None:
        return "loaded"
    return str(_STATE["error"]) if _STATE["error"] is not None else "not built yet"


def label_sums(flat: Tensor, target: Tensor, valid: Tensor | None, neg_inv_t: float) -> tuple[Tensor, ...] | None:
    """Per image ``sum w*s``, ``sum w``, ``sum s`` (``w = exp(neg_inv_t * s)``) and an out-of-range flag.

    The same contract as the kernel behind :func:`~lightning_segqa.functional.fused.label_sums`;
    class ids outside ``[0, K)`` are clamped before the load and flagged, never read past.

    Args:
        flat: ``(B, K, P)`` float32 probabilities on CPU.
        target: ``(B, P)`` int64 class ids.
        valid: ``(B, P)`` bool, or None when every pixel counts.
        neg_inv_t: ``-1 / temperature``.

    Returns:
        ``(num, den, total)`` float32 ``(B,)`` and ``outside`` bool ``(B,)``; None where the C
        kernel does not apply (another device or dtype, non-contiguous tensors) or is unavailable.

    Examples:
        >>> probs = torch.tensor([[[0.9, 0.2], [0.1, 0.8]]])  # B=1, K=2, P=2
        >>> out = label_sums(probs, torch.tensor([[0, 0]]), None, -10.0)
        >>> out is None or torch.allclose(out[0] / out[1], torch.tensor([0.2006]), atol=1e-4)
        True
    """
    b, k, npix = flat.shape if flat.dim() == 3 else (0, 0, 0)
    if not (
        flat.device.type == "cpu"
        and flat.dtype == torch.float32
        and flat.dim() == 3
        and flat.numel() > 0
        and flat.is_contiguous()
        and all(
            x.device == flat.device and x.dtype == dtype and x.shape == (b, npix) and x.is_contiguous()
            for x, dtype in ((target, torch.int64), (valid, torch.bool))
            if x is not None
        )
    ):  # the C code reads raw host pointers: anything else goes to the checked paths
        return None
    fn = _kernel()
    if fn is None:
        return None
    threads = max(1, torch.get_num_threads())
    # about four jobs per thread where the images are few and large, so no thread idles long
    parts = max(1, min(-(-4 * threads // b), npix // MIN_PART_PIXELS))
    threads = min(threads, b * parts)
    sums = torch.empty(b * parts, 3, dtype=torch.float64)
    labels = torch.empty(b * parts, 2, dtype=torch.int64)
    fn(
        flat.data_ptr(),
        target.data_ptr(),
        None if valid is None else valid.data_ptr(),
        b,
        k,
        npix,
        parts,
        neg_inv_t,
        sums.data_ptr(),
        labels.data_ptr(),
        threads,
    )
    sums = sums.view(b, parts, 3).sum(1).to(flat.dtype)
    labels = labels.view(b, parts, 2)
    outside = (labels[..., 0].amin(1) < 0) | (labels[..., 1].amax(1) >= k)
    return sums[:, 0], sums[:, 1], sums[:, 2], outside
