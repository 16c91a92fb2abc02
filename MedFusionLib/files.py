"""Fuse files into a file: the one job behind ``medfusion fuse``, the batch script and each cohort study.

Layer: above the public API (:func:`MedFusionLib.fuse`) and the Slicer bridge, below the command line and
the cohort runner, so that every front end reads, checks, fuses and writes the same way.
"""

from __future__ import annotations

import os
from typing import Callable, Dict, Mapping, Optional, Sequence

from .errors import FusionError, FusionInputError
from .evaluation import IMAGE_SUFFIXES
from .pipeline import DEFAULT_METHOD

# How further inputs may be registered onto the reference before fusion ("none", "rigid", "affine"), and
# how PET series are read ("stored": Bq/mL as stored, "suv": body-weight SUV). Both modules import
# SimpleITK and pydicom only when used.
from .registration import REGISTRATIONS  # noqa: E402
from .suv import PET_UNITS  # noqa: E402


def transform_path(output: str, k: int) -> str:
    """Where the registration transform of input ``k`` (1-based, k >= 2) is written: ``OUT.input<k>.tfm``,
    ``OUT`` being the output path without its volume suffix (``fused.nii.gz`` -> ``fused.input2.tfm``)."""
    from .paths import VOLUME_SUFFIXES

    output = os.fspath(output)
    root = output
    for suffix in sorted(VOLUME_SUFFIXES, key=len, reverse=True):
        if output.lower().endswith(suffix):
            root = output[: -len(suffix)]
            break
    return f"{root}.input{k}.tfm"


def is_image_file(path: str) -> bool:
    """A 2-D image file (PNG, TIFF, JPEG, BMP) read with imageio rather than Slicer's volume IO."""
    return os.fspath(path).lower().endswith(IMAGE_SUFFIXES)


def _fuse_image_files(inputs: Sequence[str], output: str, method: str, params: Mapping[str, object],
                      progress: Optional[Callable[[float, str], None]], fuse_kwargs: Dict[str, object]) -> None:
    """2-D image files are fused as arrays: Slicer's IO reads volumes, not these."""
    import imageio.v3 as iio
    import numpy as np

    from .evaluation import read_image
    from .pipeline import fuse

    images = []
    for path in inputs:
        image = read_image(path)
        if image.ndim == 3 and (image[..., 0] == image[..., 1]).all() and (image[..., 1] == image[..., 2]).all():
            image = image[..., 0]    # grey stored as RGB (R = G = B) is grey
        images.append(image)
    if all(im.dtype == np.uint8 for im in images) and "percentiles" not in fuse_kwargs:
        # 8-bit images share one display scale: keep it rather than stretching each to its percentiles.
        fuse_kwargs.setdefault("input_ranges", (0.0, 255.0))
        if fuse_kwargs.get("output_range", "reference") == "reference":
            fuse_kwargs["output_range"] = (0.0, 255.0)
    fused = fuse(images, method, progress=progress, **fuse_kwargs, **params)
    if fused.dtype != np.uint8:
        fused = np.clip(np.rint(fused), 0, 255).astype(np.uint8)
    root, ext = os.path.splitext(output)
    tmp = f"{root}.partial{ext}"
    try:
        iio.imwrite(tmp, fused)
        os.replace(tmp, output)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def fuse_files(inputs: Sequence[str], output: str, method: str = DEFAULT_METHOD, *,
               params: Optional[Mapping[str, object]] = None, register: str = "none",
               progress: Optional[Callable[[float, str], None]] = None, pet_units: Optional[str] = None,
               **fuse_kwargs) -> str:
    """Read the inputs, register them if asked, fuse them and write the result atomically to ``output``.

    2-D image files (PNG, TIFF, JPEG, BMP) are fused with each other into an image file; volume files
    (NRRD, NIfTI, MetaImage, ...) through Slicer's volume IO, and DICOM series (a folder holding one
    series, or ``FOLDER::SERIES_UID``; :mod:`MedFusionLib.dicom`), through the bridge into a volume file,
    keeping the reference's geometry. All paths are checked before any file is read
    (:func:`MedFusionLib.paths.check_fuse_paths`); nothing is left at ``output`` (or at the transform
    files) on error or cancel. Input files are never modified.

    Parameters
    ----------
    inputs : sequence of str
        Input files, the anatomical reference first.
    output : str
        Output file; its extension picks the format.
    method : str
        A registered fusion method (``medfusion methods``).
    params : mapping, optional
        The method's parameters (values may be strings, as given on the command line).
    register : {"none", "rigid", "affine"}
        ``"none"``: the inputs are co-registered already. ``"rigid"``/``"affine"``: every further volume is
        registered onto the reference first (:mod:`MedFusionLib.registration`; volumes only); the transform
        of input ``k`` is written beside the output as :func:`transform_path` (``OUT.input<k>.tfm``, ITK
        format, reference to input, as Slicer and ITK read it). A failed registration raises
        :class:`MedFusionLib.RegistrationError` and writes nothing.
    progress : callable, optional
        ``progress(fraction, message)``, as for :func:`MedFusionLib.fuse`.
    pet_units : {None, "stored", "suv"}
        ``"suv"``: every PET (PT) DICOM series input is converted to body-weight SUV
        (:mod:`MedFusionLib.suv`), so that ``input_ranges`` can be given in SUV; at least one input must be
        a PT series. ``None``/``"stored"``: values as stored.
    **fuse_kwargs
        ``mode``, ``axis``, ``batch_size``, ``percentiles``, ``input_ranges``, ``output_range``,
        ``colormap``, ``colour_space``: as for :func:`MedFusionLib.fuse`.

    Returns
    -------
    str
        ``output``.
    """
    from .paths import check_fuse_paths

    inputs = [os.fspath(p) for p in inputs]
    output = os.fspath(output)
    params = dict(params or {})
    if register not in REGISTRATIONS:
        raise FusionInputError(f"unknown registration {register!r}; allowed: {', '.join(REGISTRATIONS)}")
    pet_units = "stored" if pet_units is None else pet_units
    if pet_units not in PET_UNITS:
        raise FusionInputError(f"unknown PET units {pet_units!r}; allowed: {', '.join(PET_UNITS)}")
    check_fuse_paths(inputs, output)      # before any file is read or voxel fused
    image_inputs = [is_image_file(p) for p in inputs]
    if any(image_inputs):
        if not all(image_inputs) or not is_image_file(output):
            raise FusionError("2-D image files (PNG, TIFF, JPEG, BMP) are fused with each other into an image "
                              "file; volumes (NRRD, NIfTI, MetaImage, ...) into a volume file. Do not mix them.")
        if register != "none":
            raise FusionInputError(f"register={register!r} registers volumes; 2-D image files are fused as they "
                                   "are (register='none')")
        if pet_units != "stored":
            raise FusionInputError("pet_units='suv' converts PET DICOM series; these inputs are 2-D image files")
        _fuse_image_files(inputs, output, method, params, progress, dict(fuse_kwargs))
        return output
    from . import dicom

    # DICOM series are picked (headers only) before any voxel is read: a folder of several series, an
    # unknown UID or SUV without a PET series fail here.
    series = [dicom.select_series(p) if dicom.is_series_input(p) else None for p in inputs]
    if pet_units == "suv" and not any(s is not None and s.modality == "PT" for s in series):
        raise FusionInputError("pet_units='suv' (--pet-units suv) converts PET DICOM series to SUV, but no input "
                               "is a PET (PT) DICOM series; SUV is computed from DICOM tags, which volume files "
                               "do not carry")
    from . import bridge

    if is_image_file(output):
        raise FusionError("volumes are written as volume files (.nrrd, .nii.gz, .mha, ...), not as images")
    from .memory import check_fuse_files

    # From the headers, before a voxel is read: memory for the whole job, disk space for the output.
    check_fuse_files(inputs, output, method, **{k: fuse_kwargs[k] for k in ("mode", "axis", "batch_size", "colormap")
                                                if k in fuse_kwargs})
    scene = bridge.new_scene()
    nodes = load_input_nodes(inputs, scene, pet_units)
    fused = bridge.fuse_volume_nodes(nodes, method, progress=progress, register=register, **fuse_kwargs, **params)
    save_fused(fused, output)
    return output


