"""Details of rules_neural that the full mutation run (docs/testing.md, 'Mutation testing') showed unpinned:
batch axes of the activity measures, chunked and 4-D pulse-coupled runs, the first source on SCM ties,
Otsu on black backgrounds and near-constant images, strict similarity thresholds, and the documented
constants that the methods use through the rules' defaults."""

import inspect

import numpy as np
import pytest

from MedFusionLib import rules_neural as neural
from MedFusionLib.families import nsst as nsst_family
from test_signal_processing_reference import _otsu_reference


def _per_image(fn, x, *args, **kwargs):
    """``fn`` applied to each (H, W) image of a batch ``x`` (..., H, W), stacked back."""
    flat = x.reshape(-1, *x.shape[-2:])
    return np.stack([fn(image, *args, **kwargs) for image in flat]).reshape(x.shape)


@pytest.mark.parametrize("measure,kwargs", [
    (neural.modified_spatial_frequency, {}), (neural.modified_spatial_frequency, {"window": 5}),
    (neural.modified_average_gradient, {}), (neural.modified_average_gradient, {"window": 5}),
    (neural.modified_laplacian, {}), (neural.modified_laplacian, {"diagonal": True}),
    (neural.wsml, {}), (neural.wseml, {}), (neural.weighted_local_energy, {})])
def test_activity_measures_treat_every_batch_axis_apart(measure, kwargs, rng):
    """(2, 3, H, W): each image as if alone (no padding, shift or window along a batch axis)."""
    x = rng.standard_normal((2, 3, 9, 10))
    np.testing.assert_allclose(measure(x, **kwargs), _per_image(measure, x, **kwargs), rtol=1e-6, atol=1e-7)


def test_classic_pcnn_on_a_4d_batch_in_chunks_of_one_image(rng, monkeypatch):
    s = rng.random((2, 3, 13, 12)).astype(np.float32)          # H > W: a chunk size from H / W would fail
    whole = neural.pcnn_firing_times(s, 30)
    assert whole.shape == s.shape and whole.sum() > 0
    np.testing.assert_array_equal(whole, _per_image(neural.pcnn_firing_times, s, 30))
    monkeypatch.setattr(neural, "_CHUNK_ELEMENTS", 13 * 12)
    for threads in (1, 2):
        np.testing.assert_array_equal(neural.pcnn_firing_times(s, 30, threads=threads), whole)


def test_scm_on_a_4d_batch_in_chunks_of_one_image(rng, monkeypatch):
    s = rng.random((2, 2, 3, 13, 12)).astype(np.float32)       # 2 sources, a (2, 3) batch
    whole = neural.dual_channel_scm(s, iterations=30)
    assert whole.shape == s.shape and whole[0].sum() > 0 and whole[1].sum() > 0
    for i, j in np.ndindex(2, 3):
        np.testing.assert_array_equal(whole[:, i, j], neural.dual_channel_scm(s[:, i, j], iterations=30))
    monkeypatch.setattr(neural, "_CHUNK_ELEMENTS", 13 * 12 * 3)  # one image (2 sources + state) per chunk
    for threads in (1, 2):
        np.testing.assert_array_equal(neural.dual_channel_scm(s, iterations=30, threads=threads), whole)


def test_scm_credits_a_tie_to_the_first_source(rng):
    same = rng.random((9, 9)).astype(np.float32)
    credits = neural.dual_channel_scm(np.stack([same, same, same * 0.5]), iterations=40)
    assert credits[0].sum() > 0 and credits[1].sum() == 0 and credits[2].sum() == 0


def test_otsu_with_a_black_background_a_near_constant_image_and_float32(rng):
    background = np.where(rng.random((12, 12)) < 0.4, 0.0, 1.0)         # bins 0 and 255: plateau 0..254
    near_constant = np.where(rng.random((12, 12)) < 0.5, 1.0, 254 / 255)  # bins 254 and 255 only
    for x in (background, near_constant):
        assert float(neural.otsu_threshold(x)) == pytest.approx(_otsu_reference(x), rel=1e-12)
    assert float(neural.otsu_threshold(background)) == pytest.approx(127 / 255)
    assert float(neural.otsu_threshold(near_constant)) == pytest.approx(254 / 255)      # the class split at bin 254
    x32 = (rng.random((16, 16)) ** 3).astype(np.float32)                 # computed in float64 all the same
    assert float(neural.otsu_threshold(x32)) == pytest.approx(_otsu_reference(x32.astype(np.float64)), rel=1e-12)


def test_similarity_rule_blends_only_strictly_above_the_threshold_and_names_the_source_count(rng):
    bands = rng.standard_normal((2, 4, 4))
    activity = rng.random((2, 4, 4))
    similarity = np.full((4, 4), 0.5)
    chosen = np.where(activity[0] >= activity[1], bands[0], bands[1])
    np.testing.assert_array_equal(neural.similarity_rule(bands, similarity, activity, threshold=0.5), chosen)
    assert not np.allclose(neural.similarity_rule(bands, similarity, activity, threshold=0.49), chosen)
    with pytest.raises(ValueError, match="compares 2 sources; got 3"):
        neural.similarity_rule(np.zeros((3, 2, 2)), np.zeros((2, 2)), np.zeros((3, 2, 2)))


def _defaults(fn):
    return {k: p.default for k, p in inspect.signature(fn).parameters.items() if p.default is not p.empty}


def test_defaults_are_the_documented_constants():
    """The methods take these through the rules' defaults (nsst_dcscm: f, g, h; nsct's PCNN: all but the
    iterations; nsst_abnm_wsml and nsst_dcscm: the 3 x 3 windows; the PA-PCNN: Otsu's bins), so a changed
    default changes a method while its written-out reference, calling the same rule, follows along."""
    # Qu et al. 2008, as the docstring of pcnn_firing_times quotes them
    assert _defaults(neural.pcnn_firing_times) == dict(
        iterations=200, alpha_l=0.06931, alpha_theta=0.2, beta=0.2, v_l=1.0, v_theta=20.0, corner=0.707,
        threads=None, check=None)
    # Yin et al. 2019: 110 iterations
    assert _defaults(neural.pa_pcnn_firing_times)["iterations"] == 110
    # ours, documented in nsst_dcscm's docstring (f = 0.8, g = 0.7, h = 20, beta = 0.3, 110 iterations)
    assert _defaults(neural.dual_channel_scm) == dict(iterations=110, f=0.8, g=0.7, h=20.0, beta=0.3,
                                                      threads=None, check=None)
    documented = " ".join(inspect.getdoc(nsst_family.nsst_dcscm).split())
    assert "f = 0.8, g = 0.7, h = 20, beta = 0.3, 110 iterations" in documented
    for fn in (neural.modified_spatial_frequency, neural.modified_average_gradient):
        assert _defaults(fn) == {"window": 3}
    # MATLAB's graythresh, which the PA-PCNN parameters follow (Yin et al.'s code): 256 bins
    assert _defaults(neural.otsu_threshold) == {"bins": 256}
