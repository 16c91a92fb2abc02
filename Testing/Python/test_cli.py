"""The medfusion command line end to end: methods, fuse (volumes and images), metrics, evaluate, demo."""

import csv
import json
import os
import subprocess
import sys

import imageio.v3 as iio
import numpy as np
import pytest

from MedFusionLib import bridge, cli, colour


@pytest.fixture
def volume_files(tmp_path, phantom3d):
    scene = bridge.new_scene()
    paths = []
    for name, spacing in (("mri", (1, 1, 2)), ("ct", (1, 1, 2)), ("pet", (2, 2, 2))):
        array = phantom3d[name] if name != "pet" else np.ascontiguousarray(phantom3d[name][:, ::2, ::2])
        node = bridge.node_from_array(scene, array, name, spacing=spacing, origin=(-20, -24, -24))
        path = str(tmp_path / f"{name}.nrrd")
        bridge.save_volume(node, path)
        paths.append(path)
    return paths


@pytest.fixture
def image_files(tmp_path, phantom2d):
    def to8(x):
        return np.clip(np.rint(255 * (x - x.min()) / (x.max() - x.min())), 0, 255).astype(np.uint8)

    mri = np.repeat(to8(phantom2d["mri"])[..., None], 3, axis=-1)          # grey stored as RGB
    pet = colour.apply_colormap(to8(phantom2d["pet"]) / 255.0, "hot")       # pseudo-colour
    paths = [str(tmp_path / "mri.png"), str(tmp_path / "pet.png")]
    iio.imwrite(paths[0], mri)
    iio.imwrite(paths[1], pet)
    return paths


def test_methods_lists_every_registered_method(capsys):
    assert cli.main(["methods"]) == 0
    text = capsys.readouterr().out
    for name in ("average", "dwt", "laplacian", "guided_filter", "pca"):
        assert f"{name}  [" in text
    assert cli.main(["methods", "--format", "json"]) == 0
    described = json.loads(capsys.readouterr().out)
    assert {"name", "family", "summary", "reference", "params", "dims", "min_inputs"} <= set(described[0])
    assert cli.main(["methods", "--format", "markdown"]) == 0
    assert capsys.readouterr().out.startswith("| method | family |")


def test_fuse_volumes_respects_geometry(tmp_path, volume_files, capsys):
    out = str(tmp_path / "fused.nrrd")
    assert cli.main(["fuse", *volume_files, "-o", out, "--method", "dwt", "--param", "levels=2", "-q"]) == 0
    scene = bridge.new_scene()
    fused = bridge.load_volume(out, scene)
    reference = bridge.load_volume(volume_files[0], scene)
    assert bridge.array_from_node(fused).shape == bridge.array_from_node(reference).shape
    assert fused.GetSpacing() == pytest.approx(reference.GetSpacing())
    assert fused.GetOrigin() == pytest.approx(reference.GetOrigin())


def test_fuse_volumes_in_colour(tmp_path, volume_files):
    out = str(tmp_path / "colour.nii.gz")
    assert cli.main(["fuse", volume_files[0], volume_files[2], "-o", out, "--colormap", "pet", "-q"]) == 0
    node = bridge.load_volume(out, bridge.new_scene())
    assert node.IsA("vtkMRMLVectorVolumeNode") and bridge.array_from_node(node).shape[-1] == 3


def test_fuse_images(tmp_path, image_files):
    out = str(tmp_path / "fused.png")
    assert cli.main(["fuse", *image_files, "-o", out, "-m", "laplacian", "-q"]) == 0
    fused = iio.imread(out)
    assert fused.shape == iio.imread(image_files[0]).shape and fused.dtype == np.uint8  # RGB: PET is colour
    grey_out = str(tmp_path / "grey.png")
    assert cli.main(["fuse", image_files[0], image_files[0], "-o", grey_out, "-m", "average", "-q"]) == 0
    # Fusing a grey image with itself at fixed 8-bit ranges gives the image back.
    np.testing.assert_array_equal(iio.imread(grey_out), iio.imread(image_files[0])[..., 0])


