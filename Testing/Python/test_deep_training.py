"""The training pipeline of the learned methods: data, augmentation, losses, EWC, trainer, recipes, CLI.

Every recipe trains a few steps on a tiny synthetic pair folder (a smoke test, seconds); nothing here
needs ../shared or a GPU.
"""

import csv
import json
import os

import numpy as np
import pytest

import torch  # noqa: E402 (a required dependency: imported, never skipped)

from MedFusionLib import WeightsError, FusionInputError, FusionError  # noqa: E402
from MedFusionLib.deep import data as D  # noqa: E402
from MedFusionLib.deep import losses as L  # noqa: E402
from MedFusionLib.deep.augment import AugmentConfig, augment_batch, build_augmentation  # noqa: E402
from MedFusionLib.deep.ewc import EWC  # noqa: E402
from MedFusionLib.deep.recipes import RECIPES, TrainConfig, train  # noqa: E402
from MedFusionLib.deep.trainer import Phase, Trainer  # noqa: E402
from MedFusionLib.deep.weights import PACKAGE_WEIGHTS, read_weights  # noqa: E402

LEARNED = ("cnn_weight_map", "dscnn", "ifcnn", "pmgi", "fusiondn", "u2fusion")


def _to8(x):
    x = x.astype(np.float64)
    return np.round(255 * (x - x.min()) / (x.max() - x.min())).astype(np.uint8)


@pytest.fixture(scope="module")
def pair_folder(tmp_path_factory, phantom3d):
    """A folder laid out like aanlib-dev: MRI_PET/{MRI,PET}/k.png, 8 pairs (6 train, 2 held out), one RGB."""
    import imageio.v3 as iio

    root = tmp_path_factory.mktemp("pairs")
    for mod in ("MRI", "PET"):
        os.makedirs(root / "MRI_PET" / mod)
    for k in range(8):
        mri, pet = _to8(phantom3d["mri"][8 + k]), _to8(phantom3d["pet"][8 + k])
        iio.imwrite(root / "MRI_PET" / "MRI" / f"{k + 10}.png", mri)
        iio.imwrite(root / "MRI_PET" / "PET" / f"{k + 10}.png", np.repeat(pet[..., None], 3, axis=-1) if k == 0 else pet)
    return str(root)


@pytest.fixture(scope="module")
def feature_net_path(tmp_path_factory, pair_folder):
    out = str(tmp_path_factory.mktemp("feat") / "feature_net.pt")
    train(TrainConfig(method="feature_net", out=out, data=[pair_folder], steps=2, batch_size=2, patch=32,
                      phantoms=0, natural=False, show_progress=False))
    return out


def _config(method, out, pair_folder, feature_net_path, **kw):
    base = dict(method=method, out=out, data=[pair_folder], steps=len(RECIPES[method].phases) + 1, batch_size=2,
                patch=16 if method == "cnn_weight_map" else 32, phantoms=0, natural=False, show_progress=False,
                feature_net=feature_net_path)
    base.update(kw)
    return TrainConfig(**base)


# --- data ----------------------------------------------------------------------------------------------
def test_pair_folder_uses_only_the_training_split(pair_folder):
    train_items = D.load_pair_folder(pair_folder, "train")
    held = D.load_pair_folder(pair_folder, "held-out")
    assert [it.name for it in held] == ["MRI_PET/13", "MRI_PET/17"]          # every 4th pair in name order
    assert len(train_items) == 6 and not {it.name for it in train_items} & {it.name for it in held}
    a = train_items[0].images
    assert a.dtype == np.float32 and a.shape == (2, 48, 40) and 0 <= a.min() and a.max() <= 1
    # The RGB file is read as its protocol luminance / 255, like the evaluation reads it.
    from MedFusionLib.evaluation import read_image
    from MedFusionLib.metrics import protocol_image

    rgb = read_image(os.path.join(pair_folder, "MRI_PET", "PET", "10.png"))
    assert rgb.ndim == 3
    np.testing.assert_allclose(a[1], protocol_image(rgb) / 255.0, atol=1e-6)


