"""Information-theoretic metrics: entropy (EN), mutual information (MI), feature mutual information (FMI).

EN is the information in the fused image alone; MI the information it shares with each source, from the
joint grey-level histogram (the CDDFuse evaluator's convention: base 2 for EN, nats for MI, summed over
sources); FMI the normalised mutual information of local feature patches, window by window, as
Haghighat's fast-FMI computes it (averaged over sources). Conventions shared by all metrics (0..255 images,
N sources, 2-D / 3-D) are in :mod:`MedFusionLib.metrics` and ``docs/metrics.md``.

References
----------
.. [1] J. W. Roberts, J. A. van Aardt, F. B. Ahmed, "Assessment of image fusion procedures using entropy,
       image quality, and multispectral classification", J. Appl. Remote Sens. 2(1), 2008 (EN).
.. [2] G. Qu, D. Zhang, P. Yan, "Information measure for performance of image fusion", Electronics
       Letters 38(7):313-315, 2002 (MI).
.. [3] M. B. A. Haghighat, A. Aghagolzadeh, H. Seyedarabi, "A non-reference image fusion metric based on
       mutual information of image features", Computers & Electrical Engineering 37(5):744-756, 2011; M.
       Haghighat, M. A. Razian, "Fast-FMI: non-reference image fusion metric", Proc. AICT 2014 (FMI).
"""

from __future__ import annotations

import math
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from ..errors import FusionInputError
from ._common import _fused_only, _per_slice, _prepare, _reduce


# --------------------------------------------------------------------------------------------------
# Per-slice kernels: F (S, H, W), X (N, S, H, W) -> (S,) values
# --------------------------------------------------------------------------------------------------

def _quantise(x: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(x), 0, 255).astype(np.intp)


def _en_slices(F: np.ndarray) -> np.ndarray:
    s, h, w = F.shape
    q = _quantise(F) + 256 * np.arange(s)[:, None, None]
    p = np.bincount(q.ravel(), minlength=256 * s).reshape(s, 256) / float(h * w)
    logp = np.log2(np.where(p > 0, p, 1.0))
    return -(p * logp).sum(axis=1)


_MI_CHUNK = 64  # slices per joint histogram (64 * 65536 bins)


def _mi_pair_slices(qf: np.ndarray, qa: np.ndarray) -> np.ndarray:
    """Mutual information (nats) of two integer images 0..255, per slice."""
    s, h, w = qf.shape
    n = float(h * w)
    out = np.empty(s)
    for start in range(0, s, _MI_CHUNK):
        f = qf[start:start + _MI_CHUNK]
        a = qa[start:start + _MI_CHUNK]
        m = f.shape[0]
        offset = np.arange(m)[:, None, None]
        joint = np.bincount((offset * 65536 + f * 256 + a).ravel(), minlength=m * 65536)
        count_f = np.bincount((offset * 256 + f).ravel(), minlength=m * 256)
        count_a = np.bincount((offset * 256 + a).ravel(), minlength=m * 256)
        nz = np.flatnonzero(joint)
        c = joint[nz].astype(np.float64)
        sl = nz >> 16
        cf = count_f[(sl << 8) | ((nz >> 8) & 255)]
        ca = count_a[(sl << 8) | (nz & 255)]
        terms = (c / n) * (np.log(c) + math.log(n) - np.log(cf) - np.log(ca))
        out[start:start + m] = np.bincount(sl, weights=terms, minlength=m)
    return np.maximum(out, 0.0)


def _mi_slices(F: np.ndarray, X: np.ndarray) -> np.ndarray:
    qf = _quantise(F)
    return sum(_mi_pair_slices(qf, _quantise(x)) for x in X)


# Fast-FMI (Haghighat & Razian 2014).
_FMI_CHUNK = 4096  # windows per vectorised step: (chunk, l, l) arrays stay cache-sized
# FMI is three quarters of the metric time; its numpy kernels release the GIL, so chunks run on up to two
# threads (the CI machines have 2 cores). Results do not depend on the thread count.
_FMI_THREADS = max(1, min(2, os.cpu_count() or 1))


