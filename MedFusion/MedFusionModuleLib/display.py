"""Result display with MRML only: colour nodes, slice composite nodes, layouts, table nodes.

Everything here works on the scene the nodes belong to, through MRML classes, so it is the same in the
Slicer application (``slicer.mrmlScene``), in batch mode and in a ``slicer-core`` scene under pytest.
Only fitting the slice views to the new volume needs the application; ``MedFusion.py`` does that.
"""

from __future__ import annotations

import math
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple
from xml.sax.saxutils import escape, quoteattr

import vtk

# Slicer's built-in grey table (created by the colour logic in every application scene).
BUILTIN_GREY_ID = "vtkMRMLColorTableNodeGrey"
# Attribute marking the colour tables this module adds, with the colour map's name as value.
COLOUR_MAP_ATTRIBUTE = "MedFusion.ColourMap"
# Attribute of the metrics table saying how the metrics were computed.
METRICS_CONVENTION_ATTRIBUTE = "MedFusion.MetricsConvention"


def _nodesByClass(scene, className: str) -> List:
    collection = scene.GetNodesByClass(className)
    nodes = [collection.GetItemAsObject(i) for i in range(collection.GetNumberOfItems())]
    return nodes


def colourNodeID(scene, colourMap: str) -> str:
    """The ID of a colour table node showing ``colourMap`` as the fusion draws it.

    ``'grey'`` is Slicer's built-in Grey table when the scene has it. Every other map (and grey in a
    scene without the built-in tables) is a ``vtkMRMLColorTableNode`` holding exactly the library's
    256-entry look-up table (:func:`MedFusionLib.colour.colormap_lut`), named ``MedFusion <map>`` and
    created once per scene: an overlay then has the very colours of the colour-fused output, which
    Slicer's own heat/PET tables only approximate.

    Raises ``MedFusionLib.FusionInputError`` for an unknown colour map name.
    """
    from MedFusionLib import colour

    lut = colour.colormap_lut(colourMap)          # validates the name (aliases included)
    canonical = {"gray": "grey", "heat": "hot"}.get(colourMap, colourMap)
    if canonical == "grey" and scene.GetNodeByID(BUILTIN_GREY_ID) is not None:
        return BUILTIN_GREY_ID
    for node in _nodesByClass(scene, "vtkMRMLColorTableNode"):
        if node.GetAttribute(COLOUR_MAP_ATTRIBUTE) == canonical:
            return node.GetID()
    node = scene.CreateNodeByClass("vtkMRMLColorTableNode")
    node.UnRegister(None)   # CreateNodeByClass hands over a reference
    node.SetName(scene.GetUniqueNameByString(f"MedFusion {canonical}"))
    node.SetTypeToUser()
    node.SetNumberOfColors(len(lut))
    for index, (r, g, b) in enumerate(lut):
        node.SetColor(index, f"{canonical} {index}", r / 255.0, g / 255.0, b / 255.0, 1.0)
    node.SetAttribute(COLOUR_MAP_ATTRIBUTE, canonical)
    node.SetDescription(f"MedFusion colour map '{canonical}' (MedFusionLib.colour.colormap_lut)")
    node = scene.AddNode(node)
    return node.GetID()


def colourTableRGB(scene, nodeID: str):
    """The RGB entries (0..255 ints) of a colour table node, for checks: a list of (r, g, b)."""
    node = scene.GetNodeByID(nodeID)
    table = node.GetLookupTable()
    rgb = []
    for index in range(table.GetNumberOfTableValues()):
        r, g, b, _ = table.GetTableValue(index)
        rgb.append((int(round(r * 255)), int(round(g * 255)), int(round(b * 255))))
    return rgb


