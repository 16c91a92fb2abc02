"""Human-perception metrics: Chen-Blum (Qcb) and Chen-Varshney (Qcv), as Liu et al.'s toolbox computes them.

Both stretch every image to 0..255, filter it with a contrast sensitivity function in the frequency domain
(:func:`_csf_filter`, on MATLAB's ``freqspace`` grid) and pool over saliency: Qcb the preservation of masked
local contrast (higher is better), Qcv a block-wise weighted distortion (lower is better). Conventions
shared by all metrics (0..255 images, N sources, 2-D / 3-D) are in :mod:`MedFusionLib.metrics` and
``docs/metrics.md``.

References
----------
.. [1] Y. Chen, R. S. Blum, "A new automated quality assessment algorithm for image fusion", Image and
       Vision Computing 27(10):1421-1432, 2009 (Qcb).
.. [2] H. Chen, P. K. Varshney, "A human perception inspired quality metric for image fusion based on
       regional information", Information Fusion 8(2):193-207, 2007 (Qcv).
.. [3] Z. Liu et al., "Objective assessment of multiresolution image fusion algorithms for context
       enhancement in night vision: a comparative study", IEEE TPAMI 34(1):94-109, 2012 (the toolbox:
       ``metricChenBlum.m``, ``metricChen.m``).
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np

from ._common import _filter2, _per_slice, _prepare, _reduce, _separable


# --------------------------------------------------------------------------------------------------
# Per-slice kernels: F (S, H, W), X (N, S, H, W) -> (S,) values
# --------------------------------------------------------------------------------------------------

def _normalize_255(x: np.ndarray) -> np.ndarray:
    """Per-slice min-max stretch to 0..255, rounded (``normalize1`` of Liu et al.'s toolbox).

    A constant slice has no contrast to stretch and becomes 0 (the toolbox leaves an all-zero image as it
    is and divides by zero on any other constant image).
    """
    lo = x.min(axis=(-2, -1), keepdims=True)
    hi = x.max(axis=(-2, -1), keepdims=True)
    span = hi - lo
    scaled = (x - lo) / np.where(span == 0, 1.0, span)
    return np.where(span == 0, 0.0, np.round(scaled * 255.0))


def _csf_filter(x: np.ndarray, response: Callable[[np.ndarray], np.ndarray], scale: float) -> np.ndarray:
    """Filter the slices of ``x`` (..., H, W) in the frequency domain with a radial response.

    The frequency grid is MATLAB's ``freqspace([H, W], 'meshgrid')`` scaled by ``W * scale`` along x and
    ``H * scale`` along y, i.e. ``u = k * 2 * scale`` for the signed DFT index ``k``; the product with the
    centred spectrum and the inverse transform of the toolbox is the same as multiplying the uncentred
    spectrum by the response at the signed frequencies. The response is even, so the result is real.
    """
    h, w = x.shape[-2:]
    u = np.fft.rfftfreq(w, d=1.0 / w) * (2.0 * scale)
    v = np.fft.fftfreq(h, d=1.0 / h) * (2.0 * scale)
    r = np.sqrt(u[None, :] ** 2 + v[:, None] ** 2)
    spectrum = np.fft.rfft2(x, axes=(-2, -1))
    return np.fft.irfft2(spectrum * response(r), s=(h, w), axes=(-2, -1))


# Chen-Blum (Qcb) parameters of Liu et al.'s toolbox.
_QCB_F0, _QCB_F1, _QCB_A = 15.3870, 1.3456, 0.7622
_QCB_P, _QCB_Q, _QCB_Z = 3.0, 2.0, 1e-4


def _qcb_gaussian(sigma: float) -> np.ndarray:
    # 31 x 31 (-15..15) spatial Gaussian, scaled by 1/(2 pi sigma^2), not renormalised (as the toolbox).
    t = np.arange(-15, 16, dtype=np.float64)
    return np.exp(-(t * t) / (2.0 * sigma * sigma)) / math.sqrt(2.0 * math.pi * sigma * sigma)


def _qcb_contrast(x: np.ndarray) -> np.ndarray:
    """Masked local contrast C' = |C|^p / (|C|^q + Z), C = (G_2 * x) / (G_4 * x) - 1 (band-pass contrast)."""
    fine = _separable(x, _qcb_gaussian(2.0))
    coarse = _separable(x, _qcb_gaussian(4.0))
    with np.errstate(divide="ignore", invalid="ignore"):
        c = np.abs(fine / coarse - 1.0)
    c = np.where(coarse == 0, 0.0, c)  # no local luminance: no contrast (the toolbox gives NaN)
    return c ** _QCB_P / (c ** _QCB_Q + _QCB_Z)


def _ratio_min_max(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """min(a, b) / max(a, b) for a, b >= 0, 1 where both are 0."""
    hi = np.maximum(a, b)
    return np.where(hi == 0, 1.0, np.minimum(a, b) / np.where(hi == 0, 1.0, hi))


def _qcb_slices(F: np.ndarray, X: np.ndarray) -> np.ndarray:
    def csf(r):
        return np.exp(-(r / _QCB_F0) ** 2) - _QCB_A * np.exp(-(r / _QCB_F1) ** 2)

    imgs = _normalize_255(np.concatenate([X, F[None]]))
    cp = _qcb_contrast(_csf_filter(imgs, csf, 1.0 / 30.0))
    cx, cf = cp[:-1], cp[-1:]
    preservation = _ratio_min_max(cx, cf)
    power = cx * cx
    total = power.sum(axis=0, keepdims=True)
    saliency = np.where(total == 0, 1.0 / X.shape[0], power / np.where(total == 0, 1.0, total))
    return (saliency * preservation).sum(axis=0).mean(axis=(1, 2))


# Chen-Varshney (Qcv) parameters of Liu et al.'s toolbox.
_QCV_WINDOW, _QCV_ALPHA = 16, 5.0
_QCV_SOBEL_X = np.array([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]])
_QCV_SOBEL_Y = np.array([[-1.0, -2.0, -1.0], [0.0, 0.0, 0.0], [1.0, 2.0, 1.0]])


def _block_sums(x: np.ndarray, size: int) -> np.ndarray:
    """Sums over size x size blocks of the last two axes, zero-padding partial blocks (MATLAB blkproc)."""
    h, w = x.shape[-2:]
    ph, pw = -h % size, -w % size
    if ph or pw:
        x = np.pad(x, [(0, 0)] * (x.ndim - 2) + [(0, ph), (0, pw)])
    hb, wb = x.shape[-2] // size, x.shape[-1] // size
    return x.reshape(x.shape[:-2] + (hb, size, wb, size)).sum(axis=(-3, -1))


def _qcv_slices(F: np.ndarray, X: np.ndarray) -> np.ndarray:
    def mannos_sakrison(r):
        return 2.6 * (0.0192 + 0.144 * r) * np.exp(-((0.144 * r) ** 1.1))

    Fn = _normalize_255(F)
    Xn = _normalize_255(X)
    gx = _filter2(Xn, _QCV_SOBEL_X)
    gy = _filter2(Xn, _QCV_SOBEL_Y)
    saliency = _block_sums(np.sqrt(gx * gx + gy * gy) ** _QCV_ALPHA, _QCV_WINDOW)
    diff = _csf_filter(Xn - Fn[None], mannos_sakrison, 1.0 / 8.0)
    distortion = _block_sums(diff * diff, _QCV_WINDOW) / float(_QCV_WINDOW * _QCV_WINDOW)
    num = (saliency * distortion).sum(axis=(0, 2, 3))
    den = saliency.sum(axis=(0, 2, 3))
    with np.errstate(divide="ignore", invalid="ignore"):
        return num / den


# --------------------------------------------------------------------------------------------------
# Public metrics
# --------------------------------------------------------------------------------------------------

def qcb(fused, sources, *, axis: int = 0) -> float:
    """Chen-Blum human-perception metric Qcb.

    Parameters
    ----------
    fused : array_like
        Fused image (H, W) or volume (K, J, I).
    sources : sequence of array_like
        Two or more source images of the same shape.
    axis : int, optional
        Slice axis of a volume.

    Returns
    -------
    float
        In [0, 1] (higher is better).

    Notes
    -----
    As in Liu et al.'s toolbox (``metricChenBlum.m``): every image is min-max stretched to 0..255 and
    rounded; filtered in the frequency domain by the DoG contrast sensitivity function
    :math:`S(r) = e^{-(r/f_0)^2} - a\\, e^{-(r/f_1)^2}`, :math:`f_0 = 15.3870`, :math:`f_1 = 1.3456`,
    :math:`a = 0.7622`, on MATLAB's ``freqspace`` grid scaled by size/30; local contrast
    :math:`C = (G_2 * I) / (G_4 * I) - 1` with 31 x 31 Gaussians (:math:`\\sigma` = 2, 4, scaled by
    :math:`1/(2\\pi\\sigma^2)`, zero-padded 'same' filtering), masked contrast
    :math:`C' = k|C|^p / (h|C|^q + Z)`, k = h = 1, p = 3, q = 2, Z = 1e-4. Preservation
    :math:`Q_{AF} = \\min(C'_A, C'_F)/\\max(C'_A, C'_F)`, saliency
    :math:`\\lambda_A = C_A'^2 / \\sum_i C_{S_i}'^2`, and
    :math:`Q_{CB} = \\mathrm{mean}(\\sum_i \\lambda_{S_i} Q_{S_iF})` (the two-source formula for N
    sources). Where the toolbox divides 0 by 0 (no local luminance, equal zero contrasts, no saliency) the
    contrast is 0, the preservation 1 and the saliency weights equal.

    References
    ----------
    .. [1] Y. Chen, R. S. Blum, "A new automated quality assessment algorithm for image fusion", Image
           and Vision Computing 27(10):1421-1432, 2009.
    .. [2] Z. Liu et al., IEEE TPAMI 34(1):94-109, 2012 (toolbox implementation).
    """
    F, X = _prepare(fused, sources, axis, ("Qcb",))
    return _reduce(_per_slice(_qcb_slices, F, X))


def qcv(fused, sources, *, axis: int = 0) -> float:
    """Chen-Varshney human-perception metric Qcv (a weighted distortion: lower is better).

    Parameters
    ----------
    fused : array_like
        Fused image (H, W) or volume (K, J, I).
    sources : sequence of array_like
        Two or more source images of the same shape.
    axis : int, optional
        Slice axis of a volume.

    Returns
    -------
    float
        >= 0; 0 when F equals every source. NaN on a slice where no source has an edge.

    Notes
    -----
    As in Liu et al.'s toolbox (``metricChen.m``): every image is min-max stretched to 0..255 and
    rounded; edge strength :math:`G` from Sobel correlation (zero padding); the image is cut into
    16 x 16 blocks w (partial blocks zero-padded, as MATLAB's ``blkproc``) with saliency
    :math:`\\lambda_A(w) = \\sum_w G_A^\\alpha`, :math:`\\alpha = 5`; the difference :math:`A - F` is
    filtered by the Mannos-Sakrison CSF
    :math:`2.6 (0.0192 + 0.144 r) e^{-(0.144 r)^{1.1}}` on MATLAB's ``freqspace`` grid scaled by size/8,
    and :math:`D_A(w)` is the mean of its square over the block. Then
    :math:`Q_{CV} = \\sum_w \\sum_i \\lambda_{S_i}(w) D_{S_i}(w) / \\sum_w \\sum_i \\lambda_{S_i}(w)`.

    References
    ----------
    .. [1] H. Chen, P. K. Varshney, "A human perception inspired quality metric for image fusion based on
           regional information", Information Fusion 8(2):193-207, 2007.
    .. [2] Z. Liu et al., IEEE TPAMI 34(1):94-109, 2012 (toolbox implementation).
    """
    F, X = _prepare(fused, sources, axis, ("Qcv",))
    return _reduce(_per_slice(_qcv_slices, F, X))
