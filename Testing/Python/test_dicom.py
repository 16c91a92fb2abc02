"""DICOM series inputs: real series written with pydicom, read with their geometry, slice order and rescale."""

import os

import numpy as np
import pytest

from dicom_series import write_series
from MedFusionLib import FusionInputError, bridge, cli, dicom
from MedFusionLib.paths import check_fuse_paths


def _rotation(z_deg, x_deg):
    a, b = np.radians(z_deg), np.radians(x_deg)
    rz = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    rx = np.array([[1, 0, 0], [0, np.cos(b), -np.sin(b)], [0, np.sin(b), np.cos(b)]])
    return rz @ rx


def _ijk_to_ras(node):
    m = bridge._ijk_to_ras(node)
    return np.array([[m.GetElement(r, c) for c in range(4)] for r in range(4)])


@pytest.fixture
def oblique_ct(tmp_path):
    """An oblique CT series (30 deg about z, 20 deg about x), files named in random order, Instance Numbers
    reversed, stored int16 with Rescale Intercept -1024: slice k holds 100 * k + (j, i) pattern."""
    rotation = _rotation(30.0, 20.0)
    j, i = np.mgrid[0:6, 0:5]
    stored = np.stack([100 * k + 10 * j + i for k in range(7)]).astype(np.int16)
    folder = tmp_path / "ct"
    uid = write_series(str(folder), stored, modality="CT", spacing=(0.8, 0.9, 2.5), origin=(-100.0, -120.0, 50.0),
                       row=rotation[:, 0], column=rotation[:, 1], intercepts=[-1024.0] * 7, shuffle_names=True)
    return folder, uid, stored, rotation


def test_geometry_and_slice_order_of_an_oblique_series(oblique_ct):
    folder, uid, stored, rotation = oblique_ct
    names = sorted(os.listdir(folder))
    volume = dicom.read_series(str(folder))
    # Slices in position order, not by file name: slice k of the array is the k-th written.
    assert [os.path.basename(f) for f in volume.files] != names
    np.testing.assert_array_equal(volume.array, stored.astype(np.int32) - 1024)
    assert volume.array.dtype.kind == "i"         # integral rescale keeps integers
    np.testing.assert_allclose(volume.spacing, (0.8, 0.9, 2.5), atol=1e-6)
    # Hand-computed RAS: LPS x and y change sign; directions are the Image Orientation cosines and their normal.
    lps = np.stack([rotation[:, 0], rotation[:, 1], np.cross(rotation[:, 0], rotation[:, 1])], axis=1)
    expected_dirs = np.diag([-1, -1, 1]) @ lps
    np.testing.assert_allclose(volume.directions, expected_dirs, atol=1e-6)
    np.testing.assert_allclose(volume.origin, (100.0, 120.0, 50.0), atol=1e-5)
    node = dicom.load_series_node(str(folder), bridge.new_scene())
    expected = np.eye(4)
    expected[:3, :3] = expected_dirs * np.array([0.8, 0.9, 2.5])
    expected[:3, 3] = (100.0, 120.0, 50.0)
    np.testing.assert_allclose(_ijk_to_ras(node), expected, atol=1e-5)
    # The last slice's corner lies where its Image Position says (in RAS).
    last = expected @ np.array([0, 0, 6, 1])
    lps_last = np.array([-100.0, -120.0, 50.0]) + 6 * 2.5 * lps[:, 2]
    np.testing.assert_allclose(last[:3], np.diag([-1, -1, 1]) @ lps_last, atol=1e-4)
    assert node.GetAttribute("DICOM.SeriesInstanceUID") == uid and node.GetAttribute("DICOM.Modality") == "CT"
    np.testing.assert_array_equal(bridge.array_from_node(node), stored.astype(np.int32) - 1024)


