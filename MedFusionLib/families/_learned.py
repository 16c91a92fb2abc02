"""Shared pieces of the learned (deep-learning) methods that must not import torch.

The registry imports every family module when it is first read, and the classical methods must stay
usable without loading torch; so the learned modules describe themselves here and import
:mod:`MedFusionLib.deep` (torch, MONAI) only inside their functions.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, Mapping, Optional, Tuple

from ..registry import Param

#: The Slicer panel's device selector sets this parameter (MedFusion/MedFusionModuleLib/controls.py).
DEVICE = Param("device", "choice", "auto", "Where the network runs: auto (GPU if available), cpu or cuda.",
               choices=("auto", "cpu", "cuda"))

FAMILY = "deep learning"


def learned_check(method: str, extra: Optional[Callable[[Mapping[str, Any], int, Optional[Tuple[int, ...]]], None]] = None):
    """A registry ``check`` for a learned method: parameter limits (``extra``), then the device (cuda
    requested without a GPU is a :class:`FusionInputError`), then the weights (missing or corrupt weights
    are a :class:`~MedFusionLib.errors.WeightsError` naming the training command). Runs in ``plan()``,
    before any image work; the weights are loaded once and cached."""
    # The work is a module-level function called at plan time, not the closure's body, so that a
    # mutation tool forking after import still reaches it (docs/testing.md, 'Learned families').
    return functools.partial(check_learned, method, extra)


def check_learned(method: str, extra, params: Mapping[str, Any], n_inputs: int,
                  shape: Optional[Tuple[int, ...]]) -> None:
    """The check :func:`learned_check` returns, for ``method`` with its ``extra`` parameter limits."""
    if extra is not None:
        extra(params, n_inputs, shape)
    from ..deep import weights

    weights.resolve_device(params.get("device", "auto"))
    weights.check_weights(method)


def run_network(method: str, stack, device: str, progress, **forward_kwargs):
    """Fuse a registry stack with the shipped network of ``method`` (the end-to-end methods: the network
    maps the sources straight to the fused image; see :func:`MedFusionLib.deep.inference.fuse_with_network`)."""
    from ..deep.inference import fuse_with_network

    return fuse_with_network(method, stack, device=device, progress=progress, **forward_kwargs)


#: What ``medfusion train`` can train: the learned methods, the feature network of their losses and the
#: band-feature network of the signal-processing method ``nsst_similarity``.
TRAINABLE = ("feature_net", "cnn_weight_map", "dscnn", "ifcnn", "pmgi", "fusiondn", "u2fusion", "nsst_similarity",
             "fusiongan", "ddcgan", "mgmdcgan", "tissue_cgan", "unet_fusion", "mcfnet")
