"""Draw the MedFusion icon: two overlapping brain-shaped discs, grey anatomy and hot function.

Writes ``MedFusion.png`` (extension icon, 128 x 128, RGBA) and the same image as the module icon
``MedFusion/Resources/Icons/MedFusion.png``. Deterministic (no randomness), drawn with numpy at 4x the size
and averaged down for smooth edges::

    python docs/make_icon.py            # from the repository root
"""

from __future__ import annotations

import os
import sys

import numpy as np

SIZE = 128
SUPERSAMPLE = 4
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUTPUTS = (os.path.join(ROOT, "MedFusion.png"), os.path.join(ROOT, "MedFusion", "Resources", "Icons", "MedFusion.png"))


def _brain(x: np.ndarray, y: np.ndarray, cx: float, cy: float, rx: float, ry: float):
    """Inside-mask and a gyri pattern of a brain-like blob centred at (cx, cy)."""
    dx, dy = (x - cx) / rx, (y - cy) / ry
    angle = np.arctan2(dy, dx)
    radius = np.hypot(dx, dy)
    # A wavy outline (gyri on the surface) and a flattened base.
    outline = 1.0 + 0.03 * np.sin(7 * angle) + 0.015 * np.sin(13 * angle + 0.7)
    outline = outline * np.where(dy > 0.55, 0.92, 1.0)
    inside = radius <= outline
    # Folds: ridges of a few curved waves inside the blob; the midline fissure.
    folds = (0.5 + 0.5 * np.sin(14.0 * radius + 2.5 * np.sin(4.0 * angle))) ** 2
    fissure = np.exp(-((dx / 0.035) ** 2)) * (dy < 0.1)
    shade = np.clip(0.62 + 0.38 * folds - 0.45 * fissure - 0.12 * radius ** 2, 0.0, 1.0)
    return inside, shade


def render(size: int = SIZE) -> np.ndarray:
    """The icon as an RGBA uint8 array (size, size, 4)."""
    n = size * SUPERSAMPLE
    y, x = np.mgrid[0:n, 0:n].astype(np.float64) / n
    rgba = np.zeros((n, n, 4), dtype=np.float64)

    grey_in, grey_shade = _brain(x, y, 0.40, 0.47, 0.33, 0.31)
    hot_in, hot_shade = _brain(x, y, 0.60, 0.55, 0.31, 0.29)

    grey = np.stack([grey_shade * 0.86, grey_shade * 0.88, grey_shade * 0.92], axis=-1)
    # "Hot" map: dark red at the rim to yellow-white at the centre of the functional disc.
    heat = np.clip(1.15 - np.hypot((x - 0.62) / 0.31, (y - 0.53) / 0.29), 0.0, 1.0)[..., None]
    hot = np.concatenate([np.ones_like(heat) * 0.95, 0.15 + 0.8 * heat, 0.05 + 0.45 * heat ** 3], axis=-1)
    hot = hot * hot_shade[..., None]

    only_grey = grey_in & ~hot_in
    only_hot = hot_in & ~grey_in
    both = grey_in & hot_in
    rgba[only_grey, :3] = grey[only_grey]
    rgba[only_hot, :3] = hot[only_hot] * 0.9
    # The fused region: the anatomy's luminance with the function's colour, as colour fusion does.
    luminance = (grey[..., 0] * 0.299 + grey[..., 1] * 0.587 + grey[..., 2] * 0.114)[..., None]
    fused = np.clip(0.35 * grey + 0.85 * hot * (0.55 + 0.6 * luminance), 0.0, 1.0)
    rgba[both, :3] = fused[both]
    rgba[grey_in | hot_in, 3] = 1.0
    # A thin dark outline around each disc keeps the shapes readable on light and dark backgrounds.
    for inside in (grey_in, hot_in):
        edge = inside & ~(np.roll(inside, 3, 0) & np.roll(inside, -3, 0) & np.roll(inside, 3, 1) & np.roll(inside, -3, 1))
        rgba[edge, :3] = 0.12
        rgba[edge, 3] = 1.0

    # Average SUPERSAMPLE x SUPERSAMPLE blocks (premultiplied alpha, so edges do not darken).
    premultiplied = rgba.copy()
    premultiplied[..., :3] *= rgba[..., 3:4]
    blocks = premultiplied.reshape(size, SUPERSAMPLE, size, SUPERSAMPLE, 4).mean(axis=(1, 3))
    alpha = blocks[..., 3:4]
    colour = np.divide(blocks[..., :3], alpha, out=np.zeros_like(blocks[..., :3]), where=alpha > 0)
    out = np.concatenate([colour, alpha], axis=-1)
    return np.clip(np.rint(out * 255.0), 0, 255).astype(np.uint8)


def main(paths=OUTPUTS) -> int:
    from PIL import Image

    image = render()
    for path in paths:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        Image.fromarray(image, mode="RGBA").save(path + ".tmp.png", optimize=True)
        os.replace(path + ".tmp.png", path)
        print(f"wrote {path} ({image.shape[1]} x {image.shape[0]})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
