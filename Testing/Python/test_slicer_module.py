"""The MedFusion Slicer module below the widget, on slicer-core's real MRML classes (no Slicer application).

Covers MedFusionModuleLib (what MedFusion.py's logic, panel and self-test run on): the panel's choices
against the library, parameter controls built from the registry, the logic (fusion of volume nodes, input
checks, output nodes, display set-up with slice composite / colour / table nodes, metrics, method
comparison, cancellation), the dependency planning, and the batch script run as a subprocess.
"""

import csv
import html
import math
import os
import subprocess
import sys

import numpy as np
import pytest

import slicer  # noqa: E402,F401 (slicer-core, a test requirement: imported, never skipped)

import MedFusionLib  # noqa: E402
from MedFusionLib import bridge, colour, metrics, pipeline  # noqa: E402
from MedFusionLib.errors import FusionCancelled, FusionInputError  # noqa: E402
from MedFusionLib.registry import FAMILIES, MethodSpec, Param  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "MedFusion"))

from MedFusionModuleLib import checks, controls, dependencies, display, options, sampledata  # noqa: E402
from MedFusionModuleLib.logic import MedFusionLogicBase  # noqa: E402

BATCH = os.path.join(ROOT, "MedFusion", "Resources", "Scripts", "fuse_batch.py")


# --- fixtures ------------------------------------------------------------------------------------------
@pytest.fixture
def scene():
    return bridge.new_scene()


@pytest.fixture
def volumes(scene, phantom3d):
    """MRI and CT on a 1 x 1 x 2 mm grid, PET on its own coarser, shifted grid (24 x 48 x 40 phantom)."""
    return sampledata.phantomVolumes(scene, arrays=phantom3d)


@pytest.fixture
def logic():
    return MedFusionLogicBase()


def _node_count(scene):
    return scene.GetNumberOfNodes()


def _slice_views(scene, n=3):
    return [scene.AddNewNodeByClass("vtkMRMLSliceCompositeNode") for _ in range(n)]


# --- options and help ------------------------------------------------------------------------------------
def test_panel_choices_match_the_library():
    assert options.MODES == pipeline.MODES
    assert set(options.COLOUR_MAPS) == set(colour.COLORMAPS)
    assert options.COLOUR_SPACES == colour.COLOUR_SPACES
    from MedFusionLib.registration import REGISTRATIONS

    assert options.REGISTRATIONS == REGISTRATIONS
    assert options.DEFAULT_METHOD == MedFusionLib.DEFAULT_METHOD
    assert options.LEARNED_FAMILY in FAMILIES
    assert [options.axisIndex(a) for a in ("K", "j", "I", 0, 2)] == [0, 1, 2, 0, 2]
    for bad in ("X", 3, -1, True, 1.0):
        with pytest.raises(ValueError):
            options.axisIndex(bad)


def test_help_text_lists_every_method_with_its_reference():
    specs = MedFusionLib.methods()
    text = options.helpText(specs, FAMILIES)
    for spec in specs:
        assert f"<b>{spec.name}</b>" in text
        assert html.escape(spec.reference, quote=False) in text
    # Families appear in registry order, only when they have methods.
    present = [f for f in FAMILIES if any(s.family == f for s in specs)]
    positions = [text.index(f"<p>{f.capitalize()}</p>") for f in present]
    assert positions == sorted(positions)
    assert "Install dependencies" in options.helpText(None)
    assert "<b>laplacian</b>" not in options.helpText(None)


# --- parameter controls ----------------------------------------------------------------------------------
def test_every_registered_parameter_gets_a_consistent_control():
    for spec in MedFusionLib.methods():
        described = controls.methodControlSpecs(spec)
        assert [d["name"] for d in described] == [p.name for p in spec.params if p.name != "device"]
        for d, p in zip(described, [p for p in spec.params if p.name != "device"]):
            assert p.help in d["tooltip"] and p.describe_range() in d["tooltip"]
            if p.kind == "int":
                assert d["widget"] == "QSpinBox"
                assert d["minimum"] <= p.default <= d["maximum"]
                assert (p.minimum is None or d["minimum"] == p.minimum) and (p.maximum is None or d["maximum"] == p.maximum)
            elif p.kind == "bool":
                assert d == {**d, "widget": "QCheckBox", "checked": p.default}
            elif p.kind == "choice":
                assert d["widget"] == "QComboBox" and d["items"] == list(p.choices) and d["currentText"] == p.default
            elif p.kind == "float" and d["widget"] == "QDoubleSpinBox":
                assert d["minimum"] <= p.default <= d["maximum"]
                assert round(p.default, d["decimals"]) == p.default, "the spin box must show the default exactly"
                assert d["singleStep"] > 0
            else:
                assert d["widget"] == "QLineEdit"
            # What the control shows for the default reads back as the default.
            shown = controls.setControlValue(d, p.default)
            raw = next(iter(shown.values()))
            value = controls.valueFromControl(p, raw, spec.name)
            expected = list(p.default) if isinstance(p.default, tuple) else p.default
            assert value == expected or (isinstance(value, float) and math.isclose(value, expected))


