"""Adversarial fusion networks: FusionGAN, DDcGAN, MGMDcGAN and the tissue-aware cGAN (TA-cGAN).

Each method is the generator of a GAN trained here (``medfusion train METHOD``; the recipes are in
:mod:`MedFusionLib.deep.recipes.adversarial`, the networks in :mod:`MedFusionLib.deep.networks_adversarial`);
the discriminators only shape training and are not shipped. The first input is the anatomical reference
(MRI), the second the functional / other image (PET, SPECT, CT). Generators are 2-D: volumes are fused
slice-wise, slices batched.

* ``fusiongan`` [1]_ (applied to functional/anatomical pairs as in [5]_): one generator keeps the
  functional image's intensity and the anatomical image's gradients, one discriminator tells the fused
  image from the anatomical one (least-squares loss with soft labels). Our shipped weights pull the
  intensity to the brighter source per pixel instead of the functional one (``--set intensity=max``, the
  recipe default; ``intensity=functional`` is the paper's form): with the paper's target the MRI's bright
  anatomy survives only as edges (docs/models.md). The same holds for ``ddcgan`` and ``tissue_cgan``.
* ``ddcgan`` [2]_: a dense-block generator and two discriminators, one per source (the functional one
  on psi(G)); the paper's low-resolution functional input is a training option (``--set
  resolution=low``), the shipped weights are for equal-size pairs.
* ``mgmdcgan`` [3]_: a DDcGAN-like cGAN, then a second generator refining its output against a
  discriminator on the dense-structure mask (Otsu-bright class) of the anatomical image.
* ``tissue_cgan`` [4]_: generator and discriminator conditioned on a tissue label map of the MRI
  (background + three k-means intensity classes). Colour: the paper fuses a pseudo-colour PET with a
  grey MRI and keeps the PET's colour by a loss term. MedFusion's pipeline fuses the luminance (Y of
  YCbCr) with the method and re-attaches the functional input's chroma (Cb, Cr) unchanged
  (:mod:`MedFusionLib.colour`), so the generator here outputs the fused luminance and the PET's colour
  is kept exactly, not approximately: ``mf.fuse([mri, pet_rgb], method="tissue_cgan")`` or
  ``mf.fuse([mri, pet], method="tissue_cgan", colormap="pet")`` give an RGB result whose chroma is the
  PET's. The paper's colour-preservation term reduces to the luminance intensity term of our joint loss.
  Exactly two inputs (the tissue map is of the first).

Three or more inputs (fusiongan, ddcgan, mgmdcgan) are fused in sequence, (((S1, S2), S3), ...), the
running fusion taking the anatomical role.

References
----------
.. [1] J. Ma, W. Yu, P. Liang, C. Li, J. Jiang, "FusionGAN: A generative adversarial network for infrared
       and visible image fusion", Information Fusion 48:11-26, 2019.
.. [2] J. Ma, H. Xu, J. Jiang, X. Mei, X.-P. Zhang, "DDcGAN: A dual-discriminator conditional generative
       adversarial network for multi-resolution image fusion", IEEE Trans. Image Processing 29:4980-4995,
       2020.
.. [3] Z. Le, J. Huang, F. Fan, X. Tian, J. Ma, "A generative adversarial network for medical image
       fusion", IEEE ICIP 2020, pp. 370-374.
.. [4] J. Kang, W. Lu, W. Zhang, "Fusion of brain PET and MRI images using tissue-aware conditional
       generative adversarial network with joint loss", IEEE Access 8:6368-6378, 2020.
.. [5] W. Tang, Y. Liu, C. Zhang, J. Cheng, H. Peng, X. Chen, "Green fluorescent protein and phase-contrast
       image fusion via generative adversarial networks", Comput. Math. Methods Med. 2019:5450373.
"""

from __future__ import annotations

import numpy as np

from ..registry import register
from ._learned import DEVICE, FAMILY, learned_check, run_network



@register("fusiongan", family=FAMILY, dims=(2,), check=learned_check("fusiongan"),
          summary="FusionGAN: generator keeping the anatomical gradients and the brighter source's intensity (the "
                  "paper: the functional one) vs one discriminator (least squares, soft labels) (Ma et al. 2019).",
          reference="J. Ma, W. Yu, P. Liang, C. Li, J. Jiang, 'FusionGAN: A generative adversarial network for "
                    "infrared and visible image fusion', Information Fusion 48:11-26, 2019",
          params=(DEVICE,))
def fusiongan_fusion(stack: np.ndarray, device: str = "auto", progress=None) -> np.ndarray:
    """FusionGAN's generator on (anatomical, functional); three or more inputs in sequence."""
    return run_network("fusiongan", stack, device, progress)


@register("ddcgan", family=FAMILY, dims=(2,), check=learned_check("ddcgan"),
          summary="DDcGAN: dense-block generator vs two discriminators, one per source (Ma et al. 2020).",
          reference="J. Ma, H. Xu, J. Jiang, X. Mei, X.-P. Zhang, 'DDcGAN: A dual-discriminator conditional "
                    "generative adversarial network for multi-resolution image fusion', IEEE TIP 29:4980-4995, 2020",
          params=(DEVICE,))
def ddcgan_fusion(stack: np.ndarray, device: str = "auto", progress=None) -> np.ndarray:
    """DDcGAN's generator on (anatomical, functional); three or more inputs in sequence. Weights trained in
    the low-resolution mode (scale 4) average-pool the functional input by 4 first (the registry's inputs
    have equal sizes)."""
    return run_network("ddcgan", stack, device, progress)


@register("mgmdcgan", family=FAMILY, dims=(2,), check=learned_check("mgmdcgan"),
          summary="MGMDcGAN: a dual-discriminator cGAN, then a second generator refining the fusion against a "
                  "discriminator on the anatomical image's dense-structure mask (Le et al. 2020).",
          reference="Z. Le, J. Huang, F. Fan, X. Tian, J. Ma, 'A generative adversarial network for medical image "
                    "fusion', IEEE ICIP 2020, pp. 370-374",
          params=(DEVICE,))
def mgmdcgan_fusion(stack: np.ndarray, device: str = "auto", progress=None) -> np.ndarray:
    """Both generators of MGMDcGAN (first fusion, then refinement); three or more inputs in sequence."""
    return run_network("mgmdcgan", stack, device, progress)


@register("tissue_cgan", family=FAMILY, dims=(2,), min_inputs=2, max_inputs=2, check=learned_check("tissue_cgan"),
          summary="Tissue-aware cGAN: generator and discriminator conditioned on the MRI's tissue label map "
                  "(k-means), joint loss; MRI + PET, colour kept from the PET (Kang et al. 2020).",
          reference="J. Kang, W. Lu, W. Zhang, 'Fusion of brain PET and MRI images using tissue-aware conditional "
                    "generative adversarial network with joint loss', IEEE Access 8:6368-6378, 2020",
          params=(DEVICE,))
def tissue_cgan_fusion(stack: np.ndarray, device: str = "auto", progress=None) -> np.ndarray:
    """TA-cGAN's generator on (MRI, PET luminance), the tissue map computed from each MRI slice."""
    return run_network("tissue_cgan", stack, device, progress)
