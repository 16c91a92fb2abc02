"""Path checks before any work (issue 12, item 2): each fails on the command line before a file is read."""

import os

import numpy as np
import pytest

from MedFusionLib import FusionInputError, cli, files
from MedFusionLib.paths import check_fuse_paths


@pytest.fixture
def two_pngs(tmp_path):
    import imageio.v3 as iio

    paths = []
    for k in range(2):
        path = tmp_path / f"in{k}.png"
        iio.imwrite(path, (np.arange(64 * 64).reshape(64, 64) % 251).astype(np.uint8))
        paths.append(str(path))
    return paths


def _never_fuse(monkeypatch):
    calls = []
    monkeypatch.setattr(files, "_fuse_image_files", lambda *a, **k: calls.append(a))
    return calls


@pytest.mark.parametrize("output, message", [
    ("missing-folder/out.png", "does not exist"),
    ("out.xyz", "unknown format"),
    (".", "is a folder"),
])
def test_bad_outputs_are_refused_before_fusing(two_pngs, tmp_path, monkeypatch, capsys, output, message):
    calls = _never_fuse(monkeypatch)
    monkeypatch.chdir(tmp_path)
    assert cli.main(["fuse", *two_pngs, "-o", output, "-q"]) == cli.EXIT_ERROR
    assert message in capsys.readouterr().err
    assert calls == []


def test_a_folder_input_is_explained_and_broken_dicom_files_named(two_pngs, tmp_path, monkeypatch, capsys):
    # A folder holding one real DICOM series is an input (test_dicom.py); these folders are not.
    calls = _never_fuse(monkeypatch)
    plain = tmp_path / "plain"
    plain.mkdir()
    assert cli.main(["fuse", str(plain), two_pngs[0], "-o", str(tmp_path / "o.png"), "-q"]) == cli.EXIT_ERROR
    err = capsys.readouterr().err
    assert "is a folder (no DICOM files" in err and "do not mix" not in err.lower()
    series = tmp_path / "series"
    series.mkdir()
    for k in range(3):
        (series / f"IM{k}").write_bytes(b"\0" * 128 + b"DICM" + b"\0" * 16)
    assert cli.main(["fuse", str(series), two_pngs[0], "-o", str(tmp_path / "o.png"), "-q"]) == cli.EXIT_ERROR
    assert "its 3 DICOM files hold no image series" in capsys.readouterr().err
    assert calls == []


def test_missing_input_and_unwritable_folder(two_pngs, tmp_path, monkeypatch):
    with pytest.raises(FusionInputError, match="does not exist"):
        check_fuse_paths([two_pngs[0], str(tmp_path / "nope.png")], str(tmp_path / "o.png"))
    # The CI runs as root, for whom every folder is writable: the permission answer is simulated.
    locked = tmp_path / "locked"
    locked.mkdir()
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode: False if os.path.abspath(p) == str(locked) and mode == os.W_OK
                        else real_access(p, mode))
    with pytest.raises(FusionInputError, match="not writable"):
        check_fuse_paths(two_pngs, str(locked / "o.png"))


def test_good_paths_pass_and_fuse_writes(two_pngs, tmp_path):
    out = tmp_path / "fused.png"
    assert cli.main(["fuse", *two_pngs, "-o", str(out), "-q"]) == cli.EXIT_OK
    assert out.is_file()
