"""Reference-free fusion metrics: hand-computed values, independent re-implementations, properties, errors.

Everything runs on small synthetic images made here (no ../shared data).
"""

import math

import numpy as np
import pytest
from scipy.signal import convolve2d

from MedFusionLib import metrics
from MedFusionLib.errors import FusionInputError

SMALL = [m for m in metrics.METRICS if m != "MS-SSIM"]  # metrics that run on slices >= 41 x 41


def _phantom(seed=0, size=64):
    """A smooth 'anatomy' with edges plus a blob 'function', both 0..255 integers, and their mean."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[:size, :size] / size
    a = 80 + 120 * ((x - 0.5) ** 2 + (y - 0.5) ** 2 < 0.12) + 30 * np.sin(12 * x) + rng.normal(0, 4, x.shape)
    b = 200 * np.exp(-((x - 0.35) ** 2 + (y - 0.6) ** 2) / 0.02) + rng.normal(0, 6, x.shape)
    a, b = np.round(np.clip(a, 0, 255)), np.round(np.clip(b, 0, 255))
    return a, b, np.round((a + b) / 2)


# ----------------------------------------------------------------------------------- hand-computed values

def test_entropy_of_two_and_four_equally_frequent_values():
    assert metrics.en(np.array([[0, 0], [255, 255]])) == pytest.approx(1.0)
    assert metrics.en(np.array([[3, 7], [9, 200]])) == pytest.approx(2.0)
    assert metrics.en(np.full((4, 5), 17.0)) == 0.0
    # values are rounded (half to even) before counting: 0.4 -> 0 and 1.6 -> 2 are two levels
    assert metrics.en(np.array([[0.4, 0.0], [1.6, 2.0]])) == pytest.approx(1.0)


def test_sd_sf_ag_by_hand():
    f = np.array([[0.0, 2.0], [4.0, 6.0]])
    assert metrics.sd(f) == pytest.approx(math.sqrt(5.0))  # population: deviations -3,-1,1,3
    g = np.array([[0.0, 1.0], [2.0, 3.0]])
    assert metrics.sf(g) == pytest.approx(math.sqrt(1.0 + 4.0))  # RF^2 = 1, CF^2 = 4
    assert metrics.ag(g) == pytest.approx(math.sqrt((1.0 + 4.0) / 2))  # one-sided differences 1 and 2
    # columns j^2 = 0, 1, 4: gradients 1 (one-sided), 2 (central), 3 (one-sided); no vertical change
    h = np.tile([0.0, 1.0, 4.0], (3, 1))
    assert metrics.ag(h) == pytest.approx((1 + 2 + 3) / 3 / math.sqrt(2))


def test_mi_cc_psnr_scd_by_hand():
    a = np.array([[0, 0], [1, 1]], float)
    b = np.array([[0, 1], [0, 1]], float)  # independent of a
    assert metrics.mi(a, [a, b]) == pytest.approx(math.log(2.0))  # MI(a, a) = ln 2, MI(a, b) = 0
    # CC: a source equal to F (r = 1) and one reversed (r = -1)
    f = np.array([[1.0, 5.0], [2.0, 9.0]])
    assert metrics.cc(f, [2 * f + 3, 10 - f]) == pytest.approx(0.0)
    assert metrics.cc(f, [f, 4 * f]) == pytest.approx(1.0)
    # PSNR: peak 10, MSEs 1 and 9 -> 10 log10(100 / 5)
    p = np.array([[0.0, 10.0], [10.0, 10.0]])
    assert metrics.psnr(p, [p + 1, p - 3]) == pytest.approx(10 * math.log10(20.0))
    # SCD: F = A + B, so F - B = A and F - A = B, both correlations 1
    rng = np.random.default_rng(3)
    x, y = rng.random((2, 8, 8))
    assert metrics.scd(x + y, [x, y]) == pytest.approx(2.0)


def test_mi_matches_an_independent_histogram_computation():
    rng = np.random.default_rng(5)
    a = rng.integers(0, 256, (40, 50)).astype(float)
    b = rng.integers(0, 8, (40, 50)).astype(float) * 30
    f = np.round(0.5 * a + 0.5 * b + rng.integers(0, 3, a.shape))

    def mi_ref(u, v):
        joint, _, _ = np.histogram2d(u.ravel(), v.ravel(), bins=256, range=[[-0.5, 255.5], [-0.5, 255.5]])
        p = joint / joint.sum()
        pu, pv = p.sum(1, keepdims=True), p.sum(0, keepdims=True)
        nz = p > 0
        return float((p[nz] * np.log(p[nz] / (pu @ pv)[nz])).sum())

    assert metrics.mi(f, [a, b]) == pytest.approx(mi_ref(f, a) + mi_ref(f, b), rel=1e-12)
    # MI of an image with itself is its entropy (in nats)
    assert metrics.mi(a, [a, a]) == pytest.approx(2 * metrics.en(a) * math.log(2), rel=1e-12)


# ------------------------------------------------------------------- independent straightforward versions

def _vifp_reference(ref, dist):
    """VIFp written out per scale exactly as docs describe it, with scipy.signal.convolve2d."""
    sigma_nsq, eps = 2.0, 1e-10
    num = den = 0.0
    for scale in range(1, 5):
        n = 2 ** (5 - scale) + 1
        sd = n / 5.0
        m = (n - 1) / 2
        yy, xx = np.ogrid[-m:m + 1, -m:m + 1]
        h = np.exp(-(xx * xx + yy * yy) / (2 * sd * sd))
        h[h < np.finfo(h.dtype).eps * h.max()] = 0
        win = np.rot90(h / h.sum(), 2)
        if scale > 1:
            ref = convolve2d(ref, win, mode="valid")[::2, ::2]
            dist = convolve2d(dist, win, mode="valid")[::2, ::2]
        mu1, mu2 = convolve2d(ref, win, mode="valid"), convolve2d(dist, win, mode="valid")
        s1 = convolve2d(ref * ref, win, mode="valid") - mu1 * mu1
        s2 = convolve2d(dist * dist, win, mode="valid") - mu2 * mu2
        s12 = convolve2d(ref * dist, win, mode="valid") - mu1 * mu2
        s1[s1 < 0] = 0
        s2[s2 < 0] = 0
        g = s12 / (s1 + eps)
        sv = s2 - g * s12
        g[s1 < eps] = 0
        sv[s1 < eps] = s2[s1 < eps]
        s1[s1 < eps] = 0
        g[s2 < eps] = 0
        sv[s2 < eps] = 0
        sv[g < 0] = s2[g < 0]
        g[g < 0] = 0
        sv[sv <= eps] = eps
        num += np.sum(np.log10(1 + g * g * s1 / (sv + sigma_nsq)))
        den += np.sum(np.log10(1 + s1 / sigma_nsq))
    v = num / den
    return 1.0 if np.isnan(v) else v


def test_vif_equals_straightforward_per_scale_implementation():
    rng = np.random.default_rng(7)
    a = rng.integers(0, 256, (64, 64)).astype(float)
    b = np.round(np.clip(rng.normal(120, 40, (64, 64)), 0, 255))
    b[:20, :20] = 50.0  # a flat patch exercises the sigma < eps branches
    f = np.round((a + b) / 2)
    expected = _vifp_reference(a, f) + _vifp_reference(b, f)
    assert metrics.vif(f, [a, b]) == pytest.approx(expected, rel=1e-10)
    # a constant source has no information to lose: VIFp is 0/0 there, which the convention maps to 1
    flat = np.full((64, 64), 9.0)
    assert metrics.vif(f, [flat, flat]) == 2.0


def _qabf_reference(f, a, b):
    hx = np.array([[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]], float)
    hy = np.array([[1, 2, 1], [0, 0, 0], [-1, -2, -1]], float)

    def edges(img):
        sx, sy = convolve2d(img, hx, mode="same"), convolve2d(img, hy, mode="same")
        g = np.sqrt(sx * sx + sy * sy)
        ang = np.full(img.shape, math.pi / 2)
        ang[sx != 0] = np.arctan(sy[sx != 0] / sx[sx != 0])
        return g, ang

    def q(ga, aa, gf, af):
        rel = np.zeros_like(ga)
        rel[ga > gf] = gf[ga > gf] / ga[ga > gf]
        rel[ga == gf] = gf[ga == gf]
        rel[ga < gf] = ga[ga < gf] / gf[ga < gf]
        ang = 1 - np.abs(aa - af) / (math.pi / 2)
        return 0.9994 / (1 + np.exp(-15 * (rel - 0.5))) * 0.9879 / (1 + np.exp(-22 * (ang - 0.8)))

    (ga, aa), (gb, ab), (gf, af) = edges(a), edges(b), edges(f)
    return np.sum(q(ga, aa, gf, af) * ga + q(gb, ab, gf, af) * gb) / np.sum(ga + gb)


def test_qabf_equals_straightforward_implementation():
    a, b, f = _phantom(1, 40)
    assert metrics.qabf(f, [a, b]) == pytest.approx(_qabf_reference(f, a, b), rel=1e-12)
    g = np.maximum(a, b)
    assert metrics.qabf(g, [a, b]) == pytest.approx(_qabf_reference(g, a, b), rel=1e-12)


def test_qabf_of_a_perfect_copy_and_the_equal_strength_quirk():
    a, _, _ = _phantom(2, 48)
    # F = A = B: every relative strength takes the quirk branch G = gF. With the integer image's strong
    # edges (g >= 1 wherever g > 0) Q_g is ~0.9994 and Q_a = 0.9879 / (1 + e^-4.4), so Qabf ~ 0.975.
    g = np.hypot(convolve2d(a, [[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]], mode="same"),
                 convolve2d(a, [[1, 2, 1], [0, 0, 0], [-1, -2, -1]], mode="same"))
    qa = 0.9879 / (1 + math.exp(-22 * 0.2))
    expected = np.sum(0.9994 / (1 + np.exp(-15 * (g - 0.5))) * qa * g) / g.sum()
    got = metrics.qabf(a, [a, a])
    assert got == pytest.approx(expected, rel=1e-12)
    assert got == pytest.approx(0.9994 * qa, abs=2e-3)
    # The quirk proper: equal weak edges (all strengths here < 0.15) score ~0, not ~1 as in the paper.
    weak = a * 1e-4
    assert metrics.qabf(weak, [weak, weak]) < 0.01


def _nabf_reference(f, srcs):
    vt = np.array([[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]]) / 8.0
    ht = np.array([[-1, -2, -1], [0, 0, 0], [1, 2, 1]]) / 8.0

    def sobel(x):  # Kumar's sobel_fn: correlation on a mirror-extended image, written out
        e = np.pad(x, 1, mode="reflect")
        h, w = x.shape
        gv = sum(vt[i, j] * e[i:i + h, j:j + w] for i in range(3) for j in range(3))
        gh = sum(ht[i, j] * e[i:i + h, j:j + w] for i in range(3) for j in range(3))
        return gv, gh

    def strength_angle(x):
        gv, gh = sobel(x)
        ang = np.zeros(x.shape)
        nz = (gv != 0) | (gh != 0)
        with np.errstate(divide="ignore"):
            ang[nz] = np.arctan(gv[nz] / gh[nz])
        return np.sqrt(gv ** 2 + gh ** 2), ang

    gf, af = strength_angle(f)
    num = den = 0.0
    gs = [strength_angle(s) for s in srcs]
    art = np.all([gf > g for g, _ in gs], axis=0)
    for g, ang in gs:
        rel = np.zeros(g.shape)
        ok = (g != 0) & (gf != 0)
        rel[ok] = np.minimum(g, gf)[ok] / np.maximum(g, gf)[ok]
        aa = np.abs(np.abs(ang - af) - math.pi / 2) * 2 / math.pi
        q = np.sqrt(0.9999 / (1 + np.exp(-19 * (rel - 0.5))) * 0.9995 / (1 + np.exp(-22 * (aa - 0.5))))
        wt = np.where(g >= 2, g ** 1.5, 0.001)
        num += np.sum(art * (1 - q) * wt)
        den += wt.sum()
    return num / den


def test_nabf_equals_written_out_reference_and_behaves():
    a, b, f = _phantom(3, 40)
    sharp = np.clip(2 * f - 60, 0, 255)  # amplified edges: artefacts
    for g in (f, sharp, np.maximum(a, b)):
        assert metrics.nabf(g, [a, b]) == pytest.approx(_nabf_reference(g, [a, b]), rel=1e-12)
    # Sobel is linear, so |grad (A + B)/2| <= max(|grad A|, |grad B|): averaging creates no artefacts
    assert metrics.nabf((a + b) / 2, [a, b]) == 0.0
    assert metrics.nabf(sharp, [a, b]) > 0.01
    assert metrics.nabf(a, [a, a]) == 0.0


def _fmi_reference(f, srcs, feature="gradient", w=3):
    """Haghighat's fast-FMI, window by window, as his MATLAB code does (loops included)."""

    def feat(x):
        return np.gradient(x, axis=1) if feature == "gradient" else x

    def pdf(sub):
        lo, hi = sub.min(), sub.max()
        sub = np.ones_like(sub) if hi == lo else (sub - lo) / (hi - lo)
        v = sub.flatten(order="F")
        return v / v.sum()

    def one(asub, fsub):
        if np.array_equal(asub, fsub):
            return 1.0
        ap, fp = pdf(asub), pdf(fsub)
        l = ap.size
        ac, fc = np.cumsum(ap), np.cumsum(fp)
        at, ft = ap - ap.mean(), fp - fp.mean()
        c = 0.0 if np.sum(at * ft) == 0 else np.sum(at * ft) / math.sqrt(np.sum(at * at) * np.sum(ft * ft))
        idx = np.arange(1, l + 1)
        asd = math.sqrt(max(np.sum(idx ** 2 * ap) - np.sum(idx * ap) ** 2, 0))
        fsd = math.sqrt(max(np.sum(idx ** 2 * fp) - np.sum(idx * fp) ** 2, 0))
        bound = (lambda x, y: min(x, y)) if c >= 0 else (lambda x, y: max(x + y - 1, 0))
        if (c >= 0 and c == 0) or asd == 0 or fsd == 0:
            phi = 0.0
        else:
            cov = sum(bound(fc[i], ac[j]) - fc[i] * ac[j] for i in range(l) for j in range(l))
            phi = c / (cov / (fsd * asd))
        hj = 0.0
        for i in range(l):
            for j in range(l):
                up = bound(fc[i], ac[j])
                up -= bound(fc[i - 1], ac[j]) if i else 0
                up -= bound(fc[i], ac[j - 1]) if j else 0
                up += bound(fc[i - 1], ac[j - 1]) if i and j else 0
                p = phi * up + (1 - phi) * fp[i] * ap[j]
                if p != 0:
                    hj += -p * math.log2(abs(p))  # real(-p log2 p) for the negative masses
        ha = -sum(p * math.log2(p) for p in ap if p != 0)
        hf = -sum(p * math.log2(p) for p in fp if p != 0)
        mi = ha + hf - hj
        return 0.0 if mi == 0 else 2 * mi / (ha + hf)

    ff = feat(f)
    fs = [feat(s) for s in srcs]
    r = w // 2
    vals = []
    for p in range(r, f.shape[0] - r):
        for q in range(r, f.shape[1] - r):
            win = (slice(p - r, p + r + 1), slice(q - r, q + r + 1))
            vals.append(np.mean([one(s[win], ff[win]) for s in fs]))
    return float(np.mean(vals))