def showInSliceViews(background, foreground=None, foregroundOpacity: float = 0.5) -> int:
    """Show ``background`` (the fused volume) in every slice view, optionally ``foreground`` over it.

    Works on the scene's ``vtkMRMLSliceCompositeNode`` nodes (one per slice view in the application;
    none in a bare scene). Without ``foreground`` the foreground layer is cleared, so an earlier
    overlay does not hide the new result. Returns the number of slice views changed.
    """
    scene = background.GetScene()
    opacity = min(max(float(foregroundOpacity), 0.0), 1.0)
    changed = 0
    for composite in _nodesByClass(scene, "vtkMRMLSliceCompositeNode"):
        was = composite.StartModify()
        try:
            composite.SetBackgroundVolumeID(background.GetID())
            composite.SetForegroundVolumeID(foreground.GetID() if foreground is not None else None)
            if foreground is not None:
                composite.SetForegroundOpacity(opacity)
        finally:
            composite.EndModify(was)
        changed += 1
    return changed


def setVolumeColourMap(volume, colourMap: str) -> str:
    """Show a scalar volume through ``colourMap`` (see :func:`colourNodeID`); returns the colour node ID.

    Only the volume's display node changes (its colour table), never its voxels. A volume without a
    display node gets the default one first."""
    if volume.GetDisplayNode() is None:
        volume.CreateDefaultDisplayNodes()
    nodeID = colourNodeID(volume.GetScene(), colourMap)
    display = volume.GetDisplayNode()
    if display is not None and hasattr(display, "SetAndObserveColorNodeID"):
        display.SetAndObserveColorNodeID(nodeID)
    return nodeID


def isRGBVolume(volume) -> bool:
    return volume is not None and volume.IsA("vtkMRMLVectorVolumeNode")


def isUserColourTable(scene, nodeID: Optional[str]) -> bool:
    """Whether ``nodeID`` is a colour table a user (or Slicer) chose: not grey and not one of ours."""
    if not nodeID or nodeID == BUILTIN_GREY_ID:
        return False
    node = scene.GetNodeByID(nodeID)
    if node is None or node.GetAttribute(COLOUR_MAP_ATTRIBUTE):
        return False
    return "grey" not in (node.GetName() or "").lower() and "gray" not in (node.GetName() or "").lower()


def copyWindowLevel(source, target) -> bool:
    """Give ``target``'s scalar display the window/level of ``source``'s (a CT preset survives fusion);
    an automatic window/level stays automatic. Returns whether anything was copied."""
    src = source.GetDisplayNode() if source is not None else None
    dst = target.GetDisplayNode()
    if src is None or dst is None or not hasattr(src, "GetWindow") or not hasattr(dst, "SetWindowLevel"):
        return False
    if src.GetAutoWindowLevel():
        dst.SetAutoWindowLevel(True)
    else:
        was = dst.StartModify()
        try:
            dst.SetAutoWindowLevel(False)
            dst.SetWindowLevel(src.GetWindow(), src.GetLevel())
        finally:
            dst.EndModify(was)
    return True


def restoreColourMap(volume, nodeID: Optional[str]) -> None:
    """Put back the colour table a volume had before an overlay (``overlayPreviousColourNodeID``)."""
    display = volume.GetDisplayNode()
    if display is not None and nodeID and volume.GetScene().GetNodeByID(nodeID) is not None:
        display.SetAndObserveColorNodeID(nodeID)


