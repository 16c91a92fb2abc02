"""Memory and disk guards: estimate what a fusion or a file read needs before any work, refuse what won't fit.

A fusion call holds its output (float32, or RGB uint8) for the whole volume and, while it works, the
working arrays of one block: one slice batch (``mode='slices'``) or the whole image/volume (2-D and
``mode='3d'``). Its peak is estimated as::

    peak = output bytes + factor(method) x inputs x voxels per block + fixed(method)

with ``factor`` (bytes per input voxel of a block) and ``fixed`` (a per-call constant: filter banks,
network activations of one mini-batch, ...) measured per method by ``Testing/Benchmarks/
calibrate_memory.py`` (peak resident memory of a fresh process; the figures and how they were taken are
in ``docs/reliability.md``), with a 25 % margin on top. Available memory is ``MEDFUSION_MAX_MEMORY``
when set (``"2G"``, ``"500M"``, ``"1.5GiB"``, bytes), else psutil's ``available`` when psutil is
installed, else ``MemAvailable`` of ``/proc/meminfo``; where none is known the check is skipped.

Volume files are sized from their headers, read cheaply here (NRRD, NIfTI-1/2, MetaImage; SimpleITK's
``ReadImageInformation`` for other formats when SimpleITK is installed), so a header that claims a huge
volume is refused before the reader tries to allocate it (Slicer's readers abort the process on a failed
allocation).
"""

from __future__ import annotations

import contextlib
import contextvars
import gzip
import os
import re
import shutil
import struct
from dataclasses import dataclass
from typing import Dict, Iterator, Optional, Sequence, Tuple

import numpy as np

from .errors import FusionInputError

#: Safety margin applied on top of every measured factor.
MARGIN = 1.25

_MIB = 1 << 20
#: (bytes per input voxel of a block, fixed bytes per call) as measured by Testing/Benchmarks/
#: calibrate_memory.py on the 2-core CI machine (docs/reliability.md), rounded up, at least 8 B/voxel (the
#: normalised float32 stack and one temporary), before the margin.
METHOD_FACTORS: Dict[str, Tuple[float, float]] = {
    "average": (9, 0 * _MIB),
    "max": (8, 0 * _MIB),
    "min": (8, 0 * _MIB),
    "pca": (24, 0 * _MIB),
    "weighted_average": (9, 0 * _MIB),
    "dwt": (22, 0 * _MIB),
    "laplacian": (34, 1 * _MIB),
    "guided_filter": (60, 0 * _MIB),
    "max_detail": (43, 1 * _MIB),
    "nsst_similarity": (473, 17 * _MIB),
    "nsst_papcnn": (52, 24 * _MIB),
    "nsst_abnm_wsml": (61, 23 * _MIB),
    "nsst_dcscm": (52, 24 * _MIB),
    "nsct": (40, 19 * _MIB),
    "csr": (152, 250 * _MIB),
    "cnn_weight_map": (23, 25 * _MIB),
    "dscnn": (10, 81 * _MIB),
    "ifcnn": (46, 44 * _MIB),
    "pmgi": (8, 123 * _MIB),
    "fusiondn": (8, 86 * _MIB),
    "u2fusion": (18, 85 * _MIB),
    "fusiongan": (23, 23 * _MIB),
    "ddcgan": (29, 55 * _MIB),
    "mgmdcgan": (28, 55 * _MIB),
    "tissue_cgan": (10, 37 * _MIB),
    "unet_fusion": (8, 52 * _MIB),
    "mcfnet": (16, 55 * _MIB),
}
#: A method without a row (one registered later, e.g. by a plug-in) takes the largest of its family.
FAMILY_FACTORS: Dict[str, Tuple[float, float]] = {
    "classical": (60, 1 * _MIB),
    "signal processing": (473, 250 * _MIB),
    "deep learning": (46, 123 * _MIB),
}
#: ... and of all families when its family is new too.
DEFAULT_FACTOR: Tuple[float, float] = (473, 250 * _MIB)

