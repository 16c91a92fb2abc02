"""The encoder-decoder fusion networks: a MONAI U-Net (``unet_fusion``) and MCFNet (``mcfnet``).

Both map the two sources, stacked as channels ``(B, 2, *spatial)`` in [0, 1], to the fused image
``(B, 1, *spatial)`` and take ``spatial_dims`` (2 or 3), so a volumetric variant is one constructor
argument away. Like the other end-to-end networks they are bias-free (no convolution biases, no
normalisation layers, linear output clamped at inference; see the comment "end-to-end networks: bias-free"
in :mod:`.networks`): an all-black input gives an all-black output exactly.

Inputs whose sides are not multiples of the networks' total down-sampling factor are mirror-padded to the
next multiple and the output is cropped back (:func:`pad_to_multiple`), so any image size fuses.

References
----------
.. [1] O. Ronneberger, P. Fischer, T. Brox, "U-Net: Convolutional networks for biomedical image
       segmentation", MICCAI 2015, LNCS 9351:234-241.
.. [2] O. Oktay et al., "Attention U-Net: Learning where to look for the pancreas", MIDL 2018
       (arXiv:1804.03999).
.. [3] X. Liang, P. Hu, L. Zhang, J. Sun, G. Yin, "MCFNet: Multi-layer concatenation fusion network for
       medical images fusion", IEEE Sensors Journal 19(16):7107-7119, 2019.
.. [4] S. Mohan, Z. Kadkhodaie, E. P. Simoncelli, C. Fernandez-Granda, "Robust and interpretable blind
       image denoising via bias-free convolutional neural networks", ICLR 2020.
"""

from __future__ import annotations

from typing import Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from .blocks import conv, upsample
from .networks import _Network

_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.InstanceNorm1d, nn.InstanceNorm2d,
          nn.InstanceNorm3d, nn.GroupNorm, nn.LayerNorm)
_CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)


def make_bias_free(module: nn.Module) -> nn.Module:
    """Remove every convolution bias and replace every normalisation layer by the identity, in place.

    MONAI's U-Nets build their 1x1 output convolution and their up-sampling convolutions with biases
    whatever ``bias`` says, and AttentionUnet hard-codes batch normalisation (also in its attention
    gates); this makes them bias-free after construction. Returns ``module``."""
    for name, child in list(module.named_children()):
        if isinstance(child, _NORMS):
            setattr(module, name, nn.Identity())
        else:
            make_bias_free(child)
    if isinstance(module, _CONVS) and module.bias is not None:
        module.bias = None
    return module


def pad_to_multiple(x: torch.Tensor, multiple: int) -> Tuple[torch.Tensor, Tuple[slice, ...]]:
    """Mirror-pad the spatial axes of ``x`` (B, C, *spatial) at their far ends to multiples of
    ``multiple``; returns the padded tensor and the index that crops an output of the padded size back.
    Mirror (reflect) padding where the image is large enough, edge replication otherwise; a black
    background stays black either way."""
    shape = x.shape[2:]
    extra = [(-s) % multiple for s in shape]
    crop = (slice(None), slice(None)) + tuple(slice(0, s) for s in shape)
    if not any(extra):
        return x, crop
    pads = []
    for e in reversed(extra):           # F.pad lists the last axis first
        pads += [0, e]
    mode = "reflect" if all(s > e for s, e in zip(shape, extra)) else "replicate"
    return F.pad(x, pads, mode=mode), crop


# --- U-Net (MONAI) ------------------------------------------------------------------------------------------
class UNetFusionNet(_Network):
    """A U-Net encoder-decoder with skip connections, built from MONAI: the two sources as two input
    channels, one output channel.

    ``attention=False`` (default): :class:`monai.networks.nets.BasicUNet` (max-pool down-sampling, two
    3x3 convolutions + LeakyReLU per level, bilinear up-sampling after a 1x1 convolution -- MONAI's
    ``upsample="nontrainable"``, chosen over transposed convolutions, which leave checkerboard
    artefacts -- and concatenation with the encoder features of the same level), ``features`` its six
    widths (five encoder levels, the last decoder level). ``attention=True``:
    :class:`monai.networks.nets.AttentionUnet` (Oktay et al. 2018: attention gates weight the skip
    features by a map computed from them and the coarser decoder features; strided-convolution
    down-sampling, transposed-convolution up-sampling), with ``features[:5]`` as its channels.

    Both are made bias-free (:func:`make_bias_free`: MONAI's ``bias=False``, ``norm=None`` where it takes
    them, the remaining biases and AttentionUnet's batch normalisations removed after construction).
    Inputs of any size: padded to a multiple of 16 (four 2x down-samplings) and cropped back.
    """

    FACTOR = 16

    def __init__(self, spatial_dims: int = 2, features: Sequence[int] = (16, 16, 32, 64, 96, 16),
                 attention: bool = False):
        super().__init__(spatial_dims=spatial_dims, features=[int(f) for f in features], attention=bool(attention))
        features = [int(f) for f in features]
        if len(features) != 6 or min(features) < 1:
            raise ValueError(f"features must be six positive widths; got {features}")
        if attention:
            from monai.networks.nets import AttentionUnet

            # AttentionUnet's gates use f_int = channels // 2 intermediate channels.
            if min(features[:5]) < 2:
                raise ValueError("attention U-Net widths must be at least 2")
            self.unet = AttentionUnet(spatial_dims, 2, 1, channels=features[:5], strides=(2, 2, 2, 2))
        else:
            from monai.networks.nets import BasicUNet

            self.unet = BasicUNet(spatial_dims, 2, 1, features=features, norm=None, bias=False,
                                  act=("LeakyReLU", {"negative_slope": 0.1, "inplace": True}),
                                  upsample="nontrainable")
        make_bias_free(self.unet)

    def forward(self, sources: torch.Tensor) -> torch.Tensor:
        x, crop = pad_to_multiple(sources, self.FACTOR)
        return self.unet(x)[crop]


