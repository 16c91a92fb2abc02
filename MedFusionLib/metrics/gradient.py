"""Gradient and edge metrics: spatial frequency (SF), average gradient (AG), edge-based quality Qabf and
fusion artefacts Nabf.

SF and AG measure the detail of the fused image alone from finite differences; Qabf (Xydeas & Petrovic) and
Nabf (Petrovic's edge model with Shreyamsha Kumar's artefact count) compare the Sobel edge strength and
orientation of the fused image with each source's, pooled with gradient weights. SF, AG and Qabf follow the
CDDFuse evaluator exactly, quirks included. Conventions shared by all metrics (0..255 images, N sources,
2-D / 3-D) are in :mod:`MedFusionLib.metrics` and ``docs/metrics.md``.

References
----------
.. [1] A. M. Eskicioglu, P. S. Fisher, "Image quality measures and their performance", IEEE Trans. Commun.
       43(12):2959-2965, 1995 (SF).
.. [2] G. Cui et al., "Detail preserved fusion of visible and infrared images using regional saliency
       extraction and multi-scale image decomposition", Optics Communications 341:199-209, 2015 (AG).
.. [3] C. S. Xydeas, V. Petrovic, "Objective image fusion performance measure", Electronics Letters
       36(4):308-309, 2000 (Qabf).
.. [4] B. K. Shreyamsha Kumar, "Multifocus and multispectral image fusion based on pixel significance using
       discrete cosine harmonic wavelet transform", Signal, Image and Video Processing 7(6):1125-1143, 2013
       (Nabf).
"""

from __future__ import annotations

import math
from typing import Tuple

import numpy as np

from ._common import _filter2, _fused_only, _per_slice, _prepare, _reduce


# --------------------------------------------------------------------------------------------------
# Per-slice kernels: F (S, H, W), X (N, S, H, W) -> (S,) values
# --------------------------------------------------------------------------------------------------

def _sf_slices(F: np.ndarray) -> np.ndarray:
    rf2 = np.mean(np.diff(F, axis=2) ** 2, axis=(1, 2))
    cf2 = np.mean(np.diff(F, axis=1) ** 2, axis=(1, 2))
    return np.sqrt(rf2 + cf2)


def _ag_slices(F: np.ndarray) -> np.ndarray:
    gx = np.gradient(F, axis=2)
    gy = np.gradient(F, axis=1)
    return np.mean(np.sqrt((gx * gx + gy * gy) / 2.0), axis=(1, 2))


# Qabf (Xydeas-Petrovic as in the CDDFuse evaluator): Sobel by 'same' convolution, zero padding.
_SOBEL_X = np.array([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]])
_SOBEL_Y = np.array([[1.0, 2.0, 1.0], [0.0, 0.0, 0.0], [-1.0, -2.0, -1.0]])


def _qabf_edges(x: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    sx = _filter2(x, _SOBEL_X, convolve=True)
    sy = _filter2(x, _SOBEL_Y, convolve=True)
    strength = np.sqrt(sx * sx + sy * sy)
    zero = sx == 0
    angle = np.where(zero, math.pi / 2, np.arctan(sy / np.where(zero, 1.0, sx)))
    return strength, angle


def _qabf_slices(F: np.ndarray, X: np.ndarray) -> np.ndarray:
    gF, aF = _qabf_edges(F)
    gX, aX = _qabf_edges(X)
    gF, aF = gF[None], aF[None]
    # Relative strength: the smaller over the larger, but gF itself where gX == gF (reference quirk).
    with np.errstate(divide="ignore", invalid="ignore"):
        rel = np.where(gX > gF, gF / gX, np.where(gX < gF, gX / gF, gF))
    orient = 1.0 - np.abs(aX - aF) / (math.pi / 2)
    q = (0.9994 / (1.0 + np.exp(-15.0 * (rel - 0.5)))) * (0.9879 / (1.0 + np.exp(-22.0 * (orient - 0.8))))
    num = (q * gX).sum(axis=(0, 2, 3))
    den = gX.sum(axis=(0, 2, 3))
    with np.errstate(divide="ignore", invalid="ignore"):
        return num / den


# Nabf (Shreyamsha Kumar): Petrovic's edge model with Sobel/8, mirror extension, weights g^1.5.
_NABF_V = np.array([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]]) / 8.0
_NABF_H = np.array([[-1.0, -2.0, -1.0], [0.0, 0.0, 0.0], [1.0, 2.0, 1.0]]) / 8.0


