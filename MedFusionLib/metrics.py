"""Reference-free fusion quality metrics (fused image F against its sources A, B, ...).

Fusion has no ground truth, so its quality is judged by how much of each source survives in F. This
module computes the 16 metrics most used in the medical-fusion literature, one public function each
(numpy in, float out), and :func:`evaluate_all` for the whole set in the fixed order :data:`METRICS`.

Convention
----------
Where the CDDFuse evaluator (Zhao et al., CVPR 2023) defines a metric, its convention is followed exactly,
quirks included, so that scores can be set beside published tables: EN, SD, SF, AG, MI, CC, PSNR, SCD,
VIF, Qabf, SSIM. The other metrics follow their original papers as implemented in the reference code the
literature uses (Haghighat's fast-FMI; Liu et al.'s toolbox for Qcb and Qcv; Shreyamsha Kumar's code for
Nabf; MONAI's MS-SSIM computation); each docstring says which parameters are used. See ``docs/metrics.md``.

- Images are scored in 0..255. :func:`protocol_image` turns an 8-bit RGB image into rounded luminance
  exactly as the evaluator reads images; :func:`protocol_fused` clips and rounds a fused result. The
  metric functions themselves take any finite real arrays and do not rescale them (EN and MI quantise to
  the integers 0..255, see there).
- ``sources`` is a sequence of two or more arrays of the fused image's shape. Metrics the references
  define for two sources are generalised to N sources in the way that reduces exactly to the two-source
  definition; each docstring states how (sum over sources for MI, VIF, SSIM, MS-SSIM; mean for CC, FMI
  and PSNR's MSE; SCD correlates F minus the mean of the other sources with each source;
  gradient-weighted pooling for Qabf, Nabf; saliency-weighted pooling for Qcb, Qcv).

2-D and 3-D
-----------
A 2-D input ``(H, W)`` is one image. A 3-D input ``(K, J, I)`` is a stack of 2-D slices along ``axis``
(default 0): every metric is computed on each slice and the slice values are averaged (arithmetic mean).
Slices on which a metric is undefined (NaN, e.g. a correlation with a constant slice, an edge metric on
slices without any edge) are left out of that mean; if the metric is undefined on every slice the result
is NaN. The per-slice computation is vectorised over the slice batch.

Inputs are never modified. Bad input (shapes differ, not 2-D/3-D, non-finite or non-real values, fewer
than two sources, slices too small for a metric's windows) raises
:class:`~MedFusionLib.errors.FusionInputError` before any work starts.

References
----------
.. [1] Z. Zhao et al., "CDDFuse: Correlation-Driven Dual-Branch Feature Decomposition for Multi-Modality
       Image Fusion", CVPR 2023 (evaluator: ``utils/Evaluator.py`` of the authors' code).
.. [2] Z. Liu et al., "Objective assessment of multiresolution image fusion algorithms for context
       enhancement in night vision: a comparative study", IEEE TPAMI 34(1):94-109, 2012.
.. [3] J. Ma, Y. Ma, C. Li, "Infrared and visible image fusion methods and applications: a survey",
       Information Fusion 45:153-178, 2019.
"""

from __future__ import annotations

import math
import os
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np
from scipy import ndimage

from .errors import FusionInputError

__all__ = ["METRICS", "HIGHER_IS_BETTER", "evaluate_all", "metrics_for_shape", "protocol_image", "protocol_fused",
           "en", "sd", "sf", "ag", "mi", "fmi", "cc", "psnr", "scd", "vif", "qabf", "nabf", "ssim",
           "ms_ssim", "qcb", "qcv"]

#: The metrics :func:`evaluate_all` returns, in this order.
METRICS: Tuple[str, ...] = ("EN", "SD", "SF", "AG", "MI", "FMI", "CC", "PSNR", "SCD", "VIF", "Qabf",
                            "Nabf", "SSIM", "MS-SSIM", "Qcb", "Qcv")
#: True where a larger value means a better fusion; Nabf (artefacts) and Qcv (distortion) are lower-better.
HIGHER_IS_BETTER: Dict[str, bool] = {name: name not in ("Nabf", "Qcv") for name in METRICS}

