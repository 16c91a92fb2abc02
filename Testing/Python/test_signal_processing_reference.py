"""Independent references for the signal-processing family's building blocks (issue 13, from the mutants
that survived test_signal_processing.py): the NSST/NSCT filter banks against spatial a trous filtering with
Burt's kernel, the frequency-domain helpers against their definitions, the activity measures and
pulse-coupled models of rules_neural written out pixel by pixel (or with scipy's convolve2d) from their
equations, and the methods of families/nsst.py, nsct.py and csr.py composed from those pieces."""

import numpy as np
import pytest
from scipy.ndimage import correlate1d
from scipy.signal import convolve2d

from MedFusionLib import rules_neural as neural
from MedFusionLib.transforms import _freq, nsct, nsst
from test_signal_processing import _pa_pcnn_firing_times_written_out as _pa_pcnn_reference

BURT = np.array([1.0, 4.0, 6.0, 4.0, 1.0]) / 16.0      # H(w) = cos^4(w / 2) (Burt and Adelson 1983)


def _atrous(x, level):
    """x circularly filtered along both axes by Burt's 5-tap kernel with 2^level - 1 zeros between taps."""
    step = 2 ** level
    kernel = np.zeros(4 * step + 1)
    kernel[::step] = BURT
    return correlate1d(correlate1d(x, kernel, axis=-1, mode="wrap"), kernel, axis=-2, mode="wrap")


def _approximations(x, levels):
    """a_0 = x, a_{k+1} = a_k filtered at scale k: the nonsubsampled (a trous) low-pass images."""
    out = [x]
    for k in range(levels):
        out.append(_atrous(out[-1], k))
    return out


# --- NSST ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("directions", [(1, 1, 1), (4, 8, 16), (2, 6)])
def test_nsst_pyramid_is_a_trous_burt_filtering(directions, rng):
    """Low band = a_J; the directional bands of level j (coarse to fine) add up to a_j - a_{j+1}
    (psi_j = phi_j - phi_{j+1}); with one direction the band is that difference itself."""
    x = rng.random((40, 48))
    bands = nsst.nsst_decompose(x, directions)
    levels = len(directions)
    assert len(bands) == levels + 1
    a = _approximations(x, levels)
    np.testing.assert_allclose(bands[0], a[levels], atol=1e-12)
    for i, level in enumerate(bands[1:]):
        j = levels - 1 - i
        assert level.shape == (directions[i],) + x.shape
        np.testing.assert_allclose(level.sum(axis=0), a[j] - a[j + 1], atol=1e-12)


def test_nsst_reconstruction_is_the_plain_sum_of_the_bands(rng):
    """Synthesis by summation (the shearing filters add up to an impulse): any band set, consistent or
    not, reconstructs to low + sum of every directional band."""
    bands = [rng.random((32, 31)), rng.random((4, 32, 31)), rng.random((8, 32, 31))]
    np.testing.assert_allclose(nsst.nsst_reconstruct(bands), bands[0] + bands[1].sum(0) + bands[2].sum(0),
                               atol=1e-12)
    streamed = nsst.NSSTBands(rng.random((32, 31)), (4, 8))
    for level, direction in [(0, 1), (1, 5)]:
        streamed.accumulate(bands[level + 1][direction], level, direction)
    np.testing.assert_allclose(streamed.reconstruct(bands[0]), bands[0] + bands[1][1] + bands[2][5], atol=1e-12)


def test_nsst_streamed_bands_equal_the_decomposition(rng):
    x = rng.random((2, 32, 39)).astype(np.float32)          # an odd width: irfft2 needs the shape given
    whole = nsst.nsst_decompose(x, (4, 8))
    streamed = nsst.NSSTBands(x, (4, 8))
    assert streamed.n_bands == 12 and streamed.dtype == np.float32
    np.testing.assert_allclose(streamed.low, whole[0], atol=1e-6)
    seen = [(level, direction) for level, direction, _ in streamed]
    assert seen == [(0, d) for d in range(4)] + [(1, d) for d in range(8)]
    for level, direction, band in streamed:
        np.testing.assert_allclose(band, whole[level + 1][:, direction], atol=1e-6)
    assert streamed.reconstruct(whole[0]).dtype == np.float32


def test_shear_support_and_direction_checks():
    assert nsst.shear_support((2, 8, 16, 32)) == (8, 8, 16, 32)
    assert nsst.check_directions([1, 2.0, 64]) == (1, 2, 64)
    for bad in [(0,), (66,), (5,), (2,) * 9, ()]:
        with pytest.raises(ValueError):
            nsst.check_directions(bad)
    assert nsst.check_directions((2, 2), (8, 8)) == (2, 2)               # 2^(levels + 1) per side is enough
    assert nsst.check_directions((2,) * 8) == (2,) * 8                      # up to 8 levels
    with pytest.raises(ValueError, match="at least 8"):
        nsst.check_directions((2, 2), (7, 8))
    with pytest.raises(ValueError, match="sequence of integers"):
        nsst.check_directions(("a",))


