"""Geometry of the Slicer bridge: IJK-to-RAS matrices and resampling a volume node onto a reference's grid.

Part of :mod:`MedFusionLib.bridge` (which re-exports :func:`resample_to_reference`). Here: a node's
IJK-to-RAS matrix and the conversions between ``vtkMatrix4x4`` and 4 x 4 numpy arrays
(:func:`_matrix_array`, :func:`_vtk_matrix`, also used by the registration, cohort and file code), the
"already on the reference grid" test, the reference-IJK-to-node-IJK transform through both nodes' parent
transforms (linear or not), and the ``vtkImageReslice`` resampling itself (linear interpolation; a shallow
copy of the input's image data, so the input node is never written to).
"""

from __future__ import annotations

import numpy as np
import slicer
import vtk
from vtk.util import numpy_support

from .bridge_nodes import _check_pair_scene, _describe, _volume_kind, _voxel_view

# Tolerance for "same geometry": IJK-to-RAS entries are in mm; 1e-6 mm is far below any voxel size.
_GEOMETRY_TOLERANCE = 1e-6


def _ijk_to_ras(node) -> vtk.vtkMatrix4x4:
    matrix = vtk.vtkMatrix4x4()
    node.GetIJKToRASMatrix(matrix)
    return matrix


def _matrix_array(matrix: vtk.vtkMatrix4x4) -> np.ndarray:
    return np.array([[matrix.GetElement(r, c) for c in range(4)] for r in range(4)])


def _vtk_matrix(array) -> vtk.vtkMatrix4x4:
    """A 4 x 4 array as a vtkMatrix4x4 (the inverse of :func:`_matrix_array`)."""
    matrix = vtk.vtkMatrix4x4()
    for row, values in enumerate(np.asarray(array, dtype=np.float64)):
        for col, value in enumerate(values):
            matrix.SetElement(row, col, float(value))
    return matrix


def _same_grid(node, reference) -> bool:
    """Whether ``node``'s voxels already lie on ``reference``'s grid (no resampling needed)."""
    if node.GetImageData().GetDimensions() != reference.GetImageData().GetDimensions():
        return False
    if node.GetTransformNodeID() != reference.GetTransformNodeID():
        # Different parent transforms may still compose to identity, but that is rare; the general
        # resampling path handles it correctly anyway.
        return False
    return np.allclose(_matrix_array(_ijk_to_ras(node)), _matrix_array(_ijk_to_ras(reference)),
                       rtol=0.0, atol=_GEOMETRY_TOLERANCE)


def _reslice_transform(node, reference):
    """Transform from the reference's IJK to ``node``'s IJK (the direction vtkImageReslice samples in).

    reference IJK -> reference local RAS (its IJK-to-RAS) -> ``node``'s local RAS (through world, by both
    parent transforms) -> ``node``'s IJK (its RAS-to-IJK). Returns a vtkTransform when all parts are
    linear (much faster in vtkImageReslice), else the vtkGeneralTransform."""
    ijk_to_ijk = vtk.vtkGeneralTransform()
    ijk_to_ijk.PostMultiply()
    ijk_to_ijk.Concatenate(_ijk_to_ras(reference))
    between = vtk.vtkGeneralTransform()
    # Source = the reference's parent, target = the node's parent: maps the reference's local RAS to the
    # node's local RAS. Works for linear, grid, B-spline and thin-plate transforms alike.
    slicer.vtkMRMLTransformNode.GetTransformBetweenNodes(
        reference.GetParentTransformNode(), node.GetParentTransformNode(), between)
    ijk_to_ijk.Concatenate(between)
    ras_to_ijk = vtk.vtkMatrix4x4()
    node.GetRASToIJKMatrix(ras_to_ijk)
    ijk_to_ijk.Concatenate(ras_to_ijk)
    linear = vtk.vtkTransform()
    if slicer.vtkMRMLTransformNode.IsGeneralTransformLinear(ijk_to_ijk, linear):
        return linear
    return ijk_to_ijk


