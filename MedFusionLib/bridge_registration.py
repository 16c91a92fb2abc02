"""Co-registration of volume nodes before fusion: the registration half of :mod:`MedFusionLib.bridge`.

:func:`register_volume_nodes` registers one scalar volume node onto a reference
(:func:`MedFusionLib.registration.register_images`: SimpleITK, Mattes mutual information, rigid or affine)
and adds the result to the scene as a linear transform node; :func:`fuse_registered` is what
``bridge.fuse_volume_nodes(..., register="rigid" | "affine")`` runs: every further input registered onto
the first, then fused through the transforms found, which stay in the scene referenced from the output
node (:data:`REGISTRATION_ROLE`). Nothing is added to the scene when a registration fails or is cancelled,
and the input nodes are never modified (the fusion reads them through :func:`registered_proxy` nodes that
share their voxels).

``bridge`` re-exports the public names (``bridge.register_volume_nodes``, ``bridge.REGISTRATION_ROLE``,
...); this module uses bridge's node helpers, imported inside the functions (bridge imports this module
at its end, so either can be imported first).
"""

from __future__ import annotations

import json
from typing import Optional

import vtk

from . import pipeline
from .errors import FusionInputError
from .progress import CancelLike, Progress, ProgressCallback

#: Node reference role on a fused node pointing at the transform nodes of its registered inputs.
REGISTRATION_ROLE = "MedFusion.registration"
#: Attribute of a registration transform node: its report (JSON), see registration.RegistrationReport.
REGISTRATION_ATTRIBUTE = "MedFusion.Registration"


def check_registrable(nodes) -> None:
    """Raise :class:`FusionInputError` when these nodes (the reference first) cannot be registered: a
    colour (RGB) volume, or a volume with a parent transform. Cheap (no voxel is read); the Slicer module
    uses it to say why Apply is disabled."""
    from . import bridge

    for k, node in enumerate(bridge._as_node_list(nodes)):
        _check_registrable(node, ("the reference " if k == 0 else "") + bridge._describe(node, k))


def _check_registrable(node, what: str) -> None:
    from . import bridge

    if bridge._volume_kind(node, what) != "scalar":
        raise FusionInputError(f"{what} is a colour (RGB) volume; registration needs scalar volumes "
                               "(register the grey volume it was made from, or use register='none')")
    if node.GetTransformNodeID() is not None:
        raise FusionInputError(f"{what} has a parent transform; registration works in the volumes' own "
                               "coordinates: harden the transform first (Data module: Harden transform) or "
                               "use register='none' to fuse through the transforms as they are")


def _sitk_image(node):
    from . import bridge
    from .registration import image_from_array

    return image_from_array(bridge._voxel_view(node), bridge._matrix_array(bridge._ijk_to_ras(node)))


def register_volume_nodes(reference, moving, kind: str = "rigid", *, name: Optional[str] = None,
                          progress: Optional[ProgressCallback] = None, cancel: CancelLike = None):
    """Register a scalar volume node onto a reference and add the result to the scene as a transform node.

    SimpleITK's Mattes mutual-information registration, rigid or affine, multi-resolution
    (:func:`MedFusionLib.registration.register_images`). Neither node is modified.

    Parameters
    ----------
    reference, moving : vtkMRMLScalarVolumeNode
        In one scene, without parent transforms (harden them first).
    kind : {"rigid", "affine"}
    name : str, optional
        Name of the transform node (default ``"<moving> to <reference> (<kind>)"``).
    progress, cancel
        As for :func:`fuse_volume_nodes`.

    Returns
    -------
    (vtkMRMLLinearTransformNode, RegistrationReport)
        The transform node maps the moving volume onto the reference when set as the moving volume's
        parent transform (its "from parent" matrix is the reference-RAS -> moving-RAS mapping found; Slicer
        converts from ITK's LPS the same way when it reads the ``.tfm`` file). Its attribute
        :data:`REGISTRATION_ATTRIBUTE` holds the report as JSON.

    Raises
    ------
    FusionInputError
        Bad nodes or ``kind`` (before any work).
    RegistrationError
        The registration failed; nothing is added to the scene.
    FusionCancelled
        The caller cancelled; nothing is added to the scene.
    """
    from . import bridge
    from .registration import register_images

    _check_registrable(reference, "the reference " + bridge._describe(reference))
    _check_registrable(moving, bridge._describe(moving))
    bridge._check_pair_scene(moving, reference, bridge._describe(moving))
    if kind not in ("rigid", "affine"):
        raise FusionInputError(f"unknown registration {kind!r}; allowed: rigid, affine")
    reporter = Progress.wrap(progress, cancel)
    reporter.check()
    result = register_images(_sitk_image(reference), _sitk_image(moving), kind, progress=reporter.report)
    reporter.check()
    scene = reference.GetScene()
    matrix = bridge._vtk_matrix(result.ras_matrix)
    node = scene.AddNewNodeByClass("vtkMRMLLinearTransformNode", scene.GetUniqueNameByString(
        name or f"{moving.GetName()} to {reference.GetName()} ({kind})"))
    node.SetMatrixTransformFromParent(matrix)
    node.SetAttribute(REGISTRATION_ATTRIBUTE, json.dumps(result.report.as_dict()))
    return node, result.report


