"""Tests prompted by the survivors of a mutation run over the signal-processing method bodies (families/nsst.py,
nsct.py, csr.py; docs/testing.md, 'Mutation testing'): cancellation polled inside the pulse-coupled iterations
(not only between bands), progress that stays monotone and within [0, 1] when CSR codes in several groups and
when the CNN variant of nsst_dcscm runs chunk by chunk, the CSR dictionary's validation bounds, and the exact
messages of the planning checks."""

import numpy as np
import pytest
import torch

import MedFusionLib as mf
from MedFusionLib.families import csr as csr_family
from MedFusionLib.families import nsst as nsst_family


@pytest.fixture(scope="module")
def pair():
    """Two 32 x 36 sources with different structure (a smoothed noise texture and a bright disc)."""
    from scipy import ndimage as ndi
    rng = np.random.default_rng(5)
    texture = ndi.gaussian_filter(rng.random((32, 36)), 1.0)
    texture = (texture - texture.min()) / (texture.max() - texture.min())
    yy, xx = np.mgrid[:32, :36]
    disc = ndi.gaussian_filter(((yy - 14) ** 2 + (xx - 20) ** 2 < 90).astype(float), 1.5)
    return [texture.astype(np.float32), (0.2 + 0.7 * disc).astype(np.float32)]


@pytest.mark.parametrize("method,params,pulse", [("nsst_papcnn", {}, "pa_pcnn_firing_times"),
                                                 ("nsst_abnm_wsml", {}, "pa_pcnn_firing_times"),
                                                 ("nsst_dcscm", {}, "dual_channel_scm"),
                                                 ("nsct", {"high_rule": "pcnn"}, "pcnn_firing_times")])
def test_cancel_stops_the_next_pulse_coupled_band(method, params, pulse, pair, monkeypatch):
    """The directional bands are fused one after the other, each by a pulse-coupled model, and a report
    follows each band. A Cancel pressed at the first report must stop the second band's model as it starts
    (the models poll the cancel request themselves), not after the model has run to its end (the next report
    would stop it too, a whole band late): exactly one model run completes."""
    from MedFusionLib import rules_neural
    original = getattr(rules_neural, pulse)
    completed = []

    def counted(*args, **kwargs):
        out = original(*args, **kwargs)
        completed.append(out.shape)
        return out

    monkeypatch.setattr(rules_neural, pulse, counted)
    token = mf.CancelToken()
    with pytest.raises(mf.FusionCancelled):
        mf.fuse(pair, method=method, directions=(2, 4), iterations=40, input_ranges=(0, 1), output_range="unit",
                progress=lambda f, m: token.cancel() if m == "fusing NSST/NSCT bands" else None, cancel=token,
                **params)
    assert len(completed) == 1


def _assert_monotone_within_unit(fractions):
    assert fractions, "no progress was reported"
    assert all(0.0 <= f <= 1.0 for f in fractions), fractions
    assert fractions == sorted(fractions), fractions
    assert fractions[-1] == pytest.approx(1.0)


def test_csr_progress_over_several_coding_groups(pair, monkeypatch):
    """With one source-slice image per CBPDN solve (a 3-slice volume of 2 sources: 6 solves), each solve
    covers its own sixth of the method's range: the reports rise monotonically to 1 and never leave [0, 1],
    and the result is the one of a single solve of everything (the grouping changes only the schedule)."""
    volume = [np.stack([np.roll(x, 4 * k, axis=1) for k in range(3)]) for x in pair]
    kw = dict(method="csr", mode="slices", max_iter=15, input_ranges=(0, 1), output_range="unit")
    whole = mf.fuse(volume, **kw)
    filters, _ = csr_family.load_dictionary()
    monkeypatch.setattr(csr_family, "_SOLVE_ELEMENTS", filters.shape[0] * 32 * 36)     # one image a solve
    reports = []
    grouped = mf.fuse(volume, progress=lambda f, m: reports.append(f), **kw)
    _assert_monotone_within_unit(reports)
    np.testing.assert_allclose(grouped, whole, atol=1e-4)