# --- frequency helpers --------------------------------------------------------------------------------
def test_frequency_grid_meyer_step_and_pseudo_angle():
    w1, w2 = _freq.frequency_grid((6, 5))
    np.testing.assert_allclose(w1[:, 0], 2 * np.pi * np.array([0, 1, 2, -3, -2, -1]) / 6)
    np.testing.assert_allclose(w2[0], 2 * np.pi * np.array([0, 1, 2]) / 5)
    assert w1.shape == (6, 1) and w2.shape == (1, 3)
    t = np.array([-1.0, 0.0, 0.25, 0.5, 0.75, 1.0, 2.0])
    nu = t.clip(0, 1) ** 4 * (35 - 84 * t.clip(0, 1) + 70 * t.clip(0, 1) ** 2 - 20 * t.clip(0, 1) ** 3)
    np.testing.assert_allclose(_freq.meyer_step(t), nu)
    np.testing.assert_allclose(_freq.meyer_step(t) + _freq.meyer_step(1 - t), 1.0)
    # p = w2 / w1 in the cone |w2| <= |w1|, 2 - w1 / w2 in the other, 0 at the origin; the same for -w
    a = np.array([1.0, 1.0, 0.5, 0.0, -2.0, 0.0, 1.0, -1.0, 0.5, -1.0])
    b = np.array([0.0, 0.5, 1.0, 1.0, 1.0, 0.0, 1.0, 1.0, 2.0, 4.0])
    expected = np.array([0.0, 0.5, 1.5, 2.0, -0.5, 0.0, 1.0, -1.0, 1.75, 2.25])
    np.testing.assert_allclose(_freq.pseudo_angle(a, b), expected)
    np.testing.assert_allclose(_freq.pseudo_angle(-a, -b), expected)


@pytest.mark.parametrize("n", [2, 4, 6, 16])
def test_angular_windows_are_centred_on_equispaced_shears(n, rng):
    """Window l is 1 at its centre shear -1 + l h (h = 4 / n: the diagonals and the axes among them) and
    0 at every other centre; squares add up to 1 everywhere; each is 0 beyond h from its centre."""
    h = 4.0 / n
    centres = -1.0 + h * np.arange(n)
    windows = np.array(_freq.angular_windows(centres, n))
    np.testing.assert_allclose(windows, np.eye(n), atol=1e-12)
    p = rng.uniform(-1, 3, 500)
    windows = np.array(_freq.angular_windows(p, n))
    np.testing.assert_allclose((windows ** 2).sum(0), 1.0, atol=1e-12)
    distance = np.abs((p[None] - centres[:, None] + 2) % 4 - 2)
    assert np.all(windows[distance >= h] == 0) and np.all(windows[distance < 0.99 * h] > 0)
    # the midpoint between two centres: both windows 1 / sqrt 2
    mid = np.array(_freq.angular_windows(np.array([centres[0] + h / 2]), n))[:, 0]
    np.testing.assert_allclose(sorted(mid)[-2:], [0.5 ** 0.5] * 2, atol=1e-12)
    assert _freq.angular_windows(p, 1)[0].tolist() == [1.0] * 500


def test_compact_partition_samples_the_design_grid_exactly(rng):
    """The responses on the image grid equal the partition on the small support x support DFT grid at the
    frequencies both grids share (the kernel is the small grid's inverse DFT placed at the origin), add up
    to exactly 1, are real, and their kernels stay inside the support."""
    support, shape = 8, (32, 40)

    def partition(k1, k2):
        p = _freq.pseudo_angle(k1, k2)
        return [w ** 2 for w in _freq.angular_windows(p, 4)]

    responses = _freq.compact_partition(partition, support, shape)
    np.testing.assert_allclose(sum(responses), 1.0, atol=1e-12)
    k = 2 * np.pi * np.fft.fftfreq(support)
    mirror = (-np.arange(support)) % support
    design = [0.5 * (d + d[mirror][:, mirror]) for d in partition(k[:, None], k[None, :])]   # w and -w alike
    for r, d in zip(responses, design):
        assert r.shape == (32, 21) and r.dtype == np.float64
        # shared frequencies: rows 0, 4, ..., 28 of 32 and columns 0, 5, 10, 15 of 40 (the design's Nyquist
        # row and column, where +pi and -pi are one DFT sample but two shears, are left out)
        sampled = r[::4, ::5][np.r_[0:4, 5:8], :4]
        np.testing.assert_allclose(sampled, d[np.r_[0:4, 5:8], :4], atol=1e-12)
        kernel = np.fft.irfft2(r, s=shape)
        rows = np.r_[0:5, 28:32]
        cols = np.r_[0:5, 36:40]
        outside = np.ones(shape, bool)
        outside[np.ix_(rows, cols)] = False
        assert np.abs(kernel[outside]).max() < 1e-12
        np.testing.assert_allclose(kernel, np.roll(kernel[::-1, ::-1], (1, 1), axis=(0, 1)), atol=1e-12)
    # a support larger than the image allows is cut to the largest even size that fits
    small = _freq.compact_partition(partition, 16, (9, 12))       # d = 8: 9 rows hold 4 + 1 + 4 taps... less
    np.testing.assert_allclose(sum(small), 1.0, atol=1e-12)
    kernel = np.fft.irfft2(small[1], s=(9, 12))
    assert np.abs(kernel[:, 5:8]).max() < 1e-12 and np.abs(kernel[:, 4]).max() > 1e-6


