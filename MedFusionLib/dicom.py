"""DICOM series as inputs: list the series of a folder, read one with its geometry and rescaled values.

Reader: SimpleITK's GDCM series reader (``ImageSeriesReader`` with ``GDCMImageIO``). It is what Slicer
and ITK themselves use, it orders slices by their Image Position (Patient) projected on the slice normal
(not by file name or Instance Number), derives spacing, origin and direction from Image Position /
Orientation (Patient) and Pixel Spacing, and applies each file's Rescale Slope / Intercept. pydicom or
highdicom would leave all of this to us; highdicom is made for writing derived objects (SEG, SR), not for
reading image series. We add only what GDCM does not check: that all slices share one orientation and
are evenly spaced (a gantry-tilted or gapped series would otherwise be read with the wrong geometry).

Choosing a series: a folder holding one series is read as it is; in a folder holding several, the input
is written ``FOLDER::SERIES_INSTANCE_UID`` (:data:`SERIES_SEPARATOR`), and a folder alone is refused with
the list of its series. The folder itself is searched, not its subfolders.

Geometry is returned in Slicer's RAS convention (DICOM and ITK use LPS: x and y change sign), arrays in
Slicer's ``(K, J, I)`` order (:func:`MedFusionLib.bridge.node_from_array` takes them as they are).
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from .errors import FusionInputError

#: Separates a folder from the Series Instance UID of the series to read in it: ``FOLDER::UID``.
SERIES_SEPARATOR = "::"
#: The extra that installs the clinical-data dependencies.
CLINICAL_EXTRA = "pip install medfusion[clinical]"
# Tolerances of the geometry checks: orientation cosines, and slice spacing relative to the mean.
_ORIENTATION_TOLERANCE = 1e-4
_SPACING_TOLERANCE = 0.01
# LPS <-> RAS: x and y change sign.
_LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0])


def import_simpleitk():
    """SimpleITK, or a clear error naming the extra that installs it."""
    try:
        import SimpleITK as sitk
    except ImportError:
        raise FusionInputError(f"DICOM series and registration need SimpleITK: {CLINICAL_EXTRA}") from None
    return sitk


def is_dicom_file(path: str) -> bool:
    """A DICOM Part 10 file: ``DICM`` after the 128-byte preamble."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(132)
    except OSError:
        return False
    return len(head) == 132 and head[128:132] == b"DICM"


def dicom_files(folder: str) -> List[str]:
    """The DICOM Part 10 files directly in ``folder`` (not in its subfolders), sorted by name."""
    try:
        names = sorted(os.listdir(folder))
    except OSError:
        return []
    paths = [os.path.join(folder, n) for n in names]
    return [p for p in paths if os.path.isfile(p) and is_dicom_file(p)]


def split_series_path(path: str) -> Tuple[str, Optional[str]]:
    """``"FOLDER::UID"`` -> ``("FOLDER", "UID")``; anything else -> ``(path, None)``."""
    path = os.fspath(path)
    if SERIES_SEPARATOR in path:
        folder, uid = path.rsplit(SERIES_SEPARATOR, 1)
        return folder, uid.strip()
    return path, None


def is_series_input(path: str) -> bool:
    """Whether an input names a DICOM series: a folder, or ``FOLDER::UID``."""
    folder, uid = split_series_path(path)
    return uid is not None or os.path.isdir(folder)


@dataclass(frozen=True)
class SeriesInfo:
    """One series of a folder, as listed by :func:`list_series`."""

    uid: str
    files: Tuple[str, ...]
    modality: str = ""
    description: str = ""
    number: str = ""

    def describe(self) -> str:
        what = " ".join(v for v in (self.modality, f"#{self.number}" if self.number else "",
                                     repr(self.description) if self.description else "") if v)
        return f"{self.uid} ({what + ', ' if what else ''}{len(self.files)} file{'s' * (len(self.files) != 1)})"


def _tag(reader, key: str) -> str:
    return reader.GetMetaData(key).strip() if reader.HasMetaDataKey(key) else ""


def _folder_signature(folder: str) -> Tuple[Tuple[str, int, int], ...]:
    """Names, sizes and modification times of a folder's files: what a series listing depends on."""
    entries = []
    with os.scandir(folder) as it:
        for entry in it:
            if entry.is_file():
                st = entry.stat()
                entries.append((entry.name, st.st_size, st.st_mtime_ns))
    return tuple(sorted(entries))