# --- MCFNet (Liang et al. 2019) -------------------------------------------------------------------------------
UPSAMPLING = ("bilinear", "deconv")


class MCFNet(_Network):
    """MCFNet (Liang et al. 2019): an end-to-end convolution / up-sampling network with multi-layer
    concatenation.

    Each source goes through its own convolutional encoder (``shared=False``; one encoder for both with
    ``shared=True``): a 3x3 convolution block at full resolution, then per level a stride-2 3x3
    convolution and a 3x3 convolution (``channels`` widths, one per resolution). The decoder starts from
    the two sources' deepest features concatenated; at every finer level it up-samples (bilinear + 3x3
    convolution, or a 4x4 stride-2 transposed convolution with ``upsampling='deconv'``, the paper's
    deconvolution) and concatenates the up-sampled features with BOTH sources' encoder features of that
    level (the multi-layer concatenation), followed by two 3x3 convolutions; a 1x1 linear convolution
    gives the fused image. ReLU activations, bias-free, inputs padded to a multiple of
    2^(levels) and cropped back.
    """

    def __init__(self, spatial_dims: int = 2, channels: Sequence[int] = (16, 32, 48), shared: bool = False,
                 upsampling: str = "bilinear"):
        super().__init__(spatial_dims=spatial_dims, channels=[int(c) for c in channels], shared=bool(shared),
                         upsampling=str(upsampling))
        channels = [int(c) for c in channels]
        if len(channels) < 2 or min(channels) < 1:
            raise ValueError(f"channels must list at least two positive widths; got {channels}")
        if upsampling not in UPSAMPLING:
            raise ValueError(f"upsampling must be one of {UPSAMPLING}; got {upsampling!r}")
        sd = spatial_dims
        self.factor = 2 ** (len(channels) - 1)

        def encoder():
            levels = [nn.Sequential(conv(sd, 1, channels[0], bias=False), conv(sd, channels[0], channels[0], bias=False))]
            for k in range(1, len(channels)):
                levels.append(nn.Sequential(conv(sd, channels[k - 1], channels[k], strides=2, bias=False),
                                            conv(sd, channels[k], channels[k], bias=False)))
            return nn.ModuleList(levels)

        self.encoders = nn.ModuleList([encoder()] if shared else [encoder(), encoder()])
        self.ups = nn.ModuleList()
        self.merges = nn.ModuleList()
        width = 2 * channels[-1]
        for k in range(len(channels) - 2, -1, -1):
            out = channels[k]
            if upsampling == "bilinear":
                self.ups.append(nn.Sequential(upsample(sd), conv(sd, width, out, bias=False)))
            else:
                self.ups.append(_deconv(sd, width, out))
            self.merges.append(nn.Sequential(conv(sd, 3 * out, out, bias=False), conv(sd, out, out, bias=False)))
            width = out
        self.out = conv(sd, width, 1, 1, act=None, bias=False)

    def encode(self, x: torch.Tensor, source: int):
        feats = []
        for level in self.encoders[0 if len(self.encoders) == 1 else source]:
            x = level(x)
            feats.append(x)
        return feats

    def forward(self, sources: torch.Tensor) -> torch.Tensor:
        x, crop = pad_to_multiple(sources, self.factor)
        fa, fb = self.encode(x[:, :1], 0), self.encode(x[:, 1:2], 1)
        y = torch.cat([fa[-1], fb[-1]], dim=1)
        for j, (up, merge) in enumerate(zip(self.ups, self.merges)):
            k = len(fa) - 2 - j
            y = merge(torch.cat([up(y), fa[k], fb[k]], dim=1))
        return self.out(y)[crop]


def _deconv(spatial_dims: int, cin: int, cout: int) -> nn.Module:
    """A 4x4 (x4) stride-2 transposed convolution + ReLU (kernel a multiple of the stride: the overlap is
    even, which avoids the worst checkerboard of a 3x3 stride-2 one), bias-free."""
    kind = nn.ConvTranspose2d if spatial_dims == 2 else nn.ConvTranspose3d
    return nn.Sequential(kind(cin, cout, 4, stride=2, padding=1, bias=False), nn.ReLU())
