"""Activity measures and neural fusion rules for transform-domain (NSST, NSCT) coefficients.

Same conventions as :mod:`MedFusionLib.rules`: bands are ``(N, *batch, H, W)`` (N sources first, then any
batch axes; the last two axes spatial, these rules are 2-D), activity maps have the shape of the bands,
and a rule returns the fused band ``(*batch, H, W)``. Pulse-coupled models run vectorised over every
source, batch image and pixel at once; only the iterations of the model are a Python loop, processed in
cache-sized chunks of images (optionally on two threads).

Contents
--------
* local measures: :func:`modified_laplacian`, :func:`wsml` (weighted sum-modified Laplacian),
  :func:`wseml` (weighted sum of eight-neighbourhood modified Laplacian), :func:`weighted_local_energy`,
  :func:`modified_spatial_frequency`, :func:`modified_average_gradient`, :func:`wncc` (weighted
  normalised cross-correlation), :func:`otsu_threshold`;
* pulse-coupled models: :func:`pcnn_firing_times` (classic simplified PCNN), :func:`pa_pcnn_parameters`
  and :func:`pa_pcnn_firing_times` (parameter-adaptive PCNN), :func:`dual_channel_scm` (N-channel
  spiking cortical model);
* rules: :func:`choose_by_activity`, :func:`similarity_rule`.

References
----------
.. [1] M. Yin, X. Liu, Y. Liu, X. Chen, "Medical image fusion with parameter-adaptive pulse coupled
       neural network in nonsubsampled shearlet transform domain", IEEE Trans. Instrum. Meas.
       68(1):49-64, 2019.
.. [2] X.-B. Qu, J.-W. Yan, H.-Z. Xiao, Z.-Q. Zhu, "Image fusion algorithm based on spatial frequency-
       motivated pulse coupled neural networks in nonsubsampled contourlet transform domain", Acta
       Automatica Sinica 34(12):1508-1514, 2008.
.. [3] K. Zhan, H. Zhang, Y. Ma, "New spiking cortical model for invariant texture retrieval and image
       processing", IEEE Trans. Neural Networks 20(12):1980-1986, 2009.
.. [4] R. Hou, D. Zhou, R. Nie, D. Liu, X. Ruan, "Brain CT and MRI medical image fusion using
       convolutional neural networks and a dual-channel spiking cortical model", Med. Biol. Eng. Comput.
       57(4):887-900, 2019.
.. [5] W. Huang, Z. Jing, "Evaluation of focus measures in multi-focus image fusion", Pattern
       Recognition Letters 28(4):493-500, 2007 (sum-modified Laplacian).
.. [6] N. Otsu, "A threshold selection method from gray-level histograms", IEEE Trans. SMC 9(1):62-66,
       1979.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from typing import Optional, Tuple

import numpy as np
from scipy import ndimage as ndi

from .rules import argmax_sources, select

#: 3x3 weights of the weighted measures (Yin et al. eq. 15-17): [1 2 1; 2 4 2; 1 2 1] / 16.
BINOMIAL_3X3 = np.array([[1.0, 2.0, 1.0], [2.0, 4.0, 2.0], [1.0, 2.0, 1.0]], dtype=np.float32) / 16.0

# Elements per chunk of the pulse-coupled loops: small enough that the dozen state arrays stay in cache.
_CHUNK_ELEMENTS = 1 << 17
# Threads over chunks only pay off with spare cores (the loops are memory-bound).
_THREADS = 1 if (os.cpu_count() or 1) <= 2 else min(4, (os.cpu_count() or 1) // 2)


def _as_float(x) -> np.ndarray:
    x = np.asarray(x)
    return x if x.dtype in (np.float32, np.float64) else x.astype(np.float32)


def _filter2(x: np.ndarray, kernel: np.ndarray, mode: str = "mirror") -> np.ndarray:
    """2-D correlation of the last two axes with a small kernel (batch axes untouched)."""
    k = np.asarray(kernel, dtype=x.dtype).reshape((1,) * (x.ndim - 2) + kernel.shape)
    return ndi.correlate(x, k, mode=mode)


def _shift(padded: np.ndarray, di: int, dj: int, h: int, w: int) -> np.ndarray:
    """View of the (1-padded) array shifted by (di, dj): value at (i + di, j + dj)."""
    return padded[..., 1 + di:1 + di + h, 1 + dj:1 + dj + w]


def modified_laplacian(band: np.ndarray, diagonal: bool = False) -> np.ndarray:
    """Modified Laplacian |2C - C_up - C_down| + |2C - C_left - C_right| of every image.

    With ``diagonal=True`` the eight-neighbourhood version of Yin et al. (eq. 17), adding
    (|2C - C_ul - C_dr| + |2C - C_ur - C_dl|) / sqrt(2). Borders are mirrored (symmetric padding, as
    MATLAB's padarray 'symmetric').
    """
    c = _as_float(band)
    h, w = c.shape[-2:]
    pad = [(0, 0)] * (c.ndim - 2) + [(1, 1), (1, 1)]
    p = np.pad(c, pad, mode="symmetric")
    two_c = 2 * c
    out = np.abs(two_c - _shift(p, -1, 0, h, w) - _shift(p, 1, 0, h, w))
    out += np.abs(two_c - _shift(p, 0, -1, h, w) - _shift(p, 0, 1, h, w))
    if diagonal:
        diag = np.abs(two_c - _shift(p, -1, -1, h, w) - _shift(p, 1, 1, h, w))
        diag += np.abs(two_c - _shift(p, -1, 1, h, w) - _shift(p, 1, -1, h, w))
        out += diag * np.float32(1 / np.sqrt(2))
    return out


def wsml(band: np.ndarray, weights: np.ndarray = BINOMIAL_3X3) -> np.ndarray:
    """Weighted sum-modified Laplacian: sum over the 3x3 window of W(m, n) ML(i+m, j+n)^2.

    The sum-modified Laplacian of Nayar and Huang & Jing [5], with the binomial weights that give more
    importance to the centre (as the weighted measures of Yin et al.).
    """
    ml = modified_laplacian(band)
    return _filter2(ml * ml, weights)


def wseml(band: np.ndarray, weights: np.ndarray = BINOMIAL_3X3) -> np.ndarray:
    """Weighted sum of eight-neighbourhood modified Laplacian (Yin et al. eq. 16-17):
    WSEML = sum W(m, n) EML(i+m, j+n), EML the eight-neighbourhood modified Laplacian (mirrored borders).
    Not the authors' ``WSEML.m``, which sums |C - neighbour| and filters sqrt of its 3x3 mean with W
    ('symmetric' borders); see ``docs/signal-processing.md``."""
    return _filter2(modified_laplacian(band, diagonal=True), weights)


def weighted_local_energy(band: np.ndarray, weights: np.ndarray = BINOMIAL_3X3) -> np.ndarray:
    """Weighted local energy (Yin et al. eq. 15): WLE = sum W(m, n) C(i+m, j+n)^2 (mirrored borders; the
    authors' ``WLE.m`` mirrors the same way but leaves the 4 corner samples of the extension 0)."""
    c = _as_float(band)
    return _filter2(c * c, weights)


def modified_spatial_frequency(band: np.ndarray, window: int = 3) -> np.ndarray:
    """Local spatial frequency with diagonal terms over a ``window``^2 neighbourhood:
    sqrt(RF^2 + CF^2 + (MDF^2 + SDF^2) / 2), each term the local mean of squared neighbour differences
    (row, column, main and secondary diagonal)."""
    c = _as_float(band)
    h, w = c.shape[-2:]
    p = np.pad(c, [(0, 0)] * (c.ndim - 2) + [(1, 1), (1, 1)], mode="symmetric")
    rf = (c - _shift(p, 0, -1, h, w)) ** 2
    cf = (c - _shift(p, -1, 0, h, w)) ** 2
    md = (c - _shift(p, -1, -1, h, w)) ** 2
    sd = (c - _shift(p, -1, 1, h, w)) ** 2
    total = rf + cf + 0.5 * (md + sd)
    size = (1,) * (c.ndim - 2) + (window, window)
    return np.sqrt(ndi.uniform_filter(total, size=size, mode="mirror"))


def modified_average_gradient(band: np.ndarray, window: int = 3) -> np.ndarray:
    """Local average gradient including the diagonals, the stimulus of Hou et al.'s DCSCM:
    mean over the window of sqrt((dx^2 + dy^2) / 2 + (dd1^2 + dd2^2) / 4)."""
    c = _as_float(band)
    h, w = c.shape[-2:]
    p = np.pad(c, [(0, 0)] * (c.ndim - 2) + [(1, 1), (1, 1)], mode="symmetric")
    dx = c - _shift(p, 0, 1, h, w)
    dy = c - _shift(p, 1, 0, h, w)
    d1 = c - _shift(p, 1, 1, h, w)
    d2 = c - _shift(p, 1, -1, h, w)
    g = np.sqrt(0.5 * (dx * dx + dy * dy) + 0.25 * (d1 * d1 + d2 * d2))
    size = (1,) * (c.ndim - 2) + (window, window)
    return ndi.uniform_filter(g, size=size, mode="mirror")


def otsu_threshold(values: np.ndarray, bins: int = 256) -> np.ndarray:
    """Otsu's threshold of every image (last two axes), over ``bins`` bins spanning [0, max] of that
    image; values are assumed non-negative. Returns an array of the batch shape (0 where max is 0)."""
    v = np.asarray(values, dtype=np.float64)
    batch = v.shape[:-2]
    flat = v.reshape(-1, v.shape[-2] * v.shape[-1])
    top = flat.max(axis=1)
    scale = np.where(top > 0, (bins - 1) / np.where(top > 0, top, 1.0), 0.0)
    idx = np.clip(np.rint(flat * scale[:, None]).astype(np.int64), 0, bins - 1)
    offsets = (np.arange(flat.shape[0]) * bins)[:, None]
    hist = np.bincount((idx + offsets).ravel(), minlength=flat.shape[0] * bins).reshape(-1, bins).astype(np.float64)
    prob = hist / flat.shape[1]
    omega = np.cumsum(prob, axis=1)
    mu = np.cumsum(prob * np.arange(bins), axis=1)
    mu_t = mu[:, -1:]
    with np.errstate(divide="ignore", invalid="ignore"):
        sigma_b = (mu_t * omega - mu) ** 2 / (omega * (1 - omega))
    sigma_b = np.nan_to_num(sigma_b, nan=-1.0, posinf=-1.0)
    # As MATLAB's graythresh: the mean position of the maxima (a plateau between well-separated modes).
    best = sigma_b.max(axis=1, keepdims=True)
    at_max = sigma_b >= best - 1e-12 * np.abs(best)
    level = (at_max * np.arange(bins)).sum(axis=1) / at_max.sum(axis=1) / (bins - 1)
    return (level * top).reshape(batch)


# --- pulse-coupled models -----------------------------------------------------------------------------
def _chunks(total: int, per_item: int):
    step = max(1, _CHUNK_ELEMENTS // max(per_item, 1))
    return [(s, min(s + step, total)) for s in range(0, total, step)]


def _run_chunked(fn, n_items: int, per_item: int, threads: Optional[int]) -> None:
    ranges = _chunks(n_items, per_item)
    workers = _THREADS if threads is None else max(1, int(threads))
    if workers == 1 or len(ranges) == 1:
        for a, b in ranges:
            fn(a, b)
        return
    with ThreadPoolExecutor(max_workers=workers) as pool:
        list(pool.map(lambda ab: fn(*ab), ranges))


def _neighbour_sum(padded: np.ndarray, corner: float, edge: float, h: int, w: int, out: np.ndarray,
                   tmp_rows: np.ndarray) -> np.ndarray:
    """out = sum over the 8 neighbours with weight ``edge`` (4-neighbours) and ``corner`` (diagonals),
    for a zero-bordered padded array (zero 'same' boundary, as MATLAB's conv2)."""
    np.add(padded[:, :, :-2], padded[:, :, 2:], out=tmp_rows)           # left + right, every padded row
    np.add(tmp_rows[:, :-2], tmp_rows[:, 2:], out=out)                  # the 4 diagonal neighbours
    if corner != 1.0:
        out *= np.float32(corner)
    if edge != 1.0:
        out += np.float32(edge) * (tmp_rows[:, 1:-1] + padded[:, :-2, 1:-1] + padded[:, 2:, 1:-1])
    else:
        out += tmp_rows[:, 1:-1]
        out += padded[:, :-2, 1:-1]
        out += padded[:, 2:, 1:-1]
    return out


def pa_pcnn_parameters(stimulus: np.ndarray) -> Tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The adaptive parameters of the PA-PCNN (Yin et al. 2019, eq. 9-12) of every image.

    With S the stimulus of one image, sigma its standard deviation, S_max its maximum and S' its Otsu
    threshold:  alpha_f = log10(1 / sigma) (the authors' code; the paper writes log),
    lambda = beta V_L = (S_max / S' - 1) / 6,  V_E = exp(-alpha_f) + 1 + 6 lambda,
    alpha_e = ln(V_E / (S' ((1 - exp(-3 alpha_f)) / (1 - exp(-alpha_f)) + 6 lambda exp(-alpha_f)))).

    Returns
    -------
    (decay_f, lam, v_e, decay_e) : arrays of the batch shape
        decay_f = exp(-alpha_f), decay_e = exp(-alpha_e). Images whose stimulus is constant or zero
        get parameters that never fire.
    """
    s = np.asarray(stimulus, dtype=np.float64)
    flat = s.reshape(-1, s.shape[-2] * s.shape[-1])
    sigma = flat.std(axis=1, ddof=1) if flat.shape[1] > 1 else np.zeros(flat.shape[0])
    s_max = flat.max(axis=1)
    s_otsu = otsu_threshold(s.reshape(-1, *s.shape[-2:]))
    valid = (sigma > 0) & (s_otsu > 0) & (s_max > 0)
    sigma = np.where(valid, np.minimum(sigma, 0.999), 0.5)
    s_otsu = np.where(valid, s_otsu, 1.0)
    alpha_f = np.log10(1.0 / sigma)
    decay_f = np.exp(-alpha_f)
    lam = np.where(valid, (s_max / s_otsu - 1.0) / 6.0, 0.0)
    v_e = decay_f + 1.0 + 6.0 * lam
    geometric = np.where(alpha_f > 1e-9, (1 - np.exp(-3 * alpha_f)) / np.maximum(1 - decay_f, 1e-12), 3.0)
    alpha_e = np.log(v_e / (s_otsu * (geometric + 6.0 * lam * decay_f)))
    decay_e = np.exp(-alpha_e)
    v_e = np.where(valid, v_e, 1e30)            # threshold never reached: no firing
    shape = s.shape[:-2]
    return (decay_f.reshape(shape), lam.reshape(shape), v_e.reshape(shape), decay_e.reshape(shape))


def pa_pcnn_firing_times(stimulus: np.ndarray, iterations: int = 110, linking_scale=None,
                         threads: Optional[int] = None, check=None) -> np.ndarray:
    """Firing times T of the parameter-adaptive PCNN of Yin et al. 2019 for every image.

    Model (eq. 4-8), per neuron (i, j), for n = 1..``iterations``, with F = S = |stimulus|:
    U[n] = exp(-alpha_f) U[n-1] + F (1 + lambda sum_kl W_ijkl Y_kl[n-1]),  Y[n] = [U[n] > E[n-1]],
    E[n] = exp(-alpha_e) E[n-1] + V_E Y[n],  T[n] = T[n-1] + Y[n];  U[0] = Y[0] = T[0] = 0, E[0] = 1,
    W = [0.5 1 0.5; 1 0 1; 0.5 1 0.5], zero outside the image; parameters from
    :func:`pa_pcnn_parameters`, per image.

    Parameters
    ----------
    stimulus : ndarray (..., H, W)
        Any batch of images (sources, slices, bands); the absolute value is used.
    iterations : int
        Number of iterations (paper: 110).
    linking_scale : ndarray, optional
        Per-neuron factor on the linking strength lambda (broadcastable to ``stimulus``), for adaptive
        linking (the ABNM variant); None keeps Yin et al.'s uniform lambda.
    threads : int, optional
        Threads over chunks of images (default up to 2).
    check : callable, optional
        Called between chunks (cancellation).

    Returns
    -------
    ndarray, float32, same shape: the number of times each neuron fired.
    """
    s = np.abs(_as_float(stimulus)).astype(np.float32, copy=False)
    batch, (h, w) = s.shape[:-2], s.shape[-2:]
    flat = s.reshape(-1, h, w)
    decay_f, lam, v_e, decay_e = (np.asarray(p, dtype=np.float32).reshape(-1, 1, 1)
                                  for p in pa_pcnn_parameters(flat))
    scale = None if linking_scale is None else \
        np.broadcast_to(np.asarray(linking_scale, dtype=np.float32), s.shape).reshape(-1, h, w)
    if iterations > 255:
        raise ValueError(f"iterations must be at most 255 (firing counts are stored as uint8); got {iterations}")
    out = np.zeros(flat.shape, dtype=np.uint8)

    def run(a, b):
        if check is not None:
            check()
        f = flat[a:b]
        m = b - a
        # Pulses are 0/1: keep them (and the integer neighbour sums 2K = diagonals + 2 edges <= 12) in
        # uint8, a quarter of the memory traffic of float32; the result is identical.
        padded = np.zeros((m, h + 2, w + 2), dtype=np.uint8)
        y = padded[:, 1:-1, 1:-1]
        rows = np.empty((m, h + 2, w), np.uint8)
        k2 = np.empty((m, h, w), np.uint8)
        edges = np.empty((m, h, w), np.uint8)
        u = np.zeros((m, h, w), np.float32)
        e = np.ones((m, h, w), np.float32)
        tmp = np.empty((m, h, w), np.float32)
        half_g = f * (lam[a:b] * np.float32(0.5))           # lambda F K = (lambda F / 2) (2K)
        if scale is not None:
            half_g = half_g * scale[a:b]
        fired = np.empty((m, h, w), bool)
        t = out[a:b]
        df, de, ve = decay_f[a:b], decay_e[a:b], v_e[a:b]
        for _ in range(iterations):
            np.add(padded[:, :, :-2], padded[:, :, 2:], out=rows)       # left + right of every row
            np.add(rows[:, :-2], rows[:, 2:], out=k2)                   # 4 diagonal neighbours
            np.add(rows[:, 1:-1], padded[:, :-2, 1:-1], out=edges)
            edges += padded[:, 2:, 1:-1]                                # 4 edge neighbours
            k2 += edges
            k2 += edges
            u *= df
            u += f
            np.multiply(half_g, k2, out=tmp)
            u += tmp
            np.greater(u, e, out=fired)
            e *= de
            np.multiply(fired, ve, out=tmp)
            e += tmp
            np.copyto(y, fired, casting="unsafe")
            t += fired

    _run_chunked(run, flat.shape[0], h * w, threads)
    return out.reshape(batch + (h, w)).astype(np.float32)


def pcnn_firing_times(stimulus: np.ndarray, iterations: int = 200, alpha_l: float = 0.06931,
                      alpha_theta: float = 0.2, beta=0.2, v_l: float = 1.0, v_theta: float = 20.0,
                      corner: float = 0.707, threads: Optional[int] = None, check=None) -> np.ndarray:
    """Firing times of the classic simplified PCNN used for transform-domain fusion (Qu et al. 2008).

    F = S, L[n] = exp(-alpha_L) L[n-1] + V_L sum W Y[n-1], U[n] = F (1 + beta L[n]),
    theta[n] = exp(-alpha_theta) theta[n-1] + V_theta Y[n-1], Y[n] = [U[n] > theta[n]], T += Y; all
    states start at 0, W = [c 1 c; 1 0 1; c 1 c] with c = ``corner``. Defaults are Qu et al.'s
    (alpha_L = 0.06931, alpha_theta = 0.2, beta = 0.2, V_L = 1, V_theta = 20, c = 0.707, 200
    iterations). ``beta`` may be an array broadcastable to ``stimulus`` (per-pixel linking strength).
    """
    s = _as_float(stimulus).astype(np.float32, copy=False)
    batch, (h, w) = s.shape[:-2], s.shape[-2:]
    flat = s.reshape(-1, h, w)
    beta_arr = np.broadcast_to(np.asarray(beta, dtype=np.float32), s.shape).reshape(-1, h, w)
    out = np.zeros(flat.shape, dtype=np.float32)
    dl, dt = np.float32(np.exp(-alpha_l)), np.float32(np.exp(-alpha_theta))

    def run(a, b):
        if check is not None:
            check()
        f = flat[a:b]
        m = b - a
        padded = np.zeros((m, h + 2, w + 2), dtype=np.float32)
        y = padded[:, 1:-1, 1:-1]
        link = np.zeros((m, h, w), np.float32)
        theta = np.zeros((m, h, w), np.float32)
        u = np.empty((m, h, w), np.float32)
        k = np.empty((m, h, w), np.float32)
        rows = np.empty((m, h + 2, w), np.float32)
        fb = f * beta_arr[a:b]
        t = out[a:b]
        for _ in range(iterations):
            _neighbour_sum(padded, corner, 1.0, h, w, k, rows)
            link *= dl
            link += np.float32(v_l) * k
            theta *= dt
            theta += np.float32(v_theta) * y
            np.multiply(fb, link, out=u)
            u += f
            y[...] = u > theta
            t += y

    _run_chunked(run, flat.shape[0], h * w, threads)
    return out.reshape(batch + (h, w))


def dual_channel_scm(stimuli: np.ndarray, iterations: int = 110, f: float = 0.8, g: float = 0.7,
                     h: float = 20.0, beta: float = 0.3, threads: Optional[int] = None,
                     check=None) -> np.ndarray:
    """Multi-channel spiking cortical model: which source drives each neuron's firing.

    One SCM (Zhan et al. 2009) per position, fed by N stimuli S^k (one channel per source; Hou et al.
    use two, CT and MRI). Per iteration, with the linking input K = sum W Y[n-1]
    (W = [0.1091 0.1409 0.1091; 0.1409 0 0.1409; ...], Zhan's weights):
    U^k[n] = f U[n-1] + S^k (1 + beta K),  U[n] = max_k U^k[n],  Y[n] = [U[n] > E[n-1]],
    E[n] = g E[n-1] + h Y[n]; when the neuron fires, the channel k that gave the maximum is credited.
    Returns the credits (N, ..., H, W): the fused coefficient comes from the most credited source.
    """
    s = np.abs(_as_float(stimuli)).astype(np.float32, copy=False)
    n_src = s.shape[0]
    batch, (hh, ww) = s.shape[1:-2], s.shape[-2:]
    flat = s.reshape(n_src, -1, hh, ww)
    credits = np.zeros(flat.shape, dtype=np.float32)
    corner, edge = 0.1091, 0.1409

    def run(a, b):
        if check is not None:
            check()
        m = b - a
        padded = np.zeros((m, hh + 2, ww + 2), dtype=np.float32)
        y = padded[:, 1:-1, 1:-1]
        u = np.zeros((m, hh, ww), np.float32)
        e = np.ones((m, hh, ww), np.float32)
        k = np.empty((m, hh, ww), np.float32)
        rows = np.empty((m, hh + 2, ww), np.float32)
        cand = np.empty((m, hh, ww), np.float32)
        best = np.empty((m, hh, ww), np.float32)
        winner = np.zeros((m, hh, ww), np.intp)
        fired = np.empty((m, hh, ww), bool)
        for _ in range(iterations):
            _neighbour_sum(padded, corner, edge, hh, ww, k, rows)
            k *= np.float32(beta)
            k += 1.0
            u *= np.float32(f)
            for src in range(n_src):
                np.multiply(flat[src, a:b], k, out=cand)
                if src == 0:
                    best[...] = cand
                    winner[...] = 0
                else:
                    better = cand > best
                    winner[better] = src
                    np.maximum(best, cand, out=best)
            u += best
            np.greater(u, e, out=fired)
            e *= np.float32(g)
            e += np.float32(h) * fired
            y[...] = fired
            for src in range(n_src):
                credits[src, a:b] += fired & (winner == src)

    _run_chunked(run, flat.shape[1], hh * ww * (n_src + 1), threads)
    return credits.reshape((n_src,) + batch + (hh, ww))


# --- rules -------------------------------------------------------------------------------------------
def choose_by_activity(bands: np.ndarray, activity: np.ndarray) -> np.ndarray:
    """Choose-max: at each position the coefficient of the source with the largest activity (the first
    on ties, as the authors' ``map = (T1 >= T2)``)."""
    return select(bands, argmax_sources(activity))


def wncc_sums(features_a: np.ndarray, features_b: np.ndarray, sigma: float = 1.5, radius: int = 3):
    """The channel sums of :func:`wncc`: (covariance, variance of a, variance of b), each (..., H, W).

    Sums over disjoint channel groups add up, so a long feature stack can be correlated group by group
    (:func:`wncc_from_sums` finishes)."""
    a = _as_float(features_a)
    b = _as_float(features_b).astype(a.dtype, copy=False)
    sig = [0.0] * (a.ndim - 2) + [sigma, sigma]
    smooth = lambda x: ndi.gaussian_filter(x, sig, truncate=radius / sigma, mode="mirror")  # noqa: E731
    ma, mb = smooth(a), smooth(b)
    cov = (smooth(a * b) - ma * mb).sum(axis=0)
    va = np.maximum(smooth(a * a) - ma * ma, 0).sum(axis=0)
    vb = np.maximum(smooth(b * b) - mb * mb, 0).sum(axis=0)
    return cov, va, vb


def wncc_from_sums(cov: np.ndarray, va: np.ndarray, vb: np.ndarray) -> np.ndarray:
    """WNCC from the sums of :func:`wncc_sums`: cov / sqrt(va vb) in [-1, 1], 1 where both are flat."""
    den = np.sqrt(va * vb)
    tiny = np.finfo(den.dtype).eps * 16
    return np.where(den > tiny, cov / np.where(den > tiny, den, 1.0), 1.0).clip(-1.0, 1.0)


def wncc(features_a: np.ndarray, features_b: np.ndarray, sigma: float = 1.5, radius: int = 3) -> np.ndarray:
    """Weighted normalised cross-correlation of two feature stacks over a Gaussian window.

    Parameters
    ----------
    features_a, features_b : ndarray, shape (C, ..., H, W)
        C feature maps of each source (the channels are summed inside the correlation).
    sigma, radius : float, int
        Gaussian window weights w (standard deviation, truncation radius).

    Returns
    -------
    ndarray (..., H, W) in [-1, 1]:
    sum_c sum_w w (a - mean_w a)(b - mean_w b) / sqrt(sum_c sum_w w (a - mean_w a)^2 sum_c sum_w w (b - ...)^2),
    1 where both are locally constant.
    """
    return wncc_from_sums(*wncc_sums(features_a, features_b, sigma, radius))


def similarity_rule(bands: np.ndarray, similarity: np.ndarray, activity: np.ndarray,
                    threshold: float = 0.6) -> np.ndarray:
    """Two-source rule driven by a similarity map (Hermessi et al. 2018; Burt and Kolczynski 1993):
    where ``similarity`` > ``threshold`` the sources agree and are averaged with weights proportional to
    their ``activity``; elsewhere the source of larger activity is selected."""
    if bands.shape[0] != 2:
        raise ValueError(f"the similarity rule compares 2 sources; got {bands.shape[0]}")
    total = activity[0] + activity[1]
    w_a = np.where(total > 0, activity[0] / np.where(total > 0, total, 1.0), 0.5)
    blended = w_a * bands[0] + (1 - w_a) * bands[1]
    chosen = np.where(activity[0] >= activity[1], bands[0], bands[1])
    return np.where(similarity > threshold, blended, chosen).astype(bands.dtype, copy=False)
