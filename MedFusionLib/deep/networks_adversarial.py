"""Generators and discriminators of the adversarial fusion methods: FusionGAN, DDcGAN, MGMDcGAN and the
tissue-aware cGAN (TA-cGAN).

Every generator takes the two registered sources as one tensor ``(B, 2, *spatial)`` in [0, 1], the
anatomical reference (MRI) first and the functional / other image (PET, SPECT, CT) second, and returns the
fused image ``(B, 1, *spatial)``. Generators are bias-free with a linear output (clamped to [0, 1] by the
inference code), for the reason given at "end-to-end networks: bias-free" in :mod:`.networks`: a zero
(black) background must fuse to exactly zero. Discriminators only shape training and are not shipped, so
they keep their biases.

Channel widths are far below the papers' (FusionGAN's generator has 256-128-64-32 channels, DDcGAN's
48-channel dense blocks and a 240-128-64-32 decoder) so that a 256 x 256 pair fuses in a few hundredths
of a second on a 2-core CPU; docs/models.md lists the published widths beside ours.

References
----------
.. [1] J. Ma, W. Yu, P. Liang, C. Li, J. Jiang, "FusionGAN: A generative adversarial network for infrared
       and visible image fusion", Information Fusion 48:11-26, 2019.
.. [2] J. Ma, H. Xu, J. Jiang, X. Mei, X.-P. Zhang, "DDcGAN: A dual-discriminator conditional generative
       adversarial network for multi-resolution image fusion", IEEE TIP 29:4980-4995, 2020.
.. [3] Z. Le, J. Huang, F. Fan, X. Tian, J. Ma, "A generative adversarial network for medical image
       fusion", ICIP 2020, pp. 370-374.
.. [4] J. Kang, W. Lu, W. Zhang, "Fusion of brain PET and MRI images using tissue-aware conditional
       generative adversarial network with joint loss", IEEE Access 8:6368-6378, 2020.
"""

from __future__ import annotations

from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import FusionInputError
from .blocks import LRELU, conv, conv_stack, dense_block
from .networks import _Network

#: Tissue classes of :func:`tissue_labels` (label values 0..3), in order of mean MRI intensity.
TISSUE_CLASSES = ("background", "dark", "mid", "bright")


