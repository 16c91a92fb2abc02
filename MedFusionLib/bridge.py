"""Slicer volume nodes in, fused volume node out; volume file IO through Slicer's storage nodes.

This is the only library module that imports ``slicer``: inside the Slicer application it uses the
application's MRML libraries, outside it the ``slicer-core`` package (the same libraries without Qt). The
scene is always passed explicitly (through the nodes), never taken from ``slicer.mrmlScene``, so the same
code runs in the Slicer panel, in Slicer's batch mode and on the command line.

What :func:`fuse_volume_nodes` does, in order:

1. check the nodes, the options and the output node (:func:`MedFusionLib.pipeline.plan` on stand-in
   arrays), so that bad input fails before any work and before the scene is touched;
2. resample every input but the first (the anatomical reference) onto the reference's voxel grid, through
   both nodes' parent transforms (linear or not), with linear interpolation;
3. fuse the arrays with :func:`MedFusionLib.fuse`;
4. only then create (or fill) the output node, with the reference's geometry and parent transform.

Input nodes are never written to: their voxels are read through read-only views and resampling works on
a shallow copy of their image data.
"""

from __future__ import annotations

import inspect
import json
import os
import re
import shutil
import tempfile
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import slicer
import vtk
from vtk.util import numpy_support

from . import intensity, pipeline
from .errors import FusionInputError
from .progress import CancelLike, Progress, ProgressCallback

__all__ = ["new_scene", "node_from_array", "fuse_volume_nodes", "resample_to_reference", "array_from_node", "load_volume",
           "save_volume", "mark_fused", "FUSED_ATTRIBUTE", "FUSED_NOTICE", "register_volume_nodes",
           "REGISTRATION_ROLE", "REGISTRATION_ATTRIBUTE", "registered_proxy"]

_SCALAR_CLASS = "vtkMRMLScalarVolumeNode"
_VECTOR_CLASS = "vtkMRMLVectorVolumeNode"
# Volume kinds whose voxels are not intensities: fusing them would be meaningless.
_UNSUPPORTED_CLASSES = {
    "vtkMRMLLabelMapVolumeNode": "label map volumes (segment labels, not intensities) are not supported; "
                                 "fuse the intensity volume, or convert the label map to a scalar volume",
    "vtkMRMLDiffusionTensorVolumeNode": "diffusion tensor volumes are not supported; fuse a scalar map "
                                        "derived from them (e.g. FA)",
    "vtkMRMLDiffusionWeightedVolumeNode": "diffusion-weighted volumes are not supported; fuse one "
                                          "baseline or gradient volume extracted from them",
}
# Keyword arguments of pipeline.plan besides images/method/params: they go to plan as they are, everything
# else in **fuse_kwargs is a method parameter (pipeline.fuse splits them the same way).
_PLAN_KEYWORDS = tuple(name for name, p in inspect.signature(pipeline.plan).parameters.items()
                       if p.kind is inspect.Parameter.KEYWORD_ONLY and name != "params")
# Share of the progress range given to resampling; fusion itself takes nearly all the time.
_RESAMPLE_SHARE = 0.1
# Tolerance for "same geometry": IJK-to-RAS entries are in mm; 1e-6 mm is far below any voxel size.
_GEOMETRY_TOLERANCE = 1e-6


# --- nodes ---------------------------------------------------------------------------------------------
def new_scene():
    """Create an empty MRML scene for work outside the Slicer application.

    Returns
    -------
    vtkMRMLScene
        A new scene; pass it to :func:`load_volume`. Inside Slicer use ``slicer.mrmlScene`` instead so the
        nodes show up in the application.
    """
    return slicer.vtkMRMLScene()


def _describe(node, k: Optional[int] = None) -> str:
    where = f"input {k}" if k is not None else "node"
    if node is None:
        return f"{where} (None)"
    name = node.GetName() if isinstance(node, slicer.vtkMRMLNode) else None
    kind = node.GetClassName() if hasattr(node, "GetClassName") else type(node).__name__
    return f"{where} ({name!r}, {kind})" if name else f"{where} ({kind})"


