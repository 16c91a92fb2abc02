"""The adversarial fusion methods (FusionGAN, DDcGAN, MGMDcGAN, tissue-aware cGAN): training recipes (a few
steps on a tiny synthetic pair folder), the shipped weights through the registry (2-D, slice-wise 3-D, N
inputs, dependence on every input, black background), weight round trip, fine-tuning, bad input, the
tissue label map, DDcGAN's low-resolution mode and colour output."""

import csv
import os

import numpy as np
import pytest
import torch

import MedFusionLib as mf  # noqa: E402
from fusion_checks import check_keeps_anatomy_under_bright_function, check_keeps_hot_spot_and_anatomy  # noqa: E402
from MedFusionLib import FusionInputError, colour
from MedFusionLib.deep import networks_adversarial as A
from MedFusionLib.deep.recipes import RECIPES, TrainConfig, train
from MedFusionLib.deep.weights import PACKAGE_WEIGHTS, load_model, read_weights, save_weights, weights_meta

GANS = ("fusiongan", "ddcgan", "mgmdcgan", "tissue_cgan")
FOLDING = ("fusiongan", "ddcgan", "mgmdcgan")          # two-source nets folded over N inputs
DISCRIMINATOR_COLUMNS = {"fusiongan": ("d",), "ddcgan": ("d1", "d2"), "mgmdcgan": ("d1", "d2", "d3"),
                         "tissue_cgan": ("d",)}
UNIT = dict(input_ranges=(0, 1), output_range="unit", device="cpu")


def _config(method, out, grey_pair_folder, **kw):
    base = dict(method=method, out=out, data=[grey_pair_folder], steps=len(RECIPES[method].phases) + 1, batch_size=2,
                patch=32, phantoms=0, natural=False, show_progress=False)
    base.update(kw)
    return TrainConfig(**base)


# --- registry and shipped weights -------------------------------------------------------------------------
def test_registered_with_device_inputs_references_and_small_weights():
    specs = {s.name: s for s in mf.methods("deep learning")}
    for name in GANS:
        spec = specs[name]
        assert spec.param("device").choices == ("auto", "cpu", "cuda") and spec.dims == (2,)
        assert spec.reference and spec.summary
        assert spec.min_inputs == 2 and spec.max_inputs == (2 if name == "tissue_cgan" else None)
        path = os.path.join(PACKAGE_WEIGHTS, f"{name}.pt")
        assert os.path.getsize(path) <= 5 * 2 ** 20
        meta = weights_meta(name)
        assert meta["command"].startswith(f"medfusion train {name}") and "wall_seconds" in meta
        assert meta["data"]["split"] == "train"


# --- training -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("method", GANS)
def test_recipe_trains_deterministically_and_logs_every_discriminator(method, tmp_path, grey_pair_folder):
    log = str(tmp_path / "log.csv")
    meta = train(_config(method, str(tmp_path / "a.pt"), grey_pair_folder, log=log))
    with open(log, newline="") as fh:
        rows = list(csv.DictReader(fh))
    for column in ("loss", "g_adv", "content") + DISCRIMINATOR_COLUMNS[method]:
        # Every discriminator's loss is logged (MGMDcGAN: d1, d2 in its first phase, d3 in its second).
        assert column in rows[0] and any(np.isfinite(float(r[column])) for r in rows if r[column])
    assert all(np.isfinite(v) for v in meta["final_losses"].values())
    again = train(_config(method, str(tmp_path / "b.pt"), grey_pair_folder))
    assert again["final_losses"] == meta["final_losses"]
    a, b = read_weights(str(tmp_path / "a.pt"), method), read_weights(str(tmp_path / "b.pt"), method)
    assert a["state_dict"].keys() == b["state_dict"].keys()
    assert all(torch.equal(a["state_dict"][k], b["state_dict"][k]) for k in a["state_dict"])
    other = train(_config(method, str(tmp_path / "c.pt"), grey_pair_folder, seed=1))
    c = read_weights(str(tmp_path / "c.pt"), method)
    assert any(not torch.equal(a["state_dict"][k], c["state_dict"][k]) for k in a["state_dict"])
    assert other["seed"] == 1


def test_fine_tuning_starts_from_the_shipped_weights(tmp_path, grey_pair_folder):
    for method in GANS:
        shipped = os.path.join(PACKAGE_WEIGHTS, f"{method}.pt")
        out = str(tmp_path / f"{method}.pt")
        steps = len(RECIPES[method].phases)
        meta = train(_config(method, out, grey_pair_folder, init=shipped, steps=steps, lr=1e-7))
        before, after = read_weights(shipped, method), read_weights(out, method)
        assert before["arch"] == after["arch"] and meta["init"] == shipped
        for k, v in before["state_dict"].items():
            torch.testing.assert_close(after["state_dict"][k], v, rtol=0, atol=1e-4)


