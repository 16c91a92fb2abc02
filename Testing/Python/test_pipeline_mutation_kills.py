"""The pipeline's decisions pinned one by one, from the survivors of a mutation run of ``pipeline.py``
(docs/testing.md, "Mutation testing"): which mode ``plan()`` resolves and what the method then receives,
the axis bounds, the smallest image accepted, stacked-array and RGB-volume inputs, and the colour space
reaching the colour branch. Each assertion would fail if the decision were renamed, flipped or off by one.
"""

import contextlib

import numpy as np
import pytest

import MedFusionLib as mf
from MedFusionLib import colour
from MedFusionLib.errors import FusionInputError
from MedFusionLib.pipeline import plan


@contextlib.contextmanager
def registered(name, func, **options):
    """``func`` registered as test method ``name`` (family 'classical') for the block, then removed."""
    from MedFusionLib.registry import _REGISTRY, register
    register(name, family="classical", summary=f"{name} (tests)", reference="none", **options)(func)
    try:
        yield
    finally:
        _REGISTRY.pop(name, None)


def _recording(calls):
    def record(stack):
        calls.append(stack.shape)
        return stack[0]
    return record


def _reporting_half_way(stack, progress=None):
    progress.report(0.5, "half")
    return stack[0]


@pytest.fixture
def recorder():
    """A registered 2-D/3-D method that records the stack shape of every call and returns input 0."""
    calls = []
    with registered("_test_recorder", _recording(calls), dims=(2, 3)):
        yield calls


@pytest.fixture
def recorder_2d_only():
    calls = []
    with registered("_test_recorder_2d", _recording(calls)):
        yield calls


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


# --- from the survivors of the rerun (2026-12-04) ----------------------------------------------------
@pytest.mark.parametrize("space", colour.COLOUR_SPACES)
def test_rgb_inputs_are_split_and_their_chromas_fused_in_the_chosen_space(recorder, space):
    """Two RGB inputs: each is converted to luma/chroma in ``space``, the chromas are fused by distance from
    that space's neutral, and the method's luma (input 0's) goes back through the same space."""
    rng = np.random.default_rng(4)
    a = rng.integers(0, 256, (6, 7, 3), dtype=np.uint8)
    b = rng.integers(0, 256, (6, 7, 3), dtype=np.uint8)
    out = mf.fuse([a, b], method="_test_recorder", colour_space=space)

    def written_out(space):
        (luma_a, chroma_a), (_, chroma_b) = (colour.rgb_to_luma_chroma(x[None], space) for x in (a, b))
        fused_chroma = colour.fuse_chroma([chroma_a, chroma_b], space)
        return colour.luma_chroma_to_rgb(np.clip(luma_a, 0, 1), fused_chroma, space)[0]

    np.testing.assert_array_equal(out, written_out(space))
    other = [s for s in colour.COLOUR_SPACES if s != space][0]
    assert np.abs(written_out(other).astype(int) - out.astype(int)).max() > 2


def test_the_memory_check_is_told_the_resolved_mode_and_colour_output(recorder_2d_only, monkeypatch):
    from MedFusionLib import memory
    seen = []
    original = memory.check_fusion
    monkeypatch.setattr(memory, "check_fusion",
                        lambda *args, **kwargs: seen.append((args[3], kwargs["colour_output"])) or original(*args, **kwargs))
    v = _pair((3, 6, 7))
    plan(v, "_test_recorder_2d")
    plan(v, "_test_recorder_2d", colormap="hot")
    rgb = np.zeros((3, 6, 7, 3), np.uint8)
    plan([v[0], rgb], "_test_recorder_2d")
    plan(_pair((6, 7)), "_test_recorder_2d", colormap=[None, "none"])
    assert seen == [("slices", False), ("slices", True), ("slices", True), ("2d", False)]


def test_an_unbatched_method_gets_one_slice_at_a_time():
    calls = []
    with registered("_test_unbatched", _recording(calls), batched=False):
        assert plan(_pair((3, 6, 7)), "_test_unbatched", batch_size=3).batch_size == 1
        mf.fuse(_pair((3, 6, 7)), method="_test_unbatched", batch_size=3)
    assert calls == [(2, 1, 6, 7)] * 3


@pytest.mark.parametrize("batch_size", [0, -1, 1.5, True, "2"])
def test_a_bad_batch_size_is_refused_in_every_mode(batch_size):
    for images in (_pair((6, 7)), _pair((3, 6, 7))):
        with pytest.raises(FusionInputError, match=r"^batch_size must be a positive integer; got "
                           + repr(batch_size).replace(".", r"\.")):
            plan(images, "max", batch_size=batch_size)


def test_a_2d_image_too_small_for_the_parameters_is_refused_at_planning():
    with pytest.raises(FusionInputError, match="too many"):
        plan(_pair((8, 8)), "laplacian", params=dict(levels=5))


def test_float64_values_beyond_float32_are_refused_both_signs_and_the_limit_is_allowed():
    limit = float(np.finfo(np.float32).max)
    ok = np.zeros((4, 4))
    ok[0, 0], ok[0, 1] = limit, -limit
    plan([np.zeros((4, 4)), ok], "max")
    for value, shown in [(1e39, r"1e\+39"), (-1e39, r"1e\+39")]:
        bad = np.zeros((4, 4))
        bad[1, 1] = value
        with pytest.raises(FusionInputError, match=rf"^input 1 has values up to {shown} in magnitude; fusion works "
                                                   rf"in float32, allowed: within \+-3\.403e\+38"):
            plan([np.zeros((4, 4)), bad], "max")


