"""Colour fusion: colour maps, luminance/chroma transforms, RGB and pseudo-colour inputs."""

import numpy as np
import pytest

import MedFusionLib as mf
from MedFusionLib import colour


@pytest.mark.parametrize("name", colour.colormap_names())
def test_colormaps_are_256_entry_rgb_tables(name):
    lut = colour.colormap_lut(name)
    assert lut.shape == (256, 3) and lut.dtype == np.uint8
    assert tuple(lut[0]) != tuple(lut[-1])


def test_grey_and_hot_endpoints():
    assert tuple(colour.colormap_lut("grey")[128]) == (128, 128, 128)
    hot = colour.colormap_lut("hot")
    assert tuple(hot[0]) == (0, 0, 0) and tuple(hot[-1]) == (255, 255, 255)
    luma = hot.astype(float) @ [0.299, 0.587, 0.114]
    assert (np.diff(luma) >= -1e-9).all()          # hot is monotonic in luminance


@pytest.mark.parametrize("space", colour.COLOUR_SPACES)
def test_luma_chroma_round_trip(space, rng):
    rgb = rng.integers(0, 256, (40, 30, 3)).astype(np.uint8)
    luma, chroma = colour.rgb_to_luma_chroma(rgb, space)
    assert luma.min() >= 0 and luma.max() <= 1
    back = colour.luma_chroma_to_rgb(luma, chroma, space)
    assert np.abs(back.astype(int) - rgb).max() <= 1


def test_ycbcr_luma_is_bt601():
    luma, chroma = colour.rgb_to_luma_chroma(np.array([[[255, 0, 0], [0, 0, 255], [90, 90, 90]]], np.uint8))
    np.testing.assert_allclose(luma[0] * 255, [0.299 * 255, 0.114 * 255, 90], rtol=1e-5)
    np.testing.assert_allclose(chroma[0, 2], [128, 128], atol=1e-4)     # grey has neutral chroma


def test_chroma_of_two_colour_inputs_is_weighted_by_distance_from_neutral():
    c1 = np.array([[[200.0, 128.0]]])
    c2 = np.array([[[128.0, 28.0]]])
    fused = colour.fuse_chroma([c1, c2], "ycbcr")
    # Channel 1: only c1 departs from neutral -> 200; channel 2: only c2 -> 28.
    np.testing.assert_allclose(fused, [[[200.0, 28.0]]])


def test_rgb_functional_input_keeps_its_chroma(phantom2d):
    mri = phantom2d["mri"]
    pet01 = phantom2d["pet"] / phantom2d["pet"].max()
    pet_rgb = colour.apply_colormap(pet01, "hot")
    out = mf.fuse([mri, pet_rgb], method="laplacian")
    assert out.shape == mri.shape + (3,) and out.dtype == np.uint8
    _, chroma_in = colour.rgb_to_luma_chroma(pet_rgb)
    luma_out, chroma_out = colour.rgb_to_luma_chroma(out)
    unclipped = (out.max(axis=-1) < 250) & (out.min(axis=-1) > 5)
    assert unclipped.mean() > 0.2
    assert np.abs(chroma_out - chroma_in)[unclipped].mean() < 1.5       # chroma kept (up to rounding)
    # The luminance carries the MRI anatomy: it correlates with the MRI much better than the PET luma does.
    brain = phantom2d["mri"] > 50
    r_out = np.corrcoef(luma_out[brain], mri[brain])[0, 1]
    r_pet = np.corrcoef(colour.rgb_to_luma_chroma(pet_rgb)[0][brain], mri[brain])[0, 1]
    assert r_out > r_pet + 0.2


def test_scalar_functional_input_with_colormap_equals_fusing_its_rgb(phantom2d):
    mri, pet = phantom2d["mri"], phantom2d["pet"]
    window = (0.0, float(pet.max()))
    via_map = mf.fuse([mri, pet], method="average", colormap="pet", input_ranges=[None, window])
    rgb = colour.apply_colormap(pet / pet.max(), "pet")
    via_rgb = mf.fuse([mri, rgb], method="average")
    assert np.abs(via_map.astype(int) - via_rgb).max() <= 1


@pytest.mark.parametrize("space", colour.COLOUR_SPACES)
def test_colour_fusion_of_volumes_three_inputs_and_spaces(space, phantom3d):
    out = mf.fuse([phantom3d["mri"], phantom3d["ct"], phantom3d["pet"]], method="dwt", colormap="rainbow",
                  colour_space=space, levels=2)
    assert out.shape == phantom3d["mri"].shape + (3,) and out.dtype == np.uint8


def test_colormap_on_rgb_input_is_an_error(phantom2d):
    rgb = np.zeros(phantom2d["mri"].shape + (3,), np.uint8)
    with pytest.raises(mf.FusionInputError, match="already an RGB image"):
        mf.fuse([phantom2d["mri"], rgb], colormap=[None, "hot"])


