"""Transform layer (box/guided filters, pyramids) and band fusion rules."""

import numpy as np
import pytest

from MedFusionLib import rules
from MedFusionLib.transforms import (box_mean, guided_filter, laplacian_pyramid, max_pyramid_levels,
                                     reconstruct_laplacian_pyramid)


def _box_mean_bruteforce(x, r):
    out = np.empty_like(x, dtype=np.float64)
    for i in range(x.shape[0]):
        for j in range(x.shape[1]):
            out[i, j] = x[max(i - r, 0):i + r + 1, max(j - r, 0):j + r + 1].mean()
    return out


def test_box_mean_matches_truncated_window_mean(rng):
    x = rng.random((2, 9, 11)).astype(np.float32)
    got = box_mean(x, 2, spatial_dims=2)
    for b in range(2):
        np.testing.assert_allclose(got[b], _box_mean_bruteforce(x[b], 2), rtol=1e-5)
    # 3-D: a constant volume stays constant at the borders (truncated, not zero-padded).
    np.testing.assert_allclose(box_mean(np.full((1, 5, 6, 7), 3.0), 3, spatial_dims=3), 3.0)


def test_box_mean_does_not_mix_batch_items(rng):
    x = np.zeros((3, 8, 8), np.float32)
    x[1] = 1.0
    out = box_mean(x, 3)
    assert out[0].max() == 0 and out[2].max() == 0 and np.allclose(out[1], 1)


def test_guided_filter_flat_guide_gives_box_mean_and_edges_are_preserved(rng):
    p = rng.random((1, 16, 16))
    flat = np.ones_like(p)
    np.testing.assert_allclose(guided_filter(flat, p, 2, 0.01), box_mean(box_mean(p, 2), 2), atol=1e-10)
    step = np.zeros((1, 16, 16))
    step[:, :, 8:] = 1.0
    out = guided_filter(step, step, 3, 1e-6)
    np.testing.assert_allclose(out, step, atol=1e-3)   # the step edge survives a 7x7 filter


@pytest.mark.parametrize("shape, dims", [((3, 17, 20), 2), ((2, 5, 7, 9), 3), ((1, 1, 8), 2), ((4, 2, 3), 2)])
def test_laplacian_filter_is_the_mirrored_second_difference(rng, shape, dims):
    from scipy import ndimage as ndi

    from MedFusionLib.transforms import laplacian_filter

    x = rng.random(shape)
    expected = sum(ndi.correlate1d(x, np.array([1.0, -2.0, 1.0]), axis=a, mode="mirror")
                   for a in range(x.ndim - dims, x.ndim))
    np.testing.assert_allclose(laplacian_filter(x, dims), expected, atol=1e-12)
    assert laplacian_filter(x.astype(np.float32), dims).dtype == np.float32


@pytest.mark.parametrize("radius", [0, 1, 7, 45])
def test_float32_2d_guided_filter_path_matches_the_general_one(rng, radius):
    # float32 2-D input takes the layout-swapping fast path; float64 the plain box means.
    guide = rng.random((3, 37, 50))
    src = (rng.random((3, 37, 50)) > 0.5).astype(np.float64)
    fast = guided_filter(guide.astype(np.float32), src.astype(np.float32), radius, 1e-3)
    assert fast.dtype == np.float32 and fast.shape == guide.shape and fast.flags.c_contiguous
    np.testing.assert_allclose(fast, guided_filter(guide, src, radius, 1e-3), atol=2e-5)
    guide_copy = guide.astype(np.float32)
    guided_filter(guide_copy, src.astype(np.float32), radius, 1e-3)
    np.testing.assert_array_equal(guide_copy, guide.astype(np.float32))       # inputs untouched