def list_series(folder: str) -> List[SeriesInfo]:
    """The DICOM series directly in ``folder``, each with its files in GDCM's slice order.

    A job lists a folder several times (path checks, the memory guard, picking the series, reading it; the
    cohort's client and its worker): the listing is kept for as long as the folder's files are unchanged
    (names, sizes, modification times), so GDCM parses the headers once.

    Raises
    ------
    FusionInputError
        SimpleITK is missing, or the folder holds no readable DICOM image series.
    """
    try:
        signature = _folder_signature(folder)
    except OSError:
        return []
    return list(_list_series(os.fspath(folder), signature))


@functools.lru_cache(maxsize=32)
def _list_series(folder: str, signature) -> Tuple[SeriesInfo, ...]:
    sitk = import_simpleitk()
    # ITK warns on stderr ("No Series were found") for a folder without a series; our message says it.
    warnings = sitk.ProcessObject.GetGlobalWarningDisplay()
    sitk.ProcessObject.SetGlobalWarningDisplay(False)
    try:
        uids = sitk.ImageSeriesReader.GetGDCMSeriesIDs(folder)
    finally:
        sitk.ProcessObject.SetGlobalWarningDisplay(warnings)
    series = []
    for uid in uids:
        names = tuple(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(folder, uid))
        header = sitk.ImageFileReader()
        header.SetFileName(names[0])
        header.LoadPrivateTagsOff()
        try:
            header.ReadImageInformation()
            modality, description, number = (_tag(header, k) for k in ("0008|0060", "0008|103e", "0020|0011"))
        except RuntimeError:
            modality = description = number = ""
        series.append(SeriesInfo(uid, names, modality, description, number))
    return tuple(series)


def explain_series(folder: str, series: Sequence[SeriesInfo]) -> str:
    """The message refusing a folder of several series: their UIDs and how to pick one."""
    listing = "; ".join(s.describe() for s in series)
    example = f"{folder}{SERIES_SEPARATOR}{series[0].uid}" if series else f"{folder}{SERIES_SEPARATOR}UID"
    return (f"{folder!r} holds {len(series)} DICOM series: {listing}. Pick one as FOLDER{SERIES_SEPARATOR}"
            f"SERIES_UID, e.g. {example!r}")


def select_series(path: str) -> SeriesInfo:
    """The one series an input names: the only series of a folder, or ``FOLDER::UID``.

    Raises
    ------
    FusionInputError
        Not a folder, no DICOM series in it, several series and none picked, or the UID is not there.
    """
    folder, uid = split_series_path(path)
    if not os.path.isdir(folder):
        raise FusionInputError(f"input {path!r}: {folder!r} is not a folder; a DICOM series is given as its "
                               f"folder, or FOLDER{SERIES_SEPARATOR}SERIES_UID")
    series = list_series(folder)
    if not series:
        count = len(dicom_files(folder))
        found = f"its {count} DICOM files hold no image series" if count else "it holds no DICOM files"
        raise FusionInputError(f"{folder!r} is a folder but {found}; an input is an image or volume file or "
                               "a folder holding one DICOM image series (CT, MR, PT, NM)")
    if uid is None:
        if len(series) > 1:
            raise FusionInputError(explain_series(folder, series))
        return series[0]
    for info in series:
        if info.uid == uid:
            return info
    raise FusionInputError(f"no series {uid!r} in {folder!r}; it holds: {'; '.join(s.describe() for s in series)}")


@dataclass
class SeriesVolume:
    """A DICOM series read into an array with its geometry (RAS) and the header of its first slice."""

    array: np.ndarray                  #: ``(K, J, I)``, stored values with Rescale Slope/Intercept applied
    spacing: Tuple[float, float, float]        #: mm, along I, J, K
    origin: Tuple[float, float, float]         #: RAS position of voxel (0, 0, 0), mm
    directions: np.ndarray             #: 3 x 3 IJK-to-RAS direction cosines (columns: I, J, K)
    info: SeriesInfo
    files: Tuple[str, ...]             #: in slice order (K)
    units: str = ""                    #: e.g. BQML for PET, HU for CT (Rescale Type or Units tag)
    notes: Dict[str, object] = field(default_factory=dict)

    @property
    def ijk_to_ras(self) -> np.ndarray:
        matrix = np.eye(4)
        matrix[:3, :3] = self.directions * np.asarray(self.spacing)
        matrix[:3, 3] = self.origin
        return matrix