def test_apply_bank_and_synthesise_follow_their_definitions(rng):
    x = rng.random((2, 12, 10))
    xf = _freq.forward(x)
    responses = [rng.random((12, 6)) for _ in range(3)]
    bands = _freq.apply_bank(xf, responses, (12, 10))
    assert bands.shape == (2, 3, 12, 10) and bands.dtype == np.float64
    for k, r in enumerate(responses):
        np.testing.assert_allclose(bands[:, k], np.fft.irfft2(np.fft.rfft2(x) * r, s=(12, 10)), atol=1e-12)
    total = _freq.synthesise(bands, responses)
    np.testing.assert_allclose(total, sum(np.fft.rfft2(bands[:, k]) * r for k, r in enumerate(responses)),
                               atol=1e-10)
    assert _freq.apply_bank(xf.astype(np.complex64), responses, (12, 10)).dtype == np.float32
    assert _freq.as_float(np.zeros(3, np.uint8)).dtype == np.float32
    assert _freq.as_float(np.zeros(3, np.float64)).dtype == np.float64
    with pytest.raises(ValueError, match="H, W >= 4"):
        _freq.check_image_batch(np.zeros((3, 4)), "f")
    _freq.check_image_batch(np.zeros((4, 4)), "f")


# --- NSCT ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("directions", [(1, 1, 1), (2, 4, 8), (1, 8)])
def test_nsct_pyramid_is_the_published_two_channel_bank(directions, rng):
    """Analysis: low = a_J (H0 = B at every scale); level j = a_j - B_j^2 a_j (H1 = 1 - B^2 at scale j,
    after the j low-passes before it); the directional bands of a level add up to it (the NSDFB's squared
    filters are a partition of unity)."""
    x = rng.random((36, 44))
    bands = nsct.nsct_decompose(x, directions)
    levels = len(directions)
    assert len(bands) == levels + 1
    a = _approximations(x, levels)
    np.testing.assert_allclose(bands[0], a[levels], atol=1e-12)
    for i, level in enumerate(bands[1:]):
        j = levels - 1 - i
        assert level.shape == (directions[i],) + x.shape
        np.testing.assert_allclose(level.sum(axis=0), a[j] - _atrous(_atrous(a[j], j), j), atol=1e-12)
    np.testing.assert_allclose(nsct.nsct_reconstruct(bands), x, atol=1e-12)


def test_nsct_synthesis_filters_are_g0_b_and_g1_one(rng):
    """Synthesis: the low band goes through G0 = B at every scale; the bands of level j through the j
    low-passes G0 before it and G1 = 1 (each directional band alike)."""
    shape, dirs = (32, 35), (2, 4)
    low = rng.random(shape)
    zeros = [np.zeros((2,) + shape), np.zeros((4,) + shape)]
    np.testing.assert_allclose(nsct.nsct_reconstruct([low] + zeros), _approximations(low, 2)[2], atol=1e-12)
    coarse = rng.random((2,) + shape)        # level j = 1: one low-pass (scale 0) before it
    out = nsct.nsct_reconstruct([np.zeros(shape), coarse, zeros[1]])
    np.testing.assert_allclose(out, _atrous(coarse.sum(0), 0), atol=1e-12)
    fine = rng.random((4,) + shape)          # level j = 0: G1 = 1 alone
    np.testing.assert_allclose(nsct.nsct_reconstruct([np.zeros(shape), zeros[0], fine]), fine.sum(0), atol=1e-12)
    streamed = nsct.NSCTBands(rng.random(shape), dirs)
    assert streamed.n_bands == 6
    streamed.accumulate(coarse[1], 0, 1)
    streamed.accumulate(fine[3], 1, 3)
    np.testing.assert_allclose(streamed.reconstruct(low),
                               _approximations(low, 2)[2] + _atrous(coarse[1], 0) + fine[3], atol=1e-12)


