"""Running the learned methods on the registry's ``(N, B, *spatial)`` stacks.

Slices of a batch are pushed through the network in mini-batches of about 2^16 pixels (one 256 x 256
slice) on the CPU and 2^19 (8 such slices) on a GPU, with a progress report (and cancellation check)
per mini-batch. Networks built for two
sources fuse N > 2 inputs sequentially: F = net(...net(net(S1, S2), S3)..., SN).
"""

from __future__ import annotations

from typing import Callable, Optional

import numpy as np
import torch

from .. import rules
from ..progress import Progress
from ..transforms.pyramid import gaussian_pyramid, laplacian_pyramid, max_pyramid_levels, reconstruct_laplacian_pyramid
from .weights import load_model, resolve_device

# Measured on the 2-core CPU (Testing/Benchmarks/benchmark_deep.py, 40 slices of 256 x 256): one slice per
# forward pass gives 27 slices/s for IFCNN and 14 for U2Fusion, 8 slices per pass only 16 and 7 (the
# activations of a large batch fall out of the caches). GPUs want larger batches.
MINIBATCH_PIXELS = {"cpu": 1 << 16, "cuda": 1 << 19}


def minibatch_size(spatial_shape, device: torch.device = torch.device("cpu")) -> int:
    """Slices per forward pass for slices of ``spatial_shape`` on ``device``."""
    budget = MINIBATCH_PIXELS.get(torch.device(device).type, MINIBATCH_PIXELS["cuda"])
    return max(1, budget // int(np.prod(spatial_shape)))


def run_minibatches(stack: np.ndarray, fn: Callable[[torch.Tensor], torch.Tensor], device: torch.device,
                    progress: Optional[Progress], message: str) -> np.ndarray:
    """``fn((b, N, *spatial) tensor) -> (b, 1, *spatial)`` over the B axis of ``stack`` (N, B, *spatial)."""
    n, b = stack.shape[:2]
    step = minibatch_size(stack.shape[2:], device)
    out = np.empty(stack.shape[1:], dtype=np.float32)
    with torch.inference_mode():
        for start in range(0, b, step):
            stop = min(b, start + step)
            if progress is not None:
                progress.report(start / b, f"{message} {start + 1}-{stop} of {b}" if b > 1 else message)
            x = torch.from_numpy(np.ascontiguousarray(stack[:, start:stop])).to(device).transpose(0, 1)
            out[start:stop] = fn(x)[:, 0].float().cpu().numpy()
    if progress is not None:
        progress.report(1.0, message)
    return out


def fold_pairwise(net: Callable[[torch.Tensor], torch.Tensor]) -> Callable[[torch.Tensor], torch.Tensor]:
    """Fuse N sources with a two-source network, in input order."""
    def fn(x: torch.Tensor) -> torch.Tensor:
        fused = x[:, :1]
        for k in range(1, x.shape[1]):
            fused = net(torch.cat([fused, x[:, k:k + 1]], dim=1)).clamp(0.0, 1.0)
        return fused
    return fn


def fuse_with_network(method: str, stack: np.ndarray, device: str = "auto", progress: Optional[Progress] = None,
                      **forward_kwargs) -> np.ndarray:
    """IFCNN (any N natively), PMGI, FusionDN, U2Fusion (two-source nets, folded)."""
    dev = resolve_device(device)
    net = load_model(method, dev)
    if method == "ifcnn":
        fn = lambda x: net(x, **forward_kwargs)  # noqa: E731
    else:
        fn = fold_pairwise(net)
    return np.clip(run_minibatches(stack, fn, dev, progress, f"{method}: slices"), 0.0, 1.0)


# --- CNN weight map (Liu et al. 2017) ---------------------------------------------------------------------
def weight_map(a: np.ndarray, b: np.ndarray, device: str = "auto", progress: Optional[Progress] = None) -> np.ndarray:
    """Per-pixel weight of ``a`` (vs ``b``) from the Siamese CNN of Liu et al. (2017), in [0, 1].

    ``a``, ``b``: (H, W) or (B, H, W) images in [0, 1]; returns the same shape, float32."""
    a = np.asarray(a, dtype=np.float32)
    b = np.asarray(b, dtype=np.float32)
    single = a.ndim == 2
    stack = np.stack([a[None], b[None]] if single else [a, b])
    dev = resolve_device(device)
    net = load_model("cnn_weight_map", dev)
    out = run_minibatches(stack, lambda x: net.weight_map(x[:, :1], x[:, 1:2]), dev, progress, "weight map: slices")
    return out[0] if single else out


def cnn_weight_map_fusion(stack: np.ndarray, levels: int = 0, window: int = 3, threshold: float = 0.6,
                          device: str = "auto", progress: Optional[Progress] = None) -> np.ndarray:
    """Liu et al. (2017): Laplacian pyramids of the sources, Gaussian pyramid of the CNN weight map,
    local-similarity rule per level; N > 2 inputs fused in sequence."""
    spatial_dims = stack.ndim - 2
    levels = levels or max_pyramid_levels(stack.shape[-spatial_dims:])
    fused = stack[0]
    n = stack.shape[0]
    progress = progress or Progress()
    for k in range(1, n):
        part = progress.sub((k - 1) / (n - 1), k / (n - 1))
        other = stack[k]
        w = weight_map(fused, other, device, part.sub(0.0, 0.8))
        bands = laplacian_pyramid(np.stack([fused, other]), levels, spatial_dims)
        weights = gaussian_pyramid(w, levels, spatial_dims)
        merged = [rules.local_similarity(band, window, threshold, weight_map=wl, spatial_dims=spatial_dims)
                  for band, wl in zip(bands, weights)]
        fused = np.clip(reconstruct_laplacian_pyramid(merged, spatial_dims), 0.0, 1.0).astype(np.float32)
        part.report(1.0, "pyramid fusion")
    return fused


# --- stacked autoencoder (Xia et al. 2019) -------------------------------------------------------------------
def _activity(features: torch.Tensor, window: int) -> torch.Tensor:
    """l1 norm over channels, box-averaged over ``window``: (b, N, C, ...) -> (b, N, ...)."""
    import torch.nn.functional as F

    a = features.abs().sum(dim=2)
    if window > 1:
        sd = a.dim() - 2
        pool = F.avg_pool2d if sd == 2 else F.avg_pool3d
        a = pool(a, window, stride=1, padding=window // 2, count_include_pad=False)
    return a


def _choose(features: torch.Tensor, activity: torch.Tensor, consistency: bool, window: int) -> torch.Tensor:
    index = activity.argmax(dim=1)                                   # (b, ...)
    if consistency and window > 1:
        idx = rules.consistency_check(index.cpu().numpy(), features.shape[1], window, activity.dim() - 2)
        index = torch.from_numpy(idx).to(features.device)
    gather = index[:, None, None].expand((features.shape[0], 1) + tuple(features.shape[2:]))
    return torch.gather(features, 1, gather)[:, 0]


def dscnn_fusion(stack: np.ndarray, low_rule: str = "max", window: int = 3, consistency: bool = True,
                 device: str = "auto", progress: Optional[Progress] = None) -> np.ndarray:
    """Decompose every source with the network's fixed first layer and trained units, fuse the
    high-frequency features by choose-max of their local l1 activity (with a consistency check), the
    low-frequency features by ``low_rule`` (``max``: the same choose-max, ``weighted``: activity-weighted
    mean, ``mean``), decode both sub-images and reconstruct with the last layer."""
    dev = resolve_device(device)
    net = load_model("dscnn", dev)

    def fn(x: torch.Tensor) -> torch.Tensor:
        b, n = x.shape[:2]
        low, high = net.split(x.reshape((b * n, 1) + tuple(x.shape[2:])))
        out = {}
        for stream, part in (("low", low), ("high", high)):
            f = net.encode(stream, part)
            f = f.reshape((b, n) + tuple(f.shape[1:]))
            act = _activity(f, window)
            if stream == "high" or low_rule == "max":
                fused = _choose(f, act, consistency, window)
            elif low_rule == "weighted":
                w = act / act.sum(dim=1, keepdim=True).clamp_min(1e-8)
                fused = (f * w[:, :, None]).sum(dim=1)
            else:
                fused = f.mean(dim=1)
            out[stream] = net.decode(stream, fused)
        return net.reconstruct(out["low"], out["high"])

    return np.clip(run_minibatches(stack, fn, dev, progress, "dscnn: slices"), 0.0, 1.0)
