"""MedFusionLib.transforms.filters against brute-force references: the guided filter of He et al. (2013)
written with truncated window means in 2-D, 3-D, float32 and float64; box means of integer input; the
Gaussian low-pass as an explicit truncated kernel; the Laplacian of integer input; axis checks (added from
the surviving mutants of the mutation run, docs/testing.md 'Mutation testing')."""

import itertools

import numpy as np
import pytest
from scipy import ndimage as ndi

from MedFusionLib import rules
from MedFusionLib.transforms.filters import box_mean, gaussian_smooth, guided_filter, laplacian_filter


def _window_mean(x, r):
    out = np.empty(x.shape, np.float64)
    for pos in itertools.product(*(range(n) for n in x.shape)):
        out[pos] = x[tuple(slice(max(p - r, 0), p + r + 1) for p in pos)].mean()
    return out


def _guided_reference(i, p, r, eps):
    """He, Sun, Tang, TPAMI 2013, Algorithm 1, with means over windows cut at the border."""
    i, p = i.astype(np.float64), p.astype(np.float64)
    mean_i, mean_p = _window_mean(i, r), _window_mean(p, r)
    a = (_window_mean(i * p, r) - mean_i * mean_p) / (_window_mean(i * i, r) - mean_i ** 2 + eps)
    b = mean_p - a * mean_i
    return _window_mean(a, r) * i + _window_mean(b, r)


@pytest.mark.parametrize("dtype, tol", [(np.float64, 1e-10), (np.float32, 2e-4)])
def test_guided_filter_is_he_et_al_in_2d_per_batch_item(rng, dtype, tol):
    guide = rng.random((2, 9, 11)).astype(dtype)
    src = (0.5 * guide + 0.5 * rng.random((2, 9, 11))).astype(dtype)
    got = guided_filter(guide, src, 2, 0.01)              # default: two spatial axes, a batch of 2
    assert got.dtype == dtype
    for k in range(2):
        np.testing.assert_allclose(got[k], _guided_reference(guide[k], src[k], 2, 0.01), atol=tol)


@pytest.mark.parametrize("dtype, tol", [(np.float64, 1e-10), (np.float32, 2e-4)])
def test_guided_filter_in_3d(rng, dtype, tol):
    guide = rng.random((1, 5, 6, 7)).astype(dtype)
    src = (0.5 * guide + 0.5 * rng.random((1, 5, 6, 7))).astype(dtype)
    got = guided_filter(guide, src, 1, 0.02, spatial_dims=3)
    np.testing.assert_allclose(got[0], _guided_reference(guide[0], src[0], 1, 0.02), atol=tol)


def test_guided_filter_of_radius_0_is_a_copy(rng):
    src = rng.random((4, 5)).astype(np.float32)
    out = guided_filter(src, src, 0, 0.1)
    assert out is not src and out.dtype == np.float32
    np.testing.assert_array_equal(out, src)
    out[0, 0] = -1
    assert src[0, 0] != -1


def test_box_mean_of_integer_input_is_float32_and_exact(rng):
    x = rng.integers(0, 200, (2, 7, 8)).astype(np.int16)
    got = box_mean(x, 1)
    assert got.dtype == np.float32
    for k in range(2):
        np.testing.assert_allclose(got[k], _window_mean(x[k].astype(float), 1), rtol=1e-6)
    copy = box_mean(x, 0)
    assert copy.dtype == np.float32
    np.testing.assert_array_equal(copy, x)
    f = rng.random((3, 4))
    same = box_mean(f, 0)
    assert same is not f and same.dtype == np.float64
    np.testing.assert_array_equal(same, f)


@pytest.mark.parametrize("sigma, radius", [(1.0, 2), (1.5, 4)])
def test_gaussian_smooth_is_the_truncated_kernel_with_mirror_borders(rng, sigma, radius):
    x = rng.random((2, 12, 13))
    t = np.arange(-radius, radius + 1)
    k = np.exp(-t ** 2 / (2 * sigma ** 2))
    k /= k.sum()
    for b in range(2):                                     # batch items are not mixed
        expected = ndi.correlate1d(ndi.correlate1d(x[b], k, axis=0, mode="mirror"), k, axis=1, mode="mirror")
        np.testing.assert_allclose(gaussian_smooth(x, sigma, radius)[b], expected, atol=1e-12)


def test_laplacian_filter_of_integer_input(rng):
    x = rng.integers(0, 50, (6, 7))
    got = laplacian_filter(x)
    assert got.dtype == np.float32
    expected = sum(ndi.correlate1d(x.astype(float), [1, -2, 1], axis=a, mode="mirror") for a in (0, 1))
    np.testing.assert_allclose(got, expected)


@pytest.mark.parametrize("dims", [1, 4])
def test_spatial_dims_must_be_2_or_3(dims):
    with pytest.raises(ValueError, match=f"spatial_dims must be 2 or 3 and at most x.ndim=5; got {dims}"):
        box_mean(np.zeros((2, 3, 4, 5, 6)), 1, spatial_dims=dims)


def test_consistency_check_with_a_5_window_and_a_batch_of_maps(rng):
    import references

    index = (rng.random((3, 11, 12)) > 0.5).astype(int)
    got5 = rules.consistency_check(index, 2, window=5)
    got3 = rules.consistency_check(index, 2, window=3)
    for k in range(3):
        np.testing.assert_array_equal(got5[k], references.majority_filter(index[k], window=5))
        np.testing.assert_array_equal(got3[k], references.majority_filter(index[k], window=3))