def test_messages_name_the_input_and_the_option():
    with pytest.raises(FusionInputError, match="^input 1 has dtype complex128"):
        plan([np.zeros((4, 4)), np.zeros((4, 4), complex)], "max")
    with pytest.raises(FusionInputError, match=r"^output_range must be finite"):
        plan(_pair((4, 4)), "max", output_range=(5, 5))
    with pytest.raises(FusionInputError, match=r"^input_ranges must be finite"):
        plan(_pair((4, 4)), "max", input_ranges=(5, 5))
    with pytest.raises(FusionInputError, match=r"^input_ranges\[1\] must be finite"):
        plan(_pair((4, 4)), "max", input_ranges=[(0, 1), (5, 5)])
    with pytest.raises(FusionInputError, match=r"^mode must be one of auto, slices, 3d; got '4d'"):
        plan(_pair((4, 4)), "max", mode="4d")
    with pytest.raises(FusionInputError, match=r"^colour_space must be one of ycbcr, ihs; got 'lab'"):
        plan(_pair((4, 4)), "max", colour_space="lab")
    with pytest.raises(FusionInputError, match=r"^mode='3d' needs 3-D inputs; these are 2-D images$"):
        plan(_pair((4, 4)), "max", mode="3d")
    with pytest.raises(FusionInputError, match=r"^colormap needs one entry per input \(2\) or a single name; got 3$"):
        plan(_pair((4, 4)), "max", colormap=["hot", None, None])
    with pytest.raises(FusionInputError, match=r"^images must be a sequence of 2 or more arrays; got int$"):
        plan(5, "max")


def test_mode_3d_refusal_lists_the_3d_methods_comma_separated(recorder_2d_only):
    from MedFusionLib.registry import methods
    natively = ", ".join(s.name for s in methods() if s.supports_3d)
    with pytest.raises(FusionInputError, match=r"or a 3-D method: " + natively.replace(".", r"\.") + "$"):
        plan(_pair((4, 6, 7)), "_test_recorder_2d", mode="3d")


def test_empty_and_none_colour_map_entries_mean_grey():
    a, b = _pair((6, 7))
    grey = mf.fuse([a, b], method="max")
    for maps in ([None, "none"], ["", None], ["none", ""]):
        out = mf.fuse([a, b], method="max", colormap=maps)
        assert out.dtype == np.float32
        np.testing.assert_array_equal(out, grey)
    assert mf.fuse([a, b], method="max", colormap=["hot", "none"]).shape == (6, 7, 3)


def test_a_method_returning_the_wrong_shape_is_named():
    with registered("_test_wrong_shape", lambda stack: stack[0, :, :-1]):
        with pytest.raises(RuntimeError, match=r"^method '_test_wrong_shape' returned shape \(1, 5, 7\), "
                                               r"expected \(1, 6, 7\)$"):
            mf.fuse(_pair((6, 7)), method="_test_wrong_shape")


def test_the_percentiles_set_the_input_windows():
    """Without input ranges each input is windowed at the given percentiles: the mean of two images maps
    (mean of the per-input normalised values) to the reference's window."""
    rng = np.random.default_rng(6)
    a = rng.normal(100, 30, (16, 16))
    b = rng.normal(5, 2, (16, 16))
    out = mf.fuse([a, b], method="average", percentiles=(10, 90))
    (la, ha), (lb, hb) = np.percentile(a, [10, 90]), np.percentile(b, [10, 90])
    mean01 = 0.5 * (np.clip((a - la) / (ha - la), 0, 1) + np.clip((b - lb) / (hb - lb), 0, 1))
    np.testing.assert_allclose(out, la + mean01 * (ha - la), rtol=1e-4, atol=1e-3)


def test_slice_batches_report_their_range_the_methods_progress_inside_it_and_done():
    """6 slices in batches of 2: 'fusing slices 1-2 of 6', '3-4', '5-6', each followed by the method's own
    half-way report mapped into its batch's third of the work range [0.02, 1], then 'done' at 1."""
    reports = []
    with registered("_test_reporting", _reporting_half_way):
        mf.fuse(_pair((6, 5, 4)), method="_test_reporting", batch_size=2, progress=lambda f, m: reports.append((f, m)))
    work = lambda x: 0.02 + 0.98 * x   # noqa: E731 - the work range after the windows
    expected = [(0.0, "measuring intensity windows")]
    for k in range(3):
        expected += [(work(k / 3), f"fusing slices {2 * k + 1}-{2 * k + 2} of 6"), (work((k + 0.5) / 3), "half")]
    expected.append((1.0, "done"))
    assert [m for _, m in reports] == [m for _, m in expected]
    np.testing.assert_allclose([f for f, _ in reports], [f for f, _ in expected], atol=1e-9)


def test_a_2d_call_reports_the_method_inside_the_work_range_then_done():
    reports = []
    with registered("_test_reporting", _reporting_half_way):
        mf.fuse(_pair((6, 5)), method="_test_reporting", progress=lambda f, m: reports.append((f, m)))
    assert [m for _, m in reports] == ["measuring intensity windows", "half", "done"]
    np.testing.assert_allclose([f for f, _ in reports], [0.0, 0.51, 1.0], atol=1e-9)
