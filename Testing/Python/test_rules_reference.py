"""The band rules of MedFusionLib.rules position by position against brute-force references, in 2-D and
3-D, with their argument checks and the ties they promise (added from the surviving mutants of the
mutation run, docs/testing.md 'Mutation testing').

References: local energy = mean of squared coefficients over the window cut at the image border (Burt and
Kolczynski 1993); the match-measure rule of Burt and Kolczynski (1993) as the docstring of
``rules.local_similarity`` writes it; weighted average = sum w_n b_n / sum w_n (0 where the weights sum 0)."""

import itertools

import numpy as np
import pytest

from MedFusionLib import rules


def _window_mean(x, r):
    """Mean over the (2r+1)^d window cut at the border, written position by position (any dimension)."""
    out = np.empty(x.shape, np.float64)
    for pos in itertools.product(*(range(n) for n in x.shape)):
        window = tuple(slice(max(p - r, 0), p + r + 1) for p in pos)
        out[pos] = x[window].mean()
    return out


def _local_similarity_reference(a, b, window, threshold, weight_map=None):
    r = window // 2
    out = np.empty(a.shape, np.float64)
    for pos in itertools.product(*(range(n) for n in a.shape)):
        win = tuple(slice(max(p - r, 0), p + r + 1) for p in pos)
        ea, eb = (a[win].astype(np.float64) ** 2).mean(), (b[win].astype(np.float64) ** 2).mean()
        m = 2 * (a[win].astype(np.float64) * b[win]).mean() / (ea + eb) if ea + eb > 0 else 1.0
        if m <= threshold:
            out[pos] = a[pos] if ea >= eb else b[pos]
            continue
        if weight_map is not None:
            wa = weight_map[pos]
        else:
            w_min = 0.5 - 0.5 * (1 - m) / (1 - threshold)
            wa = 1 - w_min if ea >= eb else w_min
        out[pos] = wa * a[pos] + (1 - wa) * b[pos]
    return out


def _pair(rng, shape, scale=1.0):
    a = rng.standard_normal(shape) * scale
    b = 0.6 * a + 0.8 * rng.standard_normal(shape) * scale    # partly similar, partly not
    return np.stack([a, b])


# --- argument checks -------------------------------------------------------------------------------------------
def test_band_arrays_need_a_source_axis_and_the_spatial_axes(rng):
    bands = rng.standard_normal((2, 6, 7))
    np.testing.assert_array_equal(rules.max_abs(bands), np.where(np.abs(bands[1]) > np.abs(bands[0]),
                                                                  bands[1], bands[0]))
    for shape, dims in [((6, 7), 2), ((2, 6, 7), 3), ((7,), 2)]:
        with pytest.raises(ValueError, match=r"bands must have shape \(N, \.\.\., \*spatial\) with "
                                             f"{dims} spatial axes; got shape"):
            rules.max_abs(np.zeros(shape), spatial_dims=dims)


@pytest.mark.parametrize("window", [0, -1, 2, 4])
def test_windows_must_be_positive_and_odd(rng, window):
    bands = rng.standard_normal((2, 6, 7))
    calls = [lambda: rules.local_energy(bands, window), lambda: rules.local_similarity(bands, window)]
    if window > 1:                      # a window of 1 or less switches the consistency check off
        calls.append(lambda: rules.consistency_check(np.zeros((6, 7), int), 2, window))
    for call in calls:
        with pytest.raises(ValueError, match=f"window must be a positive odd size; got {window}"):
            call()


def test_local_similarity_argument_checks(rng):
    with pytest.raises(ValueError, match="defined for 2 sources; got 3"):
        rules.local_similarity(rng.standard_normal((3, 5, 7)))
    for bad in (1.0, 1.5, -0.1):
        with pytest.raises(ValueError, match=r"threshold must be in \[0, 1\); got"):
            rules.local_similarity(rng.standard_normal((2, 5, 7)), threshold=bad)
    bands = _pair(rng, (5, 7))
    np.testing.assert_allclose(rules.local_similarity(bands, threshold=0.0),        # 0 is allowed
                               _local_similarity_reference(bands[0], bands[1], 3, 0.0), atol=1e-12)