def setupResultDisplay(output, functional=None, colourMap: Optional[str] = None, showOverlay: bool = False,
                       overlayOpacity: float = 0.5, reference=None, keepUserColourMap: bool = True) -> Dict[str, Any]:
    """Display a fusion result: the output as background in the slice views, grey output in grey with
    the reference's window/level, and, when asked, the functional input as a foreground overlay through
    its colour map. Without the overlay no input node or display node changes.

    Parameters
    ----------
    output : vtkMRMLScalarVolumeNode or vtkMRMLVectorVolumeNode
        The fused volume (a vector volume for colour output; it keeps its RGB colours).
    functional : vtkMRMLVolumeNode, optional
        The functional input; shown over the output when ``showOverlay``.
    colourMap : str, optional
        Colour map for the overlay of a scalar functional input (default ``'pet'``); RGB inputs keep
        their own colours.
    showOverlay, overlayOpacity
        Whether to overlay the functional input, and with which opacity (0..1).
    reference : volume node, optional
        The reference input: grey output gets its window/level.
    keepUserColourMap : bool
        Keep a colour table the user gave the functional input (anything but grey or one of ours, e.g.
        Slicer's "PET-Heat") instead of ``colourMap``.

    Returns
    -------
    dict
        ``sliceViews`` (number of slice views changed), ``outputColourNodeID``, ``overlayColourNodeID``,
        ``overlayPreviousColourNodeID`` (to undo the overlay's colour map: :func:`restoreColourMap`).
    """
    info: Dict[str, Any] = {"outputColourNodeID": None, "overlayColourNodeID": None,
                            "overlayPreviousColourNodeID": None}
    if output.GetDisplayNode() is None:
        output.CreateDefaultDisplayNodes()
    if not isRGBVolume(output):
        info["outputColourNodeID"] = setVolumeColourMap(output, "grey")
        if reference is not None and not isRGBVolume(reference):
            copyWindowLevel(reference, output)
    overlay = functional if (showOverlay and functional is not None) else None
    if overlay is not None and not isRGBVolume(overlay):
        if overlay.GetDisplayNode() is None:
            overlay.CreateDefaultDisplayNodes()
        previous = overlay.GetDisplayNode().GetColorNodeID()
        info["overlayPreviousColourNodeID"] = previous
        if keepUserColourMap and isUserColourTable(overlay.GetScene(), previous):
            info["overlayColourNodeID"] = previous
        else:
            info["overlayColourNodeID"] = setVolumeColourMap(overlay, colourMap or "pet")
    info["sliceViews"] = showInSliceViews(output, overlay, overlayOpacity)
    return info


# --- side-by-side comparison (Slicer's Compare Volumes conventions) -------------------------------------
#: ID of the comparison layout, registered in the layout node like Compare Volumes' layouts (any ID
#: unused by Slicer's own layouts, which end well below 1000, and distinct from the shared "user view").
COMPARE_LAYOUT_ID = 2701
#: Layout names of the comparison's slice views: MedFusionCompare1, MedFusionCompare2, ...
COMPARE_VIEW_PREFIX = "MedFusionCompare"
# View colours of the slice controller bars (Slicer's GenericColors 1..6, as Compare Volumes picks them).
_COMPARE_VIEW_COLOURS = ("#80AE80", "#F1D691", "#B17A65", "#6FB8D2", "#D8654F", "#DD82A0")


def compareLayoutDescription(viewNames: Sequence[str], labels: Sequence[str], orientation: str = "Axial") -> str:
    """Layout XML of one row of slice views, one per name, as Compare Volumes writes it."""
    if not viewNames or len(viewNames) != len(labels):
        raise ValueError(f"need one label per view name; got {len(viewNames)} names and {len(labels)} labels")
    items = []
    for index, (name, label) in enumerate(zip(viewNames, labels)):
        colour = _COMPARE_VIEW_COLOURS[index % len(_COMPARE_VIEW_COLOURS)]
        items.append(
            f' <item><view class="vtkMRMLSliceNode" singletontag={quoteattr(name)}>'
            f'<property name="orientation" action="default">{escape(orientation)}</property>'
            f'<property name="viewlabel" action="default">{escape(label)}</property>'
            f'<property name="viewcolor" action="default">{colour}</property></view></item>')
    return '<layout type="horizontal">\n' + "\n".join(items) + "\n</layout>"


def _layoutNode(scene, layoutNode=None):
    """The scene's layout node (the application has one), or a new one (batch mode, bare scenes)."""
    if layoutNode is not None:
        return layoutNode
    existing = _nodesByClass(scene, "vtkMRMLLayoutNode")
    return existing[0] if existing else scene.AddNewNodeByClass("vtkMRMLLayoutNode")


