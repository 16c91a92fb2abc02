"""Body-weight SUV of a PET series from its DICOM tags (QIBA's vendor-neutral "happy path").

    SUVbw = C(t) [Bq/mL] * W [g] / (D [Bq] * 2 ** (-(t_scan - t_inj) / T_half))

with ``C`` the decay-corrected activity concentration (stored value times Rescale Slope plus Intercept,
Units ``BQML``), ``W`` the patient's weight (kg * 1000; tissue taken as 1 g/mL, so SUV is unitless),
``D`` the injected dose, ``T_half`` the radionuclide half-life, ``t_inj`` the injection time and
``t_scan`` the time the images are decay-corrected to. With Decay Correction ``START`` that is the series
start (Series Date/Time), checked not to be after the earliest Acquisition Date/Time (a series re-made
after the scan, e.g. by a vendor's post-processing, would carry a later Series Time: refused rather than
guessed); with ``ADMIN`` the images are corrected to the injection time and the dose is not decayed.

This follows the QIBA SUV wiki pseudocode and Slicer's PETDICOMExtension (SUVFactorCalculator: Corrected
Image with ATTN and DECY, Decay Correction START, the dose decayed from Radiopharmaceutical Start Time to
the Series Time, body weight in g). Where they differ: that calculator subtracts times of day only (an
injection before midnight and a scan after it would give a negative decay time) and accepts START only;
here Radiopharmaceutical Start DateTime is used when present, else the injection is taken on the series
date, or the day before when its time is later than the series time (a scan after midnight); ``ADMIN``
is accepted (QIBA leaves it out; the dose is then not decayed); Units must be BQML (GML is SUV already,
Philips CNTS needs its private SUV factor, not supported); Decay Correction NONE is refused (each bed
position would need its own decay factor). Every missing, empty or unusable tag is named in one error
(the calculator reports "Missing some parameters").

Tags (read with pydicom, without pixel data): Modality (0008,0060), Units (0054,1001), Corrected Image
(0028,0051), Decay Correction (0054,1102), Patient's Weight (0010,1030), Series Date/Time
(0008,0021/0031), Acquisition Date/Time (0008,0022/0032), and in the Radiopharmaceutical Information
Sequence (0054,0016): Radionuclide Total Dose (0018,1074), Radionuclide Half Life (0018,1075),
Radiopharmaceutical Start Time (0018,1072) or Start DateTime (0018,1078).

References
----------
QIBA, "Standardized Uptake Value (SUV)", vendor-neutral pseudocode, qibawiki.rsna.org.
A. Fedorov et al., Slicer PETDICOMExtension, SUVFactorCalculator (github.com/QIICR/Slicer-PETDICOMExtension).
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence

from .errors import FusionInputError

#: ``pet_units`` values: the values as stored (rescaled; Bq/mL for PET), or body-weight SUV.
PET_UNITS = ("stored", "suv")


def check_pet_units(pet_units: Optional[str]) -> str:
    """``None`` -> ``"stored"``; an unknown value is a :class:`FusionInputError` naming the allowed ones."""
    if pet_units is None:
        return "stored"
    if pet_units not in PET_UNITS:
        raise FusionInputError(f"unknown PET units {pet_units!r}; allowed: {', '.join(PET_UNITS)}")
    return pet_units


def _import_pydicom():
    try:
        import pydicom
    except ImportError:
        raise FusionInputError("SUV needs pydicom: pip install medfusion[clinical]") from None
    return pydicom


@dataclass(frozen=True)
class SUVFactor:
    """The factor from Bq/mL to SUVbw (g/mL) and what it was computed from."""

    factor: float
    weight_kg: float
    injected_dose_bq: float
    half_life_s: float
    injection: _dt.datetime
    scan: _dt.datetime
    decay_correction: str

    @property
    def decay_time_s(self) -> float:
        return (self.scan - self.injection).total_seconds()

    @property
    def decayed_dose_bq(self) -> float:
        if self.decay_correction == "ADMIN":
            return self.injected_dose_bq
        return self.injected_dose_bq * 2.0 ** (-self.decay_time_s / self.half_life_s)


def _text(ds, keyword: str) -> str:
    value = getattr(ds, keyword, None)
    if value is None:
        return ""
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        return "\\".join(str(v) for v in value).strip()
    return str(value).strip()


def _parse_time(text: str) -> _dt.time:
    """DICOM TM (HHMMSS.FFFFFF, minutes/seconds optional; HH:MM:SS as older files have it)."""
    text = text.replace(":", "").strip()
    whole, _, frac = text.partition(".")
    if not whole.isdigit() or len(whole) not in (2, 4, 6):
        raise ValueError(f"not a DICOM time: {text!r}")
    hours, minutes, seconds = int(whole[:2]), int(whole[2:4] or 0), int(whole[4:6] or 0)
    micro = int((frac + "000000")[:6]) if frac else 0
    return _dt.time(hours, minutes, seconds, micro)


def _parse_date(text: str) -> _dt.date:
    text = text.replace(".", "").replace("-", "").strip()
    return _dt.datetime.strptime(text, "%Y%m%d").date()


def _parse_datetime(text: str) -> _dt.datetime:
    """DICOM DT (YYYYMMDDHHMMSS.FFFFFF&ZZXX; the offset is dropped, as all times of a study share it)."""
    text = text.strip().split("+")[0].split("-")[0] if len(text.strip()) > 8 else text.strip()
    return _dt.datetime.combine(_parse_date(text[:8]), _parse_time(text[8:] or "00"))


def suv_factor(datasets: Sequence) -> SUVFactor:
    """The Bq/mL -> SUVbw factor of a PET series from its pydicom datasets (one per file).

    Parameters
    ----------
    datasets : sequence of pydicom.Dataset
        The series' headers, pixel data not needed; the first gives the dose, weight and times, all give
        the earliest acquisition time.

    Returns
    -------
    SUVFactor
        ``factor`` multiplies Bq/mL values into SUVbw.

    Raises
    ------
    FusionInputError
        A tag is missing, empty or unusable; the message names every such tag and says what is needed.
    """
    if not datasets:
        raise FusionInputError("SUV: no DICOM files given")
    ds = datasets[0]
    modality = _text(ds, "Modality")
    if modality != "PT":
        raise FusionInputError(f"SUV is computed for PET (Modality PT) series; this one is {modality or 'unknown'}")
    problems: List[str] = []
    units = _text(ds, "Units").upper()
    if units == "GML":
        problems.append("Units (0054,1001) is GML: the values are body-weight SUV already; read them as stored "
                        "(pet_units='stored', --pet-units stored)")
    elif units != "BQML":
        problems.append(f"Units (0054,1001) is {units or 'missing'}, SUV needs BQML (activity concentration "
                        "in Bq/mL; Philips CNTS series need their private SUV factor, not supported)")
    corrected = {v.strip().upper() for v in _text(ds, "CorrectedImage").split("\\") if v.strip()}
    if not {"ATTN", "DECY"} <= corrected:
        problems.append(f"Corrected Image (0028,0051) is {'/'.join(sorted(corrected)) or 'missing'}: the images "
                        "must be attenuation (ATTN) and decay (DECY) corrected")
    decay = _text(ds, "DecayCorrection").upper()
    if decay == "NONE":
        problems.append("Decay Correction (0054,1102) is NONE: the images are not decay corrected, so each bed "
                        "position would need its own decay factor (QIBA requires decay-corrected images); "
                        "START or ADMIN is needed")
    elif decay not in ("START", "ADMIN"):
        problems.append(f"Decay Correction (0054,1102) is {decay or 'missing'}; START or ADMIN is needed")

    def number(owner, keyword: str, tag: str, unit: str) -> Optional[float]:
        text = _text(owner, keyword) if owner is not None else ""
        try:
            value = float(text)
        except ValueError:
            problems.append(f"{_spaced(keyword)} {tag} is {'missing' if not text else repr(text)}")
            return None
        if not value > 0:
            problems.append(f"{_spaced(keyword)} {tag} is {value:g} {unit}; it must be positive")
            return None
        return value

    weight = number(ds, "PatientWeight", "(0010,1030)", "kg")
    sequence = getattr(ds, "RadiopharmaceuticalInformationSequence", None)
    info = sequence[0] if sequence else None
    if info is None:
        problems.append("Radiopharmaceutical Information Sequence (0054,0016) is missing")
    dose = number(info, "RadionuclideTotalDose", "(0018,1074)", "Bq")
    half_life = number(info, "RadionuclideHalfLife", "(0018,1075)", "s")

    scan = injection = None
    try:
        series_date, series_time = _text(ds, "SeriesDate"), _text(ds, "SeriesTime")
        if not series_date or not series_time:
            raise ValueError("Series Date (0008,0021) and Series Time (0008,0031) are needed: "
                             f"{'both missing' if not (series_date or series_time) else 'one is missing'}")
        scan = _dt.datetime.combine(_parse_date(series_date), _parse_time(series_time))
    except ValueError as exc:
        problems.append(str(exc) if "needed" in str(exc) else f"Series Date/Time: {exc}")
    if info is not None and scan is not None:
        start_dt, start_time = _text(info, "RadiopharmaceuticalStartDateTime"), _text(info, "RadiopharmaceuticalStartTime")
        try:
            if start_dt:
                injection = _parse_datetime(start_dt)
            elif start_time:
                injection = _dt.datetime.combine(scan.date(), _parse_time(start_time))
                if injection > scan:          # injected before midnight, scanned after it
                    injection -= _dt.timedelta(days=1)
            else:
                problems.append("Radiopharmaceutical Start Time (0018,1072) and Start DateTime (0018,1078) are "
                                "both missing")
        except ValueError as exc:
            problems.append(f"Radiopharmaceutical Start Time/DateTime: {exc}")
    if scan is not None:
        acquisitions = []
        for other in datasets:
            date, time = _text(other, "AcquisitionDate"), _text(other, "AcquisitionTime")
            if date and time:
                try:
                    acquisitions.append(_dt.datetime.combine(_parse_date(date), _parse_time(time)))
                except ValueError:
                    pass
        if acquisitions and scan > min(acquisitions) + _dt.timedelta(seconds=1):
            problems.append(f"Series Date/Time ({scan}) is after the earliest Acquisition Date/Time "
                            f"({min(acquisitions)}): the series was re-made after the scan and the decay "
                            "reference time is unknown")
    if injection is not None and scan is not None and injection > scan:
        problems.append(f"the injection ({injection}) is after the series start ({scan})")
    if problems:
        raise FusionInputError("cannot compute SUV from this PET series: " + "; ".join(problems))
    result = SUVFactor(factor=0.0, weight_kg=weight, injected_dose_bq=dose, half_life_s=half_life,
                       injection=injection, scan=scan, decay_correction=decay)
    factor = weight * 1000.0 / result.decayed_dose_bq
    return SUVFactor(factor, weight, dose, half_life, injection, scan, decay)


def _spaced(keyword: str) -> str:
    """PatientWeight -> Patient Weight (the DICOM attribute name, near enough for a message)."""
    out = []
    for ch in keyword:
        if ch.isupper() and out:
            out.append(" ")
        out.append(ch)
    return "".join(out)


def suv_factor_from_files(paths: Sequence[str]) -> SUVFactor:
    """:func:`suv_factor` of the DICOM files of a series (headers only are read)."""
    pydicom = _import_pydicom()
    datasets = []
    for path in paths:
        try:
            datasets.append(pydicom.dcmread(path, stop_before_pixels=True))
        except Exception as exc:       # pydicom raises several types for a damaged header
            raise FusionInputError(f"cannot read the DICOM header of {path!r}: {exc}") from None
    return suv_factor(datasets)


def describe(factor: SUVFactor) -> Dict[str, object]:
    """A JSON-able summary (for logs and node attributes)."""
    return {"factor": factor.factor, "weight_kg": factor.weight_kg, "injected_dose_bq": factor.injected_dose_bq,
            "half_life_s": factor.half_life_s, "injection": factor.injection.isoformat(),
            "scan": factor.scan.isoformat(), "decay_time_s": factor.decay_time_s,
            "decay_correction": factor.decay_correction}
