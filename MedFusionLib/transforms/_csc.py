"""Convolutional sparse coding: convolutional basis pursuit denoising (CBPDN) by ADMM in the DFT domain.

Solves, for every image s_b of a batch independently,

    min_x  1/2 || sum_m d_m * x_m - s_b ||_2^2 + lambda sum_m || x_m ||_1

with circular convolution on the image grid (the dictionary zero-padded to the image size), the
formulation and boundary handling of Wohlberg's SPORCO ``ConvBPDN``. The algorithm is Wohlberg's
ADMM (IEEE TIP 2016, Sec. III-IV): the x-step is solved independently at every frequency with the
Sherman-Morrison formula (one dictionary, one channel: a rank-one system per frequency), the y-step is
soft thresholding, with over-relaxation (alpha = 1.8), normalised primal/dual residual stopping and
residual-balancing penalty adaptation (Wohlberg, "ADMM penalty parameter selection by residual
balancing", arXiv:1704.06209, 2017) with SPORCO's default constants, so iteration counts and objective
values can be set beside SPORCO's.

Written in torch so that it runs batched over slices, on the CPU or a CUDA device, in float32.

References
----------
.. [1] B. Wohlberg, "Efficient algorithms for convolutional sparse representations", IEEE Trans. Image
       Processing 25(1):301-315, 2016.
.. [2] B. Wohlberg, "ADMM penalty parameter selection by residual balancing", arXiv:1704.06209, 2017.
.. [3] S. Boyd et al., "Distributed optimization and statistical learning via the alternating direction
       method of multipliers", Found. Trends Mach. Learn. 3(1):1-122, 2011 (stopping criteria).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import numpy as np

# torch is imported inside the functions: importing the library (and the registry, which imports the
# CSR family) must not load torch until a learned or CSR fusion actually runs.


@dataclass
class CBPDNResult:
    """Solution of :func:`cbpdn`: coefficient maps and how the solver got there (per image of the batch)."""

    coefficients: np.ndarray      # (B, M, H, W), the sparse variable Y of the ADMM split
    iterations: int               # iterations run (the most any image of the batch needed)
    objective: np.ndarray         # (B,) 1/2||D x - s||^2 + lambda ||x||_1 at the returned coefficients
    primal_residual: float        # worst normalised primal residual over the batch at its last iteration
    dual_residual: float          # worst normalised dual residual
    rho: np.ndarray               # (B,) final penalty of each image
    converged: bool               # every image met the tolerance
    image_iterations: np.ndarray = None   # (B,) iterations of each image


def resolve_device(device: str = "auto") -> "torch.device":
    """``'auto'``: CUDA when available, else the CPU; ``'cuda'`` raises when no CUDA device exists."""
    import torch

    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device='cuda' was asked for but torch sees no CUDA device; use 'cpu' or 'auto'")
    return torch.device(device)



def dictionary_spectrum(dictionary: "torch.Tensor", shape) -> "torch.Tensor":
    """rfft2 of the filters zero-padded to ``shape`` (origin at the filters' first sample, as SPORCO)."""
    import torch

    return torch.fft.rfft2(dictionary, s=tuple(shape))


def reconstruct(dictionary, coefficients, device: str = "auto") -> np.ndarray:
    """sum_m d_m * x_m (circular convolution) for coefficient maps ``(B, M, H, W)``; returns (B, H, W)."""
    import torch

    dev = resolve_device(device)
    d = torch.as_tensor(np.asarray(dictionary, dtype=np.float32), device=dev)
    x = torch.as_tensor(np.asarray(coefficients, dtype=np.float32), device=dev)
    shape = x.shape[-2:]
    out = torch.fft.irfft2((dictionary_spectrum(d, shape)[None] * torch.fft.rfft2(x)).sum(1), s=shape)
    return out.cpu().numpy()


def objective(dictionary, coefficients, signal, lmbda: float) -> np.ndarray:
    """CBPDN objective 1/2||sum_m d_m * x_m - s||^2 + lambda sum_m ||x_m||_1 per image, in float64."""
    x = np.asarray(coefficients, dtype=np.float64)
    s = np.asarray(signal, dtype=np.float64).reshape(x.shape[0], *x.shape[-2:])
    d = np.asarray(dictionary, dtype=np.float64)
    shape = x.shape[-2:]
    df = np.fft.rfft2(d, s=shape)
    rec = np.fft.irfft2((df[None] * np.fft.rfft2(x)).sum(1), s=shape)
    return 0.5 * ((rec - s) ** 2).sum(axis=(-2, -1)) + lmbda * np.abs(x).sum(axis=(1, 2, 3))


def cbpdn(dictionary, signal, lmbda: float, *, rho: Optional[float] = None, max_iter: int = 500,
          rel_tol: float = 1e-3, relax: float = 1.8, auto_rho: bool = True, device: str = "auto",
          progress=None, check_every: int = 1, x0=None) -> CBPDNResult:
    """Convolutional basis pursuit denoising of a batch of images by frequency-domain ADMM.

    Parameters
    ----------
    dictionary : array_like, shape (M, h, w)
        M filters (zero-padded to the image size; their first sample is the origin).
    signal : array_like, shape (B, H, W) or (H, W)
        Images to code, each independently.
    lmbda : float
        Weight of the l1 term.
    rho : float, optional
        Initial ADMM penalty; default ``50 lambda + 1`` (SPORCO's default).
    max_iter : int
        Iteration limit.
    rel_tol : float
        Relative stopping tolerance on the normalised primal and dual residuals (SPORCO's
        ``RelStopTol`` with ``AbsStopTol = 0``).
    relax : float
        Over-relaxation parameter alpha (1 disables it).
    auto_rho : bool
        Residual-balancing penalty adaptation every iteration with SPORCO's defaults (scaling bound
        1000, residual ratio 1.2, target ratio xi = 1 + 18.3^(log10(lambda) + 1)).
    device : {'auto', 'cpu', 'cuda'}
        Where to compute.
    progress : callable, optional
        ``progress(fraction, message)`` (e.g. :meth:`MedFusionLib.progress.Progress.report`), called
        every 10 iterations; it may raise to cancel.
    check_every : int
        Compute residuals (and test convergence, adapt rho) every this many iterations.
    x0 : array_like, optional
        Initial coefficient maps (B, M, H, W) for a warm start (dictionary learning).

    Returns
    -------
    CBPDNResult
        ``coefficients`` are the sparse split variable Y (exact zeros), float32 numpy.

    Notes
    -----
    ADMM on x = y (scaled dual u): x^ = argmin 1/2||D^ x^ - s^||^2 + rho/2||x^ - (y^ - u^)||^2, solved at
    each frequency by Sherman-Morrison: with a = conj(d^), x^ = (b - a (a^H b)/(rho + a^H a))/rho,
    b = conj(d^) s^ + rho z^, z = y - u, which simplifies to x^ = z^ - a (d^T z^ - s^)/(rho + a^H a), the
    form computed (no (B, M, H, W) array depends on s^ or on rho). Then x_r = alpha x + (1 - alpha) y, y = soft(x_r + u, lambda/rho),
    u += x_r - y. Stop when ||x - y|| / max(||x||, ||y||) and rho ||y - y_prev|| / (rho ||u||) are both
    below ``rel_tol`` (for every image of the batch).
    """
    import torch

    dev = resolve_device(device)
    d = torch.as_tensor(np.asarray(dictionary, dtype=np.float32), device=dev)
    s_np = np.asarray(signal, dtype=np.float32)
    squeeze = s_np.ndim == 2
    s = torch.as_tensor(s_np.reshape(-1, *s_np.shape[-2:]), device=dev)
    n_batch, (height, width) = s.shape[0], s.shape[-2:]
    n_filters = d.shape[0]
    if d.ndim != 3 or d.shape[1] > height or d.shape[2] > width:
        raise ValueError(f"dictionary must be (M, h, w) with filters no larger than the images {tuple(s.shape[-2:])}; "
                         f"got {tuple(d.shape)}")
    if int(max_iter) < 1:
        raise ValueError(f"max_iter must be at least 1; got {max_iter}")
    if int(check_every) < 1:
        raise ValueError(f"check_every must be at least 1; got {check_every}")
    lmbda = float(lmbda)
    rho0 = float(50.0 * lmbda + 1.0 if rho is None else rho)
    rho_xi = (1.0 + 18.3 ** (math.log10(lmbda) + 1.0)) if lmbda > 0 else 1.0
    rho_tau, rho_mu = 1000.0, 1.2

    df = dictionary_spectrum(d, (height, width))                 # (M, H, Wr)
    df_conj = df.conj().resolve_conj()                           # materialised: a lazy conj view is copied per use
    sf = torch.fft.rfft2(s)                                      # (B, H, Wr)
    dd = (df.real ** 2 + df.imag ** 2).sum(0)                    # (H, Wr) sum_m |d^_m|^2

    shape_x = (n_batch, n_filters, height, width)
    if x0 is None:
        y = torch.zeros(shape_x, device=dev)
    else:
        y = torch.as_tensor(np.asarray(x0, dtype=np.float32), device=dev).reshape(shape_x).clone()
    u = torch.zeros(shape_x, device=dev)
    work = torch.empty(shape_x, device=dev)
    # Every image has its own penalty and stops on its own residuals, and a stopped image leaves the
    # batch: an image's code does not depend on which other images it was solved with.
    rho_vec = np.full(n_batch, rho0)
    active = np.arange(n_batch)                                  # batch rows still iterating
    coef = np.empty(shape_x, dtype=np.float32)
    final_rho = np.full(n_batch, rho0)
    image_iterations = np.zeros(n_batch, dtype=np.int64)
    final_r = np.full(n_batch, np.nan)
    final_s = np.full(n_batch, np.nan)
    done = np.zeros(n_batch, dtype=bool)
    dims = (1, 2, 3)

    def per_image(values):
        # One float32 value per active image: a Python scalar for a single image (torch's scalar path),
        # else a (B, 1, 1, 1) tensor; either way the same float32 number for an image.
        values = np.asarray(values, dtype=np.float32)
        if len(values) == 1:
            return float(values[0])
        return torch.as_tensor(values, device=dev)[:, None, None, None]

    iteration = 0
    for iteration in range(1, max_iter + 1):
        zf = torch.fft.rfft2(torch.sub(y, u, out=work))
        # x^ = z^ - conj(d^) (sum_m d^_m z^_m - s^) / (rho + sum_m |d^_m|^2)  (Sherman-Morrison)
        inner = (zf * df).sum(1).sub_(sf)
        rho_t = torch.as_tensor(rho_vec, dtype=torch.float32, device=dev)
        inner.div_(rho_t[:, None, None] + dd)                  # (B, H, Wr): the only rho-dependent array
        xf = zf.addcmul_(df_conj, inner[:, None], value=-1)
        x = torch.fft.irfft2(xf, s=(height, width))
        y_prev = y
        v = u.add_(torch.lerp(y_prev, x, relax, out=work))     # x_r + u, x_r = relax x + (1 - relax) y
        # u + x_r - y = clamp(x_r + u, -t, t) and y = soft(x_r + u, t) = (x_r + u) - clamp(...): the same
        # float32 arithmetic whatever the batch (t = lambda / rho per image, rounded once to float32).
        t = per_image(lmbda / rho_vec)
        u = torch.clamp(v, -t, t)
        y = v.sub_(u)                                           # soft thresholding, exact zeros kept
        last = iteration == max_iter
        if iteration % check_every == 0 or last:
            r = torch.linalg.vector_norm(torch.sub(x, y, out=work), dim=dims)
            sres = torch.linalg.vector_norm(torch.sub(y, y_prev, out=work), dim=dims)
            rn = torch.maximum(torch.linalg.vector_norm(x, dim=dims), torch.linalg.vector_norm(y, dim=dims))
            sn = torch.linalg.vector_norm(u, dim=dims)          # rho ||y - y_prev|| / (rho ||u||)
            rn = torch.where(rn == 0, torch.ones_like(rn), rn)
            sn = torch.where(sn == 0, torch.ones_like(sn), sn)
            r_rel = (r / rn).cpu().numpy().astype(np.float64)
            s_rel = (sres / sn).cpu().numpy().astype(np.float64)
            met = (r_rel < rel_tol) & (s_rel < rel_tol)
            stop = met | last
            if stop.any():
                rows = np.flatnonzero(stop)
                ids = active[rows]
                coef[ids] = y[torch.as_tensor(rows, device=dev)].cpu().numpy()
                final_rho[ids], image_iterations[ids] = rho_vec[rows], iteration
                final_r[ids], final_s[ids] = r_rel[rows], s_rel[rows]
                done[ids] = met[rows]
                if stop.all():
                    break
                keep = np.flatnonzero(~stop)
                keep_t = torch.as_tensor(keep, device=dev)
                y, u, sf = y[keep_t], u[keep_t], sf[keep_t]
                work = torch.empty_like(y)
                active, rho_vec, r_rel, s_rel = active[keep], rho_vec[keep], r_rel[keep], s_rel[keep]
            if auto_rho and iteration > 1:
                # Residual balancing (Wohlberg 2017) with SPORCO's constants, per image.
                with np.errstate(divide="ignore", invalid="ignore"):
                    ratio = r_rel / (s_rel * rho_xi)
                    mult = np.minimum(np.sqrt(np.where(ratio > 1, ratio, 1.0 / ratio)), rho_tau)
                mult = np.where((s_rel == 0) | (r_rel == 0), rho_tau, mult)
                factor = np.where(r_rel > rho_xi * rho_mu * s_rel, mult,
                                  np.where(s_rel > (rho_mu / rho_xi) * r_rel, 1.0 / mult, 1.0))
                if np.any(factor != 1.0):
                    rho_vec = rho_vec * factor
                    # u is the scaled dual (y_dual / rho). Out of place: measured faster than div_ here.
                    u = u / per_image(factor)
        if progress is not None and iteration % 10 == 0:
            progress(iteration / max_iter, f"CBPDN iteration {iteration}")
    obj = objective(d.cpu().numpy(), coef, s.cpu().numpy(), lmbda)
    if squeeze:
        coef = coef[0]
    return CBPDNResult(coefficients=coef, iterations=iteration, objective=obj,
                       primal_residual=float(np.max(final_r)), dual_residual=float(np.max(final_s)),
                       rho=final_rho, converged=bool(done.all()), image_iterations=image_iterations)
