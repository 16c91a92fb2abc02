"""Built-in synthetic sample data: a multimodal head phantom (CT, MRI T1, PET) made on the fly.

Nothing is downloaded: the anatomy is a set of nested ellipsoids (scalp, skull, brain, ventricles) and
the function is a set of hot spots drawn with MONAI's synthetic image generator
(:func:`monai.data.synthetic.create_test_image_3d`). The three modalities share one grid, as co-registered
images do, and each shows what its modality shows: CT the bone, MRI the soft tissue contrast (grey matter
brighter than CSF, bone dark), PET the tracer uptake (hot spots, smooth and low resolution).
"""

from __future__ import annotations

from typing import Dict, Tuple

import numpy as np
from scipy import ndimage as ndi


def _ellipsoid(shape: Tuple[int, ...], centre, radii) -> np.ndarray:
    grids = np.ogrid[tuple(slice(0, s) for s in shape)]
    r2 = sum(((g - c) / r) ** 2 for g, c, r in zip(grids, centre, radii))
    return r2 <= 1.0


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
    from monai.data.synthetic import create_test_image_3d  # torch-heavy import, only when used

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

    # Hot spots: MONAI's random spheres, kept inside the brain.
    _, labels = create_test_image_3d(k, j, i, num_objs=24, rad_max=max(3, min(shape) // 6), rad_min=2,
                                     noise_max=0.0, num_seg_classes=3, random_state=rng)
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
