"""Intensity handling: the one place where inputs are brought to a common [0, 1] scale.

Modalities come in unrelated units (CT in HU, MRI arbitrary, PET in Bq/ml or SUV). Before fusion each
scalar input is mapped linearly from an intensity *window* (lo, hi) to [0, 1] and clipped. By default the
window is the (0.5, 99.5) percentile range of that input, which ignores a few outliers (metal, hot
spots); a caller who knows the ranges (8-bit images: (0, 255)) passes them instead. After fusion the
[0, 1] result is mapped back to the window of the first input (the anatomical reference), so it can be
shown with the reference's window/level.
"""

from __future__ import annotations

import math
from typing import Sequence, Tuple

import numpy as np

from .errors import FusionInputError

DEFAULT_PERCENTILES: Tuple[float, float] = (0.5, 99.5)
# Percentiles are estimated on a regular sub-grid of at most this many samples: exact enough for a
# display window and it keeps the cost constant for large volumes.
_MAX_SAMPLES = 1 << 20
#: Largest finite float32: inputs, windows and outputs must stay within it (fusion runs in float32).
FLOAT32_MAX = float(np.finfo(np.float32).max)

Window = Tuple[float, float]


def _subsample(x: np.ndarray) -> np.ndarray:
    if x.size <= _MAX_SAMPLES:
        return x
    step = int(math.ceil((x.size / _MAX_SAMPLES) ** (1.0 / x.ndim)))
    return x[(slice(None, None, step),) * x.ndim]


def check_percentiles(percentiles: Sequence[float]) -> Window:
    try:
        lo, hi = (float(p) for p in percentiles)
    except (TypeError, ValueError):
        raise FusionInputError(f"percentiles must be a pair (low, high); got {percentiles!r}") from None
    if not 0.0 <= lo < hi <= 100.0:
        raise FusionInputError(f"percentiles must satisfy 0 <= low < high <= 100; got ({lo}, {hi})")
    return lo, hi


def check_window(window, what: str) -> Window:
    try:
        lo, hi = (float(v) for v in window)
    except (TypeError, ValueError):
        raise FusionInputError(f"{what} must be a pair (low, high); got {window!r}") from None
    if not (np.isfinite(lo) and np.isfinite(hi) and hi > lo):
        raise FusionInputError(f"{what} must be finite with high > low; got ({lo}, {hi})")
    if max(abs(lo), abs(hi)) > FLOAT32_MAX or not usable_window(lo, hi):
        raise FusionInputError(
            f"{what} ({lo}, {hi}) cannot be used in float32, in which MedFusion fuses and returns images: "
            f"both ends must lie within +-{FLOAT32_MAX:.4g} and be distinct in float32 (width above "
            f"{1.0 / FLOAT32_MAX:.3g} and above about 1e-7 of their magnitude)")
    return lo, hi


def usable_window(lo: float, hi: float) -> bool:
    """Whether the float32 arithmetic of :func:`normalise` can use ``(lo, hi)``: the ends distinct in
    float32 and 1 / (hi - lo) finite in float32 (else the scaling overflows and 0 x inf gives NaN)."""
    with np.errstate(over="ignore"):
        lo32, hi32 = np.float32(lo), np.float32(hi)
        return bool(np.isfinite(lo32) and np.isfinite(hi32) and hi32 > lo32
                    and np.isfinite(np.float32(1.0 / (float(hi32) - float(lo32)))))


def robust_window(x: np.ndarray, percentiles: Sequence[float] = DEFAULT_PERCENTILES) -> Window:
    """Intensity window (lo, hi) of ``x`` from its percentiles.

    Falls back to (min, max) when the percentiles coincide (or are indistinguishable in float32), and
    to (v, v + max(1, |v| 2**-20)) for a constant image, so the window is never empty in float32.

    Parameters
    ----------
    x : ndarray
        Scalar image or volume.
    percentiles : (float, float)
        Lower and upper percentile in [0, 100].
    """
    lo_p, hi_p = check_percentiles(percentiles)
    sample = _subsample(np.asarray(x))
    if sample.dtype.kind in "iu":
        # numpy interpolates integer percentiles in the input type: x[j] - x[i] overflows for wide
        # int32/int64 ranges and puts the window outside the data. The sample is at most 1 Mi values.
        sample = sample.astype(np.float64)
    lo, hi = (float(v) for v in np.percentile(sample, [lo_p, hi_p]))
    if not usable_window(lo, hi):
        lo, hi = float(sample.min()), float(sample.max())
    if not usable_window(lo, hi):
        # Constant (or, in float32, indistinguishable) values. A width of 1 alone is lost in float
        # rounding above 2**24 (float32) or 2**53 (float64): widen relative to the magnitude too, and
        # downwards near the top of float32's range.
        width = max(1.0, abs(lo) * 2.0 ** -20)
        lo, hi = (lo, lo + width) if lo + width <= FLOAT32_MAX else (lo - width, lo)
    return lo, hi


def normalise(x: np.ndarray, window: Window) -> np.ndarray:
    """Map ``window`` linearly to [0, 1], clip, and return a new float32 array (``x`` is untouched)."""
    lo, hi = window
    out = np.subtract(x, np.float32(lo), dtype=np.float32)   # a new array: x is never written
    out *= np.float32(1.0 / (hi - lo))
    np.clip(out, 0.0, 1.0, out=out)
    return out


def denormalise(y: np.ndarray, window: Window, out: np.ndarray = None) -> np.ndarray:
    """Map [0, 1] back to ``window``: lo + y (hi - lo), as float32."""
    lo, hi = window
    with np.errstate(over="ignore"):
        width = np.float32(hi - lo)
    if np.isfinite(width):
        result = np.multiply(y, width, out=out, dtype=np.float32, casting="unsafe")
        result += np.float32(lo)
        return result
    # A window wider than float32's range (ends near +-3.4e38): hi y + lo (1 - y) cannot overflow.
    result = np.multiply(y, np.float32(hi), out=out, dtype=np.float32, casting="unsafe")
    result += np.multiply(np.subtract(np.float32(1.0), y, dtype=np.float32), np.float32(lo))
    return result