def test_dcscm_cnn_variant_progress_over_chunks(pair, monkeypatch):
    """The CNN variant of nsst_dcscm fuses chunk by chunk, each with its own weight map and its own share
    of the range: with one slice a chunk, 3 slices report monotonically up to 1, within [0, 1], every
    directional band of every chunk included."""
    if nsst_family.cnn_weight_map_function() is None:
        pytest.fail("the shipped cnn_weight_map weights should load")
    volume = [np.stack([np.roll(x, 4 * k, axis=1) for k in range(3)]) for x in pair]
    monkeypatch.setattr(nsst_family, "_CHUNK_PIXELS", 32 * 36)
    reports = []
    mf.fuse(volume, method="nsst_dcscm", mode="slices", directions=(2, 4), iterations=20, use_cnn_weights=True,
            input_ranges=(0, 1), output_range="unit", progress=lambda f, m: reports.append((f, m)))
    _assert_monotone_within_unit([f for f, _ in reports])
    # each chunk's bands report within the chunk's share, not only the chunk boundaries: 3 x (2 + 4)
    assert [m for _, m in reports].count("fusing NSST/NSCT bands") == 3 * 6


def _save_dictionary(tmp_path, filters):
    path = str(tmp_path / "dictionary.npz")
    np.savez(path, filters=filters, meta="{}")
    return path


def test_csr_dictionary_validation_bounds(tmp_path):
    """Filters of up to 32 x 32 samples are accepted (the bound is inclusive) and come back float32 whatever
    the stored dtype; a filter that is all zeros (it would code nothing, and its normalisation divides by
    zero) is rejected as corrupt with the training command in the message."""
    rng = np.random.default_rng(0)
    largest = rng.standard_normal((2, 32, 32))                       # float64 on disk
    filters, meta = csr_family.load_dictionary(_save_dictionary(tmp_path, largest))
    assert filters.shape == (2, 32, 32) and filters.dtype == np.float32 and meta == {}
    np.testing.assert_allclose(filters, largest, rtol=1e-6)
    (tmp_path / "big").mkdir()
    with pytest.raises(mf.WeightsError, match="corrupt"):
        csr_family.load_dictionary(_save_dictionary(tmp_path / "big", rng.standard_normal((2, 33, 33))))
    with_zero = rng.standard_normal((3, 8, 8))
    with_zero[1] = 0.0
    (tmp_path / "zero").mkdir()
    with pytest.raises(mf.WeightsError, match=r"corrupt .*re-create it with"):
        csr_family.load_dictionary(_save_dictionary(tmp_path / "zero", with_zero))


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error on a machine without CUDA; "
                    "test_cuda.py runs csr on the GPU where there is one")
def test_csr_on_cuda_without_a_gpu_is_refused_at_planning(pair, monkeypatch):
    """device='cuda' without a GPU is a FusionInputError naming the method, raised by the planning check
    (before the Tikhonov split or any CBPDN solve)."""
    def no_work(*args, **kwargs):
        raise AssertionError("the method ran although its check should have refused it")
    monkeypatch.setattr(csr_family, "tikhonov_split", no_work)
    with pytest.raises(mf.FusionInputError, match="method 'csr': .*cuda"):
        mf.fuse(pair, method="csr", device="cuda")


def test_planning_messages_name_the_method_and_the_remedy(pair, monkeypatch):
    """The planning checks' messages: NSCT's direction check names 'nsct'; the CNN variant of nsst_dcscm
    without the CNN weight map says what is missing and what to set instead."""
    with pytest.raises(mf.FusionInputError, match=r"^method 'nsct': "):
        mf.fuse(pair, method="nsct", directions=(2, 3))
    monkeypatch.setattr(nsst_family, "cnn_weight_map_function", lambda: None)
    with pytest.raises(mf.FusionInputError,
                       match=r"^method 'nsst_dcscm': use_cnn_weights=true needs the deep-learning family's "
                             r"'cnn_weight_map' method with its trained weights, which are not available here; "
                             r"set use_cnn_weights=false \(local-similarity low-band rule\) or train/install"):
        mf.fuse(pair, method="nsst_dcscm", use_cnn_weights=True)


# --- from the survivors of a second sample (2026-12-04, '*__mutmut_*5') --------------------------------
def test_csr_needs_16_by_16_samples(pair):
    from MedFusionLib.pipeline import plan
    plan([x[:16, :16] for x in pair], "csr")
    for crop in [(slice(0, 15), slice(0, 16)), (slice(0, 16), slice(0, 15))]:
        with pytest.raises(mf.FusionInputError, match="at least 16 x 16 samples"):
            plan([x[crop] for x in pair], "csr")


