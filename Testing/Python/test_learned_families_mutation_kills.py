"""Tests prompted by the survivors of a mutation run over the learned methods' registry layer
(families/_learned.py, learned_*.py; docs/testing.md, 'Mutation testing'): every learned method refuses bad
input in planning, before any image work (a CUDA device without a GPU, missing weights, its own parameter
limits), passes its progress through to the network's batches, and the public ``weight_map`` checks each of
its two inputs by name."""

import numpy as np
import pytest
import torch

import MedFusionLib as mf
from MedFusionLib import FusionInputError, WeightsError
from MedFusionLib.deep.weights import TRAIN_COMMANDS
from MedFusionLib.pipeline import plan

LEARNED = tuple(s.name for s in mf.methods("deep learning"))


@pytest.fixture
def pair(slices):
    return [slices["mri"][3], slices["pet"][3]]


def test_every_learned_method_is_covered():
    assert len(LEARNED) == 12 and {"cnn_weight_map", "dscnn", "fusiongan", "mcfnet"} <= set(LEARNED)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without CUDA; "
                    "test_cuda.py runs the methods on the GPU where there is one")
@pytest.mark.parametrize("method", LEARNED)
def test_cuda_without_a_gpu_is_refused_in_planning(method, pair):
    with pytest.raises(FusionInputError, match="cuda"):
        plan(pair, method, params={"device": "cuda"})
    plan(pair, method, params={"device": "cpu"})          # the same call on the CPU plans


@pytest.mark.parametrize("method", LEARNED)
def test_missing_weights_are_refused_in_planning(method, pair, tmp_path, monkeypatch):
    monkeypatch.setenv("MEDFUSION_WEIGHTS_DIR", str(tmp_path))
    with pytest.raises(WeightsError) as missing:
        plan(pair, method)
    assert TRAIN_COMMANDS[method] in str(missing.value)


@pytest.mark.parametrize("method,params,message", [
    ("dscnn", {"window": 4}, r"'dscnn'.*window"),
    ("cnn_weight_map", {"window": 4}, r"'cnn_weight_map'.*window"),
    ("cnn_weight_map", {"levels": 9}, r"'cnn_weight_map'.*levels"),
])
def test_method_parameter_limits_are_refused_in_planning(method, params, message, pair):
    with pytest.raises(FusionInputError, match=message):
        plan(pair, method, params=params)


def test_cnn_weight_map_size_limit_is_four_samples():
    """Images of 4 x 4 samples plan (the smallest the Siamese CNN and a one-level pyramid take); 3 x 3 do
    not, and the message names the method and the size."""
    small = [np.linspace(0, 1, 16, dtype=np.float32).reshape(4, 4)] * 2
    plan(small, "cnn_weight_map", params={"levels": 1})
    with pytest.raises(FusionInputError, match=r"^method 'cnn_weight_map' needs images of at least 4 x 4"):
        plan([x[:3, :3] for x in small], "cnn_weight_map", params={"levels": 1})


@pytest.mark.parametrize("method", LEARNED)
def test_progress_reaches_the_network_batches(method, slices):
    """Every learned method reports its network's progress ('METHOD: slices', for cnn_weight_map 'weight map:
    slices', in every batch of slices), not only the pipeline's stages: a volume of 4 slices in batches of 1."""
    seen = []
    mf.fuse([slices["mri"][:4], slices["pet"][:4]], method=method, batch_size=1, input_ranges=(0, 1),
            output_range="unit", device="cpu", progress=lambda f, m: seen.append(m))
    network = "weight map: slices" if method == "cnn_weight_map" else f"{method}: slices"
    batches = " ".join(seen).split("fusing slices")[1:]
    assert len(batches) == 4 and all(network in batch for batch in batches), seen


def test_weight_map_checks_each_input_by_name_and_defaults_to_auto(slices, monkeypatch):
    from MedFusionLib.deep import inference
    from MedFusionLib.families.learned_cnn import weight_map

    a, b = slices["mri"][3], slices["pet"][3]
    with pytest.raises(FusionInputError, match=r"^weight_map: b must be in \[0, 1\].*1\.5"):
        weight_map(a, np.where(b > 0.5, 1.5, b).astype(np.float32))
    with pytest.raises(FusionInputError, match=r"^weight_map: a contains NaN"):
        weight_map(np.where(a > 0.5, np.nan, a), b)
    with pytest.raises(FusionInputError, match=r"^weight_map: b must be a real numeric array"):
        weight_map(a, b.astype(complex))
    asked = []
    real = inference.resolve_device
    monkeypatch.setattr(inference, "resolve_device", lambda device: (asked.append(device), real(device))[1])
    w = weight_map(a, b)                                      # the default device
    assert asked == ["auto"] and w.shape == a.shape
    seen = []
    from MedFusionLib.progress import Progress
    weight_map(np.stack([a, b]), np.stack([b, a]), device="cpu", progress=Progress(lambda f, m: seen.append(f)))
    assert asked == ["auto", "cpu"] and seen and seen[-1] == pytest.approx(1.0)


@pytest.mark.parametrize("method,changes", [
    ("dscnn", ({"low_rule": "mean"}, {"window": 5})),
    ("cnn_weight_map", ({"levels": 2}, {"window": 5}, {"threshold": 0.2})),
])
def test_every_method_parameter_reaches_the_network(method, changes, pair):
    """Each parameter of the methods that have more than a device changes the fused image when it leaves
    its default (a parameter dropped between the registry and the network would leave it unchanged)."""
    kw = dict(input_ranges=(0, 1), output_range="unit", device="cpu")
    default = mf.fuse(pair, method=method, **kw)
    for change in changes:
        changed = mf.fuse(pair, method=method, **change, **kw)
        assert np.abs(changed - default).max() > 1e-4, change


def test_weight_map_refuses_two_shapes_by_name(slices):
    from MedFusionLib.families.learned_cnn import weight_map

    a = slices["mri"][3]
    with pytest.raises(FusionInputError, match=r"^weight_map takes two images of one shape.*got \(48, 40\) and \(47, 40\)"):
        weight_map(a, a[:-1])


@pytest.mark.parametrize("method", LEARNED)
def test_the_device_parameter_reaches_the_network(method, slices, monkeypatch):
    """device='cpu' is what the inference resolves, for every learned method (a method that dropped its
    device and let 'auto' decide would run on a GPU where one is present although the CPU was asked for)."""
    from MedFusionLib.deep import inference, weights
    asked = []
    real = weights.resolve_device

    def recording(device):
        asked.append(device)
        return real(device)

    monkeypatch.setattr(inference, "resolve_device", recording)
    mf.fuse([slices["mri"][3], slices["pet"][3]], method=method, input_ranges=(0, 1), output_range="unit",
            device="cpu")
    assert asked and set(asked) == {"cpu"}, asked


def test_dscnn_consistency_check_is_applied(slices):
    """DSCNN's choose-max feature rule with and without the majority-filter consistency check gives
    different images on a textured pair (the check is passed through, not dropped)."""
    kw = dict(input_ranges=(0, 1), output_range="unit", device="cpu")
    pair = [slices["mri"][3], slices["pet"][3]]
    with_check = mf.fuse(pair, method="dscnn", consistency=True, **kw)
    without = mf.fuse(pair, method="dscnn", consistency=False, **kw)
    np.testing.assert_array_equal(with_check, mf.fuse(pair, method="dscnn", **kw))     # True is the default
    assert np.abs(with_check - without).max() > 1e-3
