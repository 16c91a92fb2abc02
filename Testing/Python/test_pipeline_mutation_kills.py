"""The pipeline's decisions pinned one by one, from the survivors of a mutation run of ``pipeline.py``
(docs/testing.md, "Mutation testing"): which mode ``plan()`` resolves and what the method then receives,
the axis bounds, the smallest image accepted, stacked-array and RGB-volume inputs, and the colour space
reaching the colour branch. Each assertion would fail if the decision were renamed, flipped or off by one.
"""

import numpy as np
import pytest

import MedFusionLib as mf
from MedFusionLib import colour
from MedFusionLib.errors import FusionInputError
from MedFusionLib.pipeline import plan


@pytest.fixture
def recorder():
    """A registered 2-D/3-D method that records the stack shape of every call and returns input 0."""
    from MedFusionLib.registry import _REGISTRY, register

    calls = []

    @register("_test_recorder", family="classical", summary="input 0, recording shapes (tests)",
              reference="none", dims=(2, 3))
    def record(stack):
        calls.append(stack.shape)
        return stack[0]

    try:
        yield calls
    finally:
        _REGISTRY.pop("_test_recorder", None)


@pytest.fixture
def recorder_2d_only():
    from MedFusionLib.registry import _REGISTRY, register

    calls = []

    @register("_test_recorder_2d", family="classical", summary="input 0, 2-D only (tests)", reference="none")
    def record(stack):
        calls.append(stack.shape)
        return stack[0]

    try:
        yield calls
    finally:
        _REGISTRY.pop("_test_recorder_2d", None)


def _pair(shape, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.random(shape).astype(np.float32) for _ in range(2)]


# --- mode resolution ---------------------------------------------------------------------------------
def test_two_d_images_resolve_to_2d_and_the_method_gets_one_image(recorder):
    p = plan(_pair((6, 7)), "_test_recorder")
    assert (p.mode, p.axis, p.batch_size) == ("2d", 0, 1)
    mf.fuse(_pair((6, 7)), method="_test_recorder")
    assert recorder == [(2, 1, 6, 7)]


def test_auto_runs_a_3d_method_natively_on_the_whole_volume(recorder):
    v = _pair((4, 6, 7))
    p = plan(v, "_test_recorder")
    assert p.mode == "3d" and p.batch_size == 1
    assert plan(v, "_test_recorder", mode="3d").mode == "3d"
    mf.fuse(v, method="_test_recorder")
    assert recorder == [(2, 1, 4, 6, 7)]


def test_auto_slices_a_2d_only_method_along_the_axis_in_batches(recorder_2d_only):
    v = _pair((4, 6, 7))
    for axis, slice_shape in [(0, (6, 7)), (1, (4, 7)), (2, (4, 6)), (-1, (4, 6)), (-3, (6, 7))]:
        p = plan(v, "_test_recorder_2d", axis=axis)
        assert (p.mode, p.axis) == ("slices", axis % 3)
        recorder_2d_only.clear()
        out = mf.fuse(v, method="_test_recorder_2d", axis=axis, batch_size=3)
        depth = v[0].shape[axis % 3]
        assert recorder_2d_only == [(2, 3) + slice_shape] * (depth // 3) + (
            [(2, depth % 3) + slice_shape] if depth % 3 else [])
        assert out.shape == v[0].shape


def test_mode_slices_slices_a_3d_method(recorder):
    v = _pair((4, 6, 7))
    p = plan(v, "_test_recorder", mode="slices", axis=2, batch_size=8)
    assert (p.mode, p.axis, p.batch_size) == ("slices", 2, 7)   # batch capped at the depth
    mf.fuse(v, method="_test_recorder", mode="slices", axis=2, batch_size=8)
    assert recorder == [(2, 7, 4, 6)]


def test_default_batch_is_as_many_slices_as_fit_the_voxel_budget(recorder_2d_only, monkeypatch):
    from MedFusionLib import pipeline

    monkeypatch.setattr(pipeline, "_BATCH_VOXELS", 6 * 7 * 2)   # two 6 x 7 slices per batch
    p = plan(_pair((5, 6, 7)), "_test_recorder_2d")
    assert p.batch_size == 2
    monkeypatch.setattr(pipeline, "_BATCH_VOXELS", 10)          # less than a slice: still one
    assert plan(_pair((5, 6, 7)), "_test_recorder_2d").batch_size == 1


def test_mode_3d_refuses_a_2d_only_method_and_names_the_3d_ones(recorder_2d_only):
    with pytest.raises(FusionInputError, match="works on 2-D slices only.*laplacian"):
        plan(_pair((4, 6, 7)), "_test_recorder_2d", mode="3d")


def test_auto_falls_back_to_slices_only_when_the_3d_parameters_do_not_fit():
    thin, deep = _pair((4, 32, 32)), _pair((32, 32, 32))
    assert plan(thin, "laplacian", params=dict(levels=3)).mode == "slices"
    assert plan(deep, "laplacian", params=dict(levels=3)).mode == "3d"
    with pytest.raises(FusionInputError, match="too many"):
        plan(thin, "laplacian", mode="3d", params=dict(levels=3))


@pytest.mark.parametrize("thin", [0, 1, 2])
def test_a_single_slice_volume_is_sliced_across_its_thin_axis(recorder, thin):
    shape = [5, 6, 7]
    shape[thin] = 1
    p = plan(_pair(tuple(shape)), "_test_recorder", axis=(thin + 1) % 3)   # 'auto' may override the axis
    assert (p.mode, p.axis) == ("slices", thin)
    assert plan(_pair(tuple(shape)), "_test_recorder", mode="slices", axis=thin).axis == thin