def _floats(text: str) -> np.ndarray:
    return np.array([float(v) for v in text.replace("\\", " ").split()], dtype=np.float64)


def _check_slices(reader, count: int, what: str) -> None:
    """All slices share one orientation and lie evenly spaced along its normal (what GDCM assumes)."""
    if count < 3 or not reader.HasMetaDataKey(0, "0020|0032"):
        return
    orientations = [_floats(reader.GetMetaData(k, "0020|0037")) for k in range(count)]
    if any(o.shape != (6,) or np.abs(o - orientations[0]).max() > _ORIENTATION_TOLERANCE for o in orientations):
        raise FusionInputError(f"{what}: its slices have different Image Orientation (Patient); such a series "
                               "cannot be read as one volume (split it, or convert it with dcm2niix)")
    row, column = orientations[0][:3], orientations[0][3:]
    normal = np.cross(row, column)
    positions = np.array([_floats(reader.GetMetaData(k, "0020|0032")) @ normal for k in range(count)])
    steps = np.diff(positions)
    mean = steps.mean()
    if abs(mean) < 1e-6 or np.abs(steps - mean).max() > _SPACING_TOLERANCE * abs(mean):
        raise FusionInputError(
            f"{what}: its slices are not evenly spaced along the slice normal (steps {np.round(steps, 3).min()} to "
            f"{np.round(steps, 3).max()} mm; gaps, overlaps or several stacks); such a series cannot be read as "
            "one volume with a regular grid (resample it, e.g. with dcm2niix or Slicer's DICOM module)")


def _bits_allocated(path: str) -> int:
    """Bits Allocated (0028,0100) of one file (16 when it cannot be read: the reader then reports why)."""
    sitk = import_simpleitk()
    header = sitk.ImageFileReader()
    header.SetFileName(path)
    header.LoadPrivateTagsOff()
    try:
        header.ReadImageInformation()
        return int(_tag(header, "0028|0100") or 16)
    except (RuntimeError, ValueError):
        return 16


def _narrowed(array: np.ndarray, integral: bool) -> np.ndarray:
    """The rescaled values (read as floats) in int16 or int32 when every slope and intercept is an integer
    and the values fit (CT in HU stays integral), else in float32."""
    if integral and array.size:
        low, high = float(array.min()), float(array.max())
        for dtype in (np.int16, np.int32):
            info = np.iinfo(dtype)
            if info.min <= low and high <= info.max:
                return array.astype(dtype)
    return array.astype(np.float32, copy=False)