def test_nsct_streamed_bands_equal_the_decomposition(rng):
    x = rng.random((2, 32, 33)).astype(np.float32)
    whole = nsct.nsct_decompose(x, (2, 4))
    streamed = nsct.NSCTBands(x, (2, 4))
    np.testing.assert_allclose(streamed.low, whole[0], atol=1e-6)
    assert [(lv, d) for lv, d, _ in streamed] == [(0, 0), (0, 1)] + [(1, d) for d in range(4)]
    for level, direction, band in streamed:
        np.testing.assert_allclose(band, whole[level + 1][:, direction], atol=1e-6)


def test_nsct_fan_filters_and_split_matrices():
    """The fan pair is power complementary and passes the cone |w1| > |w2| (U0) or |w1| < |w2| (U1);
    each split matrix maps the wedge's bisecting line and an axis outside it onto the fan boundaries."""
    rng = np.random.default_rng(3)
    n1, n2 = rng.uniform(-np.pi, np.pi, (2, 400))
    u0, u1 = nsct._fan_pair(n1, n2)
    np.testing.assert_allclose(u0 ** 2 + u1 ** 2, 1.0, atol=1e-12)
    deep0 = np.abs(n1) > 3 * np.abs(n2)
    deep1 = np.abs(n2) > 3 * np.abs(n1)
    assert np.all(u0[deep0] > 0.99) and np.all(u1[deep1] > 0.99)
    np.testing.assert_allclose(nsct._fan_pair(np.array(0.0), np.array(0.0)), [0.5 ** 0.5] * 2)   # f = 0: the seam
    # the design: U0 = cos(pi/2 r(f)), U1 = sin(pi/2 r(f)), f = (cos n2 - cos n1) / (2 - cos n1 - cos n2), r a
    # Meyer ramp from 1 at f = -0.6 to 0 at f = 0.6
    f = (np.cos(n2) - np.cos(n1)) / (2 - np.cos(n1) - np.cos(n2))
    r = _freq.meyer_step((0.6 - f) / 1.2)
    np.testing.assert_allclose(u0, np.cos(np.pi / 2 * r), atol=1e-12)
    np.testing.assert_allclose(u1, np.sin(np.pi / 2 * r), atol=1e-12)
    from fractions import Fraction
    assert nsct._split_matrix(Fraction(0), 0) == ((1, 1), (1, -1))          # the quincunx matrix
    assert nsct._split_matrix(Fraction(0), 1) == ((1, 1), (-1, 1))
    for mid, cone in [(Fraction(1, 2), 0), (Fraction(-1, 2), 1), (Fraction(3, 4), 0), (Fraction(1, 4), 1)]:
        m1, m2 = (np.array(r) for r in nsct._split_matrix(mid, cone))
        p, q = mid.numerator, mid.denominator
        on_line = np.array([q, p]) if cone == 0 else np.array([p, q])       # w2 / w1 = mid (cone 0)
        assert (m1 - m2) @ on_line == 0
        axis = np.array([0, 1]) if cone == 0 else np.array([1, 0])         # w1 = 0 (cone 0)
        assert (m1 + m2) @ axis == 0


@pytest.mark.parametrize("stages", [1, 2, 3])
def test_nsct_directional_filters_pass_their_equal_slope_wedges(stages):
    """2^stages equivalent filters, tight (squares add up to 1); at low frequencies in the middle of wedge l
    (orientation order: slopes of cone 0 from -1 to 1, then cone 1) filter l passes nearly everything."""
    n = 2 ** stages
    filters = nsct._directional_bank(*np.meshgrid(np.linspace(-3, 3, 61), np.linspace(-3, 3, 61),
                                                  indexing="ij"), stages)
    np.testing.assert_allclose(sum(f ** 2 for f in filters), 1.0, atol=1e-12)
    per_cone = n // 2
    for l in range(n):
        cone, k = divmod(l, per_cone)
        slope = -1 + (k + 0.5) * 2 / per_cone
        w = (0.3, 0.3 * slope) if cone == 0 else (0.3 * -slope, 0.3)
        values = np.array([f for f in nsct._directional_bank(np.array(w[0]), np.array(w[1]), stages)]) ** 2
        assert values.argmax() == l and values[l] > 0.8, (stages, l, values.round(3))
    assert len(nsct._directional_bank(np.zeros(3), np.zeros(3), 0)) == 1


