"""Details of deep/ (inference and networks) that the deep_networks mutation run (docs/testing.md, 'Mutation
testing') showed unpinned: the slice mini-batches and their progress, the CNN weight map's patch averaging at
odd and small sizes, the Otsu threshold and average pooling of the adversarial methods, the tissue map's
background bound and the U-Net padding at a side equal to the padding."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from MedFusionLib.deep import inference
from MedFusionLib.deep import networks_adversarial as A
from MedFusionLib.deep.networks_encoder_decoder import pad_to_multiple
from MedFusionLib.deep.weights import load_model
from MedFusionLib.progress import Progress


def test_minibatch_size_is_the_pixel_budget_of_the_device():
    """About 2^16 pixels (one 256 x 256 slice) a pass on the CPU, 2^19 (eight) on a GPU; at least one slice."""
    cpu, cuda = torch.device("cpu"), torch.device("cuda")       # a device object needs no GPU
    assert inference.minibatch_size((256, 256), cpu) == 1
    assert inference.minibatch_size((64, 64), cpu) == 16
    assert inference.minibatch_size((512, 512), cpu) == 1
    assert inference.minibatch_size((256, 256), cuda) == 8
    assert inference.minibatch_size((256, 256), torch.device("meta")) == 8      # any other device: the GPU's
    assert inference.minibatch_size((64, 64)) == 16                               # default: the CPU


def test_run_minibatches_covers_every_slice_once_with_progress(monkeypatch, rng):
    monkeypatch.setitem(inference.MINIBATCH_PIXELS, "cpu", 2 * 8 * 8)          # two 8 x 8 slices a pass
    stack = rng.random((2, 5, 8, 8)).astype(np.float32)
    seen, reports = [], []

    def fn(x):
        seen.append(tuple(x.shape))
        return x[:, 1:2] * 2 + x[:, :1]
    out = inference.run_minibatches(stack, fn, torch.device("cpu"), Progress(lambda f, m: reports.append((f, m))), "m")
    np.testing.assert_allclose(out, stack[1] * 2 + stack[0], rtol=1e-6)
    assert out.dtype == np.float32 and seen == [(2, 2, 8, 8), (2, 2, 8, 8), (1, 2, 8, 8)]
    assert reports == [(0.0, "m 1-2 of 5"), (0.4, "m 3-4 of 5"), (0.8, "m 5-5 of 5"), (1.0, "m")]
    reports.clear()
    inference.run_minibatches(stack[:, :1], fn, torch.device("cpu"), Progress(lambda f, m: reports.append((f, m))), "m")
    assert reports == [(0.0, "m"), (1.0, "m")]


def _weight_map_written_out(net, a, b):
    """Liu et al.'s weight map: mirror-pad to an even size of at least one patch (edge replication where the
    image is not larger than the padding), score every patch pair at stride 2, give each pixel the mean score
    of the patches that cover it, crop back."""
    patch = net.patch
    h, w = a.shape
    pads = [max(patch, s + s % 2) - s for s in (h, w)]
    before = [p // 2 for p in pads]
    mode = "reflect" if min(h, w) > max(p - p // 2 for p in pads) else "edge"     # the larger side of each pad
    width = [(before[0], pads[0] - before[0]), (before[1], pads[1] - before[1])]
    pa, pb = np.pad(a, width, mode=mode), np.pad(b, width, mode=mode)
    with torch.no_grad():
        logits = net(torch.from_numpy(pa)[None, None], torch.from_numpy(pb)[None, None])
    score = torch.softmax(logits.double(), dim=1)[0, 0].numpy()
    total, count = np.zeros(pa.shape), np.zeros(pa.shape)
    for i, j in np.ndindex(score.shape):
        total[2 * i:2 * i + patch, 2 * j:2 * j + patch] += score[i, j]
        count[2 * i:2 * i + patch, 2 * j:2 * j + patch] += 1
    return (total / count)[before[0]:before[0] + h, before[1]:before[1] + w]


@pytest.mark.parametrize("shape", [(20, 24), (37, 29), (11, 13), (5, 21)])   # even; odd; below one patch;
# (5, 21): rows fewer than their padding, edge-replicated
def test_cnn_weight_map_is_patch_scores_averaged_per_pixel(shape, rng):
    net = load_model("cnn_weight_map", torch.device("cpu"))
    from scipy import ndimage as ndi

    sharp = rng.random(shape)
    blurred = ndi.gaussian_filter(sharp, 2)
    left = np.arange(shape[1]) < shape[1] // 2           # a is the sharper one on the left, b on the right
    a = np.where(left, sharp, blurred).astype(np.float32)
    b = np.where(left, blurred, sharp).astype(np.float32)
    with torch.no_grad():
        got = net.weight_map(torch.from_numpy(a)[None, None], torch.from_numpy(b)[None, None])[0, 0].numpy()
    expected = _weight_map_written_out(net, a, b)
    assert got.shape == shape
    if min(shape) > net.patch:                      # several patches: the weight moves from a to b
        assert expected[:, :3].mean() > 0.9 and expected[:, -3:].mean() < 0.1
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-7)


def _otsu_exhaustive(x, valid, bins):
    """Otsu 1979 by exhaustive search over the valid pixels' bins round(x (bins - 1)): the first class split
    k (class 0 = bins <= k) maximising w0 w1 (mu0 - mu1)^2; the threshold half a bin above bin k."""
    q = np.rint(np.clip(x[valid], 0, 1) * (bins - 1)).astype(int)
    scores = np.full(bins, -1.0)
    for k in range(bins):
        low, high = q[q <= k], q[q > k]
        if len(low) and len(high):
            scores[k] = len(low) * len(high) / q.size ** 2 * (low.mean() - high.mean()) ** 2
    return (int(np.argmax(scores >= scores.max() * (1 - 1e-12))) + 0.5) / (bins - 1)


@pytest.mark.parametrize("bins", [256, 16])
def test_adversarial_otsu_threshold_is_the_exhaustive_search(bins, rng):
    two_classes = np.where(rng.random((12, 12)) < 0.3, 0.2, 0.7) + rng.normal(0, 0.02, (12, 12))
    x = np.stack([rng.random((12, 12)) ** 2, two_classes, rng.random((12, 12))])[:, None]
    valid = np.ones_like(x, dtype=bool)
    valid[2, 0, :, :6] = False                                       # half of the third image left out
    got = A.otsu_threshold(torch.from_numpy(x), torch.from_numpy(valid), bins)
    expected = [_otsu_exhaustive(x[k, 0], valid[k, 0], bins) for k in range(3)]
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-12)
    none = A.otsu_threshold(torch.from_numpy(x[:1]), torch.zeros((1, 1, 12, 12), dtype=torch.bool))
    assert none.tolist() == [1.0]                                    # no valid pixel: nothing above it
    mask = A.dense_structure_mask(torch.from_numpy(x[:1]).float())
    t = A.otsu_threshold(torch.from_numpy(x[:1]).float(), torch.from_numpy(x[:1] > 0.05))
    torch.testing.assert_close(mask, (torch.from_numpy(x[:1]).float() > t.reshape(-1, 1, 1, 1)).float())


def test_ddcgan_downsampling_averages_blocks_and_partial_border_blocks(rng):
    x = rng.random((1, 1, 5, 7))
    expected = np.array([[x[0, 0, i:i + 2, j:j + 2].mean() for j in range(0, 7, 2)] for i in range(0, 5, 2)])
    np.testing.assert_allclose(A.downsample(torch.from_numpy(x), 2)[0, 0].numpy(), expected, rtol=1e-12)
    v = rng.random((1, 1, 3, 4, 5))
    # 3 x 4 x 5 -> 1 x 2 x 2
    expected3 = np.array([[[v[0, 0, :, j:j + 3, k:k + 3].mean() for k in (0, 3)] for j in (0, 3)]])
    np.testing.assert_allclose(A.downsample(torch.from_numpy(v), 3)[0, 0].numpy(), expected3, rtol=1e-12)
    assert torch.equal(A.downsample(torch.from_numpy(x), 1), torch.from_numpy(x))


def test_tissue_map_background_is_at_or_below_the_bound(rng):
    image = np.full((16, 16), 0.25)                   # exactly the bound (0.25 is exact in float32)
    image[4:12, 4:12] = rng.uniform(0.4, 0.9, (8, 8))
    labels = A.tissue_labels(torch.from_numpy(image.astype(np.float32))[None, None], background=0.25)
    assert torch.all(labels[0, 0][image == 0.25] == 0) and torch.all(labels[0, 0][4:12, 4:12] > 0)


def test_unet_padding_replicates_where_a_side_equals_its_padding():
    x = torch.rand(1, 1, 8, 24)                      # padded to 16 x 32: 8 more rows, as many as there are
    padded, crop = pad_to_multiple(x, 16)
    assert padded.shape == (1, 1, 16, 32) and torch.equal(padded[crop], x)
    torch.testing.assert_close(padded, F.pad(x, [0, 8, 0, 8], mode="replicate"))


@pytest.mark.parametrize("slices", [2, 3])     # 2: as many slices as sources, where a wrong broadcast is silent
def test_dscnn_weighted_low_band_fuses_each_slice_alone(slices, phantom3d):
    import MedFusionLib as mf

    unit = dict(input_ranges=(0, 1), output_range="unit", device="cpu", low_rule="weighted")
    mri, pet = (phantom3d[k][8:8 + slices].astype(np.float32) for k in ("mri", "pet"))
    mri, pet = mri / mri.max(), pet / pet.max()
    volume = mf.fuse([mri, pet], method="dscnn", mode="slices", **unit)
    for k in range(slices):
        np.testing.assert_allclose(volume[k], mf.fuse([mri[k], pet[k]], method="dscnn", **unit), atol=1e-6)


def test_cnn_weight_map_progress_over_three_inputs_is_ordered(phantom2d):
    import MedFusionLib as mf

    images = [phantom2d[k].astype(np.float32) / phantom2d[k].max() for k in ("mri", "pet", "ct")]
    reports = []
    mf.fuse(images, method="cnn_weight_map", input_ranges=(0, 1), device="cpu",
            progress=lambda f, m: reports.append((f, m)))
    fractions = [f for f, _ in reports]
    assert fractions == sorted(fractions) and 0 <= fractions[0] and fractions[-1] == 1.0
    pyramid = [f for f, m in reports if m.endswith("pyramid fusion")]
    start = next(f for f, m in reports if m.startswith("weight map"))     # where the method's share begins
    # one pyramid fusion per further input, each closing an equal share of the method's progress
    assert pyramid == pytest.approx([(start + 1) / 2, 1.0])


def test_encoder_decoder_width_bounds_are_inclusive():
    from MedFusionLib.deep.networks_encoder_decoder import MCFNet, UNetFusionNet

    UNetFusionNet(features=(1, 1, 1, 1, 1, 1))                    # positive widths, 1 included
    UNetFusionNet(features=(2, 2, 2, 2, 2, 1), attention=True)    # attention: 2 at least, the sixth unused
    MCFNet(channels=(1, 1))
    with pytest.raises(ValueError, match="at least 2"):
        UNetFusionNet(features=(2, 2, 2, 2, 1, 1), attention=True)
    with pytest.raises(ValueError, match="positive"):
        MCFNet(channels=(4, 0))
    assert MCFNet(channels=(4, 4, 4, 4)).factor == 8              # 2^(levels - 1), not 2 (levels - 1)
