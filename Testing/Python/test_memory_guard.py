"""The memory guard (issue 12, item 3) and the free-disk check (item 2): estimates from shapes and file
headers, refused before any work with the estimate and what would fit."""

import os
import subprocess
import sys
import tracemalloc

import numpy as np
import pytest

import MedFusionLib
from MedFusionLib import files, memory, pipeline
from MedFusionLib.errors import FusionInputError
from MedFusionLib.memory import MemoryLimitError


def _zeros(shape, dtype=np.int16):
    # Zero-stride stand-ins: a "large" volume that costs no memory (plan never scans integer arrays).
    return np.broadcast_to(np.zeros((), dtype), shape)


def test_parse_size():
    assert memory.parse_size("2G") == 2 << 30
    assert memory.parse_size("500M") == 500 << 20
    assert memory.parse_size("1.5GiB") == int(1.5 * (1 << 30))
    assert memory.parse_size("800MB") == 800 << 20
    assert memory.parse_size("4096") == 4096
    with pytest.raises(FusionInputError, match="MEDFUSION_MAX_MEMORY must be a size"):
        memory.parse_size("lots")


def test_available_memory_reads_the_limit_or_the_system(monkeypatch):
    monkeypatch.setenv("MEDFUSION_MAX_MEMORY", "300M")
    assert memory.available_memory() == (300 << 20, "MEDFUSION_MAX_MEMORY=300M")
    monkeypatch.delenv("MEDFUSION_MAX_MEMORY")
    available, source = memory.available_memory()
    assert source == "available memory" and 0 < available < (1 << 50)


def test_every_method_has_a_measured_factor():
    for spec in MedFusionLib.methods():
        per_voxel, fixed = memory.method_factor(spec)
        assert per_voxel >= 8 * memory.MARGIN, spec.name      # at least the normalised float32 stack


def test_3d_call_over_the_limit_is_refused_before_work_with_what_fits(monkeypatch):
    monkeypatch.setenv("MEDFUSION_MAX_MEMORY", "40M")
    volumes = [_zeros((64, 128, 128)), _zeros((64, 128, 128))]
    calls = []
    with pytest.raises(MemoryLimitError) as caught:
        MedFusionLib.fuse(volumes, "laplacian", mode="3d", progress=lambda f, m: calls.append(f))
    message = str(caught.value)
    assert calls == []                                         # nothing started
    assert "needs about" in message and "40.0 MiB available (MEDFUSION_MAX_MEMORY=40M)" in message
    assert "mode='slices'" in message
    # The suggestion is honest: the call it names passes the same check.
    batch = int(message.split("batch_size=")[1].split(" ")[0])
    plan = pipeline.plan(volumes, "laplacian", mode="slices", batch_size=batch)
    assert plan.mode == "slices" and plan.batch_size == batch
    assert isinstance(caught.value, FusionInputError)          # callers catching input errors see it too


def test_slice_batches_over_the_limit_suggest_a_smaller_batch(monkeypatch):
    monkeypatch.setenv("MEDFUSION_MAX_MEMORY", "100M")
    volumes = [_zeros((64, 256, 256)), _zeros((64, 256, 256))]
    with pytest.raises(MemoryLimitError, match=r"batch_size=\d+") as caught:
        pipeline.plan(volumes, "nsst_similarity", mode="slices")    # default: 64 slices per batch
    assert "64 per batch" in str(caught.value)


def test_nothing_fits_says_so(monkeypatch):
    monkeypatch.setenv("MEDFUSION_MAX_MEMORY", "1M")
    with pytest.raises(MemoryLimitError, match="none of this method's modes"):
        pipeline.plan([_zeros((512, 512)), _zeros((512, 512))], "guided_filter")


def test_calls_within_the_limit_run(monkeypatch):
    monkeypatch.setenv("MEDFUSION_MAX_MEMORY", "64M")
    a = np.random.default_rng(0).random((64, 64)).astype(np.float32)
    assert MedFusionLib.fuse([a, a[::-1].copy()], "laplacian").shape == (64, 64)