def test_per_slice_rescale_slope_and_intercept(tmp_path):
    stored = np.arange(5 * 4 * 3, dtype=np.uint16).reshape(5, 4, 3) * 7
    slopes, intercepts = [0.25, 1.5, 2.0, 0.1, 3.0], [0.0, -10.5, 3.0, 0.0, 100.0]
    write_series(str(tmp_path / "pt"), stored, modality="PT", slopes=slopes, intercepts=intercepts,
                 shuffle_names=True, seed=3)
    volume = dicom.read_series(str(tmp_path / "pt"))
    expected = stored * np.array(slopes)[:, None, None] + np.array(intercepts)[:, None, None]
    assert volume.array.dtype == np.float32
    np.testing.assert_allclose(volume.array, expected, rtol=1e-6)


@pytest.mark.parametrize("slopes, intercepts", [
    ([1.0, 1.5, 1.0, 1.0], [0.0] * 4),             # a fractional slope after an integral first one
    ([1.0] * 4, [0.0, 0.5, 0.0, -0.5]),            # fractional intercepts after an integral first one
    ([1.0] * 4, [0.0, -70000.0, 0.0, 0.0]),        # an integral intercept leaving uint16's range
])
def test_later_slices_are_rescaled_in_their_own_type_not_the_first_slices(tmp_path, slopes, intercepts):
    # GDCM's series reader alone stores every slice in the pixel type the first slice's rescale implies:
    # 60000 * 1.5 came back as 24464 (wrapped around) and 60000.5 as 60000 (truncated).
    stored = np.full((4, 3, 3), 60000, np.uint16)
    write_series(str(tmp_path / "pt"), stored, modality="PT", slopes=slopes, intercepts=intercepts)
    volume = dicom.read_series(str(tmp_path / "pt"))
    expected = 60000.0 * np.array(slopes) + np.array(intercepts)
    np.testing.assert_array_equal(volume.array[:, 1, 2], expected)
    integral = all(float(v).is_integer() for v in slopes + intercepts)
    assert volume.array.dtype == (np.int32 if integral else np.float32)


def test_several_series_are_refused_listing_their_uids_and_one_can_be_picked(tmp_path):
    folder = tmp_path / "study"
    uid_ct = write_series(str(folder / "x"), np.zeros((3, 4, 4), np.int16), modality="CT", description="CT body")
    uid_pt = write_series(str(folder / "y"), np.ones((3, 4, 4), np.uint16), modality="PT", description="PET AC")
    for sub in ("x", "y"):       # both series side by side in one folder
        for name in os.listdir(folder / sub):
            os.replace(folder / sub / name, folder / f"{sub}{name}")
        os.rmdir(folder / sub)
    with pytest.raises(FusionInputError) as info:
        check_fuse_paths([str(folder), str(folder)], str(tmp_path / "o.nrrd"))
    message = str(info.value)
    assert uid_ct in message and uid_pt in message and "FOLDER::SERIES_UID" in message
    assert "'CT body'" in message and "PT" in message
    picked = dicom.read_series(f"{folder}::{uid_pt}")
    assert picked.info.uid == uid_pt and picked.info.modality == "PT" and (picked.array == 1).all()
    with pytest.raises(FusionInputError, match="no series '1.2.3'"):
        check_fuse_paths([f"{folder}::1.2.3", str(folder)], str(tmp_path / "o.nrrd"))


def test_unevenly_spaced_slices_are_refused(tmp_path):
    write_series(str(tmp_path / "ct"), np.zeros((5, 4, 4), np.int16), modality="CT")
    os.remove(tmp_path / "ct" / "IM0002.dcm")        # a missing slice leaves a gap
    with pytest.raises(FusionInputError, match="not evenly spaced"):
        dicom.read_series(str(tmp_path / "ct"))


def test_folders_without_series(tmp_path, capfd):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FusionInputError, match="no DICOM files"):
        check_fuse_paths([str(empty), str(empty)], str(tmp_path / "o.nrrd"))
    fake = tmp_path / "fake"
    fake.mkdir()
    (fake / "IM0").write_bytes(b"\0" * 128 + b"DICM" + b"\0" * 16)
    capfd.readouterr()
    with pytest.raises(FusionInputError, match="hold no image series"):
        check_fuse_paths([str(fake), str(fake)], str(tmp_path / "o.nrrd"))
    assert "No Series were found" not in capfd.readouterr().err      # ITK's warning: our message says it
    with pytest.raises(FusionInputError, match="does not exist"):
        check_fuse_paths([f"{tmp_path / 'nope'}::1.2", str(fake)], str(tmp_path / "o.nrrd"))


