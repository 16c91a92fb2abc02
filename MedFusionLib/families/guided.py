"""Guided filtering fusion, GFF (Li, Kang and Hu, IEEE TIP 2013)."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from .. import rules
from ..registry import Param, register
from ..transforms.filters import box_mean, gaussian_smooth, guided_filter, laplacian_filter

_REFERENCE = "S. Li, X. Kang, J. Hu, 'Image fusion with guided filtering', IEEE TIP 22(7):2864-2875, 2013"

# The sources are filtered independently, and scipy.ndimage and numpy release the GIL in these filters:
# one thread per source on up to two cores (the CI machines have 2) halves the time; results are the
# same as sequential (each thread writes only its own arrays).
_WORKERS = max(1, min(2, os.cpu_count() or 1))


@register("guided_filter", family="classical",
          summary="Two-scale fusion with saliency weight maps refined by guided filtering (GFF).",
          reference=_REFERENCE, dims=(2, 3),
          params=(Param("base_radius", "int", 15, "Radius of the mean filter splitting base and detail "
                        "layers (paper: 31x31 window).", minimum=1, maximum=100),
                  Param("saliency_radius", "int", 5, "Radius r_g of the Gaussian smoothing |Laplacian| into "
                        "saliency.", minimum=1, maximum=50),
                  Param("saliency_sigma", "float", 5.0, "Standard deviation sigma_g of that Gaussian.",
                        minimum=0.1, maximum=50.0),
                  Param("base_filter_radius", "int", 45, "Guided-filter radius r1 for the base weights.",
                        minimum=1, maximum=200),
                  Param("base_filter_eps", "float", 0.3, "Guided-filter epsilon eps1 for the base weights.",
                        minimum=1e-9, maximum=10.0),
                  Param("detail_filter_radius", "int", 7, "Guided-filter radius r2 for the detail weights.",
                        minimum=1, maximum=200),
                  Param("detail_filter_eps", "float", 1e-6, "Guided-filter epsilon eps2 for the detail weights.",
                        minimum=1e-12, maximum=10.0)))
def guided_filter_fusion(stack: np.ndarray, base_radius: int = 15, saliency_radius: int = 5,
                         saliency_sigma: float = 5.0, base_filter_radius: int = 45, base_filter_eps: float = 0.3,
                         detail_filter_radius: int = 7, detail_filter_eps: float = 1e-6, progress=None) -> np.ndarray:
    """GFF of a ``(N, B, *spatial)`` stack, following Li et al. 2013, Section III:

    1. two-scale split: base B_n = mean filter of I_n, detail D_n = I_n - B_n;
    2. saliency S_n = Gaussian(|Laplacian(I_n)|); binary maps P_n = [S_n is the largest of the N];
    3. weights W_n^B = GF_{r1,eps1}(P_n, I_n), W_n^D = GF_{r2,eps2}(P_n, I_n), normalised over n;
    4. F = sum_n W_n^B B_n + sum_n W_n^D D_n.
    The paper's defaults (31x31 mean filter, r_g = sigma_g = 5, r1 = 45, eps1 = 0.3, r2 = 7,
    eps2 = 1e-6, sources in [0, 1]) are the defaults here; in 3-D every window becomes a cube.
    ``progress`` (a :class:`~MedFusionLib.progress.Progress`) is told after each stage, so that a long
    native 3-D run reports and can be cancelled.
    """
    spatial_dims = stack.ndim - 2
    n_sources = stack.shape[0]

    def report(done: float, message: str) -> None:
        if progress is not None:
            progress.report(done, message)

    def split(n: int):
        source = stack[n]
        saliency = gaussian_smooth(np.abs(laplacian_filter(source, spatial_dims)), saliency_sigma, saliency_radius,
                                   spatial_dims)
        return box_mean(source, base_radius, spatial_dims), saliency

    def weights(n: int, winner: np.ndarray):
        """Source n's weighted base and detail layers and its two weight maps (in the worker thread)."""
        p = (winner == n).astype(np.float32)
        w_base = guided_filter(stack[n], p, base_filter_radius, base_filter_eps, spatial_dims)
        w_detail = guided_filter(stack[n], p, detail_filter_radius, detail_filter_eps, spatial_dims)
        detail = np.subtract(stack[n], base[n], dtype=np.float32)
        detail *= w_detail
        return [w_base * base[n], detail, w_base, w_detail]

    with ThreadPoolExecutor(min(_WORKERS, n_sources)) as pool:
        parts = list(pool.map(split, range(n_sources)))
        base = [b for b, _ in parts]
        winner = rules.argmax_sources(np.stack([sal for _, sal in parts]))
        del parts
        report(0.1, "guided filter: saliency")
        futures = [pool.submit(weights, n, winner) for n in range(n_sources)]
        sums = None      # [weighted base, weighted detail, base weights, detail weights], summed over sources
        for n, future in enumerate(futures):          # accumulated in input order, reported from this thread
            terms = future.result()
            if sums is None:
                sums = terms
            else:
                for total, term in zip(sums, terms):
                    total += term
            del terms
            report(0.1 + 0.9 * (n + 1) / n_sources, f"guided filter: weights of input {n + 1} of {n_sources}")
        fused_base, fused_detail, total_base, total_detail = (np.ascontiguousarray(a).reshape(-1) for a in sums)
        del sums

        def normalise(part: slice) -> None:
            # Weights normalised to sum 1 at each pixel (the rare zero sum left unnormalised).
            tiny = np.float32(1e-12)
            np.divide(fused_base[part], total_base[part], out=fused_base[part], where=np.abs(total_base[part]) > tiny)
            np.divide(fused_detail[part], total_detail[part], out=fused_detail[part],
                      where=np.abs(total_detail[part]) > tiny)
            fused_base[part] += fused_detail[part]

        half = fused_base.size // 2
        list(pool.map(normalise, (slice(0, half), slice(half, None))))
    return fused_base.reshape(stack.shape[1:])