def registered_proxy(node, transform_node):
    """A new node sharing ``node``'s voxels (shallow copy) and geometry, under ``transform_node``."""
    from . import bridge

    scene = node.GetScene()
    proxy = scene.AddNewNodeByClass(bridge._SCALAR_CLASS,
                                    scene.GetUniqueNameByString(f"{node.GetName()} registered"))
    image = vtk.vtkImageData()
    image.ShallowCopy(node.GetImageData())
    proxy.SetIJKToRASMatrix(bridge._ijk_to_ras(node))
    proxy.SetAndObserveImageData(image)
    proxy.SetAndObserveTransformNodeID(transform_node.GetID())
    return proxy


def fuse_registered(input_nodes, method, register, *, scene, output_node, output_name, progress, cancel,
                    **fuse_kwargs):
    """:func:`MedFusionLib.bridge.fuse_volume_nodes` with every further input registered onto the first
    (its ``register="rigid"`` or ``"affine"``; the same arguments). Everything the fusion would refuse is
    refused before registering; a failed or cancelled registration or fusion removes the transform nodes
    made so far."""
    from . import bridge

    nodes = bridge._as_node_list(input_nodes)
    check_registrable(nodes)
    # Everything fuse_volume_nodes would refuse is refused before registering (minutes of work).
    reference = nodes[0]
    for k, node in enumerate(nodes[1:], start=1):
        bridge._check_pair_scene(node, reference, bridge._describe(node, k))
    shape = tuple(reversed(reference.GetImageData().GetDimensions()))
    plan_kwargs = {key: value for key, value in fuse_kwargs.items() if key in bridge._PLAN_KEYWORDS}
    params = {key: value for key, value in fuse_kwargs.items() if key not in bridge._PLAN_KEYWORDS}
    fusion_plan = pipeline.plan([bridge._stand_in(shape, "scalar") for _ in nodes], method, params=params,
                                **plan_kwargs)
    if output_node is not None:
        bridge._check_output_node(output_node, nodes, reference.GetScene(), fusion_plan.colour_output)
    reporter = Progress.wrap(progress, cancel)
    if output_name is None and output_node is None:
        output_name = reference.GetScene().GetUniqueNameByString(
            f"{reference.GetName()} fused ({fusion_plan.spec.name})")
    scene_of = reference.GetScene()
    transforms, proxies = [], []
    share = 0.5
    try:
        for k, node in enumerate(nodes[1:], start=1):
            part = reporter.sub(share * (k - 1) / (len(nodes) - 1), share * k / (len(nodes) - 1))
            transform, _ = register_volume_nodes(reference, node, register, progress=part)
            transforms.append(transform)
            proxies.append(registered_proxy(node, transform))
        fused = bridge.fuse_volume_nodes([reference, *proxies], method, scene=scene, output_node=output_node,
                                         output_name=output_name, progress=reporter.sub(share, 1.0), **fuse_kwargs)
    except BaseException:
        for node in transforms:
            scene_of.RemoveNode(node)
        raise
    finally:
        for proxy in proxies:
            scene_of.RemoveNode(proxy)
    fused.RemoveNodeReferenceIDs(REGISTRATION_ROLE)
    for transform in transforms:
        fused.AddNodeReferenceID(REGISTRATION_ROLE, transform.GetID())
    bridge.mark_fused(fused, fusion_plan.spec.name, fusion_plan.params, [n.GetName() for n in nodes])
    return fused