def test_cli_fuses_a_ct_and_a_pet_series_in_suv_with_a_per_input_window(tmp_path, oblique_ct, capsys):
    from test_suv import PET

    folder, _, _, rotation = oblique_ct
    pet = (np.arange(7 * 6 * 5).reshape(7, 6, 5) % 50 * 100).astype(np.uint16)
    write_series(str(tmp_path / "pt"), pet, modality="PT", spacing=(0.8, 0.9, 2.5), origin=(-100.0, -120.0, 50.0),
                 row=rotation[:, 0], column=rotation[:, 1], slopes=[2.0] * 7, pet=PET)
    before = {p: os.path.getmtime(os.path.join(folder, p)) for p in os.listdir(folder)}
    out = tmp_path / "fused.nrrd"
    argv = ["fuse", str(folder), str(tmp_path / "pt"), "-o", str(out), "-m", "average", "--pet-units", "suv",
            "--window", "2", "0", "3", "--window", "1", "-1024", "-524", "--output-range", "unit", "-q"]
    assert cli.main(argv) == cli.EXIT_OK, capsys.readouterr().err
    scene = bridge.new_scene()
    fused = bridge.array_from_node(bridge.load_volume(str(out), scene))
    # average of the two windowed inputs: CT (stored + pattern - 1024 in [-1024, -524]) and SUV in [0, 3].
    from test_suv import FACTOR

    ct = dicom.read_series(str(folder)).array.astype(np.float64)
    suv = pet * 2.0 * FACTOR
    expected = 0.5 * np.clip((ct + 1024) / 500, 0, 1) + 0.5 * np.clip(suv / 3.0, 0, 1)
    np.testing.assert_allclose(fused, expected, atol=1e-5)
    reference = dicom.load_series_node(str(folder), scene)
    # The output keeps the reference series' oblique geometry.
    np.testing.assert_allclose(_ijk_to_ras(bridge.load_volume(str(out), scene)), _ijk_to_ras(reference), atol=1e-4)
    assert before == {p: os.path.getmtime(os.path.join(folder, p)) for p in os.listdir(folder)}
    # SUV without a PET series, and --window with --input-range, are refused before work.
    assert cli.main(["fuse", str(folder), str(folder), "-o", str(tmp_path / "x.nrrd"), "--pet-units", "suv",
                     "-q"]) == cli.EXIT_ERROR
    assert "no input is a PET (PT) DICOM series" in capsys.readouterr().err
    assert cli.main(["fuse", str(folder), str(folder), "-o", str(tmp_path / "x.nrrd"), "--window", "3", "0", "1",
                     "-q"]) == cli.EXIT_ERROR
    assert "K must be an input number, 1 to 2" in capsys.readouterr().err
    assert not (tmp_path / "x.nrrd").exists()


def test_a_folder_is_parsed_once_while_its_files_are_unchanged(tmp_path, monkeypatch):
    import SimpleITK as sitk

    folder = tmp_path / "ct"
    write_series(str(folder), np.zeros((3, 4, 5), np.int16))
    calls = []
    real = sitk.ImageSeriesReader.GetGDCMSeriesIDs
    monkeypatch.setattr(sitk.ImageSeriesReader, "GetGDCMSeriesIDs",
                        staticmethod(lambda f: calls.append(f) or real(f)))
    first = dicom.list_series(str(folder))
    assert dicom.list_series(str(folder)) == first and len(calls) == 1      # path check, guard, reader...
    write_series(str(tmp_path / "other"), np.zeros((2, 4, 5), np.int16), series_uid="1.2.826.0.1.99")
    for name in os.listdir(tmp_path / "other"):                             # a second series arrives
        os.replace(tmp_path / "other" / name, folder / f"x{name}")
    assert len(dicom.list_series(str(folder))) == 2 and len(calls) == 2