def test_a_newly_described_method_gets_its_controls_without_widget_changes():
    # A method description as the registry holds it (not registered, so other tests see no extra method).
    spec = MethodSpec(
        name="my_learned_fusion", family="deep learning", summary="test", reference="ref", func=lambda s: s[0],
        params=(Param("epochs", "int", 5, "Epochs.", 1, 100),
                Param("eps", "float", 1e-6, "Tiny epsilon.", 1e-12, 1.0),
                Param("gain", "float", 0.25, "Gain.", 0.0, 2.0),
                Param("weights", "floats", None, "Per-input weights.", 0.0, None),
                Param("norm", "choice", "batch", "Normalisation.", choices=("batch", "instance")),
                Param("tta", "bool", False, "Test-time augmentation."),
                Param("device", "choice", "cpu", "Device.", choices=("cpu", "cuda"))))
    described = {d["name"]: d for d in controls.methodControlSpecs(spec)}
    assert set(described) == {"epochs", "eps", "gain", "weights", "norm", "tta"}   # device: the panel's selector
    assert described["epochs"]["widget"] == "QSpinBox" and described["epochs"]["maximum"] == 100
    assert described["eps"]["widget"] == "QLineEdit" and float(described["eps"]["text"]) == 1e-6
    assert described["gain"]["widget"] == "QDoubleSpinBox" and described["gain"]["decimals"] >= 2
    assert described["weights"]["widget"] == "QLineEdit" and described["weights"]["text"] == ""
    assert "derived" in described["weights"]["placeholderText"]
    assert described["norm"]["items"] == ["batch", "instance"]
    assert described["tta"]["label"] == "Tta"


def test_control_values_are_validated_by_the_registry():
    spec = MedFusionLib.get_method("laplacian")
    levels = spec.param("levels")
    assert controls.valueFromControl(levels, "4") == 4
    with pytest.raises(FusionInputError, match="out of range"):
        controls.valueFromControl(levels, 99, "laplacian")
    weights = MedFusionLib.get_method("weighted_average").param("weights")
    assert controls.valueFromControl(weights, "1, 2;3") == [1.0, 2.0, 3.0]
    assert controls.valueFromControl(weights, "  ") is None
    with pytest.raises(FusionInputError):
        controls.valueFromControl(weights, "1, -2")


def test_stored_method_parameters_round_trip_and_bad_values_fall_back_to_defaults():
    text = controls.withValue("{}", "laplacian", "levels", 3)
    text = controls.withValue(text, "dwt", "wavelet", "haar")
    assert controls.loadStored(text) == {"laplacian": {"levels": 3}, "dwt": {"wavelet": "haar"}}
    assert controls.loadStored(controls.withoutMethod(text, "dwt")) == {"laplacian": {"levels": 3}}
    for bad in (None, "", "not json", "[1, 2]", '{"laplacian": 3}'):
        assert controls.loadStored(bad) == {}
    spec = MedFusionLib.get_method("laplacian")
    stored = {"laplacian": {"levels": 99, "window": "5", "nonsense": 1}}
    values, problems = controls.parametersForMethod(spec, stored)
    assert values["levels"] == spec.param("levels").default     # invalid: default
    assert values["window"] == 5                                 # string coerced
    assert set(values) == {p.name for p in spec.params}
    assert len(problems) == 2 and any("nonsense" in p for p in problems) and any("levels" in p for p in problems)


# --- sample data -----------------------------------------------------------------------------------------
def test_phantom_volumes_have_their_own_geometry(scene, phantom3d):
    nodes = sampledata.phantomVolumes(scene, arrays=phantom3d)
    assert set(nodes) == {"CT", "MRI", "PET"}
    np.testing.assert_array_equal(bridge.array_from_node(nodes["MRI"]), phantom3d["mri"])
    np.testing.assert_array_equal(bridge.array_from_node(nodes["PET"]), phantom3d["pet"][:, ::2, ::2])
    assert nodes["MRI"].GetSpacing() == (1.0, 1.0, 2.0) and nodes["PET"].GetSpacing() == (2.0, 2.0, 2.0)
    assert nodes["PET"].GetOrigin() != nodes["MRI"].GetOrigin()
    again = sampledata.phantomVolumes(scene, arrays=phantom3d)
    assert again["MRI"].GetName() != nodes["MRI"].GetName()   # unique names in one scene


# --- the logic: fusion -----------------------------------------------------------------------------------
def test_grey_fusion_is_on_the_reference_grid_and_leaves_inputs_untouched(logic, volumes):
    mri, pet = volumes["MRI"], volumes["PET"]
    before = {n: np.array(bridge.array_from_node(v)) for n, v in volumes.items()}
    result = logic.process(mri, [pet], "laplacian", {"levels": 3}, showResult=False)
    out = result.outputVolume
    assert out.IsA("vtkMRMLScalarVolumeNode") and not out.IsA("vtkMRMLVectorVolumeNode")
    assert out.GetName() == "MRI fused (laplacian)"
    assert checks.fusionProblems(out, [mri, pet]) == []
    assert result.parameters["levels"] == 3 and result.method == "laplacian" and result.seconds > 0
    assert not result.colourOutput and result.metrics is None
    for name, volume in volumes.items():
        np.testing.assert_array_equal(bridge.array_from_node(volume), before[name])


@pytest.mark.parametrize("colourMap", ["pet", "hot", "rainbow"])
def test_colour_fusion_gives_an_rgb_vector_volume(logic, volumes, colourMap):
    mri, pet = volumes["MRI"], volumes["PET"]
    result = logic.process(mri, [pet], "dwt", colourMap=colourMap, showResult=False)
    assert result.colourOutput and result.outputVolume.IsA("vtkMRMLVectorVolumeNode")
    assert checks.fusionProblems(result.outputVolume, [mri, pet], colourMap) == []


