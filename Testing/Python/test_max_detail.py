"""The flagship method ``max_detail``: its formula against a brute-force reference, its limits (select-
maximum, a dark second input, the black background), detail transfer, N inputs, 3-D, bad parameters."""

import numpy as np
import pytest
from scipy import ndimage as ndi

import MedFusionLib as mf
from MedFusionLib import FusionInputError

UNIT = dict(input_ranges=(0, 1), output_range="unit")


def _reference(sources, sigma, gain, threshold, union, rho, floor=0.0):
    """The module docstring's equations written out pixel by pixel (a brute-force reference; the two
    Gaussian filters in float64 with SciPy)."""
    sources = [np.asarray(s, dtype=np.float64) for s in sources]
    details = [s - ndi.gaussian_filter(s, sigma, mode="reflect") for s in sources]
    energies = [np.sqrt(ndi.gaussian_filter(d * d, rho, mode="reflect")) if rho else np.abs(d) for d in details]
    out = np.zeros_like(sources[0])
    for index in np.ndindex(out.shape):
        values = [s[index] for s in sources]
        d = [dl[index] for dl in details]
        e = [el[index] for el in energies]
        i = int(np.argmax(values))
        j = int(np.argmax(e))
        screen = 1.0 - np.prod([1.0 - v for v in values])
        base = (1 - union) * values[i] + union * screen
        w = min(1.0, max(0.0, (e[j] - e[i]) / threshold - 1.0))
        value = base + gain * w * (d[j] - d[i])
        knee = floor * base
        if 0 < knee and value < knee:         # the undershoot knee: m exp((F - m) / m) below m
            value = knee * np.exp((value - knee) / knee)
        out[index] = min(1.0, max(0.0, value))
    return out


@pytest.fixture(scope="module")
def pair():
    rng = np.random.default_rng(3)
    a = ndi.gaussian_filter(rng.random((24, 20)), 1.0)
    b = ndi.gaussian_filter(rng.random((24, 20)), 0.7)
    return ((a - a.min()) / np.ptp(a)).astype(np.float32), ((b - b.min()) / np.ptp(b)).astype(np.float32)


@pytest.mark.parametrize("params", [{}, {"sigma": 1.0, "gain": 0.5, "threshold": 0.01, "union": 0.6},
                                    {"rho": 0.0, "gain": 1.0}, {"rho": 2.5, "threshold": 0.02},
                                    {"floor": 0.0}, {"floor": 0.4, "gain": 2.0, "threshold": 0.01}])
def test_matches_the_equations(pair, params):
    defaults = {p.name: p.default for p in mf.get_method("max_detail").params}
    fused = mf.fuse(list(pair), method="max_detail", **UNIT, **params)
    expected = _reference(pair, **{**defaults, **params})
    np.testing.assert_allclose(fused, expected, atol=2e-5)
    assert np.abs(fused - np.maximum(*pair)).max() > 0.01          # it is not select-maximum


def test_the_undershoot_knee_keeps_dark_transferred_detail_distinct():
    # A dim smooth input (the brightest everywhere) and a darker one with sharp dark lines of three depths:
    # the transfer takes the lines below 0. The hard clip (floor 0) makes all three black alike; the knee
    # keeps them dark, above 0, below floor x base and in the order of their depths.
    bright = np.full((15, 30), 0.2, np.float32)
    dark = np.full((15, 30), 0.19, np.float32)
    for column, depth in zip((6, 15, 24), (0.19, 0.18, 0.17)):
        dark[:, column] = 0.19 - depth
    clipped = mf.fuse([bright, dark], method="max_detail", floor=0.0, **UNIT)
    kneed = mf.fuse([bright, dark], method="max_detail", floor=0.7, **UNIT)
    lines = kneed[7, [6, 15, 24]]
    np.testing.assert_array_equal(clipped[7, [6, 15, 24]], 0.0)
    base = 0.85 * 0.2 + 0.15 * (1 - 0.8 * 0.81)             # away from the lines: (1 - u) max + u screen
    assert np.all(lines > 0) and np.all(lines < 0.7 * 0.2 + 1e-6) and lines[0] < lines[1] < lines[2]
    np.testing.assert_allclose(kneed[7, 0], base, atol=1e-5)   # the flat part is untouched
    np.testing.assert_allclose(kneed, _reference([bright, dark], 2.0, 1.75, 0.04, 0.15, 1.0, 0.7), atol=2e-5)