#: Frozen values of our NSDFB design (squared equivalent filters at six frequencies, 4 and 8 directions), printed
#: by this library at the commit that added them: a regression pin of the design (da Cunha et al. design FIR
#: filters by the mapping approach; these are ours, see transforms/nsct.py), not an independent reference.
NSDFB_PROBES = [(0.3, 0.05), (0.3, 0.2), (-0.2, 0.35), (1.1, -0.4), (2.0, 2.5), (-2.7, 0.9)]
NSDFB_FROZEN = {
    2: [[8.5993163182e-02, 9.9629572712e-01, 0, 0], [0, 9.9931489182e-01, 3.7010092971e-02, 0],
        [1.7662499237e-03, 0, 0, 9.9999844018e-01], [1.0, 6.1188670299e-09, 0, 0],
        [0, 4.4040830733e-01, 8.9779759569e-01, 0], [9.7033600298e-01, 2.4176029723e-01, 0, 0]],
    3: [[0, 8.5993163182e-02, 9.9629572712e-01, 0, 0, 0, 0, 0],
        [0, 0, 1.0885704915e-11, 9.9931489182e-01, 3.7010092971e-02, 0, 0, 0],
        [1.7662499237e-03, 0, 0, 0, 0, 0, 1.3710114504e-01, 9.9055547870e-01],
        [2.3806430900e-03, 9.9999716627e-01, 6.1188670299e-09, 0, 0, 0, 0, 0],
        [0, 0, 0, 4.4040830733e-01, 8.9779759569e-01, 0, 0, 0],
        [5.7593057184e-04, 9.7033583207e-01, 2.4176029723e-01, 0, 0, 0, 0, 0]],
}


@pytest.mark.parametrize("stages", [2, 3])
def test_nsct_directional_filters_keep_their_frozen_design(stages):
    values = [[float(f) for f in nsct._directional_bank(np.array(a), np.array(b), stages)] for a, b in NSDFB_PROBES]
    np.testing.assert_allclose(values, NSDFB_FROZEN[stages], rtol=1e-8, atol=1e-12)


def test_nsct_supports_and_direction_checks():
    assert nsct.directional_support((1, 4, 16, 32)) == (8, 8, 16, 32)
    assert nsct.check_directions([1, 2.0, 64]) == (1, 2, 64)
    for bad in [(0,), (128,), (6,), (2,) * 7, ()]:
        with pytest.raises(ValueError):
            nsct.check_directions(bad)
    with pytest.raises(ValueError, match="at least 8"):
        nsct.check_directions((2, 2), (8, 7))
    assert nsct.check_directions((2, 2), (8, 8)) == (2, 2)
    assert nsct.check_directions((2,) * 6) == (2,) * 6                      # up to 6 levels
    with pytest.raises(ValueError, match="sequence of integers"):
        nsct.check_directions(None)


# --- rules_neural: activity measures written out pixel by pixel -----------------------------------------
W3 = np.array([[1, 2, 1], [2, 4, 2], [1, 2, 1]]) / 16.0


def _at(x, i, j, mode):
    """x[i, j] with the border extension ``mode``: 'symmetric' (c b a | a b c, MATLAB padarray) or
    'mirror' (d c b | a b c, scipy.ndimage)."""
    h, w = x.shape

    def fold(k, n):
        if mode == "symmetric":
            return -k - 1 if k < 0 else (2 * n - 1 - k if k >= n else k)
        return -k if k < 0 else (2 * n - 2 - k if k >= n else k)
    return x[fold(i, h), fold(j, w)]


def _window_sum(x, weights, mode="mirror"):
    r = weights.shape[0] // 2
    out = np.zeros_like(x)
    for i in range(x.shape[0]):
        for j in range(x.shape[1]):
            out[i, j] = sum(weights[m + r, n + r] * _at(x, i + m, j + n, mode)
                            for m in range(-r, r + 1) for n in range(-r, r + 1))
    return out


def _ml_reference(x, diagonal=False):
    out = np.zeros_like(x)
    for i in range(x.shape[0]):
        for j in range(x.shape[1]):
            c = lambda m, n: _at(x, i + m, j + n, "symmetric")  # noqa: E731
            v = abs(2 * x[i, j] - c(-1, 0) - c(1, 0)) + abs(2 * x[i, j] - c(0, -1) - c(0, 1))
            if diagonal:
                v += (abs(2 * x[i, j] - c(-1, -1) - c(1, 1)) + abs(2 * x[i, j] - c(-1, 1) - c(1, -1))) / np.sqrt(2)
            out[i, j] = v
    return out