# --- axis bounds -------------------------------------------------------------------------------------
@pytest.mark.parametrize("axis", [-3, -2, -1, 0, 1, 2])
def test_every_axis_from_minus_3_to_2_is_accepted(recorder_2d_only, axis):
    assert plan(_pair((4, 5, 6)), "_test_recorder_2d", axis=axis).axis == axis % 3


@pytest.mark.parametrize("axis", [-4, 3])
def test_axes_outside_minus_3_to_2_are_refused(recorder_2d_only, axis):
    with pytest.raises(FusionInputError, match=r"axis must be in -3\.\.2 for 3-D inputs; got " + str(axis)):
        plan(_pair((4, 5, 6)), "_test_recorder_2d", axis=axis)


@pytest.mark.parametrize("axis", [1.0, True, "0", None])
def test_a_non_integer_axis_is_refused(axis):
    with pytest.raises(FusionInputError, match="axis must be an integer"):
        plan(_pair((4, 5, 6)), "max", axis=axis)


def test_a_numpy_integer_axis_is_accepted(recorder_2d_only):
    assert plan(_pair((4, 5, 6)), "_test_recorder_2d", axis=np.int64(2)).axis == 2


# --- the smallest image ------------------------------------------------------------------------------
@pytest.mark.parametrize("shape", [(2, 2), (2, 9), (9, 2), (1, 2, 2), (2, 1, 2), (3, 5, 1), (2, 2, 2)])
def test_two_by_two_samples_are_enough(shape):
    assert mf.fuse(_pair(shape), method="average").shape == shape


@pytest.mark.parametrize("shape", [(1, 2), (2, 1), (1, 9), (0, 4), (1, 1, 5), (5, 1, 1), (0, 4, 4), (4, 0, 4)])
def test_fewer_than_two_by_two_samples_are_refused(shape):
    with pytest.raises(FusionInputError, match="at least 2 x 2 samples"):
        plan(_pair(shape), "average")


# --- how the inputs arrive ---------------------------------------------------------------------------
def test_a_stacked_4d_array_is_a_sequence_of_volumes():
    a, b = _pair((3, 4, 5))
    stacked = np.stack([a, b])
    np.testing.assert_array_equal(mf.fuse(stacked, method="average"), mf.fuse([a, b], method="average"))
    p = plan(stacked, "average")
    assert len(p.sources) == 2 and p.spatial_shape == (3, 4, 5)


def test_a_stacked_3d_array_is_a_sequence_of_images():
    a, b = _pair((4, 5))
    p = plan(np.stack([a, b]), "average")
    assert len(p.sources) == 2 and p.spatial_shape == (4, 5) and p.mode == "2d"


def test_an_rgb_uint8_volume_is_a_colour_volume():
    rng = np.random.default_rng(1)
    rgb = rng.integers(0, 256, (3, 4, 5, 3), dtype=np.uint8)
    grey = rng.random((3, 4, 5)).astype(np.float32)
    p = plan([grey, rgb], "max")
    assert p.spatial_shape == (3, 4, 5) and [s.rgb for s in p.sources] == [False, True]
    out = mf.fuse([grey, rgb], method="max")
    assert out.shape == (3, 4, 5, 3) and out.dtype == np.uint8


def test_the_last_axis_of_3_is_rgb_only_for_uint8():
    rng = np.random.default_rng(2)
    assert not plan([rng.random((4, 5, 3)).astype(np.float32)] * 2, "max").sources[0].rgb   # a 3-slice volume
    assert plan([rng.integers(0, 256, (4, 5, 3), dtype=np.uint8)] * 2, "max").spatial_shape == (4, 5)
    assert plan([rng.integers(0, 256, (4, 5, 4), dtype=np.uint8)] * 2, "max").spatial_shape == (4, 5, 4)
    with pytest.raises(FusionInputError, match="allowed: 2-D"):
        plan([np.zeros((2, 3, 4, 5, 3), np.uint8)] * 2, "max")


# --- the colour branch -------------------------------------------------------------------------------
@pytest.mark.parametrize("space", colour.COLOUR_SPACES)
def test_the_colour_space_reaches_the_colour_branch(recorder, space):
    """A grey MRI and a colour-mapped PET, fused by a method that returns the MRI's luma: the output is
    the MRI as luma under the PET's chroma in ``space`` (written out here), and the two spaces differ."""
    rng = np.random.default_rng(3)
    mri = rng.random((8, 9)).astype(np.float32)
    pet = rng.random((8, 9)).astype(np.float32)
    out = mf.fuse([mri, pet], method="_test_recorder", colormap="hot", colour_space=space, input_ranges=(0, 1))
    rgb = colour.apply_colormap(pet[None], "hot")

    def written_out(space):
        _, chroma = colour.rgb_to_luma_chroma(rgb, space)
        return colour.luma_chroma_to_rgb(mri[None], colour.fuse_chroma([chroma], space), space)[0]

    assert out.dtype == np.uint8 and out.shape == (8, 9, 3)
    np.testing.assert_array_equal(out, written_out(space))
    other = [s for s in colour.COLOUR_SPACES if s != space][0]
    assert np.abs(written_out(other).astype(int) - out.astype(int)).max() > 2