def _volume_kind(node, what: str) -> str:
    """Check that ``node`` is a volume the fusion can read; return ``'scalar'`` or ``'rgb'``.

    ``what`` names the node in error messages (e.g. "input 1 ('PET', vtkMRMLScalarVolumeNode)")."""
    if not isinstance(node, slicer.vtkMRMLVolumeNode):
        raise FusionInputError(
            f"{what} is not a volume node; allowed: vtkMRMLScalarVolumeNode or vtkMRMLVectorVolumeNode "
            f"(RGB)")
    for class_name, reason in _UNSUPPORTED_CLASSES.items():
        if node.IsA(class_name):
            raise FusionInputError(f"{what}: {reason}")
    image = node.GetImageData()
    if image is None or image.GetPointData() is None or image.GetPointData().GetScalars() is None:
        raise FusionInputError(f"{what} has no image data (an empty volume node); load or compute its voxels first")
    if min(image.GetDimensions()) < 1:
        raise FusionInputError(f"{what} has an empty image (dimensions {image.GetDimensions()})")
    components = image.GetNumberOfScalarComponents()
    if node.IsA(_VECTOR_CLASS):
        if components != 3 or image.GetScalarType() != vtk.VTK_UNSIGNED_CHAR:
            raise FusionInputError(
                f"{what} is a vector volume with {components} component(s) of type "
                f"{image.GetScalarTypeAsString()}; only RGB vector volumes (3 components, unsigned char) "
                f"can be fused")
        return "rgb"
    if node.IsA(_SCALAR_CLASS) and not node.IsA("vtkMRMLTensorVolumeNode"):
        if components != 1:
            raise FusionInputError(
                f"{what} is a scalar volume whose image has {components} components; expected 1 (store "
                f"RGB images in a vtkMRMLVectorVolumeNode)")
        return "scalar"
    raise FusionInputError(
        f"{what} is not supported; allowed: vtkMRMLScalarVolumeNode or vtkMRMLVectorVolumeNode (RGB)")


def _voxel_view(node) -> np.ndarray:
    """The node's voxels as a numpy view in Slicer's (K, J, I[, C]) order, without checks."""
    image = node.GetImageData()
    scalars = image.GetPointData().GetScalars()
    shape = tuple(reversed(image.GetDimensions()))
    components = scalars.GetNumberOfComponents()
    # numpy's frombuffer (inside vtk_to_numpy) keeps the VTK array alive for as long as the view lives.
    return numpy_support.vtk_to_numpy(scalars).reshape(shape + ((components,) if components > 1 else ()))


def array_from_node(node) -> np.ndarray:
    """The voxels of a scalar or RGB volume node as a read-only numpy view.

    Parameters
    ----------
    node : vtkMRMLScalarVolumeNode or vtkMRMLVectorVolumeNode
        A volume with image data (RGB vector volumes: 3 components, unsigned char).

    Returns
    -------
    ndarray
        ``(K, J, I)`` for a scalar volume, ``(K, J, I, 3)`` uint8 for an RGB volume (the axis order of
        ``slicer.util.arrayFromVolume``). A view of the node's memory, marked read-only so that it cannot
        change the node by accident; ``np.array(view)`` makes a writable copy. The view is only valid
        until the node's image data is replaced.

    Raises
    ------
    FusionInputError
        ``node`` is not a supported volume node or has no image data.
    """
    _volume_kind(node, _describe(node))
    view = _voxel_view(node)
    view.flags.writeable = False
    return view


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


def _check_pair_scene(node, reference, what: str) -> None:
    scene = reference.GetScene()
    if scene is None:
        raise FusionInputError(
            f"{_describe(reference, 0)} is not in a MRML scene; add it to a scene first (scene.AddNode)")
    if node.GetScene() is not scene:
        raise FusionInputError(f"{what} is not in the reference volume's scene; all nodes must be in one scene")


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


def node_from_array(scene, array: np.ndarray, name: str, *, spacing=(1.0, 1.0, 1.0), origin=(0.0, 0.0, 0.0),
                    directions=None):
    """Add a volume node holding a copy of ``array`` to ``scene`` (sample data, tests, scripts).

    Parameters
    ----------
    scene : vtkMRMLScene
        Scene to add the node to.
    array : ndarray
        ``(K, J, I)`` scalars (scalar volume) or ``(K, J, I, 3)`` uint8 (RGB vector volume).
    name : str
        Node name.
    spacing, origin : sequence of 3 floats
        Voxel size (I, J, K) in mm and RAS position of voxel (0, 0, 0), as Slicer's SetSpacing/SetOrigin.
    directions : 3 x 3 array-like, optional
        IJK-to-RAS direction matrix (columns: I, J, K axes); default identity.

    Returns
    -------
    vtkMRMLScalarVolumeNode or vtkMRMLVectorVolumeNode
    """
    array = np.asarray(array)
    colour = array.ndim == 4 and array.shape[-1] == 3 and array.dtype == np.uint8
    if array.ndim != 3 and not colour:
        raise FusionInputError(f"array must be (K, J, I) or (K, J, I, 3) uint8; got shape {array.shape} "
                               f"of dtype {array.dtype}")
    node = scene.AddNewNodeByClass(_VECTOR_CLASS if colour else _SCALAR_CLASS, name)
    node.SetSpacing(*(float(v) for v in spacing))
    node.SetOrigin(*(float(v) for v in origin))
    if directions is not None:
        matrix = vtk.vtkMatrix4x4()
        for row in range(3):
            for col in range(3):
                matrix.SetElement(row, col, float(np.asarray(directions)[row][col]))
        node.SetIJKToRASDirectionMatrix(matrix)
    node.SetAndObserveImageData(_image_data_from_array(np.ascontiguousarray(array), 3 if colour else 1))
    node.CreateDefaultDisplayNodes()
    return node


