"""The metrics and the image reading of the published protocol against references outside the library:
SSIM written out from Wang et al. (2004), OpenCV's luminance on rounding ties (frozen values, quoted),
frozen values of the CDDFuse reference evaluator on a tiny image pair, and -- when ../shared holds the
development set -- the published baseline table of ../shared/docs/fusion-metrics.md.

Only public functions of :mod:`MedFusionLib.metrics` are used (the module's internals may move)."""

import os

import numpy as np
import pytest

from MedFusionLib import metrics

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEV_SET = os.path.join(ROOT, "..", "shared", "data", "aanlib-dev")


# --- SSIM, written out ------------------------------------------------------------------------------------------
def _ssim_written_out(x, y, data_range=2.0, window=7, k1=0.01, k2=0.03):
    """Z. Wang, A. C. Bovik, H. R. Sheikh, E. P. Simoncelli, 'Image quality assessment: from error visibility to
    structural similarity', IEEE TIP 13(4), 2004, eq. (13) with C1 = (K1 L)^2, C2 = (K2 L)^2, computed on every
    window x window square window lying inside the image (uniform weights, sample variances and covariance with
    N - 1) and averaged over the window positions (eq. (17), mean SSIM) -- the window convention of
    scikit-image's defaults that the protocol names (fusion-metrics.md: 7x7 uniform window, sample covariance,
    data_range = 2)."""
    c1, c2 = (k1 * data_range) ** 2, (k2 * data_range) ** 2
    values = []
    for i in range(x.shape[0] - window + 1):
        for j in range(x.shape[1] - window + 1):
            a = x[i:i + window, j:j + window].ravel()
            b = y[i:i + window, j:j + window].ravel()
            mu_a, mu_b = a.mean(), b.mean()
            var_a, var_b = a.var(ddof=1), b.var(ddof=1)
            cov = ((a - mu_a) * (b - mu_b)).sum() / (a.size - 1)
            values.append((2 * mu_a * mu_b + c1) * (2 * cov + c2) / ((mu_a ** 2 + mu_b ** 2 + c1) * (var_a + var_b + c2)))
    return float(np.mean(values))


def test_ssim_equals_wang_et_al_written_out(rng):
    a = rng.integers(0, 256, (12, 15)).astype(np.float64)
    b = np.clip(a + rng.normal(0, 40, a.shape), 0, 255).round()
    f = np.round((a + b) / 2)
    expected = _ssim_written_out(f, a) + _ssim_written_out(f, b)      # a sum over the sources, as the protocol
    assert metrics.ssim(f, [a, b]) == pytest.approx(expected, rel=1e-10)
    # Low-contrast content (flat tissue, background) is where L matters: L = 255 (a plausible mistake) differs there.
    flat = 100 + rng.integers(0, 4, (12, 15)).astype(np.float64)
    noisy = flat + rng.integers(-2, 3, flat.shape)
    expected = _ssim_written_out(noisy, flat) + _ssim_written_out(noisy, noisy)
    assert metrics.ssim(noisy, [flat, noisy]) == pytest.approx(expected, rel=1e-10)
    assert abs(expected - (_ssim_written_out(noisy, flat, 255.0) + 1.0)) > 0.1
    # Identical images: exactly 1 per source.
    assert metrics.ssim(a, [a, a]) == pytest.approx(2.0, abs=1e-12)