def test_modified_laplacian_wsml_wseml_and_local_energy_written_out(rng):
    x = rng.standard_normal((9, 11))
    np.testing.assert_allclose(neural.modified_laplacian(x), _ml_reference(x), atol=1e-12)
    np.testing.assert_allclose(neural.modified_laplacian(x, diagonal=True), _ml_reference(x, True), atol=1e-12)
    np.testing.assert_allclose(neural.wsml(x), _window_sum(_ml_reference(x) ** 2, W3), atol=1e-12)
    np.testing.assert_allclose(neural.wseml(x), _window_sum(_ml_reference(x, True), W3), atol=1e-12)
    np.testing.assert_allclose(neural.weighted_local_energy(x), _window_sum(x ** 2, W3), atol=1e-12)
    # batch axes are independent; integers are computed in float32
    batch = rng.standard_normal((2, 3, 7, 8))
    np.testing.assert_allclose(neural.wsml(batch)[1, 2], neural.wsml(batch[1, 2]), atol=1e-12)
    assert neural.wsml(np.ones((6, 6), np.int16)).dtype == np.float32


def test_spatial_frequency_and_average_gradient_written_out(rng):
    """MSF = sqrt(mean over the window of (C - C_left)^2 + (C - C_up)^2 + ((C - C_ul)^2 + (C - C_ur)^2) / 2);
    MAG = mean over the window of sqrt(((C - C_right)^2 + (C - C_down)^2) / 2 + ((C - C_dr)^2 + (C - C_dl)^2) / 4);
    neighbours with symmetric borders, the window mean with mirrored ones."""
    x = rng.standard_normal((8, 10))
    h, w = x.shape
    sq = np.zeros_like(x)
    g = np.zeros_like(x)
    for i in range(h):
        for j in range(w):
            c = lambda m, n: _at(x, i + m, j + n, "symmetric")  # noqa: E731
            sq[i, j] = ((x[i, j] - c(0, -1)) ** 2 + (x[i, j] - c(-1, 0)) ** 2
                        + ((x[i, j] - c(-1, -1)) ** 2 + (x[i, j] - c(-1, 1)) ** 2) / 2)
            g[i, j] = np.sqrt(((x[i, j] - c(0, 1)) ** 2 + (x[i, j] - c(1, 0)) ** 2) / 2
                              + ((x[i, j] - c(1, 1)) ** 2 + (x[i, j] - c(1, -1)) ** 2) / 4)
    for window in (3, 5):
        box = np.ones((window, window)) / window ** 2
        np.testing.assert_allclose(neural.modified_spatial_frequency(x, window), np.sqrt(_window_sum(sq, box)),
                                   atol=1e-12)
        np.testing.assert_allclose(neural.modified_average_gradient(x, window), _window_sum(g, box), atol=1e-12)


def _otsu_reference(v, bins=256):
    """Otsu 1979 by exhaustive search: bins of width max / (bins - 1) centred on k max / (bins - 1); for every
    threshold bin t, the between-class variance w0 w1 (mu0 - mu1)^2 of classes {k <= t} and {k > t}; the
    level is the mean of the maximising t (MATLAB's graythresh), times max / (bins - 1)."""
    top = v.max()
    k = np.clip(np.rint(v.ravel() * (bins - 1) / top), 0, bins - 1).astype(int)
    scores = []
    for t in range(bins):
        low, high = k[k <= t], k[k > t]
        if len(low) == 0 or len(high) == 0:
            scores.append(-1.0)
            continue
        w0, w1 = len(low) / k.size, len(high) / k.size
        scores.append(w0 * w1 * (low.mean() - high.mean()) ** 2)
    scores = np.array(scores)
    best = np.flatnonzero(scores >= scores.max() - 1e-12 * abs(scores.max()))
    return best.mean() / (bins - 1) * top


def test_otsu_threshold_is_the_exhaustive_between_class_maximum(rng):
    images = [rng.random((20, 20)), np.abs(rng.standard_normal((16, 24))) ** 2,
              np.where(rng.random((12, 12)) < 0.3, 0.1, 0.9)]          # two values: a plateau of maxima
    for x in images:
        assert float(neural.otsu_threshold(x)) == pytest.approx(_otsu_reference(x), rel=1e-9)
        assert float(neural.otsu_threshold(x, bins=16)) == pytest.approx(_otsu_reference(x, 16), rel=1e-9)
    batch = np.stack(images[:1] * 2 + [images[0] * 3])
    np.testing.assert_allclose(neural.otsu_threshold(batch[:, None]).ravel(),
                               [_otsu_reference(b) for b in batch], rtol=1e-9)
    assert neural.otsu_threshold(np.zeros((2, 5, 5))).tolist() == [0.0, 0.0]