def _fmi_feature(x: np.ndarray, feature: str) -> np.ndarray:
    if feature == "gradient":
        return np.gradient(x, axis=-1)  # MATLAB gradient(): the horizontal derivative only
    return x


def _fmi_windows(x: np.ndarray, window: int) -> np.ndarray:
    """All window x window neighbourhoods of the slices of x (..., H, W), column-major flattened."""
    v = np.lib.stride_tricks.sliding_window_view(x, (window, window), axis=(-2, -1))
    v = np.swapaxes(v, -1, -2)  # MATLAB's sub(:) runs down the columns first
    return v.reshape(v.shape[:-2] + (window * window,))


def _fmi_pdf(win: np.ndarray) -> np.ndarray:
    lo = win.min(axis=1, keepdims=True)
    hi = win.max(axis=1, keepdims=True)
    span = hi - lo
    norm = np.where(span == 0, 1.0, (win - lo) / np.where(span == 0, 1.0, span))
    return norm / norm.sum(axis=1, keepdims=True)


def _entropy_bits(p: np.ndarray, axes) -> np.ndarray:
    """-sum p log2 |p| over the entries p != 0.

    The mixture joint pdf of fast-FMI can have negative entries (its weight phi may exceed 1); the
    reference keeps MATLAB's real(-p log2 p) = -p log2 |p| for them, and so does this.
    """
    mag = np.abs(p)
    np.maximum(mag, np.finfo(np.float64).tiny, out=mag)  # p == 0 then contributes 0 * finite = 0
    np.log2(mag, out=mag)
    mag *= p
    return -mag.sum(axis=axes)


def _fmi_joint_entropy(pa, pf, ca, cf, c, sd_a, sd_f, upper: bool) -> np.ndarray:
    """Joint entropy of Nelsen's mixture for windows whose correlation sign is ``upper`` (c >= 0) or not."""
    n, l = pa.shape
    cfi, caj = cf[:, :, None], ca[:, None, :]
    bound = np.zeros((n, l + 1, l + 1))  # joint CDF bound, zero row/column in front for the differences
    if upper:
        np.minimum(cfi, caj, out=bound[:, 1:, 1:])
    else:
        np.add(cfi, caj, out=bound[:, 1:, 1:])
        bound[:, 1:, 1:] -= 1.0
        np.maximum(bound[:, 1:, 1:], 0.0, out=bound[:, 1:, 1:])
    cov = bound.reshape(n, -1).sum(axis=1) - cf.sum(axis=1) * ca.sum(axis=1)
    degenerate = (sd_a == 0) | (sd_f == 0) | (cov == 0)
    if upper:
        degenerate |= c == 0
    mix = np.where(degenerate, 0.0, c * sd_f * sd_a / np.where(cov == 0, 1.0, cov))
    mass = np.diff(np.diff(bound, axis=1), axis=2)  # probability mass of the bound coupling
    indep = pf[:, :, None] * pa[:, None, :]
    # joint = mix * mass + (1 - mix) * indep
    mass -= indep
    mass *= mix[:, None, None]
    mass += indep
    return _entropy_bits(mass.reshape(n, -1), 1)


