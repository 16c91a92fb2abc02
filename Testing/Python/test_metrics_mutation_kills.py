"""Metric tests prompted by the survivors of the ``metrics`` mutation run (docs/testing.md, 'Mutation testing').

Each test checks a behaviour against something computed apart from the library: the VIF size table against
the four 'valid' scales counted out by hand, volume results against the mean of their slices scored one by
one, the slice axis and the stacked-array form of the sources against the same data given the other way,
MS-SSIM on odd, non-square, dark images against MONAI, FMI on a single window against the window-by-window
reference of test_metrics.py, and the documented conventions (Qcb's equal saliency and preservation 1 where
the toolbox divides 0 by 0; EN's clip to 0..255; the error messages' hints).
"""

import math

import numpy as np
import pytest

from MedFusionLib import metrics
from MedFusionLib.errors import FusionInputError
from MedFusionLib.metrics import _common, information, table

from test_metrics import _fmi_reference, _vifp_reference

#: public metric functions of the fused image alone and of fused + sources
FUSED_ONLY = {"EN": metrics.en, "SD": metrics.sd, "SF": metrics.sf, "AG": metrics.ag}
WITH_SOURCES = {"MI": metrics.mi, "FMI": metrics.fmi, "CC": metrics.cc, "PSNR": metrics.psnr, "SCD": metrics.scd,
                "VIF": metrics.vif, "Qabf": metrics.qabf, "Nabf": metrics.nabf, "SSIM": metrics.ssim,
                "Qcb": metrics.qcb, "Qcv": metrics.qcv}


def _score(name, fused, sources, **kw):
    return FUSED_ONLY[name](fused, **kw) if name in FUSED_ONLY else WITH_SOURCES[name](fused, sources, **kw)


def _volume(shape, seed=0):
    rng = np.random.default_rng(seed)
    a = np.round(rng.uniform(0, 255, shape))
    b = np.round(np.clip(0.5 * a + rng.normal(60, 30, shape), 0, 255))
    return np.round((a + b) / 2 + rng.normal(0, 5, shape)), [a, b]


# --- the size table -------------------------------------------------------------------------------------------
def _vif_scales_fit(n):
    """Sheikh & Bovik's VIFp on an n x n image: scales 1..4 with N = 2^(5 - scale) + 1 taps; before scales 2..4
    the image is 'valid'-filtered and subsampled by 2; each scale's 'valid' filtering must keep a pixel."""
    m = n
    for scale in range(1, 5):
        taps = 2 ** (5 - scale) + 1
        if scale > 1:
            m = len(range(0, m - taps + 1, 2)) if m >= taps else 0   # valid filtering, then [::2]
        if m - taps + 1 < 1:
            return False
    return True


def test_vif_minimum_side_is_the_smallest_that_keeps_every_scale():
    smallest = next(n for n in range(1, 200) if _vif_scales_fit(n))
    assert table._vif_min_size() == smallest == table._MIN_SIZE["VIF"]
    f, (a, b) = _volume((smallest, smallest))
    assert np.isfinite(metrics.vif(f, [a, b]))
    with pytest.raises(FusionInputError, match="VIF >= %d" % smallest):
        metrics.vif(f[1:], [a[1:], b[1:]])


# --- the slice axis --------------------------------------------------------------------------------------------
def test_every_metric_slices_along_axis_0_by_default():
    f, srcs = _volume((6, 44, 48), seed=1)
    for name in list(FUSED_ONLY) + list(WITH_SOURCES):
        default = _score(name, f, srcs)
        assert default == _score(name, f, srcs, axis=0), name
        try:
            other = _score(name, f, srcs, axis=1)
        except FusionInputError:     # (44, 48) slices fit VIF; (6, 48) ones do not
            continue
        assert other != pytest.approx(default, rel=1e-6), name
    assert "SSIM" in metrics.metrics_for_shape((6, 44, 48)) and "VIF" in metrics.metrics_for_shape((6, 44, 48))
    assert "VIF" not in metrics.metrics_for_shape((6, 44, 48), axis=1)


