"""Draw the extension's screenshot: slice views of a real fusion, computed by Slicer's own slice logic.

No Slicer application exists where this runs, so this is **not a capture of the Slicer window or of the
MedFusion panel**: it is what Slicer's slice views show after *Compare side by side*, computed offscreen
with ``slicer-core`` (Slicer's MRML and logic libraries without Qt):

1. the Sample Data phantom (``MedFusionModuleLib.sampledata.loadHeadPhantom``) in a scene with Slicer's
   application, colour and layout logics;
2. MRI + PET fused by the module logic (``MedFusionLogicBase.process``, default method, colour output
   through the ``pet`` map), exactly as *Apply* does;
3. ``MedFusionLogicBase.showSideBySide``: the comparison layout and its linked slice views;
4. one ``vtkMRMLSliceLogic`` per view (what each slice widget of the application owns) renders the view's
   layers (reslicing, window/level, colour tables, blending) into the RGBA image a slice view displays;
   the images are laid out in a row with their view labels and a caption saying what the picture is.

Writes ``docs/screenshots/MedFusion-fusion-slices.png`` (``EXTENSION_SCREENSHOTURLS`` in CMakeLists.txt)
and the Sample Data thumbnail ``MedFusion/Resources/Icons/MedFusionHeadPhantom.png``::

    python docs/make_screenshot.py            # from the repository root, with slicer-core installed
"""

from __future__ import annotations

import os
import sys
from typing import Dict, List, Optional, Tuple

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCREENSHOT = os.path.join(ROOT, "docs", "screenshots", "MedFusion-fusion-slices.png")
THUMBNAIL = os.path.join(ROOT, "MedFusion", "Resources", "Icons", "MedFusionHeadPhantom.png")
#: Pixels of one slice view, of the label bar above it, of the caption, and of the thumbnail.
VIEW_SIZE = 320
BAR_HEIGHT = 26
CAPTION_HEIGHT = 30
GAP = 4
THUMBNAIL_SIZE = 128
CAPTION = ("Slice views computed by Slicer's slice logic (slicer-core, offscreen) after Compare side by side: "
           "MRI, PET, fused (max_detail, pet colour map). Not a capture of the Slicer window.")

sys.path.insert(0, os.path.join(ROOT, "MedFusion"))


def _scene():
    """A scene set up as the application's: default slice node with orientation presets, built-in colour
    tables, layout node and layout logic (which creates the views of a layout)."""
    import slicer

    scene = slicer.vtkMRMLScene()
    application = slicer.vtkMRMLApplicationLogic()
    application.SetMRMLScene(scene)
    colours = slicer.vtkMRMLColorLogic()
    colours.SetMRMLScene(scene)
    layout = slicer.vtkMRMLLayoutLogic()
    layout.SetMRMLScene(scene)
    return scene, {"application": application, "colours": colours, "layout": layout}


def _hottest_slice(shape, seed) -> int:
    """The K index with the most hot-spot voxels (the phantom's lesions), so the picture shows them."""
    from MedFusionLib import sampledata

    lesions = sampledata.head_phantom(tuple(shape), seed=seed)["lesions"]
    return int(np.argmax((lesions > 0).sum(axis=(1, 2))))


def _render_view(scene, application, sliceNode, size: int, offset: float) -> np.ndarray:
    """The RGB image (size, size, 3) uint8 of one slice view, as its vtkMRMLSliceLogic computes it."""
    import slicer
    from vtk.util import numpy_support

    logic = slicer.vtkMRMLSliceLogic()
    logic.SetMRMLScene(scene)
    logic.SetMRMLApplicationLogic(application)
    logic.SetSliceNode(sliceNode)
    sliceNode.SetDimensions(size, size, 1)
    logic.FitSliceToAll()
    logic.SetSliceOffset(offset)
    producer = logic.GetImageDataConnection().GetProducer()
    producer.Update()
    image = producer.GetOutputDataObject(0)
    width, height, _ = image.GetDimensions()
    pixels = numpy_support.vtk_to_numpy(image.GetPointData().GetScalars()).reshape(height, width, -1)
    pixels = np.array(pixels[::-1, :, :3])   # a copy; VTK rows run bottom-up
    logic.SetMRMLScene(None)                 # detach before the scene goes (as the application does)
    return pixels