@pytest.mark.parametrize("shape, dims", [((1, 37, 50), 2), ((2, 3, 64, 63), 2), ((1, 17, 20, 33), 3)])
def test_laplacian_pyramid_perfect_reconstruction(rng, shape, dims):
    x = rng.standard_normal(shape).astype(np.float64)
    levels = max_pyramid_levels(shape[-dims:])
    bands = laplacian_pyramid(x, levels, dims)
    assert len(bands) == levels + 1
    assert bands[-1].shape[-dims:] < bands[0].shape[-dims:]
    rec = reconstruct_laplacian_pyramid(bands, dims)
    assert np.abs(rec - x).max() / np.abs(x).max() < 1e-12


def test_laplacian_pyramid_rejects_too_many_levels():
    with pytest.raises(ValueError, match="levels must be in"):
        laplacian_pyramid(np.zeros((1, 16, 16)), 9, 2)


def test_max_abs_and_average_rules():
    a = np.array([[1.0, -5.0], [0.5, 2.0]])
    b = np.array([[-3.0, 4.0], [0.2, -2.5]])
    bands = np.stack([a, b])[:, None]            # (N=2, B=1, 2, 2)
    np.testing.assert_array_equal(rules.max_abs(bands)[0], [[-3.0, -5.0], [0.5, -2.5]])
    np.testing.assert_allclose(rules.average(bands)[0], (a + b) / 2)
    np.testing.assert_allclose(rules.weighted_average(bands, [3, 1])[0], 0.75 * a + 0.25 * b)


def test_consistency_check_overturns_isolated_choice():
    index = np.zeros((1, 7, 7), dtype=int)
    index[0, 3, 3] = 1                            # lone pixel choosing source 1
    index[0, :, 6] = 1                            # a solid column stays
    fixed = rules.consistency_check(index, 2, window=3)
    assert fixed[0, 3, 3] == 0
    assert (fixed[0, 1:-1, 6] == 1).all()


def test_local_energy_rule_selects_the_textured_source(rng):
    textured = rng.standard_normal((1, 16, 16))
    flat = np.full((1, 16, 16), 0.1)
    fused = rules.local_energy_rule(np.stack([flat, textured]), window=3)
    assert np.mean(fused == textured) > 0.95


def test_local_similarity_averages_similar_and_selects_dissimilar(rng):
    a = rng.standard_normal((1, 12, 12))
    same = rules.local_similarity(np.stack([a, a]), window=3, threshold=0.75)
    np.testing.assert_allclose(same, a)           # M = 1: weights 1/2 and 1/2
    strong = 10 * rng.standard_normal((1, 12, 12))
    dissimilar = rules.local_similarity(np.stack([strong, -0.01 * strong]), window=3, threshold=0.75)
    np.testing.assert_allclose(dissimilar, strong)  # M < 0 everywhere: pick the energetic source
    w = np.full((1, 12, 12), 0.9)
    np.testing.assert_allclose(rules.local_similarity(np.stack([a, a]), weight_map=w), a)
    with pytest.raises(ValueError, match="2 sources"):
        rules.local_similarity(np.stack([a, a, a]))


# --- the pyramid kernel against Burt and Adelson (1983) -------------------------------------------------
# Burt & Adelson, "The Laplacian pyramid as a compact image code", IEEE Trans. Commun. 31(4), 1983, eq. (1)-(2)
# and Fig. 2: the generating kernel w(0) = a, w(+-1) = 1/4, w(+-2) = 1/4 - a/2, used separably
# (w(m, n) = w(m) w(n)); with a = 0.375 (the value the library names) w = [1/16, 4/16, 6/16, 4/16, 1/16].
# REDUCE: g_l(i, j) = sum_m sum_n w(m, n) g_(l-1)(2i + m, 2j + n).
# EXPAND: g_(l,k)(i, j) = 4 sum_m sum_n w(m, n) g_(l,k-1)((i - m)/2, (j - n)/2), integer terms only.
# Any reduce/expand pair reconstructs perfectly, so these tests, not the reconstruction test, pin the kernel.
def _burt_adelson_kernel(a=0.375):
    return np.array([0.25 - a / 2, 0.25, a, 0.25, 0.25 - a / 2])