@pytest.mark.parametrize("axis, moved", [(-3, 0), (-1, 2), (2, 2), (1, 1)])
def test_axis_range_is_minus_3_to_2(axis, moved):
    f, srcs = _volume((5, 6, 7), seed=2)
    per_slice = [metrics.sd(np.take(f, k, axis=moved)) for k in range(f.shape[moved])]
    assert metrics.sd(f, axis=axis) == pytest.approx(np.mean(per_slice), rel=1e-12)
    assert metrics.cc(f, srcs, axis=axis) == pytest.approx(
        np.mean([metrics.cc(np.take(f, k, axis=moved), [np.take(s, k, axis=moved) for s in srcs])
                 for k in range(f.shape[moved])]), rel=1e-12)


@pytest.mark.parametrize("axis", [-4, 3, True, 1.0, "0"])
def test_axis_outside_the_range_or_not_an_integer_is_refused(axis):
    f, srcs = _volume((5, 6, 7), seed=2)
    with pytest.raises(FusionInputError, match="axis"):
        metrics.cc(f, srcs, axis=axis)


# --- the sources ------------------------------------------------------------------------------------------------
def test_sources_stacked_in_one_array_equal_the_list():
    f, srcs = _volume((41, 43), seed=3)
    stacked = np.stack(srcs)
    for name in WITH_SOURCES:
        assert _score(name, f, stacked) == _score(name, f, srcs), name
    with pytest.raises(FusionInputError, match="stack the sources on axis 0"):
        metrics.cc(f, stacked[None])
    with pytest.raises(FusionInputError, match="stack the sources on axis 0"):
        metrics.cc(f, stacked[0])


# --- slice sizes -----------------------------------------------------------------------------------------------
def test_both_sides_of_a_slice_must_hold_the_windows():
    f, srcs = _volume((5, 60), seed=4)          # tall enough for nothing with a 7 x 7 window
    with pytest.raises(FusionInputError, match="too small"):
        metrics.ssim(f, srcs)
    with pytest.raises(FusionInputError, match="too small"):
        metrics.ssim(f.T, [s.T for s in srcs])
    # FMI's window: 3 rows hold a 3 x 3 window exactly; 4 rows do not hold a 5 x 5 one, whatever the width
    assert np.isfinite(metrics.fmi(f[:3], [s[:3] for s in srcs], window=3))
    with pytest.raises(FusionInputError, match="smaller than the FMI window 5"):
        metrics.fmi(f[:4], [s[:4] for s in srcs], window=5)


@pytest.mark.parametrize("window", [1, 2, 5.0, True, "3"])
def test_fmi_window_must_be_an_odd_integer_of_at_least_3(window):
    f, srcs = _volume((12, 12), seed=4)
    with pytest.raises(FusionInputError, match="window must be an odd integer"):
        metrics.fmi(f, srcs, window=window)


def test_size_errors_name_only_the_metrics_that_do_not_fit_and_hint_at_evaluate_all_for_several():
    f, srcs = _volume((7, 7), seed=5)
    with pytest.raises(FusionInputError) as err:
        metrics.evaluate_all(f, srcs, metrics=["SSIM", "VIF"])
    assert "VIF >= 41" in str(err.value) and "SSIM" not in str(err.value).split("windows of")[1]
    assert "evaluate_all: pass metrics=" in str(err.value)
    with pytest.raises(FusionInputError) as err:
        metrics.vif(f, srcs)
    assert "VIF >= 41" in str(err.value) and "evaluate_all" not in str(err.value)


# --- volumes in blocks and chunks ------------------------------------------------------------------------------
def test_a_volume_split_into_blocks_is_the_mean_of_its_slices(monkeypatch):
    """More slices (9) than rows (7), one slice per block: every slice is scored once, keyword options reach
    each block (FMI's feature and window)."""
    f, srcs = _volume((9, 7, 9), seed=6)
    f[4] = 17.0                                   # a constant slice: undefined for CC, left out of the mean
    monkeypatch.setattr(_common, "_BLOCK_PIXELS", 64)
    names = [n for n in list(FUSED_ONLY) + list(WITH_SOURCES) if table._MIN_SIZE[n] <= 7]
    cases = [(n, {}) for n in names] + [("FMI", {"feature": "none", "window": 5})]
    for name, kw in cases:
        values = [_score(name, f[k], [s[k] for s in srcs], **kw) for k in range(9)]
        values = [v for v in values if not math.isnan(v)]
        assert _score(name, f, srcs, **kw) == pytest.approx(np.mean(values), rel=1e-10, abs=1e-12), (name, kw)


