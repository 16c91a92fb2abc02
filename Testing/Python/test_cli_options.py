"""Every option and subcommand of the ``medfusion`` command line, end to end, each checked for its effect
(an expected result computed apart, or a difference from the run without it), not only for exit code 0.

fuse: -m/--method, -p/--param, --mode, --axis, --batch-size, --percentiles, --input-range, --output-range,
--colormap, --colour-space, -o, -q; methods: --family, --format; metrics: --axis, --format; evaluate: --methods,
--sets, --limit, --split, --out, -q; demo: --out, --size; train: --data, --out, --steps, --batch-size, --patch,
--lr, --seed, --device, --init, --resume, --checkpoint, --checkpoint-every, --log, --augment, --no-natural,
--phantoms, --split, --feature-net, --set, -q. test_cli.py covers errors, geometry and the overall flows.
"""

import csv
import json
import os

import imageio.v3 as iio
import numpy as np
import pytest

import MedFusionLib as mf
from MedFusionLib import bridge, cli, colour, metrics, pipeline
from MedFusionLib.deep.weights import PACKAGE_WEIGHTS, read_weights

# --- fuse -----------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def grid_volumes(tmp_path_factory, phantom3d):
    """MRI and CT of the phantom on one grid (no resampling between them), as NRRD files, and their arrays."""
    root = tmp_path_factory.mktemp("volumes")
    scene = bridge.new_scene()
    arrays, paths = {}, []
    for name in ("mri", "ct"):
        node = bridge.node_from_array(scene, phantom3d[name], name, spacing=(1, 1, 2), origin=(-20, -24, -24))
        path = str(root / f"{name}.nrrd")
        bridge.save_volume(node, path)
        arrays[name] = bridge.array_from_node(bridge.load_volume(path, bridge.new_scene())).astype(np.float64)
        paths.append(path)
    return paths, arrays


def _fuse_volume(tmp_path, inputs, *options, name="out.nrrd"):
    out = str(tmp_path / name)
    assert cli.main(["fuse", *inputs, "-o", out, "-q", *options]) == 0
    return bridge.array_from_node(bridge.load_volume(out, bridge.new_scene())).astype(np.float64)


def _unit(x, lo, hi):
    return np.clip((x - lo) / (hi - lo), 0, 1)


def test_fuse_input_range_and_output_ranges(tmp_path, grid_volumes):
    paths, arrays = grid_volumes
    mri, ct = arrays["mri"], arrays["ct"]
    lo, hi = 0.0, float(np.percentile(ct, 90))              # a window that clips part of both inputs
    mean = (_unit(mri, lo, hi) + _unit(ct, lo, hi)) / 2
    common = ["-m", "average", "--input-range", str(lo), str(hi)]
    np.testing.assert_allclose(_fuse_volume(tmp_path, paths, *common, "--output-range", "unit"), mean, atol=1e-5)
    np.testing.assert_allclose(_fuse_volume(tmp_path, paths, *common, "--output-range", "10,20"), 10 + 10 * mean,
                               atol=1e-4)
    # 'reference' (the default): mapped back to the first input's window, here the given input range.
    np.testing.assert_allclose(_fuse_volume(tmp_path, paths, *common), lo + (hi - lo) * mean, rtol=1e-5, atol=1e-3)


def test_fuse_percentiles(tmp_path, grid_volumes):
    paths, arrays = grid_volumes
    mri, ct = arrays["mri"], arrays["ct"]
    full = _fuse_volume(tmp_path, paths, "-m", "average", "--percentiles", "0", "100", "--output-range", "unit")
    expected = (_unit(mri, mri.min(), mri.max()) + _unit(ct, ct.min(), ct.max())) / 2
    np.testing.assert_allclose(full, expected, atol=1e-5)
    narrow = _fuse_volume(tmp_path, paths, "-m", "average", "--percentiles", "10", "60", "--output-range", "unit")
    windows = [np.percentile(x, [10, 60]) for x in (mri, ct)]
    np.testing.assert_allclose(narrow, (_unit(mri, *windows[0]) + _unit(ct, *windows[1])) / 2, atol=1e-5)
    assert np.abs(narrow - full).max() > 0.1


