"""Volume nodes of the Slicer bridge: what kind a node is, its voxels as numpy, new nodes from arrays, and
the fused-image marks.

Part of :mod:`MedFusionLib.bridge` (which re-exports the public names: ``bridge.array_from_node``,
``bridge.node_from_array``, ``bridge.new_scene``, ``bridge.mark_fused``, ...). Here: the supported node
classes and the checks that refuse the others (:func:`_volume_kind`), the names nodes have in error
messages (:func:`_describe`), the one-scene check, read-only voxel views (:func:`array_from_node`), volume
nodes and ``vtkImageData`` made from arrays (:func:`node_from_array`), and the attributes that mark a fused
volume as a display image (:func:`mark_fused`). No resampling (:mod:`MedFusionLib.bridge_geometry`), no
files (:mod:`MedFusionLib.bridge_files`), no fusion (:mod:`MedFusionLib.bridge`).
"""

from __future__ import annotations

import json
from typing import Dict, Optional, Sequence

import numpy as np
import slicer
import vtk
from vtk.util import numpy_support

from .errors import FusionInputError

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


def _check_pair_scene(node, reference, what: str) -> None:
    scene = reference.GetScene()
    if scene is None:
        raise FusionInputError(
            f"{_describe(reference, 0)} is not in a MRML scene; add it to a scene first (scene.AddNode)")
    if node.GetScene() is not scene:
        raise FusionInputError(f"{what} is not in the reference volume's scene; all nodes must be in one scene")



def _image_data_from_array(array: np.ndarray, components: int) -> vtk.vtkImageData:
    """A new vtkImageData holding a deep copy of ``array`` ((K, J, I) or (K, J, I, C))."""
    spatial = array.shape[:3]
    image = vtk.vtkImageData()
    image.SetDimensions(spatial[2], spatial[1], spatial[0])
    image.AllocateScalars(numpy_support.get_vtk_array_type(array.dtype), components)
    _voxels = numpy_support.vtk_to_numpy(image.GetPointData().GetScalars())
    _voxels.reshape(array.shape)[...] = array
    return image



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


# --- fused-image marks --------------------------------------------------------------------------------
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