def read_series(path: str) -> SeriesVolume:
    """Read the DICOM series an input names (see :func:`select_series`) with its geometry.

    Parameters
    ----------
    path : str
        A folder holding one DICOM series, or ``FOLDER::SERIES_INSTANCE_UID``.

    Returns
    -------
    SeriesVolume
        The voxels (real-world values: each slice's stored values times its Rescale Slope plus its Rescale
        Intercept; int16 or int32 when all slopes and intercepts are integers and the values fit, else
        float32), spacing, origin and direction in RAS, the files in slice order.

    Raises
    ------
    FusionInputError
        The series cannot be picked or read, or its slices do not form a regular grid.
    """
    sitk = import_simpleitk()
    info = select_series(path)
    what = f"DICOM series {info.uid} in {split_series_path(path)[0]!r}"
    reader = sitk.ImageSeriesReader()
    reader.SetImageIO("GDCMImageIO")
    reader.SetFileNames(list(info.files))
    # A float output type: GDCM rescales each slice with its own slope/intercept, but without it the series
    # reader stores every slice in the pixel type the first slice's rescale implies, so a later slice with a
    # fractional or larger slope (usual in PET) was truncated or wrapped around (90000 stored as 24464).
    # float32 holds every rescaled 16-bit value exactly enough; 32-bit stored values are read in float64.
    reader.SetOutputPixelType(sitk.sitkFloat64 if _bits_allocated(info.files[0]) > 16 else sitk.sitkFloat32)
    reader.MetaDataDictionaryArrayUpdateOn()    # per-slice tags: positions, orientations, slopes
    reader.LoadPrivateTagsOff()
    try:
        image = reader.Execute()
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()
        raise FusionInputError(f"cannot read {what}: {first[-1] if first else 'GDCM gave no reason'}") from None
    if image.GetDimension() != 3 or image.GetNumberOfComponentsPerPixel() != 1:
        raise FusionInputError(f"{what} is not a scalar 3-D volume (dimension {image.GetDimension()}, "
                               f"{image.GetNumberOfComponentsPerPixel()} components); only grey series are read")
    count = len(info.files)
    _check_slices(reader, count, what)
    array = sitk.GetArrayFromImage(image)       # (K, J, I), the rescale applied per slice by GDCM
    slopes = {reader.GetMetaData(k, "0028|1053").strip() if reader.HasMetaDataKey(k, "0028|1053") else "1"
              for k in range(count)}
    intercepts = {reader.GetMetaData(k, "0028|1052").strip() if reader.HasMetaDataKey(k, "0028|1052") else "0"
                  for k in range(count)}
    array = _narrowed(array, all(float(v) == int(float(v)) for v in slopes | intercepts))
    direction_lps = np.array(image.GetDirection(), dtype=np.float64).reshape(3, 3)
    origin_lps = np.array(image.GetOrigin(), dtype=np.float64)
    units = ""
    for key in ("0054|1001", "0028|1054"):          # Units (PET), Rescale Type (CT: HU)
        if reader.HasMetaDataKey(0, key):
            units = reader.GetMetaData(0, key).strip()
            break
    return SeriesVolume(array=array, spacing=tuple(float(v) for v in image.GetSpacing()),
                        origin=tuple(float(v) for v in _LPS_TO_RAS @ origin_lps),
                        directions=_LPS_TO_RAS @ direction_lps, info=info, files=info.files, units=units,
                        notes={"slices": count, "rescale_slopes": len(slopes)})


def load_series_node(path: str, scene, name: Optional[str] = None, *, pet_units: Optional[str] = None):
    """Read a DICOM series into a new scalar volume node of ``scene`` (geometry in RAS, as Slicer's).

    Parameters
    ----------
    path : str
        A folder holding one DICOM series, or ``FOLDER::SERIES_INSTANCE_UID``.
    scene : vtkMRMLScene
    name : str, optional
        Node name (default: the series description, else the folder's name).
    pet_units : {None, "stored", "suv"}
        ``"suv"``: a PT series is converted from Bq/mL to body-weight SUV (:mod:`MedFusionLib.suv`);
        refused for other modalities. ``None``/``"stored"``: the values as stored (rescaled).

    Returns
    -------
    vtkMRMLScalarVolumeNode
        With attributes ``DICOM.SeriesInstanceUID``, ``DICOM.Modality`` and, in SUV, ``MedFusion.Units``
        = ``SUVbw`` and ``MedFusion.SUVFactor``.
    """
    from . import bridge
    from .suv import check_pet_units, suv_factor_from_files

    pet_units = check_pet_units(pet_units)
    volume = read_series(path)
    array, notes = volume.array, {}
    if pet_units == "suv":
        if volume.info.modality != "PT":
            raise FusionInputError(f"--pet-units suv converts PET (PT) series; {path!r} is "
                                   f"{volume.info.modality or 'of unknown modality'}")
        factor = suv_factor_from_files(volume.files)
        array = (array.astype(np.float64) * factor.factor).astype(np.float32)
        notes = {"MedFusion.Units": "SUVbw", "MedFusion.SUVFactor": repr(factor.factor)}
    if name is None:
        name = volume.info.description or os.path.basename(os.path.normpath(split_series_path(path)[0]))
    node = bridge.node_from_array(scene, array, scene.GetUniqueNameByString(name), spacing=volume.spacing,
                                  origin=volume.origin, directions=volume.directions)
    node.SetAttribute("DICOM.SeriesInstanceUID", volume.info.uid)
    node.SetAttribute("DICOM.Modality", volume.info.modality)
    for key, value in notes.items():
        node.SetAttribute(key, value)
    return node