@pytest.mark.parametrize("method, options, message", [
    ("fusiongan", {"d_steps": "0"}, "d_steps must be positive"),
    ("fusiongan", {"xi": "-1"}, "xi must be non-negative"),
    ("fusiongan", {"intensity": "min"}, "must be one of"),
    ("ddcgan", {"resolution": "quarter"}, "must be one of"),
    ("ddcgan", {"lam": "0"}, "lam must be positive"),
    ("mgmdcgan", {"background": "1.5"}, "background must be in"),
    ("tissue_cgan", {"w_ssim": "-0.1"}, "w_ssim must be non-negative"),
    ("tissue_cgan", {"nonsense": "1"}, "has no option"),
])
def test_bad_recipe_options_are_refused(method, options, message, tmp_path, grey_pair_folder):
    with pytest.raises(FusionInputError, match=message):
        train(_config(method, str(tmp_path / "x.pt"), grey_pair_folder, options=options))
    assert not os.path.exists(tmp_path / "x.pt")


def test_gan_patches_must_fit_the_discriminators(tmp_path, grey_pair_folder):
    with pytest.raises(FusionInputError, match="multiple of 8"):
        train(_config("fusiongan", str(tmp_path / "x.pt"), grey_pair_folder, patch=36))
    with pytest.raises(FusionInputError, match="multiple of 32"):
        train(_config("ddcgan", str(tmp_path / "x.pt"), grey_pair_folder, patch=48, options={"resolution": "low"}))


# --- DDcGAN's low-resolution mode --------------------------------------------------------------------------
def test_ddcgan_low_resolution_mode_trains_and_fuses_a_quarter_size_functional_image(tmp_path, grey_pair_folder, slices):
    out = str(tmp_path / "ddcgan_low.pt")
    meta = train(_config("ddcgan", out, grey_pair_folder, steps=2, options={"resolution": "low"}))
    assert meta["options"]["resolution"] == "low" and "average pooling by 4" in meta["loss"]
    net = load_model("ddcgan", torch.device("cpu"), out)
    assert net.arch["scale"] == 4
    mri = torch.from_numpy(slices["mri"][3])[None, None]
    pet = torch.from_numpy(slices["pet"][3])[None, None]               # 48 x 40
    low = A.downsample(pet, 4)
    assert low.shape[2:] == (12, 10)
    sources = torch.cat([mri, pet], 1)
    with torch.no_grad():
        fused = net(sources, low)
        assert fused.shape == mri.shape and torch.isfinite(fused).all()
        # Equal-size inputs: the network average-pools the functional image by 4 itself.
        torch.testing.assert_close(net(sources), fused, rtol=0, atol=0)
        with pytest.raises(FusionInputError, match="1/4 of the anatomical image"):
            net(sources, pet[:, :, :24, :20])
    # Through the registry (equal sizes) with these weights.
    os.environ["MEDFUSION_WEIGHTS_DIR"] = str(tmp_path)
    try:
        os.replace(out, str(tmp_path / "ddcgan.pt"))
        out2d = mf.fuse([slices["mri"][3], slices["pet"][3]], method="ddcgan", **UNIT)
        np.testing.assert_allclose(out2d, fused[0, 0].clamp(0, 1).numpy(), atol=1e-5)
    finally:
        del os.environ["MEDFUSION_WEIGHTS_DIR"]
    equal = A.DDcGANGenerator()
    with pytest.raises(FusionInputError, match="equal resolution"):
        equal(sources, low)


# --- shipped weights through the registry ---------------------------------------------------------------------
@pytest.mark.parametrize("method", GANS)
def test_2d_3d_and_n_inputs(method, slices):
    mri, pet, ct = slices["mri"], slices["pet"], slices["ct"]
    fused2d = mf.fuse([mri[3], pet[3]], method=method, **UNIT)
    assert fused2d.shape == mri[3].shape and fused2d.dtype == np.float32
    assert np.isfinite(fused2d).all() and 0 <= fused2d.min() and fused2d.max() <= 1 and fused2d.std() > 0.01
    np.testing.assert_array_equal(fused2d, mf.fuse([mri[3], pet[3]], method=method, **UNIT))
    fused3d = mf.fuse([mri, pet], method=method, batch_size=5, **UNIT)
    assert fused3d.shape == mri.shape
    for k in (0, 3, 7):
        np.testing.assert_allclose(fused3d[k], mf.fuse([mri[k], pet[k]], method=method, **UNIT), atol=2e-5)
    if method in FOLDING:
        fused3 = mf.fuse([mri[3], pet[3], ct[3]], method=method, **UNIT)
        assert fused3.shape == mri[3].shape and np.isfinite(fused3).all()
        # Folded in input order: fuse(fuse(S1, S2), S3).
        np.testing.assert_allclose(fused3, mf.fuse([fused2d, ct[3]], method=method, **UNIT), atol=2e-5)
    else:
        with pytest.raises(FusionInputError, match="exactly 2"):
            mf.fuse([mri[3], pet[3], ct[3]], method=method, **UNIT)


