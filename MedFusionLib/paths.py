"""Checks on input and output paths, made before any file is read or any voxel fused.

The command line runs :func:`check_fuse_paths` first, so that a typo in the output folder, a folder given
as an input or an unknown output format is reported at once, with what is allowed, instead of after the
fusion ran (issue 12, item 2).
"""

from __future__ import annotations

import os
from typing import Sequence

from .errors import FusionInputError
from .evaluation import IMAGE_SUFFIXES   # the 2-D image files the command line reads (imageio)

#: Volume files Slicer's storage nodes read and write (NRRD through its NRRD storage node, the rest
#: through the ITK-based archetype storage node).
VOLUME_SUFFIXES = (".nrrd", ".nhdr", ".nii", ".nii.gz", ".mha", ".mhd", ".vtk", ".gipl", ".gipl.gz")


def _is_dicom(path: str) -> bool:
    # DICOM Part 10 files carry "DICM" after a 128-byte preamble.
    try:
        with open(path, "rb") as fh:
            head = fh.read(132)
    except OSError:
        return False
    return len(head) == 132 and head[128:132] == b"DICM"


def explain_folder(path: str) -> str:
    """Why a folder cannot be an input here, saying whether it holds a DICOM series."""
    try:
        names = sorted(os.listdir(path))
    except OSError as exc:
        return f"{path!r} is a folder that cannot be listed ({exc.strerror})"
    dicom = [n for n in names if os.path.isfile(os.path.join(path, n)) and _is_dicom(os.path.join(path, n))]
    if dicom:
        return (f"{path!r} is a folder holding a DICOM series ({len(dicom)} DICOM files); medfusion fuse reads "
                "image or volume files, not DICOM folders yet: export the series as NRRD or NIfTI first (Slicer's "
                "DICOM module, or dcm2niix)")
    return (f"{path!r} is a folder (no DICOM files in it); medfusion fuse takes one file per input image "
            f"({', '.join(IMAGE_SUFFIXES + VOLUME_SUFFIXES)})")


def check_input_files(paths: Sequence[str]) -> None:
    """Every input exists and is a readable file; a folder is explained (DICOM series or not)."""
    for path in paths:
        if os.path.isdir(path):
            raise FusionInputError(explain_folder(path))
        if not os.path.exists(path):
            raise FusionInputError(f"input {path!r} does not exist")
        if not os.access(path, os.R_OK):
            raise FusionInputError(f"input {path!r} is not readable")


def check_output_file(path: str, allowed: Sequence[str] = IMAGE_SUFFIXES + VOLUME_SUFFIXES) -> None:
    """The output has a known format, is not a folder, and its folder exists and is writable."""
    if os.path.isdir(path):
        raise FusionInputError(f"output {path!r} is a folder; give a file name ({', '.join(allowed)})")
    if not path.lower().endswith(tuple(allowed)):
        raise FusionInputError(f"output {path!r} has an unknown format; allowed: {', '.join(allowed)}")
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise FusionInputError(f"the folder of output {path!r} does not exist ({folder}); create it first")
    if not os.access(folder, os.W_OK):
        raise FusionInputError(f"the folder of output {path!r} is not writable ({folder})")


def check_fuse_paths(inputs: Sequence[str], output: str) -> None:
    """All checks of ``medfusion fuse``'s paths, in the order a user would fix them."""
    check_input_files(inputs)
    check_output_file(output)