@pytest.mark.parametrize("colourMap", [None, "pet"])
def test_learned_method_runs_through_the_logic(logic, volumes, colourMap):
    # What the self-test's learned case does in Slicer, here on slicer-core's MRML: a shipped network.
    names = [spec.name for spec in logic.learnedMethods()]
    assert {"ifcnn", "u2fusion", "cnn_weight_map"} <= set(names)
    mri, pet = volumes["MRI"], volumes["PET"]
    before = np.array(bridge.array_from_node(pet))
    result = logic.process(mri, [pet], "ifcnn", colourMap=colourMap, device="cpu", showResult=False)
    assert checks.fusionProblems(result.outputVolume, [mri, pet], colourMap) == []
    assert result.outputVolume.IsA("vtkMRMLVectorVolumeNode") == (colourMap is not None)
    np.testing.assert_array_equal(bridge.array_from_node(pet), before)


def test_three_inputs_with_the_functional_input_last(logic, volumes):
    inputs = [volumes["MRI"], volumes["CT"], volumes["PET"]]
    result = logic.process(inputs[0], inputs[1:], "average", colourMap="pet", showResult=False)
    assert checks.fusionProblems(result.outputVolume, inputs, "pet") == []
    # The same fusion through the library directly gives the same voxels (the logic only delegates).
    direct = bridge.fuse_volume_nodes(inputs, "average", colormap="pet")
    np.testing.assert_array_equal(bridge.array_from_node(result.outputVolume), bridge.array_from_node(direct))


def test_slice_wise_fusion_along_another_axis(logic, volumes):
    mri, pet = volumes["MRI"], volumes["PET"]
    along_j = logic.process(mri, [pet], "laplacian", {"levels": 2}, mode="slices", sliceAxis="J", showResult=False)
    along_k = logic.process(mri, [pet], "laplacian", {"levels": 2}, mode="slices", sliceAxis="K", showResult=False)
    assert checks.fusionProblems(along_j.outputVolume, [mri, pet]) == []
    # Different slicing gives a different (but valid) result: the axis really reaches the library.
    assert not np.array_equal(bridge.array_from_node(along_j.outputVolume), bridge.array_from_node(along_k.outputVolume))


def test_fusion_problems_catch_broken_results(logic, volumes, scene):
    mri, pet = volumes["MRI"], volumes["PET"]
    good = logic.process(mri, [pet], "laplacian", showResult=False).outputVolume
    assert checks.fusionProblems(good, [mri, pet]) == []
    shifted = logic.process(mri, [pet], "laplacian", showResult=False).outputVolume
    shifted.SetOrigin(5.0, 0.0, 0.0)
    assert any("IJK-to-RAS" in p for p in checks.fusionProblems(shifted, [mri, pet]))
    constant = sampledata.volumeFromArray(scene, np.full(bridge.array_from_node(mri).shape, 7.0, np.float32), "c",
                                          mri.GetSpacing(), mri.GetOrigin())
    assert any("constant" in p for p in checks.fusionProblems(constant, [mri, pet]))
    unrelated = sampledata.volumeFromArray(
        scene, np.random.default_rng(0).uniform(0, 500, bridge.array_from_node(mri).shape).astype(np.float32),
        "noise", mri.GetSpacing(), mri.GetOrigin())
    assert any("correlation" in p for p in checks.fusionProblems(unrelated, [mri, pet]))
    assert any("RGB" in p for p in checks.fusionProblems(good, [mri, pet], "pet"))
    grey_as_colour = logic.process(mri, [pet], "laplacian", colourMap="grey", showResult=False).outputVolume
    assert checks.fusionProblems(grey_as_colour, [mri, pet], "grey") == []
    # A colour result claimed to be 'pet' but fused without colour chroma at the hot spots is caught.
    assert any("nearly grey" in p for p in checks.fusionProblems(grey_as_colour, [mri, pet], "pet"))


# --- the logic: output nodes -----------------------------------------------------------------------------
def test_an_existing_output_volume_is_filled_in_place(logic, volumes, scene):
    mri, pet = volumes["MRI"], volumes["PET"]
    target = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "mine")
    result = logic.process(mri, [pet], "average", outputVolume=target, showResult=False)
    assert result.outputVolume is target and target.GetImageData() is not None
    assert checks.fusionProblems(target, [mri, pet]) == []


def test_an_empty_output_of_the_wrong_kind_is_replaced_after_success(logic, volumes, scene):
    mri, pet = volumes["MRI"], volumes["PET"]
    empty = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "Output")   # as "Create new volume" makes it
    result = logic.process(mri, [pet], "average", colourMap="pet", outputVolume=empty, showResult=False)
    assert result.outputVolume.IsA("vtkMRMLVectorVolumeNode") and result.outputVolume.GetName() == "Output"
    assert empty.GetScene() is None and scene.GetFirstNodeByName("Output") is result.outputVolume


def test_an_output_with_data_of_the_wrong_kind_is_refused_before_any_change(logic, volumes, scene):
    mri, pet = volumes["MRI"], volumes["PET"]
    grey = logic.process(mri, [pet], "average", showResult=False).outputVolume
    voxels = np.array(bridge.array_from_node(grey))
    count = _node_count(scene)
    with pytest.raises(FusionInputError, match="colour"):
        logic.process(mri, [pet], "average", colourMap="pet", outputVolume=grey, showResult=False)
    assert _node_count(scene) == count
    np.testing.assert_array_equal(bridge.array_from_node(grey), voxels)


