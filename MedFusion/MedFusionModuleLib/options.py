"""The choices the MedFusion panel offers, and the module help text built from the method registry.

The choices are plain constants so that ``MedFusion.py`` can declare its parameter node at import time
without importing ``MedFusionLib`` (whose dependencies may not be installed yet). Tests check that they
match the library (``Testing/Python/test_slicer_module.py``).
"""

from __future__ import annotations

import html
from typing import Iterable, Optional

#: Default method, as ``MedFusionLib.DEFAULT_METHOD``.
DEFAULT_METHOD = "max_detail"

#: ``mode`` of :func:`MedFusionLib.fuse`: native 3-D when the method supports it, else slice-wise.
MODES = ("auto", "slices", "3d")

#: Slice axes as shown in the panel, in the axis order of ``slicer.util.arrayFromVolume`` (K, J, I):
#: K is the slowest voxel axis (the axial one for axially acquired volumes).
SLICE_AXES = ("K", "J", "I")

#: Grey output, or colour output with the functional input shown through a colour map.
COLOUR_MODES = ("grey", "colour")

#: Colour maps of :mod:`MedFusionLib.colour` (``COLORMAPS``), the nuclear-medicine map first.
COLOUR_MAPS = ("pet", "hot", "rainbow", "grey")

#: Luminance/chroma transforms of :mod:`MedFusionLib.colour` (``COLOUR_SPACES``).
COLOUR_SPACES = ("ycbcr", "ihs")

#: Registration of every further input onto the reference before fusion (``MedFusionLib.registration``):
#: none (co-registered already), rigid, affine.
REGISTRATIONS = ("none", "rigid", "affine")

#: Where learned methods run: ``auto`` is the GPU when PyTorch sees one, else the CPU.
DEVICES = ("auto", "cpu", "gpu")

#: Family whose methods are learned (the self-test runs one when such a method is registered).
LEARNED_FAMILY = "deep learning"


def axisIndex(axis) -> int:
    """The array axis (0, 1, 2) of a slice axis given as ``'K'``/``'J'``/``'I'`` or as an integer."""
    if isinstance(axis, str):
        name = axis.strip().upper()
        if name not in SLICE_AXES:
            raise ValueError(f"slice axis must be one of {', '.join(SLICE_AXES)} (or 0, 1, 2); got {axis!r}")
        return SLICE_AXES.index(name)
    if isinstance(axis, bool) or not isinstance(axis, int) or not 0 <= axis <= 2:
        raise ValueError(f"slice axis must be one of {', '.join(SLICE_AXES)} (or 0, 1, 2); got {axis!r}")
    return int(axis)


def _escape(text: str) -> str:
    return html.escape(str(text), quote=False)


def helpText(specs: Optional[Iterable] = None, families: Iterable[str] = ()) -> str:
    """The module help text (HTML), listing every registered method with its reference.

    Parameters
    ----------
    specs : iterable of MedFusionLib.MethodSpec, optional
        ``MedFusionLib.methods()``; ``None`` when the library cannot be imported yet (dependencies not
        installed), in which case the text says how the list appears.
    families : iterable of str
        Family names in display order (``MedFusionLib.FAMILIES``); families without methods are skipped.
    """
    parts = [
        "<p>Fuse co-registered volumes of different modalities (CT, MRI, PET, SPECT) into one volume that "
        "keeps the anatomy of the reference and the function of the other inputs.</p>",
        "<p>Pick the <b>anatomical reference</b> (its grid is the output grid; other inputs are resampled "
        "onto it through their transforms), a <b>functional input</b> and optionally more inputs, a method "
        "and its parameters, then <b>Apply</b>. Colour output shows the functional input through a colour "
        "map (a vector volume). <b>Compare side by side</b> shows each input and the fused volume in "
        "linked slice views; <b>Compare methods</b> fills one table with the quality metrics and run "
        "time of several methods. The same logic runs from Python and in batch mode "
        "(<code>Slicer --no-main-window --python-script fuse_batch.py</code>).</p>",
        "<p>No data at hand? The <i>Sample Data</i> module has a synthetic <b>MedFusion head phantom: CT, "
        "MRI, PET</b> (computed, not downloaded; not patient data).</p>",
    ]
    if specs is None:
        parts.append("<p>The list of methods appears here once the module's Python dependencies are "
                     "installed (open the module and press <i>Install dependencies</i>).</p>")
    else:
        specs = list(specs)
        order = list(families) or sorted({s.family for s in specs})
        parts.append("<p><b>Methods</b></p>")
        for family in order:
            members = [s for s in specs if s.family == family]
            if not members:
                continue
            items = "".join(
                f"<li><b>{_escape(s.name)}</b>: {_escape(s.summary)} <i>{_escape(s.reference)}</i></li>"
                for s in members)
            parts.append(f"<p>{_escape(family.capitalize())}</p><ul>{items}</ul>")
    parts.append('<p>Documentation: <a href="https://github.com/medfusion/SlicerMedFusion/blob/main/docs/'
                 'slicer-module.md">docs/slicer-module.md</a>.</p>')
    return "\n".join(parts)
