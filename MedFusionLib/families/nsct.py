"""Fusion in the nonsubsampled contourlet transform (NSCT) domain.

``nsct``: decompose every source with :mod:`MedFusionLib.transforms.nsct` (da Cunha, Zhou and Do 2006),
fuse the low band by averaging or local energy and the directional bands by max-abs or by the firing
times of a PCNN fed with the local spatial frequency (Qu et al. 2008), reconstruct.
"""

from __future__ import annotations

import numpy as np

from .. import rules
from .. import rules_neural as neural
from ..errors import FusionInputError
from ..registry import Param, register
from ..transforms.nsct import DEFAULT_DIRECTIONS, NSCTBands, check_directions
from .nsst import _directions, check_transform, directions_param, fuse_bandwise

_REFERENCE = ("A. L. da Cunha, J. Zhou, M. N. Do, 'The nonsubsampled contourlet transform: theory, design, and "
              "applications', IEEE TIP 15(10):3089-3101, 2006; X.-B. Qu, J.-W. Yan, H.-Z. Xiao, Z.-Q. Zhu, "
              "'Image fusion algorithm based on spatial frequency-motivated pulse coupled neural networks in "
              "nonsubsampled contourlet transform domain', Acta Automatica Sinica 34(12):1508-1514, 2008")


def _check(params, n_inputs, shape):
    check_transform("nsct", params, shape, check_directions)
    if params["window"] % 2 == 0:
        raise FusionInputError(f"method 'nsct': window must be odd; got {params['window']}")


@register("nsct", family="signal processing",
          summary="NSCT; low band averaged or by local energy, high bands by max-abs or PCNN firing times "
                  "(da Cunha et al. 2006; Qu et al. 2008).",
          reference=_REFERENCE, dims=(2,), check=_check,
          params=(directions_param(DEFAULT_DIRECTIONS, "NSCT"),
                  Param("low_rule", "choice", "mean", "Rule for the low-pass band.", choices=("mean", "local_energy")),
                  Param("high_rule", "choice", "max_abs", "Rule for the directional bands: max-abs (with a "
                        "consistency check) or the firing times of a spatial-frequency-motivated PCNN.",
                        choices=("max_abs", "pcnn")),
                  Param("window", "int", 3, "Odd window of local energy, consistency check and spatial "
                        "frequency.", minimum=1, maximum=15),
                  Param("iterations", "int", 200, "PCNN iterations (Qu et al.: 200).", minimum=1, maximum=1000)))
def nsct_fusion(stack: np.ndarray, directions=DEFAULT_DIRECTIONS, low_rule: str = "mean",
                high_rule: str = "max_abs", window: int = 3, iterations: int = 200, progress=None) -> np.ndarray:
    """NSCT fusion of a ``(N, B, H, W)`` stack.

    Low band: the mean of the sources, or choose-max of the local energy over ``window`` x ``window``.
    Directional bands: max-abs with a majority-filter consistency check over the window (Li et al.
    1995), or Qu et al.'s rule: the local spatial frequency of each band (``window`` x ``window``, with
    diagonal terms), normalised by its maximum over the sources, stimulates a PCNN (alpha_L = 0.06931,
    alpha_theta = 0.2, beta = 0.2, V_L = 1, V_theta = 20, 200 iterations) and the coefficient of the
    source firing most often is selected. Default 4 levels with 4, 8, 8, 16 directions (coarse to fine).
    """
    dirs = _directions(directions)

    def low(band):
        if low_rule == "mean":
            return rules.average(band)
        return rules.local_energy_rule(band, window)

    def high(band):
        if high_rule == "max_abs":
            return rules.max_abs(band, consistency_window=window)
        check = progress.check if progress is not None else None
        sf = neural.modified_spatial_frequency(band, window)
        top = sf.max(axis=(0, -2, -1), keepdims=True)[0]
        stimulus = sf / np.where(top > 0, top, 1.0)
        return neural.choose_by_activity(band, neural.pcnn_firing_times(stimulus, iterations, check=check))

    return fuse_bandwise(stack, NSCTBands, dirs, low, high, progress)