# --- fusion --------------------------------------------------------------------------------------------
def _as_node_list(input_nodes) -> list:
    if isinstance(input_nodes, slicer.vtkMRMLNode) or isinstance(input_nodes, (str, bytes)):
        raise FusionInputError("input_nodes must be a sequence of 2 or more volume nodes; got a single "
                               f"{type(input_nodes).__name__}")
    try:
        nodes = list(input_nodes)
    except TypeError:
        raise FusionInputError(
            f"input_nodes must be a sequence of 2 or more volume nodes; got {type(input_nodes).__name__}") from None
    if len(nodes) < 2:
        raise FusionInputError(f"fusion needs 2 or more input volumes; got {len(nodes)}")
    return nodes


def _stand_in(shape: Tuple[int, ...], kind: str) -> np.ndarray:
    """A zero-stride array of the given spatial shape for validating a fusion without its data.

    int32 for scalars: never taken for RGB and never scanned for NaN by plan, so checking costs nothing."""
    if kind == "rgb":
        return np.broadcast_to(np.zeros((), np.uint8), shape + (3,))
    return np.broadcast_to(np.zeros((), np.int32), shape)


def _check_finite(node, what: str) -> None:
    # Checked here, before resampling, because interpolation would spread a NaN over its neighbours.
    # min/max propagate NaN and inf without allocating a mask of the whole volume.
    voxels = _voxel_view(node)
    if voxels.dtype.kind != "f" or not voxels.size:
        return
    low, high = voxels.min(), voxels.max()
    if not (np.isfinite(low) and np.isfinite(high)):
        raise FusionInputError(f"{what} contains NaN or infinite voxels; fusion needs finite values")
    if max(-low, high) > intensity.FLOAT32_MAX:
        # As pipeline.fuse says, but before resampling (found by test_properties_bridge).
        raise FusionInputError(f"{what} has values up to {max(-low, high):.4g} in magnitude; fusion works in "
                               f"float32, allowed: within +-{intensity.FLOAT32_MAX:.4g} (rescale the volume first)")


def _for_fusion(array: np.ndarray, kind: str) -> np.ndarray:
    # A uint8 scalar volume whose fastest axis has 3 samples would look like an RGB image to fuse();
    # widening it keeps it scalar (it is at most a few slices wide, so the copy is small).
    if kind == "scalar" and array.dtype == np.uint8 and array.shape[-1] == 3:
        return array.astype(np.uint16)
    return array


def _check_output_node(output_node, nodes, scene, colour_output: bool) -> None:
    wanted = _VECTOR_CLASS if colour_output else _SCALAR_CLASS
    produced = "an RGB (colour) volume" if colour_output else "a scalar (grey) volume"
    if not isinstance(output_node, slicer.vtkMRMLVolumeNode):
        raise FusionInputError(f"output_node must be a {wanted}; got {_describe(output_node)}")
    if colour_output:
        fits = output_node.IsA(_VECTOR_CLASS)
    else:
        # Vector and tensor volume nodes derive from the scalar volume node class, so IsA alone is not enough.
        fits = output_node.IsA(_SCALAR_CLASS) and not output_node.IsA("vtkMRMLTensorVolumeNode") and not any(
            output_node.IsA(c) for c in _UNSUPPORTED_CLASSES)
    if not fits:
        raise FusionInputError(
            f"this fusion produces {produced}, so output_node must be a {wanted}; got "
            f"{_describe(output_node)}")
    if any(output_node is n for n in nodes):
        raise FusionInputError(
            f"output_node {output_node.GetName()!r} is one of the inputs; input volumes are never "
            f"overwritten, choose another node or none (a new one is created)")
    if output_node.GetScene() is not scene:
        raise FusionInputError(f"output_node {output_node.GetName()!r} is not in the input volumes' scene")


def _image_data_from_array(array: np.ndarray, components: int) -> vtk.vtkImageData:
    """A new vtkImageData holding a deep copy of ``array`` ((K, J, I) or (K, J, I, C))."""
    spatial = array.shape[:3]
    image = vtk.vtkImageData()
    image.SetDimensions(spatial[2], spatial[1], spatial[0])
    image.AllocateScalars(numpy_support.get_vtk_array_type(array.dtype), components)
    _voxels = numpy_support.vtk_to_numpy(image.GetPointData().GetScalars())
    _voxels.reshape(array.shape)[...] = array
    return image