def _sliceViewNodes(scene, name: str, label: str, colour: str):
    """The slice node and slice composite node of the view ``name``: the ones the application's layout
    and slice logics made for it, else new ones (named and tagged as the application would)."""
    import slicer

    sliceNode = scene.GetSingletonNode(name, "vtkMRMLSliceNode")
    if sliceNode is None:
        sliceNode = scene.CreateNodeByClass("vtkMRMLSliceNode")   # the scene's default: orientation presets
        sliceNode.UnRegister(None)
        sliceNode.SetName(name)
        sliceNode.SetLayoutName(name)
        sliceNode.SetLayoutLabel(label)
        sliceNode.SetLayoutColor(*(int(colour[k:k + 2], 16) / 255.0 for k in (1, 3, 5)))
        sliceNode = scene.AddNode(sliceNode)
    composite = slicer.vtkMRMLSliceLogic.GetSliceCompositeNode(sliceNode)
    if composite is None:
        composite = scene.CreateNodeByClass("vtkMRMLSliceCompositeNode")
        composite.UnRegister(None)
        composite.SetLayoutName(name)
        composite = scene.AddNode(composite)
    return sliceNode, composite


def showSideBySide(views: Sequence[Tuple[str, Any, Any]], *, foregroundOpacity: float = 0.5,
                   orientation: str = "Axial", layoutNode=None) -> Dict[str, Any]:
    """Show volumes side by side in linked slice views, following Slicer's Compare Volumes module.

    A one-row layout with one slice view per entry is registered in the layout node under
    :data:`COMPARE_LAYOUT_ID` and made current; each view's composite node gets its background and
    foreground volume (foreground at ``foregroundOpacity``; no label layer) and linked control, so that
    scrolling, panning and zooming one view moves the others. Only view, layout and composite nodes
    change, never a volume or its display.

    Parameters
    ----------
    views : sequence of (label, background, foreground)
        One entry per view, left to right: the view label shown in its controller bar, the background
        volume node and an optional foreground volume node (None: no foreground).
    foregroundOpacity : float
        Opacity of the foreground layers (0..1).
    orientation : str
        Slice orientation of every view (``'Axial'``, ``'Sagittal'``, ``'Coronal'``).
    layoutNode : vtkMRMLLayoutNode, optional
        Default: the scene's layout node (created in a scene without one).

    Returns
    -------
    dict
        ``layoutNode``, ``previousViewArrangement`` (to switch back), ``viewNames`` and ``views``: view
        name to ``{"label", "background", "foreground"}`` (volume node IDs, None for no foreground).
    """
    views = list(views)
    if len(views) < 2:
        raise ValueError(f"a side-by-side comparison needs at least two views; got {len(views)}")
    scene = None
    for label, background, foreground in views:
        if background is None or not background.IsA("vtkMRMLVolumeNode"):
            raise ValueError(f"view {label!r}: the background must be a volume node; got {background!r}")
        if foreground is not None and not foreground.IsA("vtkMRMLVolumeNode"):
            raise ValueError(f"view {label!r}: the foreground must be a volume node or None; got {foreground!r}")
        for node in (background, foreground):
            if node is not None:
                if node.GetScene() is None or (scene is not None and node.GetScene() is not scene):
                    raise ValueError(f"view {label!r}: {node.GetName()!r} is not in the scene of the other volumes")
                scene = node.GetScene()
    opacity = min(max(float(foregroundOpacity), 0.0), 1.0)
    names = [f"{COMPARE_VIEW_PREFIX}{index + 1}" for index in range(len(views))]
    labels = [label for label, _, _ in views]
    layout = _layoutNode(scene, layoutNode)
    description = compareLayoutDescription(names, labels, orientation)
    previous = layout.GetViewArrangement()
    if layout.IsLayoutDescription(COMPARE_LAYOUT_ID):
        layout.SetLayoutDescription(COMPARE_LAYOUT_ID, description)
    else:
        layout.AddLayoutDescription(COMPARE_LAYOUT_ID, description)
    # In the application the layout logic creates the views' slice nodes here, and the layout manager
    # the slice widgets whose logics create the composite nodes; _sliceViewNodes finds them.
    layout.SetViewArrangement(COMPARE_LAYOUT_ID)
    shown: Dict[str, Dict[str, Optional[str]]] = {}
    for index, (name, (label, background, foreground)) in enumerate(zip(names, views)):
        colour = _COMPARE_VIEW_COLOURS[index % len(_COMPARE_VIEW_COLOURS)]
        sliceNode, composite = _sliceViewNodes(scene, name, label, colour)
        if sliceNode.HasSliceOrientationPreset(orientation):
            sliceNode.SetOrientation(orientation)
        was = composite.StartModify()
        try:
            composite.SetBackgroundVolumeID(background.GetID())
            composite.SetForegroundVolumeID(foreground.GetID() if foreground is not None else None)
            if foreground is not None:
                composite.SetForegroundOpacity(opacity)
            composite.SetLabelVolumeID(None)
            composite.SetLinkedControl(True)
        finally:
            composite.EndModify(was)
        shown[name] = {"label": label, "background": background.GetID(),
                       "foreground": foreground.GetID() if foreground is not None else None}
    return {"layoutNode": layout, "previousViewArrangement": previous, "viewNames": names, "views": shown}