_UNITS = {"": 1, "b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


class MemoryLimitError(FusionInputError):
    """The call would need more memory (or disk) than is available; raised before any work."""


# --- sizes -----------------------------------------------------------------------------------------------
def parse_size(text: str) -> int:
    """``"2G"``, ``"500M"``, ``"1.5GiB"``, ``"800MB"``, ``"1048576"`` -> bytes (binary units)."""
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([kmgtKMGT]?)(?:i?[bB])?\s*", str(text))
    if not match:
        raise FusionInputError(f"MEDFUSION_MAX_MEMORY must be a size like 2G, 500M or 1.5GiB; got {text!r}")
    return int(float(match.group(1)) * _UNITS[match.group(2).lower()])


def format_size(nbytes: float) -> str:
    """Bytes as a short binary-unit string (``1.5 GiB``)."""
    value = float(nbytes)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if abs(value) < 1024 or unit == "PiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} PiB"


def available_memory() -> Tuple[Optional[int], str]:
    """(bytes available for a call, where that figure comes from); (None, reason) when unknown."""
    limit = os.environ.get("MEDFUSION_MAX_MEMORY", "").strip()
    if limit:
        return parse_size(limit), f"MEDFUSION_MAX_MEMORY={limit}"
    try:
        import psutil  # optional: present in many environments, never required
    except ImportError:
        psutil = None
    if psutil is not None:
        return int(psutil.virtual_memory().available), "available memory"
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024, "available memory"
    except (OSError, ValueError, IndexError):
        pass
    return None, "unknown"


# --- fusion estimate -------------------------------------------------------------------------------------
def method_factor(spec) -> Tuple[float, float]:
    """(bytes per input voxel of a block, fixed bytes) for a method, margin included."""
    per_voxel, fixed = METHOD_FACTORS.get(spec.name) or FAMILY_FACTORS.get(spec.family) or DEFAULT_FACTOR
    return per_voxel * MARGIN, fixed * MARGIN


def block_voxels(spatial_shape: Sequence[int], mode: str, axis: int, batch_size: int) -> int:
    """Voxels of one input that one block (a slice batch, or the whole image/volume) holds."""
    total = int(np.prod(spatial_shape, dtype=np.int64))
    if mode == "slices":
        return total // int(spatial_shape[axis]) * int(batch_size)
    return total


def estimate_fusion(spec, n_inputs: int, spatial_shape: Sequence[int], mode: str, axis: int, batch_size: int,
                    colour_output: bool = False) -> int:
    """Estimated peak bytes a fusion call allocates (its inputs not counted: the caller holds them)."""
    per_voxel, fixed = method_factor(spec)
    voxels = int(np.prod(spatial_shape, dtype=np.int64))
    output = voxels * (3 if colour_output else 4)
    # Colour inputs add a chroma copy (2 float32 channels) per block and input.
    work = block_voxels(spatial_shape, mode, axis, batch_size) * n_inputs * (per_voxel + (8 if colour_output else 0))
    return int(output + work + fixed)


def _describe_plan(spec, shape, mode, axis, batch_size, n_inputs) -> str:
    size = " x ".join(str(s) for s in shape)
    if mode == "slices":
        return (f"{spec.name!r} on {n_inputs} inputs of {size} in slices along axis {axis}, "
                f"{batch_size} per batch")
    return f"{spec.name!r} on {n_inputs} inputs of {size}" + (" in 3-D" if mode == "3d" else "")


#: Memory the caller holds besides the fusion (bytes, what for), set by :func:`reserving`.
_RESERVED: contextvars.ContextVar[Tuple[int, str]] = contextvars.ContextVar("medfusion_reserved", default=(0, ""))


@contextlib.contextmanager
def reserving(nbytes: float, what: str) -> Iterator[None]:
    """Within the block, :func:`check_fusion` leaves ``nbytes`` of the available memory to the caller
    (e.g. the volumes ``medfusion fuse`` holds while it fuses), so what it says would fit really fits."""
    token = _RESERVED.set((int(nbytes), what))
    try:
        yield
    finally:
        _RESERVED.reset(token)


def check_fusion(spec, n_inputs: int, spatial_shape: Sequence[int], mode: str, axis: int, batch_size: int,
                 colour_output: bool = False) -> Optional[int]:
    """Raise :class:`MemoryLimitError` when the call's estimated peak exceeds the available memory.

    The message gives the estimate, what is available and what would fit (``mode='slices'``, a smaller
    ``batch_size``); memory set aside with :func:`reserving` is not available to the fusion. Returns the
    estimate (None when the available memory is unknown)."""
    total, source = available_memory()
    if total is None:
        return None
    reserved, reserved_for = _RESERVED.get()
    available = total - reserved
    need = estimate_fusion(spec, n_inputs, spatial_shape, mode, axis, batch_size, colour_output)
    if need <= available:
        return need
    shape = tuple(int(s) for s in spatial_shape)
    hints = []
    if len(shape) == 3:
        # What fits in slices: the largest batch along the same axis (or along any axis when needed).
        axes = [axis] + [a for a in range(3) if a != axis] if mode == "slices" else list(range(3))
        for a in axes:
            fits = [b for b in (64, 32, 16, 8, 4, 2, 1) if b <= shape[a] and
                    estimate_fusion(spec, n_inputs, shape, "slices", a, b, colour_output) <= available]
            if fits and spec.batched:
                b = fits[0]
                hints.append(f"mode='slices', axis={a}, batch_size={b} (about "
                             f"{format_size(estimate_fusion(spec, n_inputs, shape, 'slices', a, b, colour_output))})")
                break
            if fits:
                hints.append(f"mode='slices', axis={a}")
                break
    if not hints:
        own = METHOD_FACTORS.get(spec.name, DEFAULT_FACTOR)[0]
        lighter = [repr(m) for m in ("average", "laplacian") if METHOD_FACTORS[m][0] < own]
        hints.append("none of this method's modes: free memory, use a smaller volume (crop or resample it)"
                     + (f" or a lighter method (e.g. {' or '.join(lighter)})" if lighter else ""))
    held = f" besides {format_size(reserved)} {reserved_for}" if reserved else ""
    raise MemoryLimitError(
        f"fusing {_describe_plan(spec, shape, mode, axis, batch_size, n_inputs)} needs about {format_size(need)} "
        f"of memory{held}, more than the {format_size(total)} available ({source}). What would fit: "
        f"{'; '.join(hints)}.")


# --- file headers ----------------------------------------------------------------------------------------
@dataclass
class VolumeInfo:
    """What a volume file's header says: voxel grid ``(K, J, I)``, components per voxel, bytes per value."""

    shape: Tuple[int, ...]
    components: int
    itemsize: int

    @property
    def voxels(self) -> int:
        return int(np.prod(self.shape, dtype=np.float64)) if self.shape else 0

    @property
    def nbytes(self) -> float:       # float: a corrupt header may claim more than int64 holds
        return float(np.prod(self.shape, dtype=np.float64)) * self.components * self.itemsize

    def describe(self) -> str:
        size = " x ".join(str(s) for s in reversed(self.shape))
        comps = f", {self.components} components" if self.components > 1 else ""
        return f"{size} voxels of {self.itemsize} bytes{comps} ({format_size(self.nbytes)})"


_NRRD_TYPES = {
    1: ("signed char", "int8", "char", "uchar", "unsigned char", "uint8", "uint8_t", "int8_t"),
    2: ("short", "short int", "signed short", "signed short int", "int16", "int16_t", "ushort", "unsigned short",
        "unsigned short int", "uint16", "uint16_t"),
    4: ("int", "signed int", "int32", "int32_t", "uint", "unsigned int", "uint32", "uint32_t", "float"),
    8: ("longlong", "long long", "long long int", "signed long long", "signed long long int", "int64", "int64_t",
        "ulonglong", "unsigned long long", "unsigned long long int", "uint64", "uint64_t", "double"),
}
_NRRD_ITEMSIZE = {name: size for size, names in _NRRD_TYPES.items() for name in names}
_NRRD_COMPONENT_KINDS = ("rgb-color", "rgba-color", "vector", "covariant-vector", "normal", "3-color", "4-color",
                         "hsv-color", "xyz-color", "list", "point", "complex", "2-vector", "3-vector", "4-vector",
                         "3-gradient", "3-normal", "4-color", "quaternion", "2d-symmetric-matrix",
                         "2d-masked-symmetric-matrix", "2d-matrix", "2d-masked-matrix", "3d-symmetric-matrix",
                         "3d-masked-symmetric-matrix", "3d-matrix", "3d-masked-matrix")


def _read_nrrd(path: str) -> Optional[VolumeInfo]:
    fields: Dict[str, str] = {}
    with open(path, "rb") as fh:
        if not fh.read(4) == b"NRRD":
            return None
        fh.readline()
        for _ in range(1000):          # a header is text lines up to the first blank one
            line = fh.readline(65536)
            if not line or not line.strip():
                break
            text = line.decode("latin-1").strip()
            if text.startswith("#") or ":=" in text:
                continue
            key, sep, value = text.partition(":")
            if sep:
                fields[key.strip().lower()] = value.strip()
    try:
        sizes = [int(v) for v in fields["sizes"].split()]
        itemsize = _NRRD_ITEMSIZE[fields["type"].lower()]
    except (KeyError, ValueError):
        return None
    kinds = fields.get("kinds", "").lower().split()
    components = 1
    if len(kinds) == len(sizes) and kinds and kinds[0] in _NRRD_COMPONENT_KINDS:
        components, sizes = sizes[0], sizes[1:]
    return VolumeInfo(tuple(reversed(sizes)), components, itemsize)


_NIFTI_ITEMSIZE = {2: 1, 4: 2, 8: 4, 16: 4, 32: 8, 64: 8, 128: 3, 256: 1, 512: 2, 768: 4, 1024: 8, 1280: 8,
                   1536: 16, 1792: 16, 2048: 32, 2304: 4}


def _read_nifti(path: str) -> Optional[VolumeInfo]:
    opener = gzip.open if path.lower().endswith(".gz") else open
    with opener(path, "rb") as fh:
        head = fh.read(540)
    if len(head) < 348:
        return None
    for order in "<>":
        size = struct.unpack(order + "i", head[:4])[0]
        if size == 348:
            dims = struct.unpack(order + "8h", head[40:56])
            datatype = struct.unpack(order + "h", head[70:72])[0]
            break
        if size == 540 and len(head) >= 540:
            datatype = struct.unpack(order + "h", head[12:14])[0]
            dims = struct.unpack(order + "8q", head[16:80])
            break
    else:
        return None
    ndim = dims[0]
    if not 1 <= ndim <= 7 or datatype not in _NIFTI_ITEMSIZE:
        return None
    extent = [max(1, int(d)) for d in dims[1:1 + ndim]]
    spatial, rest = extent[:3], extent[3:]
    itemsize = _NIFTI_ITEMSIZE[datatype]
    components = int(np.prod(rest)) if rest else 1
    if datatype == 128:               # RGB24: 3 components of 1 byte
        components, itemsize = components * 3, 1
    return VolumeInfo(tuple(reversed(spatial)), components, itemsize)


_META_ITEMSIZE = {"MET_CHAR": 1, "MET_UCHAR": 1, "MET_SHORT": 2, "MET_USHORT": 2, "MET_INT": 4, "MET_UINT": 4,
                  "MET_LONG": 4, "MET_ULONG": 4, "MET_LONG_LONG": 8, "MET_ULONG_LONG": 8, "MET_FLOAT": 4,
                  "MET_DOUBLE": 8}


def _read_meta(path: str) -> Optional[VolumeInfo]:
    fields: Dict[str, str] = {}
    with open(path, "rb") as fh:
        for _ in range(200):
            line = fh.readline(65536).decode("latin-1")
            if not line:
                break
            key, sep, value = line.partition("=")
            if not sep:
                return None
            fields[key.strip().lower()] = value.strip()
            if key.strip().lower() == "elementdatafile":
                break
    try:
        sizes = [int(v) for v in fields["dimsize"].split()]
        itemsize = _META_ITEMSIZE[fields["elementtype"].upper()]
        components = int(fields.get("elementnumberofchannels", "1"))
    except (KeyError, ValueError):
        return None
    return VolumeInfo(tuple(reversed(sizes)), components, itemsize)


def _read_with_simpleitk(path: str) -> Optional[VolumeInfo]:
    try:
        import SimpleITK as sitk  # the optional 'clinical' extra
    except ImportError:
        return None
    try:
        reader = sitk.ImageFileReader()
        reader.SetFileName(path)
        reader.ReadImageInformation()
        size = reader.GetSize()
        components = reader.GetNumberOfComponents()
        itemsize = np.dtype(sitk.GetArrayViewFromImage(sitk.Image([1] * len(size), reader.GetPixelID()))
                            .dtype).itemsize
    except Exception:   # noqa: BLE001 - unreadable here means: leave it to Slicer's reader
        return None
    return VolumeInfo(tuple(reversed(size)), max(1, components), itemsize)


def _series_info(path: str) -> Optional[VolumeInfo]:
    """A DICOM series input's grid from its first file's header: slices x rows x columns, read as float32
    (float64 for 32-bit stored values), as :func:`MedFusionLib.dicom.read_series` reads it. A folder is
    never handed to a file reader (SimpleITK's HDF5 probe printed pages of 'Is a directory' to stderr)."""
    from . import dicom

    try:
        series = dicom.select_series(path)
        sitk = dicom.import_simpleitk()
        reader = sitk.ImageFileReader()
        reader.SetImageIO("GDCMImageIO")
        reader.SetFileName(series.files[0])
        reader.ReadImageInformation()
        columns, rows = reader.GetSize()[:2]
        itemsize = 8 if dicom._bits_allocated(series.files[0]) > 16 else 4
    except Exception:   # noqa: BLE001 - unreadable here means: leave it to the series reader
        return None
    return VolumeInfo((len(series.files), int(rows), int(columns)), 1, itemsize)


def volume_info(path: str) -> Optional[VolumeInfo]:
    """The voxel grid a volume file's header claims, read without reading its voxels; None when the
    format is not one read here or the header is unreadable (then the reader itself will say why)."""
    from .dicom import is_series_input

    if is_series_input(path):
        return _series_info(path)
    lower = os.fspath(path).lower()
    try:
        if lower.endswith((".nrrd", ".nhdr")):
            return _read_nrrd(path)
        if lower.endswith((".nii", ".nii.gz", ".hdr", ".img")):
            return _read_nifti(path)
        if lower.endswith((".mha", ".mhd")):
            return _read_meta(path)
    except (OSError, EOFError, struct.error, ValueError):
        return None
    return _read_with_simpleitk(path)


#: Reading a volume through Slicer's storage nodes holds its voxels once in the reader's output and once
#: in the node's image data (measured 2.0x the voxel bytes for a 256^3 float NRRD; docs/reliability.md).
READ_FACTOR = 2.0


def check_read(path: str) -> Optional[VolumeInfo]:
    """Refuse (``MemoryLimitError``) a file whose header claims more voxels than memory can hold."""
    info = volume_info(path)
    if info is None:
        return None
    available, source = available_memory()
    need = info.nbytes * READ_FACTOR
    if available is not None and need > available:
        raise MemoryLimitError(
            f"cannot load {path!r}: its header says {info.describe()}; reading it needs about {format_size(need)} "
            f"of memory, more than the {format_size(available)} available ({source}). Is the header corrupt? "
            f"Otherwise crop or resample the volume first.")
    return info


# --- disk ------------------------------------------------------------------------------------------------
def check_free_space(output: str, nbytes: float) -> None:
    """Refuse (``MemoryLimitError``) when the output's folder has less free space than ``nbytes``."""
    folder = os.path.dirname(os.path.abspath(output))
    try:
        free = shutil.disk_usage(folder).free
    except OSError:
        return
    if nbytes > free:
        raise MemoryLimitError(
            f"output {output!r} needs about {format_size(nbytes)} of disk space (uncompressed); its folder "
            f"{folder} has {format_size(free)} free")


def check_fuse_files(inputs: Sequence[str], output: str, method: str, *, mode: str = "auto", axis: int = 0,
                     batch_size: Optional[int] = None, colormap=None) -> None:
    """Before ``medfusion fuse`` reads a voxel: every input's header fits in memory, the whole job (inputs
    on the reference grid plus the fusion's estimate) fits, and the output fits on its disk."""
    from .pipeline import plan

    infos = [check_read(p) for p in inputs]
    reference = infos[0] if infos else None
    if reference is None or any(i is None for i in infos):
        return      # a format sized only by its reader (2-D images are small): the reader checks
    shape = reference.shape
    voxels = reference.voxels
    # Held while the fusion runs: every input as read, the others resampled onto the reference grid (same
    # type), and the fused array copied into the output node (float32 at most). The fusion's check, and
    # what it says would fit, count only the memory left beside them.
    held = sum(i.nbytes for i in infos) + sum(voxels * i.components * i.itemsize for i in infos[1:]) + voxels * 4
    stand_ins = [np.broadcast_to(np.zeros((), np.uint8), shape + (3,)) if i.components >= 3
                 else np.broadcast_to(np.zeros((), np.float32), shape) for i in infos]
    try:
        with reserving(held, "for the inputs and output node"):
            fusion_plan = plan(stand_ins, method, mode=mode, axis=axis, batch_size=batch_size, colormap=colormap)
    except MemoryLimitError:
        raise
    except FusionInputError:
        return      # the real call reports what is wrong with its arguments
    check_free_space(output, voxels * (3 if fusion_plan.colour_output else 4) + 65536)
