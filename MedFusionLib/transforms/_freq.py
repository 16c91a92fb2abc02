"""Frequency-domain filter banks shared by the NSST and the NSCT.

Both transforms are nonsubsampled: every band has the image's size, and each band is the image filtered
by one zero-phase (real, even) frequency response. A bank is a list of analysis responses A_k and
synthesis responses S_k on the ``rfft2`` grid of the image with sum_k A_k S_k = 1 at every frequency,
so that ``x = sum_k IDFT(S_k DFT(band_k))`` exactly (perfect reconstruction up to float rounding).
Filtering is circular (the image is treated as periodic), which makes the transforms exactly
shift-invariant under circular shifts.
"""

from __future__ import annotations

import os
from typing import List, Sequence, Tuple

import numpy as np
from scipy import fft as sfft

_WORKERS = max(1, min(4, os.cpu_count() or 1))


def frequency_grid(shape: Tuple[int, int]) -> Tuple[np.ndarray, np.ndarray]:
    """Angular frequencies (radians/sample, in [-pi, pi)) of the ``rfft2`` grid of an (H, W) image:
    ``w1`` along the rows (axis -2, shape (H, 1)) and ``w2`` along the columns (axis -1, (1, W//2+1))."""
    h, w = shape
    w1 = 2 * np.pi * np.fft.fftfreq(h)[:, None]
    w2 = 2 * np.pi * np.fft.rfftfreq(w)[None, :]
    return w1, w2


def meyer_step(t: np.ndarray) -> np.ndarray:
    """Meyer's auxiliary function nu: 0 for t <= 0, 1 for t >= 1, nu(t) + nu(1 - t) = 1, C^3 smooth."""
    t = np.clip(t, 0.0, 1.0)
    return t ** 4 * (35 - 84 * t + 70 * t ** 2 - 20 * t ** 3)


def forward(x: np.ndarray) -> np.ndarray:
    """``rfft2`` over the last two axes (float32 stays complex64)."""
    return sfft.rfft2(x, axes=(-2, -1), workers=_WORKERS)


def inverse(xf: np.ndarray, shape: Tuple[int, int]) -> np.ndarray:
    """Inverse of :func:`forward` to real images of spatial ``shape``."""
    return sfft.irfft2(xf, s=shape, axes=(-2, -1), workers=_WORKERS)


def as_float(x: np.ndarray) -> np.ndarray:
    """float32 and float64 stay as they are; anything else becomes float32."""
    x = np.asarray(x)
    return x if x.dtype in (np.float32, np.float64) else x.astype(np.float32)


def check_image_batch(x: np.ndarray, name: str) -> None:
    if x.ndim < 2 or min(x.shape[-2:]) < 4:
        raise ValueError(f"{name}: x must have shape (..., H, W) with H, W >= 4; got {x.shape}")


def apply_bank(xf: np.ndarray, responses: Sequence[np.ndarray], shape, stack_axis: bool = True) -> np.ndarray:
    """Filter the spectrum ``xf`` (..., H, Wr) with each real response and return the bands
    (..., K, H, W) (``stack_axis``) in the dtype of the input."""
    real = np.float32 if xf.dtype == np.complex64 else np.float64
    out = np.empty(xf.shape[:-2] + (len(responses),) + tuple(shape), dtype=real)
    for k, r in enumerate(responses):
        out[..., k, :, :] = inverse(xf * r.astype(real, copy=False), shape)
    return out


def synthesise(bands: np.ndarray, responses: Sequence[np.ndarray]) -> np.ndarray:
    """sum_k S_k DFT(bands[..., k, :, :]) as a spectrum (..., H, Wr)."""
    real = bands.dtype
    total = None
    for k, r in enumerate(responses):
        term = forward(bands[..., k, :, :]) * r.astype(real, copy=False)
        total = term if total is None else total.__iadd__(term)
    return total