def test_reduce_of_an_impulse_is_the_burt_adelson_kernel():
    from MedFusionLib.transforms.pyramid import gaussian_pyramid

    assert np.allclose(_burt_adelson_kernel(), np.array([1, 4, 6, 4, 1]) / 16)
    x = np.zeros((1, 21, 23))
    x[0, 10, 11] = 1.0                        # even row, odd column: both phases of the kernel appear
    reduced = gaussian_pyramid(x, 1)[1][0]
    w = _burt_adelson_kernel()
    expected = np.zeros_like(reduced)
    for i in range(reduced.shape[0]):
        for j in range(reduced.shape[1]):
            m, n = 10 - 2 * i, 11 - 2 * j   # the impulse sits at (2i + m, 2j + n)
            if abs(m) <= 2 and abs(n) <= 2:
                expected[i, j] = w[m + 2] * w[n + 2]
    np.testing.assert_allclose(reduced, expected, atol=1e-15)
    # Written out: rows 4..6 carry w(2), w(0), w(-2) = 1/16, 6/16, 1/16; columns 5, 6 carry w(1), w(-1) = 1/4.
    np.testing.assert_allclose(reduced[4:7, 5:7], np.outer([1 / 16, 6 / 16, 1 / 16], [0.25, 0.25]), atol=1e-15)
    # Burt and Adelson's 'equal contribution' constraint: even taps w(0) + 2 w(2) and odd taps 2 w(1) each sum
    # to 1/2, so every input node contributes 1/4 in 2-D, whatever its phase.
    assert reduced.sum() == pytest.approx(0.25)