@pytest.mark.parametrize("argv_tail, message", [
    (["-m", "nope"], "unknown fusion method"),
    (["-m", "laplacian", "-p", "levels=99"], "out of range"),
    (["-p", "sigma=99"], "out of range"),
    (["-p", "levels"], "KEY=VALUE"),
    (["-p", "colour=1"], "has no parameter"),
])
def test_fuse_errors_write_nothing(tmp_path, volume_files, capsys, argv_tail, message):
    out = tmp_path / "never.nrrd"
    assert cli.main(["fuse", volume_files[0], volume_files[1], "-o", str(out), "-q", *argv_tail]) == 1
    assert message in capsys.readouterr().err
    assert not out.exists() and sorted(os.listdir(tmp_path)) == sorted(os.path.basename(p) for p in volume_files)


def test_fuse_missing_file_and_mixed_kinds(tmp_path, volume_files, image_files, capsys):
    assert cli.main(["fuse", str(tmp_path / "absent.nrrd"), volume_files[0], "-o", str(tmp_path / "x.nrrd")]) == 1
    assert "absent.nrrd" in capsys.readouterr().err
    assert cli.main(["fuse", image_files[0], volume_files[0], "-o", str(tmp_path / "x.png")]) == 1
    assert "Do not mix" in capsys.readouterr().err


def test_interrupt_writes_nothing(tmp_path, volume_files, monkeypatch, capsys):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(bridge, "fuse_volume_nodes", interrupted)
    out = tmp_path / "never.nrrd"
    assert cli.main(["fuse", *volume_files[:2], "-o", str(out), "-q"]) == cli.EXIT_CANCELLED
    assert not out.exists()
    assert "nothing was written" in capsys.readouterr().err


def test_metrics_command(image_files, tmp_path, capsys):
    out = str(tmp_path / "fused.png")
    assert cli.main(["fuse", *image_files, "-o", out, "-q"]) == 0
    capsys.readouterr()
    assert cli.main(["metrics", out, *image_files, "--format", "json"]) == 0
    scores = json.loads(capsys.readouterr().out)
    assert list(scores)[:4] == ["EN", "SD", "SF", "AG"]
    # The phantom slice (48 x 40) is too small for MS-SSIM (176) and VIF (41): those are NaN, the rest finite.
    assert np.isnan(scores["MS-SSIM"]) and np.isnan(scores["VIF"])
    assert all(np.isfinite(v) for k, v in scores.items() if k not in ("MS-SSIM", "VIF"))


def _pair_folder(root, phantom3d):
    def to8(x):
        return np.clip(np.rint(255 * (x - x.min()) / (x.max() - x.min())), 0, 255).astype(np.uint8)

    for set_name, other in (("MRI_CT", "CT"), ("MRI_PET", "PET")):
        for k in (10, 12, 14):
            mri = to8(phantom3d["mri"][k])
            o = to8(phantom3d[other.lower()][k])
            if other == "PET":
                o = colour.apply_colormap(o / 255.0, "hot")
            for folder, image in (("MRI", mri), (other, o)):
                os.makedirs(root / set_name / folder, exist_ok=True)
                iio.imwrite(root / set_name / folder / f"{k}.png", image)


