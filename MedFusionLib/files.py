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

#: How further inputs may be registered onto the reference before fusion.
REGISTRATIONS = ("none",)


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
               progress: Optional[Callable[[float, str], None]] = None, **fuse_kwargs) -> str:
    """Read co-registered inputs, fuse them and write the result atomically to ``output``.

    2-D image files (PNG, TIFF, JPEG, BMP) are fused with each other into an image file; volume files
    (NRRD, NIfTI, MetaImage, ...) through Slicer's volume IO and the bridge into a volume file, keeping
    the reference's geometry. All paths are checked before any file is read
    (:func:`MedFusionLib.paths.check_fuse_paths`); nothing is left at ``output`` on error or cancel.

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
    register : str
        ``"none"``: the inputs are co-registered already.
    progress : callable, optional
        ``progress(fraction, message)``, as for :func:`MedFusionLib.fuse`.
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
    check_fuse_paths(inputs, output)      # before any file is read or voxel fused
    image_inputs = [is_image_file(p) for p in inputs]
    if any(image_inputs):
        if not all(image_inputs) or not is_image_file(output):
            raise FusionError("2-D image files (PNG, TIFF, JPEG, BMP) are fused with each other into an image "
                              "file; volumes (NRRD, NIfTI, MetaImage, ...) into a volume file. Do not mix them.")
        _fuse_image_files(inputs, output, method, params, progress, dict(fuse_kwargs))
        return output
    from . import bridge

    if is_image_file(output):
        raise FusionError("volumes are written as volume files (.nrrd, .nii.gz, .mha, ...), not as images")
    from .memory import check_fuse_files

    # From the headers, before a voxel is read: memory for the whole job, disk space for the output.
    check_fuse_files(inputs, output, method, **{k: fuse_kwargs[k] for k in ("mode", "axis", "batch_size", "colormap")
                                                if k in fuse_kwargs})
    scene = bridge.new_scene()
    nodes = [bridge.load_volume(path, scene) for path in inputs]
    fused = bridge.fuse_volume_nodes(nodes, method, progress=progress, **fuse_kwargs, **params)
    bridge.save_volume(fused, output)
    return output
