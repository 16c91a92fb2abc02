"""MedFusionLib.intensity: windows, normalisation and percentile sampling, checked value by value (added from
the surviving mutants of the mutation run, docs/testing.md 'Mutation testing')."""

import numpy as np
import pytest

from MedFusionLib import intensity
from MedFusionLib.errors import FusionInputError


def test_normalise_maps_the_window_to_0_1_clips_and_returns_float32():
    x = np.array([-1500.0, -1000.0, 0.0, 500.0, 1000.0, 3000.0])     # CT-like, window (-1000, 1000)
    before = x.copy()
    out = intensity.normalise(x, (-1000.0, 1000.0))
    np.testing.assert_allclose(out, [0.0, 0.0, 0.5, 0.75, 1.0, 1.0], atol=1e-7)
    assert out.dtype == np.float32
    np.testing.assert_array_equal(x, before)                          # the input is not written
    out = intensity.normalise(np.array([5, 10, 20, 30, 40], np.int16), (10.0, 30.0))
    np.testing.assert_allclose(out, [0.0, 0.0, 0.5, 1.0, 1.0], atol=1e-7)
    assert out.dtype == np.float32


def test_denormalise_is_lo_plus_y_times_the_width_in_float32():
    y = np.array([0.0, 0.25, 1.0])
    out = intensity.denormalise(y, (-1000.0, 1000.0))
    np.testing.assert_allclose(out, [-1000.0, -500.0, 1000.0])
    assert out.dtype == np.float32
    buf = np.empty(3, np.float32)
    assert intensity.denormalise(y, (10.0, 30.0), out=buf) is buf
    np.testing.assert_allclose(buf, [10.0, 15.0, 30.0])


def test_percentile_checks():
    assert intensity.check_percentiles((0, 100)) == (0.0, 100.0)      # both ends are allowed
    for bad in [(50, 50), (60, 40), (-1, 50), (0, 100.5)]:
        with pytest.raises(FusionInputError, match=r"0 <= low < high <= 100"):
            intensity.check_percentiles(bad)
    for bad in [(1, 2, 3), "ab", None]:
        with pytest.raises(FusionInputError, match="percentiles must be a pair"):
            intensity.check_percentiles(bad)
    with pytest.raises(FusionInputError, match="input_range must be a pair"):
        intensity.check_window((1,), "input_range")
    with pytest.raises(FusionInputError, match="high > low"):
        intensity.check_window((2, 2), "input_range")


def test_robust_window_falls_back_to_min_max_when_the_percentiles_coincide():
    x = np.full(1000, 7.0)
    x[0], x[1] = -3.0, 20.0                                 # the 0.5/99.5 percentiles are both 7
    assert intensity.robust_window(x) == (-3.0, 20.0)
    assert intensity.robust_window(np.full(10, 4.0)) == (4.0, 5.0)


def test_large_inputs_are_sampled_on_a_regular_grid():
    # 7.9 M samples, 7.5 x the sampling limit of 2^20: the step is ceil(sqrt(7.5)) = 3 per axis, so the window
    # comes from x[::3, ::3] only; everything else is an outlier at 9 (a step of ceil(7.5 / 2) = 4 or of
    # ceil(7.5) = 8 would see them).
    n = 2805
    assert 7.4 < n * n / (1 << 20) < 7.6
    x = np.full((n, n), 9.0, np.float32)
    grid = np.random.default_rng(0).random((len(range(0, n, 3)),) * 2).astype(np.float32) * 0.5 + 0.25
    x[::3, ::3] = grid
    lo, hi = intensity.robust_window(x, (0, 100))
    assert (lo, hi) == (float(grid.min()), float(grid.max()))
    small = np.arange(12.0).reshape(3, 4)                    # below the limit: every sample counts
    assert intensity.robust_window(small, (0, 100)) == (0.0, 11.0)