# --- the logic: input checks (the Apply button's tooltip) ---------------------------------------------------
def test_check_inputs_says_why_fusion_cannot_run(logic, volumes, scene):
    mri, ct, pet = volumes["MRI"], volumes["CT"], volumes["PET"]
    assert logic.checkInputs(mri, [pet], "laplacian") is None
    assert logic.checkInputs(mri, [ct, pet], "laplacian", colourMap="pet") is None
    assert "reference" in logic.checkInputs(None, [pet], "laplacian")
    assert "further input" in logic.checkInputs(mri, [], "laplacian")
    assert "more than once" in logic.checkInputs(mri, [pet, pet], "laplacian")
    assert "more than once" in logic.checkInputs(mri, [mri], "laplacian")
    assert "method" in logic.checkInputs(mri, [pet], "")
    assert "unknown fusion method" in logic.checkInputs(mri, [pet], "no_such_method")
    assert "out of range" in logic.checkInputs(mri, [pet], "laplacian", {"levels": 99})
    # A rule defined for two inputs, given three (the registry's check).
    reason = logic.checkInputs(mri, [ct, pet], "laplacian", {"detail_rule": "local_similarity"})
    assert reason is not None and "2" in reason
    assert "slice axis" in logic.checkInputs(mri, [pet], "laplacian", sliceAxis="X")
    label = scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", "labels")
    label.SetAndObserveImageData(mri.GetImageData())
    assert "label map" in logic.checkInputs(mri, [label], "laplacian")
    empty = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "empty")
    assert "no image data" in logic.checkInputs(mri, [empty], "laplacian")
    assert "one of the inputs" in logic.checkInputs(mri, [pet], "laplacian", outputVolume=pet)
    grey = logic.process(mri, [pet], "average", showResult=False).outputVolume
    assert "colour" in logic.checkInputs(mri, [pet], "average", outputVolume=grey, colourMap="hot")
    assert logic.checkVolumes(mri, [pet]) is None


def test_process_refuses_bad_input_with_the_same_message(logic, volumes, scene):
    count = _node_count(scene)
    with pytest.raises(FusionInputError, match="out of range"):
        logic.process(volumes["MRI"], [volumes["PET"]], "laplacian", {"levels": 99})
    assert _node_count(scene) == count


def test_device_choice(logic):
    import torch

    assert logic.resolveDevice("cpu") == "cpu"
    cuda = torch.cuda.is_available()
    assert logic.resolveDevice("auto") == ("cuda" if cuda else "cpu")
    if cuda:
        assert logic.resolveDevice("gpu") == "cuda"
    else:
        with pytest.raises(FusionInputError, match="no CUDA GPU"):
            logic.resolveDevice("gpu")
    with pytest.raises(FusionInputError):
        logic.resolveDevice("tpu")


def test_fuse_options_apply_the_colour_map_to_the_functional_input_only(logic, volumes, scene):
    mri, pet = volumes["MRI"], volumes["PET"]
    assert logic.fuseOptions([mri, pet], "slices", "J", "hot", "ihs") == {
        "mode": "slices", "axis": 1, "colour_space": "ihs", "colormap": "hot"}
    assert "colormap" not in logic.fuseOptions([mri, pet], colourMap=None)
    rgb = sampledata.volumeFromArray(scene, np.zeros((4, 8, 8, 3), np.uint8), "rgb")
    assert "colormap" not in logic.fuseOptions([mri, rgb], colourMap="hot")   # RGB keeps its colours
    assert logic.isColourOutput([mri, rgb], None) and not logic.isColourOutput([mri, pet], None)


# --- display with MRML only ------------------------------------------------------------------------------
def test_result_is_shown_in_every_slice_view_with_the_functional_overlay(logic, volumes, scene):
    composites = _slice_views(scene)
    mri, pet = volumes["MRI"], volumes["PET"]
    result = logic.process(mri, [pet], "laplacian", showResult=True, showOverlay=True, overlayOpacity=0.3,
                           colourMap=None)
    for composite in composites:
        assert composite.GetBackgroundVolumeID() == result.outputVolume.GetID()
        assert composite.GetForegroundVolumeID() == pet.GetID()
        assert composite.GetForegroundOpacity() == pytest.approx(0.3)
    overlay_colours = pet.GetDisplayNode().GetColorNodeID()
    assert display.colourTableRGB(scene, overlay_colours) == [tuple(c) for c in colour.colormap_lut("pet")]
    # Grey output with an overlay through a chosen map.
    logic.process(mri, [pet], "average", showOverlay=True, overlayColourMap="rainbow")
    assert display.colourTableRGB(scene, pet.GetDisplayNode().GetColorNodeID()) == \
        [tuple(c) for c in colour.colormap_lut("rainbow")]
    # A later result without overlay clears the foreground, so the old overlay cannot hide it.
    colour_result = logic.process(mri, [pet], "average", colourMap="hot", showResult=True, showOverlay=False)
    for composite in composites:
        assert composite.GetBackgroundVolumeID() == colour_result.outputVolume.GetID()
        assert composite.GetForegroundVolumeID() is None