def _write_output(result: np.ndarray, reference, scene, output_node, name: Optional[str]):
    """Put the fused array into ``output_node`` (or a new node added to ``scene``) with the reference's
    geometry and parent transform. Called only after the fusion succeeded."""
    colour = result.ndim == 4
    image = _image_data_from_array(result, 3 if colour else 1)
    transform_id = reference.GetTransformNodeID()
    if output_node is None:
        # Fill the node before adding it, so that scene observers (the Slicer GUI) never see it half-made.
        node = scene.CreateNodeByClass(_VECTOR_CLASS if colour else _SCALAR_CLASS)
        node.UnRegister(None)   # CreateNodeByClass returns a new reference (Slicer's documented idiom)
        node.SetName(name)
        node.SetIJKToRASMatrix(_ijk_to_ras(reference))
        node.SetAndObserveImageData(image)
        node = scene.AddNode(node)
        node.SetAndObserveTransformNodeID(transform_id)
        node.CreateDefaultDisplayNodes()
        return node
    was_modifying = output_node.StartModify()
    try:
        if name is not None:
            output_node.SetName(name)
        output_node.SetIJKToRASMatrix(_ijk_to_ras(reference))
        # A new image data object rather than writing into the old one: the old one may be shared.
        output_node.SetAndObserveImageData(image)
        output_node.SetAndObserveTransformNodeID(transform_id)
    finally:
        output_node.EndModify(was_modifying)
    if output_node.GetDisplayNode() is None:
        output_node.CreateDefaultDisplayNodes()
    return output_node


