"""Synthetic CT / MRI / PET volume nodes for the self-test, the batch script's ``--self-test`` and pytest.

Nothing is downloaded: the voxels come from ``MedFusionLib.sampledata.head_phantom``. MRI and CT share a
1 x 1 x 2 mm grid; PET is stored as a scanner would store it, on its own coarser 2 mm grid whose origin is
half a PET voxel off, so that every fusion also exercises resampling onto the reference grid.
"""

from __future__ import annotations

from typing import Dict, Optional, Sequence, Tuple

import numpy as np


def volumeFromArray(scene, array: np.ndarray, name: str, spacing: Sequence[float] = (1.0, 1.0, 1.0),
                    origin: Sequence[float] = (0.0, 0.0, 0.0)):
    """A new volume node named like ``name`` (made unique in ``scene``) holding a copy of ``array``.

    ``(K, J, I)`` gives a scalar volume, ``(K, J, I, 3)`` uint8 an RGB vector volume; ``spacing`` and
    ``origin`` are (I, J, K) in mm (``MedFusionLib.bridge.node_from_array``)."""
    from MedFusionLib import bridge

    return bridge.node_from_array(scene, array, scene.GetUniqueNameByString(name), spacing=spacing, origin=origin)


def phantomArrays(shape: Tuple[int, int, int] = (24, 64, 64), seed: int = 0) -> Dict[str, np.ndarray]:
    """``MedFusionLib.sampledata.head_phantom`` arrays (``ct``, ``mri``, ``pet``, ``lesions``)."""
    from MedFusionLib import sampledata

    return sampledata.head_phantom(tuple(shape), seed=seed)


def phantomVolumes(scene, shape: Tuple[int, int, int] = (24, 64, 64), seed: int = 0,
                   arrays: Optional[Dict[str, np.ndarray]] = None) -> Dict[str, object]:
    """Add ``CT``, ``MRI`` and ``PET`` phantom volume nodes to ``scene``; returns them by name.

    PET is subsampled 2 x in-plane onto a 2 mm grid shifted by half a PET voxel (its own geometry)."""
    arrays = arrays if arrays is not None else phantomArrays(shape, seed)
    k, j, i = arrays["mri"].shape
    spacing = (1.0, 1.0, 2.0)
    origin = (-i / 2.0, -j / 2.0, -float(k))
    return {
        "CT": volumeFromArray(scene, arrays["ct"], "CT", spacing, origin),
        "MRI": volumeFromArray(scene, arrays["mri"], "MRI", spacing, origin),
        "PET": volumeFromArray(scene, np.ascontiguousarray(arrays["pet"][:, ::2, ::2]), "PET", (2.0, 2.0, 2.0),
                               (origin[0] + 0.5, origin[1] + 0.5, origin[2])),
    }
