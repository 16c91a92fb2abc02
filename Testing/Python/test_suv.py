"""Body-weight SUV from the DICOM tags of a real PT series (written with pydicom), against hand-computed values."""

import math

import numpy as np
import pytest

from dicom_series import write_series
from MedFusionLib import FusionInputError, bridge, dicom
from MedFusionLib.suv import suv_factor_from_files

# F-18: half-life 6586.2 s (109.77 min). Injected 370 MBq at 08:30:45, series starts 09:35:15 (3870 s later),
# patient 72.5 kg.
PET = dict(weight="72.5", dose="370000000", half_life="6586.2", injection_time="083045.00", series_date="20240315",
           series_time="093515", acquisition_times=None, decay_correction="START", units="BQML")
DECAY_S = 3870.0
FACTOR = 72.5 * 1000.0 / (370e6 * 2.0 ** (-DECAY_S / 6586.2))   # 72500 g / (370e6 Bq * 0.66555) = 2.9446e-4 mL^-1


def _pet_series(folder, pet=PET, slopes=None, **kwargs):
    stored = (np.arange(4 * 6 * 5).reshape(4, 6, 5) * 40 + 100).astype(np.uint16)
    slopes = slopes or [1.5, 2.0, 0.5, 3.0]
    write_series(str(folder), stored, modality="PT", slopes=slopes, pet=pet, **kwargs)
    return stored.astype(np.float64) * np.asarray(slopes)[:, None, None]


def test_hand_computed_factor():
    # The same number computed another way, so a wrong constant in FACTOR itself would show.
    assert FACTOR == pytest.approx(72500.0 / (370e6 * math.exp(-math.log(2) * 3870 / 6586.2)), rel=1e-12)
    assert FACTOR == pytest.approx(2.9446e-4, rel=1e-4)


def test_suv_factor_with_decay(tmp_path):
    _pet_series(tmp_path / "pt")
    factor = suv_factor_from_files(dicom.select_series(str(tmp_path / "pt")).files)
    assert factor.decay_time_s == pytest.approx(DECAY_S)
    assert factor.factor == pytest.approx(FACTOR, rel=1e-9)
    # Without the decay the factor would be 1.5 times smaller: the decay is really applied.
    assert factor.factor / (72500.0 / 370e6) == pytest.approx(2.0 ** (DECAY_S / 6586.2), rel=1e-9)


def test_suv_volume_through_the_node(tmp_path):
    bq_ml = _pet_series(tmp_path / "pt")
    scene = bridge.new_scene()
    node = dicom.load_series_node(str(tmp_path / "pt"), scene, pet_units="suv")
    np.testing.assert_allclose(bridge.array_from_node(node), bq_ml * FACTOR, rtol=1e-6)
    assert node.GetAttribute("MedFusion.Units") == "SUVbw"
    stored = dicom.load_series_node(str(tmp_path / "pt"), scene)
    np.testing.assert_allclose(bridge.array_from_node(stored), bq_ml, rtol=1e-6)


def test_injection_datetime_and_midnight(tmp_path):
    # Start DateTime wins over Start Time; the day before is honoured.
    pet = dict(PET, series_time="003000", series_date="20240316", injection_time="233000",
               injection_datetime="20240315233000")
    _pet_series(tmp_path / "a", pet=pet)
    assert suv_factor_from_files(dicom.select_series(str(tmp_path / "a")).files).decay_time_s == pytest.approx(3600)
    # Only a time, later than the series time: injected before midnight.
    pet = dict(pet, injection_datetime=None)
    _pet_series(tmp_path / "b", pet=pet)
    assert suv_factor_from_files(dicom.select_series(str(tmp_path / "b")).files).decay_time_s == pytest.approx(3600)


def test_admin_decay_correction_does_not_decay_the_dose(tmp_path):
    _pet_series(tmp_path / "pt", pet=dict(PET, decay_correction="ADMIN"))
    factor = suv_factor_from_files(dicom.select_series(str(tmp_path / "pt")).files)
    assert factor.factor == pytest.approx(72500.0 / 370e6, rel=1e-12)