def test_volume_pairs_give_slices_and_3d_patches(tmp_path, phantom3d):
    for mod in ("CT", "PET"):
        os.makedirs(tmp_path / "CT_PET" / mod)
    np.save(tmp_path / "CT_PET" / "CT" / "v0.npy", phantom3d["ct"].astype(np.float32))
    np.save(tmp_path / "CT_PET" / "PET" / "v0.npy", phantom3d["pet"])
    # The second pair as NRRD / NIfTI files, read through Slicer's volume IO (slicer-core).
    from MedFusionLib import bridge

    scene = bridge.new_scene()
    for name in ("v1.nrrd", "v2.nii.gz"):
        for mod, key in (("CT", "ct"), ("PET", "pet")):
            node = bridge.node_from_array(scene, phantom3d[key], mod)
            bridge.save_volume(node, str(tmp_path / "CT_PET" / mod / name))
    items = D.load_pair_folder(str(tmp_path), "all")
    assert [it.name for it in items] == ["CT_PET/v0", "CT_PET/v1", "CT_PET/v2"]
    assert items[0].images.shape == (2, 24, 48, 40)
    for item in items[1:]:                     # the same volumes through Slicer's IO
        np.testing.assert_allclose(item.images, items[0].images, atol=1e-5)
    # Normalised like the pipeline: the 0.5-99.5 percentile window to [0, 1].
    from MedFusionLib import intensity

    ct = phantom3d["ct"]
    np.testing.assert_allclose(items[0].images[0], intensity.normalise(ct, intensity.robust_window(ct)), atol=1e-6)
    slices = D.PatchSampler(items, 16, seed=1).sample(3)
    cubes = D.PatchSampler(items, 8, spatial_dims=3, seed=1).sample(2)
    assert slices.shape == (3, 2, 16, 16) and cubes.shape == (2, 2, 8, 8, 8)


def test_sampler_is_seeded_and_resumable(pair_folder):
    items = D.load_pair_folder(pair_folder)
    aug = build_augmentation(AugmentConfig(), 2)
    a = D.PatchSampler(items, 24, augment=aug, seed=5)
    b = D.PatchSampler(items, 24, augment=aug, seed=5)
    np.testing.assert_array_equal(a.sample(4), b.sample(4))
    state = a.state()
    first = a.sample(4)
    a.set_state(state)
    np.testing.assert_array_equal(a.sample(4), first)
    assert not np.array_equal(D.PatchSampler(items, 24, augment=aug, seed=6).sample(4), b.sample(4))


def test_augmentation_moves_sources_together_and_stays_in_range(rng):
    config = AugmentConfig.parse("none,flip=1,rotate=30,prob=1")
    transform = build_augmentation(config, 2)
    x = rng.random((1, 16, 16), dtype=np.float32)
    batch = np.stack([np.concatenate([x, x])] * 4)            # two identical "sources" per sample
    out = augment_batch(batch, transform, np.random.default_rng(0))
    assert out.shape == batch.shape and not np.allclose(out, batch)
    np.testing.assert_array_equal(out[:, 0], out[:, 1])        # one geometric transform per sample
    noisy = augment_batch(batch, build_augmentation(AugmentConfig(noise=0.5, prob=1.0), 2), np.random.default_rng(0))
    assert noisy.min() >= 0.0 and noisy.max() <= 1.0
    assert build_augmentation(AugmentConfig.parse("none"), 2) is None
    for bad in ("rotate", "spin=3", "noise=-1", "flip=2"):
        with pytest.raises(FusionInputError):
            AugmentConfig.parse(bad)


def test_synthetic_pairs(rng):
    clear = rng.random((4, 1, 32, 32)).astype(np.float32)
    sources, target = D.multifocus_pairs(clear, rng)
    assert sources.shape == (4, 2, 32, 32) and np.array_equal(target, clear)
    # Where one source is sharp the other is blurred: together they hold the clear image.
    sharp = np.isclose(sources, clear).any(axis=1)
    assert sharp.mean() > 0.95
    a, b, label = D.blur_patch_pairs(clear, rng)
    clear_first = np.isclose(a, clear).all(axis=(1, 2, 3))
    np.testing.assert_array_equal(clear_first, label.astype(bool))
    exposure = D.exposure_pairs(clear, rng)
    assert (exposure[:, 0].mean(axis=(1, 2)) < exposure[:, 1].mean(axis=(1, 2))).all()