def test_colour_nodes_match_the_library_maps_and_are_created_once(scene):
    ids = {name: display.colourNodeID(scene, name) for name in ("hot", "pet", "rainbow")}
    assert len(set(ids.values())) == 3
    for name, node_id in ids.items():
        assert display.colourTableRGB(scene, node_id) == [tuple(c) for c in colour.colormap_lut(name)]
        assert display.colourNodeID(scene, name) == node_id
    assert display.colourNodeID(scene, "heat") == ids["hot"]            # alias
    with pytest.raises(FusionInputError):
        display.colourNodeID(scene, "viridis")
    # Grey: Slicer's built-in table where the scene has it (every application scene), else our own.
    own_grey = display.colourNodeID(scene, "grey")
    assert own_grey != display.BUILTIN_GREY_ID
    app_scene = bridge.new_scene()
    colour_logic = slicer.vtkMRMLColorLogic()
    colour_logic.SetMRMLScene(app_scene)
    assert display.colourNodeID(app_scene, "grey") == display.BUILTIN_GREY_ID


def test_grey_output_uses_the_grey_table_and_colour_output_keeps_its_rgb(logic, volumes):
    grey = logic.process(volumes["MRI"], [volumes["PET"]], "average", showResult=True)
    node = grey.outputVolume.GetDisplayNode().GetColorNode()
    assert display.colourTableRGB(node.GetScene(), node.GetID())[255] == (255, 255, 255)
    rgb = logic.process(volumes["MRI"], [volumes["PET"]], "average", colourMap="pet", showResult=True)
    assert rgb.outputVolume.GetDisplayNode().IsA("vtkMRMLVectorVolumeDisplayNode")


# --- metrics and comparison -------------------------------------------------------------------------------
def test_metrics_table_matches_the_library_on_the_whole_volume(logic, volumes):
    mri, pet = volumes["MRI"], volumes["PET"]
    result = logic.process(mri, [pet], "laplacian", computeMetrics=True, showResult=False)
    table = result.metricsTable
    assert table.IsA("vtkMRMLTableNode") and table.GetNumberOfRows() == 1
    assert display.tableColumns(metrics.METRICS) == [table.GetColumnName(c) for c in range(table.GetNumberOfColumns())]
    assert "0.5-99.5 percentile" in table.GetAttribute(display.METRICS_CONVENTION_ATTRIBUTE)
    assert table.GetColumnDescription("Nabf") == "lower is better" and table.GetColumnDescription("SSIM") == "higher is better"
    row = display.readTable(table)[0]
    assert row["Method"] == "laplacian" and row["Inputs"] == "MRI, PET" and "levels=4" in row["Parameters"]
    # Independently: the library's own volume evaluation of the same 0..255 images.
    fused = bridge.array_from_node(result.outputVolume)
    sources = [bridge.array_from_node(mri), bridge.resample_to_reference(pet, mri)]

    def scale(x):
        lo, hi = MedFusionLib.intensity.robust_window(x)
        return np.clip(np.rint((np.asarray(x, np.float64) - lo) * (255.0 / (hi - lo))), 0, 255)

    usable = metrics.metrics_for_shape(fused.shape)
    expected = metrics.evaluate_all(scale(fused), [scale(s) for s in sources], metrics=usable)
    for name in metrics.METRICS:
        if name in usable:
            assert row[name] == pytest.approx(expected[name], rel=1e-9, abs=1e-12), name
            assert result.metrics[name] == row[name]
        else:
            assert math.isnan(row[name]) and name in row["Note"]


def test_colour_metrics_score_luminance(logic, volumes):
    mri, pet = volumes["MRI"], volumes["PET"]
    result = logic.process(mri, [pet], "average", colourMap="pet", computeMetrics=True, showResult=False)
    fused = metrics.protocol_image(bridge.array_from_node(result.outputVolume), rgb=True)
    pet_on_mri = bridge.resample_to_reference(pet, mri)
    window = MedFusionLib.intensity.robust_window(pet_on_mri)
    pet8 = metrics.protocol_image(colour.apply_colormap(MedFusionLib.intensity.normalise(pet_on_mri, window), "pet"),
                                  rgb=True)
    lo, hi = MedFusionLib.intensity.robust_window(bridge.array_from_node(mri))
    mri8 = np.clip(np.rint((np.asarray(bridge.array_from_node(mri), np.float64) - lo) * (255.0 / (hi - lo))), 0, 255)
    expected = metrics.evaluate_all(fused, [mri8, pet8], metrics=["EN", "MI", "SSIM"])
    for name, value in expected.items():
        assert result.metrics[name] == pytest.approx(value, rel=1e-9)


def test_compare_methods_fills_one_table_and_reports_methods_that_cannot_run(logic, volumes, scene):
    mri, ct, pet = volumes["MRI"], volumes["CT"], volumes["PET"]
    count = _node_count(scene)
    table, rows = logic.compareMethods(mri, [ct, pet], ["average", "pca", "laplacian"],
                                       {"laplacian": {"detail_rule": "local_similarity"}}, keepOutputs=False)
    assert [r.method for r in rows] == ["average", "pca", "laplacian"]
    read = display.readTable(table)
    assert [r["Method"] for r in read] == ["average", "pca", "laplacian"]
    assert all(r["Seconds"] > 0 and not math.isnan(r["EN"]) for r in read[:2])
    assert math.isnan(read[2]["Seconds"]) and read[2]["Note"].startswith("not run") and "2" in read[2]["Note"]
    assert read[0]["EN"] != read[1]["EN"]   # each row is its own method's result
    # keepOutputs=False: only the table was added.
    assert _node_count(scene) == count + 1


