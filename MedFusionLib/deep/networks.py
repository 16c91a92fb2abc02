"""The networks of the learned fusion methods, scaled for CPU inference.

Every network takes ``spatial_dims`` (2 or 3) and keeps its constructor arguments in ``self.arch`` so that
a weight file can rebuild it (:mod:`MedFusionLib.deep.weights`). Fusion networks take the sources as one
tensor ``(B, N, *spatial)`` in [0, 1] and return ``(B, 1, *spatial)``.

Channel widths are smaller than in the papers (which ran on GPUs): every method must fuse a 256 x 256
pair in well under a second on a 2-core CPU, and train here in minutes. docs/models.md lists, per
network, the published widths beside ours.
"""

from __future__ import annotations

from typing import Dict, List, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .blocks import (LRELU, RELU, conv, conv_stack, dense_block, gaussian_kernel1d, max_pool,
                     separable_filter, upsample)


#: Every network class by name (filled by :class:`_Network` subclasses as they are defined), so that a
#: weight file naming its network can rebuild it.
NETWORKS: Dict[str, type] = {}


class _Network(nn.Module):
    """Base class: remembers the constructor arguments (``arch``) for the weight file; every subclass is
    registered in :data:`NETWORKS` under its class name."""

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if not cls.__name__.startswith("_"):
            if cls.__name__ in NETWORKS and NETWORKS[cls.__name__] is not cls:
                raise TypeError(f"two networks named {cls.__name__}")
            NETWORKS[cls.__name__] = cls

    def __init__(self, **arch):
        super().__init__()
        self.arch: Dict[str, object] = dict(arch)
        self.spatial_dims = int(arch.get("spatial_dims", 2))


# --- feature network (perceptual loss, U2Fusion's information measurement, IFCNN's first layer) ---------
class FeatureNet(_Network):
    """A small convolutional encoder trained here as a denoising autoencoder on natural and medical
    patches; it stands in for the ImageNet VGG16/ResNet101 feature extractors of the papers (no
    downloaded weights exist on our machines).

    Layout: a 7x7 linear stem (as ResNet's conv1, which IFCNN borrows), then three stages at full, 1/2
    and 1/4 resolution. :meth:`features` returns the four activations ``[relu(stem), s1, s2, s3]``.
    The decoder is used only to train the encoder.
    """

    def __init__(self, spatial_dims: int = 2, channels: Sequence[int] = (32, 48, 64)):
        super().__init__(spatial_dims=spatial_dims, channels=list(channels))
        c0, c1, c2 = channels
        sd = spatial_dims
        self.stem = conv(sd, 1, c0, 7, act=None)
        self.stage1 = conv(sd, c0, c0)
        self.stage2 = nn.Sequential(conv(sd, c0, c1, strides=2), conv(sd, c1, c1))
        self.stage3 = nn.Sequential(conv(sd, c1, c2, strides=2), conv(sd, c2, c2))
        self.decoder = nn.Sequential(upsample(sd), conv(sd, c2, c1), upsample(sd), conv(sd, c1, c0),
                                     conv(sd, c0, 1, act=None))

    def features(self, x: torch.Tensor) -> List[torch.Tensor]:
        s0 = F.relu(self.stem(x - 0.5))
        s1 = self.stage1(s0)
        s2 = self.stage2(s1)
        s3 = self.stage3(s2)
        return [s0, s1, s2, s3]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.features(x)[-1]) + 0.5


