"""The learned fusion methods with their shipped weights: shapes, 3-D slice-wise, N inputs, determinism,
dependence on every input, the CNN weight map, device and weight errors, lazy torch import."""

import os
import subprocess
import sys

import numpy as np
import pytest
import torch                      # a required dependency: imported, never skipped

import MedFusionLib as mf
from fusion_checks import check_keeps_anatomy_under_bright_function, check_keeps_hot_spot_and_anatomy
from MedFusionLib import FusionInputError, WeightsError
from MedFusionLib.deep.weights import PACKAGE_WEIGHTS, TRAIN_COMMANDS, weights_meta

LEARNED = ("cnn_weight_map", "dscnn", "ifcnn", "pmgi", "fusiondn", "u2fusion")


def test_registered_with_device_parameter_and_references():
    specs = {s.name: s for s in mf.methods("deep learning")}
    assert set(LEARNED) <= set(specs)
    for name in LEARNED:
        spec = specs[name]
        device = spec.param("device")
        assert device.kind == "choice" and device.choices == ("auto", "cpu", "cuda") and device.default == "auto"
        assert spec.reference and spec.min_inputs == 2 and spec.max_inputs is None
        assert os.path.exists(os.path.join(PACKAGE_WEIGHTS, f"{name}.pt"))
        assert os.path.getsize(os.path.join(PACKAGE_WEIGHTS, f"{name}.pt")) <= 5 * 2 ** 20
        meta = weights_meta(name)
        assert meta["command"].startswith(f"medfusion train {name}") and "wall_seconds" in meta


@pytest.mark.parametrize("method", LEARNED)
def test_2d_3d_and_n_inputs(method, slices):
    mri, pet, ct = slices["mri"], slices["pet"], slices["ct"]
    unit = dict(input_ranges=(0, 1), output_range="unit", device="cpu")
    fused2d = mf.fuse([mri[3], pet[3]], method=method, **unit)
    assert fused2d.shape == mri[3].shape and fused2d.dtype == np.float32
    assert np.isfinite(fused2d).all() and 0 <= fused2d.min() and fused2d.max() <= 1 and fused2d.std() > 0.01
    # Deterministic.
    np.testing.assert_array_equal(fused2d, mf.fuse([mri[3], pet[3]], method=method, **unit))
    # Slice-wise on a volume, slices batched: each slice is what 2-D fusion of it gives.
    fused3d = mf.fuse([mri, pet], method=method, batch_size=5, **unit)
    assert fused3d.shape == mri.shape
    np.testing.assert_allclose(fused3d[3], fused2d, atol=2e-5)
    # Three inputs.
    fused3 = mf.fuse([mri[3], pet[3], ct[3]], method=method, **unit)
    assert fused3.shape == mri[3].shape and np.isfinite(fused3).all()


@pytest.mark.parametrize("method", LEARNED)
def test_output_depends_on_every_input(method, slices):
    images = [slices[k][3].copy() for k in ("mri", "pet", "ct")]
    unit = dict(input_ranges=(0, 1), output_range="unit", device="cpu")
    base = mf.fuse(images, method=method, **unit)
    for k in range(3):
        changed = [im.copy() for im in images]
        changed[k][10:22, 10:22] = 1.0 - changed[k][10:22, 10:22]   # a local change in input k only
        diff = np.abs(mf.fuse(changed, method=method, **unit) - base)
        assert diff[10:22, 10:22].mean() > 0.01, f"{method} ignores input {k}"
        assert diff[30:, 30:].mean() < diff[10:22, 10:22].mean()    # and the change stays local


@pytest.mark.parametrize("method", LEARNED)
def test_behavioural_floor_that_averaging_and_pixel_max_fail(method, slices):
    """A network replaced by the average of its inputs (weights still loaded) fails the hot-spot check; one
    replaced by pixel max fails the anatomy-under-a-bright-region check (fusion_checks.py)."""
    unit = dict(input_ranges=(0, 1), output_range="unit", device="cpu")
    check_keeps_hot_spot_and_anatomy(method, slices["mri"][3], slices["pet"][3].copy(), **unit)
    check_keeps_anatomy_under_bright_function(method, slices["mri"][3], slices["pet"][3].copy(), **unit)


def test_ifcnn_rules_differ(slices):
    a, b = slices["mri"][3], slices["pet"][3]
    results = {r: mf.fuse([a, b], method="ifcnn", rule=r, input_ranges=(0, 1), output_range="unit") for r in ("max", "mean", "sum")}
    assert not np.allclose(results["max"], results["mean"]) and not np.allclose(results["mean"], results["sum"])