def _fmi_pair(a: np.ndarray, f: np.ndarray) -> np.ndarray:
    """Normalised feature MI of corresponding windows (n, l) of a source and the fused feature map."""
    out = np.ones(a.shape[0])  # identical patches score 1
    todo = np.flatnonzero(~np.all(a == f, axis=1))
    if todo.size == 0:
        return out
    a, f = a[todo], f[todo]
    l = a.shape[1]
    pa, pf = _fmi_pdf(a), _fmi_pdf(f)
    ca, cf = np.cumsum(pa, axis=1), np.cumsum(pf, axis=1)
    ta = pa - pa.mean(axis=1, keepdims=True)
    tf = pf - pf.mean(axis=1, keepdims=True)
    sxy = (ta * tf).sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        c = np.where(sxy == 0, 0.0, sxy / np.sqrt((ta * ta).sum(axis=1) * (tf * tf).sum(axis=1)))
    i = np.arange(1, l + 1, dtype=np.float64)
    sd_a = np.sqrt(np.maximum(pa @ (i * i) - (pa @ i) ** 2, 0.0))
    sd_f = np.sqrt(np.maximum(pf @ (i * i) - (pf @ i) ** 2, 0.0))
    h_joint = np.empty(todo.size)
    for upper in (True, False):
        sel = np.flatnonzero((c >= 0) == upper)
        if sel.size:
            h_joint[sel] = _fmi_joint_entropy(pa[sel], pf[sel], ca[sel], cf[sel], c[sel], sd_a[sel],
                                              sd_f[sel], upper)
    h_a = _entropy_bits(pa, 1)
    h_f = _entropy_bits(pf, 1)
    info = h_a + h_f - h_joint
    with np.errstate(divide="ignore", invalid="ignore"):
        out[todo] = np.where(info == 0, 0.0, 2.0 * info / (h_a + h_f))
    return out


def _fmi_slices(F: np.ndarray, X: np.ndarray, feature: str = "gradient", window: int = 3) -> np.ndarray:
    wf = _fmi_windows(_fmi_feature(F, feature), window)  # (S, h, w, l)
    s = wf.shape[0]
    per_window = wf.shape[1] * wf.shape[2]
    total = np.zeros(s * per_window)
    wf = wf.reshape(-1, window * window)
    starts = range(0, wf.shape[0], _FMI_CHUNK)
    for x in X:
        wx = _fmi_windows(_fmi_feature(x, feature), window).reshape(-1, window * window)

        def chunk(start, wx=wx):
            stop = start + _FMI_CHUNK
            return start, _fmi_pair(wx[start:stop], wf[start:stop])

        if _FMI_THREADS > 1 and len(starts) > 1:
            with ThreadPoolExecutor(_FMI_THREADS) as pool:
                parts = list(pool.map(chunk, starts))
        else:
            parts = [chunk(start) for start in starts]
        for start, values in parts:
            total[start:start + values.shape[0]] += values
    return total.reshape(s, per_window).mean(axis=1) / X.shape[0]


# --------------------------------------------------------------------------------------------------
# Public metrics
# --------------------------------------------------------------------------------------------------

def en(fused, *, axis: int = 0) -> float:
    """Entropy (EN) of the fused image, in bits.

    Parameters
    ----------
    fused : array_like
        Fused image (H, W) or volume (K, J, I), values in 0..255.
    axis : int, optional
        Slice axis of a volume (ignored for 2-D input).

    Returns
    -------
    float
        Shannon entropy; higher means more information (and more noise).

    Notes
    -----
    :math:`EN = -\\sum_{l=0}^{255} p_l \\log_2 p_l` with :math:`p_l` the fraction of pixels whose rounded
    value is :math:`l`. Values are rounded and clipped to 0..255 before counting (the reference casts
    ``round(F)`` to uint8, which wraps values outside that range instead).

    References
    ----------
    .. [1] J. W. Roberts, J. A. van Aardt, F. B. Ahmed, "Assessment of image fusion procedures using
           entropy, image quality, and multispectral classification", J. Appl. Remote Sens. 2(1), 2008.
    """
    F, X = _prepare(fused, None, axis, ("EN",), need_sources=False)
    return _reduce(_per_slice(_fused_only(_en_slices), F, X))


