"""The encoder-decoder methods (``unet_fusion``, ``mcfnet``): their networks (bias-free, any image size,
3-D variants), their recipes (a few seeded steps on a tiny synthetic pair folder, options, fine-tuning)
and the shipped weights through the public API (2-D, slice-wise 3-D, three inputs, every input used).
Nothing here needs ../shared or a GPU."""

import os

import numpy as np
import pytest
import torch

import MedFusionLib as mf  # noqa: E402
from fusion_checks import check_keeps_anatomy_under_bright_function, check_keeps_hot_spot_and_anatomy  # noqa: E402
from MedFusionLib import FusionInputError
from MedFusionLib.deep.networks_encoder_decoder import MCFNet, UNetFusionNet, pad_to_multiple
from MedFusionLib.deep.recipes import RECIPES, TrainConfig, train
from MedFusionLib.deep.weights import PACKAGE_WEIGHTS, load_model, read_weights, save_weights, weights_meta

METHODS = ("unet_fusion", "mcfnet")
UNIT = dict(input_ranges=(0, 1), output_range="unit", device="cpu")


def _config(method, out, grey_pair_folder, **kw):
    base = dict(method=method, out=out, data=[grey_pair_folder], steps=2, batch_size=2, patch=32, phantoms=0,
                natural=False, show_progress=False)
    base.update(kw)
    return TrainConfig(**base)


# --- networks -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("make", [lambda sd: UNetFusionNet(sd, features=(4, 4, 8, 8, 8, 4)),
                                  lambda sd: UNetFusionNet(sd, features=(4, 4, 8, 8, 8, 4), attention=True),
                                  lambda sd: MCFNet(sd, channels=(4, 8, 8)),
                                  lambda sd: MCFNet(sd, channels=(4, 8), shared=True, upsampling="deconv")],
                         ids=["unet", "attention_unet", "mcfnet", "mcfnet_shared_deconv"])
def test_networks_are_bias_free_any_size_and_3d(make):
    torch.manual_seed(0)
    for sd, shape in ((2, (250, 190)), (2, (32, 32)), (3, (10, 12, 9)), (3, (16, 16, 16))):
        net = make(sd).eval()
        assert net.spatial_dims == sd and net.arch["spatial_dims"] == sd
        assert not [n for n, _ in net.named_parameters() if n.endswith("bias")]
        assert not [m for m in net.modules() if isinstance(m, (torch.nn.BatchNorm2d, torch.nn.BatchNorm3d,
                                                               torch.nn.InstanceNorm2d, torch.nn.InstanceNorm3d))]
        with torch.no_grad():
            x = torch.rand((2, 2) + shape)
            y = net(x)
            assert y.shape == (2, 1) + shape and torch.isfinite(y).all() and y.std() > 0
            assert net(torch.zeros_like(x)).abs().max() == 0          # black in, black out, exactly
            # Bias-free and piecewise linear (ReLU / LeakyReLU): scale-equivariant, except for the
            # attention gates' sigmoid.
            if not net.arch.get("attention"):
                torch.testing.assert_close(net(3 * x), 3 * y, rtol=1e-4, atol=1e-5)


def test_padding_is_undone_exactly():
    x = torch.rand(1, 2, 25, 19)
    padded, crop = pad_to_multiple(x, 16)
    assert padded.shape == (1, 2, 32, 32) and torch.equal(padded[crop], x)
    same, crop = pad_to_multiple(torch.rand(1, 1, 32, 16), 16)
    assert same.shape == (1, 1, 32, 16)
    small, crop = pad_to_multiple(torch.rand(1, 1, 3, 5), 16)       # too small to mirror: replicated
    assert small.shape == (1, 1, 16, 16) and small[crop].shape == (1, 1, 3, 5)


def test_bad_network_arguments():
    with pytest.raises(ValueError, match="six"):
        UNetFusionNet(features=(4, 4, 8))
    with pytest.raises(ValueError, match="upsampling"):
        MCFNet(upsampling="nearest")
    with pytest.raises(ValueError, match="two"):
        MCFNet(channels=(8,))


# --- recipes --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("method", METHODS)
def test_recipe_trains_a_few_seeded_steps(method, tmp_path, grey_pair_folder):
    out = str(tmp_path / f"{method}.pt")
    meta = train(_config(method, out, grey_pair_folder, log=str(tmp_path / "log.csv")))
    payload = read_weights(out, method)
    assert payload["network"] == ("UNetFusionNet" if method == "unet_fusion" else "MCFNet")
    assert sum(meta["steps"].values()) == 2 and meta["data"]["held_out"]
    assert {"loss", "ssim", "intensity", "gradient"} <= set(meta["final_losses"])
    assert all(np.isfinite(v) for v in meta["final_losses"].values())
    again = train(_config(method, str(tmp_path / "again.pt"), grey_pair_folder))
    assert again["final_losses"] == meta["final_losses"]
    second = read_weights(str(tmp_path / "again.pt"), method)["state_dict"]
    assert payload["state_dict"].keys() == second.keys()
    assert all(torch.equal(payload["state_dict"][k], second[k]) for k in second)
    other = train(_config(method, str(tmp_path / "other.pt"), grey_pair_folder, seed=1))
    assert other["final_losses"] != meta["final_losses"]


