"""Structural metrics from local window statistics: visual information fidelity (VIF), structural
similarity (SSIM) and multi-scale SSIM (MS-SSIM).

Each compares local means, variances and covariances of the fused image and each source over sliding
Gaussian or uniform windows, at one or several scales, and sums the scores over the sources. VIF and SSIM
follow the CDDFuse evaluator (VIFp with its clamping steps; scikit-image's SSIM with ``data_range=2``);
MS-SSIM is MONAI's computation, reimplemented in float64 numpy. Conventions shared by all metrics (0..255
images, N sources, 2-D / 3-D) are in :mod:`MedFusionLib.metrics` and ``docs/metrics.md``.

References
----------
.. [1] H. R. Sheikh, A. C. Bovik, "Image information and visual quality", IEEE Trans. Image Process.
       15(2):430-444, 2006 (VIF).
.. [2] Z. Wang, A. C. Bovik, H. R. Sheikh, E. P. Simoncelli, "Image quality assessment: from error
       visibility to structural similarity", IEEE Trans. Image Process. 13(4):600-612, 2004 (SSIM).
.. [3] Z. Wang, E. P. Simoncelli, A. C. Bovik, "Multiscale structural similarity for image quality
       assessment", Proc. 37th Asilomar Conf. Signals, Systems and Computers, 2003, pp. 1398-1402 (MS-SSIM).
"""

from __future__ import annotations

from typing import Optional, Tuple

import numpy as np

from ._common import _filter2, _per_slice, _prepare, _reduce, _separable
from .table import _MS_SSIM_KERNEL, _VIF_SCALES


# --------------------------------------------------------------------------------------------------
# Per-slice kernels: F (S, H, W), X (N, S, H, W) -> (S,) values
# --------------------------------------------------------------------------------------------------

def _vif_window(taps: int) -> Tuple[Optional[np.ndarray], np.ndarray]:
    """MATLAB-style Gaussian window (N taps, sigma N/5, h < eps*max -> 0, normalised).

    Returns the 1-D factor when the 2-D window is separable (no tap was truncated), and the 2-D window.
    """
    sd = taps / 5.0
    half = (taps - 1) / 2.0
    t = np.arange(-half, half + 1)
    h = np.exp(-(t[:, None] ** 2 + t[None, :] ** 2) / (2.0 * sd * sd))
    truncated = h < np.finfo(h.dtype).eps * h.max()
    h[truncated] = 0.0
    win = h / h.sum()
    if truncated.any():
        return None, win
    g = np.exp(-(t ** 2) / (2.0 * sd * sd))
    return g / g.sum(), win


def _vif_valid(x: np.ndarray, g: Optional[np.ndarray], win: np.ndarray) -> np.ndarray:
    """'valid' filtering of the last two axes with the (symmetric) window."""
    r = win.shape[0] // 2
    y = _separable(x, g) if g is not None else _filter2(x, win)
    return y[..., r:y.shape[-2] - r, r:y.shape[-1] - r]


def _vif_slices_per_source(F: np.ndarray, X: np.ndarray) -> np.ndarray:
    """VIFp(X_i, F) for every source and slice: (N, S)."""
    sigma_nsq, eps = 2.0, 1e-10
    ref, dist = X, F
    num = np.zeros(X.shape[:2])
    den = np.zeros(X.shape[:2])
    for scale in range(1, _VIF_SCALES + 1):
        g, win = _vif_window(2 ** (_VIF_SCALES + 1 - scale) + 1)
        if scale > 1:
            ref = _vif_valid(ref, g, win)[..., ::2, ::2]
            dist = _vif_valid(dist, g, win)[..., ::2, ::2]
        mu1 = _vif_valid(ref, g, win)
        mu2 = _vif_valid(dist, g, win)[None]
        d = dist[None]
        s1 = _vif_valid(ref * ref, g, win) - mu1 * mu1
        s2 = _vif_valid(dist * dist, g, win)[None] - mu2 * mu2
        s12 = _vif_valid(ref * d, g, win) - mu1 * mu2
        s1 = np.maximum(s1, 0.0)
        s2 = np.broadcast_to(np.maximum(s2, 0.0), s1.shape)
        gain = s12 / (s1 + eps)
        sv = s2 - gain * s12
        flat1 = s1 < eps
        gain = np.where(flat1, 0.0, gain)
        sv = np.where(flat1, s2, sv)
        s1 = np.where(flat1, 0.0, s1)
        flat2 = s2 < eps
        gain = np.where(flat2, 0.0, gain)
        sv = np.where(flat2, 0.0, sv)
        neg = gain < 0
        sv = np.where(neg, s2, sv)
        gain = np.where(neg, 0.0, gain)
        sv = np.where(sv <= eps, eps, sv)
        num += np.log10(1.0 + gain * gain * s1 / (sv + sigma_nsq)).sum(axis=(-2, -1))
        den += np.log10(1.0 + s1 / sigma_nsq).sum(axis=(-2, -1))
    with np.errstate(divide="ignore", invalid="ignore"):
        vifp = num / den
    return np.where(np.isnan(vifp), 1.0, vifp)