def mi(fused, sources, *, axis: int = 0) -> float:
    """Mutual information (MI) between the fused image and its sources, in nats, summed over sources.

    Parameters
    ----------
    fused : array_like
        Fused image (H, W) or volume (K, J, I), values in 0..255.
    sources : sequence of array_like
        Two or more source images of the same shape.
    axis : int, optional
        Slice axis of a volume.

    Returns
    -------
    float
        :math:`\\sum_i MI(F, S_i)` (a sum, not a mean, as in the reference; higher is better).

    Notes
    -----
    :math:`MI(F, A) = \\sum_{f,a} p_{FA}(f,a) \\ln \\frac{p_{FA}(f,a)}{p_F(f) p_A(a)}` from the joint
    histogram of the two integer-valued images (natural logarithm, as scikit-learn's
    ``mutual_info_score`` the reference calls). Values are rounded and clipped to 0..255 first, which is
    exact for protocol images (:func:`protocol_image`, :func:`protocol_fused`).

    References
    ----------
    .. [1] G. Qu, D. Zhang, P. Yan, "Information measure for performance of image fusion", Electronics
           Letters 38(7):313-315, 2002.
    """
    F, X = _prepare(fused, sources, axis, ("MI",))
    return _reduce(_per_slice(_mi_slices, F, X))


def fmi(fused, sources, *, axis: int = 0, feature: str = "gradient", window: int = 3) -> float:
    """Feature mutual information (FMI), Haghighat's fast-FMI, averaged over sources.

    Parameters
    ----------
    fused : array_like
        Fused image (H, W) or volume (K, J, I).
    sources : sequence of array_like
        Two or more source images of the same shape.
    axis : int, optional
        Slice axis of a volume.
    feature : {'gradient', 'none'}, optional
        Feature map the information is measured on. ``'gradient'`` (default) is the first output of
        MATLAB's ``gradient`` as in the reference code: the horizontal central difference (one-sided at
        the border); ``'none'`` uses the raw pixels (FMI_pixel).
    window : int, optional
        Odd side of the sliding window, default 3 (the reference default).

    Returns
    -------
    float
        Normalised FMI in [0, 1] (higher is better).

    Notes
    -----
    In every ``w x w`` window (valid positions only), each feature patch is min-max normalised (a
    constant patch becomes all ones) and divided by its sum to give a "pdf" over the :math:`l = w^2`
    positions (column-major order, as MATLAB). With :math:`c` the Pearson correlation of the two pdfs,
    the joint pdf is Nelsen's mixture of the independent and the Frechet bound couplings:
    :math:`p_{ij} = \\phi\\,\\Delta\\Delta B_{ij} + (1-\\phi) f_i a_j`, where :math:`B = \\min(F_i, A_j)`
    (upper bound, :math:`c \\ge 0`) or :math:`\\max(F_i + A_j - 1, 0)` (lower bound, :math:`c < 0`) on the
    CDFs and :math:`\\phi = c / \\mathrm{corr}(B)`. The window score is
    :math:`2 I / (H_a + H_f)` (1 where the patches are identical, 0 where :math:`I = 0`), and
    :math:`FMI = \\mathrm{mean}_{windows}\\, \\mathrm{mean}_i\\, FMI(S_i, F)` (the reference averages
    its two sources). Vectorised over windows in fixed-size chunks.

    References
    ----------
    .. [1] M. B. A. Haghighat, A. Aghagolzadeh, H. Seyedarabi, "A non-reference image fusion metric based
           on mutual information of image features", Computers & Electrical Engineering 37(5):744-756,
           2011.
    .. [2] M. Haghighat, M. A. Razian, "Fast-FMI: non-reference image fusion metric", Proc. 8th Int. Conf.
           Application of Information and Communication Technologies (AICT), 2014.
    """
    if feature not in ("gradient", "none"):
        raise FusionInputError(f"feature must be 'gradient' or 'none'; got {feature!r}")
    if isinstance(window, bool) or not isinstance(window, (int, np.integer)) or window < 3 or window % 2 == 0:
        raise FusionInputError(f"window must be an odd integer >= 3; got {window!r}")
    F, X = _prepare(fused, sources, axis, ("FMI",))
    if min(F.shape[1:]) < window:
        raise FusionInputError(f"slices of shape {F.shape[1:]} are smaller than the FMI window {window}")
    return _reduce(_per_slice(_fmi_slices, F, X, feature=feature, window=int(window)))