def test_compare_keeps_outputs_when_asked_and_refuses_unknown_methods(logic, volumes):
    mri, pet = volumes["MRI"], volumes["PET"]
    table, rows = logic.compareMethods(mri, [pet], ["max", "min"], colourMap="hot")
    assert all(checks.fusionProblems(r.outputVolume, [mri, pet], "hot") == [] for r in rows)
    with pytest.raises(FusionInputError, match="unknown method"):
        logic.compareMethods(mri, [pet], ["max", "nope"])
    with pytest.raises(FusionInputError):
        logic.compareMethods(mri, [pet], [])


# --- progress and cancel ---------------------------------------------------------------------------------
def test_progress_runs_from_start_to_end(logic, volumes):
    seen = []
    logic.process(volumes["MRI"], [volumes["PET"]], "laplacian", mode="slices", computeMetrics=True,
                  showResult=False, progress=lambda f, m: seen.append((f, m)))
    fractions = [f for f, _ in seen]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0 and len(seen) > 10
    assert any(m.startswith("metrics: slice") for _, m in seen)


@pytest.mark.parametrize("stop_at, phase", [(0.03, "resampling"), (0.08, "fusing"), (0.9, "metrics")])
def test_cancel_leaves_the_scene_as_it_was(logic, volumes, scene, stop_at, phase):
    """Cancelled while resampling, while fusing, and while computing metrics (after the output existed)."""
    composites = _slice_views(scene, 1)
    count = _node_count(scene)
    token = MedFusionLib.CancelToken()
    at_cancel = []

    def progress(fraction, message):
        if fraction >= stop_at and not token.cancelled:
            at_cancel.append(message)
            token.cancel()

    with pytest.raises(FusionCancelled):
        logic.process(volumes["MRI"], [volumes["CT"], volumes["PET"]], "laplacian", {"levels": 2}, mode="slices",
                      computeMetrics=True, progress=progress, cancel=token)
    assert at_cancel and at_cancel[0].startswith(phase), at_cancel
    assert _node_count(scene) == count
    assert composites[0].GetBackgroundVolumeID() is None


def test_cancel_during_compare_removes_the_outputs_made_so_far(logic, volumes, scene):
    count = _node_count(scene)
    token = MedFusionLib.CancelToken()
    with pytest.raises(FusionCancelled):
        logic.compareMethods(volumes["MRI"], [volumes["PET"]], ["average", "max", "min"],
                             progress=lambda f, m: token.cancel() if f > 0.5 else None, cancel=token)
    assert _node_count(scene) == count


def test_learned_methods_are_listed_from_the_deep_learning_family(logic):
    assert [s.name for s in logic.learnedMethods()] == [s.name for s in MedFusionLib.methods("deep learning")]


# --- dependencies -----------------------------------------------------------------------------------------
def _versions(mapping):
    import importlib.metadata

    def version_of(name):
        try:
            return mapping[name.lower()]
        except KeyError:
            raise importlib.metadata.PackageNotFoundError(name) from None

    return version_of


def test_requirements_are_read_and_checked_from_metadata():
    lines = dependencies.readRequirements()
    assert [dependencies.requirementName(r) for r in lines] == ["numpy", "scipy", "PyWavelets", "scikit-image", "monai"]
    have = _versions({"numpy": "2.1.0", "scipy": "1.9.0", "pywavelets": "1.6.0", "scikit-image": "0.24.0",
                      "torch": "2.13.0+cpu"})
    assert dependencies.missingRequirements(versionOf=have) == ["scipy>=1.10", "monai>=1.3"]
    assert dependencies.missingRequirements(["torch>=2.1"], versionOf=have) == []
    assert dependencies.missingRequirements(versionOf=_versions({}))[0] == dependencies.TORCH_REQUIREMENT
    for version, spec, ok in [("1.10.1", ">=1.10", True), ("1.9.3", ">=1.10", False), ("2.0", "==2.0.0", True),
                              ("2.13.0+cpu", ">=2.1,<3", True), ("3.1", ">=2.1,<3", False), ("1.4", "!=1.4", False)]:
        assert dependencies._satisfiesFallback(version, spec) is ok, (version, spec)
    # In this test environment everything the module needs is installed.
    assert dependencies.missingRequirements() == []


def test_requirements_file_is_in_step_with_pyproject():
    import re

    with open(os.path.join(ROOT, "pyproject.toml"), encoding="utf-8") as handle:
        text = handle.read()
    block = re.search(r"^dependencies = \[(.*?)^\]", text, re.S | re.M).group(1)
    project = {dependencies.requirementName(r).lower(): r for r in re.findall(r'"([^"]+)"', block)}
    mine = {dependencies.requirementName(r).lower(): r for r in dependencies.readRequirements()}
    assert project["torch"] == dependencies.TORCH_REQUIREMENT      # installed first, separately
    # Everything the library needs at run time, with the same lower bounds; tqdm is for the command line only.
    assert set(mine) == set(project) - {"torch", "tqdm"}
    for name, requirement in mine.items():
        assert requirement == project[name]


def test_install_plan_puts_pytorch_first():
    missing = ["scipy>=1.10", "torch>=2.1", "monai>=1.3"]
    with_utils = dependencies.installPlan(missing, pyTorchUtilsAvailable=True)
    assert [s["kind"] for s in with_utils] == ["pytorchutils", "requirements"]
    assert with_utils[1]["requirements"] == ["scipy>=1.10", "monai>=1.3"]
    without = dependencies.installPlan(missing, pyTorchUtilsAvailable=False)
    assert without[0]["kind"] == "torch-cpu"
    assert without[0]["pipArguments"] == ["torch>=2.1", "--index-url", dependencies.TORCH_CPU_INDEX_URL]
    assert dependencies.installPlan(["scipy>=1.10"], True) == [{"kind": "requirements", "requirements": ["scipy>=1.10"]}]
    assert dependencies.installPlan([], False) == []
    assert "CPU build" in dependencies.describePlan(without)


