"""Every classical method: 2-D, 3-D (slice-wise and native), N inputs, invariants, and paper behaviour."""

import numpy as np
import pytest
import pywt
from scipy import ndimage as ndi

import MedFusionLib as mf
import references

CLASSICAL = ["average", "weighted_average", "max", "min", "pca", "dwt", "laplacian", "guided_filter"]
MULTISCALE = ["dwt", "laplacian", "guided_filter"]


def _unit(images, method, **kw):
    """Fuse images already in [0, 1] without any rescaling."""
    return mf.fuse(images, method=method, input_ranges=(0, 1), output_range="unit", **kw)


@pytest.mark.parametrize("method", CLASSICAL)
def test_2d_3d_and_three_inputs(method, phantom3d):
    ct, mri, pet = phantom3d["ct"], phantom3d["mri"], phantom3d["pet"]
    extra = {"weights": (1, 2, 1)} if method == "weighted_average" else {}
    for images in ([ct[12], mri[12], pet[12]], [ct, mri, pet]):
        modes = ["auto"] if images[0].ndim == 2 else ["slices", "3d"]
        for mode in modes:
            out = mf.fuse(images, method=method, mode=mode, output_range="unit", **extra)
            assert out.shape == ct.shape[-images[0].ndim:] and out.dtype == np.float32
            assert np.isfinite(out).all() and out.min() >= 0 and out.max() <= 1


@pytest.mark.parametrize("method", CLASSICAL)
def test_fusing_an_image_with_itself_returns_it(method, phantom2d):
    x = phantom2d["mri"] / phantom2d["mri"].max()
    np.testing.assert_allclose(_unit([x, x], method), x, atol=2e-4)
    v = np.stack([x, np.roll(x, 3, axis=0), np.roll(x, 5, axis=1)] * 3)      # (9, H, W) volume
    np.testing.assert_allclose(_unit([v, v, v], method, mode="auto"), v, atol=2e-4)


@pytest.mark.parametrize("method", ["average", "weighted_average", "pca", "dwt", "laplacian", "guided_filter"])
def test_output_depends_on_every_input(method, rng):
    images = [rng.random((64, 64)) for _ in range(3)]
    base = _unit(images, method)
    for k in range(3):
        changed = [im.copy() for im in images]
        changed[k][20:40, 20:40] = 1.0 - changed[k][20:40, 20:40]
        assert np.abs(_unit(changed, method) - base).max() > 1e-3, f"input {k} ignored"


def test_pixel_rules_match_their_formulas(rng):
    a, b, c = (rng.random((16, 16)) for _ in range(3))
    np.testing.assert_allclose(_unit([a, b, c], "average"), (a + b + c) / 3, atol=1e-6)
    np.testing.assert_allclose(_unit([a, b, c], "weighted_average", weights=(2, 1, 1)), (2 * a + b + c) / 4, atol=1e-6)
    np.testing.assert_allclose(_unit([a, b, c], "max"), np.maximum(np.maximum(a, b), c), atol=1e-6)
    np.testing.assert_allclose(_unit([a, b, c], "min"), np.minimum(np.minimum(a, b), c), atol=1e-6)
    with pytest.raises(mf.FusionInputError, match="one value per input"):
        _unit([a, b, c], "weighted_average", weights=(1, 1))


def test_pca_weights_follow_the_principal_component(rng):
    a = rng.random((32, 32))
    flat = np.full_like(a, 0.5)
    # A constant source has no variance: the principal component is the other source alone.
    np.testing.assert_allclose(_unit([a, flat], "pca"), a, atol=1e-5)
    from MedFusionLib.families.pca import pca_weights
    stack = np.stack([a, 0.25 * a + 0.1])[:, None].astype(np.float32)
    w = pca_weights(stack)[:, 0]
    # Covariance [[v, v/4], [v/4, v/16]] has principal eigenvector (4, 1)/sqrt(17): weights 0.8 and 0.2.
    np.testing.assert_allclose(w, [0.8, 0.2], atol=1e-5)


def test_dwt_matches_a_direct_pywavelets_computation(rng):
    a, b = rng.random((64, 64)), rng.random((64, 64))
    ours = _unit([a, b], "dwt", wavelet="db2", levels=3, low_rule="mean", high_rule="max_abs", consistency=False)
    ca, cb = pywt.wavedec2(a, "db2", level=3), pywt.wavedec2(b, "db2", level=3)
    fused = [(ca[0] + cb[0]) / 2] + [tuple(np.where(np.abs(x) >= np.abs(y), x, y) for x, y in zip(da, db))
                                     for da, db in zip(ca[1:], cb[1:])]
    direct = np.clip(pywt.waverec2(fused, "db2")[:64, :64], 0, 1)
    np.testing.assert_allclose(ours, direct, atol=1e-5)


