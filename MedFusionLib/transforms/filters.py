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
        _rescale_border_strips(out, axis, radius)
    return out


def window_count(mask: np.ndarray, window: int, spatial_dims: int = 2) -> np.ndarray:
    """The number of True samples of ``mask`` in each window (zero-padded borders: samples outside the
    image do not count), as exact int32 counts, so that equal counts compare equal."""
    ones = np.ones(window)
    out = np.asarray(mask).astype(np.int32)
    for axis in _spatial_axes(out, spatial_dims):
        out = ndi.correlate1d(out, ones, axis=axis, mode="constant", cval=0, output=np.int32)
    return out


def gaussian_smooth(x: np.ndarray, sigma: float, radius: int, spatial_dims: int = 2) -> np.ndarray:
    """Gaussian low-pass of standard deviation ``sigma`` truncated at ``radius`` (mirror borders)."""
    sigmas = [0.0] * (x.ndim - spatial_dims) + [float(sigma)] * spatial_dims
    return ndi.gaussian_filter(x, sigmas, truncate=radius / float(sigma), mode="mirror")


def laplacian_filter(x: np.ndarray, spatial_dims: int = 2) -> np.ndarray:
    """Discrete Laplacian (sum of second differences, 3-tap kernel [1, -2, 1] per spatial axis), mirror
    borders (d c b | a b c d | c b a), as ``scipy.ndimage.correlate1d(..., mode='mirror')`` per axis.

    Written with array slices: along every axis the neighbours are contiguous sub-arrays, which is about
    three times faster than ``correlate1d`` along the strided axes."""
    x = np.asarray(x)
    if x.dtype.kind != "f":
        x = x.astype(np.float32)
    out = np.zeros_like(x)
    for axis in _spatial_axes(x, spatial_dims):
        n = x.shape[axis]
        if n < 2:
            continue                                   # a single sample: its mirrored neighbours are itself

        def part(start, stop, axis=axis):
            index = [slice(None)] * x.ndim
            index[axis] = slice(start, stop)
            return tuple(index)

        inner = out[part(1, n - 1)]
        inner += x[part(2, n)]
        inner += x[part(0, n - 2)]
        inner -= 2 * x[part(1, n - 1)]
        out[part(0, 1)] += 2 * (x[part(1, 2)] - x[part(0, 1)])
        out[part(n - 1, n)] += 2 * (x[part(n - 2, n - 1)] - x[part(n - 1, n)])
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
    if spatial_dims == 2 and guide.dtype == np.float32 and src.dtype == np.float32:
        return _guided_filter_2d(guide, src, radius, eps)
    mean_i = box_mean(guide, radius, spatial_dims)
    mean_p = box_mean(src, radius, spatial_dims)
    cov_ip = box_mean(guide * src, radius, spatial_dims) - mean_i * mean_p
    # Clamp at 0: in float32 E[I^2] - E[I]^2 can come out slightly negative on flat regions.
    var_i = np.maximum(box_mean(guide * guide, radius, spatial_dims) - mean_i * mean_i, 0)
    a = cov_ip / (var_i + eps)
    b = mean_p - a * mean_i
    return box_mean(a, radius, spatial_dims) * guide + box_mean(b, radius, spatial_dims)


def _box_mean_swapped(x: np.ndarray, radius: int) -> np.ndarray:
    """:func:`box_mean` of the last two axes of a float32 ``(..., H, W)`` array, returned with those axes
    swapped, ``(..., W, H)``, C-contiguous.

    Both 1-D passes run along the contiguous last axis (the strided pass over H costs about three times
    as much in ``uniform_filter1d``); the transposing copy in between is cheap. Two calls bring an array
    back to its own layout, which is how :func:`_guided_filter_2d` chains them."""
    size = 2 * radius + 1
    h, w = x.shape[-2:]
    first = ndi.uniform_filter1d(x, size, axis=-1, mode="constant", cval=0.0, output=np.float32)
    swapped = np.ascontiguousarray(np.swapaxes(first, -1, -2))
    del first
    out = ndi.uniform_filter1d(swapped, size, axis=-1, mode="constant", cval=0.0, output=swapped)
    # uniform_filter1d divides by the full window size; windows cut by the border hold fewer samples.
    # Only the strips within ``radius`` of a border need the size / count correction.
    _rescale_border_strips(out, -2, radius)        # the W axis, in the swapped layout
    _rescale_border_strips(out, -1, radius)        # the H axis
    return out


def _rescale_border_strips(out: np.ndarray, axis: int, radius: int) -> None:
    """Multiply ``out`` in place by size / count along ``axis``, touching only the border strips where
    the truncated window holds fewer than ``size`` samples."""
    n = out.shape[axis]
    factors = ((2 * radius + 1) / _window_counts(n, radius, np.float64)).astype(out.dtype)
    view = [1] * out.ndim
    view[axis] = -1
    index = [slice(None)] * out.ndim
    if 2 * radius >= n:                                 # every window is cut: the whole axis
        out *= factors.reshape(view)
        return
    for strip in (slice(0, radius), slice(n - radius, n)):
        index[axis] = strip
        out[tuple(index)] *= factors[strip].reshape(view)


def _guided_filter_2d(guide: np.ndarray, src: np.ndarray, radius: int, eps: float) -> np.ndarray:
    """:func:`guided_filter` for float32 2-D slices, same formulas, with every box mean on the contiguous
    axis: the first-level means come out in the swapped layout, a and b are formed there, and their
    means come back in the input layout."""
    if radius <= 0:                                    # 1-pixel windows: no variance, q = p
        return np.array(src, dtype=np.float32, copy=True)
    mean_i = _box_mean_swapped(guide, radius)
    mean_p = _box_mean_swapped(src, radius)
    a = _box_mean_swapped(guide * src, radius)
    a -= mean_i * mean_p                               # cov(I, p)
    var = _box_mean_swapped(guide * guide, radius)
    var -= mean_i * mean_i
    np.maximum(var, 0, out=var)                        # float32 E[I^2] - E[I]^2 can dip below 0 on flat regions
    var += np.float32(eps)
    a /= var
    del var
    mean_p -= a * mean_i                               # b = mean(p) - a mean(I)
    out = _box_mean_swapped(a, radius)
    out *= guide
    out += _box_mean_swapped(mean_p, radius)
    return out


def window_count_inside(shape, window: int, spatial_dims: int = 2) -> np.ndarray:
    """What :func:`window_count` gives for an all-True mask: the number of samples of each window that lie
    inside the image (``window ** spatial_dims`` away from the borders), int32, broadcastable to ``shape``."""
    radius = window // 2
    out = np.ones([1] * len(shape), dtype=np.int32)
    for axis in range(len(shape) - spatial_dims, len(shape)):
        view = [1] * len(shape)
        view[axis] = shape[axis]
        out = out * _window_counts(shape[axis], radius, np.int32).reshape(view)
    return out
