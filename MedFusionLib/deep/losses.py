"""Loss pieces shared by the learned methods (torch, 2-D or 3-D, images in [0, 1]).

Tensors are ``(B, 1, *spatial)`` unless said otherwise; per-sample functions return ``(B,)`` so a
method can weight samples (U2Fusion and FusionDN weight each source per image).
"""

from __future__ import annotations

from functools import lru_cache
from typing import Sequence

import torch
import torch.nn.functional as F


# --- SSIM (MONAI) -------------------------------------------------------------------------------------------
@lru_cache(maxsize=4)
def _ssim_loss(spatial_dims: int):
    from monai.losses import SSIMLoss

    return SSIMLoss(spatial_dims=spatial_dims, data_range=1.0, win_size=11, kernel_sigma=1.5, reduction="none")


def ssim(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-sample SSIM (Gaussian 11-tap window, sigma 1.5, data range 1) from MONAI's SSIMLoss; ``(B,)``."""
    loss = _ssim_loss(x.dim() - 2)(x, y)
    return 1.0 - loss.reshape(x.shape[0], -1).mean(dim=1)


def ssim_map(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Local SSIM map (same window, MONAI's ``compute_ssim_and_cs``), 'valid' region: the input shrunk by
    5 pixels on each side."""
    from monai.metrics.regression import compute_ssim_and_cs

    sd = x.dim() - 2
    value, _ = compute_ssim_and_cs(x, y, spatial_dims=sd, kernel_size=[11] * sd, kernel_sigma=[1.5] * sd,
                                   data_range=1.0)
    return value


def crop_valid(x: torch.Tensor, margin: int = 5) -> torch.Tensor:
    """``x`` without ``margin`` pixels on each side of every spatial axis (to match :func:`ssim_map`)."""
    index = (slice(None), slice(None)) + tuple(slice(margin, s - margin) for s in x.shape[2:])
    return x[index]


def box_mean(x: torch.Tensor, window: int = 3) -> torch.Tensor:
    """Mean over a ``window``^d neighbourhood (zero-padded borders counted out)."""
    pool = F.avg_pool2d if x.dim() == 4 else F.avg_pool3d
    return pool(x, window, stride=1, padding=window // 2, count_include_pad=False)


# --- intensity and gradients ---------------------------------------------------------------------------------
def per_sample_mse(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return ((x - y) ** 2).reshape(x.shape[0], -1).mean(dim=1)


def intensity_loss(fused: torch.Tensor, target: torch.Tensor, weight: torch.Tensor = None, p: int = 1) -> torch.Tensor:
    """Mean |F - target|^p, optionally weighted per pixel."""
    diff = (fused - target).abs() ** p
    return (diff * weight).mean() if weight is not None else diff.mean()


def _kernel(name: str, spatial_dims: int, device, dtype) -> torch.Tensor:
    if spatial_dims == 2:
        if name == "sobel":
            kx = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]])
            return torch.stack([kx, kx.t()])[:, None].to(device, dtype)
        if name == "laplacian":      # PMGI's 8-neighbour Laplacian
            k = torch.ones(3, 3)
            k[1, 1] = -8.0
            return k[None, None].to(device, dtype)
        if name == "u2f":            # U2Fusion's / FusionDN's gradient operator
            k = torch.full((3, 3), 1.0 / 8.0)
            k[1, 1] = -1.0
            return k[None, None].to(device, dtype)
    else:
        smooth = torch.tensor([1.0, 2.0, 1.0])
        diff = torch.tensor([-1.0, 0.0, 1.0])
        if name == "sobel":
            ks = []
            for axis in range(3):
                parts = [diff if a == axis else smooth for a in range(3)]
                ks.append(parts[0][:, None, None] * parts[1][None, :, None] * parts[2][None, None, :])
            return torch.stack(ks)[:, None].to(device, dtype)
        k = torch.ones(3, 3, 3)
        if name == "laplacian":
            k[1, 1, 1] = -26.0
            return k[None, None].to(device, dtype)
        if name == "u2f":
            k /= 26.0
            k[1, 1, 1] = -1.0
            return k[None, None].to(device, dtype)
    raise ValueError(name)


def _filter(x: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    sd = x.dim() - 2
    pad = [1] * (2 * sd)
    xp = F.pad(x.reshape((-1, 1) + tuple(x.shape[2:])), pad, mode="replicate")
    out = (F.conv2d if sd == 2 else F.conv3d)(xp, kernel)
    return out.reshape((x.shape[0], x.shape[1] * kernel.shape[0]) + tuple(out.shape[2:]))


def sobel(x: torch.Tensor) -> torch.Tensor:
    """Sobel derivatives, one channel per axis: ``(B, C * spatial_dims, *spatial)``."""
    return _filter(x, _kernel("sobel", x.dim() - 2, x.device, x.dtype))


def gradient_magnitude(x: torch.Tensor) -> torch.Tensor:
    """|d/dx| + |d/dy| (+ |d/dz|) of the Sobel derivatives, per channel."""
    g = sobel(x)
    sd = x.dim() - 2
    return g.reshape((x.shape[0], x.shape[1], sd) + tuple(x.shape[2:])).abs().sum(dim=2)


def laplacian(x: torch.Tensor) -> torch.Tensor:
    """PMGI's gradient operator: the 8-neighbour (26 in 3-D) Laplacian."""
    return _filter(x, _kernel("laplacian", x.dim() - 2, x.device, x.dtype))


def u2f_gradient(x: torch.Tensor) -> torch.Tensor:
    """The gradient operator of U2Fusion and FusionDN: centre -1, neighbours 1/8."""
    return _filter(x, _kernel("u2f", x.dim() - 2, x.device, x.dtype))


def max_gradient_loss(fused: torch.Tensor, sources: torch.Tensor) -> torch.Tensor:
    """L1 distance between |grad F| and the largest |grad S_i| of the sources (``(B, N, ...)``)."""
    target = gradient_magnitude(sources).max(dim=1, keepdim=True).values
    return (gradient_magnitude(fused) - target).abs().mean()


# --- perceptual loss and feature measurements ----------------------------------------------------------------
def perceptual_loss(feature_net, x: torch.Tensor, y: torch.Tensor, layers: Sequence[int] = (1, 2, 3)) -> torch.Tensor:
    """Mean over ``layers`` of the MSE between the feature maps of ``x`` and ``y`` (the IFCNN / FusionDN
    perceptual loss, on our :class:`~.networks.FeatureNet` instead of an ImageNet ResNet/VGG)."""
    fx = feature_net.features(x)
    with torch.no_grad():
        fy = feature_net.features(y)
    return sum(F.mse_loss(fx[k], fy[k]) for k in layers) / len(layers)


def feature_information(feature_net, x: torch.Tensor, local: bool = False) -> torch.Tensor:
    """U2Fusion's information measurement: the mean over feature layers of the mean squared gradient
    (``u2f_gradient``) of each feature map. ``local=False``: one value per image ``(B,)`` (the paper);
    ``local=True``: a per-pixel map ``(B, 1, *spatial)`` (each layer's squared gradient averaged over
    channels, brought back to full resolution)."""
    with torch.no_grad():
        feats = feature_net.features(x)
        values = []
        for f in feats:
            g = u2f_gradient(f) ** 2
            if local:
                m = g.mean(dim=1, keepdim=True)
                if m.shape[2:] != x.shape[2:]:
                    m = F.interpolate(m, size=x.shape[2:], mode="bilinear" if x.dim() == 4 else "trilinear",
                                      align_corners=False)
                values.append(m)
            else:
                values.append(g.reshape(g.shape[0], -1).mean(dim=1))
        return torch.stack(values).mean(dim=0)


def softmax_weights(scores: torch.Tensor, c: float) -> torch.Tensor:
    """``softmax(scores / c)`` over the source axis 0 (U2Fusion's and FusionDN's adaptive weights)."""
    return torch.softmax(scores / c, dim=0)


def entropy_bits(x: torch.Tensor) -> torch.Tensor:
    """Per-image Shannon entropy (bits) of the 256-bin histogram of ``round(255 x)``: ``(B,)``."""
    q = (x.detach().clamp(0, 1) * 255).round().long().reshape(x.shape[0], -1)
    counts = torch.zeros(x.shape[0], 256, device=x.device).scatter_add_(1, q, torch.ones_like(q, dtype=torch.float32))
    p = counts / counts.sum(dim=1, keepdim=True)
    return -(p * torch.log2(p.clamp_min(1e-12))).sum(dim=1)


def sharpness(x: torch.Tensor) -> torch.Tensor:
    """Per-image no-reference sharpness: mean Sobel gradient magnitude in 8-bit units ``(B,)``."""
    return gradient_magnitude(x.detach() * 255.0).reshape(x.shape[0], -1).mean(dim=1) / 8.0


# --- adversarial training (FusionGAN, DDcGAN, MGMDcGAN, TA-cGAN) ----------------------------------------------
def laplacian4(x: torch.Tensor) -> torch.Tensor:
    """The 4-neighbour Laplacian (6-neighbour in 3-D), the gradient operator of the official FusionGAN and
    DDcGAN code (kernel [[0, 1, 0], [1, -4, 1], [0, 1, 0]]); replicate borders."""
    sd = x.dim() - 2
    if sd == 2:
        k = torch.tensor([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]])
    else:
        k = torch.zeros(3, 3, 3)
        k[1, 1, 0] = k[1, 1, 2] = k[1, 0, 1] = k[1, 2, 1] = k[0, 1, 1] = k[2, 1, 1] = 1.0
        k[1, 1, 1] = -6.0
    return _filter(x, k[None, None].to(x.device, x.dtype))


def least_squares_gan_loss(scores: torch.Tensor, target) -> torch.Tensor:
    """Least-squares GAN loss (Mao et al., ICCV 2017) as FusionGAN uses it: mean (D(x) - target)^2;
    ``target`` a number or a tensor of per-sample (soft) labels."""
    target = torch.as_tensor(target, dtype=scores.dtype, device=scores.device)
    return ((scores - target) ** 2).mean()


def cross_entropy_gan_loss(logits: torch.Tensor, real: bool) -> torch.Tensor:
    """The original GAN's cross-entropy on discriminator logits: -log D(x) for ``real``, -log(1 - D(x))
    otherwise (the generator's non-saturating loss is this with ``real=True`` on its fakes)."""
    target = torch.ones_like(logits) if real else torch.zeros_like(logits)
    return F.binary_cross_entropy_with_logits(logits, target)