# Smallest slice side each metric's windows allow (the whole slice must hold them).
_VIF_SCALES = 4
_MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
_MS_SSIM_KERNEL = 11


def _vif_min_size() -> int:
    # Smallest side for which every one of the 4 'valid' scales keeps at least one pixel.
    n = 1
    while True:
        m, ok = n, True
        for scale in range(1, _VIF_SCALES + 1):
            taps = 2 ** (_VIF_SCALES + 1 - scale) + 1
            if scale > 1:
                m = m - (taps - 1)
                m = (m + 1) // 2 if m > 0 else 0
            if m - (taps - 1) < 1:
                ok = False
                break
        if ok:
            return n
        n += 1


_MIN_SIZE: Dict[str, int] = {
    "EN": 1, "SD": 1, "SF": 2, "AG": 2, "MI": 1, "FMI": 3, "CC": 1, "PSNR": 1, "SCD": 1,
    "VIF": _vif_min_size(), "Qabf": 1, "Nabf": 2, "SSIM": 7,
    # MONAI's check for 5 scales: side // 16 must exceed kernel_size - 1.
    "MS-SSIM": 16 * _MS_SSIM_KERNEL, "Qcb": 1, "Qcv": 1,
}


# --------------------------------------------------------------------------------------------------
# Reading images as the protocol does
# --------------------------------------------------------------------------------------------------

def protocol_image(image, *, rgb: Optional[bool] = None) -> np.ndarray:
    """An image as the published protocol scores it: luminance in 0..255, float64.

    Parameters
    ----------
    image : array_like
        An RGB(A) image ``(..., 3)`` or ``(..., 4)`` (8-bit values; alpha is ignored, as OpenCV's
        ``imread`` does) or a grey image / volume.
    rgb : bool, optional
        Whether the last axis holds colour channels. By default it does when ``image`` has 3 or 4 axes
        and the last has length 3 or 4; pass ``rgb=False`` for a grey volume whose last side is 3 or 4.

    Returns
    -------
    numpy.ndarray
        float64; for colour input the rounded luminance ``Y = 0.299 R + 0.587 G + 0.114 B``.

    Notes
    -----
    The CDDFuse evaluator reads images with ``cv2.imread(...).astype('float32')`` and
    ``np.round(cv2.cvtColor(img, cv2.COLOR_BGR2GRAY))``. OpenCV computes that luminance in float32 as
    ``fma(R, 0.299f, fma(G, 0.587f, B * 0.114f))``; some pixels of pseudo-colour images fall exactly on
    a half-integer, where the float32 rounding decides the result, so the same float32 arithmetic is
    reproduced here (each fused multiply-add is exact in float64, then rounded once to float32), followed
    by round-half-to-even. Grey input is returned as float64 unchanged.
    """
    x = _as_real_array(image, "image")
    if rgb is None:
        rgb = x.ndim in (3, 4) and x.shape[-1] in (3, 4)
    if not rgb:
        return x.astype(np.float64)
    if x.ndim < 3 or x.shape[-1] not in (3, 4):
        raise FusionInputError(f"rgb=True needs a last axis of 3 (RGB) or 4 (RGBA) channels; "
                               f"got shape {x.shape}")
    chan = x.astype(np.float32)
    red, green, blue = (chan[..., k].astype(np.float64) for k in range(3))
    c_r, c_g, c_b = (float(np.float32(c)) for c in (0.299, 0.587, 0.114))
    # float32 products and sums of 8-bit values are exact in float64: one rounding per fma, as OpenCV.
    t = (blue * c_b).astype(np.float32).astype(np.float64)
    t = (green * c_g + t).astype(np.float32).astype(np.float64)
    y = (red * c_r + t).astype(np.float32)
    return np.round(y).astype(np.float64)