def load_input_nodes(inputs: Sequence[str], scene, pet_units: Optional[str] = None) -> list:
    """Read volume files (Slicer's volume IO) and DICOM series (:mod:`MedFusionLib.dicom`; PET series in
    SUV when ``pet_units`` is ``"suv"``) into ``scene`` as volume nodes, in the order of ``inputs``."""
    from . import bridge, dicom

    nodes = []
    for path in inputs:
        if not dicom.is_series_input(path):
            nodes.append(bridge.load_volume(path, scene))
            continue
        modality = dicom.select_series(path).modality
        nodes.append(dicom.load_series_node(path, scene, pet_units=pet_units if modality == "PT" else None))
    return nodes


def save_fused(fused, output: str) -> None:
    """Write a fused volume node to ``output`` and, when its inputs were registered (node references
    :data:`MedFusionLib.bridge.REGISTRATION_ROLE`), the transform of input ``k`` beside it
    (:func:`transform_path`): all of them or none (an existing transform file is replaced only once the
    output is written)."""
    import vtk

    from . import bridge
    from .bridge_geometry import _matrix_array
    from .registration import write_transform

    staged = []      # (temporary, final)
    try:
        for k in range(fused.GetNumberOfNodeReferences(bridge.REGISTRATION_ROLE)):
            node = fused.GetNthNodeReference(bridge.REGISTRATION_ROLE, k)
            matrix = vtk.vtkMatrix4x4()
            node.GetMatrixTransformFromParent(matrix)
            final = transform_path(output, k + 2)
            temporary = final[: -len(".tfm")] + ".staged.tfm"
            staged.append((temporary, final))
            write_transform(temporary, _matrix_array(matrix))
        bridge.save_volume(fused, output)
        for temporary, final in staged:
            os.replace(temporary, final)
    finally:
        for temporary, _ in staged:
            if os.path.exists(temporary):
                os.remove(temporary)
