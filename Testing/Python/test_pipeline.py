"""fuse(): validation before work, intensity handling, 2-D/3-D/slice-wise, batching, progress, cancel."""

import threading

import numpy as np
import pytest

import MedFusionLib as mf
from MedFusionLib import intensity
from MedFusionLib.errors import FusionCancelled, FusionInputError


# --- bad input, rejected before any work -------------------------------------------------------------
@pytest.mark.parametrize("images, message", [
    ([np.zeros((8, 8))], "2 or more input images"),
    ([np.zeros((8, 8)), np.zeros((8, 9))], "same spatial shape"),
    ([np.zeros(8), np.zeros(8)], "allowed: 2-D"),
    ([np.zeros((2, 2, 2, 2)), np.zeros((2, 2, 2, 2))], "allowed: 2-D"),
    ([np.zeros((8, 8), complex), np.zeros((8, 8))], "dtype complex"),
    ([np.zeros((8, 8), bool), np.zeros((8, 8))], "dtype bool"),
    ([np.full((8, 8), np.nan), np.zeros((8, 8))], "NaN or infinite"),
    ([np.full((8, 8), np.inf), np.zeros((8, 8))], "NaN or infinite"),
    ([np.zeros((1, 8)), np.zeros((1, 8))], "at least 2 x 2 samples"),
    ([np.zeros((1, 1, 8)), np.zeros((1, 1, 8))], "at least 2 x 2 samples"),
    (np.zeros((8, 8)), "single array"),
    (5, "sequence of 2 or more arrays"),
])
def test_bad_inputs_are_rejected_with_clear_messages(images, message):
    with pytest.raises(FusionInputError, match=message):
        mf.fuse(images)


@pytest.mark.parametrize("kwargs, message", [
    (dict(method="nope"), "unknown fusion method"),
    (dict(mode="4d"), "mode must be one of"),
    (dict(mode="3d"), "needs 3-D inputs"),
    (dict(percentiles=(50, 10)), "0 <= low < high <= 100"),
    (dict(input_ranges=(5, 5)), "high > low"),
    (dict(input_ranges=[(0, 1)] * 3), "one pair"),
    (dict(output_range="hounsfield"), "output_range"),
    (dict(colormap="plasma"), "unknown colour map"),
    (dict(colour_space="lab", colormap="hot"), "colour_space"),
    (dict(method="laplacian", levels=99), "out of range"),
    (dict(sigma=99), "out of range"),
    (dict(progress=42), "progress must be a callable"),
    (dict(cancel=42), "cancel must be"),
])
def test_bad_options_are_rejected(kwargs, message):
    a = np.zeros((64, 64))
    with pytest.raises(FusionInputError, match=message):
        mf.fuse([a, a], **kwargs)


def test_axis_and_3d_mode_checks():
    v = np.zeros((4, 8, 8))
    with pytest.raises(FusionInputError, match="axis must be in"):
        mf.fuse([v, v], axis=3)
    with pytest.raises(FusionInputError, match="levels=4 is too many"):
        mf.fuse([v, v], method="laplacian", mode="3d")       # 4 slices cannot hold 4 levels
    # 'auto' falls back to slices for such a thin volume instead of failing.
    assert mf.fuse([v, v + 1], method="laplacian", levels=2).shape == v.shape


def test_progress_callback_is_checked_before_work():
    calls = []
    with pytest.raises(FusionInputError):
        mf.fuse([np.zeros((8, 8)), np.zeros((8, 9))], progress=lambda f, m: calls.append(f))
    assert calls == []


# --- values -------------------------------------------------------------------------------------------
def test_inputs_are_never_modified(phantom3d):
    ct, mri = phantom3d["ct"], phantom3d["mri"]
    before = [ct.copy(), mri.copy()]
    for method in ("average", "laplacian", "guided_filter", "dwt", "pca"):
        mf.fuse([ct, mri], method=method, mode="slices")
        mf.fuse([ct, mri], method=method, mode="auto")
    np.testing.assert_array_equal(ct, before[0])
    np.testing.assert_array_equal(mri, before[1])


def test_output_is_mapped_to_the_reference_window(phantom2d):
    ct, mri = phantom2d["ct"], phantom2d["mri"]
    out = mf.fuse([ct, mri], method="average")
    lo, hi = intensity.robust_window(ct)
    assert out.dtype == np.float32 and out.shape == ct.shape
    assert out.min() >= lo - 1e-3 and out.max() <= hi + 1e-3
    unit = mf.fuse([ct, mri], method="average", output_range="unit")
    np.testing.assert_allclose(out, lo + unit * (hi - lo), rtol=1e-5, atol=1e-3)
    custom = mf.fuse([ct, mri], method="average", output_range=(0, 255))
    np.testing.assert_allclose(custom, 255 * unit, rtol=1e-5, atol=1e-3)