def test_no_transfer_and_no_union_is_select_maximum(pair):
    fused = mf.fuse(list(pair), method="max_detail", gain=0, union=0, **UNIT)
    np.testing.assert_array_equal(fused, np.maximum(*pair))


def test_a_dark_input_changes_nothing_and_the_background_stays_black(pair):
    a = pair[0].copy()
    a[:6] = 0.0                                                  # a black band: background in both inputs
    fused = mf.fuse([a, np.zeros_like(a)], method="max_detail", **UNIT)
    np.testing.assert_allclose(fused, a, atol=1e-6)
    b = pair[1].copy()
    b[:6] = 0.0
    both = mf.fuse([a, b], method="max_detail", **UNIT)
    assert np.all(both[:2] == 0.0)      # farther than the Gaussian's reach from any signal: exactly black


def test_transfers_the_darker_inputs_edges():
    # A: a bright flat square; B: a darker square carrying a fine stripe texture inside A's square.
    yy, xx = np.mgrid[:64, :64]
    inside = (np.abs(yy - 32) < 20) & (np.abs(xx - 32) < 20)
    a = np.where(inside, 0.9, 0.0).astype(np.float32)
    b = np.where(inside, 0.3 + 0.25 * (np.sin(xx / 1.5) > 0), 0.0).astype(np.float32)
    fused = mf.fuse([a, b], method="max_detail", **UNIT)
    core = (np.abs(yy - 32) < 14) & (np.abs(xx - 32) < 14)
    # Select-maximum is flat there; max_detail carries B's stripes with B's phase.
    assert np.ptp(np.maximum(a, b)[core]) == 0
    high_f = fused - ndi.gaussian_filter(fused, 2.0)
    high_b = b - ndi.gaussian_filter(b, 2.0)
    assert np.corrcoef(high_f[core], high_b[core])[0, 1] > 0.8
    assert fused[core].std() > 0.05


def test_the_energy_gate_transfers_a_texture_whole_where_the_pixel_gate_leaves_dots():
    # A: bright and flat; B: darker, carrying a noise-like texture whose detail is about twice the
    # threshold in RMS but crosses it only at some pixels. The pixel gate (rho = 0) transfers it where
    # |D| happens to exceed t, leaving the rest as select-maximum's flat A (scattered dots of texture);
    # the energy gate transfers it at every pixel of the textured area.
    rng = np.random.default_rng(5)
    a = np.full((96, 96), 0.6, np.float32)
    b = (0.3 + 0.12 * rng.standard_normal((96, 96))).astype(np.float32)
    core = (slice(16, -16), slice(16, -16))

    def transferred(rho):
        fused = mf.fuse([a, b], method="max_detail", rho=rho, **UNIT)
        untouched = mf.fuse([a, b], method="max_detail", rho=rho, gain=0.0, **UNIT)
        return np.abs(fused - untouched)[core] > 1e-6

    pixel_gate, energy_gate = transferred(0.0), transferred(1.0)
    assert energy_gate.mean() > 0.99
    assert pixel_gate.mean() < 0.8
    _, holes = ndi.label(~pixel_gate)
    assert holes > 100                          # the untransferred pixels are scattered, not one region


def test_n_inputs_are_order_free_and_3d_is_native():
    rng = np.random.default_rng(0)
    vols = [ndi.gaussian_filter(rng.random((6, 20, 18)), 1.0).astype(np.float32) for _ in range(3)]
    one = mf.fuse(vols, method="max_detail", mode="3d", **UNIT)
    other = mf.fuse([vols[2], vols[0], vols[1]], method="max_detail", mode="3d", **UNIT)
    np.testing.assert_allclose(one, other, atol=1e-6)
    assert one.shape == vols[0].shape and one.dtype == np.float32
    # Native 3-D differs from slice-wise (the Gaussian reaches across slices), and slice-wise is the 2-D call.
    slices = mf.fuse(vols, method="max_detail", mode="slices", **UNIT)
    np.testing.assert_allclose(slices[2], mf.fuse([v[2] for v in vols], method="max_detail", **UNIT), atol=1e-6)
    assert np.abs(slices - one).max() > 1e-3