def fuse_volume_nodes(input_nodes: Sequence, method: str = pipeline.DEFAULT_METHOD, *, scene=None, output_node=None,
                      output_name: Optional[str] = None, progress: Optional[ProgressCallback] = None,
                      cancel: CancelLike = None, register: str = "none", **fuse_kwargs):
    """Fuse two or more Slicer volume nodes into a volume node on the first node's grid.

    Parameters
    ----------
    input_nodes : sequence of vtkMRMLScalarVolumeNode or vtkMRMLVectorVolumeNode
        Two or more volumes in one MRML scene. The first is the anatomical reference: the output has its
        grid (dimensions, origin, spacing, directions) and parent transform. Every other input is resampled
        onto that grid through both nodes' parent transforms (linear or non-linear), with linear
        interpolation (RGB vector volumes per component, staying uint8); voxels outside an input's field of
        view take its minimum value. Vector volumes must be RGB (3 components, unsigned char). Label maps,
        tensor and diffusion-weighted volumes are not supported. The nodes are not modified.
    method : str
        A registered fusion method (see :func:`MedFusionLib.methods`); default ``'laplacian'``.
    scene : vtkMRMLScene, optional
        The scene the inputs belong to and the output is added to (``slicer.mrmlScene`` in Slicer; any
        scene of slicer-core outside it). Default: the first input's scene. Inputs of another scene are
        refused.
    output_node : vtkMRMLScalarVolumeNode or vtkMRMLVectorVolumeNode, optional
        Node to write into (replacing its voxels, geometry and parent transform); it must be a scalar volume
        for grey output and a vector volume for colour output (an RGB input or a ``colormap`` makes the
        output colour), in the inputs' scene, and not one of the inputs. Default: a new node.
    output_name : str, optional
        Name of the new node (default ``"<reference name> fused (<method>)"``, made unique in the scene);
        with ``output_node``, renames it.
    progress : callable, optional
        ``progress(fraction, message)`` for the whole call (resampling, then fusion).
    cancel : CancelToken, threading.Event or callable, optional
        When set, the call raises :class:`MedFusionLib.FusionCancelled`; nothing is added to the scene and
        ``output_node`` keeps its content.
    register : {"none", "rigid", "affine"}
        ``"none"`` (default): the inputs are co-registered (or placed by their parent transforms).
        ``"rigid"``/``"affine"``: every further input is first registered onto the reference
        (:func:`register_volume_nodes`; scalar volumes without parent transforms), then resampled through
        the transform found; the transform nodes stay in the scene, referenced from the output node under
        the role :data:`REGISTRATION_ROLE` (``output.GetNthNodeReference(REGISTRATION_ROLE, k - 1)`` for
        input ``k``). A failed registration raises :class:`MedFusionLib.RegistrationError` and adds nothing.
    **fuse_kwargs
        Options and method parameters of :func:`MedFusionLib.fuse` (``mode``, ``axis``, ``colormap``,
        ``output_range``, ..., and e.g. ``levels=4``).

    Returns
    -------
    vtkMRMLScalarVolumeNode or vtkMRMLVectorVolumeNode
        The output node: float32 voxels for grey output, ``(K, J, I, 3)`` uint8 for colour output.

    Raises
    ------
    FusionInputError
        Bad nodes, options or output node; raised before any resampling, fusion or scene change.
    FusionCancelled
        The caller cancelled.

    Examples
    --------
    >>> from MedFusionLib import bridge                                   # doctest: +SKIP
    >>> fused = bridge.fuse_volume_nodes([ct_node, pet_node], "laplacian", colormap="hot")  # doctest: +SKIP
    """
    from .registration import check_registration

    if check_registration(register) != "none":
        from .bridge_registration import fuse_registered

        return fuse_registered(input_nodes, method, register, scene=scene, output_node=output_node,
                                output_name=output_name, progress=progress, cancel=cancel, **fuse_kwargs)
    # 1. Everything is checked before any work.
    nodes = _as_node_list(input_nodes)
    kinds = [_volume_kind(node, _describe(node, k)) for k, node in enumerate(nodes)]
    for k, node in enumerate(nodes):
        _check_finite(node, _describe(node, k))
    reference = nodes[0]
    for k, node in enumerate(nodes[1:], start=1):
        _check_pair_scene(node, reference, _describe(node, k))
    if scene is not None and reference.GetScene() is not scene:
        raise FusionInputError("the input volumes are not in the given scene; add them to it first "
                               "(or leave scene=None to use theirs)")
    scene = reference.GetScene()
    if output_name is not None and not isinstance(output_name, str):
        raise FusionInputError(f"output_name must be a string or None; got {type(output_name).__name__}")
    reporter = Progress.wrap(progress, cancel)   # also checks progress and cancel

    shape = tuple(reversed(reference.GetImageData().GetDimensions()))
    plan_kwargs = {key: value for key, value in fuse_kwargs.items() if key in _PLAN_KEYWORDS}
    params = {key: value for key, value in fuse_kwargs.items() if key not in _PLAN_KEYWORDS}
    fusion_plan = pipeline.plan([_stand_in(shape, kind) for kind in kinds], method, params=params, **plan_kwargs)
    if output_node is not None:
        _check_output_node(output_node, nodes, scene, fusion_plan.colour_output)
    if output_name is None and output_node is None:
        output_name = scene.GetUniqueNameByString(f"{reference.GetName()} fused ({fusion_plan.spec.name})")
    reporter.check()

    # 2. Resample onto the reference grid.
    arrays: List[np.ndarray] = [_for_fusion(array_from_node(reference), kinds[0])]
    resampling = reporter.sub(0.0, _RESAMPLE_SHARE)
    others = len(nodes) - 1
    for k, node in enumerate(nodes[1:], start=1):
        resampling.report((k - 1) / others, f"resampling {node.GetName()} onto {reference.GetName()}")
        arrays.append(_for_fusion(resample_to_reference(node, reference), kinds[k]))
    resampling.report(1.0, "resampled")

    # 3. Fuse (pipeline.fuse validates the real arrays again, e.g. for NaN).
    result = pipeline.fuse(arrays, method, progress=reporter.sub(_RESAMPLE_SHARE, 1.0), **fuse_kwargs)
    del arrays
    reporter.check()

    # 4. Only now touch the scene.
    node = _write_output(result, reference, scene, output_node, output_name)
    mark_fused(node, fusion_plan.spec.name, fusion_plan.params, [n.GetName() for n in nodes])
    return node


#: Node attribute (and description text) marking every fused volume as a derived display image.
FUSED_ATTRIBUTE = "MedFusion.FusedImage"
FUSED_NOTICE = "MedFusion fused image: for display, not for quantitative measurement"


def _shown_params(params: Dict) -> Dict:
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in params.items() if k != "device"}


def fused_description(method: str, params: Dict, inputs: Sequence[str]) -> str:
    """The provenance text of a fused volume: the notice, the method, its parameters and the inputs."""
    return (f"{FUSED_NOTICE}. Method: {method}; parameters: "
            f"{json.dumps(_shown_params(params), sort_keys=True, default=str)}; inputs: {', '.join(inputs)}.")


def mark_fused(node, method: str, params: Dict, inputs: Sequence[str]) -> None:
    """Mark ``node`` as a fused display image (attributes ``MedFusion.FusedImage``, ``MedFusion.Method``,
    ``MedFusion.Parameters``, ``MedFusion.Provenance`` and the description), so it is never mistaken for
    a source image such as the quantitative PET."""
    provenance = fused_description(method, params, inputs)
    node.SetAttribute(FUSED_ATTRIBUTE, FUSED_NOTICE)
    node.SetAttribute("MedFusion.Method", method)
    node.SetAttribute("MedFusion.Parameters", json.dumps(_shown_params(params), sort_keys=True, default=str))
    node.SetAttribute("MedFusion.Provenance", provenance)
    node.SetDescription(provenance)


