"""Gaussian and Laplacian pyramids in 2-D and 3-D (Burt and Adelson 1983), batched.

A pyramid is a plain list, finest level first: ``laplacian_pyramid(x, levels)`` returns
``[L0, ..., L(levels-1), G(levels)]`` (band-pass details, then the low-pass residual), and
:func:`reconstruct_laplacian_pyramid` inverts it exactly (up to float rounding).

References
----------
.. [1] P. J. Burt, E. H. Adelson, "The Laplacian pyramid as a compact image code",
       IEEE Trans. Communications 31(4):532-540, 1983.
"""

from __future__ import annotations

from typing import List, Sequence

import numpy as np

from .filters import _spatial_axes

# Burt and Adelson's generating kernel with a = 0.375: [1/16, 1/4, 3/8, 1/4, 1/16].
_KERNEL = np.array([1.0, 4.0, 6.0, 4.0, 1.0]) / 16.0


def max_pyramid_levels(shape: Sequence[int]) -> int:
    """Largest number of pyramid levels for which every reduced axis keeps at least 2 samples."""
    levels = 0
    sizes = list(shape)
    while min(sizes) >= 3:
        sizes = [(s + 1) // 2 for s in sizes]
        levels += 1
    return levels


def _along(ndim: int, axis: int, index) -> tuple:
    key = [slice(None)] * ndim
    key[axis] = index
    return tuple(key)


def _reduce(x: np.ndarray, spatial_dims: int) -> np.ndarray:
    """Low-pass with the 5-tap kernel and keep every other sample, per spatial axis.

    Polyphase form of ``correlate1d(x, kernel, mode='mirror')[::2]``: only the kept outputs are computed.
    """
    w = _KERNEL.astype(x.dtype)
    for axis in _spatial_axes(x, spatial_dims):
        n = x.shape[axis]
        m = (n + 1) // 2
        # mirror extension by 2 samples: x[-2] = x[2], x[-1] = x[1], x[n] = x[n-2], x[n+1] = x[n-3]
        left = x[_along(x.ndim, axis, slice(2, 0, -1))]
        right = x[_along(x.ndim, axis, slice(n - 2, n - 4 if n > 3 else None, -1))]
        xp = np.concatenate([left, x, right], axis=axis)
        y = w[0] * xp[_along(x.ndim, axis, slice(0, 2 * m, 2))]
        for k in range(1, 5):
            y += w[k] * xp[_along(x.ndim, axis, slice(k, k + 2 * m, 2))]
        x = y
    return np.ascontiguousarray(x)


def _expand(x: np.ndarray, shape: Sequence[int], spatial_dims: int) -> np.ndarray:
    """Upsample by 2 to ``shape`` (the spatial shape of the finer level), per spatial axis.

    Polyphase form of inserting zeros and filtering with twice the 5-tap kernel (mirror borders):
    even outputs (x[i-1] + 6 x[i] + x[i+1]) / 8, odd outputs (x[i] + x[i+1]) / 2.
    """
    for k, axis in enumerate(_spatial_axes(x, spatial_dims)):
        n, m = x.shape[axis], shape[k]
        # Extension matching the mirrored zero-inserted signal: x[-1] = x[1]; x[n] = x[n-2] for odd m,
        # x[n-1] for even m.
        end = n - 2 if m % 2 else n - 1
        xe = np.concatenate([x[_along(x.ndim, axis, slice(1, 2))], x,
                             x[_along(x.ndim, axis, slice(end, end + 1))]], axis=axis)
        out_shape = list(x.shape)
        out_shape[axis] = m
        out = np.empty(out_shape, dtype=x.dtype)
        centre = xe[_along(x.ndim, axis, slice(1, n + 1))]
        even = xe[_along(x.ndim, axis, slice(0, n))] + xe[_along(x.ndim, axis, slice(2, n + 2))]
        even += 6 * centre
        even *= x.dtype.type(0.125)
        out[_along(x.ndim, axis, slice(0, m, 2))] = even
        n_odd = m // 2
        odd = xe[_along(x.ndim, axis, slice(1, n_odd + 1))] + xe[_along(x.ndim, axis, slice(2, n_odd + 2))]
        odd *= x.dtype.type(0.5)
        out[_along(x.ndim, axis, slice(1, m, 2))] = odd
        x = out
    return x


def gaussian_pyramid(x: np.ndarray, levels: int, spatial_dims: int = 2) -> List[np.ndarray]:
    """``[G0 = x, G1, ..., G(levels)]``: repeated 5-tap low-pass and subsampling by 2 per axis."""
    pyramid = [np.asarray(x)]
    for _ in range(levels):
        pyramid.append(_reduce(pyramid[-1], spatial_dims))
    return pyramid


def laplacian_pyramid(x: np.ndarray, levels: int, spatial_dims: int = 2) -> List[np.ndarray]:
    """Laplacian pyramid ``[L0, ..., L(levels-1), G(levels)]`` of the last ``spatial_dims`` axes.

    Parameters
    ----------
    x : ndarray, float
        Images, batch axes first.
    levels : int
        Number of band-pass levels (>= 1, at most :func:`max_pyramid_levels` of the spatial shape).
    spatial_dims : {2, 3}
        Number of trailing spatial axes.
    """
    if levels < 1 or levels > max_pyramid_levels(x.shape[-spatial_dims:]):
        raise ValueError(f"levels must be in 1..{max_pyramid_levels(x.shape[-spatial_dims:])} for spatial "
                         f"shape {x.shape[-spatial_dims:]}; got {levels}")
    gauss = gaussian_pyramid(x, levels, spatial_dims)
    bands = [gauss[k] - _expand(gauss[k + 1], gauss[k].shape[-spatial_dims:], spatial_dims)
             for k in range(levels)]
    bands.append(gauss[-1])
    return bands


def reconstruct_laplacian_pyramid(bands: Sequence[np.ndarray], spatial_dims: int = 2) -> np.ndarray:
    """Invert :func:`laplacian_pyramid`: collapse from the coarsest level up."""
    x = bands[-1]
    for detail in reversed(bands[:-1]):
        x = detail + _expand(x, detail.shape[-spatial_dims:], spatial_dims)
    return x