def pseudo_angle(w1: np.ndarray, w2: np.ndarray) -> np.ndarray:
    """Shear parameter of every frequency on a continuous scale p in [-1, 3) (period 4).

    In the cone |w2| <= |w1| ("horizontal" cone of the row frequency) p = w2 / w1, the shear slope in
    [-1, 1]; in the other cone p = 2 - w1 / w2 in (1, 3). p is the same for w and -w (real filters),
    equispaced in slope (as shearlets are) and C^1 across the cone seams. p(0) = 0 by convention.
    """
    a1, a2 = np.broadcast_arrays(w1, w2)
    p = np.zeros(a1.shape, dtype=np.float64)
    horizontal = np.abs(a2) <= np.abs(a1)
    nonzero = (a1 != 0) | (a2 != 0)
    h = horizontal & nonzero
    v = ~horizontal & nonzero
    p[h] = a2[h] / a1[h]
    p[v] = 2.0 - a1[v] / a2[v]
    return p


def angular_windows(p: np.ndarray, n: int, start: float = None) -> List[np.ndarray]:
    """``n`` smooth windows w_l(p) on the period-4 pseudo-angle with sum_l w_l^2 = 1 everywhere.

    Window l covers [start + l h, start + (l + 1) h], h = 4 / n, with Meyer transitions of half-width
    h / 2 around each boundary. By default ``start = -1 - h / 2``: windows are centred on the shears
    0 (the axes) and +-1 (the diagonals) and equispaced in slope between them (sin / cos of a Meyer ramp, so the squares of the two windows meeting at a
    boundary add up to 1).
    """
    if n == 1:
        return [np.ones_like(p)]
    h = 4.0 / n
    eps = h / 2.0
    if start is None:
        start = -1.0 - h / 2.0
    windows = []
    for k in range(n):
        centre = start + (k + 0.5) * h
        d = (p - centre + 2.0) % 4.0 - 2.0          # periodic signed distance to the centre, in [-2, 2)
        rise = np.sin(0.5 * np.pi * meyer_step((d + h / 2 + eps) / (2 * eps)))
        fall = np.cos(0.5 * np.pi * meyer_step((d - h / 2 + eps) / (2 * eps)))
        windows.append(np.where(np.abs(d) <= h / 2 + eps, rise * fall, 0.0))
    return windows


def compact_partition(partition, support: int, shape: Tuple[int, int]) -> List[np.ndarray]:
    """Spatially compact filters from a partition of unity designed in the frequency domain.

    ``partition(w1, w2)`` returns responses P_l with sum_l P_l = 1, evaluated on the full DFT grid of a
    small ``support`` x ``support`` window (as Easley et al. build their shearing filters on a small
    grid). Their inverse DFTs are real, symmetric kernels of that size (the responses are symmetrised,
    keeping the sum) that add up to a unit impulse. Each kernel is placed around the origin of the
    (H, W) image grid (Nyquist row/column split in halves so the kernel stays symmetric) and its real
    ``rfft2`` response returned: the responses still add up to exactly 1, so a transform analysing with
    them and synthesising by summation reconstructs perfectly, while every coefficient depends only on a
    ``support``-wide neighbourhood (no long tails into the image background).
    """
    h, w = shape
    d = int(min(support, ((min(h, w) - 1) // 2) * 2))
    d = max(d, 2)
    k = 2 * np.pi * np.fft.fftfreq(d)
    responses = partition(k[:, None], k[None, :])
    mirror = (-np.arange(d)) % d
    out = []
    half = d // 2
    for r in responses:
        r = np.broadcast_to(r, (d, d))
        r = 0.5 * (r + r[mirror][:, mirror])                 # real, even kernel
        kernel = np.real(np.fft.ifft2(r))
        big = np.zeros((h, w))
        # rows/cols 0..half-1 -> 0..half-1, half+1..d-1 -> negative offsets, Nyquist half split in two
        idx = np.r_[0:half, half + 1:d]
        pos_r = np.where(idx < half, idx, idx - d) % h
        pos_c = np.where(idx < half, idx, idx - d) % w
        big[np.ix_(pos_r, pos_c)] = kernel[np.ix_(idx, idx)]
        ny_r, ny_c = [half % h, (-half) % h], [half % w, (-half) % w]
        big[np.ix_(ny_r, pos_c)] += 0.5 * kernel[half, idx][None, :]
        big[np.ix_(pos_r, ny_c)] += 0.5 * kernel[idx, half][:, None]
        big[np.ix_(ny_r, ny_c)] += 0.25 * kernel[half, half]
        out.append(np.real(np.fft.rfft2(big)))
    return out
