"""Guided filtering fusion, GFF (Li, Kang and Hu, IEEE TIP 2013)."""

from __future__ import annotations

import numpy as np

from .. import rules
from ..registry import Param, register
from ..transforms.filters import box_mean, gaussian_smooth, guided_filter, laplacian_filter

_REFERENCE = "S. Li, X. Kang, J. Hu, 'Image fusion with guided filtering', IEEE TIP 22(7):2864-2875, 2013"


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
                         detail_filter_radius: int = 7, detail_filter_eps: float = 1e-6) -> np.ndarray:
    """GFF of a ``(N, B, *spatial)`` stack, following Li et al. 2013, Section III:

    1. two-scale split: base B_n = mean filter of I_n, detail D_n = I_n - B_n;
    2. saliency S_n = Gaussian(|Laplacian(I_n)|); binary maps P_n = [S_n is the largest of the N];
    3. weights W_n^B = GF_{r1,eps1}(P_n, I_n), W_n^D = GF_{r2,eps2}(P_n, I_n), normalised over n;
    4. F = sum_n W_n^B B_n + sum_n W_n^D D_n.
    The paper's defaults (31x31 mean filter, r_g = sigma_g = 5, r1 = 45, eps1 = 0.3, r2 = 7,
    eps2 = 1e-6, sources in [0, 1]) are the defaults here; in 3-D every window becomes a cube.
    """
    spatial_dims = stack.ndim - 2
    base = box_mean(stack, base_radius, spatial_dims)
    saliency = gaussian_smooth(np.abs(laplacian_filter(stack, spatial_dims)), saliency_sigma, saliency_radius,
                               spatial_dims)
    winner = rules.argmax_sources(saliency)
    fused_base = np.zeros(stack.shape[1:], dtype=np.float32)
    fused_detail = np.zeros(stack.shape[1:], dtype=np.float32)
    total_base = np.zeros_like(fused_base)
    total_detail = np.zeros_like(fused_detail)
    for n in range(stack.shape[0]):          # loop over the N sources, not over pixels
        p = (winner == n).astype(np.float32)
        w_base = guided_filter(stack[n], p, base_filter_radius, base_filter_eps, spatial_dims)
        w_detail = guided_filter(stack[n], p, detail_filter_radius, detail_filter_eps, spatial_dims)
        fused_base += w_base * base[n]
        fused_detail += w_detail * (stack[n] - base[n])
        total_base += w_base
        total_detail += w_detail
    # Normalise the weights to sum 1 at each pixel (guarding the rare zero sum).
    eps = np.float32(1e-12)
    fused_base /= np.where(np.abs(total_base) > eps, total_base, 1.0)
    fused_detail /= np.where(np.abs(total_detail) > eps, total_detail, 1.0)
    return fused_base + fused_detail
