"""Write files so that nothing half-written is ever left: a temporary name beside the target, renamed at the end.

Every writer of the library (evaluation tables and montages, the demo, training checkpoints, weight files)
writes through :func:`replacing`: on success the temporary file is moved onto the target with
:func:`os.replace` (atomic within one file system, so a reader sees the old file or the new one, never a
part); on any error -- a full disk (``ENOSPC``/``EFBIG``), Ctrl-C, SIGTERM turned into
``KeyboardInterrupt`` by the command line -- the temporary file is removed and the target is left as it was.
Volumes are written the same way by :func:`MedFusionLib.bridge.save_volume` (a staging folder, as Slicer's
writers may add a data file).
"""

from __future__ import annotations

import contextlib
import os
from typing import Iterator


def temporary_name(path: str, keep_extension: bool = False) -> str:
    """A temporary file name beside ``path``: ``path.partial`` (``name.partial.png`` with
    ``keep_extension``, for writers that pick the format from the extension)."""
    if keep_extension:
        root, ext = os.path.splitext(path)
        return f"{root}.partial{ext}"
    return f"{path}.partial"


@contextlib.contextmanager
def replacing(path: str, keep_extension: bool = False) -> Iterator[str]:
    """Yield a temporary path to write; on normal exit it replaces ``path``, on any exception it is removed.

    Example::

        with replacing("results.csv") as tmp:
            with open(tmp, "w") as fh:
                fh.write(text)
    """
    path = os.fspath(path)
    tmp = temporary_name(path, keep_extension)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            try:
                os.remove(tmp)
            except OSError:
                pass


def write_text(path: str, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    with replacing(path) as tmp:
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(text)
