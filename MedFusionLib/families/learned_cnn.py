"""CNN weight-map fusion with a multi-scale decomposition (Liu, Chen, Cheng, Peng 2017).

A Siamese CNN, trained here as in Liu et al.'s multi-focus paper (which patch of a (clear, blurred) pair
is the clear one), scores every 16 x 16 patch pair of the two sources; spreading the scores over their
patches gives a per-pixel weight map W of source A. The sources are decomposed into Laplacian pyramids,
W into a Gaussian pyramid, and every level is fused with the local-similarity rule (3 x 3 window,
threshold 0.6): where the two bands are similar they are mixed with the weights G_l(W), 1 - G_l(W);
elsewhere the band of higher local energy is kept.

:func:`weight_map` is public: other methods (e.g. NSST with a CNN-driven rule) may use the same map.

References
----------
.. [1] Y. Liu, X. Chen, J. Cheng, H. Peng, "A medical image fusion method based on convolutional neural
       networks", Proc. 20th Int. Conf. on Information Fusion (ICIF), 2017.
.. [2] Y. Liu, X. Chen, H. Peng, Z. Wang, "Multi-focus image fusion with a deep convolutional neural
       network", Information Fusion 36:191-207, 2017 (the network and its training).
"""

from __future__ import annotations

import numpy as np

from ..errors import FusionInputError
from ..registry import Param, register
from ._common import check_levels, check_rules
from ._learned import DEVICE, FAMILY, learned_check

_REFERENCE = ("Y. Liu, X. Chen, J. Cheng, H. Peng, 'A medical image fusion method based on convolutional neural "
              "networks', ICIF 2017; network and training: Y. Liu et al., Information Fusion 36:191-207, 2017")


def weight_map(a, b, device: str = "auto", progress=None) -> np.ndarray:
    """Per-pixel weight of image ``a`` against image ``b`` from the trained Siamese CNN (Liu et al. 2017).

    Parameters
    ----------
    a, b : ndarray
        Co-registered images in [0, 1], (H, W) or a batch (B, H, W).
    device : {'auto', 'cpu', 'cuda'}
        Where the network runs.
    progress : MedFusionLib.progress.Progress, optional
        Reports per mini-batch of slices (and checks for cancellation).

    Returns
    -------
    ndarray
        float32, the shape of ``a``: the weight of ``a`` (``1 - w`` is that of ``b``); 1 where ``a`` looks
        clearer (more high-frequency detail), 0 where ``b`` does, 1/2 where they cannot be told apart.

    Raises
    ------
    MedFusionLib.errors.WeightsError
        When the weights are missing or corrupt (the message names the training command).
    """
    from ..deep.inference import weight_map as _weight_map

    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape or a.ndim not in (2, 3):
        raise FusionInputError(f"weight_map takes two images of one shape, (H, W) or (B, H, W); got {a.shape} and {b.shape}")
    for name, x in (("a", a), ("b", b)):
        if x.dtype.kind not in "iuf":
            raise FusionInputError(f"weight_map: {name} must be a real numeric array; got dtype {x.dtype}")
        if not np.isfinite(x).all():
            raise FusionInputError(f"weight_map: {name} contains NaN or Inf")
        if x.size and (x.min() < 0 or x.max() > 1):
            raise FusionInputError(f"weight_map: {name} must be in [0, 1] (normalise it first, e.g. with "
                                   f"MedFusionLib.intensity); got values in [{x.min():g}, {x.max():g}]")
    return _weight_map(a, b, device, progress)


def _check(params, n_inputs, shape):
    from ..transforms.pyramid import max_pyramid_levels

    check_rules("cnn_weight_map", params, n_inputs)           # odd window
    if shape is not None:
        if min(shape) < 4:
            raise FusionInputError(f"method 'cnn_weight_map' needs images of at least 4 x 4; got {shape}")
        check_levels("cnn_weight_map", params["levels"], max_pyramid_levels(shape), shape)


@register("cnn_weight_map", family=FAMILY, dims=(2,), check=learned_check("cnn_weight_map", _check),
          summary="Siamese-CNN weight map + Laplacian pyramids, local-similarity rule (Liu et al. 2017).",
          reference=_REFERENCE,
          params=(Param("levels", "int", 0, "Pyramid levels; 0 = as many as the image size allows (Liu et al.).",
                        minimum=0, maximum=10),
                  Param("window", "int", 3, "Odd window of the local energy and similarity.", minimum=1, maximum=15),
                  Param("threshold", "float", 0.6, "Similarity threshold: above it the bands are mixed with the "
                        "CNN weights, below it the more energetic band is kept.", minimum=0.0, maximum=0.99),
                  DEVICE))
def cnn_weight_map_fusion(stack: np.ndarray, levels: int = 0, window: int = 3, threshold: float = 0.6,
                          device: str = "auto", progress=None) -> np.ndarray:
    """Liu et al.'s CNN weight-map fusion (see the module docstring); three or more inputs are fused in
    sequence, ((S1, S2), S3)..."""
    from ..deep.inference import cnn_weight_map_fusion as _fuse

    return _fuse(stack, levels=levels, window=window, threshold=threshold, device=device, progress=progress)