@pytest.fixture(scope="module")
def multifocus_pair():
    """Classic test: each source is sharp on one half and blurred on the other."""
    rng = np.random.default_rng(7)
    sharp = ndi.gaussian_filter(rng.random((96, 96)), 1.0)
    sharp = (sharp - sharp.min()) / (sharp.max() - sharp.min())
    blurred = ndi.gaussian_filter(sharp, 3.0)
    left = np.zeros_like(sharp, bool)
    left[:, :48] = True
    return sharp, np.where(left, sharp, blurred), np.where(left, blurred, sharp)


@pytest.mark.parametrize("method", MULTISCALE)
def test_multiscale_methods_keep_the_sharp_parts(method, multifocus_pair):
    sharp, a, b = multifocus_pair
    inner = (slice(8, -8), slice(8, -8))
    err = np.abs(_unit([a, b], method) - sharp)[inner].mean()
    err_average = np.abs(_unit([a, b], "average") - sharp)[inner].mean()
    assert err < 0.5 * err_average, (err, err_average)


@pytest.mark.parametrize("rule", ["max_abs", "local_energy", "local_similarity", "mean"])
def test_laplacian_detail_rules(rule, multifocus_pair):
    sharp, a, b = multifocus_pair
    out = _unit([a, b], "laplacian", detail_rule=rule, levels=3)
    err = np.abs(out - sharp)[8:-8, 8:-8].mean()
    err_average = np.abs(_unit([a, b], "average") - sharp)[8:-8, 8:-8].mean()
    if rule == "mean":
        assert err == pytest.approx(err_average, rel=1e-3)   # averaging every band is plain averaging
    else:
        assert err < 0.6 * err_average


def test_guided_filter_weights_follow_saliency(multifocus_pair):
    """The fused base layer leans to the sharp source on each side (Li et al. 2013, Fig. 2)."""
    sharp, a, b = multifocus_pair
    out = _unit([a, b], "guided_filter")
    left, right = (slice(8, -8), slice(8, 40)), (slice(8, -8), slice(56, -8))
    assert np.abs(out[left] - a[left]).mean() < np.abs(out[left] - b[left]).mean()
    assert np.abs(out[right] - b[right]).mean() < np.abs(out[right] - a[right]).mean()


def _laplacian_fusion_reference(a, b, levels, consistency):
    """Burt-Adelson pyramids (REDUCE/EXPAND with the 5-tap kernel a = 0.375, mirror borders; references.py),
    choose-max-abs details with an optional brute-force majority filter, mean base, collapse."""
    def pyramid(x):
        gauss = [x]
        for _ in range(levels):
            gauss.append(references.reduce2d(gauss[-1]))
        return [gauss[k] - references.expand2d(gauss[k + 1], gauss[k].shape) for k in range(levels)] + [gauss[-1]]

    pa, pb = pyramid(a), pyramid(b)
    fused = []
    for da, db in zip(pa[:-1], pb[:-1]):
        choice = (np.abs(db) > np.abs(da)).astype(int)          # ties to the first source
        if consistency:
            choice = references.majority_filter(choice)           # ties keep their choice, corners too
        fused.append(np.where(choice == 1, db, da))
    out = (pa[-1] + pb[-1]) / 2
    for detail in reversed(fused):
        out = detail + references.expand2d(out, detail.shape)
    return np.clip(out, 0, 1)


def test_laplacian_fusion_matches_a_written_out_reference(multifocus_pair):
    """The default Laplacian fusion is the pyramid of Burt and Adelson (1983) with choose-max-abs details and the
    consistency check of Li et al. (1995) on, and a mean base (Burt and Kolczynski 1993); the check matters."""
    _, a, b = multifocus_pair
    rng = np.random.default_rng(3)
    a = np.clip(a + 0.05 * rng.standard_normal(a.shape), 0, 1)   # noise: many isolated choices to overturn
    b = np.clip(b + 0.05 * rng.standard_normal(b.shape), 0, 1)
    a, b = a[:45, :50], b[:45, :50]                              # odd and even sides
    ours = _unit([a, b], "laplacian", levels=3)
    np.testing.assert_allclose(ours, _laplacian_fusion_reference(a, b, 3, True), atol=1e-5)
    unchecked = _unit([a, b], "laplacian", levels=3, consistency=False)
    np.testing.assert_allclose(unchecked, _laplacian_fusion_reference(a, b, 3, False), atol=1e-5)
    assert np.abs(ours - unchecked).max() > 0.05                # the consistency check changes the result