def _resample(node, reference, kind: str) -> np.ndarray:
    """``node``'s voxels resampled onto ``reference``'s grid (no checks; see resample_to_reference).

    We do not use vtkSlicerVolumesLogic.ResampleVolumeToReferenceVolume: it adds a node to the scene, and
    (checked on slicer-core 5.13) it ignores the reference's parent transform when the input has none, and
    when both have one it maps through the input's transform-from-world instead of the reference's, so
    the result lands in the wrong place. It also keeps the input's parent transform on its output.
    """
    source = vtk.vtkImageData()
    # A shallow copy shares the voxel array but has its own geometry fields: resetting them (Slicer keeps
    # geometry in the node, but a reader may leave origin/spacing on the image) makes image coordinates
    # equal IJK indices, without touching the input node's image data.
    source.ShallowCopy(node.GetImageData())
    source.SetOrigin(0.0, 0.0, 0.0)
    source.SetSpacing(1.0, 1.0, 1.0)
    source.SetDirectionMatrix(1, 0, 0, 0, 1, 0, 0, 0, 1)
    voxels = _voxel_view(node)
    if voxels.dtype.kind in "iu" and voxels.dtype.itemsize == 8:
        # slicer-core's vtkImageReslice is built without VTK_LONG_LONG: it warns and then crashes the
        # process (found by test_properties_bridge). 64-bit integers are resampled as float64 (exact up
        # to 2**53; fusion works in float32 anyway).
        wide = numpy_support.numpy_to_vtk(np.ascontiguousarray(voxels, dtype=np.float64).reshape(-1), deep=True)
        source = vtk.vtkImageData()
        source.SetDimensions(node.GetImageData().GetDimensions())
        source.GetPointData().SetScalars(wide)

    reslice = vtk.vtkImageReslice()
    reslice.SetInputData(source)
    reslice.SetResliceTransform(_reslice_transform(node, reference))
    reslice.SetOutputOrigin(0.0, 0.0, 0.0)
    reslice.SetOutputSpacing(1.0, 1.0, 1.0)
    dims = reference.GetImageData().GetDimensions()
    reslice.SetOutputExtent(0, dims[0] - 1, 0, dims[1] - 1, 0, dims[2] - 1)
    # Linear interpolation, per component for RGB; the output keeps the input's scalar type (uint8 stays
    # uint8, rounded).
    reslice.SetInterpolationModeToLinear()
    # Outside the input's field of view: black for RGB; the input's minimum for scalars, so that it reads
    # as background (air in CT, -1000 HU) rather than as tissue (0 HU would be water).
    background = 0.0 if kind == "rgb" else float(np.min(_voxel_view(node)))
    reslice.SetBackgroundLevel(background)
    reslice.Update()
    output = reslice.GetOutput()
    shape = tuple(reversed(output.GetDimensions()))
    array = numpy_support.vtk_to_numpy(output.GetPointData().GetScalars())
    return array.reshape(shape + ((3,) if kind == "rgb" else ()))


def resample_to_reference(node, reference) -> np.ndarray:
    """Resample a volume node onto a reference volume's voxel grid, as an array.

    Parameters
    ----------
    node : vtkMRMLScalarVolumeNode or vtkMRMLVectorVolumeNode
        The volume to resample (RGB vector volumes: 3 components, unsigned char). Not modified.
    reference : vtkMRMLScalarVolumeNode or vtkMRMLVectorVolumeNode
        Defines the grid: its dimensions and IJK-to-RAS matrix (origin, spacing, directions). Both nodes'
        parent transforms (linear or not) are honoured: the result is what lies under each reference
        voxel in world coordinates. Both nodes must be in the same scene.

    Returns
    -------
    ndarray
        Read-only array of the reference's shape ``(K, J, I)`` (``(K, J, I, 3)`` uint8 for RGB), the dtype
        of ``node``'s voxels (float64 for 64-bit integers, which VTK's reslice does not take), linearly
        interpolated. Voxels outside ``node``'s field of view get its
        minimum value (black for RGB). When ``node`` already lies on the reference grid this is a
        view of its voxels, not a copy.

    Raises
    ------
    FusionInputError
        A node is not a supported volume, has no image data, or the nodes are not in one scene.
    """
    kind = _volume_kind(node, _describe(node))
    _volume_kind(reference, "the reference " + _describe(reference))
    _check_pair_scene(node, reference, _describe(node))
    array = _voxel_view(node) if _same_grid(node, reference) else _resample(node, reference, kind)
    array.flags.writeable = False
    return array
