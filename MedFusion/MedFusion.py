"""MedFusion: multimodal medical image fusion (CT, MRI, PET, SPECT) in 3D Slicer.

The five classes of a Slicer scripted module live here (Slicer loads this file because it is named like
the module): ``MedFusion`` (module description), ``MedFusionParameterNode`` (the panel's state,
saved with the scene), ``MedFusionWidget`` (the panel), ``MedFusionLogic`` (the work, usable without the
GUI) and ``MedFusionTest`` (the self-test).

This file stays thin: it holds only what needs Qt, CTK or ``slicer.app``. The logic itself is
``MedFusionModuleLib.logic.MedFusionLogicBase`` (MRML and MedFusionLib only), so it runs in batch mode and
is tested with pytest on ``slicer-core``; ``MedFusionLogic`` adds Slicer's parameter node handling to it.
See docs/slicer-module.md.

Supported Slicer versions: 5.10 and later (Python 3.12; MedFusionLib needs Python >= 3.10, and the panel
uses ``slicer.parameterNodeWrapper`` with ``Choice``/``WithinRange``, available since 5.4).
"""

import logging
import os
import traceback
from typing import Annotated, Callable, Dict, List, Optional

import qt
import slicer
import vtk
from slicer import vtkMRMLScalarVolumeNode, vtkMRMLTableNode
from slicer.i18n import tr as _
from slicer.i18n import translate
from slicer.parameterNodeWrapper import Choice, WithinRange, parameterNodeWrapper
from slicer.ScriptedLoadableModule import (
    ScriptedLoadableModule,
    ScriptedLoadableModuleLogic,
    ScriptedLoadableModuleTest,
    ScriptedLoadableModuleWidget,
)
from slicer.util import VTKObservationMixin

from MedFusionModuleLib import checks, controls, dependencies, options
from MedFusionModuleLib.logic import FusionResult, MedFusionLogicBase

# From a source checkout (Developer mode, additional module path <repo>/MedFusion) MedFusionLib is one
# folder up; in an installed extension it sits beside this file. Nothing is imported or installed here.
dependencies.ensureLibraryImportable()


def _registeredMethods():
    """``MedFusionLib.methods()`` when the library and its dependencies import, else None (no install).

    Called by the panel only (its set-up and after an installation), never at Slicer start-up: importing
    the library there would slow every start of Slicer, also for users who never open MedFusion."""
    if dependencies.missingRequirements(includeTorch=False):
        return None
    try:
        import MedFusionLib

        return MedFusionLib.methods(), MedFusionLib.FAMILIES
    except Exception:  # a broken optional package must never break Slicer's start-up
        logging.debug("MedFusion: method registry not available yet", exc_info=True)
        return None


#
# MedFusion
#


class MedFusion(ScriptedLoadableModule):
    """Module description: title, category, contributors, help (its method list is added by the panel)."""

    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = _("MedFusion")
        self.parent.categories = [translate("qSlicerAbstractCoreModule", "Filtering")]
        self.parent.dependencies = []
        self.parent.contributors = ["The MedFusion developers (MedFusion project)"]
        self.parent.helpText = _(options.helpText(None))
        self.parent.acknowledgementText = _(
            "MedFusion implements published fusion methods; each method's reference is listed above and in "
            "the documentation. Colour fusion follows ITU-R BT.601 (YCbCr) and Tu et al. 2001 (IHS); the "
            "quality metrics follow the CDDFuse evaluator (Zhao et al., CVPR 2023) and Liu et al., TPAMI 2012. "
            "Built on 3D Slicer, NumPy, SciPy, PyWavelets, scikit-image, MONAI and PyTorch.")
        # Start-up stays cheap: only the Sample Data entry is registered (nothing imported or computed).
        # The help's method list is built when the panel is first opened (MedFusionWidget._loadLibrary);
        # Slicer creates the panel before it reads the help text, so the first help shown is complete.
        slicer.app.connect("startupCompleted()", registerSampleData)


def registerSampleData():
    """Add the built-in phantom to Slicer's Sample Data module (section MedFusion), as Slicer's module
    template registers sample data. Cheap: the volumes are computed only when the entry is clicked."""
    try:
        import SampleData
    except ImportError:   # Sample Data module disabled: nothing to register with
        logging.debug("MedFusion: SampleData module not available; phantom not registered")
        return
    from MedFusionModuleLib import sampledata

    iconsPath = os.path.join(os.path.dirname(__file__), "Resources", "Icons")
    SampleData.SampleDataLogic.registerCustomSampleDataSource(
        **sampledata.sampleDataSource(iconsPath, loadPhantomSampleData))