def test_bad_parameters_are_refused(pair):
    for bad in ({"sigma": 0}, {"gain": -1}, {"threshold": 0}, {"union": 1.5}, {"rho": -1}, {"levels": 3}):
        with pytest.raises(FusionInputError):
            mf.fuse(list(pair), method="max_detail", **bad)


def test_the_dark_dot_measure_counts_dots_the_fusion_made_and_only_those():
    # Testing/Benchmarks/artefacts.py's dark_dots, the number docs/evaluation.md reports for this method.
    import importlib.util
    import os

    path = os.path.join(os.path.dirname(__file__), "..", "Benchmarks", "artefacts.py")
    spec = importlib.util.spec_from_file_location("artefacts", path)
    artefacts = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(artefacts)
    reference = np.full((20, 20), 50.0)
    functional = np.full((20, 20), 200.0)
    functional[:, :10] = 0.0                                   # functional-bright region: the right half
    fused = np.maximum(reference, functional)
    assert artefacts.dark_dots(fused, reference, functional) == 0.0
    dotted = fused.copy()
    dotted[5, 15] = dotted[12, 14] = 150.0                     # two dots the fusion made
    dotted[8, 3] = 0.0                                         # a dot outside the region: not counted
    assert artefacts.dark_dots(dotted, reference, functional) == pytest.approx(2 / 200)
    with_source_dot = reference.copy()
    with_source_dot[5, 15] = 10.0                              # one of them is in a source: not made by the fusion
    assert artefacts.dark_dots(dotted, with_source_dot, functional) == pytest.approx(1 / 200)


def test_slice_wise_volume_equals_each_slice_fused_alone():
    # The Gaussian filters act on the spatial axes only: slices batched together (B > 1) must not blur
    # into each other (mutation run: sigma on the batch axis survived the 2-D tests).
    rng = np.random.default_rng(11)
    a = ndi.gaussian_filter(rng.random((5, 20, 18)), 1.0).astype(np.float32)
    b = ndi.gaussian_filter(rng.random((5, 20, 18)), 0.7).astype(np.float32)
    volume = mf.fuse([a, b], method="max_detail", mode="slices", batch_size=5, **UNIT)
    for k in range(a.shape[0]):
        np.testing.assert_allclose(volume[k], mf.fuse([a[k], b[k]], method="max_detail", **UNIT), atol=1e-6)


def test_the_method_itself_keeps_its_output_in_the_unit_range():
    # Called directly (as another method or a test would), not through fuse()'s final clip. A flat
    # brighter input and a darker checkerboard (strong detail) push base + gain (D_j - D_i) past 1 and
    # below 0; no input is 0 or 1 anywhere, so outputs of exactly 0 and 1 come from the clip.
    from MedFusionLib.families.detail_transfer import max_detail_fusion

    checker = (np.indices((24, 24)).sum(axis=0) % 2).astype(np.float32)[None]
    # Above 1: a flat bright input, a darker checkerboard's detail added. Below 0: the brighter input at
    # its own peaks (its detail removed) where an opposite, stronger checkerboard is at its troughs.
    for bright, other, clipped in ((np.full_like(checker, 0.9), 0.5 + 0.3 * checker, 1.0),
                                   (0.1 + 0.2 * checker, 0.02 + 0.78 * (1 - checker), 0.0)):
        stack = np.stack([bright, other]).astype(np.float32)
        fused = max_detail_fusion(stack, gain=2.0, threshold=1e-4, union=0.0, floor=0.0)
        assert fused.dtype == np.float32 and fused.shape == (1, 24, 24)
        assert fused.min() >= 0.0 and fused.max() <= 1.0
        assert (fused == clipped).any()
        kneed = max_detail_fusion(stack, gain=2.0, threshold=1e-4, union=0.0)    # the default knee
        assert kneed.min() > 0.0 and kneed.max() <= 1.0
