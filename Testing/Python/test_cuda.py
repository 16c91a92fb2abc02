"""The CUDA path: every method with a ``device`` parameter fuses on the GPU as on the CPU, ``device='auto'``
picks the GPU, and a recipe trains on it.

These tests run only where PyTorch sees a CUDA GPU; elsewhere they are skipped with the reason shown by
``pytest -ra`` (never counted as passing). Run them alone with ``pytest -m cuda -ra`` (docs/testing.md)."""

import numpy as np
import pytest
import torch

import MedFusionLib as mf

pytestmark = [pytest.mark.cuda,
              pytest.mark.skipif(not torch.cuda.is_available(),
                                 reason="no CUDA GPU: torch.cuda.is_available() is False (run with -m cuda on a "
                                        "machine with a GPU)")]

# Every registered method that takes a device (the learned methods, nsst_similarity's feature network, CSR's
# solver), read from the registry so that a new one is covered without editing this list.
DEVICE_METHODS = sorted(s.name for s in mf.methods() if any(p.name == "device" for p in s.params))
FAST = {"csr": {"max_iter": 20}, "nsst_similarity": {"directions": (4, 8)}}      # keep the CPU half short


@pytest.fixture
def exact_float32():
    """No TF32 in convolutions or matrix products while comparing with the CPU (PyTorch allows TF32 in cuDNN
    convolutions by default, which changes results at 1e-3)."""
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    yield
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


@pytest.fixture(scope="module")
def pair(slices):
    """A 64 x 64 MRI/PET pair in [0, 1] (the phantom slices, padded)."""
    mri = np.pad(slices["mri"][3], ((8, 8), (12, 12)))
    pet = np.pad(slices["pet"][3], ((8, 8), (12, 12)))
    return mri.astype(np.float32), pet.astype(np.float32)


@pytest.mark.parametrize("method", DEVICE_METHODS)
def test_method_on_cuda_matches_cpu(method, pair, exact_float32):
    unit = dict(input_ranges=(0, 1), output_range="unit", **FAST.get(method, {}))
    cpu = mf.fuse(list(pair), method=method, device="cpu", **unit)
    gpu = mf.fuse(list(pair), method=method, device="cuda", **unit)
    assert gpu.shape == cpu.shape == (64, 64) and np.isfinite(gpu).all()
    diff = np.abs(gpu - cpu)
    # Float32 on both: the same up to summation order, except where a decision (a choose-max, a threshold)
    # falls on a near-tie; such flips stay rare.
    assert diff.mean() < 1e-4, (method, float(diff.mean()))
    assert (diff > 1e-3).mean() < 0.005, (method, float((diff > 1e-3).mean()))


def test_auto_device_is_the_gpu():
    from MedFusionLib.deep.weights import resolve_device

    assert resolve_device("auto").type == "cuda" and resolve_device("cpu").type == "cpu"


def test_a_recipe_trains_on_the_gpu(tmp_path, grey_pair_folder):
    from MedFusionLib.deep.recipes import TrainConfig, train
    from MedFusionLib.deep.weights import read_weights

    out = str(tmp_path / "pmgi.pt")
    meta = train(TrainConfig(method="pmgi", out=out, data=[grey_pair_folder], steps=2, batch_size=2, patch=32,
                             phantoms=0, natural=False, device="cuda", show_progress=False))
    assert meta["device"].startswith("cuda") and all(np.isfinite(v) for v in meta["final_losses"].values())
    payload = read_weights(out, "pmgi")              # saved on the CPU side, loadable without a GPU
    assert all(t.device.type == "cpu" for t in payload["state_dict"].values())