@pytest.mark.parametrize("shape", [(17, 20), (16, 21), (9, 8), (3, 4), (4, 3), (5, 6)])   # 3, 4: shortest mirrors
def test_reduce_and_expand_follow_the_published_equations(rng, shape):
    from scipy import ndimage as ndi

    from MedFusionLib.transforms.pyramid import _expand, gaussian_pyramid

    w2 = np.outer(_burt_adelson_kernel(), _burt_adelson_kernel())
    x = rng.random(shape)
    # REDUCE with mirror borders everywhere.
    np.testing.assert_allclose(gaussian_pyramid(x[None], 1)[1][0], ndi.correlate(x, w2, mode="mirror")[::2, ::2],
                               atol=1e-14)
    # EXPAND: zero insertion then 4 w(m, n) (mirror borders); interior checked term by term as the paper writes it.
    g = rng.random(((shape[0] + 1) // 2, (shape[1] + 1) // 2))
    up = np.zeros(shape)
    up[::2, ::2] = g
    expanded = _expand(g[None], shape, 2)[0]
    np.testing.assert_allclose(expanded, ndi.correlate(up, 4 * w2, mode="mirror"), atol=1e-14)
    for i in range(2, shape[0] - 2):
        for j in range(2, shape[1] - 2):
            total = sum(4 * w2[m + 2, n + 2] * g[(i - m) // 2, (j - n) // 2]
                        for m in range(-2, 3) for n in range(-2, 3) if (i - m) % 2 == 0 and (j - n) % 2 == 0)
            assert expanded[i, j] == pytest.approx(total, abs=1e-14)


def test_pyramid_keeps_float32_and_counts_levels_over_all_spatial_axes(rng):
    from MedFusionLib.transforms.pyramid import _expand, gaussian_pyramid

    x = rng.random((2, 12, 13)).astype(np.float32)
    assert gaussian_pyramid(x, 2)[2].dtype == np.float32
    assert _expand(x, (24, 26), 2).dtype == np.float32
    assert all(b.dtype == np.float32 for b in laplacian_pyramid(x, 1))          # one level is allowed
    wide = np.zeros((1, 4, 64))                                                # the short axis limits the levels
    assert max_pyramid_levels((4, 64)) == 1
    with pytest.raises(ValueError, match=r"levels must be in 1\.\.1 for spatial shape \(4, 64\); got 2"):
        laplacian_pyramid(wide, 2)
    with pytest.raises(ValueError, match="got 0"):
        laplacian_pyramid(wide, 0)


def test_3d_reduce_is_the_separable_kernel_over_three_axes(rng):
    from scipy import ndimage as ndi

    from MedFusionLib.transforms.pyramid import gaussian_pyramid

    w = _burt_adelson_kernel()
    x = rng.random((9, 10, 11))
    w3 = w[:, None, None] * w[None, :, None] * w[None, None, :]
    np.testing.assert_allclose(gaussian_pyramid(x[None], 1, spatial_dims=3)[1][0],
                               ndi.correlate(x, w3, mode="mirror")[::2, ::2, ::2], atol=1e-14)


# --- the consistency check against a brute-force majority filter ------------------------------------------------
@pytest.mark.parametrize("shape", [(12, 13), (23, 25), (45, 50)])
def test_consistency_check_is_the_majority_filter_of_li_et_al(rng, shape):
    import references

    index = (rng.random(shape) > 0.5).astype(int)
    got = rules.consistency_check(index[None], 2, window=3)[0]
    expected = references.majority_filter(index)
    np.testing.assert_array_equal(got, expected)                # corners and edges (ties) included
    assert (got != index).mean() > 0.1                          # a random map has much to overturn


def test_consistency_check_keeps_ties_in_image_corners():
    # In an image corner a 3 x 3 window holds 2 x 2 samples; a 2-2 tie keeps the position's own choice (with
    # float32 vote fractions the check used to settle it as source 0).
    for own in (0, 1):
        for i, j in [(0, 0), (0, 4), (4, 0), (4, 4)]:
            index = np.full((5, 5), own)
            di, dj = (1 if i == 0 else -1), (1 if j == 0 else -1)
            index[i, j + dj] = index[i + di, j + dj] = 1 - own     # corner window: 2 own, 2 other
            got = rules.consistency_check(index[None], 2, window=3)[0]
            assert got[i, j] == own, (own, i, j)


def test_consistency_check_keeps_ties_on_image_edges():
    # On an edge (not a corner) a 3 x 3 window holds 2 x 3 = 6 samples: a 3-3 tie keeps the own choice.
    for own in (0, 1):
        index = np.full((6, 6), own)
        index[1, 1:4] = 1 - own                                 # window at (0, 2): 3 own, 3 other
        got = rules.consistency_check(index[None], 2, window=3)[0]
        assert got[0, 2] == own, own


def test_consistency_check_ties_in_3d_corners_keep_own_choice():
    # 2 x 2 x 2 corner window of a volume with 4 votes each; own choice kept, both ways.
    for own in (0, 1):
        index = np.full((4, 4, 4), own)
        index[1, :2, :2] = 1 - own                              # the corner window's second slice: 4 others
        got = rules.consistency_check(index[None], 2, window=3, spatial_dims=3)[0]
        assert got[0, 0, 0] == own, own


def test_consistency_check_of_three_sources_is_a_plurality_vote_keeping_ties():
    # Brute force: the source with most votes in the window (inside the image); a tie that includes the
    # position's own choice keeps it; a tie between two other sources goes to the lower index.
    rng = np.random.default_rng(5)
    index = rng.integers(0, 3, (9, 11))
    got = rules.consistency_check(index[None], 3, window=3)[0]
    expected = index.copy()
    for i in range(9):
        for j in range(11):
            patch = index[max(i - 1, 0):i + 2, max(j - 1, 0):j + 2]
            counts = np.bincount(patch.ravel(), minlength=3)
            top = np.flatnonzero(counts == counts.max())
            expected[i, j] = index[i, j] if index[i, j] in top else top[0]
    np.testing.assert_array_equal(got, expected)
    assert (got != index).mean() > 0.2
