"""Statistical metrics of intensities: standard deviation (SD), correlation coefficient (CC), peak
signal-to-noise ratio (PSNR), sum of the correlations of differences (SCD).

SD is the contrast of the fused image alone; CC, PSNR and SCD compare its grey values with the sources'
globally, slice by slice (Pearson correlations, mean squared error), as the CDDFuse evaluator does. Conventions
shared by all metrics (0..255 images, N sources, 2-D / 3-D) are in :mod:`MedFusionLib.metrics` and
``docs/metrics.md``.

References
----------
.. [1] J. Ma, Y. Ma, C. Li, "Infrared and visible image fusion methods and applications: a survey",
       Information Fusion 45:153-178, 2019 (SD, CC).
.. [2] P. Jagalingam, A. V. Hegde, "A review of quality metrics for fused image", Aquatic Procedia
       4:133-142, 2015 (PSNR).
.. [3] V. Aslantas, E. Bendes, "A new image quality metric for image fusion: the sum of the correlations of
       differences", AEU Int. J. Electron. Commun. 69(12):1890-1896, 2015 (SCD).
"""

from __future__ import annotations

import numpy as np

from ._common import _fused_only, _per_slice, _prepare, _reduce


# --------------------------------------------------------------------------------------------------
# Per-slice kernels: F (S, H, W), X (N, S, H, W) -> (S,) values
# --------------------------------------------------------------------------------------------------

def _pearson(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Pearson correlation over the last two axes (NaN where either is constant)."""
    xm = x - x.mean(axis=(-2, -1), keepdims=True)
    ym = y - y.mean(axis=(-2, -1), keepdims=True)
    num = (xm * ym).sum(axis=(-2, -1))
    den = np.sqrt((xm * xm).sum(axis=(-2, -1)) * (ym * ym).sum(axis=(-2, -1)))
    with np.errstate(divide="ignore", invalid="ignore"):
        return num / den


def _sd_slices(F: np.ndarray) -> np.ndarray:
    return F.std(axis=(1, 2))


def _cc_slices(F: np.ndarray, X: np.ndarray) -> np.ndarray:
    return _pearson(X, F[None]).mean(axis=0)


def _psnr_slices(F: np.ndarray, X: np.ndarray) -> np.ndarray:
    mse = ((X - F[None]) ** 2).mean(axis=(2, 3)).mean(axis=0)
    peak = F.max(axis=(1, 2))
    with np.errstate(divide="ignore", invalid="ignore"):
        return 10.0 * np.log10(peak * peak / mse)


def _scd_slices(F: np.ndarray, X: np.ndarray) -> np.ndarray:
    n = X.shape[0]
    total = X.sum(axis=0)
    out = np.zeros(F.shape[0])
    for i in range(n):  # over sources (N is small), each step vectorised over all slices
        others = (total - X[i]) / (n - 1)
        out = out + _pearson(F - others, X[i])
    return out


# --------------------------------------------------------------------------------------------------
# Public metrics
# --------------------------------------------------------------------------------------------------

def sd(fused, *, axis: int = 0) -> float:
    """Standard deviation (SD) of the fused image: contrast.

    Parameters
    ----------
    fused : array_like
        Fused image (H, W) or volume (K, J, I), values in 0..255.
    axis : int, optional
        Slice axis of a volume.

    Returns
    -------
    float
        Population standard deviation (higher: more contrast).

    Notes
    -----
    :math:`SD = \\sqrt{\\frac{1}{HW}\\sum_{x,y} (F(x,y) - \\mu_F)^2}`.

    References
    ----------
    .. [1] Y.-J. Rao, "In-fibre Bragg grating sensors", Meas. Sci. Technol. 8(4):355, 1997 (as cited for
           SD by Ma et al., Information Fusion 45, 2019).
    """
    F, X = _prepare(fused, None, axis, ("SD",), need_sources=False)
    return _reduce(_per_slice(_fused_only(_sd_slices), F, X))


def cc(fused, sources, *, axis: int = 0) -> float:
    """Correlation coefficient (CC): mean Pearson correlation of the fused image with each source.

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
        :math:`\\frac{1}{N}\\sum_i r(S_i, F)` in [-1, 1] (higher is better); NaN on a slice where an image
        is constant.

    Notes
    -----
    :math:`r(A, F) = \\sum a f / \\sqrt{\\sum a^2 \\sum f^2}` with :math:`a = A - \\bar A`,
    :math:`f = F - \\bar F`;
    for two sources :math:`CC = (r(A,F) + r(B,F)) / 2` as in the reference.

    References
    ----------
    .. [1] J. Ma, Y. Ma, C. Li, "Infrared and visible image fusion methods and applications: a survey",
           Information Fusion 45:153-178, 2019.
    """
    F, X = _prepare(fused, sources, axis, ("CC",))
    return _reduce(_per_slice(_cc_slices, F, X))


def psnr(fused, sources, *, axis: int = 0) -> float:
    """Peak signal-to-noise ratio (PSNR) of the fused image against its sources, in dB.

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
        Higher is better; ``inf`` if F equals every source.

    Notes
    -----
    :math:`PSNR = 10 \\log_{10} \\frac{\\max(F)^2}{\\frac{1}{N}\\sum_i MSE(S_i, F)}` with the peak taken
    from F (as the reference), :math:`MSE` the mean squared difference; for two sources the mean of the
    two MSEs, as in the reference.

    References
    ----------
    .. [1] P. Jagalingam, A. V. Hegde, "A review of quality metrics for fused image", Aquatic Procedia
           4:133-142, 2015.
    """
    F, X = _prepare(fused, sources, axis, ("PSNR",))
    return _reduce(_per_slice(_psnr_slices, F, X))


def scd(fused, sources, *, axis: int = 0) -> float:
    """Sum of the correlations of differences (SCD).

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
        Higher is better (at most N).

    Notes
    -----
    For two sources :math:`SCD = r(F - B, A) + r(F - A, B)`: the difference image F - B stands for what F
    took from A. For N sources, :math:`SCD = \\sum_i r(F - \\bar S_{\\neg i}, S_i)` with
    :math:`\\bar S_{\\neg i}` the mean of the other sources, which is the original for N = 2.

    References
    ----------
    .. [1] V. Aslantas, E. Bendes, "A new image quality metric for image fusion: the sum of the
           correlations of differences", AEU Int. J. Electron. Commun. 69(12):1890-1896, 2015.
    """
    F, X = _prepare(fused, sources, axis, ("SCD",))
    return _reduce(_per_slice(_scd_slices, F, X))
