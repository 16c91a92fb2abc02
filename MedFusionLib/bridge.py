"""Slicer volume nodes in, fused volume node out: :func:`fuse_volume_nodes`, and the bridge's public API.

The bridge is the only part of the library that imports ``slicer``: inside the Slicer application it uses
the application's MRML libraries, outside it the ``slicer-core`` package (the same libraries without Qt).
The scene is always passed explicitly (through the nodes), never taken from ``slicer.mrmlScene``, so the
same code runs in the Slicer panel, in Slicer's batch mode and on the command line. It is split by
responsibility; this module holds the fusion of nodes and re-exports the public names of the others, so
``from MedFusionLib import bridge`` gives all of them:

- :mod:`MedFusionLib.bridge_nodes`: node kinds and checks, voxel views (:func:`array_from_node`), nodes
  from arrays (:func:`node_from_array`, :func:`new_scene`), the fused-image marks (:func:`mark_fused`);
- :mod:`MedFusionLib.bridge_geometry`: IJK-to-RAS matrices and resampling (:func:`resample_to_reference`);
- :mod:`MedFusionLib.bridge_files`: volume files through Slicer's storage nodes (:func:`load_volume`,
  :func:`save_volume`);
- :mod:`MedFusionLib.bridge_registration`: registration of nodes before fusion
  (:func:`register_volume_nodes`, ``fuse_volume_nodes(register=...)``).

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
from typing import List, Optional, Sequence, Tuple

import numpy as np
import slicer

from . import intensity, pipeline
from .bridge_files import NIFTI_FUSED_DESCRIPTION, load_volume, save_volume
from .bridge_geometry import _ijk_to_ras, _matrix_array, _vtk_matrix, resample_to_reference
from .bridge_nodes import (
    _SCALAR_CLASS,
    _UNSUPPORTED_CLASSES,
    _VECTOR_CLASS,
    FUSED_ATTRIBUTE,
    FUSED_NOTICE,
    _check_pair_scene,
    _describe,
    _image_data_from_array,
    _volume_kind,
    _voxel_view,
    array_from_node,
    fused_description,
    mark_fused,
    new_scene,
    node_from_array,
)
from .errors import FusionInputError
from .progress import CancelLike, Progress, ProgressCallback

__all__ = ["new_scene", "node_from_array", "fuse_volume_nodes", "resample_to_reference", "array_from_node", "load_volume",
           "save_volume", "mark_fused", "FUSED_ATTRIBUTE", "FUSED_NOTICE", "register_volume_nodes",
           "REGISTRATION_ROLE", "REGISTRATION_ATTRIBUTE", "registered_proxy"]
# Not used in this module, but reached as bridge.<name> since the bridge was one file (the tests'
# bridge.NIFTI_FUSED_DESCRIPTION, bridge_registration's bridge._matrix_array / bridge._vtk_matrix):
# naming them here keeps them importable from bridge (and tells pyflakes the imports are meant).
_KEPT_FOR_CALLERS = (NIFTI_FUSED_DESCRIPTION, fused_description, _matrix_array, _vtk_matrix)

# Keyword arguments of pipeline.plan besides images/method/params: they go to plan as they are, everything
# else in **fuse_kwargs is a method parameter (pipeline.fuse splits them the same way).
_PLAN_KEYWORDS = tuple(name for name, p in inspect.signature(pipeline.plan).parameters.items()
                       if p.kind is inspect.Parameter.KEYWORD_ONLY and name != "params")
# Share of the progress range given to resampling; fusion itself takes nearly all the time.
_RESAMPLE_SHARE = 0.1


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


# --- registration (MedFusionLib/bridge_registration.py; its public names are bridge's too) ---------------
from .bridge_registration import (  # noqa: E402  (it uses the functions above)
    REGISTRATION_ATTRIBUTE,
    REGISTRATION_ROLE,
    register_volume_nodes,
    registered_proxy,
)