def test_fuse_mode_axis_batch_size_and_param(tmp_path, grid_volumes, monkeypatch):
    paths, arrays = grid_volumes
    mri, ct = arrays["mri"], arrays["ct"]
    fixed = ["-m", "laplacian", "-p", "levels=2", "--input-range", "0", str(max(mri.max(), ct.max())),
             "--output-range", "unit"]
    window = (0.0, max(mri.max(), ct.max()))
    kw = dict(method="laplacian", levels=2, input_ranges=window, output_range="unit")

    def slicewise(axis):
        moved = [np.moveaxis(x, axis, 0) for x in (mri, ct)]
        return np.moveaxis(np.stack([mf.fuse([a, b], **kw) for a, b in zip(*moved)]), 0, axis)

    native = _fuse_volume(tmp_path, paths, *fixed, "--mode", "3d")
    np.testing.assert_allclose(native, mf.fuse([mri, ct], mode="3d", **kw), atol=1e-5)
    by_slice = _fuse_volume(tmp_path, paths, *fixed, "--mode", "slices")
    np.testing.assert_allclose(by_slice, slicewise(0), atol=1e-5)
    along_1 = _fuse_volume(tmp_path, paths, *fixed, "--mode", "slices", "--axis", "1")
    np.testing.assert_allclose(along_1, slicewise(1), atol=1e-5)
    assert np.abs(native - by_slice).max() > 0.01 and np.abs(along_1 - by_slice).max() > 0.01
    # -p: the parameter reaches the method.
    assert np.abs(_fuse_volume(tmp_path, paths, *fixed[:2], "-p", "levels=1", *fixed[4:], "--mode", "slices")
                  - by_slice).max() > 0.01
    # --batch-size: the slices go through the method in batches of that size; the result does not change.
    blocks = []
    original = pipeline._fuse_block

    def recording(p, blocks_in, progress):
        blocks.append(blocks_in[0].shape[0])
        return original(p, blocks_in, progress)

    monkeypatch.setattr(pipeline, "_fuse_block", recording)
    batched = _fuse_volume(tmp_path, paths, *fixed, "--mode", "slices", "--batch-size", "5")
    assert blocks == [5, 5, 5, 5, 4]                               # 24 slices along axis 0
    np.testing.assert_array_equal(batched, by_slice)


@pytest.fixture
def colour_images(tmp_path, phantom2d):
    def to8(x):
        return np.clip(np.rint(255 * (x - x.min()) / (x.max() - x.min())), 0, 255).astype(np.uint8)

    mri = to8(phantom2d["mri"])
    pet = colour.apply_colormap(to8(phantom2d["pet"]) / 255.0, "hot")
    paths = [str(tmp_path / "mri.png"), str(tmp_path / "pet.png"), str(tmp_path / "pet_grey.png")]
    iio.imwrite(paths[0], mri)
    iio.imwrite(paths[1], pet)
    iio.imwrite(paths[2], to8(phantom2d["pet"]))
    return paths, mri.astype(np.float64), pet.astype(np.float64), to8(phantom2d["pet"])


@pytest.mark.parametrize("space", ["ycbcr", "ihs"])
def test_fuse_colour_space(tmp_path, colour_images, space):
    """Average fusion of a grey MRI with a colour PET keeps the PET's chroma: every channel moves by the same
    255 (F - L) with F = (MRI/255 + L) / 2 and L the space's luminance of the PET, BT.601 Y or IHS (R+G+B)/3
    (see test_colour.py)."""
    paths, mri, pet, _ = colour_images
    out = str(tmp_path / f"{space}.png")
    assert cli.main(["fuse", paths[0], paths[1], "-o", out, "-m", "average", "--colour-space", space, "-q"]) == 0
    fused = iio.imread(out).astype(np.float64)
    weights = [0.299, 0.587, 0.114] if space == "ycbcr" else [1 / 3, 1 / 3, 1 / 3]
    luma = pet @ weights / 255
    expected = np.clip(pet + 255 * ((mri / 255 + luma) / 2 - luma)[..., None], 0, 255)
    assert np.abs(fused - expected).max() <= 1.0
    other = "ihs" if space == "ycbcr" else "ycbcr"
    assert cli.main(["fuse", paths[0], paths[1], "-o", str(tmp_path / "o.png"), "-m", "average", "--colour-space",
                     other, "-q"]) == 0
    assert np.abs(iio.imread(str(tmp_path / "o.png")).astype(np.float64) - fused).max() >= 5