def test_cnn_weight_map_prefers_the_sharper_image(slices):
    from scipy import ndimage as ndi

    from MedFusionLib.families.learned_cnn import weight_map

    sharp = slices["mri"][3]
    blurred = ndi.gaussian_filter(sharp, 2.0)
    w = weight_map(sharp, blurred, device="cpu")
    assert w.shape == sharp.shape and w.dtype == np.float32 and 0 <= w.min() and w.max() <= 1
    detail = ndi.gaussian_gradient_magnitude(sharp, 1.0) > 0.05
    assert w[detail].mean() > 0.8
    swapped = weight_map(blurred, sharp, device="cpu")
    assert swapped[detail].mean() < 0.2
    batch = weight_map(np.stack([sharp, blurred]), np.stack([blurred, sharp]), device="cpu")
    np.testing.assert_allclose(batch[0], w, atol=1e-6)
    with pytest.raises(FusionInputError):
        weight_map(sharp, blurred[:-1])
    bad_nan = sharp.copy()
    bad_nan[0, 0] = np.nan
    for bad, message in ((bad_nan, "NaN"), (sharp * 255, r"\[0, 1\]"), (sharp.astype(str), "numeric")):
        with pytest.raises(FusionInputError, match=message):
            weight_map(bad, blurred)


def test_progress_reports_and_cancel(slices):
    seen = []
    mf.fuse([slices["mri"], slices["pet"]], method="u2fusion", batch_size=8, progress=lambda f, m: seen.append(m))
    assert any("u2fusion" in m for m in seen)
    token = mf.CancelToken()
    token.cancel()
    with pytest.raises(mf.FusionCancelled):
        mf.fuse([slices["mri"], slices["pet"]], method="ifcnn", cancel=token)


def test_bad_parameters_are_refused_before_work(slices):
    a, b = slices["mri"][3], slices["pet"][3]
    with pytest.raises(FusionInputError, match="rule"):
        mf.fuse([a, b], method="ifcnn", rule="median")
    with pytest.raises(FusionInputError, match="window"):
        mf.fuse([a, b], method="dscnn", window=4)
    with pytest.raises(FusionInputError, match="levels"):
        mf.fuse([a, b], method="cnn_weight_map", levels=9)
    with pytest.raises(FusionInputError, match="device"):
        mf.fuse([a, b], method="pmgi", device="tpu")
    with pytest.raises(FusionInputError, match="no parameter"):
        mf.fuse([a, b], method="u2fusion", levels=3)


@pytest.mark.parametrize("method", LEARNED)
def test_missing_or_corrupt_weights_name_the_training_command(method, slices, tmp_path, monkeypatch):
    a, b = slices["mri"][3], slices["pet"][3]
    monkeypatch.setenv("MEDFUSION_WEIGHTS_DIR", str(tmp_path))
    with pytest.raises(WeightsError) as missing:
        mf.fuse([a, b], method=method)
    assert TRAIN_COMMANDS[method] in str(missing.value)
    (tmp_path / f"{method}.pt").write_bytes(b"not a torch file")
    with pytest.raises(WeightsError, match="cannot be read") as corrupt:
        mf.fuse([a, b], method=method)
    assert f"medfusion train {method}" in str(corrupt.value)
    # Weights of another method under this name are refused too.
    other = "ifcnn" if method != "ifcnn" else "pmgi"
    (tmp_path / f"{method}.pt").write_bytes(open(os.path.join(PACKAGE_WEIGHTS, f"{other}.pt"), "rb").read())
    with pytest.raises(WeightsError, match=f"not '{method}'"):
        mf.fuse([a, b], method=method)


def test_weights_with_wrong_shapes_are_refused(tmp_path, monkeypatch, slices):
    from MedFusionLib.deep.networks import IFCNNNet
    from MedFusionLib.deep.weights import save_weights

    save_weights(str(tmp_path / "ifcnn.pt"), "ifcnn", IFCNNNet(channels=8))
    payload = torch.load(tmp_path / "ifcnn.pt", weights_only=True)
    payload["arch"]["channels"] = 16            # the file now lies about its tensors
    torch.save(payload, tmp_path / "ifcnn.pt")
    (tmp_path / "ifcnn.json").unlink()          # no recorded digest: the structural check is what refuses it
    monkeypatch.setenv("MEDFUSION_WEIGHTS_DIR", str(tmp_path))
    with pytest.raises(WeightsError, match="do not fit"):
        mf.fuse([slices["mri"][3], slices["pet"][3]], method="ifcnn")


def test_import_and_classical_methods_do_not_load_torch():
    code = ("import sys, numpy as np, MedFusionLib as mf\n"
            "names = [s.name for s in mf.methods()]\n"
            "assert 'u2fusion' in names\n"
            "mf.fuse([np.eye(8), np.ones((8, 8))], method='laplacian', levels=2)\n"
            "assert 'torch' not in sys.modules, 'torch was imported'\n")
    subprocess.run([sys.executable, "-c", code], check=True)