def test_pa_pcnn_linking_scale_chunks_and_silent_images(rng, monkeypatch):
    s = (rng.standard_normal((3, 14, 15)) * 0.1).astype(np.float32)
    scale = rng.uniform(0.25, 4, (14, 15)).astype(np.float32)
    out = neural.pa_pcnn_firing_times(s, 40, scale)
    assert out.dtype == np.float32 and out.shape == s.shape
    for k in range(3):
        # float32 state: a few neurons may fire one iteration apart near a threshold
        assert np.mean(out[k] != _pa_pcnn_reference(s[k], 40, scale)) < 0.01
    # chunks of one image each, on two threads: the same counts
    monkeypatch.setattr(neural, "_CHUNK_ELEMENTS", 14 * 15)
    np.testing.assert_array_equal(neural.pa_pcnn_firing_times(s, 40, scale, threads=2), out)
    np.testing.assert_array_equal(neural.pa_pcnn_firing_times(s, 40, scale, threads=1), out)
    calls = []
    neural.pa_pcnn_firing_times(s, 5, check=lambda: calls.append(1))
    assert len(calls) == 3
    # a constant or a zero image never fires; sigma >= 1 is capped (alpha_f stays positive)
    flat = neural.pa_pcnn_firing_times(np.stack([np.full((8, 8), 0.3), np.zeros((8, 8))]), 50)
    assert flat.max() == 0
    decay_f, lam, v_e, decay_e = neural.pa_pcnn_parameters(rng.random((2, 8, 8)) * 100)
    np.testing.assert_allclose(decay_f, np.exp(np.log10(0.999)), rtol=1e-12)   # exp(-log10(1 / 0.999))
    with pytest.raises(ValueError, match="at most 255"):
        neural.pa_pcnn_firing_times(s, 256)
    assert neural.pa_pcnn_firing_times(s[:1, :4, :4], 255).shape == (1, 4, 4)    # 255 fits in uint8


def test_pa_pcnn_parameters_follow_eq_9_to_12_on_a_batch(rng):
    s = np.abs(rng.standard_normal((2, 3, 10, 12))) * 0.2
    decay_f, lam, v_e, decay_e = neural.pa_pcnn_parameters(s)
    assert decay_f.shape == (2, 3)
    for idx in np.ndindex(2, 3):
        f = s[idx]
        sigma, s_max, s_otsu = f.std(ddof=1), f.max(), _otsu_reference(f)
        alpha_f = np.log10(1 / sigma)
        lam_k = (s_max / s_otsu - 1) / 6
        ve_k = np.exp(-alpha_f) + s_max / s_otsu
        m = (1 - np.exp(-3 * alpha_f)) / (1 - np.exp(-alpha_f)) + 6 * lam_k * np.exp(-alpha_f)
        np.testing.assert_allclose([decay_f[idx], lam[idx], v_e[idx], decay_e[idx]],
                                   [np.exp(-alpha_f), lam_k, ve_k, s_otsu * m / ve_k], rtol=1e-9)


def test_classic_pcnn_is_qu_et_al_written_out(rng):
    """Qu et al. 2008: L = exp(-alpha_L) L + V_L (W * Y), U = F (1 + beta L), theta = exp(-alpha_theta) theta
    + V_theta Y (Y of the previous iteration), Y = [U > theta], T += Y; zero initial states, W = [c 1 c; 1 0 1;
    c 1 c], zero outside the image."""
    s = rng.random((2, 12, 13)).astype(np.float32)
    s[:, :3, :4] = 0.0                     # U = 0 = theta at the first step: no firing (strictly greater)
    beta = rng.uniform(0.1, 0.4, (12, 13)).astype(np.float32)
    for kwargs, b in [({}, 0.2), ({"beta": beta, "corner": 0.5, "v_theta": 5.0, "alpha_l": 0.3}, beta)]:
        out = neural.pcnn_firing_times(s, 60, **kwargs)
        corner, v_theta = kwargs.get("corner", 0.707), kwargs.get("v_theta", 20.0)
        alpha_l = kwargs.get("alpha_l", 0.06931)
        w = np.array([[corner, 1, corner], [1, 0, 1], [corner, 1, corner]])
        for k in range(2):
            f = s[k].astype(np.float64)
            link, theta, y, t = (np.zeros_like(f) for _ in range(4))
            for _ in range(60):
                link = np.exp(-alpha_l) * link + 1.0 * convolve2d(y, w, mode="same")
                theta = np.exp(-0.2) * theta + v_theta * y
                u = f * (1 + b * link)
                y = (u > theta).astype(np.float64)
                t += y
            assert np.mean(out[k] != t) < 0.01 and out[k].sum() > 0