@pytest.mark.parametrize("method", GANS)
def test_output_depends_on_every_input(method, slices):
    images = [slices[k][3].copy() for k in ("mri", "pet")]
    base = mf.fuse(images, method=method, **UNIT)
    for k in range(2):
        changed = [im.copy() for im in images]
        changed[k][10:22, 10:22] = 1.0 - changed[k][10:22, 10:22]
        diff = np.abs(mf.fuse(changed, method=method, **UNIT) - base)
        assert diff[10:22, 10:22].mean() > 0.01, f"{method} ignores input {k}"


@pytest.mark.parametrize("method", GANS)
def test_output_is_a_copy_of_neither_input(method, slices):
    check_keeps_hot_spot_and_anatomy(method, slices["mri"][3], slices["pet"][3].copy(), **UNIT)
    # Pixel max (a network replaced by np.maximum) fails this one.
    check_keeps_anatomy_under_bright_function(method, slices["mri"][3], slices["pet"][3].copy(), **UNIT)


@pytest.mark.parametrize("method", GANS)
def test_black_background_stays_black(method, slices):
    mri, pet = slices["mri"][3].copy(), slices["pet"][3].copy()
    mri[:, :24] = 0
    pet[:, :24] = 0
    fused = mf.fuse([mri, pet], method=method, **UNIT)
    # Bias-free generators: a zero region, beyond the receptive field (radius <= 12 px) of its border,
    # fuses to exactly 0.
    assert np.all(fused[:, :8] == 0)
    assert np.all(mf.fuse([np.zeros((32, 32), np.float32)] * 2, method=method, **UNIT) == 0)


@pytest.mark.parametrize("method", GANS)
def test_weights_round_trip(method, tmp_path):
    net = load_model(method, torch.device("cpu"))
    path = str(tmp_path / f"{method}.pt")
    save_weights(path, method, net, {"command": f"medfusion train {method} ...", "seed": 0})
    loaded = load_model(method, torch.device("cpu"), path)
    x = torch.rand(2, 2, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), net(x), rtol=0, atol=0)
    assert type(loaded) is type(net) and loaded.arch == net.arch


# --- tissue label map and colour ------------------------------------------------------------------------------
def test_tissue_map_is_deterministic_and_ordered_by_intensity():
    rng = np.random.default_rng(0)
    truth = np.zeros((64, 64), np.int64)
    truth[8:56, 8:56] = 1          # a dark ring (CSF)
    truth[14:50, 14:50] = 2        # grey matter
    truth[24:40, 24:40] = 3        # white matter
    means = np.array([0.0, 0.25, 0.5, 0.8])
    image = means[truth] + np.where(truth > 0, rng.normal(0, 0.03, truth.shape), 0.0)
    x = torch.from_numpy(image.astype(np.float32))[None, None]
    labels = A.tissue_labels(x)
    assert labels.dtype == torch.int64 and labels.shape == x.shape
    np.testing.assert_array_equal(labels[0, 0].numpy(), truth)
    torch.testing.assert_close(A.tissue_labels(x), labels, rtol=0, atol=0)      # deterministic
    # A batch: each image segmented on its own, labels follow intensity order even when the classes move.
    brighter = torch.from_numpy((means[truth] * 0.6 + 0.3 * (truth > 0)).astype(np.float32))[None, None]
    both = A.tissue_labels(torch.cat([x, brighter]))
    np.testing.assert_array_equal(both[1, 0].numpy(), truth)
    np.testing.assert_array_equal(both[0, 0].numpy(), truth)
    onehot = A.tissue_onehot(labels)
    assert onehot.shape == (1, 3, 64, 64) and torch.all(onehot[:, :, truth == 0] == 0)


def test_dense_structure_mask_is_the_bright_class():
    image = torch.zeros(1, 1, 32, 32)
    image[..., 4:28, 4:28] = 0.3
    image[..., 10:20, 10:20] = 0.9
    mask = A.dense_structure_mask(image)
    assert mask.sum() == 100 and torch.all(mask[..., 10:20, 10:20] == 1)


def test_tissue_cgan_colour_output_keeps_the_pet_chroma(slices):
    mri = slices["mri"][3]
    pet_rgb = colour.apply_colormap(slices["pet"][3], "hot")
    out = mf.fuse([mri, pet_rgb], method="tissue_cgan", device="cpu")
    assert out.shape == mri.shape + (3,) and out.dtype == np.uint8
    _, chroma_in = colour.rgb_to_luma_chroma(pet_rgb)
    luma_out, chroma_out = colour.rgb_to_luma_chroma(out)
    unclipped = (out.max(axis=-1) < 250) & (out.min(axis=-1) > 5)
    assert unclipped.mean() > 0.1
    assert np.abs(chroma_out - chroma_in)[unclipped].mean() < 1.5
    via_map = mf.fuse([mri, slices["pet"][3]], method="tissue_cgan", colormap="pet", device="cpu",
                      input_ranges=[(0, 1), (0, 1)])
    assert via_map.shape == mri.shape + (3,) and via_map.dtype == np.uint8