def _vif_slices(F: np.ndarray, X: np.ndarray) -> np.ndarray:
    return _vif_slices_per_source(F, X).sum(axis=0)


def _ssim_slices(F: np.ndarray, X: np.ndarray) -> np.ndarray:
    from skimage.metrics import structural_similarity

    out = np.zeros(F.shape[0])
    for x in X:
        # skimage's function takes one 2-D image pair at a time: a loop over slices is unavoidable here.
        out = out + np.array([structural_similarity(F[k], x[k], data_range=2.0) for k in range(F.shape[0])])
    return out


_MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)


def _ms_ssim_window() -> np.ndarray:
    t = np.arange(-(_MS_SSIM_KERNEL // 2), _MS_SSIM_KERNEL // 2 + 1, dtype=np.float64)
    g = np.exp(-0.5 * (t / 1.5) ** 2)
    return g / g.sum()


def _ms_ssim_slices(F: np.ndarray, X: np.ndarray) -> np.ndarray:
    # The computation of MONAI's compute_ms_ssim (checked against it in the tests), in float64 numpy:
    # MONAI's torch path costs 20-700 ms per pair on two shared cores (thread contention), this ~10 ms.
    g = _ms_ssim_window()
    r = g.size // 2
    c1, c2 = (0.01 * 255.0) ** 2, (0.03 * 255.0) ** 2

    def valid(x):
        y = _separable(x, g)
        return y[..., r:y.shape[-2] - r, r:y.shape[-1] - r]

    def pool(x):
        h, w = (x.shape[-2] // 2) * 2, (x.shape[-1] // 2) * 2
        x = x[..., :h, :w]
        return 0.25 * (x[..., 0::2, 0::2] + x[..., 1::2, 0::2] + x[..., 0::2, 1::2] + x[..., 1::2, 1::2])

    x, y = X, np.broadcast_to(F[None], X.shape)
    value = np.ones(X.shape[:2])
    for level, weight in enumerate(_MS_SSIM_WEIGHTS):
        mu_x, mu_y = valid(x), valid(y)
        var_x = valid(x * x) - mu_x * mu_x
        var_y = valid(y * y) - mu_y * mu_y
        cov = valid(x * y) - mu_x * mu_y
        cs = (2.0 * cov + c2) / (var_x + var_y + c2)
        if level < len(_MS_SSIM_WEIGHTS) - 1:
            term = cs.mean(axis=(-2, -1))
            x, y = pool(x), pool(y)
        else:  # the coarsest scale contributes the full SSIM (luminance too)
            term = (((2.0 * mu_x * mu_y + c1) / (mu_x * mu_x + mu_y * mu_y + c1)) * cs).mean(axis=(-2, -1))
        value = value * np.maximum(term, 0.0) ** weight
    return value.sum(axis=0)


# --------------------------------------------------------------------------------------------------
# Public metrics
# --------------------------------------------------------------------------------------------------

def vif(fused, sources, *, axis: int = 0) -> float:
    """Visual information fidelity (VIF, pixel-domain VIFp), summed over sources.

    Parameters
    ----------
    fused : array_like
        Fused image (H, W) or volume (K, J, I), at least 41 x 41 per slice.
    sources : sequence of array_like
        Two or more source images of the same shape.
    axis : int, optional
        Slice axis of a volume.

    Returns
    -------
    float
        :math:`\\sum_i VIFp(S_i, F)` (a sum, as the reference; higher is better).

    Notes
    -----
    Four scales s = 1..4 with a Gaussian window of :math:`N = 2^{5-s} + 1` taps (17, 9, 5, 3),
    :math:`\\sigma = N/5`, built as MATLAB's ``fspecial`` (taps below ``eps * max`` set to 0, none are at
    these sizes, so it is applied as an exactly separable filter) and normalised; filtering is 'valid'; from
    scale 2 on both images are filtered and subsampled by 2 first. With local statistics
    :math:`\\mu, \\sigma^2` of reference R = S_i and distorted D = F:
    :math:`g = \\sigma_{RD} / (\\sigma_R^2 + \\epsilon)`, :math:`\\sigma_v^2 = \\sigma_D^2 - g \\sigma_{RD}`,
    with the reference's clamping steps (negative variances to 0; :math:`\\sigma_R^2 < \\epsilon`:
    g = 0, :math:`\\sigma_v^2 = \\sigma_D^2`, :math:`\\sigma_R^2 = 0`; :math:`\\sigma_D^2 < \\epsilon`:
    g = 0, :math:`\\sigma_v^2 = 0`; g < 0: :math:`\\sigma_v^2 = \\sigma_D^2`, g = 0;
    :math:`\\sigma_v^2 \\le \\epsilon \\to \\epsilon`), :math:`\\epsilon = 10^{-10}`,
    :math:`\\sigma_n^2 = 2`, and
    :math:`VIFp = \\frac{\\sum_s \\sum \\log_{10}(1 + g^2 \\sigma_R^2 / (\\sigma_v^2 + \\sigma_n^2))}
    {\\sum_s \\sum \\log_{10}(1 + \\sigma_R^2 / \\sigma_n^2)}`, with NaN (0/0) replaced by 1.

    References
    ----------
    .. [1] H. R. Sheikh, A. C. Bovik, "Image information and visual quality", IEEE Trans. Image Process.
           15(2):430-444, 2006.
    .. [2] Y. Han, Y. Cai, Y. Cao, X. Xu, "A new image fusion performance metric based on visual
           information fidelity", Information Fusion 14(2):127-135, 2013.
    """
    F, X = _prepare(fused, sources, axis, ("VIF",))
    return _reduce(_per_slice(_vif_slices, F, X))


def ssim(fused, sources, *, axis: int = 0) -> float:
    """Structural similarity (SSIM) of the fused image with each source, summed over sources.

    Parameters
    ----------
    fused : array_like
        Fused image (H, W) or volume (K, J, I), at least 7 x 7 per slice.
    sources : sequence of array_like
        Two or more source images of the same shape.
    axis : int, optional
        Slice axis of a volume.

    Returns
    -------
    float
        :math:`\\sum_i SSIM(F, S_i)` (a sum, as the reference; higher is better).

    Notes
    -----
    scikit-image's ``structural_similarity`` with its defaults (7 x 7 uniform window, sample covariance,
    K1 = 0.01, K2 = 0.03) and ``data_range = 2`` as in the published protocol:
    :math:`SSIM = \\frac{(2\\mu_x\\mu_y + C_1)(2\\sigma_{xy} + C_2)}
    {(\\mu_x^2+\\mu_y^2+C_1)(\\sigma_x^2+\\sigma_y^2+C_2)}`
    with :math:`C_1 = (0.01 \\cdot 2)^2`, :math:`C_2 = (0.03 \\cdot 2)^2`, averaged over the window positions.
    With 0..255 images these constants are negligible; ``data_range = 255`` gives different values.

    References
    ----------
    .. [1] Z. Wang, A. C. Bovik, H. R. Sheikh, E. P. Simoncelli, "Image quality assessment: from error
           visibility to structural similarity", IEEE Trans. Image Process. 13(4):600-612, 2004.
    """
    F, X = _prepare(fused, sources, axis, ("SSIM",))
    return _reduce(_per_slice(_ssim_slices, F, X))


def ms_ssim(fused, sources, *, axis: int = 0) -> float:
    """Multi-scale structural similarity (MS-SSIM) with each source, summed over sources.

    Parameters
    ----------
    fused : array_like
        Fused image (H, W) or volume (K, J, I), values in 0..255, at least 176 x 176 per slice.
    sources : sequence of array_like
        Two or more source images of the same shape.
    axis : int, optional
        Slice axis of a volume.

    Returns
    -------
    float
        :math:`\\sum_i MSSSIM(F, S_i)` (higher is better; summed like SSIM).

    Notes
    -----
    Wang, Simoncelli and Bovik's definition with their parameters, computed as MONAI's
    ``compute_ms_ssim`` does (reimplemented in float64 numpy for speed; the tests check it against
    MONAI): M = 5 scales, 11 x 11 Gaussian window with :math:`\\sigma = 1.5`, 'valid'
    filtering, 2 x 2 average-pool downsampling, K1 = 0.01, K2 = 0.03, dynamic range L = 255,
    exponents (0.0448, 0.2856, 0.3001, 0.2363, 0.1333):
    :math:`MSSSIM = [l_M]^{\\alpha_M} \\prod_{j=1}^{M} [c_j s_j]^{\\beta_j}` (MONAI clamps negative
    contrast-structure terms at 0).

    References
    ----------
    .. [1] Z. Wang, E. P. Simoncelli, A. C. Bovik, "Multiscale structural similarity for image quality
           assessment", Proc. 37th Asilomar Conf. Signals, Systems and Computers, 2003, pp. 1398-1402.
    """
    F, X = _prepare(fused, sources, axis, ("MS-SSIM",))
    return _reduce(_per_slice(_ms_ssim_slices, F, X))