def test_dual_channel_scm_is_zhan_et_al_written_out(rng):
    """U = f U + max_k S^k (1 + beta W * Y), Y = [U > E], E = g E + h Y, the firing credited to the first
    source giving the maximum; W Zhan's weights (0.1091 diagonal, 0.1409 edge), zero outside."""
    s = rng.random((3, 2, 10, 11)).astype(np.float32)
    credits = neural.dual_channel_scm(s, iterations=40, f=0.7, g=0.6, h=10.0, beta=2.0)   # linking matters
    w = np.array([[0.1091, 0.1409, 0.1091], [0.1409, 0, 0.1409], [0.1091, 0.1409, 0.1091]])
    for b in range(2):
        stim = s[:, b].astype(np.float64)
        u, y, e = np.zeros(stim.shape[1:]), np.zeros(stim.shape[1:]), np.ones(stim.shape[1:])
        expected = np.zeros_like(stim)
        for _ in range(40):
            cand = stim * (1 + 2.0 * convolve2d(y, w, mode="same"))
            u = 0.7 * u + cand.max(axis=0)
            y = (u > e).astype(np.float64)
            e = 0.6 * e + 10.0 * y
            expected[cand.argmax(axis=0), np.arange(10)[:, None], np.arange(11)] += y
        assert np.mean(credits[:, b] != expected) < 0.01, b     # 0 measured; Zhan's weights swapped: 6 %
        assert expected[1:].sum() > 0 and expected[0].sum() > 0
    # no batch axis: (N, H, W)
    np.testing.assert_array_equal(neural.dual_channel_scm(s[:, 0], iterations=40, f=0.7, g=0.6, h=10.0, beta=2.0),
                                  credits[:, 0])


def _wncc_reference(a, b, sigma, radius):
    """sum_c sum_w g (a - m_a)(b - m_b) / sqrt(sum_c sum_w g (a - m_a)^2 sum_c sum_w g (b - m_b)^2) with the
    normalised Gaussian window g over (2 radius + 1)^2 samples, mirrored borders, m the window means."""
    offsets = np.arange(-radius, radius + 1)
    g1 = np.exp(-offsets ** 2 / (2 * sigma ** 2))
    g = np.outer(g1, g1) / g1.sum() ** 2
    h, w = a.shape[-2:]
    out = np.zeros((h, w))
    for i in range(h):
        for j in range(w):
            cov = va = vb = 0.0
            for c in range(a.shape[0]):
                pa = np.array([[_at(a[c], i + m, j + n, "mirror") for n in offsets] for m in offsets])
                pb = np.array([[_at(b[c], i + m, j + n, "mirror") for n in offsets] for m in offsets])
                ma, mb = (g * pa).sum(), (g * pb).sum()
                cov += (g * (pa - ma) * (pb - mb)).sum()
                va += (g * (pa - ma) ** 2).sum()
                vb += (g * (pb - mb) ** 2).sum()
            out[i, j] = cov / np.sqrt(va * vb) if va * vb > 1e-24 else 1.0
    return out


def test_wncc_and_similarity_rule_written_out(rng):
    a = rng.random((2, 9, 10))
    b = 0.5 * a + rng.random((2, 9, 10))
    np.testing.assert_allclose(neural.wncc(a, b, 1.0, 2), _wncc_reference(a, b, 1.0, 2), atol=1e-9)
    np.testing.assert_allclose(neural.wncc(a, b, 1.5, 3), _wncc_reference(a, b, 1.5, 3), atol=1e-9)
    flat = np.ones((1, 6, 6))
    assert neural.wncc(flat, flat).tolist() == np.ones((6, 6)).tolist()
    sums = neural.wncc_sums(a[:1], b[:1], 1.0, 2)
    more = neural.wncc_sums(a[1:], b[1:], 1.0, 2)
    np.testing.assert_allclose(neural.wncc_from_sums(*(x + y for x, y in zip(sums, more))),
                               neural.wncc(a, b, 1.0, 2), atol=1e-12)
    # the rule: average weighted by activity where similar (> threshold), else the more active source
    bands = rng.standard_normal((2, 5, 6))
    similarity = rng.uniform(-1, 1, (5, 6))
    activity = rng.random((2, 5, 6))
    activity[:, 0, 0] = 0.0                                      # no activity: equal weights
    activity[1, 0, 1] = activity[0, 0, 1]                        # a tie: the first source
    similarity[0, :2] = [0.9, -0.5]
    out = neural.similarity_rule(bands, similarity, activity, threshold=0.3)
    for i, j in np.ndindex(5, 6):
        e0, e1 = activity[:, i, j]
        if similarity[i, j] > 0.3:
            w0 = e0 / (e0 + e1) if e0 + e1 > 0 else 0.5
            expected = w0 * bands[0, i, j] + (1 - w0) * bands[1, i, j]
        else:
            expected = bands[0, i, j] if e0 >= e1 else bands[1, i, j]
        assert out[i, j] == pytest.approx(expected, abs=1e-12), (i, j)
    assert neural.similarity_rule(bands.astype(np.float32), similarity, activity).dtype == np.float32
    with pytest.raises(ValueError, match="2 sources"):
        neural.similarity_rule(np.zeros((3, 2, 2)), np.zeros((2, 2)), np.zeros((3, 2, 2)))