@pytest.mark.parametrize("method", ["laplacian", "guided_filter", "dwt", "pca"])
def test_estimate_covers_the_measured_numpy_peak(method):
    # tracemalloc sees numpy's allocations: the estimate (margin included) must not be below them.
    rng = np.random.default_rng(1)
    a, b = (rng.random((3, 128, 128)).astype(np.float32) for _ in range(2))
    MedFusionLib.fuse([a[0], b[0]], method)             # warm caches (filter banks, imports)
    plan = pipeline.plan([a, b], method, mode="slices")
    tracemalloc.start()
    try:
        MedFusionLib.fuse([a, b], method, mode="slices")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    estimate = memory.estimate_fusion(plan.spec, 2, plan.spatial_shape, plan.mode, plan.axis, plan.batch_size)
    assert peak <= estimate, (peak, estimate)


# --- headers ---------------------------------------------------------------------------------------------
def test_headers_are_read_without_the_voxels(tmp_path):
    from MedFusionLib import bridge

    scene = bridge.new_scene()
    array = np.arange(5 * 6 * 7, dtype=np.int16).reshape(5, 6, 7)
    node = bridge.node_from_array(scene, array, "v")
    for name in ("v.nrrd", "v.nii.gz", "v.nii", "v.mha"):
        bridge.save_volume(node, str(tmp_path / name))
        info = memory.volume_info(str(tmp_path / name))
        assert (info.shape, info.components, info.itemsize) == ((5, 6, 7), 1, 2), name
    rgb = bridge.node_from_array(scene, np.zeros((2, 6, 7, 3), np.uint8), "c")
    bridge.save_volume(rgb, str(tmp_path / "c.nrrd"))
    info = memory.volume_info(str(tmp_path / "c.nrrd"))
    assert (info.shape, info.components, info.itemsize) == ((2, 6, 7), 3, 1)


def test_a_dicom_series_is_sized_from_its_first_header_without_noise(tmp_path, capfd):
    from dicom_series import write_series

    folder = tmp_path / "ct"
    folder.mkdir()
    write_series(str(folder), np.zeros((4, 6, 7), np.int16))
    info = memory.volume_info(str(folder))
    assert (info.shape, info.components, info.itemsize) == ((4, 6, 7), 1, 4)   # read as float32
    # A folder was handed to SimpleITK's file reader, whose HDF5 probe printed pages of noise.
    assert capfd.readouterr().err == ""


HUGE_NRRD = (b"NRRD0004\ntype: float\ndimension: 3\nsizes: 100000 100000 100000\nencoding: raw\n"
             b"endian: little\n\nabc")


def _huge_nifti() -> bytes:
    header = np.zeros(348, np.uint8)
    header[:4] = np.frombuffer(np.int32(348).tobytes(), np.uint8)
    header[40:56] = np.frombuffer(np.array([3, 30000, 30000, 30000, 1, 1, 1, 1], "<i2").tobytes(), np.uint8)
    header[70:74] = np.frombuffer(np.array([16, 32], "<i2").tobytes(), np.uint8)      # float32
    header[344:348] = np.frombuffer(b"n+1\0", np.uint8)
    return header.tobytes() + b"\0" * 4 + b"abc"


@pytest.mark.parametrize("name,content", [("huge.nrrd", HUGE_NRRD), ("huge.nii", _huge_nifti())])
def test_a_header_claiming_a_huge_volume_is_refused_before_reading(tmp_path, name, content):
    # In a subprocess: without the guard Slicer's reader tries to allocate it and aborts the process.
    path = tmp_path / name
    path.write_bytes(content)
    code = ("import sys\nfrom MedFusionLib import bridge\n"
            "try:\n    bridge.load_volume(sys.argv[1], bridge.new_scene())\n"
            "except Exception as e:\n    print(type(e).__name__, e)\n")
    done = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.startswith("MemoryLimitError"), done.stdout
    assert "its header says" in done.stdout and "more than the" in done.stdout
    assert done.stderr == ""


def _write_volume(path, shape=(8, 16, 16)):
    from MedFusionLib import bridge

    scene = bridge.new_scene()
    node = bridge.node_from_array(scene, np.random.default_rng(0).random(shape).astype(np.float32), "v")
    bridge.save_volume(node, str(path))


