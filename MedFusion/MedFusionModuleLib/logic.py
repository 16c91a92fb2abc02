"""The MedFusion module logic: fusion of volume nodes, input checks, metrics, method comparison.

:class:`MedFusionLogicBase` is the whole logic of the Slicer module; ``MedFusion.MedFusionLogic`` adds
only Slicer's ``ScriptedLoadableModuleLogic`` (parameter node) on top. It needs MRML and
``MedFusionLib`` but no Qt and no ``slicer.app``, so the same code runs in the panel, in Slicer's batch
mode, in plain Python with ``slicer-core``, and under pytest.

Calls are blocking: a script simply calls :meth:`~MedFusionLogicBase.process`. The panel passes a
``progress`` callback that lets the GUI repaint and a ``cancel`` token wired to its Cancel button; the
library reports progress and checks cancellation between slice batches.

Example (Slicer's Python console)::

    import MedFusion
    logic = MedFusion.MedFusionLogic()
    result = logic.process(getNode("MRI"), [getNode("PET")], "laplacian", {"levels": 4},
                           colourMap="pet", computeMetrics=True)
    result.outputVolume, result.seconds, result.metrics
"""

from __future__ import annotations

import contextlib
import functools
import math
import threading
import time
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from . import display, options
from .controls import DEVICE_PARAMETER

_SCALAR_CLASS = "vtkMRMLScalarVolumeNode"
_VECTOR_CLASS = "vtkMRMLVectorVolumeNode"
# Share of the progress range given to the metrics when they are computed after a fusion.
_METRICS_SHARE = 0.25
DEFAULT_TABLE_NAME = "MedFusion metrics"


# Guards the "is a fusion running" flag of every logic object (the flag itself is per object).
_RUNNING_GUARD = threading.Lock()


def _oneAtATime(method):
    """Refuse a second fusion on the same logic while one runs (a second Apply clicked while the progress
    dialog lets the GUI repaint, or a script calling from another thread): FusionError, nothing done.
    The flag is released in ``finally``, so an error or a cancel frees the logic for the next call."""

    @functools.wraps(method)
    def guarded(self, *args, **kwargs):
        with _RUNNING_GUARD:
            running = getattr(self, "_runningCall", None)
            if running is not None:
                raise library().FusionError(
                    f"a fusion is already running ({running}); wait for it to finish or cancel it, then apply again")
            self._runningCall = method.__name__
        try:
            return method(self, *args, **kwargs)
        finally:
            self._runningCall = None

    return guarded


def library():
    """The ``MedFusionLib`` package (its import is cheap; methods load on first registry access)."""
    import MedFusionLib

    return MedFusionLib


@dataclass
class FusionResult:
    """What one fusion produced (see :meth:`MedFusionLogicBase.process`)."""

    outputVolume: Any
    method: str
    parameters: Dict[str, Any]
    inputVolumes: List[Any]
    seconds: float
    colourOutput: bool
    metrics: Optional[Dict[str, float]] = None
    metricsNote: str = ""
    metricsTable: Any = None
    problems: List[str] = field(default_factory=list)
    #: What the display set-up did (``display.setupResultDisplay``'s dict; the previous colour table of
    #: the functional input, to restore it, is ``display["overlayPreviousColourNodeID"]``).
    display: Dict[str, Any] = field(default_factory=dict)
    #: With registration: the transform node of each further input (reference -> input; set as the
    #: input's parent it aligns the input with the reference), in the order of the inputs.
    transforms: List[Any] = field(default_factory=list)
    register: str = "none"

    def tableRow(self) -> Dict[str, Any]:
        row: Dict[str, Any] = {
            "Method": self.method,
            "Inputs": ", ".join(n.GetName() for n in self.inputVolumes),
            "Parameters": ", ".join(f"{k}={v}" for k, v in sorted(self.parameters.items())),
            "Seconds": self.seconds,
            "Note": self.metricsNote,
        }
        row.update(self.metrics or {})
        return row


def _isRGB(node) -> bool:
    return node is not None and node.IsA(_VECTOR_CLASS)


def _hasRGBData(node) -> bool:
    """A vector volume holding 3-component unsigned char voxels (an RGB image, not e.g. a displacement field)."""
    import vtk

    image = node.GetImageData()
    return image is not None and image.GetNumberOfScalarComponents() == 3 and \
        image.GetScalarType() == vtk.VTK_UNSIGNED_CHAR


def _name(node) -> str:
    return repr(node.GetName()) if node is not None else "(none)"


def _scale8(array: np.ndarray, window: Tuple[float, float]) -> np.ndarray:
    """A grey image mapped from its intensity window to 0..255, rounded (the metrics' scale)."""
    lo, hi = window
    scaled = (np.asarray(array, dtype=np.float64) - lo) * (255.0 / (hi - lo))
    return np.clip(np.rint(scaled), 0.0, 255.0)


