"""Encoder-decoder fusion networks: a MONAI U-Net (``unet_fusion``) and MCFNet (``mcfnet``).

Both networks take the two sources as input channels and decode the fused image from multi-scale
features: the U-Net from one encoder of the stacked sources with skip connections (optionally attention
gates), MCFNet from one encoder per source whose features of every level are concatenated in the
up-sampling path. They are two-source networks: three or more inputs are fused in sequence
(((S1, S2), S3), ...), the first input being the anatomical reference. Volumes are fused slice-wise with
slices batched. Any image size works (the networks mirror-pad to a multiple of their down-sampling
factor and crop back). Weights are trained here (``medfusion train unet_fusion`` / ``mcfnet``;
docs/models.md).

References
----------
.. [1] O. Ronneberger, P. Fischer, T. Brox, "U-Net: Convolutional networks for biomedical image
       segmentation", MICCAI 2015, LNCS 9351:234-241.
.. [2] O. Oktay et al., "Attention U-Net: Learning where to look for the pancreas", MIDL 2018
       (arXiv:1804.03999).
.. [3] X. Liang, P. Hu, L. Zhang, J. Sun, G. Yin, "MCFNet: Multi-layer concatenation fusion network for
       medical images fusion", IEEE Sensors Journal 19(16):7107-7119, 2019.
"""

from __future__ import annotations

import numpy as np

from ..registry import register
from ._learned import DEVICE, FAMILY, learned_check, run_network



@register("unet_fusion", family=FAMILY, dims=(2,), check=learned_check("unet_fusion"),
          summary="U-Net encoder-decoder with skip connections (MONAI BasicUNet, or AttentionUnet), the sources "
                  "as input channels, unsupervised SSIM + intensity + gradient loss.",
          reference="O. Ronneberger, P. Fischer, T. Brox, 'U-Net: Convolutional networks for biomedical image "
                    "segmentation', MICCAI 2015; O. Oktay et al., 'Attention U-Net: Learning where to look for the "
                    "pancreas', MIDL 2018",
          params=(DEVICE,))
def unet_fusion(stack: np.ndarray, device: str = "auto", progress=None) -> np.ndarray:
    """The shipped U-Net on the sources (in sequence for three or more)."""
    return run_network("unet_fusion", stack, device, progress)


@register("mcfnet", family=FAMILY, dims=(2,), check=learned_check("mcfnet"),
          summary="MCFNet: per-source convolutional encoders, up-sampling decoder concatenating both sources' "
                  "features of several layers (Liang et al. 2019).",
          reference="X. Liang, P. Hu, L. Zhang, J. Sun, G. Yin, 'MCFNet: Multi-layer concatenation fusion network "
                    "for medical images fusion', IEEE Sensors Journal 19(16):7107-7119, 2019",
          params=(DEVICE,))
def mcfnet_fusion(stack: np.ndarray, device: str = "auto", progress=None) -> np.ndarray:
    """MCFNet on the sources (in sequence for three or more)."""
    return run_network("mcfnet", stack, device, progress)
