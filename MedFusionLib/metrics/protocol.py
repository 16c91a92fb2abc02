"""Reading images as the published evaluation protocol does: sources as rounded 8-bit luminance, fused
results clipped and rounded to 0..255.

The protocol is that of the CDDFuse evaluator (Zhao et al., CVPR 2023, ``utils/Evaluator.py``;
``../shared/docs/fusion-metrics.md``), which reads every image with OpenCV as float32 luminance:
:func:`protocol_image` reproduces that arithmetic exactly without OpenCV, :func:`protocol_fused` scores a
fused result on the same integer grid. The metric functions themselves never rescale.
"""

from __future__ import annotations

from typing import Optional

import numpy as np

from ..errors import FusionInputError
from ._common import _as_real_array


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
    ``fma(R, 0.299f, fma(B, 0.114f, G * 0.587f))``, in that order; some pixels of pseudo-colour images fall
    exactly on a half-integer, where the float32 rounding decides the result, so the same float32 arithmetic
    is reproduced here (each fused multiply-add is exact in float64, then rounded once to float32), followed
    by round-half-to-even; this matches cvtColor on all 2^24 colours (checked against opencv-python-headless
    4.5.5 and 5.1.0). Grey input is returned as float64 unchanged.
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
    # OpenCV's order: G * 0.587f first, then fma(B, 0.114f, .), then fma(R, 0.299f, .) (this order reproduces
    # cvtColor on all 2^24 colours; starting with B * 0.114f differs on 830 of them).
    t = (green * c_g).astype(np.float32).astype(np.float64)
    t = (blue * c_b + t).astype(np.float32).astype(np.float64)
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