# --- files ---------------------------------------------------------------------------------------------
class _ErrorCollector:
    """Collects VTK error/warning messages of one object instead of printing them.

    A VTK object with an observer for ErrorEvent/WarningEvent passes its messages to the observer rather
    than to the output window, so failed read attempts stay quiet and their reasons can go into our
    exception message."""

    def __init__(self, vtk_object):
        self.messages: List[str] = []
        self._object = vtk_object
        self._tags = [vtk_object.AddObserver(event, self._collect)
                      for event in (vtk.vtkCommand.ErrorEvent, vtk.vtkCommand.WarningEvent)]

    @vtk.calldata_type(vtk.VTK_STRING)
    def _collect(self, caller, event, message):
        # Keep the last line without its "vtkClass (0x...): Class::Method:" prefixes; the first lines are
        # "ERROR: In file.cxx, line N" boilerplate.
        text = (message or "").strip().splitlines()
        if text:
            line = text[-1].split("): ", 1)[-1].strip()
            self.messages.append(re.sub(r"^(\w+::\w+:\s*)+", "", line))

    def close(self) -> None:
        for tag in self._tags:
            self._object.RemoveObserver(tag)

    def summary(self) -> str:
        # "Failed to read/write node ..." only repeats that it failed; the other messages say why.
        useful = [m for m in self.messages if m and not m.startswith(("Failed to read node", "Failed to write node"))]
        return "; ".join(dict.fromkeys(useful or self.messages)) or "no details given"


class _CapturedStderr:
    """Redirects the process's C-level standard error (fd 2) into a temporary file while it is open.

    Slicer's readers print through teem (``[nrrd] ...``), ITK and VTK's logger straight to fd 2, past any
    observer; around a read that output is caught here and folded into our own message instead. fd 2 is
    process-wide: whatever another thread prints during the read is caught too (and dropped on success,
    like the failed read attempts' noise)."""

    def __enter__(self):
        import sys

        sys.stderr.flush()
        self._file = tempfile.TemporaryFile()
        self._saved = os.dup(2)
        os.dup2(self._file.fileno(), 2)
        return self

    def __exit__(self, *exc) -> None:
        import sys

        try:
            sys.stderr.flush()
        finally:
            os.dup2(self._saved, 2)
            os.close(self._saved)
        self._file.seek(0)
        self.text = self._file.read().decode("utf-8", "replace")
        self._file.close()

    def summary(self) -> str:
        """The reader's own reasons, one line each: the deepest teem line, VTK/ITK error texts."""
        text = re.sub(r"\x1b\[[0-9;]*m", "", getattr(self, "text", ""))
        reasons, nrrd = [], None
        for line in text.splitlines():
            line = line.strip()
            if line.startswith("[nrrd]"):
                nrrd = line[len("[nrrd]"):].strip()
            elif "ERR|" in line or "WARN|" in line:
                message = line.split("|", 1)[1].strip()
                message = message.split("): ", 1)[-1].strip()
                if message and "returned failure for request" not in message:
                    reasons.append(re.sub(r"^(\w+::\w+:\s*)+", "", message))
            elif line.startswith(("ITK", "Description:")):
                reasons.append(line)
        if nrrd:
            reasons.append(nrrd)
        return "; ".join(dict.fromkeys(r for r in reasons if r))


def _storage_node_class(path: str) -> str:
    # NRRD files go through Slicer's NRRD storage node (it keeps 'kinds', measurement frame and the RAS
    # space exactly); every other format through the ITK-based archetype storage node.
    if path.lower().endswith((".nrrd", ".nhdr")):
        return "vtkMRMLNRRDStorageNode"
    return "vtkMRMLVolumeArchetypeStorageNode"


def _default_name(path: str) -> str:
    name = os.path.basename(path)
    lower = name.lower()
    for suffix in (".nii.gz", ".gipl.gz"):
        if lower.endswith(suffix):
            return name[: -len(suffix)]
    return os.path.splitext(name)[0] or name


def _drop_alpha(node) -> None:
    """Turn an RGBA vector volume (e.g. a PNG with transparency) into RGB; fusion takes RGB only."""
    extract = vtk.vtkImageExtractComponents()
    extract.SetInputData(node.GetImageData())
    extract.SetComponents(0, 1, 2)
    extract.Update()
    rgb = vtk.vtkImageData()
    rgb.DeepCopy(extract.GetOutput())
    node.SetAndObserveImageData(rgb)


