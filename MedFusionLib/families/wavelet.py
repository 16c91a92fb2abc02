"""Discrete wavelet transform fusion with PyWavelets, in 2-D and n-D (``wavedecn``)."""

from __future__ import annotations

import numpy as np
import pywt

from .. import rules
from ..registry import Param, register
from ._common import CONSISTENCY, THRESHOLD, WINDOW, check_levels, check_rules

_REFERENCE = ("H. Li, B. S. Manjunath, S. K. Mitra, 'Multisensor image fusion using the wavelet transform', "
              "Graphical Models and Image Processing 57(3):235-245, 1995")


def _check(params, n_inputs, shape):
    check_rules("dwt", params, n_inputs)
    if shape is not None:
        max_level = pywt.dwt_max_level(min(shape), pywt.Wavelet(params["wavelet"]).dec_len)
        check_levels("dwt", params["levels"], max(max_level, 1), shape)


@register("dwt", family="classical",
          summary="Discrete wavelet transform (PyWavelets): fuse approximation and detail sub-bands by rules.",
          reference=_REFERENCE, dims=(2, 3), check=_check,
          params=(Param("wavelet", "choice", "db2", "Wavelet name (any discrete PyWavelets wavelet).",
                        choices=tuple(pywt.wavelist(kind="discrete"))),
                  Param("levels", "int", 3, "Decomposition levels.", minimum=1, maximum=8),
                  Param("low_rule", "choice", "mean", "Rule for the approximation band.",
                        choices=rules.BASE_RULES),
                  Param("high_rule", "choice", "max_abs", "Rule for the detail sub-bands.",
                        choices=rules.DETAIL_RULES),
                  WINDOW, THRESHOLD,
                  Param("consistency", "bool", False, CONSISTENCY.help),
                  Param("extension", "choice", "symmetric", "Signal extension mode at the borders.",
                        choices=tuple(pywt.Modes.modes))))
def dwt_fusion(stack: np.ndarray, wavelet: str = "db2", levels: int = 3, low_rule: str = "mean",
               high_rule: str = "max_abs", window: int = 3, threshold: float = 0.75,
               consistency: bool = False, extension: str = "symmetric") -> np.ndarray:
    """Fuse in the wavelet domain.

    Every source of the ``(N, B, *spatial)`` stack is decomposed with ``pywt.wavedecn`` over its spatial
    axes; the approximation band is fused with ``low_rule``, every detail sub-band with ``high_rule``
    (see :mod:`MedFusionLib.rules`), and ``pywt.waverecn`` reconstructs the fused image.
    """
    spatial_dims = stack.ndim - 2
    axes = tuple(range(2, stack.ndim))
    coeffs = pywt.wavedecn(stack, wavelet, mode=extension, level=levels, axes=axes)
    options = dict(window=window, threshold=threshold, consistency=consistency, spatial_dims=spatial_dims)
    fused = [rules.fuse_band(coeffs[0], low_rule, **options)]
    for detail in coeffs[1:]:
        fused.append({key: rules.fuse_band(band, high_rule, **options) for key, band in detail.items()})
    out = pywt.waverecn(fused, wavelet, mode=extension, axes=tuple(a - 1 for a in axes))
    # waverecn returns one extra sample on odd-sized axes.
    return out[(slice(None),) + tuple(slice(0, s) for s in stack.shape[2:])].astype(np.float32, copy=False)
