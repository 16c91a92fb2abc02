"""Cohorts on Dask (issue 11): the manifest checked as a whole, one task per study, exactly once with a worker
killed mid-study, failures recorded while the others go on, reruns that skip complete studies, no
temporary files left, the results table, the command line."""

import csv
import glob
import logging
import os
import sys
import threading

import numpy as np
import pytest

from MedFusionLib import bridge, cli
from MedFusionLib.cohort import (CANCELLED, DONE, FAILED, SKIPPED, STATE_FOLDER, fuse_cohort, job_key,
                                 partial_files, run_study)
from MedFusionLib.errors import FusionCancelled, FusionInputError
from MedFusionLib.files import fuse_files
from MedFusionLib.manifest import ManifestError, read_manifest

SHORT_NRRD = b"NRRD0004\ntype: float\ndimension: 3\nsizes: 10 10 10\nencoding: raw\nendian: little\n\nabc"
SHAPE = (6, 16, 16)


def _write_volume(path, seed):
    voxels = np.random.default_rng(seed).random(SHAPE).astype(np.float32) * 1000
    bridge.save_volume(bridge.node_from_array(bridge.new_scene(), voxels, "v"), str(path))
    return voxels


def _write_dicom_series(folder, stored, seed):
    """One CT series of (K, J, I) int16 slices, 1 mm apart, as pydicom writes it."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    os.makedirs(folder)
    series, study, frame = generate_uid(), generate_uid(), generate_uid()
    for k in range(stored.shape[0]):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = Dataset()
        ds.file_meta = meta
        ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
        ds.Modality, ds.PatientName, ds.PatientID = "CT", "Cohort^Test", f"P{seed}"
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study, series, frame
        ds.SeriesNumber, ds.InstanceNumber = 1, k + 1
        ds.ImageOrientationPatient = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
        ds.ImagePositionPatient = [0.0, 0.0, float(k)]
        ds.PixelSpacing, ds.SliceThickness = [1.0, 1.0], 1.0
        ds.Rows, ds.Columns = stored.shape[1:]
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated = ds.BitsStored = 16
        ds.HighBit, ds.PixelRepresentation = 15, 1
        ds.RescaleSlope, ds.RescaleIntercept = "1", "0"
        ds.PixelData = np.ascontiguousarray(stored[k], dtype=np.int16).tobytes()
        ds.save_as(os.path.join(folder, f"IM{k:04d}.dcm"), enforce_file_format=True)


# --- a method that kills its worker process the first time it runs -----------------------------------------
DIE_ONCE = "test_cohort_die_once"


def _register_die_once(marker, attempts):
    from MedFusionLib.registry import _REGISTRY, register

    if DIE_ONCE in _REGISTRY:
        return

    @register(DIE_ONCE, family="classical", summary="max, but the first call kills its process (tests)",
              reference="test", dims=(2, 3))
    def die_once(stack):
        with open(attempts, "a") as fh:
            fh.write(f"{os.getpid()}\n")
        if not os.path.exists(marker):
            open(marker, "w").close()
            os._exit(1)                  # the worker process dies in the middle of the study
        return stack.max(axis=0)


def _die_once_plugin(marker, attempts):
    from distributed.diagnostics.plugin import WorkerPlugin

    class DieOnce(WorkerPlugin):
        """Registers the method in every worker, the ones the nanny restarts included."""

        def setup(self, worker):
            _register_die_once(marker, attempts)

    return DieOnce()


@pytest.fixture(scope="module")
def client():
    import cloudpickle
    from distributed import Client, LocalCluster

    cloudpickle.register_pickle_by_value(sys.modules[__name__])   # workers cannot import this test module
    cluster = LocalCluster(n_workers=2, processes=True, threads_per_worker=1, silence_logs=logging.ERROR,
                           dashboard_address=":0", memory_limit="3GiB")
    with Client(cluster) as c:
        yield c
    cluster.close()
    cloudpickle.unregister_pickle_by_value(sys.modules[__name__])


@pytest.fixture
def die_once_method(tmp_path):
    from MedFusionLib.registry import _REGISTRY

    marker, attempts = str(tmp_path / "died"), str(tmp_path / "attempts")
    _register_die_once(marker, attempts)          # the client checks the manifest's methods too
    yield marker, attempts
    _REGISTRY.pop(DIE_ONCE, None)


def _cohort_folder(root, n_nrrd=8, with_dicom=True, victim=True):
    """Studies s00.. (NRRD pairs), d0, d1 (DICOM series pairs), 'bad' (a truncated NRRD), 'victim'."""
    data = root / "data"
    data.mkdir()
    lines = ["study,inputs,method"]
    for i in range(n_nrrd):
        _write_volume(data / f"s{i:02d}_mr.nrrd", seed=2 * i)
        _write_volume(data / f"s{i:02d}_pet.nrrd", seed=2 * i + 1)
        lines.append(f"s{i:02d},data/s{i:02d}_mr.nrrd;data/s{i:02d}_pet.nrrd,")
    if with_dicom:
        rng = np.random.default_rng(7)
        for i in range(2):
            for name in ("ct", "mr"):
                _write_dicom_series(str(data / f"d{i}_{name}"), rng.integers(-500, 1500, SHAPE), seed=i)
            lines.append(f"d{i},data/d{i}_ct;data/d{i}_mr,")
    (data / "bad.nrrd").write_bytes(SHORT_NRRD)
    lines.append("bad,data/s00_mr.nrrd;data/bad.nrrd,")
    if victim:
        lines.append(f"victim,data/s01_mr.nrrd;data/s01_pet.nrrd,{DIE_ONCE}")
    manifest = root / "manifest.csv"
    manifest.write_text("\n".join(lines) + "\n")
    return str(manifest)


def _leftovers(out):
    return [p for p in glob.glob(os.path.join(out, "**", "*"), recursive=True) + glob.glob(os.path.join(out, ".*"))
            if p.endswith((".tmp", ".partial")) or ".partial" in os.path.basename(p)]


def test_cohort_survives_a_killed_worker_and_reruns_nothing(tmp_path, client, die_once_method):
    marker, attempts = die_once_method
    client.register_plugin(_die_once_plugin(marker, attempts), name="die-once")
    manifest = _cohort_folder(tmp_path, with_dicom=True)
    out = str(tmp_path / "out")
    result = fuse_cohort(manifest, out, "max", client=client, progress=False)

    studies = [f"s{i:02d}" for i in range(8)] + ["d0", "d1", "bad", "victim"]
    assert [r["study"] for r in result.rows] == studies               # one row per study, manifest order
    status = {r["study"]: r["status"] for r in result.rows}
    assert status.pop("bad") == FAILED and set(status.values()) == {DONE}
    bad = next(r for r in result.rows if r["study"] == "bad")
    assert "cannot load" in bad["error"] and "bad.nrrd" in bad["error"]
    assert os.path.exists(marker)                                    # the victim's first attempt died ...
    pids = open(attempts).read().split()
    assert len(pids) == 2 and pids[0] != pids[1]                     # ... and it ran once more, elsewhere
    assert sorted(os.listdir(out)) == sorted([f"{s}.nrrd" for s in studies if s != "bad"]
                                             + ["results.csv", "results.parquet", STATE_FOLDER])
    assert _leftovers(out) == []
    records = sorted(p for p in os.listdir(os.path.join(out, STATE_FOLDER)) if p.endswith(".json"))
    assert records == sorted(f"{s}.json" for s in studies if s != "bad")

    # The outputs are the fusion of their inputs (max of the normalised inputs, mapped to the reference's window).
    fused = bridge.array_from_node(bridge.load_volume(os.path.join(out, "s03.nrrd"), bridge.new_scene()))
    assert fused.shape == SHAPE and np.isfinite(fused).all()
    # The DICOM studies: read with their geometry (1 mm slices from ImagePositionPatient) on the workers, and
    # the same voxels as fusing them here.
    d0 = read_manifest(manifest, out, "max")[8]
    assert d0.study == "d0"
    fuse_files(d0.inputs, str(tmp_path / "d0_here.nrrd"), "max")
    scene = bridge.new_scene()
    there, here = (bridge.load_volume(p, scene) for p in (os.path.join(out, "d0.nrrd"), str(tmp_path / "d0_here.nrrd")))
    assert there.GetSpacing() == pytest.approx((1.0, 1.0, 1.0))
    assert np.array_equal(bridge.array_from_node(there), bridge.array_from_node(here))
    assert bridge.array_from_node(there).shape == SHAPE

    with open(result.table, newline="") as fh:
        table = list(csv.DictReader(fh))
    assert [row["study"] for row in table] == studies
    assert {row["study"]: row["status"] for row in table}["bad"] == FAILED
    assert all(float(row["seconds"]) > 0 for row in table)

    # A rerun fuses nothing that is complete: only the failed study is tried again.
    times = {s: os.stat(os.path.join(out, f"{s}.nrrd")).st_mtime_ns for s in studies if s != "bad"}
    again = fuse_cohort(manifest, out, "max", client=client, progress=False)
    assert again.submitted == 1 and again.counts == {SKIPPED: len(studies) - 1, FAILED: 1}
    assert {s: os.stat(os.path.join(out, f"{s}.nrrd")).st_mtime_ns for s in times} == times
    assert len(open(attempts).read().split()) == 2
    # Without the bad row, a rerun does nothing at all (not even a cluster is needed).
    lines = open(manifest).read().splitlines()
    open(manifest, "w").write("\n".join(l for l in lines if not l.startswith("bad,")) + "\n")
    nothing = fuse_cohort(manifest, out, "max", workers=1, progress=False)
    assert nothing.submitted == 0 and nothing.counts == {SKIPPED: len(studies) - 1} and nothing.dashboard is None
    assert _leftovers(out) == []


def test_changed_input_or_corrupted_output_is_redone(tmp_path):
    manifest = _cohort_folder(tmp_path, n_nrrd=1, with_dicom=False, victim=False)
    out = tmp_path / "out"
    (out / STATE_FOLDER).mkdir(parents=True)
    study = read_manifest(manifest, str(out), "max")[0]
    state = str(out / STATE_FOLDER)
    key = job_key(study)
    assert run_study(study, state, key)["status"] == DONE
    first = os.stat(study.output).st_mtime_ns
    assert run_study(study, state, key)["status"] == SKIPPED and os.stat(study.output).st_mtime_ns == first
    # A killed attempt's staging folder is removed by the next attempt.
    staging = os.path.join(str(out), f".{os.path.basename(study.output)}.abc123.tmp")
    os.mkdir(staging)
    assert partial_files(study.output) == [staging]
    with open(study.output, "r+b") as fh:          # same size, one byte changed: not complete any more
        fh.seek(-1, os.SEEK_END)
        last = fh.read(1)
        fh.seek(-1, os.SEEK_END)
        fh.write(bytes([last[0] ^ 1]))
    assert run_study(study, state, key)["status"] == DONE and not os.path.exists(staging)
    assert run_study(study, state, key)["status"] == SKIPPED
    # A changed input changes the job: the output is redone.
    _write_volume(tmp_path / "data" / "s00_pet.nrrd", seed=99)
    assert run_study(study, state, job_key(study))["status"] == DONE


def test_manifest_problems_are_reported_all_at_once(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    _write_volume(data / "a.nrrd", 0)
    _write_volume(data / "b.nrrd", 1)
    (tmp_path / "m.csv").write_text(
        "study,inputs,output,method,params,colour\n"
        "one,data/a.nrrd;data/b.nrrd,same.nrrd,max,,\n"
        "two,data/a.nrrd;data/missing.nrrd,same.nrrd,max,,\n"
        "one,data/a.nrrd;data/b.nrrd,,no_such_method,,\n"
        "four,data/a.nrrd;data/b.nrrd,,laplacian,levels=zero,\n"
        "five,data/a.nrrd,,max,,\n"
        "six/x,data/a.nrrd;data/b.nrrd,,max,,\n"
        "seven,data/a.nrrd;data/b.nrrd,,laplacian,levels=4,\n")        # planned on a's header: 16 x 16 slices
    with pytest.raises(ManifestError) as caught:
        read_manifest(str(tmp_path / "m.csv"), str(tmp_path / "out"), "max")
    text = "\n".join(caught.value.problems)
    for expected in ("unknown column(s) 'colour'", "missing.nrrd' does not exist", "also the output of study 'one'",
                     "study id already used on line 2", "unknown fusion method 'no_such_method'", "levels",
                     "needs at least two inputs", "a study id may hold letters",
                     "'seven'): method 'laplacian': levels=4 is too many for images of shape (16, 16)"):
        assert expected in text, expected
    assert len(caught.value.problems) == 9
    assert "nothing was run" in str(caught.value)


def test_manifest_paths_defaults_and_options(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    _write_volume(data / "a.nrrd", 0)
    _write_volume(data / "b.nrrd", 1)
    (tmp_path / "sub").mkdir()
    (tmp_path / "m.csv").write_text(
        "study,inputs,output,params,register,pet_units\n"
        "p1,data/a.nrrd; data/b.nrrd,,levels=3,,\n"
        "p2,data/b.nrrd;data/a.nrrd,sub/p2.nii.gz,,rigid,suv\n"
        "p3,data/b.nrrd;data/a.nrrd,,,sideways,kBq\n")
    with pytest.raises(ManifestError) as caught:
        read_manifest(str(tmp_path / "m.csv"), "out", "laplacian", {"levels": "2"})
    assert len(caught.value.problems) == 2 and "sideways" in caught.value.problems[0]
    lines = (tmp_path / "m.csv").read_text().splitlines()[:-1]
    (tmp_path / "m.csv").write_text("\n".join(lines) + "\n")
    p1, p2 = read_manifest(str(tmp_path / "m.csv"), str(tmp_path / "out"), "laplacian", {"levels": "2"})
    assert p1.inputs == (str(data / "a.nrrd"), str(data / "b.nrrd"))
    assert p1.output == str(tmp_path / "out" / "p1.nrrd") and p1.params == {"levels": "3"}
    assert p1.fuse_options() == {}                     # nothing passed that the manifest does not give
    assert p2.output == str(tmp_path / "sub" / "p2.nii.gz") and p2.params == {"levels": "2"}
    assert p2.fuse_options() == {"register": "rigid", "pet_units": "suv"}


def test_cancel_closes_cleanly_and_records_the_unfinished(tmp_path, client):
    manifest = _cohort_folder(tmp_path, n_nrrd=3, with_dicom=False, victim=False)
    out = str(tmp_path / "out")
    stop = threading.Event()
    stop.set()
    with pytest.raises(FusionCancelled):
        fuse_cohort(manifest, out, "max", client=client, progress=False, cancel=stop)
    with open(os.path.join(out, "results.csv"), newline="") as fh:
        table = list(csv.DictReader(fh))
    assert len(table) == 4 and {r["status"] for r in table} <= {CANCELLED, DONE, FAILED}
    assert _leftovers(out) == []


def test_results_parquet_matches_the_csv(tmp_path, client):
    pq = pytest.importorskip("pyarrow.parquet", reason="pyarrow is optional: the Parquet table needs it")
    manifest = _cohort_folder(tmp_path, n_nrrd=2, with_dicom=False, victim=False)
    result = fuse_cohort(manifest, str(tmp_path / "out"), "max", client=client, progress=False,
                         metrics=("EN", "SD"))
    table = pq.read_table(result.parquet).to_pylist()
    assert [r["study"] for r in table] == ["s00", "s01", "bad"]
    assert [r["status"] for r in table] == [DONE, DONE, FAILED]
    assert table[0]["metric_EN"] > 0 and table[0]["metric_SD"] > 0 and table[2]["metric_EN"] is None


def test_cli_cohort_exit_codes(tmp_path, capsys):
    manifest = _cohort_folder(tmp_path, n_nrrd=1, with_dicom=False, victim=False)
    out = str(tmp_path / "out")
    assert cli.main(["cohort", manifest, "--out", out, "--method", "max", "--workers", "1", "-q"]) == cli.EXIT_ERROR
    captured = capsys.readouterr()
    assert "2 studies: 1 done, 1 failed" in captured.out and "study bad failed: cannot load" in captured.err
    assert os.path.exists(os.path.join(out, "s00.nrrd")) and not os.path.exists(os.path.join(out, "bad.nrrd"))
    lines = open(manifest).read().splitlines()
    open(manifest, "w").write("\n".join(l for l in lines if not l.startswith("bad,")) + "\n")
    assert cli.main(["cohort", manifest, "--out", out, "--method", "max", "-q"]) == cli.EXIT_OK
    assert "1 studies: 1 skipped" in capsys.readouterr().out
    open(manifest, "a").write("s9,data/nothing.nrrd;data/s00_pet.nrrd,\n")
    assert cli.main(["cohort", manifest, "--out", out, "--method", "max", "-q"]) == cli.EXIT_ERROR
    assert "nothing.nrrd' does not exist" in capsys.readouterr().err


def test_metrics_are_on_the_published_scale_for_volume_and_dicom_studies(tmp_path):
    """``metrics``: each input through its intensity window, the output through the reference's, on 0..255.
    Fusing a volume with itself by ``max`` gives the volume back on the same scale, so SSIM (= SSIM(A, F) +
    SSIM(B, F), scale-sensitive) is 2 and EN, SD are the source's; DICOM series are read as the fusion read
    them."""
    from MedFusionLib import metrics
    from MedFusionLib.intensity import normalise, robust_window

    manifest = _cohort_folder(tmp_path, n_nrrd=1, with_dicom=True, victim=False)
    with open(manifest, "a") as fh:
        fh.write("self,data/s00_mr.nrrd;data/s00_mr.nrrd,\n")
    out = tmp_path / "out"
    (out / STATE_FOLDER).mkdir(parents=True)
    studies = {s.study: s for s in read_manifest(manifest, str(out), "max")}
    state = str(out / STATE_FOLDER)
    names = ("EN", "SD", "MI", "SSIM")
    rows = {name: run_study(studies[name], state, job_key(studies[name]), metrics=names)
            for name in ("s00", "d0", "self")}
    for name, row in rows.items():
        assert row["status"] == DONE and row["error"] == "", (name, row["error"])
        assert 0 < row["metric_EN"] <= 8 and 0 < row["metric_SD"] <= 128 and row["metric_MI"] > 0, (name, row)
    same = rows["self"]
    assert same["metric_SSIM"] == pytest.approx(2.0, abs=1e-3)
    source = bridge.array_from_node(bridge.load_volume(str(tmp_path / "data" / "s00_mr.nrrd"), bridge.new_scene()))
    scaled = np.round(normalise(source, robust_window(source)).astype(np.float64) * 255)
    assert same["metric_SD"] == pytest.approx(metrics.sd(scaled), rel=1e-3)
    assert same["metric_EN"] == pytest.approx(metrics.en(scaled), rel=1e-3)


def test_registration_transforms_are_part_of_a_complete_study(tmp_path, monkeypatch):
    """A registering study writes OUT.input<k>.tfm beside its output: the completion record covers them (a
    missing or changed transform redoes the study), and a killed attempt's staged transforms are removed."""
    import MedFusionLib.files as files

    manifest = _cohort_folder(tmp_path, n_nrrd=1, with_dicom=False, victim=False)
    lines = open(manifest).read().splitlines()
    open(manifest, "w").write("study,inputs,method,register\n" + "\n".join(l + ",rigid" for l in lines[1:2]) + "\n")
    out = tmp_path / "out"
    (out / STATE_FOLDER).mkdir(parents=True)
    study = read_manifest(manifest, str(out), "max")[0]
    state = str(out / STATE_FOLDER)
    calls = []

    def fake_fuse_files(inputs, output, method, *, params, register="none", **kwargs):
        calls.append(register)
        open(output, "wb").write(b"fused")
        open(files.transform_path(output, 2), "w").write(f"transform {len(calls)}\n")
        return output

    monkeypatch.setattr(files, "fuse_files", fake_fuse_files)
    tfm = files.transform_path(study.output, 2)
    assert tfm == str(out / "s00.input2.tfm")
    assert run_study(study, state, job_key(study))["status"] == DONE and calls == ["rigid"]
    assert run_study(study, state, job_key(study))["status"] == SKIPPED and len(calls) == 1
    open(tfm, "a").write("changed\n")
    assert run_study(study, state, job_key(study))["status"] == DONE and len(calls) == 2
    os.remove(tfm)
    staged = str(out / "s00.input2.staged.tfm")
    open(staged, "w").write("half")
    assert partial_files(study.output) == [staged]
    assert run_study(study, state, job_key(study))["status"] == DONE and len(calls) == 3
    assert not os.path.exists(staged) and os.path.exists(tfm)
    assert run_study(study, state, job_key(study))["status"] == SKIPPED


def test_unknown_metric_is_refused_before_work(tmp_path):
    manifest = _cohort_folder(tmp_path, n_nrrd=1, with_dicom=False, victim=False)
    with pytest.raises(FusionInputError, match="unknown metric.*'ENTROPY'"):
        fuse_cohort(manifest, str(tmp_path / "out"), "max", workers=1, progress=False, metrics=("EN", "ENTROPY"))
    assert not os.path.exists(tmp_path / "out")
