"""Faults (issue 12, items 2 and 6): reader noise folded into one message, nothing half-written on a full
disk, on an error, on Ctrl-C or on SIGTERM, for every writer."""

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from MedFusionLib import atomic, bridge, cli, runtime
from MedFusionLib.errors import FusionInputError

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BATCH = os.path.join(ROOT, "MedFusion", "Resources", "Scripts", "fuse_batch.py")


def _write_volume(path, shape=(8, 16, 16), seed=0):
    scene = bridge.new_scene()
    voxels = np.random.default_rng(seed).random(shape).astype(np.float32) * 1000   # noise: incompressible
    bridge.save_volume(bridge.node_from_array(scene, voxels, "v"), str(path))


# --- reader noise ----------------------------------------------------------------------------------------
SHORT_NRRD = b"NRRD0004\ntype: float\ndimension: 3\nsizes: 10 10 10\nencoding: raw\nendian: little\n\nabc"


def test_corrupt_nrrd_gives_one_message_and_nothing_on_stderr(tmp_path, capfd):
    path = tmp_path / "short.nrrd"
    path.write_bytes(SHORT_NRRD)
    with pytest.raises(FusionInputError) as caught:
        bridge.load_volume(str(path), bridge.new_scene())
    out, err = capfd.readouterr()
    assert err == "" and out == ""                     # teem's "[nrrd] ..." lines did not reach fd 2
    message = str(caught.value)
    assert "cannot load" in message and "fread got only 0 4-sized things, not 1000" in message


def test_unreadable_nifti_noise_is_folded_in(tmp_path, capfd):
    path = tmp_path / "bad.nii"
    path.write_bytes(b"not a nifti file at all")
    with pytest.raises(FusionInputError, match="Could not create IO object"):
        bridge.load_volume(str(path), bridge.new_scene())
    assert capfd.readouterr().err == ""


def test_cli_corrupt_input_prints_only_medfusions_message(tmp_path, capfd):
    bad, good = tmp_path / "short.nrrd", tmp_path / "good.nrrd"
    bad.write_bytes(SHORT_NRRD)
    _write_volume(good)
    capfd.readouterr()
    status = cli.main(["fuse", str(good), str(bad), "-o", str(tmp_path / "out.nrrd"), "-q"])
    err = capfd.readouterr().err
    assert status == cli.EXIT_ERROR
    assert err.count("\n") == 1 and err.startswith("medfusion: error: cannot load") and "[nrrd]" not in err
    assert not (tmp_path / "out.nrrd").exists()


def test_a_good_file_still_loads_and_stderr_works_afterwards(tmp_path, capfd):
    path = tmp_path / "good.nrrd"
    _write_volume(path)
    node = bridge.load_volume(str(path), bridge.new_scene())
    assert node.GetImageData().GetDimensions() == (16, 16, 8)
    os.write(2, b"after\n")
    assert capfd.readouterr().err == "after\n"          # fd 2 restored


@pytest.mark.parametrize("content", ["text", "truncated", "empty"])
def test_a_broken_image_file_is_one_message(tmp_path, capfd, content):
    # A text file named .png, a PNG cut short, an empty .png: Pillow's OSError or imageio's SimpleITK
    # fallback's RuntimeError used to reach the user as a traceback (or as "image file is truncated" alone).
    import imageio.v3 as iio

    good, bad = tmp_path / "good.png", tmp_path / "bad.png"
    iio.imwrite(good, np.random.default_rng(0).integers(0, 255, (64, 64), dtype=np.uint8))
    bad.write_bytes({"text": b"this is not a png\n", "truncated": good.read_bytes()[:200], "empty": b""}[content])
    capfd.readouterr()
    status = cli.main(["fuse", str(good), str(bad), "-o", str(tmp_path / "out.png"), "-q"])
    err = capfd.readouterr().err
    assert status == cli.EXIT_ERROR
    assert err.count("\n") == 1 and err.startswith(f"medfusion: error: cannot read {str(bad)!r} as an image ("), err
    assert not (tmp_path / "out.png").exists()


