"""What a Slicer user meets on first use (issue 10): the built-in phantom without PyTorch/MONAI, the
self-test's install decisions, the install button's state, the Sample Data entry, the side-by-side
comparison views and the extension screenshot.

MRML parts run on slicer-core's real scene and nodes (with Slicer's own application, layout and slice
logics where the application would have them); the parts that need Qt are checked statically in
test_extension_files.py.
"""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MODULE_DIR = os.path.join(ROOT, "MedFusion")
sys.path.insert(0, MODULE_DIR)

from MedFusionLib import sampledata as library_sampledata  # noqa: E402
from MedFusionModuleLib import dependencies  # noqa: E402

# Importing either makes an import fail (None in sys.modules), as if PyTorch and MONAI were not installed.
BLOCK_LEARNED = "import sys\nfor _name in ('torch', 'monai'):\n    sys.modules[_name] = None\n"


def _run_python(code, *args):
    run = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=300,
                         cwd=ROOT)
    assert run.returncode == 0, run.stdout + run.stderr
    return run.stdout


# --- item 11: the phantom and the self-test without PyTorch ---------------------------------------------
def test_phantom_is_built_without_torch_or_monai(tmp_path, phantom3d):
    out = tmp_path / "phantom.npz"
    _run_python(BLOCK_LEARNED + textwrap.dedent("""
        import numpy as np
        from MedFusionLib import sampledata
        arrays = sampledata.head_phantom((24, 48, 40), seed=1)
        np.savez(sys.argv[1], **arrays)
        loaded = [m for m in sys.modules if m.split('.')[0] in ('torch', 'monai') and sys.modules[m] is not None]
        assert not loaded, loaded
    """), str(out))
    with np.load(out) as built:
        assert sorted(built.files) == sorted(phantom3d)
        for name, array in phantom3d.items():   # the same phantom as with everything installed
            np.testing.assert_array_equal(built[name], array)
            assert built[name].dtype == array.dtype


