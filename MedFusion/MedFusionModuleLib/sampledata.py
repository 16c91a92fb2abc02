"""Synthetic CT / MRI / PET volume nodes: Slicer sample data, the self-test, the batch script's
``--self-test`` and pytest.

Nothing is downloaded: the voxels come from ``MedFusionLib.sampledata.head_phantom`` (NumPy and SciPy
only, both shipped with Slicer: the phantom loads before MedFusion's other dependencies are installed).
MRI and CT share a 1 x 1 x 2 mm grid; PET is stored as a scanner would store it, on its own coarser 2 mm
grid whose origin is half a PET voxel off, so that every fusion also exercises resampling onto the
reference grid.

The phantom is registered in Slicer's Sample Data module (:func:`sampleDataSource`, called at start-up:
it only describes the entry; the volumes are computed when the user clicks it, :func:`loadHeadPhantom`).
"""

from __future__ import annotations

import os
from typing import Callable, Dict, Optional, Sequence, Tuple

import numpy as np


def volumeFromArray(scene, array: np.ndarray, name: str, spacing: Sequence[float] = (1.0, 1.0, 1.0),
                    origin: Sequence[float] = (0.0, 0.0, 0.0)):
    """A new volume node named like ``name`` (made unique in ``scene``) holding a copy of ``array``.

    ``(K, J, I)`` gives a scalar volume, ``(K, J, I, 3)`` uint8 an RGB vector volume; ``spacing`` and
    ``origin`` are (I, J, K) in mm (``MedFusionLib.bridge.node_from_array``)."""
    from MedFusionLib import bridge

    return bridge.node_from_array(scene, array, scene.GetUniqueNameByString(name), spacing=spacing, origin=origin)


def phantomArrays(shape: Tuple[int, int, int] = (24, 64, 64), seed: int = 0) -> Dict[str, np.ndarray]:
    """``MedFusionLib.sampledata.head_phantom`` arrays (``ct``, ``mri``, ``pet``, ``lesions``)."""
    from MedFusionLib import sampledata

    return sampledata.head_phantom(tuple(shape), seed=seed)


def phantomVolumes(scene, shape: Tuple[int, int, int] = (24, 64, 64), seed: int = 0,
                   arrays: Optional[Dict[str, np.ndarray]] = None, namePrefix: str = "",
                   order: Sequence[str] = ("CT", "MRI", "PET")) -> Dict[str, object]:
    """Add ``CT``, ``MRI`` and ``PET`` phantom volume nodes to ``scene``; returns them by modality.

    PET is subsampled 2 x in-plane onto a 2 mm grid shifted by half a PET voxel (its own geometry). Nodes
    are named ``namePrefix + modality`` (made unique) and added in ``order``."""
    arrays = arrays if arrays is not None else phantomArrays(shape, seed)
    k, j, i = arrays["mri"].shape
    spacing = (1.0, 1.0, 2.0)
    origin = (-i / 2.0, -j / 2.0, -float(k))
    geometry = {
        "CT": (arrays["ct"], spacing, origin),
        "MRI": (arrays["mri"], spacing, origin),
        "PET": (np.ascontiguousarray(arrays["pet"][:, ::2, ::2]), (2.0, 2.0, 2.0),
                (origin[0] + 0.5, origin[1] + 0.5, origin[2])),
    }
    if sorted(order) != sorted(geometry):
        raise ValueError(f"order must name CT, MRI and PET once each; got {tuple(order)}")
    return {modality: volumeFromArray(scene, geometry[modality][0], namePrefix + modality, *geometry[modality][1:])
            for modality in order}


# --- Slicer Sample Data ----------------------------------------------------------------------------------
#: Section of the Sample Data module, and the entry's name (its button text).
SAMPLE_CATEGORY = "MedFusion"
SAMPLE_NAME = "MedFusion head phantom: CT, MRI, PET"
#: Thumbnail in ``MedFusion/Resources/Icons`` (drawn by ``docs/make_screenshot.py``).
SAMPLE_THUMBNAIL = "MedFusionHeadPhantom.png"
#: Shape (K, J, I) and seed of the sample-data phantom: 96 x 128 x 128 mm, a few seconds for most methods.
SAMPLE_SHAPE = (48, 128, 128)
SAMPLE_SEED = 0
#: Node attribute marking the phantom's volumes as synthetic.
SAMPLE_ATTRIBUTE = "MedFusion.SampleData"


def sampleDataSource(iconsPath: str, loader: Callable) -> Dict[str, object]:
    """Keyword arguments of ``SampleData.SampleDataLogic.registerCustomSampleDataSource`` for the phantom.

    Slicer's Sample Data module shows one button per source and, for a source with a custom downloader,
    calls ``loader(source)`` on click instead of downloading. The phantom is computed, not downloaded, so
    the source names no file (empty ``uris``/``fileNames``: ``SampleData.downloadSample`` loads nothing
    for it; use :func:`loadHeadPhantom` from Python). Cheap: nothing is computed or imported here.
    """
    return {
        "category": SAMPLE_CATEGORY,
        "sampleName": SAMPLE_NAME,
        "uris": [],
        "fileNames": [],
        "nodeNames": [],
        "customDownloader": loader,
        "thumbnailFileName": os.path.join(iconsPath, SAMPLE_THUMBNAIL),
    }


def loadHeadPhantom(scene, shape: Tuple[int, int, int] = SAMPLE_SHAPE, seed: int = SAMPLE_SEED) -> Dict[str, object]:
    """Add the phantom's ``MRI``, ``PET`` and ``CT`` volumes to ``scene`` (in that order) and return them.

    Nodes are named ``MedFusion phantom MRI`` etc. (unique in the scene), carry the attribute
    :data:`SAMPLE_ATTRIBUTE` and a description saying they are synthetic, and PET is shown through the
    library's ``pet`` colour map. MRI first: the panel pre-selects the first scalar volume as the
    reference and the next as the functional input (MRI + PET)."""
    from . import display

    what = (f"Synthetic head phantom (MedFusionLib.sampledata.head_phantom, shape {tuple(shape)}, seed {seed}); "
            "not patient data.")
    volumes = phantomVolumes(scene, shape, seed, namePrefix="MedFusion phantom ", order=("MRI", "PET", "CT"))
    for modality, node in volumes.items():
        node.SetAttribute(SAMPLE_ATTRIBUTE, modality)
        node.SetDescription(f"{modality} of the {what}")
    display.setVolumeColourMap(volumes["PET"], "pet")
    return volumes
