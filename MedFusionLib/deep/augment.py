"""Configurable training augmentation built from MONAI transforms.

One :class:`AugmentConfig` describes the random transforms; :func:`build_augmentation` turns it into a
MONAI ``Compose`` for channel-first samples ``(C, *spatial)``. The registered sources of a pair are its
channels, so they always get the same geometric transform (rotation, flips, zoom), while intensity scale,
shift and noise are drawn per channel (each modality has its own window). Values are clipped back to
[0, 1], the range the methods see at inference. :func:`augment_batch` applies it to a batch in a few
groups of samples (see there why).

The command line takes ``--augment none``, ``--augment default`` or overrides such as
``--augment rotate=10,flip=0.5,noise=0``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Optional

import numpy as np

from ..errors import FusionInputError


@dataclass
class AugmentConfig:
    """Random augmentation of training patches (all off when every value is 0).

    Attributes
    ----------
    rotate : float
        Largest rotation angle in degrees (uniform in +-rotate; in-plane for 2-D, about each axis for 3-D).
    flip : float
        Probability of flipping along each spatial axis.
    zoom : float
        Zoom factor drawn in [1 - zoom, 1 + zoom].
    scale : float
        Per-channel intensity scale factor drawn in [1 - scale, 1 + scale].
    shift : float
        Per-channel intensity offset drawn in [-shift, shift].
    noise : float
        Standard deviation of additive Gaussian noise (drawn in [0, noise] per sample).
    prob : float
        Probability that each of rotation, zoom, scale, shift and noise is applied to a sample.
    """

    rotate: float = 15.0
    flip: float = 0.5
    zoom: float = 0.1
    scale: float = 0.1
    shift: float = 0.05
    noise: float = 0.01
    prob: float = 0.5

    @classmethod
    def none(cls) -> "AugmentConfig":
        return cls(rotate=0.0, flip=0.0, zoom=0.0, scale=0.0, shift=0.0, noise=0.0, prob=0.0)

    @classmethod
    def parse(cls, spec: Optional[str]) -> "AugmentConfig":
        """``None`` / ``'default'``: the defaults; ``'none'``: no augmentation; ``'k=v,k=v'``: overrides
        of the defaults (``'none,noise=0.02'`` starts from none)."""
        if spec is None or spec.strip() in ("", "default"):
            return cls()
        items = [s.strip() for s in spec.split(",") if s.strip()]
        config = cls()
        if items and items[0] == "none":
            config, items = cls.none(), items[1:]
        names = {f.name for f in fields(cls)}
        for item in items:
            key, sep, value = item.partition("=")
            if not sep or key.strip() not in names:
                raise FusionInputError(f"--augment takes 'none', 'default' or KEY=VALUE items with keys "
                                       f"{', '.join(sorted(names))}; got {item!r}")
            try:
                number = float(value)
            except ValueError:
                raise FusionInputError(f"--augment {key}={value!r} is not a number") from None
            if not math.isfinite(number) or number < 0:
                raise FusionInputError(f"--augment {key} must be a finite number >= 0; got {value!r}")
            setattr(config, key.strip(), number)
        if config.flip > 1 or config.prob > 1 or config.zoom >= 1 or config.scale >= 1:
            raise FusionInputError("--augment: flip and prob are probabilities (<= 1); zoom and scale must be < 1")
        return config

    @property
    def active(self) -> bool:
        return any(v > 0 for k, v in asdict(self).items() if k != "prob") and (self.flip > 0 or self.prob > 0)

    def to_dict(self) -> dict:
        return asdict(self)


def build_augmentation(config: AugmentConfig, spatial_dims: int = 2):
    """A MONAI ``Compose`` for ``(C, *spatial)`` samples, or None when ``config`` does nothing."""
    if not config.active:
        return None
    import monai.transforms as mt

    p = config.prob
    steps = []
    if config.rotate > 0 and p > 0:
        angle = math.radians(config.rotate)
        ranges = {"range_x": angle} if spatial_dims == 2 else {"range_x": angle, "range_y": angle, "range_z": angle}
        steps.append(mt.RandRotate(prob=p, padding_mode="border", **ranges))
    if config.flip > 0:
        steps += [mt.RandFlip(prob=config.flip, spatial_axis=axis) for axis in range(spatial_dims)]
    if config.zoom > 0 and p > 0:
        steps.append(mt.RandZoom(prob=p, min_zoom=1 - config.zoom, max_zoom=1 + config.zoom, mode="bilinear",
                                 padding_mode="edge"))
    if config.scale > 0 and p > 0:
        steps.append(mt.RandScaleIntensity(factors=config.scale, prob=p, channel_wise=True))
    if config.shift > 0 and p > 0:
        steps.append(mt.RandShiftIntensity(offsets=config.shift, prob=p, channel_wise=True))
    if config.noise > 0 and p > 0:
        steps.append(mt.RandGaussianNoise(prob=p, std=config.noise))
    steps.append(mt.Lambda(_clip_unit))
    return mt.Compose(steps)


def _clip_unit(x):
    return x.clamp(0.0, 1.0) if hasattr(x, "clamp") else np.clip(x, 0.0, 1.0)


def augment_batch(batch: np.ndarray, transform, rng: np.random.Generator, groups: int = 8) -> np.ndarray:
    """Apply ``transform`` to ``batch`` (B, C, *spatial) in up to ``groups`` groups of samples.

    The samples of a group are stacked as channels, so they share one geometric transform (rotation,
    flip, zoom) while intensity scale, shift and noise are drawn per channel; successive batches and
    groups draw new transforms. (MONAI transforms work on one channel-first sample; per-sample calls
    would cost more than the training step of the small networks here.) The transform's random state
    is seeded from ``rng``, so a run is reproducible from the sampler's generator alone."""
    if transform is None:
        return batch
    transform.set_random_state(seed=int(rng.integers(0, 2 ** 31 - 1)))
    b, c = batch.shape[:2]
    out = np.empty_like(batch)
    size = -(-b // max(1, groups))
    for start in range(0, b, size):   # a few groups per batch, never per pixel
        part = batch[start:start + size]
        merged = part.reshape((-1,) + part.shape[2:])
        result = np.asarray(transform(merged), dtype=np.float32)
        out[start:start + size] = result.reshape(part.shape)
    return out