def _nabf_edges(x: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    gv = _filter2(x, _NABF_V, mode="mirror")
    gh = _filter2(x, _NABF_H, mode="mirror")
    strength = np.sqrt(gh * gh + gv * gv)
    with np.errstate(divide="ignore", invalid="ignore"):
        angle = np.arctan(gv / gh)  # gh == 0, gv != 0 -> +-pi/2
    return strength, np.where((gv == 0) & (gh == 0), 0.0, angle)


def _nabf_slices(F: np.ndarray, X: np.ndarray) -> np.ndarray:
    gF, aF = _nabf_edges(F)
    gX, aX = _nabf_edges(X)
    gF, aF = gF[None], aF[None]
    with np.errstate(divide="ignore", invalid="ignore"):
        rel = np.where((gX == 0) | (gF == 0), 0.0, np.minimum(gX, gF) / np.maximum(gX, gF))
    orient = np.abs(np.abs(aX - aF) - math.pi / 2) * 2.0 / math.pi
    qg = 0.9999 / (1.0 + np.exp(-19.0 * (rel - 0.5)))
    qa = 0.9995 / (1.0 + np.exp(-22.0 * (orient - 0.5)))
    q = np.sqrt(qg * qa)
    weight = np.where(gX >= 2.0, gX ** 1.5, 0.001)
    artefact = gF[0] > gX.max(axis=0)  # F has an edge stronger than every source's
    num = (artefact[None] * (1.0 - q) * weight).sum(axis=(0, 2, 3))
    return num / weight.sum(axis=(0, 2, 3))


# --------------------------------------------------------------------------------------------------
# Public metrics
# --------------------------------------------------------------------------------------------------

def sf(fused, *, axis: int = 0) -> float:
    """Spatial frequency (SF) of the fused image.

    Parameters
    ----------
    fused : array_like
        Fused image (H, W) or volume (K, J, I), values in 0..255; at least 2 x 2 per slice.
    axis : int, optional
        Slice axis of a volume.

    Returns
    -------
    float
        :math:`\\sqrt{RF^2 + CF^2}` (higher: more detail and texture).

    Notes
    -----
    :math:`RF^2 = \\frac{1}{H(W-1)}\\sum (F(x,y+1) - F(x,y))^2` (horizontal neighbours) and
    :math:`CF^2 = \\frac{1}{(H-1)W}\\sum (F(x+1,y) - F(x,y))^2` (vertical neighbours).

    References
    ----------
    .. [1] A. M. Eskicioglu, P. S. Fisher, "Image quality measures and their performance", IEEE Trans.
           Commun. 43(12):2959-2965, 1995.
    """
    F, X = _prepare(fused, None, axis, ("SF",), need_sources=False)
    return _reduce(_per_slice(_fused_only(_sf_slices), F, X))


def ag(fused, *, axis: int = 0) -> float:
    """Average gradient (AG) of the fused image.

    Parameters
    ----------
    fused : array_like
        Fused image (H, W) or volume (K, J, I), values in 0..255; at least 2 x 2 per slice.
    axis : int, optional
        Slice axis of a volume.

    Returns
    -------
    float
        Mean gradient magnitude (higher: sharper).

    Notes
    -----
    :math:`AG = \\frac{1}{HW}\\sum \\sqrt{(G_x^2 + G_y^2)/2}` with :math:`G_x, G_y` central differences,
    one-sided at the border (``numpy.gradient``).

    References
    ----------
    .. [1] G. Cui et al., "Detail preserved fusion of visible and infrared images using regional saliency
           extraction and multi-scale image decomposition", Optics Communications 341:199-209, 2015.
    """
    F, X = _prepare(fused, None, axis, ("AG",), need_sources=False)
    return _reduce(_per_slice(_fused_only(_ag_slices), F, X))


def qabf(fused, sources, *, axis: int = 0) -> float:
    """Edge-based fusion quality Qabf (Xydeas-Petrovic), as the CDDFuse evaluator computes it.

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
        In [0, 1) (higher is better); NaN on a slice where no source has an edge.

    Notes
    -----
    Sobel responses by 'same' convolution with zero padding,
    :math:`h_x = [[-1,0,1],[-2,0,2],[-1,0,1]]`, :math:`h_y = [[1,2,1],[0,0,0],[-1,-2,-1]]`;
    strength :math:`g = \\sqrt{S_x^2 + S_y^2}`, angle :math:`\\alpha = \\arctan(S_y / S_x)` (:math:`\\pi/2`
    where :math:`S_x = 0`). Relative strength :math:`G_{AF} = g_F/g_A` if :math:`g_A > g_F`,
    :math:`g_A/g_F` if :math:`g_A < g_F`, and :math:`g_F` where they are equal: a quirk of the reference
    code (the paper's value there is 1), kept for comparability; it lowers the score of flat regions and
    of weak equal edges (equal strengths below 0.5 score almost 0). Relative angle
    :math:`A_{AF} = 1 - |\\alpha_A - \\alpha_F| / (\\pi/2)`. :math:`Q_g = 0.9994 / (1 + e^{-15(G - 0.5)})`,
    :math:`Q_a = 0.9879 / (1 + e^{-22(A - 0.8)})`, :math:`Q_{AF} = Q_g Q_a`, and
    :math:`Q^{AB/F} = \\sum_i \\sum Q_{S_iF}\\, g_{S_i} / \\sum_i \\sum g_{S_i}` (the two-source formula
    extended to N sources). A perfect copy of strong edges scores
    :math:`\\approx 0.9994 \\cdot 0.9879 / (1 + e^{-4.4}) = 0.975`, not 1.

    References
    ----------
    .. [1] C. S. Xydeas, V. Petrovic, "Objective image fusion performance measure", Electronics Letters
           36(4):308-309, 2000.
    """
    F, X = _prepare(fused, sources, axis, ("Qabf",))
    return _reduce(_per_slice(_qabf_slices, F, X))


def nabf(fused, sources, *, axis: int = 0) -> float:
    """Fusion artefacts Nabf, Shreyamsha Kumar's modified measure (lower is better).

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
        In [0, 1]; 0 means no artefacts.

    Notes
    -----
    Petrovic's edge model as in Kumar's reference code: Sobel/8 responses
    (:math:`g_v` with ``[[-1,0,1],[-2,0,2],[-1,0,1]]/8``, :math:`g_h` with ``[[-1,-2,-1],[0,0,0],[1,2,1]]/8``,
    correlation with mirror extension), :math:`g = \\sqrt{g_h^2 + g_v^2}`, :math:`\\alpha = \\arctan(g_v/g_h)`
    (0 where both vanish); :math:`G_{AF} = \\min(g_A, g_F)/\\max(g_A, g_F)` (0 if either is 0),
    :math:`A_{AF} = ||\\alpha_A - \\alpha_F| - \\pi/2| \\cdot 2/\\pi`;
    :math:`Q_{AF} = \\sqrt{Q_g Q_a}`, :math:`Q_g = 0.9999/(1 + e^{-19(G - 0.5)})`,
    :math:`Q_a = 0.9995/(1 + e^{-22(A - 0.5)})`; weights :math:`w_A = g_A^{1.5}` where :math:`g_A \\ge 2`,
    else 0.001. Artefacts are counted only where F has an edge stronger than every source:
    :math:`N^{AB/F} = \\sum_i \\sum n\\,(1 - Q_{S_iF})\\, w_{S_i} / \\sum_i \\sum w_{S_i}` with
    :math:`n = [g_F > \\max_i g_{S_i}]` (Kumar's modification of Petrovic's :math:`N^{AB/F}`, which
    double-counted; this is the "Nabf" of the benchmarks), extended to N sources.

    References
    ----------
    .. [1] B. K. Shreyamsha Kumar, "Multifocus and multispectral image fusion based on pixel significance
           using discrete cosine harmonic wavelet transform", Signal, Image and Video Processing
           7(6):1125-1143, 2013.
    .. [2] V. Petrovic, C. Xydeas, "Objective image fusion performance characterisation", Proc. ICCV 2005,
           pp. 1866-1871.
    """
    F, X = _prepare(fused, sources, axis, ("Nabf",))
    return _reduce(_per_slice(_nabf_slices, F, X))
