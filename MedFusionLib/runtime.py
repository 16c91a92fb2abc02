"""Process-wide settings for batch runs: the command line applies them to its own process; a script that
fuses many volumes may call :func:`tune_allocator` once at its start. The library itself (and so the
Slicer module, which shares Slicer's process) never changes them.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

# glibc's mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3


def tune_allocator(mmap_threshold: int = 32 << 20, trim_threshold: int = 1 << 30) -> bool:
    """Let glibc's malloc keep freed blocks of up to ``mmap_threshold`` bytes for reuse.

    By default glibc serves a large block by a fresh ``mmap`` (dynamic threshold, starting at 128 KiB) and
    returns the top of the heap to the system once more than twice that is free there; every new
    temporary of tens of MB is then page-faulted in again. The iterative solvers (CBPDN: several 16 MB
    arrays per iteration, hundreds of iterations) and the networks' activations pay for that on every
    step: ``csr`` on a 256 x 256 pair measured 2.8-4.3 s per call with glibc's defaults and 2.7-2.8 s with
    this setting (docs/benchmarks.md). The cost is that freed memory stays with the process (up to
    ``trim_threshold`` bytes at the top of the heap) until it exits.

    Parameters
    ----------
    mmap_threshold : int
        Blocks at least this large still come from ``mmap`` (and go back to the system when freed).
    trim_threshold : int
        Free bytes at the top of the heap kept before it is trimmed.

    Returns
    -------
    bool
        Whether both settings were applied (False off glibc, e.g. on macOS, Windows or musl).
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    return bool(mallopt(_M_TRIM_THRESHOLD, int(trim_threshold))) and bool(mallopt(_M_MMAP_THRESHOLD, int(mmap_threshold)))


class Terminated(KeyboardInterrupt):
    """SIGTERM received: handled like Ctrl-C (every writer removes its temporary files), exit status 143."""


def _raise_terminated(signum, frame):
    raise Terminated(f"terminated by signal {signum}")


def terminate_as_interrupt():
    """Make SIGTERM raise :class:`Terminated` (a ``KeyboardInterrupt``) in this process's main thread.

    ``kill`` (or a batch scheduler stopping a job) then unwinds the stack like Ctrl-C, so temporary files
    are removed and nothing half-written is left, instead of the process dying where it stands. Only the
    command line and the batch script call it, for their own process. Returns the previous handler (None
    when not called from the main thread, where Python cannot set handlers)."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        return None
    return signal.signal(signal.SIGTERM, _raise_terminated)