def test_fuse_colormap_per_input_and_quiet(tmp_path, colour_images, capsys):
    paths, mri, _, pet8 = colour_images
    single, listed = str(tmp_path / "single.png"), str(tmp_path / "listed.png")
    assert cli.main(["fuse", paths[0], paths[2], "-o", single, "-m", "average", "--colormap", "pet"]) == 0
    captured = capsys.readouterr()
    assert f"wrote {single}" in captured.out                        # without -q: a report (and a progress bar)
    assert cli.main(["fuse", paths[0], paths[2], "-o", listed, "-m", "average", "--colormap", "none,pet", "-q"]) == 0
    assert capsys.readouterr().out == ""                            # -q: nothing printed
    a, b = iio.imread(single), iio.imread(listed)
    assert a.shape == mri.shape + (3,) and np.array_equal(a, b)    # NAME,NAME: per input, the same here
    expected = mf.fuse([mri.astype(np.uint8), colour.apply_colormap(pet8 / 255.0, "pet")], method="average",
                       input_ranges=(0, 255))
    assert np.abs(a.astype(int) - expected).max() <= 1


# --- methods, metrics -----------------------------------------------------------------------------------------
def test_methods_family_filter(capsys):
    assert cli.main(["methods", "--family", "signal processing", "--format", "json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert {m["name"] for m in listed} == {s.name for s in mf.methods("signal processing")}
    assert {m["family"] for m in listed} == {"signal processing"} and "laplacian" not in {m["name"] for m in listed}


def test_metrics_axis_and_text_format(tmp_path, grid_volumes, capsys):
    paths, arrays = grid_volumes
    fused = str(tmp_path / "f.nrrd")
    assert cli.main(["fuse", *paths, "-o", fused, "-m", "max", "-q"]) == 0
    volume = bridge.array_from_node(bridge.load_volume(fused, bridge.new_scene())).astype(np.float64)
    capsys.readouterr()
    assert cli.main(["metrics", fused, *paths, "--axis", "1", "--format", "json"]) == 0
    along_1 = json.loads(capsys.readouterr().out)
    expected = metrics.evaluate_all(volume, [arrays["mri"], arrays["ct"]], axis=1)
    for name, value in expected.items():
        assert along_1[name] == pytest.approx(value, rel=1e-9, nan_ok=True), name
    assert cli.main(["metrics", fused, *paths, "--format", "json"]) == 0
    along_0 = json.loads(capsys.readouterr().out)
    assert along_0["SF"] != pytest.approx(along_1["SF"], rel=1e-3)
    assert cli.main(["metrics", fused, *paths]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == len(metrics.METRICS) and lines[0].split()[0] == "EN"
    assert "higher is better" in lines[0] and "lower is better" in next(l for l in lines if l.startswith("Nabf"))
    assert float(lines[0].split()[1]) == pytest.approx(along_0["EN"], abs=1e-4)


# --- evaluate, demo --------------------------------------------------------------------------------------------
def test_evaluate_sets_split_limit(tmp_path, grey_pair_folder, capsys):
    # grey_pair_folder: MRI_PET with 8 pairs named 10..17; the held-out split is every 4th (13 and 17).
    out = tmp_path / "held"
    assert cli.main(["evaluate", grey_pair_folder, "--methods", "max", "--sets", "MRI_PET", "--split", "held-out",
                     "--out", str(out), "-q"]) == 0
    assert "| MRI_PET | `max` | 2 |" in capsys.readouterr().out
    with open(out / "results_per_pair.csv") as fh:
        assert sorted(r["pair"] for r in csv.DictReader(fh)) == ["13", "17"]
    assert cli.main(["evaluate", grey_pair_folder, "--methods", "max", "--split", "train", "--limit", "4", "-q"]) == 0
    assert "| MRI_PET | `max` | 4 |" in capsys.readouterr().out
    # --sets: a set that is not there is not silently replaced by the others.
    assert cli.main(["evaluate", grey_pair_folder, "--methods", "max", "--sets", "MRI_CT", "-q"]) == 1
    assert "MRI_CT" in capsys.readouterr().err


def test_demo_size(tmp_path):
    assert cli.main(["demo", "--out", str(tmp_path / "d"), "--size", "40", "-q"]) == 0
    array = bridge.array_from_node(bridge.load_volume(str(tmp_path / "d" / "mri_ct_laplacian.nrrd"), bridge.new_scene()))
    assert array.shape == (16, 40, 40)                         # depth max(16, size // 3), in-plane size x size


# --- train ----------------------------------------------------------------------------------------------------
# pmgi (one training phase: --steps 1 is a whole run) on 16 x 16 patches; every run a fraction of a second.
def _train(tmp_path, name, *options, data=None, method="pmgi", steps="1"):
    out = tmp_path / f"{name}.pt"
    argv = ["train", method, "--out", str(out), "--steps", steps, "--batch-size", "2", "--patch", "16",
            "--phantoms", "0", "--no-natural", "-q", *options]
    if data is not None:
        argv += ["--data", data]
    assert cli.main(argv) == 0
    return read_weights(str(out), method)


def _max_change(a, b):
    return max(float((a["state_dict"][k] - b["state_dict"][k]).abs().max()) for k in a["state_dict"])


def test_train_records_and_uses_its_options(tmp_path, grey_pair_folder, monkeypatch):
    from MedFusionLib.deep.networks import PMGINet

    shapes = []
    forward = PMGINet.forward

    def recording(self, x, *args, **kwargs):
        shapes.append(tuple(x.shape))
        return forward(self, x, *args, **kwargs)

    monkeypatch.setattr(PMGINet, "forward", recording)
    base = _train(tmp_path, "base", "--device", "cpu", "--log", str(tmp_path / "base.csv"), steps="2",
                  data=grey_pair_folder)
    assert shapes and all(s[0] == 2 and s[-2:] == (16, 16) for s in shapes)   # --batch-size 2, --patch 16
    meta = base["meta"]
    assert meta["steps"] == {"fusion": 2} and meta["device"] == "cpu"        # --steps, --device
    assert meta["data"]["natural_images"] == [] and meta["data"]["phantom_pairs"] == []   # --no-natural, --phantoms 0
    with open(tmp_path / "base.csv") as fh:                                   # --log: rows up to the last step
        assert [r["step"] for r in csv.DictReader(fh)][-1] == "2"
    shapes.clear()
    bigger = _train(tmp_path, "bigger", "--batch-size", "3", "--patch", "24", data=grey_pair_folder)
    assert shapes and all(s[0] == 3 and s[-2:] == (24, 24) for s in shapes)
    assert bigger["meta"]["batch_size"] == 3 and bigger["meta"]["patch"] == 24
    first = _train(tmp_path, "first", data=grey_pair_folder)
    # --seed: another seed, another start and other patches.
    other = _train(tmp_path, "other", "--seed", "5", data=grey_pair_folder)
    assert _max_change(first, other) > 1e-3 and other["meta"]["seed"] == 5
    # --set: a recipe option; --lr: the step size; --augment: the patches.
    fixed = _train(tmp_path, "fixed", "--set", "proportions=fixed", data=grey_pair_folder)
    assert fixed["meta"]["options"]["proportions"] == "fixed" and _max_change(first, fixed) > 0
    slow = _train(tmp_path, "slow", "--lr", "1e-9", data=grey_pair_folder)
    assert slow["meta"]["lr"] == 1e-9 and _max_change(first, slow) > 1e-4
    rotated = _train(tmp_path, "rotated", "--augment", "rotate=30,prob=1", data=grey_pair_folder)
    assert rotated["meta"]["augment"]["rotate"] == 30 and rotated["meta"]["augment"] != first["meta"]["augment"]
    assert _max_change(first, rotated) > 0
    # --split all: the held-back pairs train too; --phantoms: synthetic pairs join the data.
    split = first["meta"]["data"]
    everything = _train(tmp_path, "everything", "--split", "all", "--phantoms", "1", data=grey_pair_folder)["meta"]["data"]

    def count(described):
        return sum(len(names) for folder in described["pair_folders"].values() for names in folder.values())

    assert count(everything) == 8 and count(split) == 6 and split["held_out"] and not everything["held_out"]
    assert len(everything["phantom_pairs"]) > 0


def test_train_init_starts_from_the_given_weights(tmp_path, grey_pair_folder):
    shipped_path = os.path.join(PACKAGE_WEIGHTS, "pmgi.pt")
    shipped = read_weights(shipped_path, "pmgi")
    # With a vanishing learning rate the result is the starting point: the given weights, not a fresh network.
    still = _train(tmp_path, "still", "--init", shipped_path, "--lr", "1e-12", data=grey_pair_folder)
    assert _max_change(still, shipped) < 1e-6 and still["meta"]["init"] == shipped_path
    fresh = _train(tmp_path, "fresh", "--lr", "1e-12", data=grey_pair_folder)
    assert _max_change(fresh, shipped) > 0.01


def test_train_resume_checkpoint_and_checkpoint_every(tmp_path, grey_pair_folder, monkeypatch):
    from MedFusionLib.deep import trainer as T

    common = ["--checkpoint-every", "1"]
    straight = _train(tmp_path, "straight", *common, steps="2", data=grey_pair_folder)
    ckpt = tmp_path / "run.ckpt"
    original = T.Trainer.save_checkpoint
    saved_at, interrupted = [], []

    def save_then_interrupt(self, phases, path=None):
        saved = original(self, phases, path)
        saved_at.append(self.step)
        if not interrupted:
            interrupted.append(self.step)
            raise KeyboardInterrupt          # as Ctrl-C right after the first checkpoint
        return saved

    monkeypatch.setattr(T.Trainer, "save_checkpoint", save_then_interrupt)
    out = tmp_path / "resumed.pt"
    argv = ["train", "pmgi", "--out", str(out), "--steps", "2", "--batch-size", "2", "--patch", "16", "--phantoms",
            "0", "--no-natural", "-q", "--data", grey_pair_folder, *common]
    assert cli.main(argv + ["--checkpoint", str(ckpt)]) == cli.EXIT_CANCELLED
    assert interrupted == [1] and set(saved_at) == {1}                # --checkpoint-every 1 ...
    assert ckpt.exists() and not out.exists()                           # ... at --checkpoint
    monkeypatch.setattr(T.Trainer, "save_checkpoint", original)
    from MedFusionLib.deep.networks import PMGINet

    calls = []
    forward = PMGINet.forward
    monkeypatch.setattr(PMGINet, "forward", lambda self, x, *a, **k: calls.append(1) or forward(self, x, *a, **k))
    assert cli.main(argv + ["--checkpoint", str(tmp_path / "run2.ckpt"), "--resume", str(ckpt)]) == 0
    resumed_calls = len(calls)
    _train(tmp_path, "one_step", steps="1", data=grey_pair_folder)
    # --resume: only the step left is run (a fresh run, same seed, would also end with the straight weights) ...
    assert resumed_calls == len(calls) - resumed_calls > 0
    assert _max_change(read_weights(str(out), "pmgi"), straight) == 0   # ... and it ends with the uninterrupted weights


def test_train_feature_net(tmp_path, grey_pair_folder):
    """ifcnn's loss uses the feature network: another one (a 1-step one trained here) gives other weights."""
    feature = tmp_path / "feature_net.pt"
    _train(tmp_path, "feature_net", method="feature_net", data=grey_pair_folder)
    shipped = _train(tmp_path, "ifcnn_shipped", method="ifcnn", data=grey_pair_folder)
    own = _train(tmp_path, "ifcnn_own", "--feature-net", str(feature), method="ifcnn", data=grey_pair_folder)
    assert own["meta"]["final_losses"] != shipped["meta"]["final_losses"]
    assert _max_change(own, shipped) > 0 and "--feature-net" in own["meta"]["command"]