# --- losses and EWC ------------------------------------------------------------------------------------
def test_losses_behave():
    x = torch.rand(3, 1, 32, 32)
    assert torch.allclose(L.ssim(x, x), torch.ones(3), atol=1e-4)
    assert (L.ssim(x, torch.rand(3, 1, 32, 32)) < 0.5).all()
    flat = torch.full((2, 1, 16, 16), 0.3)
    assert L.gradient_magnitude(flat).abs().max() == 0 and L.laplacian(flat).abs().max() == 0
    ramp = torch.linspace(0, 1, 16).repeat(1, 1, 16, 1)
    assert L.gradient_magnitude(ramp)[..., 2:-2, 2:-2].min() > 0
    assert (L.entropy_bits(flat) == 0).all() and float(L.entropy_bits(x[:1])) > 7.0
    assert L.entropy_bits(x).shape == (3,)
    # Intensity and max-gradient pieces (for the GAN and U-Net recipes to come): zero at their optimum.
    assert L.intensity_loss(x, x).item() == 0 and L.intensity_loss(x, x + 0.5).item() == pytest.approx(0.5)
    weight = torch.zeros_like(x)
    assert L.intensity_loss(x, x + 0.5, weight=weight).item() == 0
    sources = torch.cat([ramp, torch.zeros_like(ramp)], dim=1)
    assert L.max_gradient_loss(ramp, sources).item() == 0 and L.max_gradient_loss(flat[:1], sources).item() > 0
    cube = torch.rand(1, 1, 16, 16, 16)      # larger than the 11-tap SSIM window
    assert L.gradient_magnitude(cube).shape == cube.shape and L.ssim(cube, cube).item() == pytest.approx(1, abs=1e-4)


def test_ewc_keeps_earlier_task_parameters():
    torch.manual_seed(0)
    target_a, target_b = torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 1.0]])
    xs = torch.randn(64, 2)
    task_a = torch.cat([xs, xs @ target_a.t() + 0.1 * torch.randn(64, 1)], dim=1)   # noisy targets: (x, y)
    ys = torch.randn(64, 2)
    ys[:, 0] = 0.0          # task B gives the first weight no gradient; the second is pulled to 1

    def loss(model, batch, target=None):
        x = batch[:, :2]
        y = batch[:, 2:] if target is None else x @ target.t()
        return ((model(x) - y) ** 2).mean()

    def fit(ewc_weight):
        model = torch.nn.Linear(2, 1, bias=False)
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        for _ in range(200):
            opt.zero_grad(); loss(model, task_a).backward(); opt.step()
        ewc = EWC(ewc_weight)
        # Per-sample Fisher: the batch-mean gradient is ~0 at task A's optimum, per-sample ones are not.
        fisher = ewc.consolidate(model, lambda b: loss(model, b), [task_a[:32], task_a[32:]])
        assert all((f >= 0).all() for f in fisher.values()) and fisher["weight"].min() > 1e-3
        assert ewc.penalty(model).item() == pytest.approx(0.0, abs=1e-12)
        for _ in range(200):
            opt.zero_grad()
            (loss(model, ys, target_b) + ewc.penalty(model)).backward()
            opt.step()
        copy = EWC()
        copy.load_state_dict(ewc.state_dict())
        assert copy.penalty(model).item() == pytest.approx(ewc.penalty(model).item())
        return float(((model.weight.detach() - target_a) ** 2).sum())

    assert fit(0.0) == pytest.approx(1.0, abs=0.05)     # without EWC task B takes the second weight to 1
    assert fit(100.0) < 0.5 * fit(0.0)


# --- trainer: checkpoint, resume, log --------------------------------------------------------------------
def _toy_run(tmp_path, interrupt_at=None, resume=None, steps_run=None):
    torch.manual_seed(3)
    model = torch.nn.Conv2d(1, 1, 3, padding=1)
    sampler = D.PatchSampler([D.PairItem("x", np.random.default_rng(0).random((1, 32, 32), dtype=np.float32))], 8, seed=2)
    opt = torch.optim.Adam(model.parameters(), lr=0.01)

    def step(k):
        if interrupt_at is not None and k == interrupt_at:
            raise KeyboardInterrupt
        if steps_run is not None:
            steps_run.append(k)
        x = torch.from_numpy(sampler.sample(2))
        loss = ((model(x) - x.flip(-1)) ** 2).mean() + 0.01 * torch.randn(()).abs()
        opt.zero_grad(); loss.backward(); opt.step()
        return {"loss": loss.item()}

    trainer = Trainer("toy", {"model": model}, samplers={"s": sampler}, log_path=str(tmp_path / "log.csv"),
                      checkpoint_path=str(tmp_path / "toy.ckpt"), log_every=2, show_progress=False)
    trainer.run([Phase("a", 6, step, {"adam": opt})], resume=resume)
    return model


