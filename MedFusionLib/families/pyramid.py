"""Laplacian pyramid fusion in 2-D and 3-D (Burt and Adelson 1983; Burt and Kolczynski 1993)."""

from __future__ import annotations

import numpy as np

from .. import rules
from ..registry import Param, register
from ..transforms.pyramid import laplacian_pyramid, max_pyramid_levels, reconstruct_laplacian_pyramid
from ._common import CONSISTENCY, THRESHOLD, WINDOW, base_rule_param, check_levels, check_rules, detail_rule_param

_REFERENCE = ("P. J. Burt, E. H. Adelson, 'The Laplacian pyramid as a compact image code', IEEE Trans. "
              "Communications 31(4):532-540, 1983; P. J. Burt, R. J. Kolczynski, 'Enhanced image capture "
              "through fusion', ICCV 1993")


def _check(params, n_inputs, shape):
    check_rules("laplacian", params, n_inputs)
    if shape is not None:
        check_levels("laplacian", params["levels"], max_pyramid_levels(shape), shape)


@register("laplacian", family="classical",
          summary="Laplacian pyramid: choose-max details with consistency check, averaged base.",
          reference=_REFERENCE, dims=(2, 3), check=_check,
          params=(Param("levels", "int", 4, "Number of band-pass pyramid levels.", minimum=1, maximum=10),
                  detail_rule_param("max_abs"), base_rule_param("mean"), WINDOW, THRESHOLD, CONSISTENCY))
def laplacian_fusion(stack: np.ndarray, levels: int = 4, detail_rule: str = "max_abs", base_rule: str = "mean",
                     window: int = 3, threshold: float = 0.75, consistency: bool = True) -> np.ndarray:
    """Decompose every source into a Laplacian pyramid (5-tap Burt-Adelson kernel, over the 2 or 3
    spatial axes), fuse each band-pass level with ``detail_rule`` (max-abs with a majority-filter
    consistency check by default), fuse the low-pass residual with ``base_rule`` (mean), and collapse."""
    spatial_dims = stack.ndim - 2
    pyramid = laplacian_pyramid(stack, levels, spatial_dims)
    options = dict(window=window, threshold=threshold, consistency=consistency, spatial_dims=spatial_dims)
    fused = [rules.fuse_band(band, detail_rule, **options) for band in pyramid[:-1]]
    fused.append(rules.fuse_band(pyramid[-1], base_rule, **options))
    return reconstruct_laplacian_pyramid(fused, spatial_dims)
