"""Progress reporting and cancellation for long calls.

A long call takes ``progress(fraction, message)`` (a callable or None) and ``cancel`` (None, a
:class:`CancelToken`, a :class:`threading.Event`, or a zero-argument callable returning True when the
work should stop). Inside the library both are wrapped in one :class:`Progress` object, which a step
can split into sub-ranges so that nested work still reports a fraction of the whole call.
"""

from __future__ import annotations

import threading
from typing import Callable, Optional, Union

from .errors import FusionCancelled, FusionInputError

ProgressCallback = Callable[[float, str], None]
CancelLike = Union[None, "CancelToken", threading.Event, Callable[[], bool]]


class CancelToken:
    """A thread-safe flag a caller sets to stop a running fusion.

    Examples
    --------
    >>> token = CancelToken()
    >>> token.cancelled
    False
    >>> token.cancel()
    >>> token.cancelled
    True
    """

    def __init__(self) -> None:
        self._event = threading.Event()

    def cancel(self) -> None:
        """Ask the running call to stop at its next check."""
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()


def _cancel_predicate(cancel: CancelLike) -> Callable[[], bool]:
    if cancel is None:
        return lambda: False
    if isinstance(cancel, CancelToken):
        return lambda: cancel.cancelled
    if isinstance(cancel, threading.Event):
        return cancel.is_set
    if callable(cancel):
        return lambda: bool(cancel())
    raise FusionInputError(
        f"cancel must be None, a CancelToken, a threading.Event or a callable returning bool; "
        f"got {type(cancel).__name__}")


class Progress:
    """Reports the progress of one call and checks for cancellation.

    Parameters
    ----------
    callback : callable or None
        Called as ``callback(fraction, message)`` with ``fraction`` in [0, 1] of the whole call.
    cancel : CancelToken, threading.Event, callable or None
        Polled at every :meth:`check` and :meth:`report`; when set, :class:`FusionCancelled` is raised.
    """

    def __init__(self, callback: Optional[ProgressCallback] = None, cancel: CancelLike = None,
                 start: float = 0.0, end: float = 1.0) -> None:
        if callback is not None and not callable(callback):
            raise FusionInputError(
                f"progress must be a callable progress(fraction, message) or None; got {type(callback).__name__}")
        self._callback = callback
        self._is_cancelled = _cancel_predicate(cancel)
        self._start = float(start)
        self._end = float(end)

    @classmethod
    def wrap(cls, progress, cancel: CancelLike = None) -> "Progress":
        """Return ``progress`` if it already is a :class:`Progress`, else wrap callback and cancel."""
        if isinstance(progress, Progress):
            return progress
        return cls(progress, cancel)

    def check(self) -> None:
        """Raise :class:`FusionCancelled` when cancellation was requested."""
        if self._is_cancelled():
            raise FusionCancelled("fusion cancelled by the caller; no output was produced")

    def report(self, fraction: float, message: str = "") -> None:
        """Report ``fraction`` (0..1) of this (sub-)range done, then check for cancellation."""
        self.check()
        if self._callback is not None:
            fraction = min(max(float(fraction), 0.0), 1.0)
            self._callback(self._start + fraction * (self._end - self._start), message)

    def sub(self, start: float, end: float) -> "Progress":
        """A :class:`Progress` covering ``[start, end]`` of this one's range."""
        span = self._end - self._start
        child = Progress.__new__(Progress)
        child._callback = self._callback
        child._is_cancelled = self._is_cancelled
        child._start = self._start + start * span
        child._end = self._start + end * span
        return child