def test_average_of_8bit_images_with_fixed_ranges_is_the_plain_mean(rng):
    a = rng.integers(0, 256, (32, 32)).astype(np.uint8)
    b = rng.integers(0, 256, (32, 32)).astype(np.uint8)
    out = mf.fuse([a, b], method="average", input_ranges=(0, 255), output_range=(0, 255))
    np.testing.assert_allclose(out, (a.astype(float) + b) / 2, atol=1e-3)


def test_percentile_window_ignores_outliers(rng):
    x = rng.random((64, 64))
    x[0, 0] = 1e6                                  # one hot pixel
    lo, hi = intensity.robust_window(x, (0.5, 99.5))
    assert hi < 2
    assert intensity.robust_window(np.full((4, 4), 7.0)) == (7.0, 8.0)   # constant image: non-empty window


@pytest.mark.parametrize("dtype", [np.uint8, np.int16, np.uint16, np.int32, np.float16, np.float32, np.float64])
def test_any_real_dtype(dtype, phantom2d):
    a = np.clip(phantom2d["mri"], 0, 250).astype(dtype)
    b = np.clip(phantom2d["pet"] * 30, 0, 250).astype(dtype)
    out = mf.fuse([a, b], method="laplacian")
    assert out.dtype == np.float32 and np.isfinite(out).all()


@pytest.mark.parametrize("axis", [0, 1, 2, -1])
def test_slices_along_any_axis_equal_fusing_each_slice_in_2d(phantom3d, axis):
    mri, pet = phantom3d["mri"], phantom3d["pet"]
    ranges = [intensity.robust_window(mri), intensity.robust_window(pet)]
    out = mf.fuse([mri, pet], method="laplacian", mode="slices", axis=axis, input_ranges=ranges, levels=2)
    k = np.moveaxis(mri, axis, 0).shape[0] // 2
    sl = (lambda v: np.take(v, k, axis=axis))
    ref = mf.fuse([sl(mri), sl(pet)], method="laplacian", input_ranges=ranges, output_range=ranges[0], levels=2)
    np.testing.assert_allclose(sl(out), ref, rtol=1e-5, atol=1e-4)


def test_batch_size_does_not_change_the_result(phantom3d):
    imgs = [phantom3d["ct"], phantom3d["mri"]]
    one = mf.fuse(imgs, method="guided_filter", mode="slices", batch_size=1)
    many = mf.fuse(imgs, method="guided_filter", mode="slices", batch_size=7)
    np.testing.assert_allclose(one, many, rtol=1e-5, atol=1e-3)


def test_native_3d_differs_from_slices_but_keeps_shape(phantom3d):
    imgs = [phantom3d["ct"], phantom3d["mri"]]
    vol = mf.fuse(imgs, method="laplacian", mode="3d", levels=2)
    sl = mf.fuse(imgs, method="laplacian", mode="slices", levels=2)
    assert vol.shape == sl.shape == imgs[0].shape
    assert not np.allclose(vol, sl)


# --- progress and cancel ------------------------------------------------------------------------------
def test_progress_reports_monotonic_fractions_up_to_one(phantom3d):
    seen = []
    mf.fuse([phantom3d["ct"], phantom3d["mri"]], method="average", mode="slices", batch_size=5,
            progress=lambda f, m: seen.append((f, m)))
    fractions = [f for f, _ in seen]
    assert fractions == sorted(fractions) and fractions[0] == 0.0 and fractions[-1] == 1.0
    assert any("slices" in m for _, m in seen)
    assert len(seen) >= phantom3d["ct"].shape[0] // 5


@pytest.mark.parametrize("kind", ["token", "event", "callable"])
def test_cancel_raises_and_returns_nothing(phantom3d, kind):
    calls = []
    if kind == "token":
        cancel = mf.CancelToken()
        trigger = cancel.cancel
    elif kind == "event":
        cancel = threading.Event()
        trigger = cancel.set
    else:
        flag = {"stop": False}
        cancel = lambda: flag["stop"]                                   # noqa: E731
        trigger = lambda: flag.update(stop=True)                        # noqa: E731

    def progress(fraction, message):
        calls.append(fraction)
        if len(calls) == 3:
            trigger()                      # cancel in the middle of the slice loop

    with pytest.raises(FusionCancelled):
        mf.fuse([phantom3d["ct"], phantom3d["mri"]], method="average", mode="slices", batch_size=2,
                progress=progress, cancel=cancel)
    assert max(calls) < 1.0


