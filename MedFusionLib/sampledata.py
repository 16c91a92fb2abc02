"""Built-in synthetic sample data: a multimodal head phantom (CT, MRI T1, PET) made on the fly.

Nothing is downloaded and only NumPy and SciPy are needed (no PyTorch, no MONAI: the phantom is the
Slicer module's sample data and self-test data, usable before the learned methods' dependencies are
installed). The anatomy is a set of nested ellipsoids (scalp, skull, brain, ventricles) and the function
is a set of random spherical hot spots (:func:`random_spheres`, the same draws as MONAI's
``monai.data.synthetic.create_test_image_3d``, so the phantom is voxel for voxel the one earlier versions
made with MONAI). The three modalities share one grid, as co-registered images do, and each shows what
its modality shows: CT the bone, MRI the soft tissue contrast (grey matter brighter than CSF, bone
dark), PET the tracer uptake (hot spots, smooth and low resolution).
"""

from __future__ import annotations

from typing import Dict, Tuple

import numpy as np
from scipy import ndimage as ndi


def _ellipsoid(shape: Tuple[int, ...], centre, radii) -> np.ndarray:
    grids = np.ogrid[tuple(slice(0, s) for s in shape)]
    r2 = sum(((g - c) / r) ** 2 for g, c, r in zip(grids, centre, radii))
    return r2 <= 1.0


def random_spheres(shape: Tuple[int, int, int], num_objs: int, rad_max: int, rad_min: int, num_classes: int,
                   rng: np.random.RandomState) -> np.ndarray:
    """A label volume of ``num_objs`` random balls, each labelled 1..``num_classes`` (later balls on top).

    Draws from ``rng`` exactly as ``monai.data.synthetic.create_test_image_3d(*shape, num_objs, rad_max,
    rad_min, noise_max=0, num_seg_classes=num_classes, random_state=rng)`` does, including its final
    (zero-width) noise draw, so ``rng`` is left in the same state and the labels are identical: centres
    uniform in ``[rad_max, size - rad_max)`` per axis, radius in ``[rad_min, rad_max)``, label
    ``ceil(u * num_classes)`` for ``u`` uniform in [0, 1).
    """
    if rad_max <= rad_min or rad_min < 1:
        raise ValueError(f"need 1 <= rad_min < rad_max; got rad_min={rad_min}, rad_max={rad_max}")
    if min(shape) <= 2 * rad_max:
        raise ValueError(f"the smallest size of {shape} must be larger than 2 * rad_max = {2 * rad_max}")
    if num_classes < 2:
        raise ValueError(f"num_classes must be at least 2; got {num_classes}")
    image = np.zeros(shape)
    for _ in range(num_objs):
        centre = [rng.randint(rad_max, size - rad_max) for size in shape]
        radius = rng.randint(rad_min, rad_max)
        grids = np.ogrid[tuple(slice(-c, size - c) for c, size in zip(centre, shape))]
        ball = sum(g * g for g in grids) <= radius * radius
        image[ball] = np.ceil(rng.random_sample() * num_classes)
    rng.uniform(0, 0.0, size=image.shape)   # MONAI's noise draw (noise_max=0): keeps the generator in step
    return np.ceil(image).astype(np.int32)


def head_phantom(shape: Tuple[int, int, int] = (48, 128, 128), seed: int = 0) -> Dict[str, np.ndarray]:
    """A co-registered CT / MRI-T1 / PET head phantom.

    Parameters
    ----------
    shape : (K, J, I)
        Volume shape in Slicer's array order; a 2-D phantom is one slice of it.
    seed : int
        Seed of the hot-spot and noise generator (same seed, same phantom).

    Returns
    -------
    dict
        ``'ct'`` (int16, Hounsfield units), ``'mri'`` (float32, arbitrary units), ``'pet'`` (float32,
        SUV-like), and ``'lesions'`` (uint8 label map of the hot spots).
    """
    if len(shape) != 3 or min(shape) < 8:
        raise ValueError(f"shape must be 3 sizes of at least 8; got {shape}")
    rng = np.random.RandomState(seed)
    k, j, i = shape
    centre = (k / 2, j / 2, i / 2)
    head = _ellipsoid(shape, centre, (0.48 * k, 0.46 * j, 0.40 * i))
    skull_outer = _ellipsoid(shape, centre, (0.44 * k, 0.42 * j, 0.36 * i))
    brain = _ellipsoid(shape, centre, (0.38 * k, 0.37 * j, 0.31 * i))
    white = _ellipsoid(shape, centre, (0.28 * k, 0.27 * j, 0.22 * i))
    ventricles = (_ellipsoid(shape, (k / 2, j / 2, i / 2 - 0.06 * i), (0.12 * k, 0.16 * j, 0.035 * i))
                  | _ellipsoid(shape, (k / 2, j / 2, i / 2 + 0.06 * i), (0.12 * k, 0.16 * j, 0.035 * i)))
    skull = skull_outer & ~brain
    scalp = head & ~skull_outer

    # Hot spots: random balls, kept inside the brain.
    labels = random_spheres(shape, num_objs=24, rad_max=max(3, min(shape) // 6), rad_min=2, num_classes=3, rng=rng)
    lesions = (labels.astype(np.uint8) * (brain & ~ventricles)).astype(np.uint8)

    ct = np.full(shape, -1000.0, dtype=np.float32)
    ct[scalp] = 40.0
    ct[skull] = 1200.0
    ct[brain] = 35.0
    ct[white] = 28.0
    ct[ventricles] = 5.0
    ct[lesions > 0] += 15.0
    ct += rng.normal(0.0, 8.0, shape).astype(np.float32)

    mri = np.zeros(shape, dtype=np.float32)
    mri[scalp] = 600.0
    mri[skull] = 80.0
    mri[brain] = 420.0           # grey matter
    mri[white] = 560.0           # white matter brighter on T1
    mri[ventricles] = 120.0      # CSF dark on T1
    mri[lesions > 0] -= 90.0
    mri = ndi.gaussian_filter(mri, 0.7) + rng.normal(0.0, 10.0, shape).astype(np.float32)
    mri = np.clip(mri, 0, None)

    pet = np.zeros(shape, dtype=np.float32)
    pet[brain] = 1.0             # background grey-matter uptake
    pet[white] = 0.6
    pet[ventricles] = 0.1
    pet += 4.0 * (lesions > 0) + 2.0 * (lesions > 1)
    pet = ndi.gaussian_filter(pet, 2.0)  # PET resolution is several voxels
    # Multiplicative noise: counting noise grows with uptake and the background stays empty.
    pet = np.clip(pet * (1.0 + rng.normal(0.0, 0.08, shape)).astype(np.float32), 0, None)

    return {"ct": np.round(ct).astype(np.int16), "mri": mri.astype(np.float32), "pet": pet.astype(np.float32),
            "lesions": lesions}


def head_phantom_slice(size: int = 128, seed: int = 0) -> Dict[str, np.ndarray]:
    """The central axial slice of :func:`head_phantom` at ``size`` x ``size`` (2-D arrays)."""
    volume = head_phantom((16, size, size), seed)
    return {name: array[8] for name, array in volume.items()}