# --- the transforms pinned to their published matrices (the round trip above passes for any invertible one) --
def test_ihs_intensity_is_the_mean_of_the_channels_and_chroma_the_published_rows(rng):
    """IHS as ../shared/docs/fusion-metrics.md ('Colour') and colour.py's reference, Tu et al., 'A new look at
    IHS-like image fusion methods', Information Fusion 2(3), 2001, write it: intensity I = (R + G + B) / 3 (the
    linear IHS of Tu et al.; the library stores the orthonormal I = (R + G + B) / sqrt 3 and scales it by
    1 / (255 sqrt 3) to [0, 1]), chroma v1 = (R + G - 2B) / sqrt 6, v2 = (R - G) / sqrt 2, grey is neutral (0)."""
    rgb = np.array([[[255, 0, 0], [0, 0, 255], [90, 120, 30], [200, 200, 200]]], np.uint8)
    luma, chroma = colour.rgb_to_luma_chroma(rgb, "ihs")
    # Written out: (255 + 0 + 0) / 3 / 255 = 1/3 for pure red and pure blue alike (YCbCr would give 0.299, 0.114).
    np.testing.assert_allclose(luma[0], [1 / 3, 1 / 3, 240 / 3 / 255, 200 / 255], rtol=1e-6)
    np.testing.assert_allclose(chroma[0, 3], [0, 0], atol=1e-4)
    x = rng.integers(0, 256, (50, 3)).astype(np.float64)
    luma, chroma = colour.rgb_to_luma_chroma(x.astype(np.uint8)[None], "ihs")
    r, g, b = x.T
    np.testing.assert_allclose(luma[0], (r + g + b) / 3 / 255, rtol=1e-6)
    np.testing.assert_allclose(chroma[0, :, 0], (r + g - 2 * b) / np.sqrt(6), atol=2e-4)
    np.testing.assert_allclose(chroma[0, :, 1], (r - g) / np.sqrt(2), atol=2e-4)


@pytest.mark.parametrize("space", colour.COLOUR_SPACES)
def test_replacing_the_luminance_adds_the_same_offset_to_every_channel(space, rng):
    """The 'fast IHS' identity of Tu et al. (2001), F = (R + d, G + d, B + d) with d = I_new - I, which also
    holds for BT.601 YCbCr (the inverse's luminance column is (1, 1, 1)): substituting a fused luminance keeps
    hue and saturation by shifting all three channels equally."""
    rgb = rng.integers(60, 196, (30, 40, 3)).astype(np.uint8)
    luma, chroma = colour.rgb_to_luma_chroma(rgb, space)
    delta = rng.uniform(-0.2, 0.2, luma.shape).astype(np.float32)
    out = colour.luma_chroma_to_rgb(luma + delta, chroma, space).astype(np.float64)
    expected = np.clip(rgb + 255.0 * delta[..., None], 0, 255)
    assert np.abs(out - expected).max() <= 0.5 + 1e-3           # up to the final rounding


def test_ycbcr_chroma_and_inverse_are_the_jfif_bt601_equations(rng):
    """ITU-R BT.601 in the full-range form of JFIF (ITU-T T.871, section 7): Cb = 128 - 0.168736 R - 0.331264 G
    + 0.5 B, Cr = 128 + 0.5 R - 0.418688 G - 0.081312 B; R = Y + 1.402 (Cr - 128), G = Y - 0.344136 (Cb - 128)
    - 0.714136 (Cr - 128), B = Y + 1.772 (Cb - 128)."""
    x = rng.integers(0, 256, (60, 3)).astype(np.float64)
    r, g, b = x.T
    luma, chroma = colour.rgb_to_luma_chroma(x.astype(np.uint8)[None], "ycbcr")
    np.testing.assert_allclose(chroma[0, :, 0], 128 - 0.168736 * r - 0.331264 * g + 0.5 * b, atol=2e-4)
    np.testing.assert_allclose(chroma[0, :, 1], 128 + 0.5 * r - 0.418688 * g - 0.081312 * b, atol=2e-4)
    y = rng.uniform(0.2, 0.8, 60)
    cb, cr = rng.uniform(100, 156, 60), rng.uniform(100, 156, 60)
    out = colour.luma_chroma_to_rgb(y.astype(np.float32)[None], np.stack([cb, cr], -1).astype(np.float32)[None])
    Y = 255 * y
    expected = np.stack([Y + 1.402 * (cr - 128), Y - 0.344136 * (cb - 128) - 0.714136 * (cr - 128),
                         Y + 1.772 * (cb - 128)], -1)
    assert np.abs(out[0] - np.clip(expected, 0, 255)).max() <= 0.5 + 2e-3