def loadPhantomSampleData(source=None):
    """Sample Data's loader for the phantom: compute MRI, PET and CT into the scene and show MRI with PET
    over it (NumPy and SciPy only: works before MedFusion's other dependencies are installed)."""
    from MedFusionModuleLib import sampledata

    with slicer.util.WaitCursor():
        volumes = sampledata.loadHeadPhantom(slicer.mrmlScene)
    slicer.util.setSliceViewerLayers(background=volumes["MRI"], foreground=volumes["PET"], foregroundOpacity=0.4,
                                     fit=True)
    return list(volumes.values())


#
# MedFusionParameterNode
#


@parameterNodeWrapper
class MedFusionParameterNode:
    """The panel's state, saved with the scene.

    referenceVolume - anatomical volume; the output gets its grid.
    functionalVolume - second input (PET/SPECT or another modality), the one shown in colour.
    additionalVolumes - further inputs for three or more (fused between reference and functional).
    method - registered method name; methodParameters - JSON {method: {parameter: value}}.
    mode, sliceAxis - native 3-D or slice-wise, and the slice axis (K, J, I).
    colourMode, colourMap, colourSpace - grey or colour output, map of the functional input, colour space.
    device - where learned methods run (auto, cpu, gpu).
    register - registration of the further inputs onto the reference first (none, rigid, affine).
    outputVolume - fused volume (None: created on Apply).
    showOverlay, overlayOpacity - functional input as foreground overlay.
    computeMetrics, metricsTable - quality metrics of the result, and their table.
    compareMethods - comma-separated methods for "Compare methods".
    """

    referenceVolume: vtkMRMLScalarVolumeNode
    functionalVolume: vtkMRMLScalarVolumeNode
    additionalVolumes: list[vtkMRMLScalarVolumeNode]
    method: str = options.DEFAULT_METHOD
    methodParameters: str = "{}"
    mode: Annotated[str, Choice(list(options.MODES))] = "auto"
    sliceAxis: Annotated[str, Choice(list(options.SLICE_AXES))] = "K"
    colourMode: Annotated[str, Choice(list(options.COLOUR_MODES))] = "grey"
    colourMap: Annotated[str, Choice(list(options.COLOUR_MAPS))] = "pet"
    colourSpace: Annotated[str, Choice(list(options.COLOUR_SPACES))] = "ycbcr"
    device: Annotated[str, Choice(list(options.DEVICES))] = "auto"
    register: Annotated[str, Choice(list(options.REGISTRATIONS))] = "none"
    outputVolume: vtkMRMLScalarVolumeNode
    showOverlay: bool = False
    overlayOpacity: Annotated[float, WithinRange(0.0, 1.0)] = 0.5
    computeMetrics: bool = True
    metricsTable: vtkMRMLTableNode
    compareMethods: str = ""


#
# MedFusionWidget
#


class MedFusionWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    """The panel: a thin layer between the .ui file, the parameter node and the logic."""

    def __init__(self, parent=None) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self._parameterNode = None
        self._parameterNodeGuiTag = None
        self._libraryLoaded = False
        self._updatingGUI = False
        self._busy = False
        self._installSession = None
        self._methodControls: Dict[str, tuple] = {}
        self._invalidControls: Dict[str, str] = {}
        self._controlsMethod: Optional[str] = None

    # --- set-up and parameter node -------------------------------------------------------------------
    def setup(self) -> None:
        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/MedFusion.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)
        self.logic = MedFusionLogic()
        self._installSession = dependencies.InstallSession(
            lambda enabled: setattr(self.ui.installDependenciesButton, "enabled", enabled))

        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)
        # Widgets without a SlicerParameterName (their value is not one plain field) are synced here.
        self.ui.additionalVolumesSelector.connect("checkedNodesChanged()", self.onAdditionalVolumesChanged)
        self.ui.methodComboBox.connect("currentIndexChanged(int)", self.onMethodChanged)
        self.ui.compareMethodsListWidget.connect("itemChanged(QListWidgetItem*)", self.onCompareSelectionChanged)
        self.ui.resetParametersButton.connect("clicked(bool)", self.onResetParameters)
        self.ui.installDependenciesButton.connect("clicked(bool)", self.onInstallDependencies)
        self.ui.applyButton.connect("clicked(bool)", self.onApplyButton)
        self.ui.compareButton.connect("clicked(bool)", self.onCompareButton)
        self.ui.sideBySideButton.connect("clicked(bool)", self.onSideBySideButton)

        self._loadLibrary()
        self.initializeParameterNode()

    def cleanup(self) -> None:
        self.removeObservers()

    def enter(self) -> None:
        self.initializeParameterNode()

    def exit(self) -> None:
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self._parameterNodeGuiTag = None
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self.updateGUIFromParameterNode)

    def onSceneStartClose(self, caller, event) -> None:
        self.setParameterNode(None)

    def onSceneEndClose(self, caller, event) -> None:
        if self.parent.isEntered:
            self.initializeParameterNode()

    def initializeParameterNode(self) -> None:
        self.setParameterNode(self.logic.getParameterNode())
        node = self._parameterNode
        reference, functional = self.logic.defaultInputs(slicer.mrmlScene)
        if not node.referenceVolume and reference is not None:
            node.referenceVolume = reference
        if not node.functionalVolume and functional is not None and functional is not node.referenceVolume:
            node.functionalVolume = functional

    def setParameterNode(self, inputParameterNode: Optional[MedFusionParameterNode]) -> None:
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self.updateGUIFromParameterNode)
        self._parameterNode = inputParameterNode
        if self._parameterNode:
            # Widgets with a "SlicerParameterName" property in the .ui file are connected by the wrapper.
            self._parameterNodeGuiTag = self._parameterNode.connectGui(self.ui)
            self.addObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self.updateGUIFromParameterNode)
        self.updateGUIFromParameterNode()

    # --- dependencies and the method list --------------------------------------------------------------
    def _loadLibrary(self) -> bool:
        """Fill the method list from the registry when the dependencies are installed (never installs)."""
        missing = dependencies.missingRequirements()
        registry = None if missing else _registeredMethods()
        self._libraryLoaded = registry is not None
        self.ui.dependenciesCollapsibleButton.visible = not self._libraryLoaded
        if not self._libraryLoaded:
            shown = missing or ["(MedFusionLib failed to import; see the Python console)"]
            self.ui.dependenciesLabel.text = ("MedFusion needs Python packages that are not installed yet: "
                                              + ", ".join(shown) + ". Nothing is installed without your consent.")
            return False
        specs, families = registry
        self._updatingGUI = True
        try:
            self.ui.methodComboBox.clear()
            self.ui.compareMethodsListWidget.clear()
            for spec in specs:
                self.ui.methodComboBox.addItem(spec.name)
                self.ui.methodComboBox.setItemData(self.ui.methodComboBox.count - 1,
                                                   f"{spec.family}: {spec.summary}", qt.Qt.ToolTipRole)
                item = qt.QListWidgetItem(spec.name)
                item.setFlags(item.flags() | qt.Qt.ItemIsUserCheckable)
                item.setCheckState(qt.Qt.Unchecked)
                item.setToolTip(f"{spec.family}: {spec.summary}")
                self.ui.compareMethodsListWidget.addItem(item)
        finally:
            self._updatingGUI = False
        self._setModuleHelpText(options.helpText(specs, families))
        return True

    def _setModuleHelpText(self, text: str) -> None:
        """Set the help of the module (not of this widget): Slicer's module panel shows the module's."""
        module = slicer.util.getModule(self.moduleName)
        if module is not None:
            module.helpText = _(text)

    def onInstallDependencies(self) -> None:
        # Ask first, then the wait cursor; the button stays disabled until the installation ends (pip lets
        # Qt process events, so it could otherwise start a second installation inside the first).
        try:
            outcome = self._installSession.run(
                ask=dependencies.confirmInstall,
                install=lambda: self.logic.ensureDependencies(interactive=False),   # consent just given
                busy=slicer.util.WaitCursor, refresh=self._refreshAfterInstall)
        except Exception as error:
            slicer.util.errorDisplay(f"Installing MedFusion's dependencies failed: {error}",
                                     detailedText=traceback.format_exc())
            return
        if outcome == dependencies.InstallSession.DECLINED:
            slicer.util.showStatusMessage("MedFusion: installation declined; nothing was installed.", 5000)

    def _refreshAfterInstall(self) -> None:
        """Method list, help text and Dependencies section after an installation (also a failed one)."""
        if self._loadLibrary():
            self.updateGUIFromParameterNode()

    # --- parameter node <-> manually synced widgets -------------------------------------------------------
    def updateGUIFromParameterNode(self, caller=None, event=None) -> None:
        if self._parameterNode is None or self._updatingGUI:
            return
        node = self._parameterNode
        self._updatingGUI = True
        try:
            selector = self.ui.additionalVolumesSelector
            wanted = {v.GetID() for v in node.additionalVolumes if v is not None}
            for volume in selector.checkedNodes() + selector.uncheckedNodes():
                state = qt.Qt.Checked if volume.GetID() in wanted else qt.Qt.Unchecked
                if selector.checkState(volume) != state:
                    selector.setCheckState(volume, state)
            if self._libraryLoaded:
                index = self.ui.methodComboBox.findText(node.method)
                if index >= 0 and self.ui.methodComboBox.currentIndex != index:
                    self.ui.methodComboBox.currentIndex = index
                compare = {m for m in node.compareMethods.split(",") if m}
                for row in range(self.ui.compareMethodsListWidget.count):
                    item = self.ui.compareMethodsListWidget.item(row)
                    item.setCheckState(qt.Qt.Checked if item.text() in compare else qt.Qt.Unchecked)
                self._showMethodControls(node.method)
            self.ui.colourMapComboBox.enabled = node.colourMode == "colour" or node.showOverlay
            self.ui.colourSpaceComboBox.enabled = node.colourMode == "colour"
            self.ui.overlayOpacitySliderWidget.enabled = node.showOverlay
            self.ui.sliceAxisComboBox.enabled = node.mode != "3d"
            if node.metricsTable is not None:
                self.ui.metricsTableView.setMRMLTableNode(node.metricsTable)
        finally:
            self._updatingGUI = False
        self._checkCanApply()

    def onAdditionalVolumesChanged(self) -> None:
        if self._parameterNode is None or self._updatingGUI:
            return
        self._parameterNode.additionalVolumes = list(self.ui.additionalVolumesSelector.checkedNodes())

    def onMethodChanged(self, index: int) -> None:
        if self._parameterNode is None or self._updatingGUI or index < 0:
            return
        self._parameterNode.method = self.ui.methodComboBox.currentText

    def onCompareSelectionChanged(self, item) -> None:
        if self._parameterNode is None or self._updatingGUI:
            return
        widget = self.ui.compareMethodsListWidget
        checked = [widget.item(r).text() for r in range(widget.count) if widget.item(r).checkState() == qt.Qt.Checked]
        self._parameterNode.compareMethods = ",".join(checked)

    def onResetParameters(self) -> None:
        if self._parameterNode is not None:
            self._invalidControls = {}
            self._controlsMethod = None   # rebuild the controls with the defaults
            self._parameterNode.methodParameters = controls.withoutMethod(
                self._parameterNode.methodParameters, self._parameterNode.method)
            self.updateGUIFromParameterNode()   # also when nothing was stored (no Modified event then)

    # --- method parameter controls (built from the registry) ---------------------------------------------
    def _showMethodControls(self, method: str) -> None:
        """Build (on a method change) or refresh the parameter controls of ``method``."""
        try:
            spec = self.logic.methodSpec(method)
        except Exception:
            self.ui.methodDescriptionLabel.text = f"Unknown method {method!r}."
            return
        self.ui.methodDescriptionLabel.text = f"{spec.summary}\n{spec.reference}"
        values, _ = controls.parametersForMethod(spec, controls.loadStored(self._parameterNode.methodParameters))
        if self._controlsMethod != method:
            layout = self.ui.methodParametersFormLayout
            while layout.rowCount() > 0:
                layout.removeRow(0)
            self._methodControls = {}
            self._invalidControls = {}
            for description in controls.methodControlSpecs(spec):
                widget = self._createControl(description)
                layout.addRow(description["label"] + ":", widget)
                self._methodControls[description["name"]] = (widget, description, spec.param(description["name"]))
            self.ui.methodParametersGroupBox.visible = bool(self._methodControls)
            self._controlsMethod = method
        for name, (widget, description, _) in self._methodControls.items():
            if name not in self._invalidControls:
                for key, value in controls.setControlValue(description, values[name]).items():
                    setattr(widget, key, value)

    def _createControl(self, description: dict):
        """One Qt control from its description (see MedFusionModuleLib.controls.controlSpec)."""
        kind = description["widget"]
        if kind == "QSpinBox":
            widget = qt.QSpinBox()
            widget.setRange(description["minimum"], description["maximum"])
            widget.singleStep = description["singleStep"]
            widget.connect("valueChanged(int)", lambda _v, n=description["name"]: self.onControlChanged(n))
        elif kind == "QDoubleSpinBox":
            widget = qt.QDoubleSpinBox()
            widget.decimals = description["decimals"]
            widget.setRange(description["minimum"], description["maximum"])
            widget.singleStep = description["singleStep"]
            widget.connect("valueChanged(double)", lambda _v, n=description["name"]: self.onControlChanged(n))
        elif kind == "QCheckBox":
            widget = qt.QCheckBox()
            widget.connect("toggled(bool)", lambda _v, n=description["name"]: self.onControlChanged(n))
        elif kind == "QComboBox":
            widget = qt.QComboBox()
            widget.addItems(description["items"])
            widget.connect("currentIndexChanged(int)", lambda _v, n=description["name"]: self.onControlChanged(n))
        else:
            widget = qt.QLineEdit()
            widget.placeholderText = description.get("placeholderText", "")
            widget.connect("editingFinished()", lambda n=description["name"]: self.onControlChanged(n))
        widget.toolTip = description["tooltip"]
        return widget

    def onControlChanged(self, name: str) -> None:
        if self._parameterNode is None or self._updatingGUI or name not in self._methodControls:
            return
        widget, description, param = self._methodControls[name]
        raw = {"QSpinBox": lambda: widget.value, "QDoubleSpinBox": lambda: widget.value,
               "QCheckBox": lambda: widget.checked, "QComboBox": lambda: widget.currentText}.get(
            description["widget"], lambda: widget.text)()
        try:
            value = controls.valueFromControl(param, raw, self._parameterNode.method)
        except ValueError as error:
            self._invalidControls[name] = str(error)
            widget.setStyleSheet("background-color: #ffd0d0")
            widget.toolTip = f"{error}\n\n{description['tooltip']}"
            self._checkCanApply()
            return
        self._invalidControls.pop(name, None)
        widget.setStyleSheet("")
        widget.toolTip = description["tooltip"]
        self._parameterNode.methodParameters = controls.withValue(
            self._parameterNode.methodParameters, self._parameterNode.method, name, value)

    # --- apply state -----------------------------------------------------------------------------------
    def _inputs(self):
        node = self._parameterNode
        others = [v for v in node.additionalVolumes if v is not None]
        if node.functionalVolume is not None:
            others.append(node.functionalVolume)
        return node.referenceVolume, others

    def _colourMap(self) -> Optional[str]:
        return self._parameterNode.colourMap if self._parameterNode.colourMode == "colour" else None

    def _parametersByMethod(self) -> Dict[str, dict]:
        stored = controls.loadStored(self._parameterNode.methodParameters)
        result = {}
        for spec in self.logic.methods():
            result[spec.name], _ = controls.parametersForMethod(spec, stored)
        return result

    def _whyNot(self, method: Optional[str]) -> Optional[str]:
        if not self._libraryLoaded:
            return "Install MedFusion's Python dependencies first (Dependencies section)."
        if self._busy:
            return "A fusion is running."
        node = self._parameterNode
        reference, others = self._inputs()
        parameters = None
        if method == node.method:
            if self._invalidControls:
                name, error = next(iter(self._invalidControls.items()))
                return f"Parameter {name}: {error}"
            try:
                spec = self.logic.methodSpec(method)
            except Exception as error:
                return str(error)
            parameters, _ = controls.parametersForMethod(spec, controls.loadStored(node.methodParameters))
        try:
            return self.logic.checkInputs(reference, others, method, parameters, node.outputVolume,
                                          mode=node.mode, sliceAxis=node.sliceAxis, colourMap=self._colourMap(),
                                          colourSpace=node.colourSpace, register=node.register)
        except Exception as error:   # shown, never raised into Qt's event loop
            return f"Cannot check the inputs: {error}"

    def _checkCanApply(self) -> None:
        if self._parameterNode is None:
            self.ui.applyButton.enabled = self.ui.compareButton.enabled = False
            return
        reason = self._whyNot(self._parameterNode.method)
        self.ui.applyButton.enabled = reason is None
        self.ui.applyButton.toolTip = reason or "Fuse the selected volumes."
        methods = [m for m in self._parameterNode.compareMethods.split(",") if m]
        if not self._libraryLoaded or self._busy:
            compareReason = self._whyNot(None)
        elif len(methods) < 2:
            compareReason = "Check two or more methods to compare."
        else:
            compareReason = self.logic.checkVolumes(*self._inputs()) or \
                self.logic.checkRegistration(*self._inputs(), self._parameterNode.register)
        self.ui.compareButton.enabled = compareReason is None
        self.ui.compareButton.toolTip = compareReason or "Run the checked methods and fill one metrics table."
        sideBySideReason = self._whyNot(None) if not self._libraryLoaded or self._busy else \
            self.logic.checkSideBySide(*self._inputs(), self._parameterNode.outputVolume)
        self.ui.sideBySideButton.enabled = sideBySideReason is None
        self.ui.sideBySideButton.toolTip = sideBySideReason or \
            "Show each input and the fused volume side by side in linked slice views."

    # --- running -----------------------------------------------------------------------------------------
    def _run(self, title: str, work: Callable):
        """Run ``work(progress, cancel)`` with a progress dialog whose Cancel stops it; errors are shown."""
        import MedFusionLib

        token = MedFusionLib.CancelToken()
        dialog = slicer.util.createProgressDialog(windowTitle=title, labelText="Starting...", maximum=1000,
                                                  autoClose=False, autoReset=False,
                                                  windowModality=qt.Qt.WindowModal)
        dialog.connect("canceled()", token.cancel)

        def progress(fraction: float, message: str) -> None:
            dialog.value = int(round(fraction * 1000))
            if message:
                dialog.labelText = message
            slicer.app.processEvents()   # repaint, and let the Cancel button be clicked
            if dialog.wasCanceled:
                token.cancel()

        self._busy = True
        self._checkCanApply()
        try:
            return work(progress, token)
        except MedFusionLib.FusionCancelled:
            slicer.util.showStatusMessage(f"MedFusion: {title.lower()} cancelled; nothing was changed.", 5000)
        except dependencies.DependenciesDeclined:
            slicer.util.showStatusMessage("MedFusion: dependencies not installed.", 5000)
        except MedFusionLib.FusionError as error:
            slicer.util.errorDisplay(f"{title} failed: {error}", windowTitle="MedFusion")
        except Exception as error:
            logging.exception("MedFusion: %s failed", title)
            slicer.util.errorDisplay(f"{title} failed: {error}", windowTitle="MedFusion",
                                     detailedText=traceback.format_exc())
        finally:
            dialog.close()
            self._busy = False
            self._checkCanApply()
        return None

    def onApplyButton(self) -> None:
        node = self._parameterNode
        reference, others = self._inputs()
        parameters = self._parametersByMethod().get(node.method, {})

        def work(progress, cancel) -> FusionResult:
            return self.logic.process(
                reference, others, node.method, parameters, mode=node.mode, sliceAxis=node.sliceAxis,
                colourMap=self._colourMap(), colourSpace=node.colourSpace, device=node.device,
                outputVolume=node.outputVolume, showResult=True, showOverlay=node.showOverlay,
                overlayOpacity=node.overlayOpacity, overlayColourMap=node.colourMap,
                computeMetrics=node.computeMetrics, register=node.register,
                metricsTable=node.metricsTable, progress=progress, cancel=cancel)

        result = self._run("Fusion", work)
        if result is None:
            return
        node.outputVolume = result.outputVolume
        if result.metricsTable is not None:
            node.metricsTable = result.metricsTable
            self.ui.resultsCollapsibleButton.collapsed = False   # show the metrics just computed
        slicer.util.resetSliceViews()
        slicer.util.showStatusMessage(
            f"MedFusion: {result.method} done in {result.seconds:.1f} s -> {result.outputVolume.GetName()}", 5000)

    def onSideBySideButton(self) -> None:
        node = self._parameterNode
        reference, others = self._inputs()
        try:
            self.logic.showSideBySide(reference, others, node.outputVolume, overlayFunctional=node.showOverlay,
                                      overlayOpacity=node.overlayOpacity)
        except Exception as error:
            slicer.util.errorDisplay(f"Compare side by side failed: {error}", windowTitle="MedFusion")
            return
        slicer.app.processEvents()        # let the layout manager create the new slice views
        slicer.util.resetSliceViews()     # fit them to their volumes

    def onCompareButton(self) -> None:
        node = self._parameterNode
        reference, others = self._inputs()
        methods = [m for m in node.compareMethods.split(",") if m]
        byMethod = self._parametersByMethod()

        def work(progress, cancel):
            return self.logic.compareMethods(
                reference, others, methods, byMethod, mode=node.mode, sliceAxis=node.sliceAxis,
                colourMap=self._colourMap(), colourSpace=node.colourSpace, device=node.device,
                register=node.register, metricsTable=node.metricsTable, progress=progress, cancel=cancel)

        outcome = self._run("Compare methods", work)
        if outcome is None:
            return
        table, rows = outcome
        node.metricsTable = table
        self.ui.resultsCollapsibleButton.collapsed = False
        slicer.util.showStatusMessage(f"MedFusion: compared {len(rows)} methods in table {table.GetName()}.", 5000)