def test_unet_attention_is_a_recipe_option_stored_in_the_arch(tmp_path, grey_pair_folder):
    meta = train(_config("unet_fusion", str(tmp_path / "att.pt"), grey_pair_folder, steps=1,
                         options={"attention": "true", "channels": "8,8,16,16,16,8"}))
    payload = read_weights(str(tmp_path / "att.pt"), "unet_fusion")
    assert meta["options"]["attention"] is True and payload["arch"]["attention"] is True
    assert payload["arch"]["features"] == [8, 8, 16, 16, 16, 8]
    assert any("attention" in k for k in payload["state_dict"])          # MONAI's attention gates
    net = load_model("unet_fusion", torch.device("cpu"), str(tmp_path / "att.pt"))
    with torch.no_grad():
        assert net(torch.rand(1, 2, 40, 24)).shape == (1, 1, 40, 24)


def test_mcfnet_variants_train(tmp_path, grey_pair_folder):
    meta = train(_config("mcfnet", str(tmp_path / "v.pt"), grey_pair_folder, steps=1,
                         options={"shared": "yes", "upsampling": "deconv", "channels": "8,16"}))
    arch = read_weights(str(tmp_path / "v.pt"), "mcfnet")["arch"]
    assert arch["shared"] is True and arch["upsampling"] == "deconv" and arch["channels"] == [8, 16]
    assert all(np.isfinite(v) for v in meta["final_losses"].values())


@pytest.mark.parametrize("method, options, message", [
    ("unet_fusion", {"attention": "maybe"}, "not a valid bool"),
    ("unet_fusion", {"channels": "16,16,32"}, "6 comma-separated"),
    ("unet_fusion", {"alpha": "-1"}, ">= 0"),
    ("unet_fusion", {"depth": "3"}, "no option"),
    ("mcfnet", {"upsampling": "nearest"}, "must be one of"),
    ("mcfnet", {"channels": "16,x"}, "comma-separated"),
    ("mcfnet", {"w_ssim": "0", "alpha": "0", "beta": "0"}, "cannot all be 0"),
])
def test_bad_recipe_options_are_refused(method, options, message, tmp_path, grey_pair_folder):
    with pytest.raises(FusionInputError, match=message):
        train(_config(method, str(tmp_path / "x.pt"), grey_pair_folder, options=options, log=str(tmp_path / "x.log.csv")))
    assert not os.listdir(tmp_path)


def test_bad_patch_sizes_are_refused(tmp_path, grey_pair_folder):
    with pytest.raises(FusionInputError, match="multiple of 16"):
        train(_config("unet_fusion", str(tmp_path / "x.pt"), grey_pair_folder, patch=40))
    with pytest.raises(FusionInputError, match="at least 16"):
        train(_config("mcfnet", str(tmp_path / "x.pt"), grey_pair_folder, patch=8))
    with pytest.raises(FusionInputError, match="multiples of 8"):       # four levels: three 2x down-samplings
        train(_config("mcfnet", str(tmp_path / "x.pt"), grey_pair_folder, patch=36, options={"channels": "8,8,8,8"}))
    assert RECIPES["unet_fusion"].patch % 16 == 0 and RECIPES["mcfnet"].patch % 4 == 0


@pytest.mark.parametrize("method", METHODS)
def test_fine_tuning_starts_from_the_shipped_weights(method, tmp_path, grey_pair_folder):
    shipped = os.path.join(PACKAGE_WEIGHTS, f"{method}.pt")
    tuned = train(_config(method, str(tmp_path / "tuned.pt"), grey_pair_folder, init=shipped, batch_size=4))
    scratch = train(_config(method, str(tmp_path / "scratch.pt"), grey_pair_folder, batch_size=4))
    # The shipped network already fuses: its loss on the same batches is well below a fresh network's.
    assert tuned["final_losses"]["loss"] < 0.7 * scratch["final_losses"]["loss"]
    before, after = read_weights(shipped, method), read_weights(str(tmp_path / "tuned.pt"), method)
    assert before["arch"] == after["arch"] and after["meta"]["init"] == shipped
    assert any(not torch.equal(before["state_dict"][k], after["state_dict"][k]) for k in before["state_dict"])


@pytest.mark.parametrize("method", METHODS)
def test_weights_round_trip(method, tmp_path):
    torch.manual_seed(0)
    net = (UNetFusionNet(features=(4, 4, 8, 8, 8, 4), attention=True) if method == "unet_fusion"
           else MCFNet(channels=(4, 8), upsampling="deconv")).eval()
    path = str(tmp_path / f"{method}.pt")
    save_weights(path, method, net, {"command": f"medfusion train {method} ...", "seed": 0})
    loaded = load_model(method, torch.device("cpu"), path)
    assert loaded.arch == net.arch
    x = torch.rand(2, 2, 36, 28)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), net(x), rtol=0, atol=0)