def test_hot_spots_are_the_draws_monai_made():
    from monai.data import synthetic as monai_synthetic   # a required dependency: never skipped
    for shape, seed in (((24, 48, 40), 1), ((8, 8, 8), 3), ((16, 64, 48), 7)):
        rad_max = max(3, min(shape) // 6)
        mine, theirs = np.random.RandomState(seed), np.random.RandomState(seed)
        labels = library_sampledata.random_spheres(shape, 24, rad_max, 2, 3, mine)
        _, expected = monai_synthetic.create_test_image_3d(*shape, num_objs=24, rad_max=rad_max, rad_min=2,
                                                           noise_max=0.0, num_seg_classes=3, random_state=theirs)
        np.testing.assert_array_equal(labels, expected)
        assert labels.max() >= 1 and set(np.unique(labels)) <= {0, 1, 2, 3}
        assert mine.random_sample() == theirs.random_sample()   # the generator is left in the same state


def test_random_spheres_refuse_impossible_sizes():
    with pytest.raises(ValueError, match="larger than 2 \\* rad_max"):
        library_sampledata.random_spheres((6, 64, 64), 3, 3, 2, 3, np.random.RandomState(0))
    with pytest.raises(ValueError, match="rad_min < rad_max"):
        library_sampledata.random_spheres((32, 32, 32), 3, 2, 2, 3, np.random.RandomState(0))


def _versions(installed):
    """A ``versionOf`` for the dependency checks: the given distributions are installed, no other."""
    import importlib.metadata

    def versionOf(name):
        for key, version in installed.items():
            if key.lower() == name.lower():
                return version
        raise importlib.metadata.PackageNotFoundError(name)
    return versionOf


LIGHT = {"numpy": "2.1", "scipy": "1.14", "PyWavelets": "1.7", "scikit-image": "0.24"}


def test_self_test_in_testing_mode_never_plans_to_install_pytorch_or_monai():
    bare = dependencies.selfTestPlan(testing=True, versionOf=_versions({"numpy": "2.1"}))
    assert (bare.interactive, bare.installLearned, bare.runLearned) == (False, False, False)
    assert "torch>=2.1" in bare.skipReason and "monai" in bare.skipReason and "skipped" in bare.skipReason
    # Only MONAI missing: still skipped (installing MONAI would pull PyTorch).
    no_monai = dependencies.selfTestPlan(testing=True, versionOf=_versions({**LIGHT, "torch": "2.13.0"}))
    assert not no_monai.runLearned and "monai" in no_monai.skipReason and "torch" not in no_monai.skipReason
    ready = dependencies.selfTestPlan(testing=True, versionOf=_versions({**LIGHT, "torch": "2.13.0", "monai": "1.6.1"}))
    assert (ready.interactive, ready.installLearned, ready.runLearned, ready.skipReason) == (False, False, True, "")
    # A person pressing Reload and Test is asked, for everything.
    person = dependencies.selfTestPlan(testing=False, versionOf=_versions({"numpy": "2.1"}))
    assert (person.interactive, person.installLearned, person.runLearned) == (True, True, True)


def test_light_requirements_leave_out_pytorch_and_monai():
    missing = dependencies.missingRequirements(versionOf=_versions({"numpy": "2.1"}))
    light = dependencies.missingRequirements(learned=False, versionOf=_versions({"numpy": "2.1"}))
    assert {dependencies.requirementName(r).lower() for r in missing} == {"torch", "scipy", "pywavelets",
                                                                          "scikit-image", "monai"}
    assert {dependencies.requirementName(r).lower() for r in light} == {"scipy", "pywavelets", "scikit-image"}
    plan = dependencies.installPlan(light, pyTorchUtilsAvailable=True)
    assert [step["kind"] for step in plan] == ["requirements"]      # no PyTorch step at all


class _Recorder:
    """Records the order of what the install session does (plain callables, no Slicer involved)."""

    def __init__(self, answer=True, fail=False):
        self.events, self.answer, self.fail, self.session = [], answer, fail, None

    def button(self, enabled):
        self.events.append(f"button {'on' if enabled else 'off'}")

    def ask(self):
        self.events.append("ask")
        return self.answer

    def install(self):
        self.events.append("install")
        # A second press while pip runs (Qt processes events then): refused without a question.
        self.events.append(f"nested: {self.session.run(self.ask, self.install, self.busy, self.refresh)}")
        if self.fail:
            raise RuntimeError("pip failed")

    def busy(self):
        recorder = self

        class Cursor:
            def __enter__(self):
                recorder.events.append("cursor on")

            def __exit__(self, *exc):
                recorder.events.append("cursor off")
        return Cursor()

    def refresh(self):
        self.events.append("refresh")


@pytest.mark.parametrize("answer, fail", [(True, False), (False, False), (True, True)],
                         ids=["installed", "declined", "failed"])
def test_install_session_asks_first_disables_the_button_and_refreshes(answer, fail):
    recorder = _Recorder(answer, fail)
    recorder.session = dependencies.InstallSession(recorder.button)
    if fail:
        with pytest.raises(RuntimeError, match="pip failed"):
            recorder.session.run(recorder.ask, recorder.install, recorder.busy, recorder.refresh)
    else:
        outcome = recorder.session.run(recorder.ask, recorder.install, recorder.busy, recorder.refresh)
        assert outcome == (dependencies.InstallSession.INSTALLED if answer else dependencies.InstallSession.DECLINED)
    if not answer:
        assert recorder.events == ["button off", "ask", "button on"]
    else:
        # The question before the wait cursor, one installation only, the panel refreshed (help text,
        # method list) after it, also after a failure, and the button enabled again at the very end.
        assert recorder.events == ["button off", "ask", "cursor on", "install", "nested: already running",
                                   "cursor off", "refresh", "button on"]
    assert not recorder.session.running
    # The session is usable again afterwards.
    again = _Recorder(False)
    again.session = recorder.session
    assert recorder.session.run(again.ask, again.install, again.busy, again.refresh) == "declined"


# --- item 12: the phantom as Slicer sample data (the loader on slicer-core) ----------------------------------
@pytest.fixture
def slicer():
    import slicer as slicer_core   # slicer-core, a test requirement: never skipped

    return slicer_core


@pytest.fixture
def application_scene(slicer):
    """A scene set up as Slicer's application sets up its own: application logic (default slice node with
    the orientation presets), colour logic (built-in colour tables), layout logic and layout node (with
    the Red/Green/Yellow views), a slice logic per slice view and the slice link logic. The logics are
    detached from the scene afterwards, slice logics first (as the application does on exit; a scene
    destroyed under a slice logic that still shows its volumes crashes VTK)."""
    scene = slicer.vtkMRMLScene()
    logics = {"application": slicer.vtkMRMLApplicationLogic(), "colours": slicer.vtkMRMLColorLogic(),
              "layout": slicer.vtkMRMLLayoutLogic(), "link": slicer.vtkMRMLSliceLinkLogic(), "slices": []}
    for name in ("application", "colours", "layout", "link"):
        logics[name].SetMRMLScene(scene)
    for name in ("Red", "Green", "Yellow"):
        _slice_logic(slicer, scene, logics, name)
    yield scene, logics
    for logic in logics["slices"]:
        logic.SetMRMLScene(None)
    for name in ("link", "layout", "colours", "application"):
        logics[name].SetMRMLScene(None)


def _slice_logic(slicer, scene, logics, name):
    """The slice logic a slice widget of the application owns, for the view ``name``."""
    logic = slicer.vtkMRMLSliceLogic()
    logic.SetMRMLScene(scene)
    logic.SetMRMLApplicationLogic(logics["application"])
    logic.SetSliceNode(scene.GetSingletonNode(name, "vtkMRMLSliceNode"))
    logics["slices"].append(logic)
    return logic


def test_sample_data_loader_builds_the_phantom_without_torch_or_monai():
    out = _run_python(BLOCK_LEARNED + textwrap.dedent("""
        import json
        sys.path.insert(0, sys.argv[1])
        import slicer
        from MedFusionModuleLib import sampledata
        scene = slicer.vtkMRMLScene()
        volumes = sampledata.loadHeadPhantom(scene)
        print(json.dumps({m: [n.GetName(), n.GetClassName(), list(n.GetImageData().GetDimensions()),
                              list(n.GetSpacing()), n.GetAttribute(sampledata.SAMPLE_ATTRIBUTE), n.GetDescription(),
                              n.GetDisplayNode().GetColorNodeID()] for m, n in volumes.items()}))
        assert not [m for m in sys.modules if m.split('.')[0] in ('torch', 'monai') and sys.modules[m] is not None]
    """), MODULE_DIR)
    loaded = json.loads(out.strip().splitlines()[-1])
    assert list(loaded) == ["MRI", "PET", "CT"]              # MRI first: the panel's default reference
    k, j, i = (48, 128, 128)
    for modality, (name, kind, dimensions, spacing, mark, description, _colour) in loaded.items():
        assert name == f"MedFusion phantom {modality}" and kind == "vtkMRMLScalarVolumeNode"
        assert mark == modality and "Synthetic head phantom" in description and "not patient data" in description
        assert dimensions == ([i // 2, j // 2, k] if modality == "PET" else [i, j, k])
        assert spacing == ([2.0, 2.0, 2.0] if modality == "PET" else [1.0, 1.0, 2.0])
    assert loaded["PET"][6] != loaded["MRI"][6]              # PET through the library's pet colour map


def test_sample_data_volumes_are_the_library_phantom(application_scene):
    from MedFusionLib import bridge
    from MedFusionModuleLib import display, logic, sampledata

    scene, _ = application_scene
    volumes = sampledata.loadHeadPhantom(scene, (24, 48, 40), seed=1)
    arrays = library_sampledata.head_phantom((24, 48, 40), seed=1)
    np.testing.assert_array_equal(bridge.array_from_node(volumes["MRI"]), arrays["mri"])
    np.testing.assert_array_equal(bridge.array_from_node(volumes["CT"]), arrays["ct"])
    np.testing.assert_array_equal(bridge.array_from_node(volumes["PET"]), arrays["pet"][:, ::2, ::2])
    pet = volumes["PET"].GetDisplayNode().GetColorNodeID()
    assert scene.GetNodeByID(pet).GetAttribute(display.COLOUR_MAP_ATTRIBUTE) == "pet"
    assert volumes["MRI"].GetDisplayNode().GetColorNodeID() == display.BUILTIN_GREY_ID
    # The panel then pre-selects MRI as the reference and PET as the functional input.
    assert logic.MedFusionLogicBase.defaultInputs(scene) == (volumes["MRI"], volumes["PET"])


def test_help_text_names_the_sample_data_and_the_side_by_side_view():
    import MedFusionLib
    from MedFusionModuleLib import options, sampledata

    lazy = options.helpText(MedFusionLib.methods(), MedFusionLib.FAMILIES)   # what the panel's set-up sets
    for text in (options.helpText(None), lazy):                              # and the start-up text
        assert sampledata.SAMPLE_NAME in text and "Sample Data" in text
        assert "Compare side by side" in text and "Compare methods" in text
    assert all(f"<b>{spec.name}</b>" in lazy for spec in MedFusionLib.methods())


# --- beyond the list: inputs and result side by side --------------------------------------------------------
def _layout_views(layout_node):
    """(singleton tag, orientation, label) of each view of the layout node's current layout."""
    import xml.etree.ElementTree as ElementTree

    root = ElementTree.fromstring(layout_node.GetCurrentLayoutDescription())
    views = []
    for view in root.iter("view"):
        properties = {p.get("name"): p.text for p in view.findall("property")}
        views.append((view.get("singletontag"), properties["orientation"], properties["viewlabel"]))
    return views


def _by_layout_name(scene, class_name, name):
    nodes = [scene.GetNthNodeByClass(i, class_name) for i in range(scene.GetNumberOfNodesByClass(class_name))]
    return [n for n in nodes if n.GetLayoutName() == name]


def _input_state(volumes):
    from MedFusionLib import bridge

    return {name: (bridge.array_from_node(node).copy(), node.GetDisplayNode().GetColorNodeID(), node.GetMTime(),
                   node.GetDisplayNode().GetMTime()) for name, node in volumes.items()}


def _assert_same_state(before, after):
    for name in before:
        np.testing.assert_array_equal(before[name][0], after[name][0])
        assert before[name][1:] == after[name][1:], name


def test_side_by_side_shows_inputs_and_result_in_linked_views(slicer, application_scene, phantom3d):
    from MedFusionModuleLib import display, sampledata
    from MedFusionModuleLib.logic import MedFusionLogicBase

    scene, logics = application_scene
    volumes = sampledata.phantomVolumes(scene, arrays=phantom3d)
    logic = MedFusionLogicBase()
    fused = logic.process(volumes["MRI"], [volumes["CT"], volumes["PET"]], "average").outputVolume
    red = scene.GetSingletonNode("Red", "vtkMRMLSliceNode")
    red_composite = slicer.vtkMRMLSliceLogic.GetSliceCompositeNode(red)
    assert red_composite.GetBackgroundVolumeID() == fused.GetID()      # Apply showed the result
    layout_node = logics["layout"].GetLayoutNode()
    before_arrangement = layout_node.GetViewArrangement()
    before = _input_state(volumes)

    info = logic.showSideBySide(volumes["MRI"], [volumes["CT"], volumes["PET"]], fused)
    assert info["layoutNode"] is layout_node and info["previousViewArrangement"] == before_arrangement
    assert layout_node.GetViewArrangement() == display.COMPARE_LAYOUT_ID
    names = [f"MedFusionCompare{k}" for k in (1, 2, 3, 4)]
    assert info["viewNames"] == names
    assert _layout_views(layout_node) == [(n, "Axial", label) for n, label in zip(names, ("1", "2", "3", "F"))]
    expected = [volumes["MRI"], volumes["CT"], volumes["PET"], fused]     # fusion order, then the result
    for name, volume in zip(names, expected):
        slice_nodes = _by_layout_name(scene, "vtkMRMLSliceNode", name)
        composites = _by_layout_name(scene, "vtkMRMLSliceCompositeNode", name)
        assert len(slice_nodes) == 1 and len(composites) == 1, name          # the layout logic's node, reused
        assert slice_nodes[0].GetOrientation() == "Axial"
        composite = composites[0]
        assert composite.GetBackgroundVolumeID() == volume.GetID() == info["views"][name]["background"]
        assert composite.GetForegroundVolumeID() is None and composite.GetLabelVolumeID() is None
        assert composite.GetLinkedControl()
    assert red_composite.GetBackgroundVolumeID() == fused.GetID()      # other views untouched
    _assert_same_state(before, _input_state(volumes))                  # inputs and their displays untouched

    # The application's slice logic of a new view uses the composite node made for it (no second one).
    view_logic = _slice_logic(slicer, scene, logics, names[0])
    assert view_logic.GetSliceCompositeNode() is _by_layout_name(scene, "vtkMRMLSliceCompositeNode", names[0])[0]
    # Linked: Slicer's slice link logic moves every comparison view with the one the user scrolls, and
    # only because its composite node is linked (Slicer's link logic then moves every view of the same
    # orientation and view group, as the slice controllers' link button does).
    def scroll(name, height):
        node = scene.GetSingletonNode(name, "vtkMRMLSliceNode")
        node.SetInteractionFlags(node.SliceToRASFlag)
        node.SetInteracting(1)
        node.GetSliceToRAS().SetElement(2, 3, height)
        node.UpdateMatrices()
        node.SetInteracting(0)

    def heights():
        return [scene.GetSingletonNode(n, "vtkMRMLSliceNode").GetSliceToRAS().GetElement(2, 3) for n in names]

    first_composite = _by_layout_name(scene, "vtkMRMLSliceCompositeNode", names[0])[0]
    first_composite.SetLinkedControl(False)
    scroll(names[0], -5.0)
    assert heights()[0] == -5.0 and all(h != -5.0 for h in heights()[1:])
    first_composite.SetLinkedControl(True)
    scroll(names[0], 7.0)
    assert heights() == [7.0] * len(names)

    # Again with two inputs and the functional overlay: the layout shrinks, nothing is duplicated.
    info = logic.showSideBySide(volumes["MRI"], [volumes["PET"]], fused, overlayFunctional=True, overlayOpacity=0.3)
    assert [v[0] for v in _layout_views(layout_node)] == names[:3]
    overlay = _by_layout_name(scene, "vtkMRMLSliceCompositeNode", names[1])
    assert len(overlay) == 1
    assert (overlay[0].GetBackgroundVolumeID(), overlay[0].GetForegroundVolumeID()) == \
        (volumes["MRI"].GetID(), volumes["PET"].GetID())
    assert overlay[0].GetForegroundOpacity() == pytest.approx(0.3)
    assert _by_layout_name(scene, "vtkMRMLSliceCompositeNode", names[2])[0].GetBackgroundVolumeID() == fused.GetID()
    assert info["views"][names[1]]["foreground"] == volumes["PET"].GetID()
    assert len(_by_layout_name(scene, "vtkMRMLSliceNode", names[0])) == 1
    _assert_same_state(before, _input_state(volumes))


def test_side_by_side_in_a_bare_scene_makes_its_own_views(slicer, phantom3d):
    from MedFusionModuleLib import display, sampledata
    from MedFusionModuleLib.logic import MedFusionLogicBase

    scene = slicer.vtkMRMLScene()           # batch mode: no layout logic, no slice views yet
    volumes = sampledata.phantomVolumes(scene, arrays=phantom3d)
    logic = MedFusionLogicBase()
    fused = logic.process(volumes["MRI"], [volumes["PET"]], "average").outputVolume
    info = logic.showSideBySide(volumes["MRI"], [volumes["PET"]], fused)
    assert scene.GetNumberOfNodesByClass("vtkMRMLLayoutNode") == 1
    assert info["layoutNode"].GetViewArrangement() == display.COMPARE_LAYOUT_ID
    for name, volume, label in zip(info["viewNames"], (volumes["MRI"], volumes["PET"], fused), ("1", "2", "F")):
        slice_node = scene.GetSingletonNode(name, "vtkMRMLSliceNode")
        assert slice_node is not None and slice_node.GetLayoutLabel() == label
        composite = slicer.vtkMRMLSliceLogic.GetSliceCompositeNode(slice_node)
        assert composite.GetBackgroundVolumeID() == volume.GetID() and composite.GetLinkedControl()


def test_side_by_side_says_why_it_cannot_run(slicer, phantom3d):
    from MedFusionLib.errors import FusionInputError
    from MedFusionModuleLib import display, sampledata
    from MedFusionModuleLib.logic import MedFusionLogicBase

    scene = slicer.vtkMRMLScene()
    volumes = sampledata.phantomVolumes(scene, arrays=phantom3d)
    logic = MedFusionLogicBase()
    mri, pet = volumes["MRI"], volumes["PET"]
    empty = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "empty")
    assert "reference" in logic.checkSideBySide(None, [pet], mri)
    assert "functional" in logic.checkSideBySide(mri, [], pet)
    assert "Apply first" in logic.checkSideBySide(mri, [pet], None)
    assert "Apply first" in logic.checkSideBySide(mri, [pet], empty)
    assert "one of the inputs" in logic.checkSideBySide(mri, [pet], pet)
    count = scene.GetNumberOfNodes()
    with pytest.raises(FusionInputError, match="Apply first"):
        logic.showSideBySide(mri, [pet], None)
    with pytest.raises(ValueError, match="at least two views"):
        display.showSideBySide([("1", mri, None)])
    with pytest.raises(ValueError, match="must be a volume node"):
        display.showSideBySide([("1", mri, None), ("2", scene.AddNewNodeByClass("vtkMRMLTableNode"), None)])
    other = sampledata.phantomVolumes(slicer.vtkMRMLScene(), arrays=phantom3d)["MRI"]
    with pytest.raises(ValueError, match="not in the scene"):
        display.showSideBySide([("1", mri, None), ("2", other, None)])
    assert scene.GetNumberOfNodes() == count + 1      # only the table made for the bad call; no views


def test_layout_description_escapes_labels():
    from MedFusionModuleLib import display
    import xml.etree.ElementTree as ElementTree

    xml = display.compareLayoutDescription(["A1", "A2"], ['T1 & "PET" <2>', "F"], "Coronal")
    root = ElementTree.fromstring(xml)
    assert [p.text for p in root.iter("property") if p.get("name") == "viewlabel"] == ['T1 & "PET" <2>', "F"]
    assert {p.text for p in root.iter("property") if p.get("name") == "orientation"} == {"Coronal"}
    with pytest.raises(ValueError, match="one label per view"):
        display.compareLayoutDescription(["A1"], ["1", "2"])


# --- item 1: the screenshot -----------------------------------------------------------------------------------
def _make_screenshot():
    import importlib.util

    spec = importlib.util.spec_from_file_location("make_screenshot", os.path.join(ROOT, "docs", "make_screenshot.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_screenshot_is_the_slice_logic_rendering_of_a_real_fusion(slicer):
    from PIL import Image

    make = _make_screenshot()
    rendered = make.render_views()
    views = rendered["views"]
    scene, comparison = rendered["scene"], rendered["comparison"]
    assert [(label, name) for label, name, _ in views] == [
        ("1", "MedFusion phantom MRI"), ("2", "MedFusion phantom PET"), ("F", "MedFusion phantom MRI fused (max_detail)")]
    assert comparison["views"]["MedFusionCompare3"]["background"] == rendered["fused"].GetID()
    shown = [scene.GetNodeByID(comparison["views"][f"MedFusionCompare{k}"]["background"]) for k in (1, 2)]
    assert [n.GetAttribute("MedFusion.SampleData") for n in shown] == ["MRI", "PET"]   # the Sample Data phantom
    assert rendered["fused"].IsA("vtkMRMLVectorVolumeNode")          # colour fusion
    mri, pet, fused = (v[2].astype(int) for v in views)
    assert (np.ptp(mri, axis=2) == 0).all() and mri.max() > 200      # grey MRI, window/levelled
    hot = (pet[..., 0] > 200) & (pet[..., 2] < 150)                   # the pet map's hot spots
    assert hot.sum() > 100 and (np.ptp(pet, axis=2) > 50).sum() > 1000
    assert (np.ptp(fused, axis=2) > 50).sum() > 1000 and ((fused[..., 0] > 200) & (fused[..., 1] > 200)).sum() > 100
    assert (fused.max(axis=2) < 20).mean() > 0.2                       # air stays dark
    # The committed picture is exactly this rendering (regenerate with python docs/make_screenshot.py).
    with Image.open(make.SCREENSHOT) as image:
        picture = np.asarray(image.convert("RGB"))
    assert picture.shape == (make.BAR_HEIGHT + make.VIEW_SIZE + make.CAPTION_HEIGHT + 2 * make.GAP,
                             3 * make.VIEW_SIZE + 4 * make.GAP, 3)
    top = make.GAP + make.BAR_HEIGHT
    for index, (_, _, pixels) in enumerate(views):
        left = make.GAP + index * (make.VIEW_SIZE + make.GAP)
        np.testing.assert_array_equal(picture[top:top + make.VIEW_SIZE, left:left + make.VIEW_SIZE], pixels)
    with Image.open(make.THUMBNAIL) as image:
        thumb = np.asarray(image.convert("RGB")).astype(int)
    drawn = np.asarray(make.thumbnail(views)).astype(int)
    assert thumb.shape == (128, 128, 3) and np.abs(thumb - drawn).mean() < 1.0