def test_resume_reproduces_an_uninterrupted_run(tmp_path):
    straight = _toy_run(tmp_path / "one")
    with pytest.raises(KeyboardInterrupt):
        _toy_run(tmp_path / "two", interrupt_at=3)
    assert os.path.exists(tmp_path / "two" / "toy.ckpt")
    steps_run = []
    resumed = _toy_run(tmp_path / "two", resume=str(tmp_path / "two" / "toy.ckpt"), steps_run=steps_run)
    # Only the steps after the checkpoint run (a fresh seeded run would end with the same weights too).
    assert steps_run and len(steps_run) < 6
    for p, q in zip(straight.parameters(), resumed.parameters()):
        torch.testing.assert_close(p, q)
    with open(tmp_path / "two" / "log.csv") as fh:
        steps = [int(r["step"]) for r in csv.DictReader(fh)]
    assert steps == [2, 4, 6]


# --- recipes: every method trains a few steps ------------------------------------------------------------
def test_everything_trainable_has_a_recipe_and_a_command():
    from MedFusionLib.deep.weights import TRAIN_COMMANDS
    from MedFusionLib.families._learned import TRAINABLE

    assert set(TRAINABLE) == set(RECIPES) == set(TRAIN_COMMANDS)


@pytest.mark.parametrize("method", ("feature_net",) + LEARNED + ("nsst_similarity",))
def test_every_recipe_trains_a_few_steps(method, tmp_path, pair_folder, feature_net_path):
    out = str(tmp_path / f"{method}.pt")
    config = _config(method, out, pair_folder, feature_net_path, log=str(tmp_path / "log.csv"))
    meta = train(config)
    payload = read_weights(out, method)
    assert payload["meta"]["seed"] == 0 and sum(payload["meta"]["steps"].values()) == config.steps
    assert set(meta["final_losses"]) and all(np.isfinite(v) for v in meta["final_losses"].values())
    with open(tmp_path / f"{method}.json") as fh:
        assert json.load(fh)["method"] == method
    assert meta["data"]["held_out"]          # the held-back pairs are recorded
    # Same seed, same weights.
    again = train(_config(method, str(tmp_path / "again.pt"), pair_folder, feature_net_path))
    assert again["final_losses"] == meta["final_losses"]
    first, second = payload["state_dict"], read_weights(str(tmp_path / "again.pt"), method)["state_dict"]
    assert first.keys() == second.keys() and all(torch.equal(first[k], second[k]) for k in first)


@pytest.mark.parametrize("method, options", [("fusiondn", {"weights": "image"}), ("u2fusion", {"weights": "pixel"}),
                                             ("pmgi", {"proportions": "fixed"})])
def test_recipe_variants_train(method, options, tmp_path, pair_folder, feature_net_path):
    # The papers' forms (FusionDN/U2Fusion per-image weights, PMGI's fixed proportions) beside our defaults.
    meta = train(_config(method, str(tmp_path / "w.pt"), pair_folder, feature_net_path, options=options))
    assert all(meta["options"][k] == v for k, v in options.items())
    assert all(np.isfinite(v) for v in meta["final_losses"].values())
    with pytest.raises(FusionInputError, match="must be"):
        bad = {k: "nonsense" for k in options}
        train(_config(method, str(tmp_path / "x.pt"), pair_folder, feature_net_path, options=bad))
    assert not os.path.exists(tmp_path / "x.pt")


@pytest.mark.parametrize("method", ("ifcnn", "u2fusion", "dscnn"))
def test_weights_round_trip(method, tmp_path):
    from MedFusionLib.deep.networks import IFCNNNet, StackedAutoencoderNet, U2FusionNet
    from MedFusionLib.deep.weights import load_model, save_weights

    torch.manual_seed(0)
    net = {"ifcnn": IFCNNNet, "u2fusion": U2FusionNet, "dscnn": StackedAutoencoderNet}[method]().eval()
    path = str(tmp_path / f"{method}.pt")
    save_weights(path, method, net, {"command": f"medfusion train {method} ...", "seed": 0})
    loaded = load_model(method, torch.device("cpu"), path)
    x = torch.rand(2, 1 if method == "dscnn" else 2, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), net(x), rtol=0, atol=0)
    assert read_weights(path, method)["meta"]["seed"] == 0 and os.path.exists(tmp_path / f"{method}.json")


