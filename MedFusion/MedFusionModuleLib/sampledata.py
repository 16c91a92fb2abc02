"""Synthetic CT / MRI / PET volume nodes for the self-test, the batch script's ``--self-test`` and pytest.

Nothing is downloaded: the voxels come from ``MedFusionLib.sampledata.head_phantom``. MRI and CT share a
1 x 1 x 2 mm grid; PET is stored as a scanner would store it, on its own coarser 2 mm grid whose origin is
half a PET voxel off, so that every fusion also exercises resampling onto the reference grid.
"""

from __future__ import annotations

from typing import Dict, Optional, Sequence, Tuple

import numpy as np
import vtk
from vtk.util import numpy_support


def volumeFromArray(scene, array: np.ndarray, name: str, spacing: Sequence[float] = (1.0, 1.0, 1.0),
                    origin: Sequence[float] = (0.0, 0.0, 0.0)):
    """A new volume node in ``scene`` holding a copy of ``array``.

    ``array`` is in the axis order of ``slicer.util.arrayFromVolume``: ``(K, J, I)`` for a scalar volume,
    ``(K, J, I, 3)`` uint8 for an RGB vector volume. ``spacing`` and ``origin`` are (I, J, K) in mm; the
    voxel axes point along R, A, S. The node gets its default display node.
    """
    array = np.ascontiguousarray(array)
    rgb = array.ndim == 4
    if rgb and (array.shape[-1] != 3 or array.dtype != np.uint8):
        raise ValueError(f"an RGB volume needs a (K, J, I, 3) uint8 array; got {array.shape} {array.dtype}")
    if array.ndim not in (3, 4):
        raise ValueError(f"array must be (K, J, I) or (K, J, I, 3); got shape {array.shape}")
    image = vtk.vtkImageData()
    k, j, i = array.shape[:3]
    image.SetDimensions(i, j, k)
    image.AllocateScalars(numpy_support.get_vtk_array_type(array.dtype), 3 if rgb else 1)
    numpy_support.vtk_to_numpy(image.GetPointData().GetScalars()).reshape(array.shape)[...] = array
    node = scene.AddNewNodeByClass("vtkMRMLVectorVolumeNode" if rgb else "vtkMRMLScalarVolumeNode",
                                   scene.GetUniqueNameByString(name))
    node.SetSpacing(*[float(s) for s in spacing])
    node.SetOrigin(*[float(o) for o in origin])
    node.SetAndObserveImageData(image)
    node.CreateDefaultDisplayNodes()
    return node


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