@pytest.mark.parametrize("feature", ["gradient", "none"])
def test_fmi_equals_window_by_window_reference(feature):
    rng = np.random.default_rng(11)
    a = rng.integers(0, 6, (9, 10)).astype(float)
    b = rng.integers(0, 6, (9, 10)).astype(float)
    a[4:9, 5:10] = 3.0  # constant patches (normalised to all ones)
    f = np.round((a + b) / 2)
    f[:3, :4] = a[:3, :4]  # identical patches score 1
    # (this data has windows with c < 0 and with a Nelsen weight phi > 1, i.e. negative joint masses)
    got = metrics.fmi(f, [a, b], feature=feature)
    assert got == pytest.approx(_fmi_reference(f, [a, b], feature), rel=1e-10)
    got5 = metrics.fmi(f, [a, b], feature=feature, window=5)
    assert got5 == pytest.approx(_fmi_reference(f, [a, b], feature, 5), rel=1e-10)
    assert metrics.fmi(a, [a, a], feature=feature) == 1.0


def _freqspace(n):  # MATLAB freqspace, one axis
    return (np.arange(n) - n // 2) * (2.0 / n)


def _filter_freq(x, response):  # as the toolbox: ifft2(ifftshift(fftshift(fft2(x)) .* H)), real part
    return np.real(np.fft.ifft2(np.fft.ifftshift(np.fft.fftshift(np.fft.fft2(x)) * response)))


def _normalize1(x):
    lo, hi = x.min(), x.max()
    return x.copy() if lo == hi == 0 else np.round((x - lo) / (hi - lo) * 255)


def _qcb_reference(f, a, b):
    h, w = f.shape
    u, v = np.meshgrid(_freqspace(w) * w / 30, _freqspace(h) * h / 30)
    r = np.sqrt(u ** 2 + v ** 2)
    csf = np.exp(-(r / 15.3870) ** 2) - 0.7622 * np.exp(-(r / 1.3456) ** 2)
    t = np.arange(-15, 16)
    xx, yy = np.meshgrid(t, t)

    def gauss(s):
        return np.exp(-(xx * xx + yy * yy) / (2 * s * s)) / (2 * np.pi * s * s)

    def cp(img):
        img = _filter_freq(_normalize1(img), csf)
        c = np.abs(convolve2d(img, gauss(2), mode="same") / convolve2d(img, gauss(4), mode="same") - 1)
        return c ** 3 / (c ** 2 + 1e-4)

    ca, cb, cf = cp(a), cp(b), cp(f)
    qa = np.where(ca < cf, ca / cf, cf / ca)
    qb = np.where(cb < cf, cb / cf, cf / cb)
    la = ca ** 2 / (ca ** 2 + cb ** 2)
    return float(np.mean(la * qa + (1 - la) * qb))


def _qcv_reference(f, a, b):
    f, a, b = _normalize1(f), _normalize1(a), _normalize1(b)
    h, w = f.shape
    k1 = np.array([[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]], float)
    k2 = np.array([[-1, -2, -1], [0, 0, 0], [1, 2, 1]], float)

    def grad(x):  # filter2 = correlation = convolution with the kernel rotated 180 degrees
        return np.hypot(convolve2d(x, np.rot90(k1, 2), mode="same"), convolve2d(x, np.rot90(k2, 2), mode="same"))

    u, v = np.meshgrid(_freqspace(w) * w / 8, _freqspace(h) * h / 8)
    r = np.sqrt(u ** 2 + v ** 2)
    csf = 2.6 * (0.0192 + 0.144 * r) * np.exp(-(0.144 * r) ** 1.1)
    num = den = 0.0
    for s in (a, b):
        g = grad(s) ** 5
        d = _filter_freq(s - f, csf) ** 2
        for i in range(0, h, 16):
            for j in range(0, w, 16):
                lam = g[i:i + 16, j:j + 16].sum()
                num += lam * d[i:i + 16, j:j + 16].sum() / 256.0  # blkproc pads blocks to 16 x 16
                den += lam
    return num / den


@pytest.mark.parametrize("shape", [(32, 32), (30, 37)])
def test_qcb_qcv_equal_toolbox_style_references(shape):
    a, b, f = (x[:shape[0], :shape[1]] for x in _phantom(4, 40))
    g = np.maximum(a, b)
    for fused in (f, g):
        assert metrics.qcb(fused, [a, b]) == pytest.approx(_qcb_reference(fused, a, b), rel=1e-9)
        assert metrics.qcv(fused, [a, b]) == pytest.approx(_qcv_reference(fused, a, b), rel=1e-9)


def test_ssim_matches_scikit_image():
    from skimage.metrics import structural_similarity

    a, b, f = _phantom(5, 48)
    expected = structural_similarity(f, a, data_range=2) + structural_similarity(f, b, data_range=2)
    assert metrics.ssim(f, [a, b]) == pytest.approx(expected, rel=1e-12)


def test_ms_ssim_matches_monai():
    import torch
    from monai.metrics.regression import compute_ms_ssim

    a, b, f = _phantom(6, 176)
    rng = np.random.default_rng(6)
    noisy = np.clip(f + rng.normal(0, 20, f.shape), 0, 255)

    def monai(x, y):
        t = [torch.from_numpy(v[None, None]).double() for v in (x, y)]
        return float(compute_ms_ssim(t[0], t[1], spatial_dims=2, data_range=255.0))

    for fused in (f, noisy):
        expected = monai(fused, a) + monai(fused, b)
        assert metrics.ms_ssim(fused, [a, b]) == pytest.approx(expected, rel=1e-5)
    assert metrics.ms_ssim(a, [a, a]) == pytest.approx(2.0)


# ------------------------------------------------------------------------------------------- properties

def test_fused_equal_to_the_sources():
    a, _, _ = _phantom(8, 48)
    r = metrics.evaluate_all(a, [a, a], metrics=SMALL)
    assert r["MI"] == pytest.approx(2 * r["EN"] * math.log(2))
    assert r["CC"] == pytest.approx(1.0)
    assert r["PSNR"] == math.inf
    assert r["VIF"] == pytest.approx(2.0, rel=1e-6)
    assert r["SSIM"] == pytest.approx(2.0)
    assert r["FMI"] == 1.0
    assert r["Nabf"] == 0.0
    assert r["Qcb"] == pytest.approx(1.0)
    assert r["Qcv"] == 0.0


def test_source_order_does_not_matter():
    a, b, f = _phantom(9, 48)
    ab = metrics.evaluate_all(f, [a, b], metrics=SMALL)
    ba = metrics.evaluate_all(f, [b, a], metrics=SMALL)
    for name in SMALL:
        assert ab[name] == pytest.approx(ba[name], rel=1e-12, abs=1e-12), name


def test_n_source_generalisations_reduce_to_two_sources():
    a, b, f = _phantom(10, 48)
    two = metrics.evaluate_all(f, [a, b], metrics=SMALL)
    four = metrics.evaluate_all(f, [a, a, b, b], metrics=SMALL)
    summed = {"MI", "VIF", "SSIM"}  # sums over sources double; pooled / averaged ones do not change
    for name in SMALL:
        if name in ("EN", "SD", "SF", "AG", "SCD"):
            continue
        factor = 2.0 if name in summed else 1.0
        assert four[name] == pytest.approx(factor * two[name], rel=1e-10), name
    # SCD for N sources: correlation of F minus the mean of the others with each source
    c = np.roll(a, 5, axis=1)
    expected = sum(np.corrcoef((f - (sum((a, b, c)) - s) / 2).ravel(), s.ravel())[0, 1] for s in (a, b, c))
    assert metrics.scd(f, [a, b, c]) == pytest.approx(expected, rel=1e-12)


def test_lower_is_better_metrics_point_the_right_way():
    a, b, f = _phantom(12, 48)
    rng = np.random.default_rng(12)
    noisy = np.clip(f + rng.normal(0, 25, f.shape), 0, 255)
    assert metrics.qcv(noisy, [a, b]) > metrics.qcv(f, [a, b]) > 0
    assert metrics.nabf(noisy, [a, b]) > metrics.nabf(f, [a, b])
    assert metrics.HIGHER_IS_BETTER["Nabf"] is False and metrics.HIGHER_IS_BETTER["Qcv"] is False
    assert sum(metrics.HIGHER_IS_BETTER.values()) == 14


def test_volume_is_the_mean_of_its_slices_along_any_axis(monkeypatch):
    slices = [_phantom(20 + k, 48) for k in range(3)]
    a, b, f = (np.stack([s[i] for s in slices]) for i in range(3))
    per_slice = [metrics.evaluate_all(f[k], [a[k], b[k]], metrics=SMALL) for k in range(3)]
    vol = metrics.evaluate_all(f, [a, b], metrics=SMALL)
    for name in SMALL:
        assert vol[name] == pytest.approx(np.mean([p[name] for p in per_slice]), rel=1e-10), name
    moved = metrics.evaluate_all(np.moveaxis(f, 0, 2), [np.moveaxis(a, 0, 2), np.moveaxis(b, 0, 2)],
                                 axis=-1, metrics=SMALL)
    for name in SMALL:
        assert moved[name] == pytest.approx(vol[name], rel=1e-10), name
    # large volumes are processed in blocks of slices: same values
    monkeypatch.setattr(metrics._common, "_BLOCK_PIXELS", 2 * 48 * 48)
    block_sizes = metrics._common._per_slice(lambda F, X: np.full(F.shape[0], F.shape[0]), f, np.stack([a, b]))
    assert list(block_sizes) == [2, 2, 1]  # the patched block size is the one in force
    blocked = metrics.evaluate_all(f, [a, b], metrics=SMALL)
    for name in SMALL:
        assert blocked[name] == pytest.approx(vol[name], rel=1e-12), name


def test_ms_ssim_of_a_volume_is_the_mean_of_its_slices():
    (a0, b0, f0), (a1, b1, f1) = _phantom(30, 176), _phantom(31, 176)
    vol = metrics.ms_ssim(np.stack([f0, f1]), [np.stack([a0, a1]), np.stack([b0, b1])])
    assert vol == pytest.approx((metrics.ms_ssim(f0, [a0, b0]) + metrics.ms_ssim(f1, [a1, b1])) / 2, rel=1e-12)


def test_undefined_slices_are_left_out_of_the_volume_mean():
    a, b, f = (np.stack([x, np.zeros_like(x)]) for x in _phantom(13, 48))
    # CC and Qabf are undefined (0/0) on the empty slice: the volume value is the first slice's
    assert metrics.cc(f, [a, b]) == pytest.approx(metrics.cc(f[0], [a[0], b[0]]))
    assert metrics.qabf(f, [a, b]) == pytest.approx(metrics.qabf(f[0], [a[0], b[0]]))
    assert math.isnan(metrics.cc(f[1], [a[1], b[1]]))


def test_inputs_are_not_modified():
    a, b, f = _phantom(14, 48)
    arrays = [f.astype(np.float32), a.astype(np.uint8), b]
    copies = [x.copy() for x in arrays]
    for x in arrays:
        x.setflags(write=False)  # any in-place write would raise
    metrics.evaluate_all(arrays[0], arrays[1:], metrics=SMALL)
    for x, c in zip(arrays, copies):
        np.testing.assert_array_equal(x, c)
        assert x.dtype == c.dtype


def test_evaluate_all_order_and_subset():
    a, b, f = _phantom(15, 176)
    r = metrics.evaluate_all(f, [a, b])
    assert list(r) == list(metrics.METRICS) and len(r) == 16
    assert all(isinstance(v, float) and math.isfinite(v) for v in r.values())
    assert list(metrics.evaluate_all(f, [a, b], metrics=["SSIM", "EN"])) == ["EN", "SSIM"]
    assert r["SSIM"] == pytest.approx(metrics.ssim(f, [a, b]))
    assert r["FMI"] == pytest.approx(metrics.fmi(f, [a, b]))


def test_metrics_for_shape_lists_what_fits():
    assert metrics.metrics_for_shape((256, 256)) == metrics.METRICS
    assert metrics.metrics_for_shape((192, 160)) == tuple(m for m in metrics.METRICS if m != "MS-SSIM")
    assert "VIF" not in metrics.metrics_for_shape((40, 300)) and "SSIM" in metrics.metrics_for_shape((40, 300))
    assert metrics.metrics_for_shape((5, 200, 200), axis=0) == metrics.METRICS
    assert "MS-SSIM" not in metrics.metrics_for_shape((5, 200, 200), axis=1)
    img = np.zeros((64, 64))
    assert list(metrics.evaluate_all(img, [img, img], metrics=metrics.metrics_for_shape(img.shape))) == SMALL


def test_protocol_image_and_fused():
    rgb = np.array([[[255, 0, 0], [0, 255, 0], [0, 0, 255], [100, 100, 100]]], np.uint8)
    # 76.245 -> 76, 149.685 -> 150, 29.07 -> 29, grey stays grey
    np.testing.assert_array_equal(metrics.protocol_image(rgb), [[76, 150, 29, 100]])
    rgba = np.concatenate([rgb, np.full(rgb.shape[:-1] + (1,), 7, np.uint8)], axis=-1)
    np.testing.assert_array_equal(metrics.protocol_image(rgba), [[76, 150, 29, 100]])
    grey = np.arange(12, dtype=np.uint8).reshape(4, 3)
    out = metrics.protocol_image(grey)
    assert out.dtype == np.float64 and out.shape == (4, 3)
    vol = np.zeros((2, 4, 3), np.uint8)
    assert metrics.protocol_image(vol, rgb=False).shape == (2, 4, 3)
    assert metrics.protocol_image(vol).shape == (2, 4)  # a last side of 3 reads as RGB unless told
    np.testing.assert_array_equal(metrics.protocol_fused([-3.2, 0.5, 1.5, 254.6, 300.0]), [0, 0, 2, 255, 255])


# ------------------------------------------------------------------------------------------------ errors

@pytest.mark.parametrize("fused, sources, match", [
    (np.zeros((8, 8)), [np.zeros((8, 8)), np.zeros((8, 9))], "same shape"),
    (np.zeros((8, 8)), [np.zeros((8, 8))], "at least 2"),
    (np.zeros((8, 8)), np.zeros((8, 8)), "stack the sources"),
    (np.full((8, 8), np.nan), [np.zeros((8, 8))] * 2, "NaN"),
    (np.zeros((8, 8)), [np.zeros((8, 8)), np.full((8, 8), np.inf)], "sources\\[1\\]"),
    (np.zeros((2, 2, 8, 8)), [np.zeros((2, 2, 8, 8))] * 2, "2-D image .* or a 3-D volume"),
    (np.zeros(8), [np.zeros(8)] * 2, "2-D image"),
    (np.zeros((8, 8), bool), [np.zeros((8, 8))] * 2, "real numbers"),
    (np.zeros((8, 8), complex), [np.zeros((8, 8))] * 2, "real numbers"),
])
def test_bad_input_is_rejected(fused, sources, match):
    with pytest.raises(FusionInputError, match=match):
        metrics.cc(fused, sources)


def test_errors_are_value_errors_with_useful_messages():
    img = np.zeros((64, 64))
    with pytest.raises(ValueError, match="MS-SSIM >= 176"):
        metrics.evaluate_all(img, [img, img], metrics=["EN", "MS-SSIM"])
    # Asked for everything, a metric that does not fit the size is NaN instead of an error.
    scores = metrics.evaluate_all(img + 1, [img, img + 2])
    assert np.isnan(scores["MS-SSIM"]) and np.isfinite(scores["EN"]) and list(scores) == list(metrics.METRICS)
    with pytest.raises(FusionInputError, match="VIF >= 41"):
        metrics.vif(img[:40, :40], [img[:40, :40]] * 2)
    with pytest.raises(FusionInputError, match="unknown metric"):
        metrics.evaluate_all(img, [img, img], metrics=["EN", "QQ"])
    with pytest.raises(FusionInputError, match="axis"):
        metrics.evaluate_all(np.zeros((2, 64, 64)), [np.zeros((2, 64, 64))] * 2, axis=3, metrics=["EN"])
    with pytest.raises(FusionInputError, match="window"):
        metrics.fmi(img, [img, img], window=4)
    with pytest.raises(FusionInputError, match="feature"):
        metrics.fmi(img, [img, img], feature="dct")