def load_volume(path, scene, name: Optional[str] = None):
    """Read a volume file into a new node of ``scene`` through Slicer's storage nodes.

    Geometry (origin, spacing, axis directions) comes from the file as Slicer reads it (LPS files are
    converted to RAS). Like Slicer's "Add data", the file is tried as an RGB/vector volume first and as a
    scalar volume second, so a colour image becomes a vtkMRMLVectorVolumeNode and a grey one a
    vtkMRMLScalarVolumeNode; an RGBA image loses its alpha channel. 2-D images load as single-slice
    volumes.

    Parameters
    ----------
    path : str or os.PathLike
        NRRD (``.nrrd``, ``.nhdr``), NIfTI (``.nii``, ``.nii.gz``), MetaImage (``.mha``, ``.mhd``) and the
        other formats Slicer's volume archetype storage node reads. Note: ``slicer-core`` (Slicer's
        libraries outside the application) has no ITK reader for PNG, JPEG, TIFF or BMP; inside Slicer
        those load too.
    scene : vtkMRMLScene
        Scene to add the node (with a display and a storage node) to; see :func:`new_scene`.
    name : str, optional
        Node name; default: the file name without extension, made unique in the scene.

    Returns
    -------
    vtkMRMLScalarVolumeNode or vtkMRMLVectorVolumeNode
        The new node.

    Raises
    ------
    FusionInputError
        The file does not exist, is not a file, or cannot be read as a volume (the message gives the
        reader's reasons). Nothing is added to the scene then.
    """
    path = os.fspath(path)
    if not isinstance(scene, slicer.vtkMRMLScene):
        raise FusionInputError(f"scene must be a vtkMRMLScene; got {type(scene).__name__}")
    if not os.path.exists(path):
        raise FusionInputError(f"cannot load {path!r}: no such file")
    if not os.path.isfile(path):
        raise FusionInputError(f"cannot load {path!r}: not a file")
    if not os.access(path, os.R_OK):
        raise FusionInputError(f"cannot load {path!r}: permission denied")
    absolute = os.path.abspath(path)
    from . import memory

    memory.check_read(path)     # a header claiming a huge volume is refused before the reader allocates it
    reasons = []
    # Vector first, as Slicer's volumes logic does: reading a colour NRRD as a scalar volume "succeeds"
    # with a 3-component image in a scalar node; the vector readers refuse single-component files.
    for class_name in (_VECTOR_CLASS, _SCALAR_CLASS):
        # Read into nodes outside the scene, so that a failed attempt leaves nothing behind.
        node = scene.CreateNodeByClass(class_name)
        node.UnRegister(None)
        storage = scene.CreateNodeByClass(_storage_node_class(absolute))
        storage.UnRegister(None)
        storage.SetFileName(absolute)
        errors = _ErrorCollector(storage)
        try:
            with _CapturedStderr() as noise:
                ok = storage.ReadData(node)
        finally:
            errors.close()
        printed = noise.summary()
        if ok and node.GetImageData() is not None and not (printed and class_name == _SCALAR_CLASS
                                                            and "ERR|" in noise.text):
            break
        said = errors.summary() if errors.messages else ""
        reasons.append(f"as {class_name[7:]}: " + ("; ".join(r for r in (said, printed) if r) or "no details given"))
    else:
        raise FusionInputError(
            f"cannot load {path!r} as a volume ({' | '.join(reasons)}). Readable formats: NRRD, NIfTI, "
            f"MetaImage and the others Slicer's volume IO reads (slicer-core cannot read PNG/JPEG/TIFF/BMP)")
    image = node.GetImageData()
    if node.IsA(_VECTOR_CLASS) and image.GetNumberOfScalarComponents() == 4 \
            and image.GetScalarType() == vtk.VTK_UNSIGNED_CHAR:
        _drop_alpha(node)
    node.SetName(name if name is not None else scene.GetUniqueNameByString(_default_name(path)))
    storage = scene.AddNode(storage)
    node = scene.AddNode(node)
    node.SetAndObserveStorageNodeID(storage.GetID())
    node.CreateDefaultDisplayNodes()
    return node


#: NIfTI's 80-byte description field of fused volumes (NRRD carries the node attributes instead).
NIFTI_FUSED_DESCRIPTION = "MedFusion fused image: display only, not for quantitative measurement"


def _set_nifti_description(path: str, text: str) -> None:
    """Write ``text`` into the ``descrip`` field of a NIfTI-1 (offset 148) or NIfTI-2 (offset 240) file,
    gzip-compressed or not."""
    import gzip
    import struct

    packed = path.lower().endswith(".gz")
    with (gzip.open(path, "rb") if packed else open(path, "rb")) as fh:
        content = bytearray(fh.read())
    size = struct.unpack("<i", content[:4])[0]
    if size not in (348, 540):
        size = struct.unpack(">i", content[:4])[0]
    offset = {348: 148, 540: 240}.get(size)
    if offset is None:
        raise FusionInputError(f"{path!r} does not look like a NIfTI file: cannot set its description")
    content[offset:offset + 80] = text.encode("ascii")[:79].ljust(80, b"\0")
    with (gzip.open(path, "wb") if packed else open(path, "wb")) as fh:
        fh.write(bytes(content))


