"""Colour (pseudo-colour PET/SPECT) fusion: colour maps and luminance/chroma transforms.

Colour fusion works on luminance: every colour input (an RGB image, or a scalar functional image shown
through a colour map) is split into luminance and chroma (YCbCr, ITU-R BT.601 full range, or the
orthonormal IHS transform); the luminances are fused with the anatomical images by the chosen method;
the chroma of the colour input is kept (several colour inputs: each chroma weighted by its distance
from neutral, C = sum_i C_i |C_i - c0| / sum_i |C_i - c0|); the result is converted back to RGB uint8.

References
----------
.. [1] ITU-R BT.601 (YCbCr, full-range variant used by JPEG/JFIF).
.. [2] T.-M. Tu, S.-C. Su, H.-C. Shyu, P. S. Huang, "A new look at IHS-like image fusion methods",
       Information Fusion 2(3):177-186, 2001.
.. [3] A. P. James, B. V. Dasarathy, "Medical image fusion: a survey of the state of the art",
       Information Fusion 19:4-19, 2014 (colour spaces in medical fusion).
"""

from __future__ import annotations

from typing import Dict, List, Sequence, Tuple

import numpy as np

from .errors import FusionInputError

COLOUR_SPACES = ("ycbcr", "ihs")

# Piecewise-linear colour maps: (position in [0, 1], (R, G, B) in [0, 1]).
_CONTROL_POINTS: Dict[str, Sequence[Tuple[float, Tuple[float, float, float]]]] = {
    "grey": [(0.0, (0, 0, 0)), (1.0, (1, 1, 1))],
    # Black-red-yellow-white, the classic "hot"/"heat" map.
    "hot": [(0.0, (0, 0, 0)), (0.375, (1, 0, 0)), (0.75, (1, 1, 0)), (1.0, (1, 1, 1))],
    # Blue-cyan-green-yellow-red.
    "rainbow": [(0.0, (0, 0, 0.5)), (0.125, (0, 0, 1)), (0.375, (0, 1, 1)), (0.5, (0, 1, 0)),
                (0.625, (1, 1, 0)), (0.875, (1, 0, 0)), (1.0, (0.5, 0, 0))],
    # Nuclear-medicine style: black-purple-red-orange-yellow-white.
    "pet": [(0.0, (0, 0, 0)), (0.2, (0.35, 0, 0.55)), (0.45, (0.9, 0, 0.15)), (0.65, (1, 0.5, 0)),
            (0.85, (1, 1, 0.1)), (1.0, (1, 1, 1))],
}
_ALIASES = {"gray": "grey", "heat": "hot"}
COLORMAPS = tuple(_CONTROL_POINTS)


def colormap_names() -> Tuple[str, ...]:
    """Names accepted by :func:`colormap_lut` (aliases: 'gray' for 'grey', 'heat' for 'hot')."""
    return COLORMAPS + tuple(_ALIASES)


def colormap_lut(name: str) -> np.ndarray:
    """The 256-entry RGB look-up table (uint8, shape (256, 3)) of colour map ``name``."""
    key = _ALIASES.get(name, name)
    if key not in _CONTROL_POINTS:
        raise FusionInputError(f"unknown colour map {name!r}; available: {', '.join(colormap_names())}")
    points = _CONTROL_POINTS[key]
    positions = np.array([p for p, _ in points])
    colours = np.array([c for _, c in points], dtype=np.float64)
    t = np.linspace(0.0, 1.0, 256)
    lut = np.stack([np.interp(t, positions, colours[:, k]) for k in range(3)], axis=1)
    return np.round(lut * 255.0).astype(np.uint8)


def apply_colormap(x01: np.ndarray, name: str) -> np.ndarray:
    """Map values in [0, 1] through colour map ``name`` to RGB uint8 (shape ``x01.shape + (3,)``)."""
    index = np.clip(np.rint(np.asarray(x01, dtype=np.float32) * 255.0), 0, 255).astype(np.uint8)
    return colormap_lut(name)[index]


# Forward matrices: rows give luminance, chroma 1, chroma 2 from (R, G, B).
_YCBCR = np.array([[0.299, 0.587, 0.114],
                   [-0.168736, -0.331264, 0.5],
                   [0.5, -0.418688, -0.081312]])
_IHS = np.array([[1 / np.sqrt(3), 1 / np.sqrt(3), 1 / np.sqrt(3)],
                 [1 / np.sqrt(6), 1 / np.sqrt(6), -2 / np.sqrt(6)],
                 [1 / np.sqrt(2), -1 / np.sqrt(2), 0.0]])
# Luminance full scale (to map it to [0, 1]) and the chroma value of a grey pixel.
_LUMA_SCALE = {"ycbcr": 255.0, "ihs": 255.0 * np.sqrt(3)}
_NEUTRAL = {"ycbcr": 128.0, "ihs": 0.0}


def _matrix(space: str) -> np.ndarray:
    if space == "ycbcr":
        return _YCBCR
    if space == "ihs":
        return _IHS
    raise FusionInputError(f"unknown colour space {space!r}; choose one of: {', '.join(COLOUR_SPACES)}")


def rgb_to_luma_chroma(rgb: np.ndarray, space: str = "ycbcr") -> Tuple[np.ndarray, np.ndarray]:
    """Split RGB (uint8 or 0..255 floats, shape (..., 3)) into luminance in [0, 1] and chroma (..., 2).

    YCbCr: Y = 0.299 R + 0.587 G + 0.114 B, Cb, Cr centred at 128. IHS: I = (R + G + B) / sqrt(3),
    v1 = (R + G - 2B) / sqrt(6), v2 = (R - G) / sqrt(2), chroma centred at 0.
    """
    m = _matrix(space).astype(np.float32)
    values = np.asarray(rgb, dtype=np.float32) @ m.T
    luma = values[..., 0] / np.float32(_LUMA_SCALE[space])
    chroma = values[..., 1:]
    if space == "ycbcr":
        chroma += np.float32(128.0)
    return luma, chroma


def luma_chroma_to_rgb(luma01: np.ndarray, chroma: np.ndarray, space: str = "ycbcr") -> np.ndarray:
    """Inverse of :func:`rgb_to_luma_chroma`; returns RGB uint8, clipped to 0..255."""
    inverse = np.linalg.inv(_matrix(space)).astype(np.float32)
    values = np.empty(luma01.shape + (3,), dtype=np.float32)
    values[..., 0] = luma01 * np.float32(_LUMA_SCALE[space])
    values[..., 1:] = chroma - np.float32(_NEUTRAL[space])
    rgb = values @ inverse.T
    return np.clip(np.rint(rgb), 0, 255).astype(np.uint8)


def fuse_chroma(chromas: List[np.ndarray], space: str = "ycbcr") -> np.ndarray:
    """One chroma from several: kept as is for one colour input, otherwise weighted per channel by
    the distance from neutral, C = sum_i C_i |C_i - c0| / sum_i |C_i - c0| (c0 = neutral)."""
    if len(chromas) == 1:
        return chromas[0]
    neutral = np.float32(_NEUTRAL[space])
    stack = np.stack(chromas)
    weight = np.abs(stack - neutral)
    total = weight.sum(axis=0)
    return np.where(total > 0, (stack * weight).sum(axis=0) / np.where(total > 0, total, 1), neutral)