#
# MedFusionLogic
#


class MedFusionLogic(ScriptedLoadableModuleLogic, MedFusionLogicBase):
    """The module logic: :class:`MedFusionModuleLib.logic.MedFusionLogicBase` plus Slicer's parameter node.

    Use it from Python without the GUI::

        logic = slicer.util.getModuleLogic("MedFusion")   # or MedFusion.MedFusionLogic()
        logic.ensureDependencies()                          # asks before installing anything
        result = logic.process(mri, [pet], "laplacian", colourMap="pet")
    """

    def __init__(self) -> None:
        ScriptedLoadableModuleLogic.__init__(self)

    def getParameterNode(self):
        return MedFusionParameterNode(super().getParameterNode())

    @staticmethod
    def ensureDependencies(interactive: bool = True) -> List[str]:
        """Install missing Python packages (with a confirmation dialog when ``interactive``)."""
        return dependencies.ensureInstalled(interactive=interactive)


#
# MedFusionTest
#


class MedFusionTest(ScriptedLoadableModuleTest):
    """Self-test on synthetic volumes: classical and learned methods, grey and colour, side-by-side views.

    In automated testing mode it installs only the light packages and, without PyTorch or MONAI, skips
    the learned case with a message instead of downloading gigabytes (``dependencies.selfTestPlan``)."""

    plan = None

    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        self.setUp()
        self.test_MedFusionClassical()
        self.setUp()
        self.test_MedFusionThreeInputsAndCompare()
        self.setUp()
        self.test_MedFusionLearned()
        self.setUp()
        self.test_MedFusionCancel()
        self.setUp()
        self.test_MedFusionRegistration()

    def _prepare(self):
        logic = MedFusionLogic()
        if self.plan is None:
            self.plan = dependencies.selfTestPlan(testing=slicer.app.testingEnabled())
        # Running the self-test is the request to install what it needs (no dialog in testing mode, and
        # then nothing of the learned methods' gigabytes).
        dependencies.ensureInstalled(interactive=self.plan.interactive, learned=self.plan.installLearned)
        from MedFusionModuleLib import sampledata

        return logic, sampledata.phantomVolumes(slicer.mrmlScene, (24, 64, 64), seed=0)

    def _checkResult(self, result, inputs, colourMap):
        self.assertEqual(checks.fusionProblems(result.outputVolume, inputs, colourMap), [])

    def test_MedFusionClassical(self):
        self.delayDisplay("MedFusion: classical method, grey and colour")
        logic, volumes = self._prepare()
        inputs = [volumes["MRI"], volumes["PET"]]
        for colourMap in (None, "pet"):
            result = logic.process(volumes["MRI"], [volumes["PET"]], "laplacian", {"levels": 3},
                                   colourMap=colourMap, computeMetrics=True, showOverlay=colourMap is None)
            self._checkResult(result, inputs, colourMap)
            self.assertEqual(result.outputVolume.IsA("vtkMRMLVectorVolumeNode"), colourMap is not None)
            self.assertTrue(0.0 < result.metrics["SSIM"] <= 1.0)
            self.assertEqual(result.metricsTable.GetNumberOfRows(), 1)
        layoutManager = slicer.app.layoutManager()
        if layoutManager is not None:
            composite = layoutManager.sliceWidget("Red").mrmlSliceCompositeNode()
            self.assertEqual(composite.GetBackgroundVolumeID(), result.outputVolume.GetID())
            # Side by side: the application's own slice widgets show the inputs and the result, linked.
            comparison = logic.showSideBySide(volumes["MRI"], [volumes["PET"]], result.outputVolume)
            slicer.app.processEvents()
            for name in comparison["viewNames"]:
                shown = layoutManager.sliceWidget(name).mrmlSliceCompositeNode()
                self.assertEqual(shown.GetBackgroundVolumeID(), comparison["views"][name]["background"])
                self.assertTrue(shown.GetLinkedControl())
            layoutManager.setLayout(slicer.vtkMRMLLayoutNode.SlicerLayoutConventionalView)
        self.delayDisplay("Classical fusion passed")

    def test_MedFusionThreeInputsAndCompare(self):
        self.delayDisplay("MedFusion: three inputs, compare methods")
        logic, volumes = self._prepare()
        inputs = [volumes["MRI"], volumes["CT"], volumes["PET"]]
        result = logic.process(volumes["MRI"], [volumes["CT"], volumes["PET"]], "dwt", colourMap="hot")
        self._checkResult(result, inputs, "hot")
        table, rows = logic.compareMethods(volumes["MRI"], [volumes["PET"]], ["average", "laplacian", "pca"],
                                           keepOutputs=False)
        self.assertEqual([r.method for r in rows], ["average", "laplacian", "pca"])
        self.assertEqual(table.GetNumberOfRows(), 3)
        self.delayDisplay("Three inputs and compare passed")

    def test_MedFusionLearned(self):
        logic, volumes = self._prepare()
        if not self.plan.runLearned:
            logging.warning(self.plan.skipReason)
            self.delayDisplay(self.plan.skipReason)
            return
        learned = logic.learnedMethods()
        # MedFusionLib ships learned methods with their weights: none registered is a broken install.
        self.assertTrue(learned, f"no method of family '{options.LEARNED_FAMILY}' is registered")
        spec = learned[0]
        self.delayDisplay(f"MedFusion: learned method {spec.name}, grey and colour")
        inputs = [volumes["MRI"], volumes["PET"]]
        for colourMap in (None, "pet"):
            result = logic.process(volumes["MRI"], [volumes["PET"]], spec.name, colourMap=colourMap, device="auto")
            self._checkResult(result, inputs, colourMap)
        self.delayDisplay("Learned fusion passed")

    def test_MedFusionRegistration(self):
        self.delayDisplay("MedFusion: rigid registration before fusion")
        import vtk

        logic, volumes = self._prepare()
        # A copy of the MRI moved 4 mm to the right (hardened, so it has no parent transform).
        moved = slicer.modules.volumes.logic().CloneVolume(slicer.mrmlScene, volumes["MRI"], "MRI moved")
        shift = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLLinearTransformNode", "shift")
        matrix = vtk.vtkMatrix4x4()
        matrix.SetElement(0, 3, 4.0)
        shift.SetMatrixTransformToParent(matrix)
        moved.SetAndObserveTransformNodeID(shift.GetID())
        slicer.vtkSlicerTransformLogic().hardenTransform(moved)
        slicer.mrmlScene.RemoveNode(shift)
        result = logic.process(volumes["CT"], [moved], "laplacian", register="rigid")
        self._checkResult(result, [volumes["CT"], moved], None)
        self.assertEqual(len(result.transforms), 1)
        found = vtk.vtkMatrix4x4()
        result.transforms[0].GetMatrixTransformFromParent(found)
        # The direction of the mapping is pinned by Testing/Python/test_slicer_registration.py.
        self.assertAlmostEqual(abs(found.GetElement(0, 3)), 4.0, delta=1.0)
        self.delayDisplay("Registration passed")

    def test_MedFusionCancel(self):
        self.delayDisplay("MedFusion: cancel leaves the scene unchanged")
        import MedFusionLib

        logic, volumes = self._prepare()
        before = slicer.mrmlScene.GetNumberOfNodes()
        token = MedFusionLib.CancelToken()

        def progress(fraction, message):
            if fraction > 0.2:
                token.cancel()

        with self.assertRaises(MedFusionLib.FusionCancelled):
            logic.process(volumes["MRI"], [volumes["PET"]], "laplacian", {"levels": 3}, mode="slices",
                          computeMetrics=True, progress=progress, cancel=token)
        self.assertEqual(slicer.mrmlScene.GetNumberOfNodes(), before)
        self.delayDisplay("Cancel passed")