# --- 1. CNN weight map (Liu et al. 2017) ------------------------------------------------------------------
class SiameseWeightNet(_Network):
    """Liu et al.'s Siamese network: two weight-sharing branches (3 convolutions, one 2x2 max-pool),
    their features concatenated, a fully connected layer over the ``patch/2`` feature window (written as
    a valid convolution, so the net runs fully convolutionally) and a 2-way output: is patch A the
    clearer one? Liu et al. use 64/128/256 channels and a 256-unit FC layer; we use ``channels``/``hidden``.
    """

    def __init__(self, spatial_dims: int = 2, channels: Sequence[int] = (16, 32, 32), hidden: int = 32,
                 patch: int = 16):
        super().__init__(spatial_dims=spatial_dims, channels=list(channels), hidden=hidden, patch=patch)
        c0, c1, c2 = channels
        sd = spatial_dims
        self.patch = patch
        self.branch = nn.Sequential(conv(sd, 1, c0), conv(sd, c0, c1), max_pool(sd), conv(sd, c1, c2))
        self.head = nn.Sequential(conv(sd, 2 * c2, hidden, patch // 2, padding=0), conv(sd, hidden, 2, 1, act=None))

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """Logits ``(B, 2, ...)``; on ``patch``-sized inputs one score per pair, on larger inputs a score
        map with stride 2, entry (i, j) scoring the patch pair at (2i, 2j)."""
        return self.head(torch.cat([self.branch(a - 0.5), self.branch(b - 0.5)], dim=1))

    def weight_map(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """Weight of ``a`` per pixel (B, 1, *spatial) in [0, 1]: each patch's score P(A clearer) is spread
        over its ``patch`` x ``patch`` pixels and overlapping patches are averaged (Liu et al. 2017)."""
        sd = self.spatial_dims
        shape = a.shape[2:]
        # Pad (mirror) to an even size of at least one patch, so the stride-2 score map tiles the image.
        pads = []
        for s in reversed(shape):
            total = max(self.patch, s + (s % 2)) - s
            pads += [total // 2, total - total // 2]
        if any(pads):
            mode = "reflect" if min(shape) > max(pads) else "replicate"
            a, b = F.pad(a, pads, mode=mode), F.pad(b, pads, mode=mode)
        score = torch.softmax(self.forward(a, b), dim=1)[:, :1]
        ones = torch.ones((1, 1) + (self.patch,) * sd, dtype=score.dtype, device=score.device)
        transpose = F.conv_transpose2d if sd == 2 else F.conv_transpose3d
        summed = transpose(score, ones, stride=2)
        counts = transpose(torch.ones_like(score[:1]), ones, stride=2)
        weight = summed / counts
        # Crop back to the input (undo the padding).
        index = [slice(None), slice(None)]
        for k, s in enumerate(shape):
            before = pads[2 * (sd - 1 - k)]
            index.append(slice(before, before + s))
        return weight[tuple(index)]


# --- NSST similarity features (Hermessi, Mourali, Zagrouba 2018) ------------------------------------------
class ShearletSiameseNet(_Network):
    """One branch of Hermessi et al.'s Siamese fully convolutional network: it maps a shearlet band (one
    channel, scaled to unit standard deviation) to ``features`` maps at full resolution. Trained by
    similarity learning: the normalised cross-correlation of the two branches' features, on co-registered
    band patches of two modalities, must peak where the patches correspond (logistic loss, as SiamFC).
    Hermessi et al. start from a network pre-trained on natural images (SiamFC's, 5 layers up to 384
    channels); ours is 3 layers of ``channels`` trained here in two phases, natural then medical.
    """

    def __init__(self, spatial_dims: int = 2, channels: Sequence[int] = (16, 16), features: int = 8):
        super().__init__(spatial_dims=spatial_dims, channels=list(channels), features=features)
        c0, c1 = channels
        sd = spatial_dims
        self.body = nn.Sequential(conv(sd, 1, c0), conv(sd, c0, c1), conv(sd, c1, features, act=None))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)

    @staticmethod
    def unit_std(maps: np.ndarray) -> np.ndarray:
        """The network's input convention, for training and inference alike: every band map (the last
        two axes) scaled to unit standard deviation (float32)."""
        maps = np.asarray(maps, dtype=np.float32)
        return maps / (maps.std(axis=(-2, -1), keepdims=True) + 1e-6)


# --- 2. stacked convolutional autoencoder (Xia, Yin, Wang 2019) --------------------------------------------
class StackedAutoencoderNet(_Network):
    """DSCNN-style network: a fixed first layer splits the image into a low-frequency (Gaussian) and a
    high-frequency (image minus Gaussian: an unsharp-mask high-pass standing in for the paper's Laplacian
    filter, so that low + high is exactly the image) sub-image; each goes through its own stack of
    convolutional units, each unit trained greedily as an autoencoder and then stacked; the unit decoders
    map (fused) features back to the sub-images and a last layer reconstructs the image from the two.
    """

    STREAMS = ("low", "high")

    def __init__(self, spatial_dims: int = 2, channels: Sequence[int] = (16, 32), sigma: float = 2.0):
        super().__init__(spatial_dims=spatial_dims, channels=list(channels), sigma=float(sigma))
        sd = spatial_dims
        widths = [1] + list(channels)
        self.register_buffer("taps", gaussian_kernel1d(sigma), persistent=False)
        self.encoders = nn.ModuleDict()
        self.decoders = nn.ModuleDict()
        for stream in self.STREAMS:
            self.encoders[stream] = nn.ModuleList(conv(sd, widths[k], widths[k + 1]) for k in range(len(channels)))
            # decoder unit k maps widths[k+1] back to widths[k]; the one back to the sub-image is linear
            self.decoders[stream] = nn.ModuleList(
                conv(sd, widths[k + 1], widths[k], act=None if k == 0 else RELU) for k in range(len(channels)))
        self.last = conv(sd, 2, 1, 3, act=None)
        with torch.no_grad():           # start as the exact inverse of the split: image = low + high
            self.last.conv.weight.zero_()
            centre = (0, slice(None)) + (1,) * sd
            self.last.conv.weight[centre] = 1.0
            self.last.conv.bias.zero_()

    @property
    def depth(self) -> int:
        return len(self.arch["channels"])

    def split(self, x: torch.Tensor):
        low = separable_filter(x, self.taps, self.spatial_dims)
        return low, x - low

    def encode(self, stream: str, x: torch.Tensor, depth: int = None) -> torch.Tensor:
        for unit in self.encoders[stream][: self.depth if depth is None else depth]:
            x = unit(x)
        return x

    def decode(self, stream: str, f: torch.Tensor, depth: int = None) -> torch.Tensor:
        for unit in reversed(self.decoders[stream][: self.depth if depth is None else depth]):
            f = unit(f)
        return f

    def reconstruct(self, low: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
        return self.last(torch.cat([low, high], dim=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        low, high = self.split(x)
        return self.reconstruct(self.decode("low", self.encode("low", low)),
                                self.decode("high", self.encode("high", high)))


# --- end-to-end networks: bias-free ------------------------------------------------------------------------
# Medical images have an exactly black background, and the published metric protocol computes SSIM with
# data_range=2 on 0..255 images, so a single grey level where the sources are 0 scores as dissimilar over
# half the image. A network with biases or batch normalisation (and a (tanh + 1) / 2 output, which
# cannot reach 0) leaves such an offset. The end-to-end networks below are therefore bias-free (no conv
# biases, no batch normalisation, a linear output clamped to [0, 1] at inference): zero input gives zero
# output exactly, and the network is scale-equivariant (Mohan et al., "Robust and interpretable blind
# image denoising via bias-free convolutional neural networks", ICLR 2020). See docs/models.md.

# --- 3. IFCNN (Zhang et al. 2020) ------------------------------------------------------------------------
FUSE_RULES = ("max", "mean", "sum")


def fuse_features(features: torch.Tensor, rule: str) -> torch.Tensor:
    """Element-wise fusion over the source axis 1 of ``(B, N, C, ...)`` features."""
    if rule == "max":
        return features.max(dim=1).values
    if rule == "mean":
        return features.mean(dim=1)
    if rule == "sum":
        return features.sum(dim=1)
    raise ValueError(f"unknown feature fusion rule {rule!r}; rules are {FUSE_RULES}")


class IFCNNNet(_Network):
    """IFCNN: a fixed 7x7 first layer (ResNet101's conv1 in the paper; here the filters of our
    FeatureNet's stem), a 3x3 conv + ReLU feature layer applied to every source with shared weights,
    element-wise max / mean / sum fusion over any number of sources, a 3x3 conv + ReLU and a 1x1 output
    layer. The paper uses 64 channels and batch normalisation; we use ``channels`` and no BN or biases
    (see above).
    """

    def __init__(self, spatial_dims: int = 2, stem_channels: int = 32, channels: int = 32, rule: str = "max"):
        super().__init__(spatial_dims=spatial_dims, stem_channels=stem_channels, channels=channels, rule=rule)
        sd = spatial_dims
        self.stem = conv(sd, 1, stem_channels, 7, act=None, bias=False)
        self.conv2 = conv(sd, stem_channels, channels, bias=False)
        self.conv3 = conv(sd, channels, channels, bias=False)
        self.conv4 = conv(sd, channels, 1, 1, act=None, bias=False)
        self.stem.requires_grad_(False)

    def extract(self, sources: torch.Tensor) -> torch.Tensor:
        b, n = sources.shape[:2]
        x = sources.reshape((b * n, 1) + tuple(sources.shape[2:]))
        f = self.conv2(self.stem(x))
        return f.reshape((b, n) + tuple(f.shape[1:]))

    def forward(self, sources: torch.Tensor, rule: str = None) -> torch.Tensor:
        fused = fuse_features(self.extract(sources), rule or self.arch["rule"])
        return self.conv4(self.conv3(fused))


# --- 4. PMGI (Zhang et al. 2020) -------------------------------------------------------------------------
class PMGINet(_Network):
    """PMGI: a gradient path fed (A, A, B) and an intensity path fed (A, B, B), each of four dense
    convolutional layers (5x5 then 3x3, LeakyReLU), with two pathwise transfer blocks (1x1 convolutions
    over the concatenated paths) exchanging information between them; all layers of both paths are
    concatenated and a 1x1 convolution gives the fused image. Widths as in the paper (16); bias-free
    without the paper's batch normalisation, inputs in [0, 1] rather than [-1, 1], linear output (see
    above).
    """

    def __init__(self, spatial_dims: int = 2, channels: int = 16):
        super().__init__(spatial_dims=spatial_dims, channels=channels)
        sd, c = spatial_dims, channels
        lrelu = LRELU

        def path():
            return nn.ModuleList([conv(sd, 3, c, 5, act=lrelu, bias=False), conv(sd, c, c, act=lrelu, bias=False),
                                  conv(sd, 3 * c, c, act=lrelu, bias=False), conv(sd, 4 * c, c, act=lrelu, bias=False)])

        self.grad_path = path()
        self.int_path = path()
        self.transfer = nn.ModuleList(conv(sd, 2 * c, c, 1, act=lrelu, bias=False) for _ in range(4))
        self.out = conv(sd, 8 * c, 1, 1, act=None, bias=False)

    def forward(self, sources: torch.Tensor) -> torch.Tensor:
        a, b = sources[:, :1], sources[:, 1:2]
        g, i = self.grad_path, self.int_path
        g1 = g[0](torch.cat([a, a, b], 1))
        i1 = i[0](torch.cat([a, b, b], 1))
        g2, i2 = g[1](g1), i[1](i1)
        t = torch.cat([g2, i2], 1)
        g3 = g[2](torch.cat([g1, g2, self.transfer[0](t)], 1))
        i3 = i[2](torch.cat([i1, i2, self.transfer[1](t)], 1))
        t = torch.cat([g3, i3], 1)
        g4 = g[3](torch.cat([g1, g2, g3, self.transfer[2](t)], 1))
        i4 = i[3](torch.cat([i1, i2, i3, self.transfer[3](t)], 1))
        return self.out(torch.cat([g1, g2, g3, g4, i1, i2, i3, i4], 1))


# --- 5. FusionDN (Xu et al. 2020) ------------------------------------------------------------------------
class FusionDNNet(_Network):
    """FusionDN's generator: the two sources concatenated, a 3x3 conv + ReLU, four densely connected
    blocks of two 3x3 conv + ReLU layers, and a four-layer decoder. The paper uses 48 channels per block,
    a 240-128-64 decoder, batch normalisation and a (tanh + 1) / 2 output; we use ``channels`` and
    ``decoder``, bias-free without BN, linear output (see above).
    """

    def __init__(self, spatial_dims: int = 2, channels: int = 16, blocks: int = 4, decoder: Sequence[int] = (64, 32, 16)):
        super().__init__(spatial_dims=spatial_dims, channels=channels, blocks=blocks, decoder=list(decoder))
        sd, c = spatial_dims, channels
        self.encoder = nn.Sequential(conv(sd, 2, c, bias=False),
                                     dense_block(sd, c, c, blocks, convs_per_layer=2, bias=False))
        self.decoder = conv_stack(sd, [c * (blocks + 1)] + list(decoder) + [1], bias=False)

    def forward(self, sources: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(sources))


# --- 6. U2Fusion (Xu et al. 2020) ------------------------------------------------------------------------
class U2FusionNet(_Network):
    """U2Fusion's generator: the two sources concatenated, a 3x3 conv, a dense block of five 3x3 convs
    (LeakyReLU 0.2, DenseNet connectivity), and a four-layer decoder. The paper uses 44 channels per
    layer, a 128-64-32 decoder and a (tanh + 1) / 2 output; we use ``channels`` and ``decoder``,
    bias-free, linear output (see above).
    """

    def __init__(self, spatial_dims: int = 2, channels: int = 16, layers: int = 5, decoder: Sequence[int] = (64, 32, 16)):
        super().__init__(spatial_dims=spatial_dims, channels=channels, layers=layers, decoder=list(decoder))
        sd, c = spatial_dims, channels
        self.encoder = nn.Sequential(conv(sd, 2, c, act=LRELU, bias=False),
                                     dense_block(sd, c, c, layers, act=LRELU, bias=False))
        self.decoder = conv_stack(sd, [c * (layers + 1)] + list(decoder) + [1], act=LRELU, bias=False)

    def forward(self, sources: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(sources))