# --- atomic writers --------------------------------------------------------------------------------------
def test_replacing_removes_the_temporary_file_on_error_and_keeps_the_old_file(tmp_path):
    target = tmp_path / "t.csv"
    target.write_text("old")
    with pytest.raises(KeyboardInterrupt):
        with atomic.replacing(str(target)) as tmp:
            with open(tmp, "w") as fh:
                fh.write("half")
            raise KeyboardInterrupt
    assert target.read_text() == "old" and os.listdir(tmp_path) == ["t.csv"]
    with atomic.replacing(str(target), keep_extension=True) as tmp:
        assert tmp.endswith(".partial.csv")
        with open(tmp, "w") as fh:
            fh.write("new")
    assert target.read_text() == "new" and os.listdir(tmp_path) == ["t.csv"]


# --- a full disk: RLIMIT_FSIZE in a subprocess -----------------------------------------------------------
# Writes past the limit fail with EFBIG (SIGXFSZ ignored, else the kernel kills the process).
LIMITED = """
import resource, runpy, signal, sys
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
limit = int(sys.argv[1])
resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
sys.argv = sys.argv[2:]
{body}
"""
RUN_CLI = LIMITED.format(body="from MedFusionLib.cli import main\nsys.exit(main(sys.argv))")
RUN_SCRIPT = LIMITED.format(body="runpy.run_path(sys.argv[0], run_name='__main__')")


def _limited(script, limit, *args, cwd=None):
    return subprocess.run([sys.executable, "-c", script, str(limit), *map(str, args)], capture_output=True,
                          text=True, timeout=300, cwd=cwd)


@pytest.fixture
def volume_pair(tmp_path):
    inputs = tmp_path / "in"
    inputs.mkdir()
    _write_volume(inputs / "a.nrrd", (16, 64, 64), 0)
    _write_volume(inputs / "b.nrrd", (16, 64, 64), 1)
    out = tmp_path / "out"
    out.mkdir()
    return str(inputs / "a.nrrd"), str(inputs / "b.nrrd"), out


@pytest.mark.parametrize("name", ["fused.nrrd", "fused.nii.gz", "fused.mha"])
def test_cli_fuse_on_a_full_disk_leaves_nothing(volume_pair, name):
    a, b, out = volume_pair
    done = _limited(RUN_CLI, 64 << 10, "fuse", a, b, "-o", out / name, "-m", "average", "-q")
    assert done.returncode == cli.EXIT_ERROR, done.stderr[-3000:]
    assert done.stderr.startswith("medfusion: error: cannot save") and "Traceback" not in done.stderr
    assert os.listdir(out) == []


def test_cli_fuse_images_on_a_full_disk_leaves_nothing(tmp_path):
    import imageio.v3 as iio

    rng = np.random.default_rng(0)
    for name in ("a.png", "b.png"):
        iio.imwrite(tmp_path / name, rng.integers(0, 255, (256, 256), dtype=np.uint8))
    out = tmp_path / "out"
    out.mkdir()
    done = _limited(RUN_CLI, 16 << 10, "fuse", tmp_path / "a.png", tmp_path / "b.png", "-o", out / "f.png",
                    "-m", "average", "-q")
    assert done.returncode == cli.EXIT_ERROR, done.stderr[-3000:]
    assert "File too large" in done.stderr and "Traceback" not in done.stderr
    assert "f.png" in done.stderr      # Pillow's error has no file name: the CLI names the output
    assert os.listdir(out) == []


def test_batch_script_on_a_full_disk_leaves_nothing(volume_pair):
    a, b, out = volume_pair
    done = _limited(RUN_SCRIPT, 64 << 10, BATCH, a, b, "-o", out / "fused.nrrd", "-m", "average",
                    "--metrics", out / "metrics.csv")
    assert done.returncode == 1, done.stderr[-3000:]
    assert "fuse_batch.py: error: cannot save" in done.stderr
    assert os.listdir(out) == []


def test_evaluate_on_a_full_disk_leaves_nothing(grey_pair_folder, tmp_path):
    out = tmp_path / "results"
    done = _limited(RUN_CLI, 4 << 10, "evaluate", grey_pair_folder, "--methods", "average", "--limit", "2",
                    "--out", out, "-q")
    assert done.returncode == cli.EXIT_ERROR, done.stderr[-3000:]
    assert "File too large" in done.stderr and "Traceback" not in done.stderr
    assert not out.exists() or os.listdir(out) == []