def test_csr_dictionary_sizes_and_format(tmp_path):
    """Up to 512 filters are accepted, 513 are not; a file without the 'meta' entry loads with an empty
    description; a pickled (object) array is refused unread, as any untrusted pickle must be."""
    rng = np.random.default_rng(1)
    filters, _ = csr_family.load_dictionary(_save_dictionary(tmp_path, rng.standard_normal((512, 2, 2))))
    assert filters.shape == (512, 2, 2)
    (tmp_path / "513").mkdir()
    with pytest.raises(mf.WeightsError, match="corrupt"):
        csr_family.load_dictionary(_save_dictionary(tmp_path / "513", rng.standard_normal((513, 2, 2))))
    bare = str(tmp_path / "bare.npz")
    np.savez(bare, filters=rng.standard_normal((2, 4, 4)))
    filters, meta = csr_family.load_dictionary(bare)
    assert filters.shape == (2, 4, 4) and meta == {}
    pickled = str(tmp_path / "pickled.npz")
    np.savez(pickled, filters=rng.standard_normal((2, 4, 4)).astype(object), meta="{}")
    with pytest.raises(mf.WeightsError, match="missing or unreadable .*allow_pickle"):
        csr_family.load_dictionary(pickled)


def test_abnm_linking_scale_is_clipped_to_a_quarter_and_four(monkeypatch):
    """The adaptive linking strength WSML / mean(WSML) is clipped to [0.25, 4]: on sparse bright dots over a
    dark field the ratio exceeds 5 at the dots and falls below 0.25 away from them, so both bounds bind."""
    from MedFusionLib import rules_neural
    original = rules_neural.pa_pcnn_firing_times
    scales = []

    def recorded(stimulus, iterations, scale, **kwargs):
        scales.append(np.asarray(scale))
        return original(stimulus, iterations, scale, **kwargs)

    monkeypatch.setattr(rules_neural, "pa_pcnn_firing_times", recorded)
    dots = np.zeros((32, 32), np.float32)
    dots[8, 8] = dots[20, 25] = dots[27, 5] = 1.0
    mf.fuse([dots, np.roll(dots, 3, axis=0)], method="nsst_abnm_wsml", directions=(2,), iterations=5,
            input_ranges=(0, 1), output_range="unit")
    assert scales
    assert max(s.max() for s in scales) == np.float32(4.0)
    assert min(s.min() for s in scales) == np.float32(0.25)


def test_nsst_similarity_passes_its_device_to_the_feature_network(pair, monkeypatch):
    original = nsst_family.band_feature_function
    devices = []
    monkeypatch.setattr(nsst_family, "band_feature_function", lambda device: devices.append(device) or original(device))
    mf.fuse(pair, method="nsst_similarity", directions=(2,), device="cpu")
    assert devices == ["cpu"]


# --- from the survivors of the full run (2026-12-04, all 1013 mutants) ---------------------------------
@pytest.mark.parametrize("method", ["nsst_papcnn", "nsst_abnm_wsml", "nsst_dcscm", "nsst_similarity", "nsct"])
def test_the_transform_depth_is_checked_against_the_image_at_planning(method):
    """Six levels need 128 samples a side: refused for an 8 x 8 image before any work, naming the method."""
    from MedFusionLib.pipeline import plan
    with pytest.raises(mf.FusionInputError, match=rf"^method '{method}': directions: 6 levels need images of at "
                                                  r"least 128 samples per side; got shape \(8, 8\)$"):
        plan([np.zeros((8, 8), np.float32)] * 2, method, params=dict(directions=(2,) * 6))


@pytest.mark.parametrize("method", ["nsct", "nsst_dcscm", "nsst_similarity"])
def test_an_even_window_is_refused(method, pair):
    with pytest.raises(mf.FusionInputError, match=rf"^method '{method}': window must be odd; got 4$"):
        mf.fuse(pair, method=method, window=4)


@pytest.mark.parametrize("call", [
    lambda s: csr_family.csr_fusion(s, max_iter=5),
    lambda s: nsst_family.nsst_papcnn(s, directions=(2,), iterations=5),
    lambda s: nsst_family.nsst_abnm_wsml(s, directions=(2,), iterations=5),
    lambda s: nsst_family.nsst_dcscm(s, directions=(2,), iterations=5),
    lambda s: nsst_family.nsst_dcscm(s, directions=(2,), iterations=5, use_cnn_weights=True),
    lambda s: __import__("MedFusionLib.families.nsct", fromlist=["x"]).nsct_fusion(s, directions=(2,),
                                                                                     high_rule="pcnn", iterations=5),
], ids=["csr", "nsst_papcnn", "nsst_abnm_wsml", "nsst_dcscm", "nsst_dcscm_cnn", "nsct_pcnn"])
def test_method_functions_run_without_a_progress_object(call, pair):
    """The method functions are usable directly on a (N, B, H, W) stack, as the library documents, without
    the pipeline's Progress (``progress=None``)."""
    out = call(np.stack(pair)[:, None])
    assert out.shape == (1, 32, 36) and np.isfinite(out).all()