# --- reading colour images: OpenCV's luminance and numpy's rounding on ties ---------------------------------------
# The protocol reads an image as np.round(cv2.cvtColor(cv2.imread(p).astype('float32'), cv2.COLOR_BGR2GRAY))
# (CDDFuse utils/Evaluator.py, image_read_cv2). np.round rounds half to even (numpy documentation: "For values
# exactly halfway between rounded decimal values, NumPy rounds to the nearest even value"); OpenCV's own rounding
# (cvRound, used by saturate_cast and convertScaleAbs) is also half to even: convertScaleAbs of
# [0.5, 1.5, 2.5, 3.5, 254.5] gives [0, 2, 2, 4, 254] (observed with opencv-python-headless 4.5.5 and 5.1.0).
# Frozen values: (R, G, B) -> cvtColor's float32 luminance -> rounded, computed with opencv-python-headless 4.5.5
# (numpy 1.26.4) and 5.1.0 (numpy 2.4), identical, on an x86-64 CPU with AVX2/FMA, over all 2^24 colours at once.
# Every one is an exact tie in float32 (k + 0.5); in the first six float64 arithmetic with the decimal constants
# (0.299 R + 0.587 G + 0.114 B) lands just off the tie and would round the other way.
CV2_TIES = [
    ((242, 134, 206), 174.5, 174), ((242, 176, 95), 186.5, 186), ((242, 10, 248), 106.5, 106),   # even: down
    ((245, 7, 124), 91.5, 92), ((81, 199, 162), 159.5, 160), ((219, 173, 162), 185.5, 186),      # odd: up
    ((208, 80, 82), 118.5, 118), ((242, 152, 87), 171.5, 172),
]
# Colours whose exact decimal luminance is a tie (175.5, 168.5, ...) but whose float32 value in OpenCV falls just
# below or above it; OpenCV's vector code evaluates fma(R, 0.299f, fma(B, 0.114f, G * 0.587f)) (that order
# reproduces all 2^24 colours of both versions; the order the library used before, fma(R, 0.299f, fma(G, 0.587f,
# B * 0.114f)), differs on 830 colours, 78 pixels of the 17.8 M of the development set).
CV2_ORDER = [((108, 216, 144), 175), ((105, 199, 178), 169), ((160, 118, 21), 119), ((0, 172, 224), 127)]


def test_protocol_image_rounds_opencv_ties_half_to_even():
    rgb = np.array([[c for c, _, _ in CV2_TIES]], np.uint8)
    np.testing.assert_array_equal(metrics.protocol_image(rgb)[0], [r for _, _, r in CV2_TIES])
    floats = np.array([y for _, y, _ in CV2_TIES])
    np.testing.assert_array_equal(np.round(floats), [r for _, _, r in CV2_TIES])   # ties: half to even
    decimal = np.array([0.299 * r + 0.587 * g + 0.114 * b for (r, g, b), _, _ in CV2_TIES[:6]])
    assert (np.round(decimal) != [r for _, _, r in CV2_TIES[:6]]).all()            # float64 would not match


def test_protocol_image_follows_opencvs_evaluation_order():
    rgb = np.array([[c for c, _ in CV2_ORDER]], np.uint8)
    np.testing.assert_array_equal(metrics.protocol_image(rgb)[0], [r for _, r in CV2_ORDER])


# SHA-256 of np.round(cv2.cvtColor(bgr_float32, cv2.COLOR_BGR2GRAY)).astype(np.uint8) over all 2^24 colours in
# the order of _all_colours (R = 0..255 in turn, each a 256 x 256 block of G rows and B columns), computed with
# opencv-python-headless 5.1.0 (numpy 2.4) on an x86-64 CPU with AVX2/AVX-512/FMA.
CV2_ALL_COLOURS_SHA256 = "b3d4434c569c6ba0d366f9ae652c8a3ee1188ef2df03ef2b9ff4fe27ff8a14ee"


def _all_colours():
    g, b = np.mgrid[:256, :256]
    for red in range(256):
        yield np.stack([np.full_like(g, red), g, b], -1).astype(np.uint8)


def test_protocol_image_equals_opencv_on_all_colours():
    import hashlib

    digest = hashlib.sha256()
    for block in _all_colours():
        y = metrics.protocol_image(block)
        assert y.min() >= 0 and y.max() <= 255 and (y == np.round(y)).all()
        digest.update(y.astype(np.uint8).tobytes())
    assert digest.hexdigest() == CV2_ALL_COLOURS_SHA256


def test_protocol_fused_rounds_half_to_even_after_clipping():
    fused = np.array([[-3.0, 0.5, 1.5, 2.5, 127.5, 128.5, 254.5, 255.5, 300.0]])
    np.testing.assert_array_equal(metrics.protocol_fused(fused), [[0, 0, 2, 2, 128, 128, 254, 255, 255]])