def render_views(shape: Optional[Tuple[int, int, int]] = None, seed: Optional[int] = None,
                 size: int = VIEW_SIZE) -> Dict[str, object]:
    """Fuse the phantom, lay out the comparison and render its slice views.

    Returns a dict: ``views`` (list of ``(label, volume name, RGB array)`` left to right), ``comparison``
    (``showSideBySide``'s dict) and the ``scene``."""
    from MedFusionModuleLib import sampledata
    from MedFusionModuleLib.logic import MedFusionLogicBase

    shape = tuple(shape or sampledata.SAMPLE_SHAPE)
    seed = sampledata.SAMPLE_SEED if seed is None else seed
    scene, logics = _scene()
    volumes = sampledata.loadHeadPhantom(scene, shape, seed)
    logic = MedFusionLogicBase()
    result = logic.process(volumes["MRI"], [volumes["PET"]], colourMap="pet")
    comparison = logic.showSideBySide(volumes["MRI"], [volumes["PET"]], result.outputVolume)
    # The K slice through the most hot spots, as a RAS height (MRI grid: origin -K mm, 2 mm slices).
    offset = -float(shape[0]) + 2.0 * _hottest_slice(shape, seed)
    views: List[Tuple[str, str, np.ndarray]] = []
    for name in comparison["viewNames"]:
        shown = comparison["views"][name]
        sliceNode = scene.GetSingletonNode(name, "vtkMRMLSliceNode")
        pixels = _render_view(scene, logics["application"], sliceNode, size, offset)
        views.append((shown["label"], scene.GetNodeByID(shown["background"]).GetName(), pixels))
    for name in ("layout", "colours", "application"):
        logics[name].SetMRMLScene(None)
    return {"views": views, "comparison": comparison, "scene": scene, "fused": result.outputVolume}


def compose(views, size: int = VIEW_SIZE):
    """The screenshot: the views in a row under label bars, with the caption below (a PIL image)."""
    from PIL import Image, ImageDraw, ImageFont

    width = len(views) * size + (len(views) + 1) * GAP
    height = BAR_HEIGHT + size + CAPTION_HEIGHT + 2 * GAP
    canvas = Image.new("RGB", (width, height), (32, 32, 32))
    draw = ImageDraw.Draw(canvas)
    font = ImageFont.load_default(size=14)
    small = ImageFont.load_default(size=11)
    colours = ("#80AE80", "#F1D691", "#B17A65", "#6FB8D2", "#D8654F", "#DD82A0")   # the views' bar colours
    for index, (label, name, pixels) in enumerate(views):
        x = GAP + index * (size + GAP)
        draw.rectangle([x, GAP, x + size - 1, GAP + BAR_HEIGHT - 1], fill=colours[index % len(colours)])
        draw.text((x + 6, GAP + 5), f"{label}  {name}", fill=(0, 0, 0), font=font)
        canvas.paste(Image.fromarray(pixels, "RGB"), (x, GAP + BAR_HEIGHT))
    draw.text((GAP + 2, GAP + BAR_HEIGHT + size + 8), CAPTION, fill=(220, 220, 220), font=small)
    return canvas


def thumbnail(views, size: int = THUMBNAIL_SIZE):
    """The Sample Data thumbnail: the fused view, cropped to the head and scaled (a PIL image)."""
    from PIL import Image

    pixels = views[-1][2]
    rows = np.flatnonzero(pixels.max(axis=(1, 2)) > 0)
    cols = np.flatnonzero(pixels.max(axis=(0, 2)) > 0)
    half = max(rows[-1] - rows[0], cols[-1] - cols[0]) // 2 + 4
    cy, cx = (rows[0] + rows[-1]) // 2, (cols[0] + cols[-1]) // 2
    box = (max(cx - half, 0), max(cy - half, 0), min(cx + half, pixels.shape[1]), min(cy + half, pixels.shape[0]))
    return Image.fromarray(pixels, "RGB").crop(box).resize((size, size), Image.LANCZOS)


def main() -> int:
    rendered = render_views()
    for path, image in ((SCREENSHOT, compose(rendered["views"])), (THUMBNAIL, thumbnail(rendered["views"]))):
        os.makedirs(os.path.dirname(path), exist_ok=True)
        image.save(path + ".tmp.png", optimize=True)
        os.replace(path + ".tmp.png", path)
        print(f"wrote {path} ({image.size[0]} x {image.size[1]})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