def test_optional_keywords_are_passed_only_where_supported():
    def old_api(requirements, requester=None):
        return requirements, requester

    def new_api(requirements, **options):
        return requirements, options

    assert dependencies._callWithSupported(old_api, ["a"], requester="MedFusion", prompt_install=False) == (
        ["a"], "MedFusion")
    assert dependencies._callWithSupported(new_api, ["a"], prompt_install=False) == (["a"], {"prompt_install": False})


def test_the_library_is_found_from_a_source_checkout():
    assert dependencies.libraryRoot() == ROOT


# --- batch script -----------------------------------------------------------------------------------------
def _batch(*args, cwd):
    return subprocess.run([sys.executable, BATCH, *args], cwd=cwd, capture_output=True, text=True, timeout=300)


def test_batch_script_self_test(tmp_path):
    run = _batch("--self-test", cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert "self-test passed (3 fusions checked)" in run.stdout


def test_batch_script_fuses_files_and_writes_metrics(tmp_path, phantom3d):
    scene = bridge.new_scene()
    nodes = sampledata.phantomVolumes(scene, arrays=phantom3d)
    paths = {}
    for name in ("MRI", "PET"):
        paths[name] = str(tmp_path / f"{name}.nrrd")
        bridge.save_volume(nodes[name], paths[name])
    out, table = tmp_path / "fused.nrrd", tmp_path / "metrics.csv"
    run = _batch(paths["MRI"], paths["PET"], "-o", str(out), "-m", "laplacian", "-p", "levels=3", "--colormap", "pet",
                 "--metrics", str(table), cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    check_scene = bridge.new_scene()
    fused = bridge.load_volume(str(out), check_scene)
    inputs = [bridge.load_volume(paths[n], check_scene) for n in ("MRI", "PET")]
    assert checks.fusionProblems(fused, inputs, "pet") == []
    with open(table, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 1 and rows[0]["Method"] == "laplacian" and "levels=3" in rows[0]["Parameters"]
    assert float(rows[0]["SSIM"]) > 0


def test_batch_script_exit_codes(tmp_path):
    assert _batch("only-one.nrrd", cwd=tmp_path).returncode == 2
    assert _batch("--no-such-option", cwd=tmp_path).returncode == 2
    missing = _batch("a.nrrd", "b.nrrd", "-o", str(tmp_path / "x.nrrd"), cwd=tmp_path)
    assert missing.returncode == 1 and "no such file" in missing.stderr
    scene = bridge.new_scene()
    a = sampledata.volumeFromArray(scene, np.arange(4 * 16 * 16, dtype=np.float32).reshape(4, 16, 16), "a")
    bridge.save_volume(a, str(tmp_path / "a.nrrd"))
    bad = _batch(str(tmp_path / "a.nrrd"), str(tmp_path / "a.nrrd"), "-o", str(tmp_path / "x.nrrd"),
                 "-p", "levels=99", cwd=tmp_path)
    assert bad.returncode == 1 and "levels" in bad.stderr
    assert not (tmp_path / "x.nrrd").exists()


@pytest.mark.parametrize("stop_at", (0.3, 0.9))
def test_cancel_during_metrics_leaves_a_chosen_output_node_untouched(logic, volumes, scene, stop_at):
    """A chosen output node with data keeps its data, geometry and name when the call is cancelled while
    fusing or while computing metrics; the finished call fills it (issue: metrics ran after writing)."""
    out = logic.process(volumes["MRI"], [volumes["PET"]], "average", mode="slices", showResult=False).outputVolume
    before = slicer.util.arrayFromVolume(out).copy()
    name, count = out.GetName(), _node_count(scene)
    token = MedFusionLib.CancelToken()
    seen = []

    def progress(fraction, message):
        seen.append(message)
        if fraction >= stop_at:
            token.cancel()

    with pytest.raises(FusionCancelled):
        logic.process(volumes["MRI"], [volumes["PET"]], "max", mode="slices", outputVolume=out,
                      computeMetrics=True, showResult=False, progress=progress, cancel=token)
    assert any(m.startswith("metrics") for m in seen) == (stop_at > 0.5)
    np.testing.assert_array_equal(slicer.util.arrayFromVolume(out), before)
    assert out.GetName() == name and _node_count(scene) == count
    done = logic.process(volumes["MRI"], [volumes["PET"]], "max", mode="slices", outputVolume=out,
                         computeMetrics=True, showResult=False)
    assert done.outputVolume is out and _node_count(scene) == count + 1      # + the metrics table
    assert not np.array_equal(slicer.util.arrayFromVolume(out), before) and done.metrics


def test_display_keeps_the_users_choices(logic, volumes, scene):
    """Grey output gets the reference's window/level; the overlay keeps a colour table the user chose and
    reports the previous one for restoring; without the overlay no input display node changes."""
    mri, pet = volumes["MRI"], volumes["PET"]
    for node in (mri, pet):
        if node.GetDisplayNode() is None:
            node.CreateDefaultDisplayNodes()
    original = {n: (n.GetDisplayNode().GetAutoWindowLevel(), n.GetDisplayNode().GetColorNodeID()) for n in (mri, pet)}
    mri.GetDisplayNode().SetAutoWindowLevel(False)
    mri.GetDisplayNode().SetWindowLevel(123.0, 45.0)                     # a preset
    user_table = scene.AddNewNodeByClass("vtkMRMLColorTableNode", "PET-Heat")
    user_table.SetTypeToRed()
    pet.GetDisplayNode().SetAndObserveColorNodeID(user_table.GetID())
    before = {n.GetID(): (n.GetDisplayNode().GetColorNodeID(), n.GetDisplayNode().GetWindow(),
                          n.GetDisplayNode().GetLevel(), n.GetDisplayNode().GetMTime()) for n in (mri, pet)}
    plain = logic.process(mri, [pet], "max", showResult=True, showOverlay=False)
    out = plain.outputVolume.GetDisplayNode()
    assert not out.GetAutoWindowLevel() and (out.GetWindow(), out.GetLevel()) == (123.0, 45.0)
    after = {n.GetID(): (n.GetDisplayNode().GetColorNodeID(), n.GetDisplayNode().GetWindow(),
                         n.GetDisplayNode().GetLevel(), n.GetDisplayNode().GetMTime()) for n in (mri, pet)}
    assert after == before                                                 # inputs untouched
    overlaid = logic.process(mri, [pet], "max", showResult=True, showOverlay=True)
    assert pet.GetDisplayNode().GetColorNodeID() == user_table.GetID()      # the user's table is kept
    assert overlaid.display["overlayPreviousColourNodeID"] == user_table.GetID()
    # An explicitly chosen overlay map replaces it; restoring puts the user's table back.
    chosen = logic.process(mri, [pet], "max", showResult=True, showOverlay=True, overlayColourMap="pet")
    assert pet.GetDisplayNode().GetColorNodeID() == display.colourNodeID(scene, "pet")
    display.restoreColourMap(pet, chosen.display["overlayPreviousColourNodeID"])
    assert pet.GetDisplayNode().GetColorNodeID() == user_table.GetID()
    for node, (auto, colour_id) in original.items():         # the module-scoped volumes as they were
        node.GetDisplayNode().SetAutoWindowLevel(auto)
        node.GetDisplayNode().SetAndObserveColorNodeID(colour_id)


def test_default_inputs_are_filtered_by_exact_class(logic, scene, phantom3d):
    """Auto-selection never picks what the selectors hide: label maps, DTI/DWI, non-RGB vector volumes."""
    def add(class_name, name, array):
        node = scene.AddNewNodeByClass(class_name, name)
        slicer.util.updateVolumeFromArray(node, array)
        return node

    assert logic.defaultInputs(scene) == (None, None)
    add("vtkMRMLLabelMapVolumeNode", "labels", np.zeros((4, 5, 6), np.uint8))
    add("vtkMRMLDiffusionWeightedVolumeNode", "dwi", np.zeros((4, 5, 6, 3), np.float32))
    add("vtkMRMLVectorVolumeNode", "displacement", np.zeros((4, 5, 6, 3), np.float32))
    assert logic.defaultInputs(scene) == (None, None)
    rgb = add("vtkMRMLVectorVolumeNode", "rgb pet", np.zeros((4, 5, 6, 3), np.uint8))
    assert logic.defaultInputs(scene) == (None, rgb)              # an RGB image may be the functional input
    mri = add("vtkMRMLScalarVolumeNode", "mri", phantom3d["mri"][:4, :5, :6])
    assert logic.defaultInputs(scene) == (mri, rgb)
    scene.RemoveNode(rgb)
    pet = add("vtkMRMLScalarVolumeNode", "pet", phantom3d["pet"][:4, :5, :6])
    assert logic.defaultInputs(scene) == (mri, pet)


def test_a_chosen_output_node_gets_the_fused_image_marks(logic, volumes):
    target = logic.process(volumes["MRI"], [volumes["PET"]], "average", showResult=False).outputVolume
    target.SetAttribute("MedFusion.Method", "stale")
    done = logic.process(volumes["MRI"], [volumes["PET"]], "max", outputVolume=target, computeMetrics=True,
                         showResult=False)
    assert done.outputVolume is target and target.GetAttribute("MedFusion.Method") == "max"
    assert "for display, not for quantitative measurement" in target.GetDescription()


def test_pip_never_replaces_the_installed_pytorch():
    """After PyTorch Utils, the other packages install with the installed torch pinned as a constraint."""
    import importlib.metadata

    def versions(table):
        def versionOf(name):
            if name not in table:
                raise importlib.metadata.PackageNotFoundError(name)
            return table[name]
        return versionOf

    assert dependencies.torchConstraint(versions({"torch": "2.4.1+cu121"})) == "torch==2.4.1+cu121"
    assert dependencies.torchConstraint(versions({})) is None
    args = dependencies.requirementsPipArguments(["monai>=1.3", "scipy>=1.10"], "/tmp/c.txt")
    assert args == ["monai>=1.3", "scipy>=1.10", "--constraint", "/tmp/c.txt"]
    assert dependencies.requirementsPipArguments(["monai>=1.3"], None) == ["monai>=1.3"]
    # The constraint is an exact pin that a CUDA local version satisfies and a PyPI upgrade does not.
    from packaging.requirements import Requirement

    pin = Requirement(dependencies.torchConstraint(versions({"torch": "2.4.1+cu121"})))
    assert pin.specifier.contains("2.4.1+cu121") and not pin.specifier.contains("2.5.0")