@pytest.mark.parametrize("level", [0.0, 0.4])
@pytest.mark.parametrize("method, params", [("nsct", dict(high_rule="pcnn")), ("nsst_abnm_wsml", {})])
def test_flat_images_give_the_flat_image(method, params, level):
    """Flat sources have (near-)zero directional bands, exactly zero for black images: the stimulus and
    linking-scale normalisations divide by 1 there, never 0 / 0 (no invalid-value warning)."""
    import warnings
    flat = np.full((32, 32), level, np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        out = mf.fuse([flat, flat], method=method, directions=(2,), iterations=5, input_ranges=(0, 1),
                      output_range="unit", **params)
    np.testing.assert_allclose(out, level, atol=1e-5)


def test_csr_passes_its_parameters_to_each_step(pair, monkeypatch):
    """base_lambda to the Tikhonov split; lambda, rho0 = 100 lambda + 0.5 (Liu et al.'s code), max_iter,
    tolerance and device to CBPDN, once per coding group; window_radius to the activity box mean (none at
    radius 0); device to the reconstruction."""
    seen = {"split": [], "cbpdn": [], "box": [], "reconstruct": []}
    split, code, box, rec = (csr_family.tikhonov_split, csr_family.cbpdn, csr_family.box_mean,
                             csr_family.reconstruct)
    monkeypatch.setattr(csr_family, "tikhonov_split", lambda s, lmbda=5.0: seen["split"].append(lmbda) or split(s, lmbda))

    def cbpdn(filters, images, lmbda, **kw):
        seen["cbpdn"].append((len(images), lmbda, kw["rho"], kw["max_iter"], kw["rel_tol"], kw["device"]))
        return code(filters, images, lmbda, **kw)

    def reconstruct(filters, maps, device="auto"):
        seen["reconstruct"].append(device)
        return rec(filters, maps, device=device)

    monkeypatch.setattr(csr_family, "cbpdn", cbpdn)
    monkeypatch.setattr(csr_family, "box_mean", lambda x, r: seen["box"].append(r) or box(x, r))
    monkeypatch.setattr(csr_family, "reconstruct", reconstruct)
    stack = np.stack(pair)[:, None]
    for radius in (0, 1, 3):
        csr_family.csr_fusion(stack, lmbda=0.02, window_radius=radius, base_lambda=7.0, max_iter=4,
                              tolerance=2e-3, device="cpu")
    assert seen["split"] == [7.0] * 3
    assert seen["cbpdn"] == [(2, 0.02, pytest.approx(2.5), 4, 2e-3, "cpu")] * 3
    assert seen["box"] == [1, 3]
    assert seen["reconstruct"] == ["cpu"] * 3
    # one image a solve: as many CBPDN calls as source images, each with one image
    filters, _ = csr_family.load_dictionary()
    monkeypatch.setattr(csr_family, "_SOLVE_ELEMENTS", filters.shape[0] * 32 * 36)
    seen["cbpdn"].clear()
    csr_family.csr_fusion(np.stack([np.stack([x, x[::-1]]) for x in pair]), max_iter=3, device="cpu")
    assert [c[0] for c in seen["cbpdn"]] == [1] * 4


def test_csr_fuses_each_slice_of_a_volume_from_its_own_sources(pair):
    """Slice-wise CSR of a 3-slice volume equals each slice fused alone (slice b's detail is coded from slice
    b of every source, whatever the grouping)."""
    volume = np.stack([np.stack([np.roll(x, 5 * k, axis=1) for k in range(3)]) for x in pair])   # (2, 3, H, W)
    together = csr_family.csr_fusion(volume, max_iter=8, device="cpu")
    for k in range(3):
        alone = csr_family.csr_fusion(volume[:, k:k + 1], max_iter=8, device="cpu")
        np.testing.assert_allclose(together[k], alone[0], atol=1e-4)


def test_csr_dictionary_edges_and_reload(tmp_path):
    """One filter is enough; filters must be 2..32 samples along both sides (a 4 x 40 or 40 x 4 filter is
    corrupt, and the message says the values are finite); a dictionary rewritten on disk is reloaded."""
    rng = np.random.default_rng(2)
    assert csr_family.load_dictionary(_save_dictionary(tmp_path, rng.standard_normal((1, 4, 4))))[0].shape == (1, 4, 4)
    for k, shape in enumerate([(2, 4, 40), (2, 40, 4), (2, 1, 4), (2, 4, 1), (2, 33, 4), (2, 4, 33)]):
        (tmp_path / str(k)).mkdir()
        with pytest.raises(mf.WeightsError, match=rf"corrupt \(filters of shape \({shape[0]}, {shape[1]}, "
                                                  rf"{shape[2]}\), finite: True\)"):
            csr_family.load_dictionary(_save_dictionary(tmp_path / str(k), rng.standard_normal(shape)))
    (tmp_path / "re").mkdir()
    path = _save_dictionary(tmp_path / "re", np.ones((2, 4, 4)))
    assert csr_family.load_dictionary(path)[0].shape == (2, 4, 4)
    _save_dictionary(tmp_path / "re", np.ones((3, 5, 5)))
    import os
    os.utime(path, (os.path.getatime(path), os.path.getmtime(path) + 10))
    assert csr_family.load_dictionary(path)[0].shape == (3, 5, 5)


def test_dcscm_passes_iterations_and_beta_to_the_scm(pair, monkeypatch):
    from MedFusionLib import rules_neural
    original = rules_neural.dual_channel_scm
    seen = []

    def recorded(stimuli, iterations=110, beta=0.3, **kw):
        seen.append((iterations, beta))
        return original(stimuli, iterations, beta=beta, **kw)

    monkeypatch.setattr(rules_neural, "dual_channel_scm", recorded)
    mf.fuse(pair, method="nsst_dcscm", directions=(2,), iterations=7, beta=0.45)
    assert seen and set(seen) == {(7, 0.45)}


def test_nsst_similarity_with_learned_features_is_the_wncc_over_all_directions_features(pair, monkeypatch):
    """With features='learned', one level's similarity is the WNCC of the two sources' feature maps of all
    its directions together (accumulated direction by direction to bound memory). A stand-in extractor
    (features x and x^2 of each band) makes the reference computable: ``neural.wncc`` on the concatenated
    maps, with the method's sigma and radius = round(3 sigma)."""
    from MedFusionLib import rules_neural
    monkeypatch.setattr(nsst_family, "band_feature_function",
                        lambda device: (lambda x: np.stack([x, x * x], axis=1)))      # (2 b, 2, H, W)
    recorded = []
    original = rules_neural.similarity_rule

    def similarity_rule(bands, similarity, activity, threshold):
        recorded.append((bands.copy(), similarity.copy()))
        return original(bands, similarity, activity, threshold)

    monkeypatch.setattr(rules_neural, "similarity_rule", similarity_rule)
    sigma = 1.2
    mf.fuse(pair, method="nsst_similarity", features="learned", directions=(2, 4), sigma=sigma,
            input_ranges=(0, 1), output_range="unit")
    assert len(recorded) == 2
    for bands, similarity in recorded:                              # bands (2, b, n_dir, H, W)
        maps = np.concatenate([np.stack([bands[:, :, d], bands[:, :, d] ** 2], axis=1)
                               for d in range(bands.shape[2])], axis=1)                      # (2, 2 n_dir, b, H, W)
        expected = rules_neural.wncc(maps[0], maps[1], sigma, int(round(3 * sigma)))
        np.testing.assert_allclose(similarity[:, 0], expected, atol=1e-5)


def test_the_cnn_weight_map_function_weighs_source_0_against_source_1(pair):
    """``cnn_weight_map_function()(stack)`` is the deep family's ``weight_map(stack[0], stack[1])``: the
    weight of source 0, which swapping the sources turns into (about) its complement."""
    from MedFusionLib.families import learned_cnn
    fn = nsst_family.cnn_weight_map_function()
    stack = np.stack(pair)[:, None]
    w = fn(stack)
    np.testing.assert_array_equal(w, np.asarray(learned_cnn.weight_map(stack[0], stack[1]), np.float32))
    assert np.abs(w - fn(stack[::-1])).max() > 0.2


def test_dcscm_cnn_variant_fuses_every_slice_of_a_volume_deeper_than_its_height(pair):
    """20 slices of 16 x 16 (more slices than rows): every slice is fused, the last as if alone."""
    rng = np.random.default_rng(3)
    volume = [rng.random((20, 16, 16)).astype(np.float32) for _ in range(2)]
    kw = dict(method="nsst_dcscm", mode="slices", directions=(2,), iterations=5, use_cnn_weights=True,
              input_ranges=(0, 1), output_range="unit")
    out = mf.fuse(volume, **kw)
    for k in (0, 15, 19):
        np.testing.assert_allclose(out[k], mf.fuse([v[k] for v in volume], **kw), atol=1e-5)