def protocol_fused(fused) -> np.ndarray:
    """A fused result as the protocol scores it: clipped to 0..255 and rounded, float64.

    Parameters
    ----------
    fused : array_like
        The fused image in 0..255 units (any real dtype).

    Returns
    -------
    numpy.ndarray
        ``round(clip(fused, 0, 255))`` (round half to even, as ``numpy.round``), float64.
    """
    x = _as_real_array(fused, "fused")
    return np.round(np.clip(x.astype(np.float64), 0.0, 255.0))


# --------------------------------------------------------------------------------------------------
# Input validation and slice stacks
# --------------------------------------------------------------------------------------------------

def _as_real_array(x, what: str) -> np.ndarray:
    try:
        a = np.asarray(x)
    except Exception as exc:  # ragged nested lists and the like
        raise FusionInputError(f"{what} must be a numeric array; could not convert it ({exc})") from None
    if a.dtype == bool or not (np.issubdtype(a.dtype, np.integer) or np.issubdtype(a.dtype, np.floating)):
        raise FusionInputError(f"{what} must hold real numbers (integer or float dtype); got dtype {a.dtype}")
    return a


def _check_axis(axis, ndim: int) -> int:
    if isinstance(axis, bool) or not isinstance(axis, (int, np.integer)):
        raise FusionInputError(f"axis must be an integer; got {axis!r}")
    if ndim == 3 and not -3 <= axis <= 2:
        raise FusionInputError(f"axis must be in -3..2 for a 3-D volume; got {axis}")
    return int(axis) % 3 if ndim == 3 else 0


def _slices(a: np.ndarray, axis: int) -> np.ndarray:
    """(S, H, W) float64 view/copy of a 2-D image (S = 1) or a 3-D volume sliced along ``axis``."""
    a = a.astype(np.float64, copy=False)
    return a[None] if a.ndim == 2 else np.moveaxis(a, axis, 0)


def _prepare(fused, sources, axis, names: Sequence[str], need_sources: bool = True):
    """Validate the inputs for the metrics ``names``; return F (S, H, W) and X (N, S, H, W), float64.

    The returned arrays may be views of the inputs: callers never write into them.
    """
    f = _as_real_array(fused, "fused")
    if f.ndim not in (2, 3):
        raise FusionInputError(f"fused must be a 2-D image (H, W) or a 3-D volume (K, J, I); "
                               f"got {f.ndim}-D shape {f.shape}")
    srcs: List[np.ndarray] = []
    if need_sources:
        if sources is None or isinstance(sources, (str, bytes)):
            raise FusionInputError("sources must be a sequence of at least 2 arrays (A, B, ...)")
        if isinstance(sources, np.ndarray):
            if sources.ndim != f.ndim + 1:
                raise FusionInputError(
                    f"sources given as one array must stack the sources on axis 0, shape (N, *{f.shape}); "
                    f"got shape {sources.shape}")
            items = list(sources)
        else:
            try:
                items = list(sources)
            except TypeError:
                raise FusionInputError("sources must be a sequence of at least 2 arrays (A, B, ...); "
                                       f"got {type(sources).__name__}") from None
        if len(items) < 2:
            raise FusionInputError(f"need at least 2 source images; got {len(items)}")
        for k, s in enumerate(items):
            a = _as_real_array(s, f"sources[{k}]")
            if a.shape != f.shape:
                raise FusionInputError(f"sources[{k}] has shape {a.shape}, but fused has shape {f.shape}: "
                                       "all images must have the same shape")
            srcs.append(a)
    ax = _check_axis(axis, f.ndim)
    for k, a in enumerate([f] + srcs):
        if not np.all(np.isfinite(a)):
            what = "fused" if k == 0 else f"sources[{k - 1}]"
            raise FusionInputError(f"{what} contains NaN or infinite values; only finite values are allowed")
    F = _slices(f, ax)
    side = min(F.shape[1:])
    need = max((_MIN_SIZE[n] for n in names), default=1)
    if side < need:
        small = ", ".join(f"{n} >= {_MIN_SIZE[n]}" for n in names if _MIN_SIZE[n] > side)
        raise FusionInputError(
            f"slices of shape {F.shape[1:]} are too small for the windows of {small} pixels per side"
            + (" (evaluate_all: pass metrics=... without these)" if len(names) > 1 else ""))
    X = np.stack([_slices(a, ax) for a in srcs]) if srcs else np.empty((0,) + F.shape)
    return F, X