def test_unknown_band_rule_lists_the_rules():
    with pytest.raises(ValueError, match=r"unknown band rule 'median'; rules are \['local_energy', "
                                         r"'local_similarity', 'max_abs', 'mean'\]"):
        rules.fuse_band(np.zeros((2, 4, 4)), "median")


def test_weighted_average_argument_check():
    with pytest.raises(ValueError, match=r"need one weight per source \(2\); got 3"):
        rules.weighted_average(np.zeros((2, 4, 5)), [1, 2, 3])


# --- values against the references -----------------------------------------------------------------------------
@pytest.mark.parametrize("window", [1, 3, 5])
def test_local_energy_is_the_window_mean_of_squares(rng, window):
    bands = rng.standard_normal((2, 9, 11))
    expected = np.stack([_window_mean(b ** 2, window // 2) for b in bands])
    np.testing.assert_allclose(rules.local_energy(bands, window), expected, atol=1e-12)
    if window == 3:
        np.testing.assert_allclose(rules.local_energy(bands), expected, atol=1e-12)     # the default
    chosen = rules.local_energy_rule(bands, window)
    np.testing.assert_array_equal(chosen, np.where(expected[1] > expected[0], bands[1], bands[0]))


def test_local_energy_in_3d(rng):
    bands = rng.standard_normal((2, 5, 6, 7))
    expected = np.stack([_window_mean(b ** 2, 1) for b in bands])
    np.testing.assert_allclose(rules.local_energy(bands, 3, spatial_dims=3), expected, atol=1e-12)
    np.testing.assert_array_equal(rules.local_energy_rule(bands, 3, spatial_dims=3),
                                  np.where(expected[1] > expected[0], bands[1], bands[0]))
    np.testing.assert_array_equal(rules.fuse_band(bands, "local_energy", spatial_dims=3),
                                  np.where(expected[1] > expected[0], bands[1], bands[0]))


@pytest.mark.parametrize("window, threshold, scale", [(3, 0.75, 1.0), (5, 0.6, 1.0), (3, 0.6, 0.05)])
def test_local_similarity_is_burt_and_kolczynskis_rule(rng, window, threshold, scale):
    # scale 0.05: energies well below 1 (a denominator guard that confused 0 with 1 would show)
    bands = _pair(rng, (9, 11), scale)
    got = rules.local_similarity(bands, window, threshold)
    expected = _local_similarity_reference(bands[0], bands[1], window, threshold)
    np.testing.assert_allclose(got, expected, atol=1e-12 * scale)
    # both branches are exercised
    sel = (got == bands[0]) | (got == bands[1])
    assert 0.1 < sel.mean() < 0.9
    np.testing.assert_allclose(rules.fuse_band(bands, "local_similarity", window=window, threshold=threshold),
                               expected, atol=1e-12 * scale)


def test_local_similarity_in_3d_and_with_a_weight_map(rng):
    bands = _pair(rng, (5, 6, 7))
    expected = _local_similarity_reference(bands[0], bands[1], 3, 0.5)
    np.testing.assert_allclose(rules.local_similarity(bands, 3, 0.5, spatial_dims=3), expected, atol=1e-12)
    np.testing.assert_allclose(rules.fuse_band(bands, "local_similarity", threshold=0.5, spatial_dims=3),
                               expected, atol=1e-12)
    flat = _pair(rng, (9, 11))
    w = rng.random((9, 11))
    np.testing.assert_allclose(rules.local_similarity(flat, 3, 0.2, weight_map=w),
                               _local_similarity_reference(flat[0], flat[1], 3, 0.2, weight_map=w), atol=1e-12)


def test_local_similarity_ties_and_dtype(rng):
    a = rng.standard_normal((6, 7))
    # equal energies, match -1: the first source is selected
    np.testing.assert_array_equal(rules.local_similarity(np.stack([a, -a])), a)
    out = rules.local_similarity(_pair(rng, (6, 7)).astype(np.float32))
    assert out.dtype == np.float32


def test_argmax_sources_ties_go_to_the_first_and_the_map_is_integer():
    activity = np.array([[[1.0, 2.0, 3.0]], [[1.0, 5.0, 0.0]], [[1.0, 5.0, 7.0]]])
    index = rules.argmax_sources(activity)
    np.testing.assert_array_equal(index, [[0, 1, 2]])
    assert index.dtype == np.intp


def test_average_keeps_the_precision_of_its_input(rng):
    bands = rng.standard_normal((3, 5, 6))
    out = rules.average(bands)
    assert out.dtype == np.float64
    np.testing.assert_allclose(out, (bands[0] + bands[1] + bands[2]) / 3, rtol=1e-15, atol=1e-15)
    assert rules.average(bands.astype(np.float32)).dtype == np.float32


def test_weighted_average_normalises_weights_and_weight_maps(rng):
    bands = rng.standard_normal((2, 4, 5))
    np.testing.assert_allclose(rules.weighted_average(bands, [1, 3]), (bands[0] + 3 * bands[1]) / 4, atol=1e-15)
    out32 = rules.weighted_average(bands.astype(np.float32), [1, 3])
    assert out32.dtype == np.float32
    maps = rng.random((2, 4, 5))
    maps[:, 0, 0] = 0.0                                      # weights summing to 0: result 0 there
    expected = (maps * bands).sum(0) / np.where(maps.sum(0) == 0, 1, maps.sum(0))
    got = rules.weighted_average(bands, maps)
    np.testing.assert_allclose(got, expected, atol=1e-14)
    assert got[0, 0] == 0.0


# --- the consistency check through the choose-max rules ----------------------------------------------------------
def _isolated_choices(shape, rng):
    """Bands where source 1 wins in one block and at scattered single positions of the rest."""
    a = rng.random(shape) + 1.0
    b = rng.random(shape)
    b[..., :3, :3] += 2.0
    b[..., 5, 6] += 2.0                       # an isolated choice, overturned by the majority filter
    return np.stack([a, b])


def test_choose_max_rules_apply_the_consistency_check_when_asked(rng):
    bands = _isolated_choices((8, 9), rng)
    raw = (np.abs(bands[1]) > np.abs(bands[0])).astype(int)
    checked = rules.consistency_check(raw, 2, 3)
    assert (checked != raw).any()
    expected = np.where(checked == 1, bands[1], bands[0])
    np.testing.assert_array_equal(rules.max_abs(bands, 3), expected)
    np.testing.assert_array_equal(rules.choose_max(bands, np.abs(bands), 3), expected)
    np.testing.assert_array_equal(rules.fuse_band(bands, "max_abs", consistency=True), expected)
    np.testing.assert_array_equal(rules.fuse_band(bands, "local_energy", window=1, consistency=True),
                                  rules.local_energy_rule(bands, 1, 1))
    # off by default
    np.testing.assert_array_equal(rules.fuse_band(bands, "max_abs"), np.where(raw == 1, bands[1], bands[0]))
    np.testing.assert_array_equal(rules.max_abs(bands), np.where(raw == 1, bands[1], bands[0]))


def test_choose_max_rules_check_consistency_over_three_axes_in_3d(rng):
    bands = _isolated_choices((4, 8, 9), rng)
    bands[1, 1, 4:7, 5:8] += 2.0              # a 3 x 3 patch in one slice: kept in 2-D, overturned in 3-D
    raw = (np.abs(bands[1]) > np.abs(bands[0])).astype(int)
    checked3 = rules.consistency_check(raw, 2, 3, spatial_dims=3)
    checked2 = rules.consistency_check(raw, 2, 3, spatial_dims=2)
    assert (checked3 != checked2).any()
    expected = np.where(checked3 == 1, bands[1], bands[0])
    np.testing.assert_array_equal(rules.max_abs(bands, 3, spatial_dims=3), expected)
    np.testing.assert_array_equal(rules.fuse_band(bands, "max_abs", consistency=True, spatial_dims=3), expected)
    energy = rules.local_energy(bands, 3, spatial_dims=3)
    idx = rules.consistency_check((energy[1] > energy[0]).astype(int), 2, 3, spatial_dims=3)
    np.testing.assert_array_equal(rules.fuse_band(bands, "local_energy", consistency=True, spatial_dims=3),
                                  np.where(idx == 1, bands[1], bands[0]))
    # three sources: the plurality vote also runs over the three axes
    three = np.concatenate([bands, bands[:1] * 0.5])
    act = np.abs(three)
    raw3 = rules.argmax_sources(act)
    np.testing.assert_array_equal(rules.choose_max(three, act, 3, spatial_dims=3),
                                  rules.select(three, rules.consistency_check(raw3, 3, 3, spatial_dims=3)))
    brute = raw3.copy()
    for pos in itertools.product(*(range(n) for n in raw3.shape)):
        win = tuple(slice(max(p - 1, 0), p + 2) for p in pos)
        counts = np.bincount(raw3[win].ravel(), minlength=3)
        top = np.flatnonzero(counts == counts.max())
        brute[pos] = raw3[pos] if raw3[pos] in top else top[0]
    np.testing.assert_array_equal(rules.consistency_check(raw3, 3, 3, spatial_dims=3), brute)


def test_three_source_tie_between_two_other_sources_goes_to_the_lower_index():
    index = np.array([[1, 2, 1], [2, 0, 2], [1, 2, 1]])      # centre: own 0 has 1 vote, 1 and 2 have 4 each
    assert rules.consistency_check(index, 3, 3)[1, 1] == 1
    index = np.array([[2, 1, 2], [1, 0, 1], [2, 1, 2]])
    assert rules.consistency_check(index, 3, 3)[1, 1] == 1


def test_two_source_consistency_check_in_3d_is_the_majority_of_the_3d_window(rng):
    raw = (rng.random((4, 6, 7)) > 0.5).astype(int)
    brute = raw.copy()
    for pos in itertools.product(*(range(n) for n in raw.shape)):
        win = raw[tuple(slice(max(p - 1, 0), p + 2) for p in pos)]
        ones, n = int(win.sum()), win.size
        if 2 * ones != n:
            brute[pos] = int(2 * ones > n)
    np.testing.assert_array_equal(rules.consistency_check(raw, 2, 3, spatial_dims=3), brute)


def test_local_similarity_where_both_sources_are_zero(rng):
    bands = _pair(rng, (9, 11))
    bands[:, :4, :4] = 0.0                    # zero energy in both windows: the match is taken as 1
    got = rules.local_similarity(bands)
    np.testing.assert_allclose(got, _local_similarity_reference(bands[0], bands[1], 3, 0.75), atol=1e-12)
    assert (got[:3, :3] == 0).all() and np.isfinite(got).all()


def test_choose_max_rejects_an_even_consistency_window(rng):
    bands = rng.standard_normal((2, 5, 6))
    with pytest.raises(ValueError, match="positive odd size; got 2"):
        rules.choose_max(bands, np.abs(bands), 2)


def test_rule_defaults(rng):
    # The documented defaults: window 3 for the consistency check and local energy, threshold 0.75.
    bands = _pair(rng, (9, 11))
    index = (rng.random((9, 11)) > 0.5).astype(int)
    np.testing.assert_array_equal(rules.consistency_check(index, 2), rules.consistency_check(index, 2, 3))
    np.testing.assert_array_equal(rules.local_energy_rule(bands), rules.local_energy_rule(bands, 3, 0))
    np.testing.assert_array_equal(rules.fuse_band(bands, "local_similarity"),
                                  rules.local_similarity(bands, 3, 0.75))
