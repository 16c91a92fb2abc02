"""Write real DICOM series with pydicom for the tests: CT and PT slices of a volume of known geometry.

Geometry is given in DICOM's LPS patient coordinates, as the files store it: ``origin`` is the Image
Position (Patient) of the first slice, ``row`` / ``column`` the Image Orientation (Patient) cosines (the
directions of increasing column index i and row index j), slices stacked along ``row x column``.
"""

from __future__ import annotations

import os
import random
from typing import Dict, Optional, Sequence

import numpy as np

CT_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
PET_STORAGE = "1.2.840.10008.5.1.4.1.1.128"


def _save(ds, path: str) -> None:
    try:
        ds.save_as(path, enforce_file_format=True)        # pydicom >= 3
    except TypeError:
        ds.save_as(path, write_like_original=False)       # pydicom 2.x


def write_series(folder: str, stored: np.ndarray, *, modality: str = "CT", spacing=(0.8, 0.9, 2.5),
                 origin=(-100.0, -120.0, 50.0), row=(1.0, 0.0, 0.0), column=(0.0, 1.0, 0.0),
                 slopes: Optional[Sequence[float]] = None, intercepts: Optional[Sequence[float]] = None,
                 series_uid: Optional[str] = None, description: str = "", shuffle_names: bool = False,
                 pet: Optional[Dict[str, object]] = None, seed: int = 0) -> str:
    """Write ``stored`` (K, J, I) (int16 for CT, uint16 for PT) as one series of K files; returns its UID.

    ``spacing`` is (I, J, K) mm: Pixel Spacing (0028,0030) is (row spacing = J, column spacing = I), the
    slices are ``spacing[2]`` apart. ``slopes``/``intercepts``: one Rescale Slope/Intercept per slice.
    ``pet``: tags for a PT series (keys: weight, dose, half_life, injection_time, series_time, series_date,
    acquisition_times, decay_correction, units, injection_datetime, corrected: Corrected Image, default
    ATTN/DECY); a key set to None is left out.
    ``shuffle_names``: file names in random order, unrelated to the slice order.
    """
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.sequence import Sequence as DicomSequence
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    os.makedirs(folder, exist_ok=True)
    k_count, rows, cols = stored.shape
    series_uid = series_uid or generate_uid()
    study_uid, frame_uid = generate_uid(), generate_uid()
    row, column = np.asarray(row, float), np.asarray(column, float)
    normal = np.cross(row, column)
    names = [f"IM{k:04d}.dcm" for k in range(k_count)]
    if shuffle_names:
        random.Random(seed).shuffle(names)
    sop_class = PET_STORAGE if modality == "PT" else CT_STORAGE
    for k in range(k_count):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = sop_class
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = Dataset()
        ds.file_meta = meta
        ds.SOPClassUID, ds.SOPInstanceUID = sop_class, meta.MediaStorageSOPInstanceUID
        ds.Modality = modality
        ds.PatientName, ds.PatientID = "Phantom^Test", "PHANTOM"
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study_uid, series_uid, frame_uid
        ds.SeriesNumber, ds.InstanceNumber = 1, k_count - k       # reversed on purpose: not the slice order
        ds.SeriesDescription = description or f"{modality} phantom"
        ds.ImageOrientationPatient = [float(v) for v in np.concatenate([row, column])]
        position = np.asarray(origin, float) + k * spacing[2] * normal
        ds.ImagePositionPatient = [round(float(v), 6) for v in position]
        ds.PixelSpacing = [float(spacing[1]), float(spacing[0])]
        ds.SliceThickness = float(spacing[2])
        ds.Rows, ds.Columns = rows, cols
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated = ds.BitsStored = 16
        ds.HighBit = 15
        ds.PixelRepresentation = 1 if stored.dtype == np.int16 else 0
        ds.RescaleSlope = repr(float(slopes[k])) if slopes is not None else "1"
        ds.RescaleIntercept = repr(float(intercepts[k])) if intercepts is not None else "0"
        if modality == "CT":
            ds.RescaleType = "HU"
        if pet is not None:
            _pet_tags(ds, pet, k, DicomSequence, Dataset)
        ds.PixelData = np.ascontiguousarray(stored[k]).tobytes()
        _save(ds, os.path.join(folder, names[k]))
    return series_uid


def _pet_tags(ds, pet, k, DicomSequence, Dataset) -> None:
    def put(owner, keyword, key):
        if pet.get(key) is not None:
            setattr(owner, keyword, pet[key])

    put(ds, "Units", "units")
    put(ds, "DecayCorrection", "decay_correction")
    put(ds, "PatientWeight", "weight")
    put(ds, "SeriesDate", "series_date")
    put(ds, "SeriesTime", "series_time")
    if pet.get("corrected", ["ATTN", "DECY"]) is not None:
        ds.CorrectedImage = pet.get("corrected", ["ATTN", "DECY"])
    if pet.get("acquisition_times") is not None:
        ds.AcquisitionDate = pet["series_date"]
        ds.AcquisitionTime = pet["acquisition_times"][k]
    info = Dataset()
    put(info, "RadionuclideTotalDose", "dose")
    put(info, "RadionuclideHalfLife", "half_life")
    put(info, "RadiopharmaceuticalStartTime", "injection_time")
    put(info, "RadiopharmaceuticalStartDateTime", "injection_datetime")
    ds.RadiopharmaceuticalInformationSequence = DicomSequence([info])