def test_mi_of_more_slices_than_one_histogram_chunk(monkeypatch):
    f, srcs = _volume((5, 8, 9), seed=7)
    monkeypatch.setattr(information, "_MI_CHUNK", 2)
    values = [metrics.mi(f[k], [s[k] for s in srcs]) for k in range(5)]
    assert len(set(values)) == 5
    assert metrics.mi(f, srcs) == pytest.approx(np.mean(values), rel=1e-12)


# --- MS-SSIM against MONAI on odd, non-square, dark images ------------------------------------------------------
def test_ms_ssim_matches_monai_on_odd_non_square_dark_images():
    """Odd sides at every scale (179 -> 89 -> 44 -> 22 -> 11, 197 -> 98 -> 49 -> 24 -> 12) exercise the crop to
    even sides before each 2 x 2 pooling; means of 5-20 grey levels make C1 = (0.01 * 255)^2 count."""
    torch = pytest.importorskip("torch", reason="MONAI's MS-SSIM is the reference")
    from monai.metrics.regression import compute_ms_ssim

    rng = np.random.default_rng(8)
    y, x = np.mgrid[:179, :197]
    a = np.round(5 + 4 * np.sin(x / 7.0) + rng.uniform(0, 2, x.shape))
    b = np.round(8 + 6 * (y > 90) + rng.uniform(0, 2, x.shape))
    f = np.round(0.8 * a + 0.9 * b + 4 + rng.uniform(0, 3, x.shape))

    def monai(u, v):
        t = [torch.from_numpy(w[None, None]).double() for w in (u, v)]
        return float(compute_ms_ssim(t[0], t[1], spatial_dims=2, data_range=255.0))

    assert metrics.ms_ssim(f, [a, b]) == pytest.approx(monai(f, a) + monai(f, b), rel=1e-6)
    assert metrics.ms_ssim(f.T, [a.T, b.T]) == pytest.approx(monai(f.T, a.T) + monai(f.T, b.T), rel=1e-6)


# --- VIF on a non-square image with near-flat windows ---------------------------------------------------------
def test_vif_equals_the_per_scale_reference_on_non_square_images_with_near_flat_windows():
    """100 x 110 (non-square, and large enough that a fifth scale would keep pixels), against test_metrics.py's
    written-out VIFp: a reference patch of variance ~2.5e-11 (below eps = 1e-10) under a fused patch that follows
    it a million times magnified (the sigma_R^2 < eps branch), a fused patch of variance ~2.5e-11 over a varying
    reference (the sigma_D^2 < eps branch: g = 0 there), and a fused patch of variance < 1 (the clamp of
    sigma_D^2 is at 0, not higher)."""
    rng = np.random.default_rng(13)
    a = np.round(rng.uniform(0, 255, (100, 110)))
    b = np.round(np.clip(rng.normal(120, 40, (100, 110)), 0, 255))
    f = np.round((a + b) / 2)
    a[:30, :30] = 50.0 + rng.normal(0, 5e-6, (30, 30))
    f[:30, :30] = 50.0 + (a[:30, :30] - 50.0) * 1e6
    f[40:70, 60:100] = 80.0 + rng.normal(0, 5e-6, (30, 40))
    f[75:, :40] = 80.0 + (rng.random((25, 40)) < 0.05)
    expected = _vifp_reference(a, f) + _vifp_reference(b, f)
    assert metrics.vif(f, [a, b]) == pytest.approx(expected, rel=1e-9)
    assert metrics.vif(f.T, [a.T, b.T]) == pytest.approx(_vifp_reference(a.T, f.T) + _vifp_reference(b.T, f.T),
                                                         rel=1e-9)


# --- FMI on a single window ------------------------------------------------------------------------------------
@pytest.mark.parametrize("feature", ["gradient", "none"])
def test_fmi_of_a_single_window_equals_the_window_by_window_reference(feature):
    a = np.array([[0.0, 3.0, 1.0], [2.0, 5.0, 4.0], [1.0, 1.0, 0.0]])
    b = np.array([[4.0, 0.0, 2.0], [3.0, 3.0, 1.0], [5.0, 2.0, 2.0]])
    f = np.round((a + b) / 2)
    assert metrics.fmi(f, [a, b], feature=feature) == pytest.approx(_fmi_reference(f, [a, b], feature), rel=1e-10)
    assert metrics.fmi(f, [a, b], feature=feature) < 1.0


