"""MedFusionLib.colour at its edges: colour-map indexing and clipping, out-of-gamut results, near-neutral
chroma, dtypes and the error messages (added from the surviving mutants of the mutation run,
docs/testing.md 'Mutation testing')."""

import numpy as np
import pytest

from MedFusionLib import colour
from MedFusionLib.errors import FusionInputError


def test_colormap_names_include_the_aliases():
    assert colour.colormap_names() == ("grey", "hot", "rainbow", "pet", "gray", "heat")
    np.testing.assert_array_equal(colour.colormap_lut("gray"), colour.colormap_lut("grey"))
    np.testing.assert_array_equal(colour.colormap_lut("heat"), colour.colormap_lut("hot"))


def test_unknown_names_list_the_choices():
    with pytest.raises(FusionInputError, match=r"unknown colour map 'jet'; available: grey, hot, rainbow, pet, "
                                               r"gray, heat$"):
        colour.colormap_lut("jet")
    with pytest.raises(FusionInputError, match=r"unknown colour space 'lab'; choose one of: ycbcr, ihs$"):
        colour.rgb_to_luma_chroma(np.zeros((2, 2, 3)), "lab")


def test_apply_colormap_indexes_round_255x_and_clips():
    x = np.linspace(0.0, 1.0, 1001)
    lut = colour.colormap_lut("hot")
    index = np.rint(x.astype(np.float32) * np.float32(255)).astype(int)          # float32, as documented
    np.testing.assert_array_equal(colour.apply_colormap(x, "hot"), lut[index])
    assert colour.apply_colormap(np.array([0.998]), "grey")[0, 0] == 254       # rint(254.49), not 255
    out = colour.apply_colormap(np.array([-0.5, 0.0, 1.0, 1.5]), "grey")
    np.testing.assert_array_equal(out[:, 0], [0, 0, 255, 255])


def test_luma_chroma_to_rgb_clips_out_of_gamut_values_and_returns_uint8():
    for space in colour.COLOUR_SPACES:
        neutral = np.full((3, 2), colour._NEUTRAL[space], np.float32)
        out = colour.luma_chroma_to_rgb(np.array([-0.2, 0.0, 1.3], np.float32), neutral, space)
        assert out.dtype == np.uint8
        np.testing.assert_array_equal(out, [[0, 0, 0], [0, 0, 0], [255, 255, 255]])


def test_rgb_to_luma_chroma_works_in_float32():
    rgb = np.random.default_rng(3).random((4, 5, 3)) * 255                    # float64 input
    for space in colour.COLOUR_SPACES:
        luma, chroma = colour.rgb_to_luma_chroma(rgb, space)
        assert luma.dtype == np.float32 and chroma.dtype == np.float32
    luma, _ = colour.rgb_to_luma_chroma(np.array([[255, 255, 255]], np.uint8))
    assert luma.dtype == np.float32


def test_fuse_chroma_near_and_at_neutral():
    a = np.array([[128.0, 128.2]], np.float32)
    b = np.array([[128.0, 128.3]], np.float32)
    out = colour.fuse_chroma([a, b], "ycbcr")
    assert out[0, 0] == 128.0                                       # both neutral: neutral
    np.testing.assert_allclose(out[0, 1], (128.2 * 0.2 + 128.3 * 0.3) / 0.5, atol=1e-4)   # total weight 0.5
    np.testing.assert_allclose(colour.fuse_chroma([a - 128, b - 128], "ihs")[0, 1], (0.2 * 0.2 + 0.3 * 0.3) / 0.5,
                               atol=1e-5)


def test_fuse_chroma_defaults_to_ycbcr():
    a = np.array([[128.0, 140.0]], np.float32)
    b = np.array([[128.0, 100.0]], np.float32)
    np.testing.assert_array_equal(colour.fuse_chroma([a, b]), colour.fuse_chroma([a, b], "ycbcr"))