def test_weights_and_checkpoints_on_a_full_disk_leave_nothing(tmp_path):
    code = LIMITED.format(body="""
import os, torch
from MedFusionLib.deep.networks import IFCNNNet
from MedFusionLib.deep.weights import save_weights
from MedFusionLib.deep.trainer import Trainer
folder = sys.argv[0]
model = IFCNNNet()
for step in ("weights", "checkpoint"):
    try:
        if step == "weights":
            save_weights(os.path.join(folder, "w.pt"), "ifcnn", model)
        else:
            Trainer("ifcnn", {"net": model}, checkpoint_path=os.path.join(folder, "run.ckpt"),
                    show_progress=False).save_checkpoint([])
        print(step, "written")
    except Exception as e:
        print(step, "refused", type(e).__name__, "disk full?" in str(e))
""")
    done = _limited(code, 8 << 10, tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.split("\n")[:2] == ["weights refused FusionError True", "checkpoint refused FusionError True"]
    assert os.listdir(tmp_path) == []


# --- SIGTERM -------------------------------------------------------------------------------------------
def _wait_for_progress(process, needle=b"%|"):
    seen = b""
    deadline = time.time() + 120
    while needle not in seen and time.time() < deadline:
        chunk = os.read(process.stderr.fileno(), 4096)
        if not chunk:
            break
        seen += chunk
    return seen


# SIGTERM (a scheduler stopping the job: exit 143) and SIGINT (Ctrl-C: exit 130) sent mid-fusion.
SIGNALS = {"SIGTERM": (signal.SIGTERM, 143, {"cli": b"medfusion: terminated (SIGTERM); nothing was written",
                                              "batch": b"fuse_batch.py: terminated (SIGTERM); nothing was written"}),
           "SIGINT": (signal.SIGINT, 130, {"cli": b"medfusion: interrupted; nothing was written",
                                            "batch": b"fuse_batch.py: cancelled; nothing was written"})}


@pytest.mark.parametrize("signame", sorted(SIGNALS))
@pytest.mark.parametrize("command", ["cli", "batch"])
def test_a_signal_mid_fusion_leaves_nothing(tmp_path, command, signame):
    signum, status, messages = SIGNALS[signame]
    inputs = tmp_path / "in"
    inputs.mkdir()
    _write_volume(inputs / "a.nrrd", (48, 96, 96), 0)
    _write_volume(inputs / "b.nrrd", (48, 96, 96), 1)
    out = tmp_path / "out"
    out.mkdir()
    if command == "cli":
        argv = [sys.executable, "-m", "MedFusionLib.cli", "fuse", str(inputs / "a.nrrd"), str(inputs / "b.nrrd"),
                "-o", str(out / "fused.nrrd"), "-m", "nsst_papcnn", "--batch-size", "1"]
        needle = b"%|"                  # tqdm's bar: the fusion has started
    else:
        argv = [sys.executable, BATCH, str(inputs / "a.nrrd"), str(inputs / "b.nrrd"), "-o", str(out / "fused.nrrd"),
                "-m", "nsst_papcnn", "--metrics", str(out / "m.csv")]
        needle = None
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        if needle:
            seen = _wait_for_progress(process, needle)
            assert needle in seen, seen.decode(errors="replace")
        else:
            time.sleep(8)                # the batch script shows no progress: well into its fusion by now
        assert process.poll() is None
        process.send_signal(signum)
        _, err = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == status, err.decode(errors="replace")[-3000:]
    assert messages[command] in err
    assert os.listdir(out) == []


def test_sigterm_handler_is_restored_after_main(capsys):
    before = signal.getsignal(signal.SIGTERM)
    assert cli.main(["methods", "--family", "classical"]) == 0
    assert signal.getsignal(signal.SIGTERM) is before
    assert runtime.terminate_as_interrupt() is not None
    with pytest.raises(runtime.Terminated):
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(1)
    signal.signal(signal.SIGTERM, before)