def test_fuse_files_checks_the_whole_job_before_reading(tmp_path, monkeypatch):
    from MedFusionLib import bridge

    a, b = tmp_path / "a.nrrd", tmp_path / "b.nrrd"
    _write_volume(a, (32, 64, 64))
    _write_volume(b, (32, 64, 64))

    def no_reading(*args, **kwargs):
        raise AssertionError("a voxel was read")

    monkeypatch.setattr(bridge, "load_volume", no_reading)
    monkeypatch.setenv("MEDFUSION_MAX_MEMORY", "2M")
    with pytest.raises(MemoryLimitError, match="for the inputs and output node"):
        files.fuse_files([str(a), str(b)], str(tmp_path / "out.nrrd"), "average", mode="slices", batch_size=1)
    assert not (tmp_path / "out.nrrd").exists()


def test_fuse_files_refuses_an_output_that_will_not_fit_on_its_disk(tmp_path, monkeypatch):
    from collections import namedtuple

    from MedFusionLib import bridge

    a, b = tmp_path / "a.nrrd", tmp_path / "b.nrrd"
    _write_volume(a)
    _write_volume(b)
    monkeypatch.setattr(bridge, "load_volume", lambda *a, **k: pytest.fail("a voxel was read"))
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(memory.shutil, "disk_usage", lambda folder: usage(1 << 30, (1 << 30) - 1000, 1000))
    with pytest.raises(MemoryLimitError, match=r"needs about .* of disk space .* has 1000 B free"):
        files.fuse_files([str(a), str(b)], str(tmp_path / "out.nrrd"), "average")


def test_cli_reports_the_memory_refusal(tmp_path, monkeypatch, capsys):
    from MedFusionLib import cli

    a, b = tmp_path / "a.nrrd", tmp_path / "b.nrrd"
    _write_volume(a, (32, 64, 64))
    _write_volume(b, (32, 64, 64))
    monkeypatch.setenv("MEDFUSION_MAX_MEMORY", "3M")
    status = cli.main(["fuse", str(a), str(b), "-o", str(tmp_path / "out.nrrd"), "-m", "laplacian", "-q"])
    err = capsys.readouterr().err
    assert status == cli.EXIT_ERROR
    assert err.startswith("medfusion: error: ") and "MEDFUSION_MAX_MEMORY=3M" in err
    assert sorted(os.listdir(tmp_path)) == ["a.nrrd", "b.nrrd"]


@pytest.mark.parametrize("limit", ["12M", "20M"])
def test_what_fuse_files_says_would_fit_fits_beside_the_volumes_it_holds(tmp_path, monkeypatch, limit):
    # The fusion's suggestion used to ignore the inputs and output node fuse_files holds: at 12M it said
    # "batch_size=4 (about 5.9 MiB)", and fusing so was then refused as needing 12.7 MiB.
    a, b = tmp_path / "a.nrrd", tmp_path / "b.nrrd"
    _write_volume(a, (48, 96, 96))
    _write_volume(b, (48, 96, 96))
    monkeypatch.setenv("MEDFUSION_MAX_MEMORY", limit)
    out = str(tmp_path / "out.nrrd")
    with pytest.raises(MemoryLimitError, match="besides .* for the inputs and output node") as caught:
        files.fuse_files([str(a), str(b)], out, "laplacian", mode="3d")
    message = str(caught.value)
    batch = int(message.split("batch_size=")[1].split(" ")[0])
    files.fuse_files([str(a), str(b)], out, "laplacian", mode="slices", batch_size=batch)
    assert os.path.isfile(out)


def test_nothing_fits_beside_the_volumes_says_so(tmp_path, monkeypatch):
    a, b = tmp_path / "a.nrrd", tmp_path / "b.nrrd"
    _write_volume(a, (48, 96, 96))
    _write_volume(b, (48, 96, 96))
    monkeypatch.setenv("MEDFUSION_MAX_MEMORY", "8M")         # the volumes alone take 6.8 MiB
    with pytest.raises(MemoryLimitError, match="none of this method's modes") as caught:
        files.fuse_files([str(a), str(b)], str(tmp_path / "out.nrrd"), "laplacian", mode="3d")
    assert "lighter method (e.g. 'average')" in str(caught.value)
