"""End-to-end fusion networks: IFCNN, PMGI, FusionDN, U2Fusion.

Each network maps the sources straight to the fused image. IFCNN fuses its per-source features
element-wise, so it takes any number of inputs natively; PMGI, FusionDN and U2Fusion are two-source
networks, and three or more inputs are fused in sequence (((S1, S2), S3), ...), the first input being the
anatomical reference. Weights are trained here (``medfusion train METHOD``; docs/models.md).

References
----------
.. [1] Y. Zhang, Y. Liu, P. Sun, H. Yan, X. Zhao, L. Zhang, "IFCNN: A general image fusion framework based
       on convolutional neural network", Information Fusion 54:99-118, 2020.
.. [2] H. Zhang, H. Xu, Y. Xiao, X. Guo, J. Ma, "Rethinking the image fusion: a fast unified image fusion
       network based on proportional maintenance of gradient and intensity", AAAI 2020, pp. 12797-12804.
.. [3] H. Xu, J. Ma, Z. Le, J. Jiang, X. Guo, "FusionDN: A unified densely connected network for image
       fusion", AAAI 2020, pp. 12484-12491.
.. [4] H. Xu, J. Ma, J. Jiang, X. Guo, H. Ling, "U2Fusion: A unified unsupervised image fusion network",
       IEEE TPAMI 44(1):502-518, 2022 (online 2020).
"""

from __future__ import annotations

import numpy as np

from ..registry import Param, register
from ._learned import DEVICE, FAMILY, learned_check, run_network



@register("ifcnn", family=FAMILY, dims=(2,), check=learned_check("ifcnn"),
          summary="IFCNN: shared conv features, element-wise max/mean/sum over any number of inputs, "
                  "reconstruction (Zhang et al. 2020).",
          reference="Y. Zhang et al., 'IFCNN: A general image fusion framework based on convolutional neural "
                    "network', Information Fusion 54:99-118, 2020",
          params=(Param("rule", "choice", "max", "Element-wise rule fusing the sources' features (IFCNN-MAX for "
                        "medical images in the paper).", choices=("max", "mean", "sum")), DEVICE))
def ifcnn_fusion(stack: np.ndarray, rule: str = "max", device: str = "auto", progress=None) -> np.ndarray:
    """IFCNN with the feature fusion ``rule``; any number of inputs."""
    return run_network("ifcnn", stack, device, progress, rule=rule)


@register("pmgi", family=FAMILY, dims=(2,), check=learned_check("pmgi"),
          summary="PMGI: gradient and intensity paths with pathwise information exchange (Zhang et al. 2020).",
          reference="H. Zhang, H. Xu, Y. Xiao, X. Guo, J. Ma, 'Rethinking the image fusion: a fast unified image "
                    "fusion network based on proportional maintenance of gradient and intensity', AAAI 2020",
          params=(DEVICE,))
def pmgi_fusion(stack: np.ndarray, device: str = "auto", progress=None) -> np.ndarray:
    """PMGI; the first input feeds the gradient path twice, the second the intensity path twice."""
    return run_network("pmgi", stack, device, progress)


@register("fusiondn", family=FAMILY, dims=(2,), check=learned_check("fusiondn"),
          summary="FusionDN: densely connected network, quality-adaptive unsupervised loss, EWC (Xu et al. 2020).",
          reference="H. Xu, J. Ma, Z. Le, J. Jiang, X. Guo, 'FusionDN: A unified densely connected network for "
                    "image fusion', AAAI 2020",
          params=(DEVICE,))
def fusiondn_fusion(stack: np.ndarray, device: str = "auto", progress=None) -> np.ndarray:
    """FusionDN's generator on the sources (in sequence for three or more)."""
    return run_network("fusiondn", stack, device, progress)


@register("u2fusion", family=FAMILY, dims=(2,), check=learned_check("u2fusion"),
          summary="U2Fusion: dense generator, information-adaptive SSIM + MSE loss, EWC (Xu et al. 2020).",
          reference="H. Xu, J. Ma, J. Jiang, X. Guo, H. Ling, 'U2Fusion: A unified unsupervised image fusion "
                    "network', IEEE TPAMI 44(1):502-518, 2022",
          params=(DEVICE,))
def u2fusion_fusion(stack: np.ndarray, device: str = "auto", progress=None) -> np.ndarray:
    """U2Fusion's generator on the sources (in sequence for three or more)."""
    return run_network("u2fusion", stack, device, progress)