class MedFusionLogicBase:
    """The MedFusion module logic, usable without the GUI (see the module docstring)."""

    # --- library and methods -----------------------------------------------------------------------------
    @staticmethod
    def methods(family: Optional[str] = None):
        """The registered methods (``MedFusionLib.methods``), grouped by family."""
        return library().methods(family)

    @staticmethod
    def methodSpec(name: str):
        return library().get_method(name)

    @staticmethod
    def learnedMethods():
        """Methods of the ``deep learning`` family (empty until learned methods are registered)."""
        return library().methods(options.LEARNED_FAMILY)

    # --- options ---------------------------------------------------------------------------------------
    @staticmethod
    def resolveDevice(choice: str = "auto") -> str:
        """``'cpu'`` or ``'cuda'`` for a device choice ``auto``/``cpu``/``gpu``.

        ``auto`` is the GPU when PyTorch is installed and sees one, else the CPU; ``gpu`` without a usable
        GPU is an error that says so (rather than silently running on the CPU)."""
        errors = library().errors
        choice = (choice or "auto").lower()
        if choice not in options.DEVICES:
            raise errors.FusionInputError(f"device must be one of {', '.join(options.DEVICES)}; got {choice!r}")
        if choice == "cpu":
            return "cpu"
        try:
            import torch
            available = bool(torch.cuda.is_available())
        except ImportError:
            available = False
        if available:
            return "cuda"
        if choice == "gpu":
            raise errors.FusionInputError(
                "device 'gpu' was requested but PyTorch sees no CUDA GPU; choose 'auto' or 'cpu' (install a "
                "CUDA build of PyTorch with the PyTorch extension's PyTorch Utils module to use a GPU)")
        return "cpu"

    @staticmethod
    def fuseOptions(inputVolumes: Sequence, mode: str = "auto", sliceAxis="K", colourMap: Optional[str] = None,
                    colourSpace: str = "ycbcr") -> Dict[str, Any]:
        """Keyword options of ``MedFusionLib.fuse`` for these inputs and panel choices.

        ``colourMap`` (None for grey output) applies to the last input, the functional one, unless that
        input is already an RGB volume (it then keeps its own colours; the output is colour either way).
        """
        kwargs: Dict[str, Any] = {"mode": mode, "axis": options.axisIndex(sliceAxis), "colour_space": colourSpace}
        if colourMap and inputVolumes and not _isRGB(inputVolumes[-1]):
            kwargs["colormap"] = colourMap
        return kwargs

    @staticmethod
    def isColourOutput(inputVolumes: Sequence, colourMap: Optional[str]) -> bool:
        """Whether a fusion of these inputs gives a colour (vector) volume: any RGB input or a colour map."""
        return bool(colourMap) or any(_isRGB(n) for n in inputVolumes)

    # --- checks ----------------------------------------------------------------------------------------
    @staticmethod
    def checkVolumes(referenceVolume, otherVolumes: Sequence) -> Optional[str]:
        """Why these volumes cannot be fused by any method, or None (the method-independent checks)."""
        if referenceVolume is None:
            return "Select the anatomical reference volume."
        others = [n for n in (otherVolumes or []) if n is not None]
        if not others:
            return "Select at least one further input volume (the functional input)."
        inputs = [referenceVolume] + others
        ids = [n.GetID() for n in inputs]
        if len(set(ids)) != len(ids):
            duplicates = sorted({n.GetName() for n in inputs if ids.count(n.GetID()) > 1})
            return f"Each volume can be used once; selected more than once: {', '.join(duplicates)}."
        lib = library()
        from MedFusionLib import bridge

        for node in inputs:
            try:
                bridge.array_from_node(node)
            except lib.FusionInputError as error:
                return str(error)
        return None

    @staticmethod
    def checkRegistration(referenceVolume, otherVolumes: Sequence, register: str = "none") -> Optional[str]:
        """Why these volumes cannot be registered (``register`` rigid or affine), or None: an unknown
        choice, an RGB volume, a volume under a parent transform (``MedFusionLib.bridge_registration``)."""
        if register == "none" or referenceVolume is None:
            return None
        lib = library()
        from MedFusionLib import bridge_registration, registration

        try:
            registration.check_registration(register)
            bridge_registration.check_registrable([referenceVolume] + [n for n in otherVolumes if n is not None])
        except lib.FusionInputError as error:
            return str(error)
        return None

    def checkInputs(self, referenceVolume, otherVolumes: Sequence, method: Optional[str],
                    parameters: Optional[Mapping[str, Any]] = None, outputVolume=None, *, mode: str = "auto",
                    sliceAxis="K", colourMap: Optional[str] = None, colourSpace: str = "ycbcr",
                    register: str = "none") -> Optional[str]:
        """Why these inputs cannot be fused, or None when they can.

        Runs the library's own validation (``MedFusionLib.pipeline.plan``) on stand-in arrays of the
        reference's shape, so the answer is the one the fusion would give, without any work. The panel
        shows the reason as the Apply button's tooltip.
        """
        reason = self.checkVolumes(referenceVolume, otherVolumes) or \
            self.checkRegistration(referenceVolume, otherVolumes, register)
        if reason is not None:
            return reason
        inputs = [referenceVolume] + [n for n in otherVolumes if n is not None]
        ids = [n.GetID() for n in inputs]
        lib = library()
        from MedFusionLib import pipeline

        if not method:
            return "Select a fusion method."
        if outputVolume is not None and outputVolume.GetID() in ids:
            return (f"The output volume {_name(outputVolume)} is one of the inputs; inputs are never overwritten. "
                    f"Choose another output volume or none (a new volume is created).")
        params = {k: v for k, v in (parameters or {}).items()}
        try:
            spec = lib.get_method(method)
            if any(p.name == DEVICE_PARAMETER for p in spec.params):
                params.setdefault(DEVICE_PARAMETER, "cpu")
            shape = tuple(reversed(referenceVolume.GetImageData().GetDimensions()))
            standIns = [np.broadcast_to(np.zeros((), np.uint8), shape + (3,)) if _isRGB(n)
                        else np.broadcast_to(np.zeros((), np.int32), shape) for n in inputs]
            pipeline.plan(standIns, method, params=params,
                          **self.fuseOptions(inputs, mode, sliceAxis, colourMap, colourSpace))
        except (lib.FusionInputError, ValueError) as error:
            return str(error)
        colour = self.isColourOutput(inputs, colourMap)
        if outputVolume is not None and outputVolume.GetImageData() is not None:
            if colour and not _isRGB(outputVolume):
                return (f"This fusion produces a colour (RGB) volume, but the output {_name(outputVolume)} is a "
                        f"scalar volume with data. Choose a vector volume or none (a new volume is created).")
            if not colour and (_isRGB(outputVolume) or outputVolume.IsA("vtkMRMLTensorVolumeNode")):
                return (f"This fusion produces a grey (scalar) volume, but the output {_name(outputVolume)} is a "
                        f"vector volume with data. Choose a scalar volume or none (a new volume is created).")
        return None

    @staticmethod
    def defaultInputs(scene):
        """The volumes the panel pre-selects: (reference, functional), either None.

        Filtered by exact class, like the selectors that show them: the reference selector lists only
        ``vtkMRMLScalarVolumeNode`` itself, the functional one also RGB vector volumes; label maps,
        tensor (DTI) and diffusion-weighted volumes, which both hide, are never picked (``IsA`` would
        accept them, as they derive from the scalar volume class)."""
        volumes = [scene.GetNthNodeByClass(i, "vtkMRMLScalarVolumeNode")
                   for i in range(scene.GetNumberOfNodesByClass("vtkMRMLScalarVolumeNode"))]
        scalars = [v for v in volumes if v.GetClassName() == _SCALAR_CLASS]
        reference = scalars[0] if scalars else None
        functional = next((v for v in volumes if v is not reference and
                           (v.GetClassName() == _SCALAR_CLASS or (v.GetClassName() == _VECTOR_CLASS and _hasRGBData(v)))),
                          None)
        return reference, functional

    # --- fusion ----------------------------------------------------------------------------------------
    @_oneAtATime
    def process(self, referenceVolume, otherVolumes: Sequence, method: str = options.DEFAULT_METHOD,
                parameters: Optional[Mapping[str, Any]] = None, *, mode: str = "auto", sliceAxis="K",
                colourMap: Optional[str] = None, colourSpace: str = "ycbcr", device: str = "auto",
                outputVolume=None, outputName: Optional[str] = None, showResult: bool = True,
                showOverlay: bool = False, overlayOpacity: float = 0.5, overlayColourMap: Optional[str] = None,
                computeMetrics: bool = False, register: str = "none",
                metricsTable=None, progress: Optional[Callable[[float, str], None]] = None,
                cancel=None) -> FusionResult:
        """Fuse ``referenceVolume`` with ``otherVolumes`` into a volume on the reference's grid (blocking).

        Parameters
        ----------
        referenceVolume : vtkMRMLScalarVolumeNode
            The anatomical reference: the output gets its grid and parent transform.
        otherVolumes : sequence of volume nodes
            One or more further inputs, resampled onto the reference grid; the last is the functional
            input (the one shown through ``colourMap``).
        method : str
            A registered method (``MedFusionLib.methods()``).
        parameters : mapping, optional
            The method's parameters (defaults for the others).
        mode, sliceAxis, colourMap, colourSpace
            Slice-wise or 3-D processing, slice axis (``'K'``/``'J'``/``'I'`` or 0..2), colour map of the
            functional input (None: grey output), luminance/chroma space of colour fusion.
        device : {'auto', 'cpu', 'gpu'}
            Where learned methods run (passed as their ``device`` parameter; classical methods ignore it).
        outputVolume : volume node, optional
            Node to fill; None creates one. An empty node of the wrong kind (scalar for colour output or
            vector for grey output, e.g. just made by "Create new volume") is replaced by a new node of
            the right kind with its name, after the fusion succeeded.
        outputName : str, optional
            Name of a new output node (default: ``"<reference> fused (<method>)"``).
        showResult, showOverlay, overlayOpacity, overlayColourMap
            Show the output as background in the slice views, optionally the functional input over it
            through ``overlayColourMap`` (default: ``colourMap``, else ``'pet'``).
        computeMetrics : bool
            Score the result with ``MedFusionLib.metrics`` and write a row to ``metricsTable`` (created
            when None); with registration, against the registered inputs.
        register : {'none', 'rigid', 'affine'}
            ``'rigid'``/``'affine'``: register every further input onto the reference first
            (``MedFusionLib.bridge.fuse_volume_nodes(register=...)``: SimpleITK, Mattes mutual information);
            the transform nodes found stay in the scene (``result.transforms``). A failed registration
            raises ``MedFusionLib.RegistrationError`` and leaves the scene as it was.
        progress : callable, optional
            ``progress(fraction, message)`` for the whole call.
        cancel : MedFusionLib.CancelToken, threading.Event or callable, optional
            Stops the call with ``MedFusionLib.FusionCancelled``; the scene is then left as it was.

        Returns
        -------
        FusionResult

        Raises
        ------
        MedFusionLib.FusionInputError
            The inputs cannot be fused (the message says why); raised before any work.
        MedFusionLib.FusionCancelled
            The caller cancelled.
        MedFusionLib.FusionError
            Another :meth:`process` or :meth:`compareMethods` of this logic is still running.
        """
        lib = library()
        others = list(otherVolumes or [])
        inputs = [referenceVolume] + others
        reporter = lib.progress.Progress.wrap(progress, cancel)
        # With metrics, a chosen output node is filled only once the metrics are done too: the fusion goes
        # to a new staging node first, so that cancelling (or failing) during the metrics leaves the chosen
        # node, like the rest of the scene, as it was.
        staged = computeMetrics and outputVolume is not None
        if staged:
            reason = self.checkInputs(referenceVolume, others, method, dict(parameters or {}), outputVolume,
                                      mode=mode, sliceAxis=sliceAxis, colourMap=colourMap, colourSpace=colourSpace,
                                      register=register)
            if reason is not None:
                raise lib.FusionInputError(reason)
        result = self._fuse(inputs, method, parameters, mode=mode, sliceAxis=sliceAxis, colourMap=colourMap,
                            colourSpace=colourSpace, device=device, outputVolume=None if staged else outputVolume,
                            outputName=outputName or (outputVolume.GetName() if staged else None),
                            register=register,
                            progress=reporter.sub(0.0, 1.0 - _METRICS_SHARE if computeMetrics else 1.0))
        try:
            if computeMetrics:
                with self._registeredInputs(inputs, result.transforms) as scored:
                    result.metrics, result.metricsNote = self.computeMetrics(
                        result.outputVolume, scored, colourMap=colourMap,
                        sliceAxis=self._metricsAxis(mode, sliceAxis), progress=reporter.sub(1.0 - _METRICS_SHARE, 1.0))
        except BaseException:
            self._discardNewOutput(result.outputVolume, None if staged else outputVolume)
            self._discardTransforms(result.transforms)
            raise
        if staged:
            result.outputVolume = self._adoptStaged(result.outputVolume, outputVolume, outputName)
        if computeMetrics:
            table = metricsTable if metricsTable is not None else self.newMetricsTable(referenceVolume.GetScene())
            self.writeMetricsTable(table, [result], sliceAxis=self._metricsAxis(mode, sliceAxis))
            result.metricsTable = table
        if showResult:
            result.display = self.showResult(result.outputVolume, others[-1] if others else None,
                                             colourMap=overlayColourMap or colourMap, showOverlay=showOverlay,
                                             overlayOpacity=overlayOpacity, reference=referenceVolume,
                                             keepUserColourMap=overlayColourMap is None)
        reporter.report(1.0, "done")
        return result

    def _fuse(self, inputs: List, method: str, parameters, *, mode, sliceAxis, colourMap, colourSpace, device,
              outputVolume, outputName, progress, register: str = "none") -> FusionResult:
        lib = library()
        from MedFusionLib import bridge

        params = dict(parameters or {})
        reason = self.checkInputs(inputs[0], inputs[1:], method, params, outputVolume, mode=mode,
                                  sliceAxis=sliceAxis, colourMap=colourMap, colourSpace=colourSpace, register=register)
        if reason is not None:
            raise lib.FusionInputError(reason)
        spec = lib.get_method(method)
        if any(p.name == DEVICE_PARAMETER for p in spec.params):
            params[DEVICE_PARAMETER] = self.resolveDevice(device)
        colour = self.isColourOutput(inputs, colourMap)
        target, name = outputVolume, outputName
        replaced = None
        if outputVolume is not None and outputVolume.GetImageData() is None and colour != _isRGB(outputVolume):
            # An empty node of the wrong kind: write a new node and swap it in only after success.
            target, name, replaced = None, outputName or outputVolume.GetName(), outputVolume
        start = time.perf_counter()
        node = bridge.fuse_volume_nodes(inputs, method, output_node=target, output_name=name, progress=progress,
                                        register=register,
                                        **self.fuseOptions(inputs, mode, sliceAxis, colourMap, colourSpace),
                                        **params)
        seconds = time.perf_counter() - start
        transforms = [node.GetNthNodeReference(bridge.REGISTRATION_ROLE, k)
                      for k in range(node.GetNumberOfNodeReferences(bridge.REGISTRATION_ROLE))]
        if replaced is not None:
            self._discardNewOutput(replaced, None)
        shown = {k: v for k, v in params.items() if k != DEVICE_PARAMETER}
        resolved = spec.resolve_params({k: v for k, v in shown.items()})
        resolved = {k: (list(v) if isinstance(v, tuple) else v) for k, v in resolved.items() if k != DEVICE_PARAMETER}
        return FusionResult(outputVolume=node, method=spec.name, parameters=resolved, inputVolumes=list(inputs),
                            seconds=seconds, colourOutput=colour, transforms=transforms, register=register)

    @staticmethod
    @contextlib.contextmanager
    def _registeredInputs(inputs: List, transforms: List):
        """The inputs as the fusion saw them: each further input under its registration transform (a
        temporary node sharing its voxels, removed afterwards); the inputs themselves without registration."""
        if not transforms:
            yield list(inputs)
            return
        from MedFusionLib import bridge

        proxies = [bridge.registered_proxy(node, transform) for node, transform in zip(inputs[1:], transforms)]
        try:
            yield [inputs[0]] + proxies
        finally:
            for proxy in proxies:
                proxy.GetScene().RemoveNode(proxy)

    @staticmethod
    def _discardTransforms(transforms: List) -> None:
        """Remove registration transform nodes made by a call that then failed or was cancelled."""
        for transform in transforms:
            if transform is not None and transform.GetScene() is not None:
                transform.GetScene().RemoveNode(transform)

    def _adoptStaged(self, staging, requested, outputName: Optional[str]):
        """Move a finished staging node's volume into the node the user chose, and remove the staging node.
        An empty chosen node of the wrong kind (scalar for colour output, vector for grey) is replaced by
        the staging node instead, under its name."""
        if requested.GetImageData() is None and _isRGB(requested) != _isRGB(staging):
            name = requested.GetName()
            self._discardNewOutput(requested, None)
            staging.SetName(name)
            return staging
        was_modifying = requested.StartModify()
        try:
            if outputName:
                requested.SetName(outputName)
            from MedFusionLib.bridge_geometry import _ijk_to_ras

            requested.SetIJKToRASMatrix(_ijk_to_ras(staging))
            requested.SetAndObserveImageData(staging.GetImageData())
            requested.SetAndObserveTransformNodeID(staging.GetTransformNodeID())
            for key in staging.GetAttributeNames() or ():       # the fused-image provenance marks
                requested.SetAttribute(key, staging.GetAttribute(key))
            from MedFusionLib.bridge import REGISTRATION_ROLE

            requested.RemoveNodeReferenceIDs(REGISTRATION_ROLE)    # and the registration transforms
            for k in range(staging.GetNumberOfNodeReferences(REGISTRATION_ROLE)):
                requested.AddNodeReferenceID(REGISTRATION_ROLE, staging.GetNthNodeReferenceID(REGISTRATION_ROLE, k))
            requested.SetDescription(staging.GetDescription())
        finally:
            requested.EndModify(was_modifying)
        if requested.GetDisplayNode() is None:
            requested.CreateDefaultDisplayNodes()
        self._discardNewOutput(staging, None)
        return requested

    @staticmethod
    def _discardNewOutput(node, requested) -> None:
        """Remove an output node this call created, with its display and storage nodes."""
        if node is None or node is requested or node.GetScene() is None:
            return
        scene = node.GetScene()
        helpers = [node.GetNthDisplayNode(i) for i in range(node.GetNumberOfDisplayNodes())]
        helpers += [node.GetNthStorageNode(i) for i in range(node.GetNumberOfStorageNodes())]
        scene.RemoveNode(node)
        for helper in helpers:
            if helper is not None and helper.GetScene() is scene:
                scene.RemoveNode(helper)

    @staticmethod
    def _metricsAxis(mode: str, sliceAxis) -> int:
        # Metrics are computed per 2-D slice: along the fusion's slice axis, or K for 3-D fusion.
        return options.axisIndex(sliceAxis) if mode == "slices" else 0

    # --- display ---------------------------------------------------------------------------------------
    @staticmethod
    def showResult(outputVolume, functionalVolume=None, *, colourMap: Optional[str] = None,
                   showOverlay: bool = False, overlayOpacity: float = 0.5, reference=None,
                   keepUserColourMap: bool = True) -> Dict[str, Any]:
        """Show the output in the slice views (see :func:`MedFusionModuleLib.display.setupResultDisplay`)."""
        return display.setupResultDisplay(outputVolume, functionalVolume, colourMap=colourMap or "pet",
                                          showOverlay=showOverlay, overlayOpacity=overlayOpacity,
                                          reference=reference, keepUserColourMap=keepUserColourMap)

    # --- side-by-side comparison of inputs and result -----------------------------------------------
    @staticmethod
    def checkSideBySide(referenceVolume, otherVolumes: Sequence, fusedVolume) -> Optional[str]:
        """Why the inputs and the fused volume cannot be shown side by side, or None when they can."""
        if referenceVolume is None:
            return "Select the anatomical reference volume."
        others = [n for n in (otherVolumes or []) if n is not None]
        if not others:
            return "Select at least one further input volume (the functional input)."
        if fusedVolume is None or fusedVolume.GetImageData() is None:
            return "Apply first (or select a fused volume): there is no fused volume to compare with the inputs."
        if fusedVolume.GetID() in {n.GetID() for n in [referenceVolume] + others}:
            return f"The fused volume {_name(fusedVolume)} is one of the inputs; select the fusion result."
        return None

    @staticmethod
    def sideBySideViews(referenceVolume, otherVolumes: Sequence, fusedVolume, *,
                        overlayFunctional: bool = False) -> List[Tuple[str, Any, Any]]:
        """The views of :meth:`showSideBySide`: ``(label, background, foreground)`` per view, left to right.

        One view per input, labelled 1, 2, ... in fusion order (reference first, the functional input
        last), and one for the fused volume, labelled F (the slice views' corner annotations name the
        volumes). With ``overlayFunctional`` the functional input's view shows it over the reference
        (what a reader would otherwise compare the fusion with)."""
        inputs = [referenceVolume] + [n for n in otherVolumes if n is not None]
        views: List[Tuple[str, Any, Any]] = [(str(k + 1), node, None) for k, node in enumerate(inputs)]
        if overlayFunctional:
            views[-1] = (views[-1][0], referenceVolume, inputs[-1])
        views.append(("F", fusedVolume, None))
        return views

    def showSideBySide(self, referenceVolume, otherVolumes: Sequence, fusedVolume, *, overlayFunctional: bool = False,
                       overlayOpacity: float = 0.5, orientation: str = "Axial", layoutNode=None) -> Dict[str, Any]:
        """Show every input and the fused volume side by side in linked slice views (the panel's
        *Compare side by side*; see :func:`MedFusionModuleLib.display.showSideBySide`). Raises
        ``MedFusionLib.FusionInputError`` with :meth:`checkSideBySide`'s reason when it cannot."""
        reason = self.checkSideBySide(referenceVolume, otherVolumes, fusedVolume)
        if reason is not None:
            raise library().FusionInputError(reason)
        views = self.sideBySideViews(referenceVolume, otherVolumes, fusedVolume, overlayFunctional=overlayFunctional)
        return display.showSideBySide(views, foregroundOpacity=overlayOpacity, orientation=orientation,
                                      layoutNode=layoutNode)

    # --- metrics ---------------------------------------------------------------------------------------
    @staticmethod
    def metricsConvention(sliceAxis=0) -> str:
        axis = options.SLICE_AXES[options.axisIndex(sliceAxis)]
        return ("Reference-free metrics of MedFusionLib.metrics (see docs/metrics.md) on 0..255 images: each "
                "grey input and a grey output scaled from its own 0.5-99.5 percentile window and rounded; "
                "colour-mapped inputs, RGB inputs and colour output as their rounded luminance "
                "(MedFusionLib.metrics.protocol_image). Inputs resampled onto the reference grid. Computed "
                f"on every 2-D slice along axis {axis} and averaged over the slices where defined. Seconds: "
                "wall-clock time of the fusion call.")

    def computeMetrics(self, outputVolume, inputVolumes: Sequence, *, colourMap: Optional[str] = None,
                       sliceAxis=0, metricNames: Optional[Sequence[str]] = None,
                       progress=None, cancel=None) -> Tuple[Dict[str, float], str]:
        """Quality metrics of a fused volume against its inputs (see :meth:`metricsConvention`).

        Each metric is computed per 2-D slice along ``sliceAxis`` and averaged over the slices where it is
        defined (``MedFusionLib.metrics`` does the same for a volume; slice by slice the work can report
        progress and be cancelled, and memory stays at one slice). Metrics whose windows do not fit the
        slice size (e.g. MS-SSIM needs 176 x 176) are left out and named in the returned note.

        Returns
        -------
        (dict, str)
            Metric name to value (NaN where undefined on every slice), and a note (empty when all
            requested metrics were computed).
        """
        lib = library()
        from MedFusionLib import bridge, colour, intensity, metrics, pipeline

        reporter = lib.progress.Progress.wrap(progress, cancel)
        reference = inputVolumes[0]
        axis = options.axisIndex(sliceAxis)
        names = list(metricNames) if metricNames is not None else list(metrics.METRICS)
        maps = pipeline.colormaps_per_input(
            self.fuseOptions(inputVolumes, colourMap=colourMap).get("colormap"), len(inputVolumes))
        fused = bridge.array_from_node(outputVolume)
        fusedRGB = _isRGB(outputVolume)
        sources = [bridge.resample_to_reference(node, reference) for node in inputVolumes]
        # Windows are measured once on the whole volume (the library's robust estimate), slices are
        # converted one at a time.
        fusedWindow = None if fusedRGB else intensity.robust_window(fused)
        windows = [None if _isRGB(node) else intensity.robust_window(array)
                   for node, array in zip(inputVolumes, sources)]

        def sliceOf(array, k):
            return np.take(array, k, axis=axis)

        def fused8(k):
            s = sliceOf(fused, k)
            return metrics.protocol_image(s, rgb=True) if fusedRGB else _scale8(s, fusedWindow)

        def source8(i, k):
            s = sliceOf(sources[i], k)
            if _isRGB(inputVolumes[i]):
                return metrics.protocol_image(s, rgb=True)
            if maps[i] is not None:
                return metrics.protocol_image(colour.apply_colormap(intensity.normalise(s, windows[i]), maps[i]),
                                              rgb=True)
            return _scale8(s, windows[i])

        depth = fused.shape[axis]
        first = (fused8(0), [source8(i, 0) for i in range(len(sources))])
        usable, skipped = self._usableMetrics(first[0], first[1], names)
        values: Dict[str, List[float]] = {name: [] for name in usable}
        for k in range(depth):
            reporter.report(k / depth, f"metrics: slice {k + 1} of {depth}")
            f, srcs = first if k == 0 else (fused8(k), [source8(i, k) for i in range(len(sources))])
            if usable:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", RuntimeWarning)
                    scores = metrics.evaluate_all(f, srcs, metrics=usable)
                for name in usable:
                    values[name].append(scores[name])
        reporter.report(1.0, "metrics done")
        result: Dict[str, float] = {}
        for name in names:   # every requested metric, NaN where it could not be computed
            finite = [v for v in values.get(name, []) if not math.isnan(v)]
            result[name] = float(np.mean(finite)) if finite else math.nan
        note = ""
        if skipped:
            note = f"not computed ({skipped[0][1]}): {', '.join(n for n, _ in skipped)}"
        return result, note

    @staticmethod
    def _usableMetrics(fused8: np.ndarray, sources8: List[np.ndarray],
                       names: Sequence[str]) -> Tuple[List[str], List[Tuple[str, str]]]:
        """Metrics whose windows fit 2-D slices of this size, and (name, reason) for the others."""
        from MedFusionLib import metrics

        fits = set(metrics.metrics_for_shape(fused8.shape))
        usable = [name for name in names if name in fits]
        reason = f"slices of {fused8.shape[0]} x {fused8.shape[1]} are too small"
        return usable, [(name, reason) for name in names if name not in fits]

    # --- tables ----------------------------------------------------------------------------------------
    @staticmethod
    def newMetricsTable(scene, name: str = DEFAULT_TABLE_NAME):
        """A new, empty ``vtkMRMLTableNode`` in ``scene`` for metrics."""
        table = scene.AddNewNodeByClass("vtkMRMLTableNode", scene.GetUniqueNameByString(name))
        return table

    def writeMetricsTable(self, table, results: Sequence[FusionResult], sliceAxis=0) -> None:
        """Fill ``table`` with one row per result (method, inputs, parameters, seconds, metrics, note)."""
        from MedFusionLib import metrics

        display.fillMetricsTable(table, [r.tableRow() for r in results], list(metrics.METRICS),
                                 metrics.HIGHER_IS_BETTER, self.metricsConvention(sliceAxis))

    # --- comparison ------------------------------------------------------------------------------------
    @_oneAtATime
    def compareMethods(self, referenceVolume, otherVolumes: Sequence, methods: Sequence[str],
                       parametersByMethod: Optional[Mapping[str, Mapping[str, Any]]] = None, *,
                       mode: str = "auto", sliceAxis="K", colourMap: Optional[str] = None,
                       colourSpace: str = "ycbcr", device: str = "auto", register: str = "none", metricsTable=None,
                       keepOutputs: bool = True, progress=None, cancel=None) -> Tuple[Any, List[FusionResult]]:
        """Run several methods on the same inputs and fill one table: one row per method with its
        metrics and run time.

        With ``register`` rigid or affine the further inputs are registered onto the reference once, before
        the first method, and every method fuses (and is scored on) the registered inputs; the transform
        nodes stay in the scene (each result's ``transforms``).

        A method that cannot take these inputs (e.g. one defined for two inputs given three) gets a row
        whose note says why, and the others still run. Outputs are named ``"<reference> fused
        (<method>)"``; with ``keepOutputs=False`` they are removed once scored. On cancel every output
        made so far is removed and the table is left unchanged.

        Returns
        -------
        (vtkMRMLTableNode, list of FusionResult)
        """
        lib = library()
        methods = list(methods)
        if not methods:
            raise lib.FusionInputError("compare needs at least one method; none was selected")
        unknown = [m for m in methods if m not in {s.name for s in lib.methods()}]
        if unknown:
            raise lib.FusionInputError(
                f"unknown method(s): {', '.join(unknown)}; available: {', '.join(s.name for s in lib.methods())}")
        reporter = lib.progress.Progress.wrap(progress, cancel)
        inputs = [referenceVolume] + list(otherVolumes or [])
        axis = self._metricsAxis(mode, sliceAxis)
        results: List[FusionResult] = []
        rows: List[FusionResult] = []
        transforms: List[Any] = []
        start = 0.0
        try:
            if register != "none":
                reason = self.checkVolumes(referenceVolume, otherVolumes) or \
                    self.checkRegistration(referenceVolume, otherVolumes, register)
                if reason is not None:
                    raise lib.FusionInputError(reason)
                from MedFusionLib import bridge

                start = 0.3
                for k, node in enumerate(inputs[1:]):
                    part = reporter.sub(start * k / (len(inputs) - 1), start * (k + 1) / (len(inputs) - 1))
                    transforms.append(bridge.register_volume_nodes(referenceVolume, node, register, progress=part)[0])
            with self._registeredInputs(inputs, transforms) as fusedInputs:
                for index, method in enumerate(methods):
                    share = reporter.sub(start + (1 - start) * index / len(methods),
                                         start + (1 - start) * (index + 1) / len(methods))
                    share.report(0.0, f"{method}: fusing")
                    params = dict((parametersByMethod or {}).get(method, {}))
                    try:
                        result = self._fuse(fusedInputs, method, params, mode=mode, sliceAxis=sliceAxis,
                                            colourMap=colourMap, colourSpace=colourSpace, device=device,
                                            outputVolume=None, outputName=None, progress=share.sub(0.0, 0.6))
                    except lib.FusionCancelled:
                        raise
                    except lib.FusionError as error:
                        rows.append(FusionResult(outputVolume=None, method=method, parameters=params,
                                                 inputVolumes=inputs, seconds=math.nan,
                                                 colourOutput=self.isColourOutput(inputs, colourMap),
                                                 metricsNote=f"not run: {error}"))
                        continue
                    result.inputVolumes, result.transforms, result.register = list(inputs), list(transforms), register
                    results.append(result)
                    result.metrics, result.metricsNote = self.computeMetrics(
                        result.outputVolume, fusedInputs, colourMap=colourMap, sliceAxis=axis,
                        progress=share.sub(0.6, 1.0))
                    rows.append(result)
        except BaseException:
            for result in results:
                self._discardNewOutput(result.outputVolume, None)
            self._discardTransforms(transforms)
            raise
        table = metricsTable if metricsTable is not None else self.newMetricsTable(referenceVolume.GetScene())
        self.writeMetricsTable(table, rows, sliceAxis=axis)
        if not keepOutputs:
            for result in results:
                self._discardNewOutput(result.outputVolume, None)
                result.outputVolume = None
        reporter.report(1.0, "comparison done")
        for result in rows:
            result.metricsTable = table
        return table, rows