# --- frozen values of the reference evaluator ---------------------------------------------------------------------
def _tiny_pair():
    """48 x 48 integer images (VIF's four scales need 41 pixels): a textured ramp and textured blocks."""
    i, j = np.mgrid[:48, :48]
    a = ((5 * i + 3 * j + (i * j) % 17) % 200 + 20).astype(np.float64)
    b = (60 + 120 * ((i // 8 + j // 12) % 2) + (7 * i * j) % 23).astype(np.float64)
    return a, b


# Printed by utils/Evaluator.py of the CDDFuse code (Z. Zhao et al., CVPR 2023; github.com/Zhaozixiang1228/
# MMIF-CDDFuse, commit 40de058), run on _tiny_pair() as float32 arrays (what its image_read_cv2 returns), with
# numpy 1.26.4, scipy 1.17.1, scikit-learn 1.9.1, scikit-image 0.26.0, opencv-python-headless 4.5.5; SSIM with
# data_range=2, which scikit-image 0.19.2 (the version its requirements.txt pins) used by default for float
# images (newer versions require it). Fused images: (A + B) // 2 and max(A, B).
EVALUATOR = {
    "average": {"EN": 7.204168537366874, "SD": 40.20748519897461, "SF": 33.314239501953125,
                "AG": 10.941558837890625, "MI": 4.2425908946051685, "CC": 0.6914438605308533,
                "PSNR": 13.742906856176003, "SCD": 1.4426875114440918, "VIF": 0.2669751165923492,
                "Qabf": 0.4215904772281647, "SSIM": 0.9548560862603733},
    "max": {"EN": 6.573655916427679, "SD": 47.663570404052734, "SF": 45.75455856323242,
            "AG": 13.590779304504395, "MI": 5.794835796585643, "CC": 0.5961666107177734,
            "PSNR": 11.264446778184965, "SCD": 1.276639461517334, "VIF": 0.24364736451505326,
            "Qabf": 0.5494410991668701, "SSIM": 0.9428610005837685},
}


@pytest.mark.parametrize("fusion", sorted(EVALUATOR))
def test_metrics_equal_the_reference_evaluators_frozen_values(fusion):
    a, b = _tiny_pair()
    fused = (a + b) // 2 if fusion == "average" else np.maximum(a, b)
    ours = metrics.evaluate_all(fused, [a, b], metrics=list(EVALUATOR[fusion]))
    for name, value in EVALUATOR[fusion].items():
        # The evaluator works in float32 on these inputs, the library in float64: 1e-6 relative covers that.
        assert ours[name] == pytest.approx(value, rel=1e-6), name


# --- the published baselines on the development set (needs ../shared) ------------------------------------------
# ../shared/docs/fusion-metrics.md, 'Baselines on the dev set' (the published convention), EN / SD / SF / AG / MI /
# SCD / VIF / Qabf / SSIM, mean over the pairs of a set: average (A + B) / 2 and pixel max of the protocol images.
BASELINE_METRICS = ("EN", "SD", "SF", "AG", "MI", "SCD", "VIF", "Qabf", "SSIM")
BASELINES = {
    ("MRI_CT", "average"): "4.449 / 57.32 / 19.57 / 4.76 / 2.609 / 0.994 / 0.454 / 0.372 / 1.309",
    ("MRI_PET", "average"): "3.768 / 49.89 / 15.42 / 4.34 / 2.155 / 1.102 / 0.638 / 0.399 / 1.428",
}


@pytest.mark.skipif(not os.path.isdir(DEV_SET), reason=f"the development set is not at {DEV_SET} (../shared)")
@pytest.mark.parametrize("set_name, fusion", sorted(BASELINES))
def test_published_baselines_on_the_development_set(set_name, fusion):
    from MedFusionLib.evaluation import read_image

    other = set_name.split("_")[1]
    names = sorted(os.listdir(os.path.join(DEV_SET, set_name, "MRI")))
    sums = dict.fromkeys(BASELINE_METRICS, 0.0)
    for name in names:
        mri = metrics.protocol_image(read_image(os.path.join(DEV_SET, set_name, "MRI", name)))
        func = metrics.protocol_image(read_image(os.path.join(DEV_SET, set_name, other, name)))
        fused = metrics.protocol_fused((mri + func) / 2 if fusion == "average" else np.maximum(mri, func))
        for key, value in metrics.evaluate_all(fused, [func, mri], metrics=list(BASELINE_METRICS)).items():
            sums[key] += value
    for key, text in zip(BASELINE_METRICS, BASELINES[(set_name, fusion)].split(" / ")):
        published = float(text)
        half_unit = 0.5 * 10 ** -len(text.split(".")[1])
        ours = sums[key] / len(names)
        # Within the printed precision, or 1e-3 relative (the doc rounded a few values twice; docs/metrics.md).
        assert abs(ours - published) <= half_unit + 1e-12 or abs(ours - published) <= 1e-3 * abs(published), \
            (set_name, fusion, key, ours, published)