def test_evaluate_writes_tables_and_montages(tmp_path, phantom3d, capsys):
    big = {k: np.repeat(np.repeat(v, 4, axis=1), 4, axis=2) for k, v in phantom3d.items()}   # 192 x 160 slices
    _pair_folder(tmp_path / "data", big)
    out = tmp_path / "results"
    code = cli.main(["evaluate", str(tmp_path / "data"), "--methods", "average", "laplacian", "--limit", "2",
                     "--out", str(out), "-q"])
    assert code == 0
    table = capsys.readouterr().out
    assert "| MRI_CT | `average` | 2 |" in table and "| MRI_PET | `laplacian` | 2 |" in table
    with open(out / "results.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 4 and {"EN", "Qabf", "seconds"} <= set(rows[0])
    with open(out / "results_per_pair.csv") as fh:
        assert len(list(csv.DictReader(fh))) == 8
    montage = iio.imread(out / "montage_MRI_PET.png")
    assert montage.ndim == 3 and montage.shape[-1] == 3
    assert (out / "results.md").exists() and (out / "montage_MRI_CT.png").exists()


def test_evaluate_rejects_unknown_method_and_bad_folder(tmp_path, capsys):
    assert cli.main(["evaluate", str(tmp_path), "--methods", "nope"]) == 1
    assert cli.main(["evaluate", str(tmp_path / "absent")]) == 1


def test_demo_main_job(tmp_path):
    written = cli.main(["demo", "--out", str(tmp_path / "demo"), "--size", "48", "-q"])
    assert written == 0
    files = set(os.listdir(tmp_path / "demo"))
    assert {"demo_slices.png", "metrics.json", "mri_ct_laplacian.nrrd", "mri_pet_dwt_colour.nrrd",
            "mri_pet_ifcnn_colour.nrrd"} <= files
    scores = json.loads((tmp_path / "demo" / "metrics.json").read_text())
    assert scores["mri_ct_laplacian"]["Qabf"] > 0.2
    colour_node = bridge.load_volume(str(tmp_path / "demo" / "mri_pet_dwt_colour.nrrd"), bridge.new_scene())
    assert colour_node.IsA("vtkMRMLVectorVolumeNode")


def test_console_script_entry_point():
    done = subprocess.run([sys.executable, "-m", "MedFusionLib.cli", "--version"], capture_output=True, text=True)
    assert done.returncode == 0 and done.stdout.startswith("medfusion ")


def test_train_and_held_out_splits_partition_each_set():
    from MedFusionLib.evaluation import PairSet, split_pairs

    pairs = [(str(k), f"a/{k}.png", f"b/{k}.png") for k in range(11, 20)]      # 9 pairs, in name order
    pair_set = PairSet("MRI_CT", ("MRI", "CT"), pairs)
    train, held = split_pairs(pair_set, "train"), split_pairs(pair_set, "held-out")
    assert [p[0] for p in held] == ["14", "18"]                                  # every 4th pair
    assert sorted(train + held) == sorted(pairs) and not set(train) & set(held)
    assert split_pairs(pair_set, "all") == pairs
    with pytest.raises(Exception, match="split must be one of"):
        split_pairs(pair_set, "test")


def test_cancelled_evaluation_writes_nothing(tmp_path, phantom3d):
    from MedFusionLib import CancelToken, FusionCancelled
    from MedFusionLib.evaluation import evaluate_folder

    _pair_folder(tmp_path / "data", phantom3d)
    token = CancelToken()
    seen = []

    def progress(fraction, message):
        seen.append(fraction)
        if len(seen) == 3:
            token.cancel()

    with pytest.raises(FusionCancelled):
        evaluate_folder(str(tmp_path / "data"), ["average"], out_dir=str(tmp_path / "out"), show_progress=False,
                        progress=progress, cancel=token)
    assert not (tmp_path / "out").exists()


def test_command_line_tunes_the_allocator_of_its_own_process(monkeypatch, capsys):
    from MedFusionLib import runtime

    calls = []
    monkeypatch.setattr(runtime, "tune_allocator", lambda: calls.append(True) or True)
    assert cli.main(["methods"]) == 0
    assert calls == [True]


def test_tune_allocator_applies_on_glibc():
    import platform

    # In a child process: the setting is process-wide and must not change this test session's allocator.
    out = subprocess.run([sys.executable, "-c", "from MedFusionLib import runtime; print(runtime.tune_allocator())"],
                         capture_output=True, text=True, check=True).stdout.strip()
    glibc = platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"
    assert out == str(glibc)
