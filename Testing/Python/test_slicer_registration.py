"""Registration in the Slicer module's logic (``register='rigid' | 'affine'``), on slicer-core's MRML classes.

The phantom of test_registration (a CT-like reference and an MR-like input moved by 5 degrees and 7 mm):
Apply with registration leaves one transform node per further input in the scene and nothing else; the
metrics score the registered inputs; the reason Apply is disabled is given for inputs that cannot be
registered; a failed or cancelled registration leaves the scene as it was; Compare registers once.
"""

import os
import sys

import numpy as np
import pytest

from MedFusionLib import bridge
from MedFusionLib.errors import FusionCancelled, FusionInputError, RegistrationError
from test_registration import F4, _errors, _from_parent, _lps, _node, make_phantom

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "MedFusion"))

from MedFusionModuleLib.logic import MedFusionLogicBase  # noqa: E402

import SimpleITK as sitk  # noqa: E402


@pytest.fixture(scope="module")
def phantom():
    return make_phantom()


@pytest.fixture
def scene():
    return bridge.new_scene()


@pytest.fixture
def pair(scene, phantom):
    ct, _, moving, _ = phantom
    return _node(scene, ct, "CT"), _node(scene, moving, "MR")


def _names(scene):
    return sorted(scene.GetNthNode(i).GetName() or "" for i in range(scene.GetNumberOfNodes()))


def test_apply_with_registration_leaves_a_transform_node_and_scores_the_registered_input(scene, pair, phantom):
    reference, moving = pair
    voxels = bridge.array_from_node(moving).copy()
    logic = MedFusionLogicBase()
    result = logic.process(reference, [moving], "average", register="rigid", computeMetrics=True, showResult=False)
    assert result.register == "rigid" and len(result.transforms) == 1
    transform = result.transforms[0]
    assert transform.IsA("vtkMRMLLinearTransformNode") and transform.GetScene() is scene
    angle, shift = _errors(F4 @ _from_parent(transform) @ F4, _lps(phantom[3]))
    assert angle < 0.5 and shift < 1.0
    assert result.outputVolume.GetNthNodeReference(bridge.REGISTRATION_ROLE, 0) is transform
    # No temporary node is left, the input is untouched (no parent transform set on it, same voxels).
    assert not [n for n in _names(scene) if n.endswith("registered")]
    assert moving.GetTransformNodeID() is None
    np.testing.assert_array_equal(bridge.array_from_node(moving), voxels)
    # The metrics are those of the registered input (what was fused), not of the input as it lies.
    proxy = bridge.registered_proxy(moving, transform)
    expected, _ = logic.computeMetrics(result.outputVolume, [reference, proxy])
    unregistered, _ = logic.computeMetrics(result.outputVolume, [reference, moving])
    assert result.metrics == pytest.approx(expected, nan_ok=True)
    assert result.metrics != pytest.approx(unregistered, nan_ok=True)


def test_a_chosen_output_node_gets_the_registration_references(scene, pair):
    reference, moving = pair
    chosen = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "chosen")
    result = MedFusionLogicBase().process(reference, [moving], "average", register="affine", computeMetrics=True,
                                          outputVolume=chosen, showResult=False)
    assert result.outputVolume is chosen
    assert chosen.GetNthNodeReference(bridge.REGISTRATION_ROLE, 0) is result.transforms[0]


def test_check_inputs_says_why_inputs_cannot_be_registered(scene, pair, phantom):
    reference, moving = pair
    logic = MedFusionLogicBase()
    assert logic.checkInputs(reference, [moving], "average", register="rigid") is None
    parent = scene.AddNewNodeByClass("vtkMRMLLinearTransformNode")
    moved = _node(scene, phantom[2], "MR2")
    moved.SetAndObserveTransformNodeID(parent.GetID())
    reason = logic.checkInputs(reference, [moved], "average", register="rigid")
    assert "parent transform" in reason and "Harden transform" in reason
    assert logic.checkInputs(reference, [moved], "average") is None          # without registration it is fine
    assert "allowed: none, rigid, affine" in logic.checkInputs(reference, [moving], "average", register="elastic")
    count = scene.GetNumberOfNodes()
    with pytest.raises(FusionInputError, match="parent transform"):
        logic.process(reference, [moved], "average", register="rigid")
    assert scene.GetNumberOfNodes() == count