# --- tables --------------------------------------------------------------------------------------------
TEXT_COLUMNS = ("Method", "Inputs", "Parameters")
NOTE_COLUMN = "Note"
SECONDS_COLUMN = "Seconds"


def tableColumns(metricNames: Sequence[str]) -> List[str]:
    """Column order of a metrics table: method, inputs, parameters, seconds, each metric, note."""
    return list(TEXT_COLUMNS) + [SECONDS_COLUMN] + list(metricNames) + [NOTE_COLUMN]


def fillMetricsTable(table, rows: Iterable[Mapping[str, Any]], metricNames: Sequence[str],
                     higherIsBetter: Optional[Mapping[str, bool]] = None, convention: str = "") -> None:
    """Replace the content of a ``vtkMRMLTableNode`` with one row per fusion result.

    Parameters
    ----------
    table : vtkMRMLTableNode
    rows : iterable of mapping
        Each with ``Method``, ``Inputs``, ``Parameters`` (text), ``Seconds`` (float) and one float per
        metric name (missing or None: NaN), optionally ``Note`` (text, e.g. why a row has no metrics).
    metricNames : sequence of str
        Metric columns, in order (``MedFusionLib.metrics.METRICS`` or the subset computed).
    higherIsBetter : mapping, optional
        Per metric, whether larger is better; written as the column description.
    convention : str
        How the metrics were computed; stored as the table's description and as an attribute.
    """
    rows = list(rows)
    columns = tableColumns(metricNames)
    was = table.StartModify()
    try:
        table.RemoveAllColumns()
        for name in columns:
            if name in TEXT_COLUMNS or name == NOTE_COLUMN:
                array = vtk.vtkStringArray()
                for row in rows:
                    value = row.get(name)
                    array.InsertNextValue("" if value is None else str(value))
            else:
                array = vtk.vtkDoubleArray()
                for row in rows:
                    value = row.get(name)
                    array.InsertNextValue(math.nan if value is None else float(value))
            array.SetName(name)
            table.AddColumn(array)
        table.SetColumnDescription(SECONDS_COLUMN, "Wall-clock time of the fusion (resampling included)")
        table.SetColumnUnitLabel(SECONDS_COLUMN, "s")
        for name in metricNames:
            if higherIsBetter is not None and name in higherIsBetter:
                table.SetColumnDescription(name, "higher is better" if higherIsBetter[name] else "lower is better")
        if convention:
            table.SetDescription(convention)
            table.SetAttribute(METRICS_CONVENTION_ATTRIBUTE, convention)
    finally:
        table.EndModify(was)


def readTable(table) -> List[Dict[str, Any]]:
    """The rows of a table node as dicts (column name to value), for scripts and tests."""
    vtkTable = table.GetTable()
    names = [vtkTable.GetColumnName(c) for c in range(vtkTable.GetNumberOfColumns())]
    rows = []
    for r in range(vtkTable.GetNumberOfRows()):
        row = {}
        for c, name in enumerate(names):
            column = vtkTable.GetColumn(c)
            row[name] = column.GetValue(r)
        rows.append(row)
    return rows