# --- conventions where the references divide 0 by 0 -----------------------------------------------------------
def test_qcb_of_constant_images_follows_the_documented_conventions():
    """Qcb's docstring: no local luminance -> contrast 0; equal zero contrasts -> preservation 1; no saliency ->
    equal weights. So constant images everywhere give 1 (1/N of preservation 1, N times), and a fused image
    with contrast against constant sources preserves none of it: 0."""
    rng = np.random.default_rng(9)
    flat = [np.full((24, 26), 30.0), np.full((24, 26), 200.0), np.full((24, 26), 7.0)]
    assert metrics.qcb(np.full((24, 26), 90.0), flat[:2]) == pytest.approx(1.0, abs=1e-12)
    assert metrics.qcb(np.full((24, 26), 90.0), flat) == pytest.approx(1.0, abs=1e-12)
    textured = np.round(rng.uniform(40, 250, (24, 26)))
    assert metrics.qcb(textured, flat[:2]) == pytest.approx(0.0, abs=1e-12)


def test_en_and_mi_clip_to_0_255_before_counting():
    # 300 counts as 255 and -7 as 0: two levels, each twice -> 1 bit
    assert metrics.en(np.array([[255.0, 300.0], [0.0, -7.0]])) == pytest.approx(1.0)
    assert metrics.en(np.array([[255.0, 256.0], [255.0, 1e6]])) == 0.0
    a = np.array([[0.0, 0.0], [255.0, 255.0]])
    assert metrics.mi(np.array([[-3.0, 0.0], [255.0, 900.0]]), [a, a]) == pytest.approx(2 * math.log(2.0))


# --- evaluate_all ----------------------------------------------------------------------------------------------
def test_evaluate_all_decides_what_fits_along_the_given_axis():
    f, srcs = _volume((5, 50, 50), seed=10)
    scores = metrics.evaluate_all(f, srcs, axis=1)           # (5, 50) slices: no SSIM, VIF or MS-SSIM
    assert list(scores) == list(metrics.METRICS)
    assert all(math.isnan(scores[n]) for n in ("SSIM", "VIF", "MS-SSIM"))
    assert scores["SD"] == pytest.approx(metrics.sd(f, axis=1)) and scores["CC"] == metrics.cc(f, srcs, axis=1)
    small = metrics.evaluate_all(f[0, :20, :20], [s[0, :20, :20] for s in srcs])   # 20 x 20: SSIM, no VIF
    assert math.isnan(small["VIF"]) and math.isnan(small["MS-SSIM"])
    assert small["SSIM"] == metrics.ssim(f[0, :20, :20], [s[0, :20, :20] for s in srcs])


def test_evaluate_all_takes_one_metric_name_as_a_string():
    f, srcs = _volume((12, 12), seed=11)
    assert metrics.evaluate_all(f, srcs, metrics="SD") == {"SD": metrics.sd(f)}
    assert metrics.evaluate_all(f, srcs, metrics="MI") == {"MI": metrics.mi(f, srcs)}


@pytest.mark.parametrize("shape", [(4,), (2, 3, 4, 5), (0, 4)])
def test_evaluate_all_refuses_shapes_it_cannot_slice(shape):
    x = np.zeros(shape)
    with pytest.raises(FusionInputError, match="fused must be a 2-D image|too small"):
        metrics.evaluate_all(x, [x, x])


# --- protocol_image ----------------------------------------------------------------------------------------------
def test_protocol_image_reads_a_colour_volume_slice_by_slice():
    rng = np.random.default_rng(12)
    rgb = rng.integers(0, 256, (2, 3, 4, 3)).astype(np.uint8)
    expected = np.stack([metrics.protocol_image(s) for s in rgb])
    assert np.array_equal(metrics.protocol_image(rgb), expected)
    # BT.601 luma, rounded, on one pixel written out
    r, g, b = (float(v) for v in rgb[1, 2, 3])
    assert expected[1, 2, 3] == np.round(0.299 * r + 0.587 * g + 0.114 * b) or \
        abs(expected[1, 2, 3] - (0.299 * r + 0.587 * g + 0.114 * b)) == pytest.approx(0.5, abs=1e-3)


@pytest.mark.parametrize("shape", [(5, 4), (5, 3), (4, 4, 5)])
def test_protocol_image_rgb_true_needs_a_colour_axis(shape):
    with pytest.raises(FusionInputError, match="rgb=True needs a last axis"):
        metrics.protocol_image(np.zeros(shape), rgb=True)
