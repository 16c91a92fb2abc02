"""The classical methods' bodies composed from pinned pieces (issue 13: the mutants of the @register-ed method
bodies that test_classical_methods.py let through). Each method is written out from its paper's steps with
the library's filters and band rules, which test_filters_reference.py and test_rules_reference.py pin against
brute-force references, and run with parameters that all differ from the defaults and from each other, in
2-D and 3-D, so that a dropped, swapped or mistyped argument changes the result."""

import numpy as np
import pytest
import pywt

import MedFusionLib as mf
from MedFusionLib import rules
from MedFusionLib.transforms.filters import box_mean, gaussian_smooth, guided_filter, laplacian_filter
from MedFusionLib.transforms.pyramid import laplacian_pyramid, reconstruct_laplacian_pyramid


def _unit(images, method, **kw):
    return mf.fuse(images, method=method, input_ranges=(0, 1), output_range="unit", **kw)


def _sources(rng, shape, n=3):
    """One random texture, source k sharp on the k-th slab of the first axis and blurred elsewhere, plus
    its own offset and a little noise (so every source wins somewhere and every weight map matters)."""
    from scipy import ndimage as ndi
    texture = ndi.gaussian_filter(rng.random(shape), 0.7)
    texture = (texture - texture.min()) / (texture.max() - texture.min())
    blurred = ndi.gaussian_filter(texture, 2.0)
    slab = (np.arange(shape[0]) * n // shape[0]).reshape((-1,) + (1,) * (len(shape) - 1))
    return [np.clip(np.where(slab == k, texture, blurred) * 0.8 + 0.05 * k + 0.02 * rng.random(shape), 0, 1)
            for k in range(n)]


def _gff_reference(sources, base_radius, saliency_radius, saliency_sigma, r1, eps1, r2, eps2):
    """Li, Kang and Hu, IEEE TIP 22(7), 2013, Sec. III: B_n = mean filter of I_n, D_n = I_n - B_n;
    S_n = Gaussian_{r_g, sigma_g}(|Laplacian I_n|); P_n = [S_n is the maximum over n] (the first on ties);
    W^B_n = GF_{r1, eps1}(P_n, I_n), W^D_n = GF_{r2, eps2}(P_n, I_n), each normalised over n;
    F = sum W^B_n B_n + sum W^D_n D_n."""
    dims = sources[0].ndim
    x = [s[None].astype(np.float32) for s in sources]
    base = [box_mean(s, base_radius, dims) for s in x]
    saliency = np.stack([gaussian_smooth(np.abs(laplacian_filter(s, dims)), saliency_sigma, saliency_radius, dims)
                         for s in x])
    winner = saliency.argmax(axis=0)
    p = [(winner == n).astype(np.float32) for n in range(len(x))]
    wb = np.stack([guided_filter(s, q, r1, eps1, dims) for s, q in zip(x, p)]).astype(np.float64)
    wd = np.stack([guided_filter(s, q, r2, eps2, dims) for s, q in zip(x, p)]).astype(np.float64)
    wb /= wb.sum(axis=0)
    wd /= wd.sum(axis=0)
    fused = sum(wb[n] * base[n] + wd[n] * (x[n] - base[n]) for n in range(len(x)))
    return np.clip(fused[0], 0, 1)


@pytest.mark.parametrize("shape", [(30, 34), (12, 14, 16)])
def test_guided_filter_fusion_is_li_et_al_written_out(shape, rng):
    sources = _sources(rng, shape)
    params = dict(base_radius=3, saliency_radius=2, saliency_sigma=1.3, base_filter_radius=5,
                  base_filter_eps=0.05, detail_filter_radius=2, detail_filter_eps=1e-3)
    ours = _unit(sources, "guided_filter", **params)
    reference = _gff_reference(sources, *params.values())
    np.testing.assert_allclose(ours, reference, atol=2e-5)
    # each parameter matters on this input (so the comparison above pins it)
    for name, value in [("base_radius", 4), ("saliency_radius", 3), ("saliency_sigma", 2.0),
                        ("base_filter_radius", 6), ("base_filter_eps", 0.5), ("detail_filter_radius", 3),
                        ("detail_filter_eps", 0.05)]:
        other = _unit(sources, "guided_filter", **dict(params, **{name: value}))
        assert np.abs(other - ours).max() > 1e-4, name


def test_guided_filter_fusion_defaults_are_the_papers(rng):
    """31 x 31 mean filter, r_g = sigma_g = 5, r1 = 45, eps1 = 0.3, r2 = 7, eps2 = 1e-6 (Li et al. 2013)."""
    sources = _sources(rng, (48, 52), 2)
    np.testing.assert_allclose(_unit(sources, "guided_filter"),
                               _gff_reference(sources, 15, 5, 5.0, 45, 0.3, 7, 1e-6), atol=2e-5)


def test_guided_filter_fusion_reports_each_stage(rng):
    reports = []

    class Recorder:
        def report(self, fraction, message=""):
            reports.append((round(fraction, 6), message))

    from MedFusionLib.families.guided import guided_filter_fusion
    stack = np.stack([s[None] for s in _sources(rng, (20, 20))]).astype(np.float32)
    guided_filter_fusion(stack, 2, 1, 1.0, 3, 0.1, 1, 1e-3, progress=Recorder())
    assert reports == [(0.1, "guided filter: saliency")] + [
        (round(0.1 + 0.9 * (n + 1) / 3, 6), f"guided filter: weights of input {n + 1} of 3") for n in range(3)]


def _dwt_reference(sources, wavelet, levels, low_rule, high_rule, window, threshold, consistency, extension):
    """pywt.wavedecn of every source, the approximation fused by ``low_rule``, every detail sub-band by
    ``high_rule`` (the library's band rules over the image's spatial axes), pywt.waverecn, cropped."""
    dims = sources[0].ndim
    stack = np.stack([s[None] for s in sources]).astype(np.float32)
    axes = tuple(range(2, 2 + dims))
    coeffs = pywt.wavedecn(stack, wavelet, mode=extension, level=levels, axes=axes)
    options = dict(window=window, threshold=threshold, consistency=consistency, spatial_dims=dims)
    fused = [rules.fuse_band(coeffs[0], low_rule, **options)]
    fused += [{k: rules.fuse_band(v, high_rule, **options) for k, v in d.items()} for d in coeffs[1:]]
    out = pywt.waverecn(fused, wavelet, mode=extension, axes=tuple(a - 1 for a in axes))
    return np.clip(out[(0,) + tuple(slice(0, s) for s in sources[0].shape)], 0, 1)


@pytest.mark.parametrize("shape,params", [
    ((29, 35), dict(wavelet="db3", levels=2, low_rule="local_energy", high_rule="local_similarity", window=5,
                    threshold=0.4, consistency=True, extension="periodization")),
    ((29, 35), dict(wavelet="sym2", levels=2, low_rule="max_abs", high_rule="local_energy", window=5,
                    threshold=0.75, consistency=True, extension="reflect")),
    ((13, 15, 17), dict(wavelet="haar", levels=2, low_rule="mean", high_rule="max_abs", window=3,
                        threshold=0.75, consistency=True, extension="zero")),
])
def test_dwt_fusion_with_every_option_matches_pywavelets_and_the_rules(shape, params, rng):
    sources = _sources(rng, shape, 2 if "local_similarity" in params.values() else 3)
    ours = _unit(sources, "dwt", **params)
    assert ours.shape == shape
    np.testing.assert_allclose(ours, _dwt_reference(sources, *params.values()), atol=2e-5)
    # the options matter here
    changes = [("extension", "symmetric"), ("window", 3 if params["window"] == 5 else 5)]
    changes += [("consistency", False)] if params["high_rule"] != "local_similarity" else [("threshold", 0.9)]
    for name, value in changes:
        assert np.abs(_unit(sources, "dwt", **dict(params, **{name: value})) - ours).max() > 1e-4, name


def test_laplacian_fusion_with_every_option_in_2d_and_3d(rng):
    """Burt and Adelson's pyramid over the spatial axes, every band-pass level by the detail rule (window,
    threshold, consistency as given), the low-pass residual by the base rule, collapsed."""
    cases = [((27, 33), dict(levels=3, detail_rule="local_similarity", base_rule="local_energy", window=5,
                             threshold=0.3, consistency=True), [("window", 3), ("threshold", 0.9)]),
             ((12, 14, 15), dict(levels=2, detail_rule="max_abs", base_rule="max_abs", window=3, threshold=0.75,
                                 consistency=True), [("window", 5), ("consistency", False)]),
             # one level: a large residual, where the base rule's check (over 3 axes) matters
             ((12, 14, 15), dict(levels=1, detail_rule="mean", base_rule="max_abs", window=3, threshold=0.75,
                                 consistency=True), [("consistency", False)])]
    for shape, params, changes in cases:
        sources = _sources(rng, shape, 2 if params["detail_rule"] == "local_similarity" else 3)
        dims = len(shape)
        stack = np.stack([s[None] for s in sources]).astype(np.float32)
        pyramid = laplacian_pyramid(stack, params["levels"], dims)
        options = dict(window=params["window"], threshold=params["threshold"], consistency=params["consistency"],
                       spatial_dims=dims)
        fused = [rules.fuse_band(b, params["detail_rule"], **options) for b in pyramid[:-1]]
        fused.append(rules.fuse_band(pyramid[-1], params["base_rule"], **options))
        reference = np.clip(reconstruct_laplacian_pyramid(fused, dims)[0], 0, 1)
        ours = _unit(sources, "laplacian", **params)
        np.testing.assert_allclose(ours, reference, atol=2e-5)
        for name, value in changes:
            assert np.abs(_unit(sources, "laplacian", **dict(params, **{name: value})) - ours).max() > 1e-4, name