@pytest.mark.parametrize("missing, named", [
    ("weight", "Patient Weight (0010,1030)"),
    ("dose", "Radionuclide Total Dose (0018,1074)"),
    ("half_life", "Radionuclide Half Life (0018,1075)"),
    ("injection_time", "Radiopharmaceutical Start Time (0018,1072)"),
    ("series_time", "Series Time (0008,0031)"),
    ("decay_correction", "Decay Correction (0054,1102)"),
    ("units", "Units (0054,1001)"),
    ("corrected", "Corrected Image (0028,0051) is missing"),
])
def test_missing_tags_are_named(tmp_path, missing, named):
    _pet_series(tmp_path / "pt", pet=dict(PET, **{missing: None}))
    with pytest.raises(FusionInputError, match=r"cannot compute SUV") as info:
        suv_factor_from_files(dicom.select_series(str(tmp_path / "pt")).files)
    assert named in str(info.value)


def test_two_missing_tags_are_both_named(tmp_path):
    _pet_series(tmp_path / "pt", pet=dict(PET, weight=None, dose=None))
    with pytest.raises(FusionInputError) as info:
        suv_factor_from_files(dicom.select_series(str(tmp_path / "pt")).files)
    assert "Patient Weight" in str(info.value) and "Radionuclide Total Dose" in str(info.value)


def test_refused_units_and_series_after_acquisition(tmp_path):
    _pet_series(tmp_path / "cnts", pet=dict(PET, units="CNTS"))
    with pytest.raises(FusionInputError, match="BQML"):
        suv_factor_from_files(dicom.select_series(str(tmp_path / "cnts")).files)
    _pet_series(tmp_path / "late", pet=dict(PET, acquisition_times=["093000"] * 4))
    with pytest.raises(FusionInputError, match="after the earliest Acquisition"):
        suv_factor_from_files(dicom.select_series(str(tmp_path / "late")).files)
    _pet_series(tmp_path / "ok", pet=dict(PET, acquisition_times=["093515", "093700", "093900", "094100"]))
    assert suv_factor_from_files(dicom.select_series(str(tmp_path / "ok")).files).factor == pytest.approx(FACTOR)


@pytest.mark.parametrize("tags, says", [
    (dict(decay_correction="NONE"), "Decay Correction (0054,1102) is NONE: the images are not decay corrected"),
    (dict(units="GML"), "the values are body-weight SUV already"),
    (dict(corrected=["ATTN"]), "Corrected Image (0028,0051) is ATTN: the images must be attenuation (ATTN) and "
                               "decay (DECY) corrected"),
    (dict(injection_datetime="20240315100000"), "the injection (2024-03-15 10:00:00) is after the series start"),
])
def test_uncorrected_or_unsupported_series_are_refused_with_the_reason(tmp_path, tags, says):
    _pet_series(tmp_path / "pt", pet=dict(PET, **tags))
    with pytest.raises(FusionInputError) as info:
        suv_factor_from_files(dicom.select_series(str(tmp_path / "pt")).files)
    assert says in str(info.value)


def test_hand_computed_suv_across_midnight_with_a_start_datetime(tmp_path):
    # Ga-68 (half-life 4057.7 s), 150 MBq injected on 15 March at 23:50:30.5 (with a UTC offset, which all
    # times of the study share), series on 16 March at 00:45:00: 3269.5 s; 81 kg.
    pet = dict(PET, weight="81", dose="150000000", half_life="4057.7", series_date="20240316", series_time="004500",
               injection_time="235030.5", injection_datetime="20240315235030.5+0100")
    bq_ml = _pet_series(tmp_path / "pt", pet=pet)
    factor = suv_factor_from_files(dicom.select_series(str(tmp_path / "pt")).files)
    expected = 81000.0 / (150e6 * 0.5 ** (3269.5 / 4057.7))      # 5.4e-4 / 0.57207 = 9.4395e-4 mL^-1
    assert factor.decay_time_s == pytest.approx(3269.5)
    assert factor.factor == pytest.approx(expected, rel=1e-12)
    assert expected == pytest.approx(9.4395e-4, rel=1e-4)
    node = dicom.load_series_node(str(tmp_path / "pt"), bridge.new_scene(), pet_units="suv")
    np.testing.assert_allclose(bridge.array_from_node(node), bq_ml * expected, rtol=1e-6)


def test_suv_of_a_ct_series_is_refused(tmp_path):
    write_series(str(tmp_path / "ct"), np.zeros((3, 4, 4), np.int16), modality="CT")
    with pytest.raises(FusionInputError, match="PET"):
        dicom.load_series_node(str(tmp_path / "ct"), bridge.new_scene(), pet_units="suv")
    with pytest.raises(FusionInputError, match="unknown PET units"):
        dicom.load_series_node(str(tmp_path / "ct"), bridge.new_scene(), pet_units="SUV")