# --- the shipped weights through the API -----------------------------------------------------------------------
def test_registered_with_shipped_weights():
    specs = {s.name: s for s in mf.methods("deep learning")}
    for name in METHODS:
        spec = specs[name]
        assert spec.dims == (2,) and spec.min_inputs == 2 and spec.max_inputs is None and spec.reference
        assert spec.param("device").choices == ("auto", "cpu", "cuda")
        path = os.path.join(PACKAGE_WEIGHTS, f"{name}.pt")
        assert os.path.getsize(path) <= 5 * 2 ** 20
        meta = weights_meta(name)
        assert meta["command"].startswith(f"medfusion train {name}") and "wall_seconds" in meta
        assert meta["data"]["split"] == "train"


@pytest.mark.parametrize("method", METHODS)
def test_2d_3d_and_n_inputs(method, slices):
    mri, pet, ct = slices["mri"], slices["pet"], slices["ct"]
    fused2d = mf.fuse([mri[3], pet[3]], method=method, **UNIT)
    assert fused2d.shape == mri[3].shape and fused2d.dtype == np.float32
    assert 0 <= fused2d.min() and fused2d.max() <= 1 and fused2d.std() > 0.01
    np.testing.assert_array_equal(fused2d, mf.fuse([mri[3], pet[3]], method=method, **UNIT))
    fused3d = mf.fuse([mri, pet], method=method, batch_size=5, **UNIT)      # slice-wise, slices batched
    assert fused3d.shape == mri.shape and fused3d.dtype == np.float32
    for k in (0, 3, 7):
        np.testing.assert_allclose(fused3d[k], mf.fuse([mri[k], pet[k]], method=method, **UNIT), atol=2e-5)
    fused3 = mf.fuse([mri[3], pet[3], ct[3]], method=method, **UNIT)
    assert fused3.shape == mri[3].shape and np.isfinite(fused3).all()
    assert not np.allclose(fused3, fused2d, atol=1e-3)


@pytest.mark.parametrize("method", METHODS)
def test_output_depends_on_every_input_and_copies_none(method, slices):
    images = [slices[k][3].copy() for k in ("mri", "pet", "ct")]
    base = mf.fuse(images, method=method, **UNIT)
    for k in range(3):
        changed = [im.copy() for im in images]
        changed[k][10:22, 10:22] = 1.0 - changed[k][10:22, 10:22]
        diff = np.abs(mf.fuse(changed, method=method, **UNIT) - base)
        assert diff[10:22, 10:22].mean() > 0.01, f"{method} ignores input {k}"
    pair = mf.fuse(images[:2], method=method, **UNIT)
    for source in images[:2]:
        assert np.abs(pair - source).mean() > 0.01


@pytest.mark.parametrize("method", METHODS)
def test_keeps_the_hot_spot_and_the_anatomy(method, slices):
    # Averaging the sources (a network replaced by the mean) fails this; the shipped networks pass it.
    check_keeps_hot_spot_and_anatomy(method, slices["mri"][3], slices["pet"][3].copy(), **UNIT)
    # Pixel max (a network replaced by np.maximum) fails this one.
    check_keeps_anatomy_under_bright_function(method, slices["mri"][3], slices["pet"][3].copy(), **UNIT)


@pytest.mark.parametrize("method", METHODS)
def test_odd_image_size_and_black_background(method, rng):
    from scipy import ndimage as ndi

    a = np.zeros((250, 190), np.float32)
    b = np.zeros((250, 190), np.float32)
    a[40:200, 30:160] = ndi.gaussian_filter(rng.random((160, 130)), 2).astype(np.float32) * 4 - 1.5
    b[60:180, 50:140] = 0.8
    a = np.clip(a, 0, 1)
    fused = mf.fuse([a, b], method=method, **UNIT)
    assert fused.shape == (250, 190) and np.isfinite(fused).all() and fused.std() > 0.05
    # The sides are mirror-padded to multiples of the down-sampling factor (U-Net 16: 256 x 192, MCFNet 4:
    # 252 x 192) and the result cropped back: with a black border the mirrored rows are black, so this is
    # exactly the fusion of the zero-padded image, cropped.
    m = 16 if method == "unet_fusion" else 4
    pad = ((0, (-250) % m), (0, (-190) % m))
    padded = mf.fuse([np.pad(a, pad), np.pad(b, pad)], method=method, **UNIT)
    np.testing.assert_allclose(fused, padded[:250, :190], atol=1e-6)
    np.testing.assert_array_equal(mf.fuse([np.zeros_like(a), np.zeros_like(b)], method=method, **UNIT), 0)