def test_native_3d_guided_filter_reports_within_the_call_and_can_be_cancelled(phantom3d):
    # A native 3-D run is one block for the pipeline; GFF (the slowest classical method) reports its stages.
    seen = []
    mf.fuse([phantom3d["ct"], phantom3d["mri"]], method="guided_filter", mode="3d",
            progress=lambda f, m: seen.append((f, m)))
    inner = [m for _, m in seen if m.startswith("guided filter")]
    assert len(inner) == 3 and [f for f, _ in seen] == sorted(f for f, _ in seen)
    token = mf.CancelToken()

    def progress(fraction, message):
        if message.startswith("guided filter: saliency"):
            token.cancel()                 # cancel inside the method, before the weights are filtered

    with pytest.raises(FusionCancelled):
        mf.fuse([phantom3d["ct"], phantom3d["mri"]], method="guided_filter", mode="3d", progress=progress,
                cancel=token)


def test_cancel_before_start():
    token = mf.CancelToken()
    token.cancel()
    with pytest.raises(FusionCancelled):
        mf.fuse([np.zeros((64, 64)), np.ones((64, 64))], cancel=token)


def test_single_slice_volume_is_fused_as_that_slice(phantom2d):
    mri, ct = phantom2d["mri"], phantom2d["ct"]
    flat = mf.fuse([mri, ct], method="laplacian", levels=2)
    for axis in range(3):
        v_mri, v_ct = np.expand_dims(mri, axis), np.expand_dims(ct, axis)
        out = mf.fuse([v_mri, v_ct], method="laplacian", levels=2)
        assert out.shape == v_mri.shape
        np.testing.assert_allclose(np.squeeze(out, axis), flat, rtol=1e-5, atol=1e-3)
    with pytest.raises(FusionInputError, match="1-D slices"):
        mf.fuse([mri[None], ct[None]], mode="slices", axis=1)
    with pytest.raises(FusionInputError, match="single slice"):
        mf.fuse([mri[None], ct[None]], mode="3d")


def test_fuse_docstring_names_the_default_method():
    import inspect

    from MedFusionLib import pipeline

    assert inspect.signature(pipeline.fuse).parameters["method"].default == pipeline.DEFAULT_METHOD
    doc = pipeline.fuse.__doc__
    method_doc = doc[doc.index("    method : str"):doc.index("    mode :")]
    assert "DEFAULT_METHOD" in method_doc and repr(pipeline.DEFAULT_METHOD) in method_doc


def test_a_method_that_overshoots_is_clipped_to_the_unit_range_before_mapping():
    """``_fuse_block`` clips the method's output to [0, 1] before the output window is applied (a learned
    or transform method may overshoot): a method returning 2 a - 0.5 (values in [-0.5, 1.5]) gives
    clip(2 a - 0.5, 0, 1) mapped to the output window, for grey and colour output."""
    from MedFusionLib.registry import _REGISTRY, register

    @register("_test_overshoot", family="classical", summary="2 x first - 0.5 (tests)", reference="none")
    def overshoot(stack):
        return 2 * stack[0] - 0.5

    try:
        a = np.linspace(0, 1, 64, dtype=np.float32).reshape(8, 8)
        expected = np.clip(2 * a - 0.5, 0, 1)
        assert expected.min() == 0 and expected.max() == 1 and (2 * a - 0.5).min() < -0.4
        out = mf.fuse([a, 1 - a], method="_test_overshoot", input_ranges=(0, 1), output_range="unit")
        np.testing.assert_allclose(out, expected, atol=1e-6)
        out = mf.fuse([a, 1 - a], method="_test_overshoot", input_ranges=(0, 1), output_range=(10, 20))
        np.testing.assert_allclose(out, 10 + 10 * expected, atol=1e-5)
        # colour: the clipped luma goes into the colour conversion (a grey RGB image stays grey)
        rgb = np.repeat((a * 255).round().astype(np.uint8)[..., None], 3, axis=-1)
        out = mf.fuse([rgb, a], method="_test_overshoot", input_ranges=[None, (0, 1)])
        luma = np.clip(2 * (a * 255).round() / 255 - 0.5, 0, 1) * 255
        np.testing.assert_allclose(out[..., 0].astype(np.float64), luma, atol=1.01)
    finally:
        _REGISTRY.pop("_test_overshoot", None)