def test_fine_tuning_starts_from_the_shipped_weights(tmp_path, pair_folder, feature_net_path):
    shipped = os.path.join(PACKAGE_WEIGHTS, "ifcnn.pt")
    tuned = train(_config("ifcnn", str(tmp_path / "tuned.pt"), pair_folder, feature_net_path, steps=2, batch_size=4,
                          init=shipped, feature_net=os.path.join(PACKAGE_WEIGHTS, "feature_net.pt")))
    scratch = train(_config("ifcnn", str(tmp_path / "scratch.pt"), pair_folder, feature_net_path, steps=2, batch_size=4,
                            feature_net=os.path.join(PACKAGE_WEIGHTS, "feature_net.pt")))
    # The shipped network already fuses: its loss on the same batches is far below a fresh network's.
    assert tuned["final_losses"]["loss"] < 0.5 * scratch["final_losses"]["loss"]
    before = read_weights(shipped, "ifcnn")
    after = read_weights(str(tmp_path / "tuned.pt"), "ifcnn")
    assert before["arch"] == after["arch"] and after["meta"]["init"] == shipped
    assert any(not torch.equal(before["state_dict"][k], after["state_dict"][k]) for k in before["state_dict"])


def test_resume_across_phases_with_ewc_reproduces_an_uninterrupted_run(tmp_path, pair_folder, feature_net_path,
                                                                         monkeypatch):
    # FusionDN: three phases with EWC consolidation between them. A checkpoint taken at step 2 (the end of the
    # second phase, before its consolidation ran) must resume to exactly the weights of the straight run.
    from MedFusionLib.deep import trainer as T

    original = T.Trainer.save_checkpoint
    kept = str(tmp_path / "at_step_2.ckpt")

    def save_and_keep(self, phases, path=None):
        saved = original(self, phases, path)
        if self.step == 2 and saved:
            import shutil
            shutil.copy(saved, kept)
        return saved

    monkeypatch.setattr(T.Trainer, "save_checkpoint", save_and_keep)
    straight = str(tmp_path / "straight.pt")
    train(_config("fusiondn", straight, pair_folder, feature_net_path, steps=4, checkpoint=str(tmp_path / "run.ckpt"),
                  checkpoint_every=2))
    monkeypatch.setattr(T.Trainer, "save_checkpoint", original)
    assert os.path.exists(kept)
    resumed = str(tmp_path / "resumed.pt")
    train(_config("fusiondn", resumed, pair_folder, feature_net_path, steps=4, resume=kept,
                  checkpoint=str(tmp_path / "run2.ckpt")))
    a, b = read_weights(straight, "fusiondn")["state_dict"], read_weights(resumed, "fusiondn")["state_dict"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    # A checkpoint of a run with other settings is refused.
    with pytest.raises(FusionError, match="other settings"):
        train(_config("fusiondn", str(tmp_path / "x.pt"), pair_folder, feature_net_path, steps=4, resume=kept,
                      options={"c": "5"}))


def test_training_input_is_checked_before_any_work(tmp_path, pair_folder, feature_net_path):
    for method, patch, message in (("feature_net", 30, "multiple of 4"), ("fusiondn", 8, "at least 16"),
                                   ("cnn_weight_map", 10, "multiple of 4")):
        with pytest.raises(FusionInputError, match=message):
            train(_config(method, str(tmp_path / "x.pt"), pair_folder, feature_net_path, patch=patch,
                          log=str(tmp_path / "x.log.csv")))
    with pytest.raises(FusionInputError, match="does not exist"):
        train(_config("pmgi", str(tmp_path / "x.pt"), pair_folder, None, resume=str(tmp_path / "none.ckpt")))
    with pytest.raises(FusionInputError, match="is a folder"):
        train(_config("pmgi", str(tmp_path), pair_folder, None))
    if os.geteuid() != 0:                     # root may write anywhere
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        with pytest.raises(FusionInputError, match="cannot write"):
            train(_config("pmgi", str(locked / "w.pt"), pair_folder, None))
    assert sorted(os.listdir(tmp_path)) == (["locked"] if os.geteuid() != 0 else [])


def test_a_failing_run_leaves_no_log_or_checkpoint(tmp_path, pair_folder, monkeypatch):
    from MedFusionLib.deep import trainer as T

    def broken(self, phases, resume=None):
        with open(self.log_path, "w") as fh:         # a run that wrote its log, then failed
            fh.write("step\n")
        raise RuntimeError("simulated failure")

    monkeypatch.setattr(T.Trainer, "run", broken)
    log, ckpt = tmp_path / "w.log.csv", tmp_path / "w.ckpt"
    with pytest.raises(RuntimeError, match="simulated"):
        train(_config("pmgi", str(tmp_path / "w.pt"), pair_folder, None, log=str(log), checkpoint=str(ckpt)))
    assert not log.exists() and not ckpt.exists() and not (tmp_path / "w.pt").exists()


def test_training_errors(tmp_path, pair_folder):
    with pytest.raises(WeightsError, match="medfusion train feature_net"):
        train(_config("ifcnn", str(tmp_path / "x.pt"), pair_folder, str(tmp_path / "missing.pt")))
    with pytest.raises(FusionInputError, match="no training recipe"):
        train(TrainConfig(method="laplacian", out=str(tmp_path / "x.pt")))
    with pytest.raises(FusionInputError, match="registered pairs"):
        train(TrainConfig(method="pmgi", out=str(tmp_path / "x.pt"), phantoms=0, natural=False, steps=1))
    with pytest.raises(WeightsError, match="medfusion train dscnn"):
        train(_config("dscnn", str(tmp_path / "x.pt"), pair_folder, None, init=os.path.join(PACKAGE_WEIGHTS, "ifcnn.pt")))
    with pytest.raises(FusionInputError):
        train(_config("pmgi", str(tmp_path / "x.pt"), pair_folder, None, data=[str(tmp_path / "nowhere")]))
    if not torch.cuda.is_available():
        with pytest.raises(FusionInputError, match="cuda"):
            train(_config("pmgi", str(tmp_path / "x.pt"), pair_folder, None, device="cuda"))
    assert not os.path.exists(tmp_path / "x.pt")


def test_cli_train_writes_weights_log_and_no_leftovers(tmp_path, pair_folder, feature_net_path, monkeypatch):
    from MedFusionLib.cli import main

    out = tmp_path / "w" / "pmgi.pt"
    code = main(["train", "pmgi", "--data", pair_folder, "--out", str(out), "--steps", "3", "--batch-size", "2",
                 "--patch", "32", "--phantoms", "0", "--no-natural", "--augment", "rotate=5,noise=0", "-q"])
    assert code == 0
    assert sorted(os.listdir(tmp_path / "w")) == ["pmgi.json", "pmgi.log.csv", "pmgi.pt"]
    meta = read_weights(str(out), "pmgi")["meta"]
    assert meta["command"].startswith("medfusion train pmgi --data") and "--steps 3" in meta["command"]
    assert meta["augment"]["rotate"] == 5 and meta["augment"]["noise"] == 0
    # The trained weights are used by fuse() through MEDFUSION_WEIGHTS_DIR -- not the shipped ones: the result
    # is the trained network's output computed directly from the file, and differs from the shipped network's.
    import MedFusionLib as mf
    from MedFusionLib.deep.weights import load_model

    a = np.random.default_rng(0).random((24, 24)).astype(np.float32)
    b = np.ascontiguousarray(a[::-1])
    unit = dict(input_ranges=(0, 1), output_range="unit", device="cpu")
    shipped = mf.fuse([a, b], method="pmgi", **unit)
    monkeypatch.setenv("MEDFUSION_WEIGHTS_DIR", str(tmp_path / "w"))
    fused = mf.fuse([a, b], method="pmgi", **unit)
    net = load_model("pmgi", torch.device("cpu"), str(out))
    with torch.no_grad():
        direct = net(torch.from_numpy(np.stack([a, b])[None])).clamp(0, 1)[0, 0].numpy()
    np.testing.assert_allclose(fused, direct, atol=1e-6)
    assert np.abs(fused - shipped).max() > 0.01                   # 3 steps from scratch: far from the shipped net
    assert main(["train", "pmgi", "--out", str(tmp_path / "y.pt"), "--phantoms", "0", "--no-natural", "-q"]) == 1