# Slices are processed in blocks of at most this many pixels per image: vectorised within a block, with
# memory bounded for large volumes (the metrics make a few dozen temporaries of the block's size).
_BLOCK_PIXELS = 1 << 20


def _per_slice(kernel: Callable[..., np.ndarray], F: np.ndarray, X: np.ndarray, **kw) -> np.ndarray:
    step = max(1, _BLOCK_PIXELS // (F.shape[1] * F.shape[2]))
    if F.shape[0] <= step:
        return kernel(F, X, **kw)
    return np.concatenate([kernel(F[k:k + step], X[:, k:k + step], **kw) for k in range(0, F.shape[0], step)])


def _reduce(per_slice: np.ndarray) -> float:
    """Mean over the slices on which the metric is defined; NaN if it is defined on none."""
    v = np.asarray(per_slice, dtype=np.float64).ravel()
    ok = ~np.isnan(v)
    return float(v[ok].mean()) if ok.any() else float("nan")


def _pearson(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Pearson correlation over the last two axes (NaN where either is constant)."""
    xm = x - x.mean(axis=(-2, -1), keepdims=True)
    ym = y - y.mean(axis=(-2, -1), keepdims=True)
    num = (xm * ym).sum(axis=(-2, -1))
    den = np.sqrt((xm * xm).sum(axis=(-2, -1)) * (ym * ym).sum(axis=(-2, -1)))
    with np.errstate(divide="ignore", invalid="ignore"):
        return num / den


def _filter2(x: np.ndarray, kernel: np.ndarray, mode: str = "constant", convolve: bool = False) -> np.ndarray:
    """2-D correlation (or convolution) of every slice of ``x`` (..., H, W), 'same' size."""
    k = kernel.reshape((1,) * (x.ndim - 2) + kernel.shape)
    op = ndimage.convolve if convolve else ndimage.correlate
    return op(x, k, mode=mode, cval=0.0)


def _separable(x: np.ndarray, taps: np.ndarray, mode: str = "constant") -> np.ndarray:
    """Correlate the last two axes with the 1-D ``taps`` ('same' size, zero padding by default)."""
    y = ndimage.correlate1d(x, taps, axis=-1, mode=mode, cval=0.0)
    return ndimage.correlate1d(y, taps, axis=-2, mode=mode, cval=0.0)


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


def _sd_slices(F: np.ndarray) -> np.ndarray:
    return F.std(axis=(1, 2))


def _sf_slices(F: np.ndarray) -> np.ndarray:
    rf2 = np.mean(np.diff(F, axis=2) ** 2, axis=(1, 2))
    cf2 = np.mean(np.diff(F, axis=1) ** 2, axis=(1, 2))
    return np.sqrt(rf2 + cf2)


def _ag_slices(F: np.ndarray) -> np.ndarray:
    gx = np.gradient(F, axis=2)
    gy = np.gradient(F, axis=1)
    return np.mean(np.sqrt((gx * gx + gy * gy) / 2.0), axis=(1, 2))


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


def _ssim_slices(F: np.ndarray, X: np.ndarray) -> np.ndarray:
    from skimage.metrics import structural_similarity

    out = np.zeros(F.shape[0])
    for x in X:
        # skimage's function takes one 2-D image pair at a time: a loop over slices is unavoidable here.
        out = out + np.array([structural_similarity(F[k], x[k], data_range=2.0) for k in range(F.shape[0])])
    return out


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
    return _reduce(_per_slice(_SLICE_KERNELS["EN"], F, X))


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
    return _reduce(_per_slice(_SLICE_KERNELS["SD"], F, X))


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
    return _reduce(_per_slice(_SLICE_KERNELS["SF"], F, X))


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
    return _reduce(_per_slice(_SLICE_KERNELS["AG"], F, X))


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


_SLICE_KERNELS: Dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    "EN": lambda F, X: _en_slices(F),
    "SD": lambda F, X: _sd_slices(F),
    "SF": lambda F, X: _sf_slices(F),
    "AG": lambda F, X: _ag_slices(F),
    "MI": _mi_slices,
    "FMI": _fmi_slices,
    "CC": _cc_slices,
    "PSNR": _psnr_slices,
    "SCD": _scd_slices,
    "VIF": _vif_slices,
    "Qabf": _qabf_slices,
    "Nabf": _nabf_slices,
    "SSIM": _ssim_slices,
    "MS-SSIM": _ms_ssim_slices,
    "Qcb": _qcb_slices,
    "Qcv": _qcv_slices,
}


def metrics_for_shape(shape: Sequence[int], *, axis: int = 0) -> Tuple[str, ...]:
    """The metrics of :data:`METRICS` whose windows fit slices of an image or volume of ``shape``.

    Parameters
    ----------
    shape : sequence of int
        Shape of a 2-D image or 3-D volume.
    axis : int, optional
        Slice axis of a volume.

    Returns
    -------
    tuple of str
        In the order of :data:`METRICS`; pass it as ``evaluate_all(..., metrics=...)`` to score images too
        small for some metric (MS-SSIM needs 176 x 176 slices, VIF 41 x 41, SSIM 7 x 7).
    """
    shape = tuple(int(n) for n in shape)
    if len(shape) not in (2, 3):
        raise FusionInputError(f"shape must be that of a 2-D image or a 3-D volume; got {shape}")
    ax = _check_axis(axis, len(shape))
    side = min(shape) if len(shape) == 2 else min(n for k, n in enumerate(shape) if k != ax)
    return tuple(name for name in METRICS if side >= _MIN_SIZE[name])


def evaluate_all(fused, sources, *, axis: int = 0,
                 metrics: Optional[Iterable[str]] = None) -> Dict[str, float]:
    """All reference-free metrics of a fused image, in the fixed order :data:`METRICS`.

    Parameters
    ----------
    fused : array_like
        Fused image (H, W) or volume (K, J, I), values in 0..255 (see :func:`protocol_fused`).
    sources : sequence of array_like
        Two or more co-registered source images of the same shape (see :func:`protocol_image`).
    axis : int, optional
        Slice axis of a volume; each metric is computed per slice and averaged over slices.
    metrics : iterable of str, optional
        A subset of :data:`METRICS` (default: all). Slices smaller than 176 x 176 need a subset without
        MS-SSIM (VIF needs 41 x 41, SSIM 7 x 7): :func:`metrics_for_shape` gives the largest one.

    Returns
    -------
    dict of str to float
        Metric name to value, in the order of :data:`METRICS`; :data:`HIGHER_IS_BETTER` says which way
        each points. FMI uses its defaults (gradient feature, 3 x 3 window).

    Raises
    ------
    FusionInputError
        On bad input, before any metric is computed.
    """
    if metrics is None:
        # Every metric; those whose windows do not fit the slices (MS-SSIM below 176 x 176, VIF below
        # 41 x 41, SSIM below 7 x 7) are reported as NaN rather than failing the whole evaluation.
        shape = np.shape(fused)
        fits = set(metrics_for_shape(shape, axis=axis)) if len(shape) in (2, 3) else set(METRICS)
        names = [m for m in METRICS if m in fits]
        if not names:
            names = list(METRICS)   # let _prepare report what is wrong
        F, X = _prepare(fused, sources, axis, names)
        return {name: (_reduce(_per_slice(_SLICE_KERNELS[name], F, X)) if name in fits else float("nan"))
                for name in METRICS}
    else:
        wanted = [metrics] if isinstance(metrics, str) else list(metrics)
        unknown = [m for m in wanted if m not in METRICS]
        if unknown:
            raise FusionInputError(f"unknown metric(s) {unknown}; allowed: {', '.join(METRICS)}")
        names = [m for m in METRICS if m in wanted]
    F, X = _prepare(fused, sources, axis, names)
    return {name: _reduce(_per_slice(_SLICE_KERNELS[name], F, X)) for name in names}