def save_volume(node, path) -> None:
    """Write a volume node to a file through Slicer's storage nodes, atomically.

    The file is first written into a temporary folder beside ``path`` and then moved into place with
    :func:`os.replace`, so on any error no partial file is left at ``path`` (and an existing file there is
    kept). Formats with a separate data file (``.nhdr``, ``.mhd``) move their data file first, header
    last. The node's local geometry is written (a parent transform is not applied), as Slicer does. The
    node is not modified: it does not get a storage node. Slicer's NRRD writer stores the node's
    attributes as header key/value lines, so a fused volume (:func:`mark_fused`) written as NRRD says
    ``MedFusion.FusedImage:=MedFusion fused image: for display, not for quantitative measurement`` with its
    method, parameters and provenance; as NIfTI, its ``descrip`` field says
    :data:`NIFTI_FUSED_DESCRIPTION`.

    Parameters
    ----------
    node : vtkMRMLScalarVolumeNode or vtkMRMLVectorVolumeNode
        Volume with image data.
    path : str or os.PathLike
        Target file; its extension picks the format (``.nrrd``, ``.nhdr``, ``.nii``, ``.nii.gz``,
        ``.mha``, ``.mhd``, or another format Slicer's volume IO writes). Its folder must exist.

    Raises
    ------
    FusionInputError
        ``node`` is not a volume with image data, the folder does not exist or is not writable, or
        the format cannot be written (the message gives the writer's reasons).
    """
    if not isinstance(node, slicer.vtkMRMLVolumeNode) or node.GetImageData() is None:
        raise FusionInputError(f"save_volume needs a volume node with image data; got {_describe(node)}")
    path = os.path.abspath(os.fspath(path))
    folder, file_name = os.path.split(path)
    if not os.path.isdir(folder):
        raise FusionInputError(f"cannot save {path!r}: folder {folder!r} does not exist")
    if os.path.isdir(path):
        raise FusionInputError(f"cannot save {path!r}: it is a folder")
    try:
        staging = tempfile.mkdtemp(prefix=f".{file_name}.", suffix=".tmp", dir=folder)
    except OSError as error:
        raise FusionInputError(f"cannot save {path!r}: folder is not writable ({error.strerror})") from error
    try:
        storage = getattr(slicer, _storage_node_class(path))()
        storage.SetFileName(os.path.join(staging, file_name))
        errors = _ErrorCollector(storage)
        try:
            with _CapturedStderr() as noise:    # the writers print to fd 2 too (e.g. on a full disk)
                ok = storage.WriteData(node)
        finally:
            errors.close()
        written = os.path.join(staging, file_name)
        if not ok or not os.path.isfile(written) or "ERR|" in noise.text:
            said = errors.summary() if errors.messages else ""
            details = ("; ".join(r for r in (said, noise.summary()) if r) or "no details given")
            details = details.replace(staging + os.sep, "").replace(staging, folder)
            raise FusionInputError(
                f"cannot save {path!r}: Slicer's volume IO could not write it ({details}). Writable formats: "
                f"NRRD, NIfTI, MetaImage and the others Slicer's volume IO writes")
        if node.GetAttribute(FUSED_ATTRIBUTE) and file_name.lower().endswith((".nii", ".nii.gz")):
            try:
                _set_nifti_description(written, NIFTI_FUSED_DESCRIPTION)
            except (EOFError, ValueError) as error:
                # ITK's NIfTI writer reports success on a full disk and leaves a truncated file.
                raise FusionInputError(f"cannot save {path!r}: the file written is incomplete ({error}); is the "
                                       f"disk full?") from None
        # Detached headers name their data file relative to themselves, so every file keeps its name.
        others = sorted(f for f in os.listdir(staging)
                        if f != file_name and os.path.isfile(os.path.join(staging, f)))
        for other in others:
            os.replace(os.path.join(staging, other), os.path.join(folder, other))
        os.replace(written, path)
    except OSError as error:
        raise FusionInputError(f"cannot save {path!r}: {error}") from error
    finally:
        shutil.rmtree(staging, ignore_errors=True)


# --- registration (MedFusionLib/bridge_registration.py; its public names are bridge's too) ---------------
from .bridge_registration import (  # noqa: E402  (it uses the functions above)
    REGISTRATION_ATTRIBUTE,
    REGISTRATION_ROLE,
    register_volume_nodes,
    registered_proxy,
)
