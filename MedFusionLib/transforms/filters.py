"""Local filters over the spatial axes of batched arrays (box mean, Gaussian, Laplacian, guided filter)."""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi


def _spatial_axes(x: np.ndarray, spatial_dims: int) -> range:
    if spatial_dims not in (2, 3) or x.ndim < spatial_dims:
        raise ValueError(f"spatial_dims must be 2 or 3 and at most x.ndim={x.ndim}; got {spatial_dims}")
    return range(x.ndim - spatial_dims, x.ndim)


def _window_counts(n: int, radius: int, dtype) -> np.ndarray:
    """Number of samples inside a window of ``radius`` truncated at the borders of a length-n axis."""
    i = np.arange(n)
    return (np.minimum(i + radius, n - 1) - np.maximum(i - radius, 0) + 1).astype(dtype)


def box_mean(x: np.ndarray, radius: int, spatial_dims: int = 2) -> np.ndarray:
    """Mean over a (2r+1)^d window, truncated at the image border.

    The window is cut at the border and the mean taken over the samples inside it, as in the box
    filter of He et al.'s guided filter (not a padded image), so a constant image stays constant.

    Parameters
    ----------
    x : ndarray, float
        Array whose last ``spatial_dims`` axes are filtered.
    radius : int
        Window radius r (window side 2r+1); 0 returns a copy.
    spatial_dims : {2, 3}
        Number of trailing spatial axes.

    Returns
    -------
    ndarray
        Same shape and dtype (float32 for non-float input).
    """
    dtype = x.dtype if x.dtype.kind == "f" else np.float32
    if radius <= 0:
        return np.array(x, dtype=dtype, copy=True)
    size = 2 * radius + 1
    out = None
    for axis in _spatial_axes(x, spatial_dims):
        # uniform_filter1d with zero padding gives sum/size; rescale by size/count for a truncated mean.
        out = ndi.uniform_filter1d(x if out is None else out, size, axis=axis, mode="constant", cval=0.0,
                                   output=dtype if out is None else out)
        shape = [1] * x.ndim
        shape[axis] = x.shape[axis]
        out *= (size / _window_counts(x.shape[axis], radius, dtype)).reshape(shape)
    return out


def window_sum_votes(mask: np.ndarray, window: int, spatial_dims: int = 2) -> np.ndarray:
    """Proportional to the count of True in each window (zero-padded borders), as float32; enough to
    compare counts of several masks at the same position."""
    out = None
    for axis in _spatial_axes(mask, spatial_dims):
        out = ndi.uniform_filter1d(mask if out is None else out, window, axis=axis, mode="constant", cval=0.0,
                                   output=np.float32 if out is None else out)
    return out


def gaussian_smooth(x: np.ndarray, sigma: float, radius: int, spatial_dims: int = 2) -> np.ndarray:
    """Gaussian low-pass of standard deviation ``sigma`` truncated at ``radius`` (mirror borders)."""
    sigmas = [0.0] * (x.ndim - spatial_dims) + [float(sigma)] * spatial_dims
    return ndi.gaussian_filter(x, sigmas, truncate=radius / float(sigma), mode="mirror")


def laplacian_filter(x: np.ndarray, spatial_dims: int = 2) -> np.ndarray:
    """Discrete Laplacian (sum of second differences, 3-tap kernel [1, -2, 1] per spatial axis)."""
    kernel = np.array([1.0, -2.0, 1.0], dtype=x.dtype if x.dtype.kind == "f" else np.float32)
    out = None
    for axis in _spatial_axes(x, spatial_dims):
        term = ndi.correlate1d(x, kernel, axis=axis, mode="mirror")
        out = term if out is None else out.__iadd__(term)
    return out


def guided_filter(guide: np.ndarray, src: np.ndarray, radius: int, eps: float,
                  spatial_dims: int = 2) -> np.ndarray:
    """Edge-preserving guided filter with a grey guide.

    Parameters
    ----------
    guide : ndarray
        Guidance image I (same shape as ``src``).
    src : ndarray
        Image p to filter.
    radius : int
        Box radius r.
    eps : float
        Regularisation epsilon (larger: smoother).
    spatial_dims : {2, 3}
        Number of trailing spatial axes.

    Returns
    -------
    ndarray
        q = mean(a) * I + mean(b) with a = cov(I, p) / (var(I) + eps), b = mean(p) - a mean(I),
        means over (2r+1)^d windows truncated at the border.

    References
    ----------
    .. [1] K. He, J. Sun, X. Tang, "Guided image filtering", IEEE TPAMI 35(6):1397-1409, 2013.
    """
    mean_i = box_mean(guide, radius, spatial_dims)
    mean_p = box_mean(src, radius, spatial_dims)
    cov_ip = box_mean(guide * src, radius, spatial_dims) - mean_i * mean_p
    # Clamp at 0: in float32 E[I^2] - E[I]^2 can come out slightly negative on flat regions.
    var_i = np.maximum(box_mean(guide * guide, radius, spatial_dims) - mean_i * mean_i, 0)
    a = cov_ip / (var_i + eps)
    b = mean_p - a * mean_i
    return box_mean(a, radius, spatial_dims) * guide + box_mean(b, radius, spatial_dims)


def window_fraction_inside(shape, window: int, spatial_dims: int = 2) -> np.ndarray:
    """What :func:`window_sum_votes` gives for an all-True mask: the fraction of each window that lies
    inside the image (1 away from the borders), broadcastable to ``shape``."""
    radius = window // 2
    out = np.ones([1] * len(shape), dtype=np.float32)
    for axis in range(len(shape) - spatial_dims, len(shape)):
        per_axis = _window_counts(shape[axis], radius, np.float32) / np.float32(window)
        view = [1] * len(shape)
        view[axis] = shape[axis]
        out = out * per_axis.reshape(view)
    return out
