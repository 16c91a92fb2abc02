"""MedFusionLib: multimodal medical image fusion (CT, MRI, PET, SPECT) as a Python library.

Public API
----------
fuse(images, method=..., **params)
    Fuse two or more co-registered 2-D images or 3-D volumes (numpy in, numpy out).
methods(family=None)
    Describe every registered method: family, summary, reference, parameters, 2-D/3-D, inputs.
get_method(name)
    The description of one method.
metrics
    Reference-free fusion quality metrics (``MedFusionLib.metrics.evaluate_all``).
bridge
    Slicer volume nodes in, fused node out (the only module that imports ``slicer``).

Layers (bottom to top): ``transforms`` and ``rules`` -> ``methods`` (registered in ``registry``) ->
``pipeline`` (normalisation, slicing, colour) -> this API -> ``bridge`` and ``cli``.
See docs/architecture.md.
"""

from __future__ import annotations

import importlib

from .errors import FusionCancelled, FusionError, FusionInputError, RegistrationError, WeightsError
from .pipeline import DEFAULT_METHOD, fuse
from .progress import CancelToken
from .registry import FAMILIES, MethodSpec, Param, get_method, methods, register

__version__ = "0.1.0"

__all__ = ["fuse", "methods", "get_method", "register", "MethodSpec", "Param", "FAMILIES", "DEFAULT_METHOD",
           "CancelToken", "FusionError", "FusionInputError", "FusionCancelled", "RegistrationError",
           "WeightsError", "__version__"]

# Heavier submodules load on first access, so importing the package stays cheap (Slicer start-up, CLI).
_LAZY_SUBMODULES = ("metrics", "bridge", "cli", "colour", "intensity", "evaluation", "sampledata", "rules",
                    "transforms")


def __getattr__(name):
    if name in _LAZY_SUBMODULES:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
