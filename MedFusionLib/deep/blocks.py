"""Small building blocks shared by the fusion networks, on top of MONAI's.

Every block takes ``spatial_dims`` (2 or 3), so a network written with them runs on volumes by changing
one constructor argument. Convolutions are MONAI :class:`~monai.networks.blocks.Convolution` (conv, then
optional norm and activation), dense stacks are MONAI :class:`~monai.networks.blocks.DenseBlock`.
"""

from __future__ import annotations

from typing import Optional, Sequence

import torch
from monai.networks.blocks import Convolution, DenseBlock
from torch import nn

RELU = "RELU"
LRELU = ("LEAKYRELU", {"negative_slope": 0.2})


def conv(spatial_dims: int, in_channels: int, out_channels: int, kernel_size: int = 3, *, act=RELU,
         norm: Optional[str] = None, strides: int = 1, padding: Optional[int] = None, bias: bool = True) -> nn.Module:
    """Convolution (zero 'same' padding unless ``padding`` is given) + optional norm + activation.

    ``act=None`` and ``norm=None`` give a bare convolution (linear output layer)."""
    if act is None and norm is None:
        return Convolution(spatial_dims, in_channels, out_channels, strides=strides, kernel_size=kernel_size,
                           conv_only=True, padding=padding, bias=bias)
    return Convolution(spatial_dims, in_channels, out_channels, strides=strides, kernel_size=kernel_size,
                       act=act, norm=norm, padding=padding, bias=bias)


def dense_block(spatial_dims: int, in_channels: int, growth: int, layers: int, *, act=RELU,
                norm: Optional[str] = None, convs_per_layer: int = 1, bias: bool = True) -> DenseBlock:
    """A MONAI DenseBlock: each layer's output is concatenated to its input (DenseNet connectivity).

    Output channels: ``in_channels + layers * growth``. ``convs_per_layer=2`` makes each layer a pair of
    convolutions (FusionDN's blocks)."""
    modules = []
    channels = in_channels
    for _ in range(layers):
        if convs_per_layer == 1:
            modules.append(conv(spatial_dims, channels, growth, act=act, norm=norm, bias=bias))
        else:
            seq = [conv(spatial_dims, channels, growth, act=act, norm=norm, bias=bias)]
            seq += [conv(spatial_dims, growth, growth, act=act, norm=norm, bias=bias) for _ in range(convs_per_layer - 1)]
            modules.append(nn.Sequential(*seq))
        channels += growth
    return DenseBlock(modules)


def conv_stack(spatial_dims: int, channels: Sequence[int], *, act=RELU, norm: Optional[str] = None,
               last_act=None, kernel_size: int = 3, bias: bool = True) -> nn.Sequential:
    """Convolutions ``channels[0] -> channels[1] -> ... -> channels[-1]``; the last one gets ``last_act``."""
    layers = []
    for k in range(len(channels) - 1):
        last = k == len(channels) - 2
        layers.append(conv(spatial_dims, channels[k], channels[k + 1], kernel_size,
                           act=last_act if last else act, norm=None if last else norm, bias=bias))
    return nn.Sequential(*layers)


def max_pool(spatial_dims: int, size: int = 2) -> nn.Module:
    return nn.MaxPool2d(size) if spatial_dims == 2 else nn.MaxPool3d(size)


def upsample(spatial_dims: int, factor: int = 2) -> nn.Module:
    return nn.Upsample(scale_factor=factor, mode="bilinear" if spatial_dims == 2 else "trilinear",
                       align_corners=False)


def gaussian_kernel1d(sigma: float, dtype=torch.float32) -> torch.Tensor:
    """Normalised 1-D Gaussian taps, radius ceil(3 sigma)."""
    radius = max(1, int(-(-3.0 * sigma // 1)))
    x = torch.arange(-radius, radius + 1, dtype=dtype)
    k = torch.exp(-0.5 * (x / sigma) ** 2)
    return k / k.sum()


def separable_filter(x: torch.Tensor, taps: torch.Tensor, spatial_dims: int) -> torch.Tensor:
    """Filter every channel of ``x`` (B, C, *spatial) with the same 1-D ``taps`` along each spatial axis,
    with mirror (reflect) borders."""
    import torch.nn.functional as F

    radius = taps.numel() // 2
    channels = x.shape[1]
    conv = F.conv2d if spatial_dims == 2 else F.conv3d
    for axis in range(spatial_dims):
        shape = [1] * spatial_dims
        shape[axis] = taps.numel()
        kernel = taps.to(x).reshape(1, 1, *shape).repeat(channels, 1, *([1] * spatial_dims))
        pad = [0, 0] * spatial_dims
        # F.pad lists the last axis first.
        pad[2 * (spatial_dims - 1 - axis)] = pad[2 * (spatial_dims - 1 - axis) + 1] = radius
        mode = "reflect" if min(x.shape[2:]) > radius else "replicate"
        x = conv(torch.nn.functional.pad(x, pad, mode=mode), kernel, groups=channels)
    return x
