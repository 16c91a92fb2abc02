"""Pixel rules: average, weighted average, select-maximum, select-minimum.

These are the baselines every fusion paper compares with; they run unchanged in 2-D and 3-D and on any
number of inputs.

References
----------
.. [1] A. P. James, B. V. Dasarathy, "Medical image fusion: a survey of the state of the art",
       Information Fusion 19:4-19, 2014.
"""

from __future__ import annotations

import numpy as np

from ..errors import FusionInputError
from ..registry import Param, register

_SURVEY = ("A. P. James, B. V. Dasarathy, 'Medical image fusion: a survey of the state of the art', "
           "Information Fusion 19:4-19, 2014")


@register("average", family="classical", summary="Mean of the inputs, pixel by pixel.",
          reference=_SURVEY, dims=(2, 3))
def average_fusion(stack: np.ndarray) -> np.ndarray:
    """Pixel-wise mean F = (1/N) sum_n I_n of a ``(N, B, *spatial)`` stack."""
    return stack.mean(axis=0, dtype=np.float32)


def _check_weights(params, n_inputs, shape):
    weights = params["weights"]
    if weights is not None:
        if len(weights) != n_inputs:
            raise FusionInputError(
                f"method 'weighted_average': weights needs one value per input ({n_inputs}); got {len(weights)}")
        if sum(weights) <= 0:
            raise FusionInputError("method 'weighted_average': weights must not all be zero")


@register("weighted_average", family="classical",
          summary="Weighted mean of the inputs with one user-given weight per input.",
          reference=_SURVEY, dims=(2, 3),
          params=(Param("weights", "floats", None, "One non-negative weight per input, normalised to sum 1 "
                        "(default: equal weights).", minimum=0.0),),
          check=_check_weights)
def weighted_average_fusion(stack: np.ndarray, weights=None) -> np.ndarray:
    """F = sum_n w_n I_n / sum_n w_n for a ``(N, B, *spatial)`` stack; equal weights by default."""
    n = stack.shape[0]
    w = np.full(n, 1.0 / n) if weights is None else np.asarray(weights, dtype=np.float64) / np.sum(weights)
    return np.tensordot(w.astype(np.float32), stack, axes=1)


@register("max", family="classical", summary="Select the brightest input at each pixel (select-maximum).",
          reference=_SURVEY, dims=(2, 3))
def max_fusion(stack: np.ndarray) -> np.ndarray:
    """Pixel-wise maximum F = max_n I_n."""
    return stack.max(axis=0)


@register("min", family="classical", summary="Select the darkest input at each pixel (select-minimum).",
          reference=_SURVEY, dims=(2, 3))
def min_fusion(stack: np.ndarray) -> np.ndarray:
    """Pixel-wise minimum F = min_n I_n."""
    return stack.min(axis=0)
