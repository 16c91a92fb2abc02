"""Stacked convolutional autoencoder fusion (DSCNN; Xia, Yin, Wang 2019).

The network's fixed first layer splits each source into a low-frequency (Gaussian, sigma 2) and a
high-frequency (image minus Gaussian) sub-image; two stacks of convolutional units, each unit trained
greedily as an autoencoder and then stacked and fine-tuned, turn them into features. Features are fused
(high frequency: choose-max of the local l1 activity with a consistency check; low frequency: per
``low_rule``), each fused stack is decoded back to a sub-image, and the last layer reconstructs the image.

References
----------
.. [1] K. Xia, H. Yin, J. Wang, "A novel improved deep convolutional neural network model for medical image
       fusion", Cluster Computing 22:1515-1527, 2019.
"""

from __future__ import annotations

import numpy as np

from ..registry import Param, register
from ._common import CONSISTENCY, check_rules
from ._learned import DEVICE, FAMILY, learned_check

_REFERENCE = ("K. Xia, H. Yin, J. Wang, 'A novel improved deep convolutional neural network model for medical "
              "image fusion', Cluster Computing 22:1515-1527, 2019")


@register("dscnn", family=FAMILY, dims=(2,), check=learned_check("dscnn", lambda params, n_inputs, shape: check_rules("dscnn", params, n_inputs)),
          summary="Stacked conv autoencoder on Gaussian/Laplacian sub-images, feature fusion rule (Xia et al. 2019).",
          reference=_REFERENCE,
          params=(Param("low_rule", "choice", "max", "Rule for the low-frequency features: choose-max of local "
                        "activity, activity-weighted mean, or mean.", choices=("max", "weighted", "mean")),
                  Param("window", "int", 3, "Odd window of the activity measure and consistency check.",
                        minimum=1, maximum=15),
                  CONSISTENCY,
                  DEVICE))
def dscnn_fusion(stack: np.ndarray, low_rule: str = "max", window: int = 3, consistency: bool = True,
                 device: str = "auto", progress=None) -> np.ndarray:
    """Fuse any number of inputs with the stacked autoencoder (see the module docstring)."""
    from ..deep.inference import dscnn_fusion as _fuse

    return _fuse(stack, low_rule=low_rule, window=window, consistency=consistency, device=device, progress=progress)
