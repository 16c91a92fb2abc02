"""Shared machinery of the metrics: input validation, slice stacks, block processing, shared filters.

Every public metric calls :func:`_prepare` (validate fused image and sources, check the slices hold the
metric's windows, return float64 stacks F (S, H, W) and X (N, S, H, W)), runs its per-slice kernel through
:func:`_per_slice` (vectorised over blocks of slices of at most ``_BLOCK_PIXELS`` pixels per image) and
averages the defined slice values with :func:`_reduce`. :func:`_filter2` and :func:`_separable` are the
'same'-size 2-D filters (MATLAB's ``filter2`` / ``conv2`` with zero padding by default) several families use.
Nothing here is public: :mod:`MedFusionLib.metrics` is the interface.
"""

from __future__ import annotations

from typing import Callable, List, Sequence

import numpy as np
from scipy import ndimage

from ..errors import FusionInputError
from .table import _MIN_SIZE


# --------------------------------------------------------------------------------------------------
# Input validation and slice stacks
# --------------------------------------------------------------------------------------------------

def _as_real_array(x, what: str) -> np.ndarray:
    try:
        a = np.asarray(x)
    except Exception as exc:  # ragged nested lists and the like
        raise FusionInputError(f"{what} must be a numeric array; could not convert it ({exc})") from None
    if a.dtype == bool or not (np.issubdtype(a.dtype, np.integer) or np.issubdtype(a.dtype, np.floating)):
        raise FusionInputError(f"{what} must hold real numbers (integer or float dtype); got dtype {a.dtype}")
    return a


def _check_axis(axis, ndim: int) -> int:
    if isinstance(axis, bool) or not isinstance(axis, (int, np.integer)):
        raise FusionInputError(f"axis must be an integer; got {axis!r}")
    if ndim == 3 and not -3 <= axis <= 2:
        raise FusionInputError(f"axis must be in -3..2 for a 3-D volume; got {axis}")
    return int(axis) % 3 if ndim == 3 else 0


def _slices(a: np.ndarray, axis: int) -> np.ndarray:
    """(S, H, W) float64 view/copy of a 2-D image (S = 1) or a 3-D volume sliced along ``axis``."""
    a = a.astype(np.float64, copy=False)
    return a[None] if a.ndim == 2 else np.moveaxis(a, axis, 0)


def _prepare(fused, sources, axis, names: Sequence[str], need_sources: bool = True):
    """Validate the inputs for the metrics ``names``; return F (S, H, W) and X (N, S, H, W), float64.

    The returned arrays may be views of the inputs: callers never write into them.
    """
    f = _as_real_array(fused, "fused")
    if f.ndim not in (2, 3):
        raise FusionInputError(f"fused must be a 2-D image (H, W) or a 3-D volume (K, J, I); "
                               f"got {f.ndim}-D shape {f.shape}")
    srcs: List[np.ndarray] = []
    if need_sources:
        if sources is None or isinstance(sources, (str, bytes)):
            raise FusionInputError("sources must be a sequence of at least 2 arrays (A, B, ...)")
        if isinstance(sources, np.ndarray):
            if sources.ndim != f.ndim + 1:
                raise FusionInputError(
                    f"sources given as one array must stack the sources on axis 0, shape (N, *{f.shape}); "
                    f"got shape {sources.shape}")
            items = list(sources)
        else:
            try:
                items = list(sources)
            except TypeError:
                raise FusionInputError("sources must be a sequence of at least 2 arrays (A, B, ...); "
                                       f"got {type(sources).__name__}") from None
        if len(items) < 2:
            raise FusionInputError(f"need at least 2 source images; got {len(items)}")
        for k, s in enumerate(items):
            a = _as_real_array(s, f"sources[{k}]")
            if a.shape != f.shape:
                raise FusionInputError(f"sources[{k}] has shape {a.shape}, but fused has shape {f.shape}: "
                                       "all images must have the same shape")
            srcs.append(a)
    ax = _check_axis(axis, f.ndim)
    for k, a in enumerate([f] + srcs):
        if not np.all(np.isfinite(a)):
            what = "fused" if k == 0 else f"sources[{k - 1}]"
            raise FusionInputError(f"{what} contains NaN or infinite values; only finite values are allowed")
    F = _slices(f, ax)
    side = min(F.shape[1:])
    need = max((_MIN_SIZE[n] for n in names), default=1)
    if side < need:
        small = ", ".join(f"{n} >= {_MIN_SIZE[n]}" for n in names if _MIN_SIZE[n] > side)
        raise FusionInputError(
            f"slices of shape {F.shape[1:]} are too small for the windows of {small} pixels per side"
            + (" (evaluate_all: pass metrics=... without these)" if len(names) > 1 else ""))
    X = np.stack([_slices(a, ax) for a in srcs]) if srcs else np.empty((0,) + F.shape)
    return F, X


# Slices are processed in blocks of at most this many pixels per image: vectorised within a block, with
# memory bounded for large volumes (the metrics make a few dozen temporaries of the block's size).
_BLOCK_PIXELS = 1 << 20


def _per_slice(kernel: Callable[..., np.ndarray], F: np.ndarray, X: np.ndarray, **kw) -> np.ndarray:
    step = max(1, _BLOCK_PIXELS // (F.shape[1] * F.shape[2]))
    if F.shape[0] <= step:
        return kernel(F, X, **kw)
    return np.concatenate([kernel(F[k:k + step], X[:, k:k + step], **kw) for k in range(0, F.shape[0], step)])


def _reduce(per_slice: np.ndarray) -> float:
    """Mean over the slices on which the metric is defined; NaN if it is defined on none."""
    v = np.asarray(per_slice, dtype=np.float64).ravel()
    ok = ~np.isnan(v)
    return float(v[ok].mean()) if ok.any() else float("nan")


def _fused_only(kernel: Callable[[np.ndarray], np.ndarray]) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """The (F, X) per-slice kernel of a metric of the fused image alone (EN, SD, SF, AG): X is not used."""
    return lambda F, X: kernel(F)


def _filter2(x: np.ndarray, kernel: np.ndarray, mode: str = "constant", convolve: bool = False) -> np.ndarray:
    """2-D correlation (or convolution) of every slice of ``x`` (..., H, W), 'same' size."""
    k = kernel.reshape((1,) * (x.ndim - 2) + kernel.shape)
    op = ndimage.convolve if convolve else ndimage.correlate
    return op(x, k, mode=mode, cval=0.0)


def _separable(x: np.ndarray, taps: np.ndarray, mode: str = "constant") -> np.ndarray:
    """Correlate the last two axes with the 1-D ``taps`` ('same' size, zero padding by default)."""
    y = ndimage.correlate1d(x, taps, axis=-1, mode=mode, cval=0.0)
    return ndimage.correlate1d(y, taps, axis=-2, mode=mode, cval=0.0)
