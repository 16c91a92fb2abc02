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
from scipy import ndimage as ndi

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


def _reduce(x: np.ndarray, spatial_dims: int) -> np.ndarray:
    kernel = _KERNEL.astype(x.dtype)
    for axis in _spatial_axes(x, spatial_dims):
        x = ndi.correlate1d(x, kernel, axis=axis, mode="mirror")
        x = x[(slice(None),) * axis + (slice(None, None, 2),)]
    return np.ascontiguousarray(x)


def _expand(x: np.ndarray, shape: Sequence[int], spatial_dims: int) -> np.ndarray:
    """Upsample by 2 to ``shape`` (the spatial shape of the finer level) by zero insertion + filtering."""
    kernel = (2.0 * _KERNEL).astype(x.dtype)
    for k, axis in enumerate(_spatial_axes(x, spatial_dims)):
        up_shape = list(x.shape)
        up_shape[axis] = shape[k]
        up = np.zeros(up_shape, dtype=x.dtype)
        index = [slice(None)] * x.ndim
        index[axis] = slice(0, shape[k], 2)
        up[tuple(index)] = x
        x = ndi.correlate1d(up, kernel, axis=axis, mode="mirror")
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