def test_a_failed_or_cancelled_registration_leaves_the_scene_as_it_was(scene, phantom):
    ct = sitk.Shrink(phantom[0], [2, 2, 2])
    noise = sitk.GetImageFromArray(np.random.default_rng(0).normal(0, 1, sitk.GetArrayFromImage(ct).shape)
                                   .astype(np.float32))
    noise.CopyInformation(ct)
    reference, other = _node(scene, ct, "CT"), _node(scene, noise, "noise")
    logic = MedFusionLogicBase()
    before = _names(scene)
    with pytest.raises(RegistrationError, match="not fused"):
        logic.process(reference, [other], "average", register="rigid", computeMetrics=True)
    assert _names(scene) == before
    full, moving = _node(scene, phantom[0], "CT full"), _node(scene, phantom[2], "MR")
    before = _names(scene)
    seen = []

    def progress(fraction, message):
        seen.append(message)
        if "registering" in message and "level 2" in message:
            raise FusionCancelled("stop")

    with pytest.raises(FusionCancelled):
        logic.process(full, [moving], "average", register="rigid", progress=progress)
    assert _names(scene) == before and not any("fus" in m for m in seen[1:]), seen[-3:]


def test_compare_registers_once_and_fuses_every_method_on_the_registered_inputs(scene, pair):
    reference, moving = pair
    logic = MedFusionLogicBase()
    table, rows = logic.compareMethods(reference, [moving], ["average", "max"], register="rigid")
    assert [r.method for r in rows] == ["average", "max"] and table.GetNumberOfRows() == 2
    assert scene.GetNumberOfNodesByClass("vtkMRMLLinearTransformNode") == 1
    assert rows[0].transforms == rows[1].transforms and rows[0].inputVolumes == [reference, moving]
    assert not [n for n in _names(scene) if n.endswith("registered")]
    single = logic.process(reference, [moving], "average", register="rigid", showResult=False)
    # Two registrations of the same pair agree to about 1e-6 mm, not bit for bit (ITK's Mattes MI), which
    # moves a resampled voxel on a steep edge by up to ~1e-3 grey levels: compare to 1e-2.
    np.testing.assert_allclose(bridge.array_from_node(rows[0].outputVolume),
                               bridge.array_from_node(single.outputVolume), atol=1e-2)


def test_batch_script_registers_and_writes_the_transform_beside_the_output(tmp_path, phantom):
    import subprocess

    ct, _, moving, expected = phantom
    sitk.WriteImage(ct, str(tmp_path / "ct.nrrd"))
    sitk.WriteImage(moving, str(tmp_path / "mr.nrrd"))
    out, table = tmp_path / "fused.nrrd", tmp_path / "metrics.csv"
    script = os.path.join(ROOT, "MedFusion", "Resources", "Scripts", "fuse_batch.py")
    run = subprocess.run([sys.executable, script, str(tmp_path / "ct.nrrd"), str(tmp_path / "mr.nrrd"), "-o", str(out),
                          "-m", "average", "--register", "rigid", "--metrics", str(table)],
                         capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert run.returncode == 0, run.stderr
    assert sorted(os.listdir(tmp_path)) == ["ct.nrrd", "fused.input2.tfm", "fused.nrrd", "metrics.csv", "mr.nrrd"]
    angle, shift = _errors(_lps(sitk.ReadTransform(str(tmp_path / "fused.input2.tfm"))), _lps(expected))
    assert angle < 0.5 and shift < 1.0
    bad = subprocess.run([sys.executable, script, str(tmp_path / "ct.nrrd"), str(tmp_path / "mr.nrrd"), "-o",
                          str(tmp_path / "x.nrrd"), "--register", "elastic"], capture_output=True, text=True,
                         cwd=tmp_path, timeout=300)
    assert bad.returncode == 2 and "invalid choice: 'elastic'" in bad.stderr