# --- shared discriminator -------------------------------------------------------------------------------
class PatchDiscriminator(_Network):
    """The discriminator shared by the four GANs: ``len(channels)`` 3x3 stride-2 convolutions with
    LeakyReLU(0.2), global average pooling and a linear score per sample ``(B,)``.

    ``in_channels`` > 1 makes it conditional (the image to judge stacked with its condition, e.g. a
    tissue label map). FusionGAN's discriminator is four 3x3 stride-2 layers of 32-256 channels with batch
    normalisation and a linear layer; DDcGAN's is three; ours is ``channels`` wide, without
    normalisation. Inputs are centred (x - 0.5) inside.
    """

    def __init__(self, spatial_dims: int = 2, in_channels: int = 1, channels: Sequence[int] = (16, 32, 64)):
        super().__init__(spatial_dims=spatial_dims, in_channels=in_channels, channels=list(channels))
        widths = [in_channels] + list(channels)
        self.body = nn.Sequential(*[conv(spatial_dims, widths[k], widths[k + 1], 3, act=LRELU, strides=2)
                                    for k in range(len(channels))])
        self.score = nn.Linear(widths[-1], 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.body(x - 0.5)
        return self.score(f.flatten(2).mean(dim=2))[:, 0]


# --- 1. FusionGAN (Ma et al. 2019) -------------------------------------------------------------------------
class FusionGANGenerator(_Network):
    """FusionGAN's generator: the two sources concatenated, five convolutions of kernel 5, 5, 3, 3, 1
    (LeakyReLU 0.2 between them) and a linear single-channel output. The paper uses 256-128-64-32
    channels, batch normalisation and a tanh output; we use ``channels``, bias-free without BN (see the
    module docstring)."""

    def __init__(self, spatial_dims: int = 2, channels: Sequence[int] = (32, 32, 16, 16), in_channels: int = 2):
        super().__init__(spatial_dims=spatial_dims, channels=list(channels), in_channels=in_channels)
        if len(channels) != 4:
            raise ValueError("FusionGANGenerator has four hidden layers (channels of length 4)")
        sd = spatial_dims
        widths = [in_channels] + list(channels)
        kernels = (5, 5, 3, 3)
        layers = [conv(sd, widths[k], widths[k + 1], kernels[k], act=LRELU, bias=False) for k in range(4)]
        layers.append(conv(sd, widths[-1], 1, 1, act=None, bias=False))
        self.body = nn.Sequential(*layers)

    def forward(self, sources: torch.Tensor) -> torch.Tensor:
        return self.body(sources)


# --- 2. DDcGAN (Ma et al. 2020) ------------------------------------------------------------------------------
def downsample(x: torch.Tensor, scale: int) -> torch.Tensor:
    """DDcGAN's psi: average pooling by ``scale`` (partial border windows averaged over their pixels), so a
    side s becomes ceil(s / scale)."""
    if scale == 1:
        return x
    pool = F.avg_pool2d if x.dim() == 4 else F.avg_pool3d
    return pool(x, scale, stride=scale, ceil_mode=True)


class DDcGANGenerator(_Network):
    """DDcGAN's generator: an encoder of a 3x3 convolution and a dense block (DenseNet connectivity,
    ``layers`` 3x3 convolutions of ``channels``), and a decoder of 3x3 convolutions down to one linear
    channel. The paper uses 48-channel dense layers, a 240-128-64-32-1 decoder, batch normalisation and a
    tanh output; we use ``channels`` / ``decoder``, bias-free without BN.

    ``scale`` > 1 is the paper's multi-resolution mode: the functional image comes at 1/``scale`` of the
    anatomical image's size (``forward(sources, low)`` with ``low`` of side ceil(s / scale)); it is first
    brought to full size by bilinear upsampling followed by a learned residual 3x3 refinement (the paper
    uses two transposed convolutions; upsampling + convolution avoids their checkerboard artefacts).
    Given equal-size sources only (the registry's path), a ``scale`` > 1 network downsamples the second
    source by psi (average pooling by ``scale``) first, exactly as its training pairs were made.
    """

    def __init__(self, spatial_dims: int = 2, channels: int = 16, layers: int = 4, decoder: Sequence[int] = (32, 16),
                 scale: int = 1):
        super().__init__(spatial_dims=spatial_dims, channels=channels, layers=layers, decoder=list(decoder),
                         scale=int(scale))
        if int(scale) < 1:
            raise ValueError("scale must be a positive integer")
        sd, c = spatial_dims, channels
        self.scale = int(scale)
        if self.scale > 1:
            self.upsampler = nn.Sequential(conv(sd, 1, c, act=LRELU, bias=False), conv(sd, c, 1, act=None, bias=False))
        self.encoder = nn.Sequential(conv(sd, 2, c, act=LRELU, bias=False),
                                     dense_block(sd, c, c, layers, act=LRELU, bias=False))
        self.decoder = conv_stack(sd, [c * (layers + 1)] + list(decoder) + [1], act=LRELU, bias=False)

    def upsample_functional(self, low: torch.Tensor, size) -> torch.Tensor:
        mode = "bilinear" if low.dim() == 4 else "trilinear"
        up = F.interpolate(low, size=tuple(size), mode=mode, align_corners=False)
        return up + self.upsampler(up)

    def forward(self, sources: torch.Tensor, low: Optional[torch.Tensor] = None) -> torch.Tensor:
        anatomical = sources[:, :1]
        if self.scale == 1:
            if low is not None:
                raise FusionInputError("this DDcGAN network was trained at equal resolution (scale 1); it takes no "
                                       "low-resolution functional image")
            functional = sources[:, 1:2]
        else:
            if low is None:
                low = downsample(sources[:, 1:2], self.scale)
            expected = tuple(-(-s // self.scale) for s in anatomical.shape[2:])
            if tuple(low.shape[2:]) != expected or low.shape[0] != anatomical.shape[0] or low.shape[1] != 1:
                raise FusionInputError(
                    f"DDcGAN low-resolution mode (scale {self.scale}): the functional image must be "
                    f"({anatomical.shape[0]}, 1) + {expected} (1/{self.scale} of the anatomical image "
                    f"{tuple(anatomical.shape[2:])}, rounded up); got {tuple(low.shape)}")
            functional = self.upsample_functional(low, anatomical.shape[2:])
        return self.decoder(self.encoder(torch.cat([anatomical, functional], dim=1)))


# --- 3. MGMDcGAN (Le et al. 2020) -------------------------------------------------------------------------
class MGMDcGANNet(_Network):
    """MGMDcGAN's two generators in one network (one weight file). ``first`` is a DDcGAN generator
    (equal resolution) fusing the two sources; ``second`` refines its output, conditioned on the
    anatomical image: F2 = F1 + R(F1, anatomical), R three 3x3 convolutions of ``refine_channels``
    (LeakyReLU) and a linear output. Le et al. give the second generator the first one's architecture
    and no residual connection; ours is smaller and residual, so it starts from (and stays near) the first
    cGAN's fusion and only adds what the mask-based discriminator asks for (dense-structure intensity)."""

    def __init__(self, spatial_dims: int = 2, channels: int = 16, layers: int = 4, decoder: Sequence[int] = (32, 16),
                 refine_channels: int = 16):
        super().__init__(spatial_dims=spatial_dims, channels=channels, layers=layers, decoder=list(decoder),
                         refine_channels=refine_channels)
        sd, r = spatial_dims, refine_channels
        self.first = DDcGANGenerator(sd, channels, layers, decoder, scale=1)
        self.second = conv_stack(sd, [2, r, r, r, 1], act=LRELU, bias=False)

    def refine(self, first: torch.Tensor, anatomical: torch.Tensor) -> torch.Tensor:
        return first + self.second(torch.cat([first, anatomical], dim=1))

    def forward(self, sources: torch.Tensor) -> torch.Tensor:
        return self.refine(self.first(sources), sources[:, :1])


# --- 4. tissue-aware cGAN (Kang et al. 2020) --------------------------------------------------------------
def _histograms(x: torch.Tensor, valid: torch.Tensor, bins: int) -> torch.Tensor:
    """Per-sample histograms ``(B, bins)`` of ``x`` in [0, 1] over the ``valid`` pixels."""
    b = x.shape[0]
    q = (x.reshape(b, -1).clamp(0, 1) * (bins - 1)).round().long()
    w = valid.reshape(b, -1).to(x.dtype)
    return torch.zeros(b, bins, dtype=x.dtype, device=x.device).scatter_add_(1, q, w)


def tissue_labels(mri: torch.Tensor, background: float = 0.05, bins: int = 256, iterations: int = 30) -> torch.Tensor:
    """The tissue label map of Kang et al.'s TA-cGAN, by an unsupervised, deterministic segmentation of
    each image of ``mri`` ``(B, 1, *spatial)`` in [0, 1]: label 0 = background (intensity <=
    ``background``), labels 1, 2, 3 = the three clusters of a 1-D k-means (Lloyd) of the foreground
    intensities, ordered by mean intensity (in T1 MRI: CSF, grey matter, white matter; in T2 the order of
    CSF and white matter is reversed).

    The k-means runs on each image's 256-bin intensity histogram (bins weighted by their counts), all
    images of the batch at once; the centres start at the foreground's 1/6, 1/2 and 5/6 quantiles, and an
    empty cluster keeps its centre. No random initialisation, so the map is a deterministic function of
    the image. Kang et al. do not name their segmentation; this is ours. Returns ``(B, 1, *spatial)``
    int64."""
    b = mri.shape[0]
    fg = mri > background
    hist = _histograms(mri, fg, bins)                                          # (B, bins)
    values = torch.linspace(0, 1, bins, dtype=mri.dtype, device=mri.device)    # bin centres
    total = hist.sum(dim=1, keepdim=True)
    cdf = hist.cumsum(dim=1) / total.clamp_min(1)
    quantiles = torch.tensor([1 / 6, 1 / 2, 5 / 6], dtype=mri.dtype, device=mri.device)
    index = torch.searchsorted(cdf.contiguous(), quantiles.expand(b, 3).contiguous()).clamp(max=bins - 1)
    centres = values[index]                                                    # (B, 3)
    for _ in range(iterations):
        nearest = (values[None, :, None] - centres[:, None, :]).abs().argmin(dim=2)   # (B, bins)
        onehot = F.one_hot(nearest, 3).to(mri.dtype) * hist[:, :, None]              # (B, bins, 3)
        mass = onehot.sum(dim=1)
        means = (onehot * values[None, :, None]).sum(dim=1) / mass.clamp_min(1e-12)
        centres = torch.where(mass > 0, means, centres)
    centres = centres.sort(dim=1).values
    flat = mri.reshape(b, -1)
    label = (flat[:, :, None] - centres[:, None, :]).abs().argmin(dim=2) + 1
    label = torch.where(fg.reshape(b, -1), label, torch.zeros_like(label))
    return label.reshape(mri.shape)


def tissue_onehot(labels: torch.Tensor) -> torch.Tensor:
    """The condition channels: one channel per tissue class 1..3, background all zero (so a black
    background stays an all-zero input of the bias-free generator). ``(B, 1, ...)`` -> ``(B, 3, ...)``."""
    return torch.cat([(labels == k).to(torch.float32) for k in range(1, len(TISSUE_CLASSES))], dim=1)


class TissueCGANGenerator(_Network):
    """TA-cGAN's generator conditioned on the MRI's tissue label map: input MRI, PET luminance and the
    three one-hot tissue channels (:func:`tissue_onehot`), then FusionGAN-style convolutions (kernels 5,
    5, 3, 3, 1, LeakyReLU), bias-free, a linear luminance output. ``forward(sources)`` computes the label
    map from the first source (:func:`tissue_labels`); training passes the precomputed map."""

    def __init__(self, spatial_dims: int = 2, channels: Sequence[int] = (32, 32, 16, 16), background: float = 0.05):
        super().__init__(spatial_dims=spatial_dims, channels=list(channels), background=float(background))
        self.body = FusionGANGenerator(spatial_dims, channels, in_channels=2 + len(TISSUE_CLASSES) - 1).body

    def labels(self, sources: torch.Tensor) -> torch.Tensor:
        return tissue_labels(sources[:, :1], self.arch["background"])

    def forward(self, sources: torch.Tensor, labels: Optional[torch.Tensor] = None) -> torch.Tensor:
        if sources.shape[1] != 2:
            raise FusionInputError(f"tissue_cgan fuses exactly 2 sources (MRI, PET); got {sources.shape[1]}")
        if labels is None:
            labels = self.labels(sources)
        return self.body(torch.cat([sources, tissue_onehot(labels).to(sources.dtype)], dim=1))


# --- masks ------------------------------------------------------------------------------------------------
def otsu_threshold(x: torch.Tensor, valid: torch.Tensor, bins: int = 256) -> torch.Tensor:
    """Otsu's threshold of each image of ``x`` ``(B, 1, ...)`` over its ``valid`` pixels, from a
    ``bins``-bin histogram, vectorised over the batch; ``(B,)`` (1.0 for an image with no valid pixel).
    Pixels above the threshold form the upper class (N. Otsu, IEEE Trans. SMC 9(1):62-66, 1979)."""
    hist = _histograms(x, valid, bins)
    values = torch.linspace(0, 1, bins, dtype=x.dtype, device=x.device)
    total = hist.sum(dim=1, keepdim=True)
    p = hist / total.clamp_min(1)
    w0 = p.cumsum(dim=1)
    m0 = (p * values).cumsum(dim=1)
    mt = m0[:, -1:]
    between = (mt * w0 - m0) ** 2 / (w0 * (1 - w0)).clamp_min(1e-12)
    between = torch.where((w0 > 0) & (w0 < 1), between, torch.zeros_like(between))
    # Class 0 is the bins up to k; the threshold lies half a bin above bin k's centre.
    t = values[between.argmax(dim=1)] + 0.5 / (bins - 1)
    return torch.where(total[:, 0] > 0, t, torch.ones_like(t))


def dense_structure_mask(anatomical: torch.Tensor, background: float = 0.05) -> torch.Tensor:
    """MGMDcGAN's mask of dense structure in the anatomical image ``(B, 1, ...)``: the pixels above the
    Otsu threshold of the image's foreground (intensity > ``background``), i.e. its bright class (bone
    in CT, the skull's marrow / fat and white matter in T1 MRI). Float 0/1, same shape."""
    t = otsu_threshold(anatomical, anatomical > background)
    shape = (-1,) + (1,) * (anatomical.dim() - 1)
    return (anatomical > t.reshape(shape)).to(anatomical.dtype)
