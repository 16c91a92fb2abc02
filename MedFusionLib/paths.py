"""Checks on input and output paths, made before any file is read or any voxel fused.

The command line runs :func:`check_fuse_paths` first, so that a typo in the output folder, a folder given
as an input or an unknown output format is reported at once, with what is allowed, instead of after the
fusion ran (issue 12, item 2). A folder input must hold exactly one DICOM series, or name one as
``FOLDER::SERIES_UID`` (issue 11; :mod:`MedFusionLib.dicom`).
"""

from __future__ import annotations

import os
from typing import Sequence

from .errors import FusionInputError
from .evaluation import IMAGE_SUFFIXES   # the 2-D image files the command line reads (imageio)

#: Volume files Slicer's storage nodes read and write (NRRD through its NRRD storage node, the rest
#: through the ITK-based archetype storage node).
VOLUME_SUFFIXES = (".nrrd", ".nhdr", ".nii", ".nii.gz", ".mha", ".mhd", ".vtk", ".gipl", ".gipl.gz")


def explain_folder(path: str) -> str:
    """Why a folder cannot be an input here: it holds no DICOM files (or cannot be listed)."""
    try:
        os.listdir(path)
    except OSError as exc:
        return f"{path!r} is a folder that cannot be listed ({exc.strerror})"
    return (f"{path!r} is a folder (no DICOM files in it); medfusion fuse takes one file per input image "
            f"({', '.join(IMAGE_SUFFIXES + VOLUME_SUFFIXES)}) or a folder holding one DICOM series")


def check_series_input(path: str) -> None:
    """A DICOM series input (a folder, or ``FOLDER::SERIES_UID``) names exactly one series.

    A folder without DICOM files is explained; a folder of several series is refused with their UIDs
    and how to pick one (:func:`MedFusionLib.dicom.select_series`)."""
    from . import dicom

    folder, uid = dicom.split_series_path(path)
    if not os.path.isdir(folder):
        if uid is not None:
            raise FusionInputError(f"input {path!r}: folder {folder!r} does not exist (a DICOM series is given as "
                                   f"FOLDER{dicom.SERIES_SEPARATOR}SERIES_UID)")
        raise FusionInputError(f"input {path!r} does not exist")
    if not dicom.dicom_files(folder):
        raise FusionInputError(explain_folder(folder))
    dicom.select_series(path)


def check_input_files(paths: Sequence[str]) -> None:
    """Every input exists and is a readable file, or names one DICOM series (a folder holding one
    series, or ``FOLDER::SERIES_UID``)."""
    from .dicom import is_series_input

    for path in paths:
        if is_series_input(path):
            check_series_input(path)
            continue
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
