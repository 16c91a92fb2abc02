"""The signal-processing methods' bodies (families/nsst.py, nsct.py: @register-ed, so mutated only since issue 13's
decorator rewrite) composed from their pinned pieces: the library's NSST/NSCT (pinned in
test_signal_processing_reference.py against a trous filtering, perfect reconstruction) and the activity measures,
pulse-coupled models and band rules (pinned there and in test_rules_reference.py against written-out equations).
Each method is written out step by step from its paper's description (docstrings of families/nsst.py), with
parameters that all differ from the defaults, for two and three sources, so a wrong rule, a dropped or swapped
argument or a wrong band order changes the result."""

import numpy as np
import pytest

import MedFusionLib as mf
from MedFusionLib import rules
from MedFusionLib import rules_neural as neural
from MedFusionLib.families import nsst as nsst_family
from MedFusionLib.transforms import nsct_decompose, nsct_reconstruct, nsst_decompose, nsst_reconstruct


def _unit(images, method, **kw):
    return mf.fuse(images, method=method, input_ranges=(0, 1), output_range="unit", **kw)


@pytest.fixture(scope="module")
def sources():
    """Three 32 x 36 sources: a shared texture, each sharp and brighter on its own third (so every source
    wins the low band and the detail somewhere)."""
    from scipy import ndimage as ndi
    rng = np.random.default_rng(11)
    texture = ndi.gaussian_filter(rng.random((32, 36)), 0.8)
    texture = (texture - texture.min()) / (texture.max() - texture.min())
    blurred = ndi.gaussian_filter(texture, 2.0)
    third = (np.arange(32) * 3 // 32)[:, None]
    out = [np.clip(np.where(third == k, texture, blurred) * 0.6 + 0.25 * (third == k) + 0.03 * k, 0, 1)
           for k in range(3)]
    return [x.astype(np.float32).astype(np.float64) for x in out]


def _bandwise(images, decompose, reconstruct, directions, low, high, per_level=False):
    """Decompose every source, fuse the low band with ``low(stack)`` and every directional band with
    ``high(stack)`` ((N, 1, H, W) stacks), or every level at once with ``per_level``, and reconstruct."""
    bands = [decompose(np.asarray(x, np.float32)[None], directions) for x in images]
    fused = [low(np.stack([b[0] for b in bands]))]
    for level in range(1, len(directions) + 1):
        stack = np.stack([b[level] for b in bands])                      # (N, 1, n_dir, H, W)
        if per_level:
            fused.append(high(stack))
        else:
            fused.append(np.stack([high(stack[:, :, d]) for d in range(stack.shape[2])], axis=1))
    return np.clip(reconstruct(fused)[0], 0, 1)


def _choose(bands, activity):
    """First source of largest activity."""
    return np.take_along_axis(bands, activity.argmax(axis=0)[None], axis=0)[0]


@pytest.mark.parametrize("n", [2, 3])
def test_nsst_abnm_wsml_written_out(n, sources):
    """Singh and Anand 2019 as read in families/nsst.py: low band by choose-max WSML; directional bands by the
    PA-PCNN fed with the modified spatial frequency, its linking strength scaled per neuron by
    clip(WSML / mean WSML, 0.25, 4)."""
    def low(band):
        return _choose(band, neural.wsml(band))

    def high(band):
        w = neural.wsml(band)
        scale = np.clip(w / w.mean(axis=(-2, -1), keepdims=True), 0.25, 4.0)
        return _choose(band, neural.pa_pcnn_firing_times(neural.modified_spatial_frequency(band), 37, scale))

    images = sources[:n]
    reference = _bandwise(images, nsst_decompose, nsst_reconstruct, (2, 6), low, high)
    np.testing.assert_allclose(_unit(images, "nsst_abnm_wsml", directions=(2, 6), iterations=37), reference,
                               atol=1e-5)


@pytest.mark.parametrize("n", [2, 3])
def test_nsst_dcscm_written_out(n, sources):
    """Hou et al. 2019 without the CNN weights: directional bands by the multi-channel SCM fed with the
    modified average gradient (beta as given); low band by Burt and Kolczynski's match rule (0.75) over the
    window for two sources, choose-max local energy for more."""
    def low(band):
        if n == 2:
            return rules.local_similarity(band, 5, 0.75)
        return rules.local_energy_rule(band, 5)

    def high(band):
        return _choose(band, neural.dual_channel_scm(neural.modified_average_gradient(band), 41, beta=2.5))

    images = sources[:n]
    reference = _bandwise(images, nsst_decompose, nsst_reconstruct, (4, 6), low, high)
    ours = _unit(images, "nsst_dcscm", directions=(4, 6), iterations=41, beta=2.5, window=5)
    np.testing.assert_allclose(ours, reference, atol=1e-5)
    # beta does not change the decision: the linking factor (1 + beta K) is common to all channels, so the
    # credited channel is the argmax of the stimuli wherever the neuron fires; only the window is checked
    for name, value in [("window", 3)]:
        other = _unit(images, "nsst_dcscm", **dict(dict(directions=(4, 6), iterations=41, beta=2.5, window=5),
                                                   **{name: value}))
        assert np.abs(other - ours).max() > 1e-4, name


@pytest.mark.parametrize("sigma,radius", [(1.0, 3), (1.5, 4)])       # 1.5: the default; 3 / sigma would give 2
def test_nsst_similarity_with_band_features_written_out(sigma, radius, sources):
    """Hermessi et al. 2018 with the band magnitudes as features: per level, the WNCC (Gaussian window sigma,
    radius round(3 sigma)) of |bands| over all directions; weighted average by local energy where it exceeds
    the threshold, else choose-max local energy; low band choose-max local energy."""
    window, threshold = 5, 0.3

    def low(band):
        return rules.local_energy_rule(band, window)

    def level(bands):                                  # (2, 1, n_dir, H, W)
        maps = np.abs(bands[:, 0])                      # (2, n_dir, H, W)
        similarity = neural.wncc(maps[0], maps[1], sigma, radius)
        energy = rules.local_energy(bands, window)
        return neural.similarity_rule(bands, similarity[None, None], energy, threshold)

    images = sources[:2]
    reference = _bandwise(images, nsst_decompose, nsst_reconstruct, (4, 6), low, level, per_level=True)
    ours = _unit(images, "nsst_similarity", directions=(4, 6), features="bands", sigma=sigma, window=window,
                 threshold=threshold)
    np.testing.assert_allclose(ours, reference, atol=1e-5)
    other = _unit(images, "nsst_similarity", directions=(4, 6), features="bands", sigma=2.0, window=window,
                  threshold=threshold)
    assert np.abs(other - ours).max() > 1e-4                 # sigma (and its radius) matter here


@pytest.mark.parametrize("low_rule,high_rule", [("mean", "max_abs"), ("local_energy", "pcnn")])
def test_nsct_method_written_out(low_rule, high_rule, sources):
    """da Cunha et al.'s NSCT; low band mean or choose-max local energy; directional bands max-abs with the
    majority check over the window, or Qu et al.'s PCNN fed with the local spatial frequency normalised by its
    maximum over the sources."""
    window = 5

    def low(band):
        return rules.average(band) if low_rule == "mean" else rules.local_energy_rule(band, window)

    def high(band):
        if high_rule == "max_abs":
            return rules.max_abs(band, consistency_window=window)
        sf = neural.modified_spatial_frequency(band, window)
        return _choose(band, neural.pcnn_firing_times(sf / sf.max(), 43))

    for images in (sources[:2], sources):
        reference = _bandwise(images, nsct_decompose, nsct_reconstruct, (2, 4), low, high)
        ours = _unit(images, "nsct", directions=(2, 4), low_rule=low_rule, high_rule=high_rule, window=window,
                     iterations=43)
        np.testing.assert_allclose(ours, reference, atol=1e-5)
        if low_rule == "local_energy":                                  # the window of the low rule matters
            other = _unit(images, "nsct", directions=(2, 4), low_rule=low_rule, high_rule=high_rule, window=3,
                          iterations=43)
            assert np.abs(other - ours).max() > 1e-4


def test_fuse_bandwise_reports_one_unit_per_band_and_reconstruction(sources, monkeypatch):
    """units = chunks x (bands + 1): report k says k / units, band reports then one reconstruction per chunk."""
    from MedFusionLib.transforms.nsst import NSSTBands

    reports = []

    class Recorder:
        def report(self, fraction, message=""):
            reports.append((fraction, message))

    stack = np.stack([np.stack([x, x[::-1]]) for x in sources[:2]]).astype(np.float32)     # (2, 2, H, W)
    monkeypatch.setattr(nsst_family, "_CHUNK_PIXELS", 32 * 36)
    for per_level in (False, True):
        reports.clear()
        high = (lambda b: b.max(axis=0)) if per_level else (lambda b: b[0])
        nsst_family.fuse_bandwise(stack, NSSTBands, (2, 4), lambda b: b.mean(axis=0), high, Recorder(),
                                  per_level=per_level)
        units = 2 * (2 + 4 + 1)
        assert [f for f, _ in reports] == pytest.approx([(k + 1) / units for k in range(units)])
        assert [m for _, m in reports] == (["fusing NSST/NSCT bands"] * 6 + ["reconstructing"]) * 2


@pytest.mark.parametrize("method,params", [("nsst_papcnn", {"iterations": 30}),
                                           ("nsst_similarity", {"features": "bands"}),
                                           ("nsct", {"high_rule": "pcnn", "iterations": 30})])
def test_chunked_volumes_equal_slice_by_slice_fusion_and_report_progress(method, params, sources, monkeypatch):
    """fuse_bandwise splits a batch of slices into chunks of _CHUNK_PIXELS: the result is the slice-by-slice
    fusion; progress goes up to 1 through one report per band and chunk and one per reconstruction."""
    volume = [np.stack([np.roll(x, 3 * k, axis=1) for k in range(3)]) for x in sources[:2]]
    whole = mf.fuse(volume, method=method, mode="slices", input_ranges=(0, 1), output_range="unit",
                    directions=(2, 4), **params)
    monkeypatch.setattr(nsst_family, "_CHUNK_PIXELS", 32 * 36)            # one slice per chunk
    assert nsst_family.slice_chunks(3, (32, 36)) == [(0, 1), (1, 2), (2, 3)]
    assert nsst_family.slice_chunks(5, (2, 2)) == [(0, 5)]
    reports = []
    chunked = mf.fuse(volume, method=method, mode="slices", input_ranges=(0, 1), output_range="unit",
                      directions=(2, 4), progress=lambda f, m: reports.append((f, m)), **params)
    np.testing.assert_allclose(chunked, whole, atol=1e-6)
    for k in range(3):
        alone = _unit([v[k] for v in volume], method, directions=(2, 4), **params)
        np.testing.assert_allclose(whole[k], alone, atol=1e-6)
    band_reports = [f for f, m in reports if m in ("fusing NSST/NSCT bands", "reconstructing")]
    assert len(band_reports) == 3 * (2 + 4 + 1)
    assert band_reports == sorted(band_reports) and reports[-1][0] == pytest.approx(1.0)
    assert sum(m == "reconstructing" for _, m in reports) == 3


def test_nsst_papcnn_on_three_sources_and_direction_parameters(sources):
    """N = 3: choose-max over the three sources of WLE x WSEML (low) and of PA-PCNN firings (high)."""
    def low(band):
        return _choose(band, neural.weighted_local_energy(band) * neural.wseml(band))

    def high(band):
        return _choose(band, neural.pa_pcnn_firing_times(band, 33))

    reference = _bandwise(sources, nsst_decompose, nsst_reconstruct, (2, 6), low, high)
    np.testing.assert_allclose(_unit(sources, "nsst_papcnn", directions=(2.0, 6.0), iterations=33), reference,
                               atol=1e-5)
    assert nsst_family._directions((2.0, 5.6)) == (2, 6)
    with pytest.raises(mf.FusionInputError, match="whole numbers"):
        nsst_family.check_transform("m", {"directions": (2.5,)}, (32, 32), nsst_family.check_directions)
    param = nsst_family.directions_param((4, 8), "NSCT")
    assert param.default == (4.0, 8.0) and "NSCT" in param.help
