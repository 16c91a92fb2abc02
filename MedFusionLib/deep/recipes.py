"""Training recipes: what ``medfusion train METHOD`` runs for each learned method.

:func:`train` builds the data, the network, the phases and the losses of a method from a
:class:`TrainConfig`, runs them with :class:`~.trainer.Trainer` and writes the weight file with its
metadata. The default configuration of each recipe is the one that produced the shipped weights
(docs/models.md lists them with their wall time and evaluation).
"""

from __future__ import annotations

import datetime
import math
import os
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import FusionInputError, WeightsError
from . import data as D
from . import losses as L
from .augment import AugmentConfig, build_augmentation
from .ewc import EWC
from .networks import (FeatureNet, FusionDNNet, IFCNNNet, PMGINet, ShearletSiameseNet, SiameseWeightNet,
                       StackedAutoencoderNet,
                       U2FusionNet)
from .trainer import Phase, Trainer, seed_everything
from .weights import (_missing_message, build_network, load_model, machine_description, read_weights, resolve_device, save_weights,
                      weights_path)


@dataclass
class TrainConfig:
    """Options of one training run (the ``medfusion train`` flags).

    ``steps``, ``batch_size``, ``patch`` and ``lr`` default to the recipe's values; ``steps`` is the total
    over all phases, split in the recipe's proportions.
    """

    method: str
    out: str
    data: Sequence[str] = ()
    steps: Optional[int] = None
    batch_size: Optional[int] = None
    patch: Optional[int] = None
    lr: Optional[float] = None
    seed: int = 0
    device: str = "auto"
    init: Optional[str] = None
    resume: Optional[str] = None
    checkpoint: Optional[str] = None
    checkpoint_every: int = 250
    log: Optional[str] = None
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    natural: bool = True
    phantoms: int = 2
    split: str = "train"
    feature_net: Optional[str] = None
    show_progress: bool = True
    command: str = ""
    options: Dict[str, str] = field(default_factory=dict)


@dataclass
class Build:
    """What a recipe returns: the network to save, everything the trainer checkpoints, the phases."""

    model: torch.nn.Module
    phases: List[Phase]
    modules: Dict[str, torch.nn.Module]
    samplers: Dict[str, D.PatchSampler]
    extra: Dict[str, object] = field(default_factory=dict)
    meta: Dict[str, object] = field(default_factory=dict)


@dataclass
class RecipeInfo:
    """Defaults of a recipe: phase names and step counts, batch size, patch side, learning rate."""

    phases: Dict[str, int]
    batch_size: int
    patch: int
    lr: float
    summary: str
    build: Callable = None
    options: Dict[str, object] = field(default_factory=dict)
    choices: Dict[str, Sequence[str]] = field(default_factory=dict)
    min_patch: int = 8
    patch_multiple: int = 1


RECIPES: Dict[str, RecipeInfo] = {}
#: Recipes whose losses use the feature network (it must exist before they train).
NEEDS_FEATURE_NET = ("ifcnn", "fusiondn", "u2fusion")


def recipe(name: str, *, phases: Dict[str, int], batch_size: int, patch: int, lr: float, summary: str,
           options: Optional[Dict[str, object]] = None, choices: Optional[Dict[str, Sequence[str]]] = None,
           min_patch: int = 8, patch_multiple: int = 1):
    """Register a recipe; ``options`` are its tunable hyper-parameters and their defaults (``--set KEY=VALUE``),
    ``choices`` the allowed values of its string options, ``min_patch`` / ``patch_multiple`` the patch sides
    its networks and losses accept (all checked before any data is loaded)."""
    def decorator(func):
        RECIPES[name] = RecipeInfo(dict(phases), batch_size, patch, lr, summary, func, dict(options or {}),
                                   dict(choices or {}), min_patch, patch_multiple)
        return func
    return decorator


def recipe_options(config: TrainConfig) -> Dict[str, object]:
    """The recipe's options with ``config.options`` (strings from ``--set``) applied and typed like the
    defaults; unknown names or bad values are a :class:`FusionInputError`."""
    defaults = RECIPES[config.method].options
    unknown = sorted(set(config.options) - set(defaults))
    if unknown:
        allowed = ", ".join(f"{k} (default {v!r})" for k, v in defaults.items()) or "none"
        raise FusionInputError(f"recipe {config.method!r} has no option(s) {', '.join(unknown)}; its options: {allowed}")
    resolved = dict(defaults)
    for key, text in config.options.items():
        kind = type(defaults[key])
        try:
            if kind is bool:
                if str(text).lower() not in ("1", "0", "true", "false", "yes", "no"):
                    raise ValueError
                resolved[key] = str(text).lower() in ("1", "true", "yes")
            else:
                resolved[key] = kind(text)
        except (TypeError, ValueError):
            raise FusionInputError(f"recipe option {key}={text!r} is not a valid {kind.__name__}") from None
    for key, allowed in RECIPES[config.method].choices.items():
        if resolved[key] not in allowed:
            raise FusionInputError(f"{config.method} option {key} must be one of {', '.join(map(repr, allowed))}; "
                                   f"got {resolved[key]!r}")
    return resolved


# --- data -------------------------------------------------------------------------------------------------
class DataContext:
    """The training data of a run: pairs from ``--data`` folders (``split`` only), synthetic phantom
    pairs and natural images, loaded once."""

    def __init__(self, config: TrainConfig):
        self.config = config
        self.folder_pairs: List[D.PairItem] = []
        self.files: Dict[str, Dict[str, List[str]]] = {}
        for root in config.data:
            self.folder_pairs += D.load_pair_folder(root, config.split)
            self.files[os.path.abspath(root)] = D.pair_files(root, config.split)
        self.phantom = D.phantom_pairs(config.phantoms, seed=1000) if config.phantoms > 0 else []
        self.natural = D.natural_images() if config.natural else []

    def pairs(self) -> List[D.PairItem]:
        """Multi-modal registered pairs (folders + phantoms), reference first."""
        items = self.folder_pairs + self.phantom
        if not items:
            raise FusionInputError(f"method {self.config.method!r} trains on registered pairs: give --data DIR "
                                   f"(a folder laid out like aanlib-dev) or --phantoms K")
        return items

    def singles(self) -> List[D.PairItem]:
        """Single images: natural ones and every modality of the pairs."""
        items = self.natural + D.single_images(self.folder_pairs + self.phantom)
        if not items:
            raise FusionInputError("no training images: give --data, --phantoms or allow the natural images")
        return items

    def describe(self) -> Dict[str, object]:
        held = {}
        if self.config.split == "train":
            for root in self.config.data:
                held[os.path.abspath(root)] = D.pair_files(root, "held-out")
        return {"split": self.config.split, "pair_folders": self.files, "held_out": held,
                "natural_images": [it.name for it in self.natural],
                "phantom_pairs": [it.name for it in self.phantom]}


def _tensor(x: np.ndarray, device) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(x)).to(device)


def _scaled_phases(info: RecipeInfo, total: Optional[int]) -> Dict[str, int]:
    if total is None:
        return dict(info.phases)
    if total < len(info.phases):
        raise FusionInputError(f"--steps must be at least {len(info.phases)} (one per training phase)")
    default = sum(info.phases.values())
    scaled = {k: max(1, int(round(v * total / default))) for k, v in info.phases.items()}
    last = list(scaled)[-1]
    scaled[last] = max(1, total - sum(v for k, v in scaled.items() if k != last))
    return scaled


def _adam(params, lr):
    return torch.optim.Adam([p for p in params if p.requires_grad], lr=lr)


def _load_feature_net(config: TrainConfig, device) -> FeatureNet:
    path = config.feature_net or weights_path("feature_net")
    net = load_model("feature_net", device, path)
    return net


def _initial(model: torch.nn.Module, config: TrainConfig) -> torch.nn.Module:
    """``--init W.pt``: start from existing weights of this method (transfer learning / fine-tuning); the
    architecture comes from the file."""
    if not config.init:
        return model
    payload = read_weights(config.init, config.method)
    return build_network(payload, config.method, config.init).train()


def _reconstruction_step(opt, y: torch.Tensor, x: torch.Tensor) -> Dict[str, float]:
    """One optimiser step on L1 + (1 - SSIM) of a reconstruction ``y`` of ``x`` (autoencoder training)."""
    l1 = (y - x).abs().mean()
    s = 1 - L.ssim(y, x).mean()
    loss = l1 + s
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return {"loss": loss.item(), "l1": l1.item(), "ssim_loss": s.item()}


# --- recipes ----------------------------------------------------------------------------------------------
@recipe("feature_net", phases={"denoise": 1000}, batch_size=16, patch=64, lr=1e-3,
        summary="denoising autoencoder on natural and medical patches (perceptual features)",
        min_patch=16, patch_multiple=4)     # two stride-2 stages and their decoder; the 11-tap SSIM
def _feature_net(ctx: DataContext, config: TrainConfig, device, plan) -> Build:
    model = _initial(FeatureNet(), config).to(device)
    sampler = D.PatchSampler(ctx.singles(), plan["patch"], augment=plan["augment"], seed=config.seed)
    opt = _adam(model.parameters(), plan["lr"])

    def step(_):
        x = _tensor(sampler.sample(plan["batch_size"]), device)
        noise = torch.randn_like(x) * 0.05
        return _reconstruction_step(opt, model((x + noise).clamp(0, 1)), x)

    phases = [Phase("denoise", plan["phases"]["denoise"], step, {"adam": opt}, columns=("loss", "l1", "ssim_loss"))]
    return Build(model, phases, {"model": model}, {"singles": sampler},
                 meta={"loss": "L1 + (1 - SSIM) of the reconstruction of noisy (sigma 0.05) patches"})


@recipe("cnn_weight_map", phases={"classify": 1000}, batch_size=128, patch=16, lr=1e-3,
        summary="Siamese CNN classifying (clear, blurred) patch pairs (Liu et al. 2017)",
        min_patch=8, patch_multiple=4)      # a 2x2 max-pool, then a fully connected layer over patch/2
def _cnn_weight_map(ctx: DataContext, config: TrainConfig, device, plan) -> Build:
    model = _initial(SiameseWeightNet(patch=plan["patch"]), config).to(device)
    sampler = D.PatchSampler(ctx.singles(), plan["patch"], augment=plan["augment"], seed=config.seed)
    opt = _adam(model.parameters(), plan["lr"])
    bs = plan["batch_size"]

    def step(_):
        clear = sampler.sample(2 * bs)
        # Flat patches look the same blurred or not; keep the most textured half (Liu et al.'s patches
        # come from natural photographs, which are rarely flat).
        spread = clear.reshape(clear.shape[0], -1).std(axis=1)
        clear = clear[np.argsort(-spread)[:bs]]
        a, b, label = D.blur_patch_pairs(clear, sampler.rng)
        logits = model(_tensor(a, device), _tensor(b, device)).reshape(bs, 2)
        target = _tensor(1 - label, device)       # class 0: "a is the clear one"
        loss = F.cross_entropy(logits, target)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        acc = (logits.argmax(1) == target).float().mean()
        return {"loss": loss.item(), "accuracy": acc.item()}

    phases = [Phase("classify", plan["phases"]["classify"], step, {"adam": opt}, columns=("loss", "accuracy"))]
    return Build(model, phases, {"model": model}, {"singles": sampler},
                 meta={"loss": "cross-entropy of 'which patch is clear' on (clear, Gaussian-blurred sigma 2 x1..5) "
                               "16x16 patch pairs, the most textured half of each drawn batch"})


def _random_bands(patches: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One random NSST directional band (default directions) of each co-registered patch pair
    ``(B, 2, P, P)`` -> ``(B, 2, P, P)``, each map scaled to unit standard deviation (as at inference)."""
    from ..transforms.nsst import DEFAULT_DIRECTIONS, nsst_decompose

    bands = nsst_decompose(patches, DEFAULT_DIRECTIONS)[1:]           # [(B, 2, n_dir, P, P)] per level
    levels = rng.integers(0, len(bands), size=len(patches))
    out = np.stack([bands[lv][k, :, rng.integers(0, bands[lv].shape[2])] for k, lv in enumerate(levels)])
    return ShearletSiameseNet.unit_std(out)


def _other_modality(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A synthetic second modality of natural patches ``(B, 1, P, P)`` in [0, 1]: per patch a random
    inversion, gamma in [0.5, 2] and noise (sigma 0.02); the anatomy (geometry) is unchanged."""
    b = len(x)
    flip = rng.random(b) < 0.5
    y = np.where(flip[:, None, None, None], 1.0 - x, x)
    y = np.clip(y, 0, 1) ** rng.uniform(0.5, 2.0, size=(b, 1, 1, 1))
    return (y + rng.normal(0, 0.02, size=y.shape)).astype(np.float32)


def _zncc_map(exemplar: torch.Tensor, search: torch.Tensor) -> torch.Tensor:
    """Zero-mean normalised cross-correlation of each exemplar ``(B, C, E, E)`` over its search map
    ``(B, C, S, S)`` (channels summed, as the fusion rule's WNCC) -> ``(B, S - E + 1, S - E + 1)``."""
    b, c, e = exemplar.shape[:3]
    centred = exemplar - exemplar.mean(dim=(2, 3), keepdim=True)
    num = F.conv2d(search.reshape(1, b * c, *search.shape[2:]), centred, groups=b)[0]      # (B, S', S')
    n = e * e
    sums = F.avg_pool2d(search, e, stride=1) * n
    squares = F.avg_pool2d(search * search, e, stride=1) * n
    var = (squares - sums * sums / n).clamp_min(0).sum(1)
    return num / torch.sqrt(centred.pow(2).sum(dim=(1, 2, 3))[:, None, None] * var + 1e-8)


@recipe("nsst_similarity", phases={"natural": 400, "medical": 800}, batch_size=32, patch=48, lr=1e-3,
        summary="Siamese fully convolutional features of NSST bands, similarity learned by cross-correlation "
                "and a logistic loss, natural then medical patch pairs (Hermessi et al. 2018)",
        min_patch=24, patch_multiple=2)     # exemplar = central half of the patch
def _nsst_similarity(ctx: DataContext, config: TrainConfig, device, plan) -> Build:
    """Hermessi et al.'s similarity learning, SiamFC-style: the exemplar (central P/2 x P/2 of one band's
    features in source A) is cross-correlated (zero-mean, normalised) over the whole band of source B at
    the same place; positions within 2 pixels of the true correspondence are positive, all others
    negative (balanced logistic loss). Phase ``natural``: natural patches against a synthetic second
    modality (inversion, gamma, noise); phase ``medical``: co-registered MRI/CT/PET/SPECT pairs (the
    paper's transfer-learning step)."""
    model = _initial(ShearletSiameseNet(), config).to(device)
    head = torch.nn.Linear(1, 1).to(device)               # logit = w * ZNCC + b (SiamFC's score adjustment)
    with torch.no_grad():                                 # start at logit = ZNCC: near the constant-logit loss
        head.weight.fill_(1.0)
        head.bias.fill_(0.0)
    singles = D.PatchSampler(ctx.singles(), plan["patch"], augment=plan["augment"], seed=config.seed)
    pairs = D.PatchSampler(ctx.pairs(), plan["patch"], augment=plan["augment"], seed=config.seed + 1)
    # The two scalars of the head get 10x the learning rate: the score scale must grow by about 10 while
    # the features train (ZNCC lies in [-1, 1]).
    opt = torch.optim.Adam([{"params": list(model.parameters()), "lr": plan["lr"]},
                            {"params": list(head.parameters()), "lr": 10 * plan["lr"]}])
    bs, p = plan["batch_size"], plan["patch"]
    e = p // 2
    lo = (p - e) // 2
    size = p - e + 1
    yy, xx = np.mgrid[:size, :size]
    positive = torch.as_tensor(np.hypot(yy - lo, xx - lo) <= 2.0, device=device)
    weight = torch.where(positive, 0.5 / positive.sum(), 0.5 / (~positive).sum())

    def make_step(natural: bool):
        def step(_):
            # The samplers' generators (checkpointed) draw everything random, so a resumed run repeats.
            sampler = singles if natural else pairs
            if natural:
                x = singles.sample(bs)
                patches = np.concatenate([x, _other_modality(x, singles.rng)], axis=1)
            else:
                patches = pairs.sample(bs)[:, :2]
            bands = _tensor(_random_bands(patches, sampler.rng), device)         # (B, 2, P, P)
            fa, fb = model(bands[:, :1]), model(bands[:, 1:2])
            score = _zncc_map(fa[:, :, lo:lo + e, lo:lo + e], fb)               # (B, S', S')
            logits = head(score.unsqueeze(-1)).squeeze(-1)
            target = positive.expand_as(logits).float()
            loss = (F.binary_cross_entropy_with_logits(logits, target, reduction="none") * weight).sum() / bs
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            peak = score.reshape(bs, -1).argmax(1)
            hit = positive.reshape(-1)[peak].float().mean()
            return {"loss": loss.item(), "peak_hit": hit.item()}
        return step

    columns = ("loss", "peak_hit")
    phases = [Phase("natural", plan["phases"]["natural"], make_step(True), {"adam": opt}, columns=columns),
              Phase("medical", plan["phases"]["medical"], make_step(False), {"adam": opt}, columns=columns)]
    return Build(model, phases, {"model": model, "head": head}, {"singles": singles, "pairs": pairs},
                 meta={"loss": "balanced logistic loss of the zero-mean normalised cross-correlation map of a "
                               f"{e}x{e} exemplar of one source's band features over the other source's "
                               f"{p}x{p} band features; positive within 2 px of the true correspondence",
                       "peak_hit": "share of pairs whose correlation peak is within 2 px of the correspondence"})


@recipe("dscnn", phases={"unit1": 500, "unit2": 500, "stack": 800}, batch_size=16, patch=64, lr=1e-3,
        summary="fixed Gauss/high-pass layer + conv units trained greedily as autoencoders, then stacked (Xia et al. 2019)",
        min_patch=16)                       # the 11-tap SSIM of the stacked phase
def _dscnn(ctx: DataContext, config: TrainConfig, device, plan) -> Build:
    model = _initial(StackedAutoencoderNet(), config).to(device)
    sampler = D.PatchSampler(ctx.singles(), plan["patch"], augment=plan["augment"], seed=config.seed)
    bs = plan["batch_size"]
    streams = model.STREAMS
    phases = []

    def unit_phase(k: int) -> Phase:
        params = [p for s in streams for p in list(model.encoders[s][k].parameters()) + list(model.decoders[s][k].parameters())]
        opt = _adam(params, plan["lr"])

        def setup():
            model.requires_grad_(False)
            for p in params:
                p.requires_grad_(True)

        def step(_):
            x = _tensor(sampler.sample(bs), device)
            parts = dict(zip(streams, model.split(x)))
            loss = 0.0
            for s in streams:
                with torch.no_grad():
                    h = model.encode(s, parts[s], depth=k)
                loss = loss + F.mse_loss(model.decoders[s][k](model.encoders[s][k](h)), h)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            return {"loss": loss.item()}

        return Phase(f"unit{k + 1}", plan["phases"][f"unit{k + 1}"], step, {"adam": opt}, setup=setup)

    for k in range(model.depth):
        phases.append(unit_phase(k))
    opt = _adam(model.parameters(), plan["lr"] * 0.3)

    def setup_stack():
        model.requires_grad_(True)

    def step_stack(_):
        x = _tensor(sampler.sample(bs), device)
        return _reconstruction_step(opt, model(x), x)

    phases.append(Phase("stack", plan["phases"]["stack"], step_stack, {"adam": opt}, setup=setup_stack,
                        columns=("loss", "l1", "ssim_loss")))
    return Build(model, phases, {"model": model}, {"singles": sampler},
                 meta={"loss": "greedy: MSE of each unit's autoencoder on the features below it; stacked: "
                               "L1 + (1 - SSIM) of the image reconstruction"})


@recipe("ifcnn", phases={"multifocus": 2000}, batch_size=16, patch=64, lr=1e-3,
        summary="supervised on synthetic multi-focus pairs with ground truth, MSE + perceptual loss (Zhang et al. 2020)")
def _ifcnn(ctx: DataContext, config: TrainConfig, device, plan) -> Build:
    feature = _load_feature_net(config, device)
    model = _initial(IFCNNNet(stem_channels=feature.arch["channels"][0]), config).to(device)
    if not config.init:
        with torch.no_grad():       # the fixed pretrained first layer: the feature network's stem filters
            model.stem.conv.weight.copy_(feature.stem.conv.weight)
    model.stem.requires_grad_(False)
    sampler = D.PatchSampler(ctx.singles(), plan["patch"], augment=plan["augment"], seed=config.seed)
    opt = _adam(model.parameters(), plan["lr"])
    bs = plan["batch_size"]
    w_perceptual = 1.0

    def step(_):
        sources, target = D.multifocus_pairs(sampler.sample(bs), sampler.rng)
        sources, target = _tensor(sources, device), _tensor(target, device)
        fused = model(sources)
        mse = F.mse_loss(fused, target)
        per = L.perceptual_loss(feature, fused, target)
        loss = mse + w_perceptual * per
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return {"loss": loss.item(), "mse": mse.item(), "perceptual": per.item()}

    phases = [Phase("multifocus", plan["phases"]["multifocus"], step, {"adam": opt},
                    columns=("loss", "mse", "perceptual"))]
    return Build(model, phases, {"model": model}, {"singles": sampler},
                 meta={"loss": f"MSE(F, GT) + {w_perceptual} x perceptual (feature_net layers 1-3) on synthetic "
                               f"multi-focus pairs", "feature_net": "MedFusionLib/weights/feature_net.pt (stem copied, frozen)"})


@recipe("pmgi", phases={"fusion": 1200}, batch_size=16, patch=64, lr=1e-3,
        summary="unsupervised proportional intensity + gradient loss (Zhang et al. 2020)",
        options={"proportions": "adaptive", "int_a": 1.0, "int_b": 1.0, "grad_a": 1.0, "grad_b": 1.0, "beta": 1.0,
                 "tau_int": 0.1, "tau_grad": 0.5}, choices={"proportions": ("adaptive", "fixed")})
def _pmgi(ctx: DataContext, config: TrainConfig, device, plan) -> Build:
    """PMGI's loss L = L_int + beta L_grad with L_int = l1 |F - A|^2 + l2 |F - B|^2 and L_grad the same on
    Laplacians. ``proportions='fixed'``: the paper's form, one (l1, l2) per task (``int_a``, ``int_b``,
    ``grad_a``, ``grad_b``); ``'adaptive'``: per-pixel proportions, a softmax over the sources of their
    intensity (``tau_int``) for the intensity term and of their local gradient magnitude (``tau_grad``)
    for the gradient term, so each pixel keeps the brighter intensity and the stronger edge."""
    opt_ = plan["options"]
    if opt_["proportions"] not in ("fixed", "adaptive"):
        raise FusionInputError("pmgi option proportions must be 'fixed' or 'adaptive'")
    model = _initial(PMGINet(), config).to(device)
    sampler = D.PatchSampler(ctx.pairs(), plan["patch"], augment=plan["augment"], seed=config.seed)
    opt = _adam(model.parameters(), plan["lr"])
    bs = plan["batch_size"]
    adaptive = opt_["proportions"] == "adaptive"

    def step(_):
        x = _tensor(sampler.sample(bs), device)
        fused = model(x)
        a, b = x[:, :1], x[:, 1:2]
        lf, la, lb = L.laplacian(fused), L.laplacian(a), L.laplacian(b)
        if adaptive:
            wi = torch.softmax(x / opt_["tau_int"], dim=1)
            g = L.box_mean(L.gradient_magnitude(x), 3)
            wg = torch.softmax(g / opt_["tau_grad"], dim=1)
            l_int = 2 * (wi[:, :1] * (fused - a) ** 2 + wi[:, 1:] * (fused - b) ** 2).mean()
            l_grad = 2 * (wg[:, :1] * (lf - la) ** 2 + wg[:, 1:] * (lf - lb) ** 2).mean()
        else:
            l_int = opt_["int_a"] * F.mse_loss(fused, a) + opt_["int_b"] * F.mse_loss(fused, b)
            l_grad = opt_["grad_a"] * F.mse_loss(lf, la) + opt_["grad_b"] * F.mse_loss(lf, lb)
        loss = l_int + opt_["beta"] * l_grad
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return {"loss": loss.item(), "intensity": l_int.item(), "gradient": l_grad.item()}

    phases = [Phase("fusion", plan["phases"]["fusion"], step, {"adam": opt}, columns=("loss", "intensity", "gradient"))]
    if adaptive:
        text = (f"per-pixel proportions: 2 x mean of softmax(S / {opt_['tau_int']}) |F - S|^2 + {opt_['beta']} x 2 x "
                f"mean of softmax(|grad S| / {opt_['tau_grad']}) |lap F - lap S|^2")
    else:
        text = (f"intensity ({opt_['int_a']}, {opt_['int_b']}) x MSE + {opt_['beta']} x gradient "
                f"({opt_['grad_a']}, {opt_['grad_b']}) x MSE of the Laplacian")
    return Build(model, phases, {"model": model}, {"pairs": sampler}, meta={"loss": text})


def _task_batch(task: str, sampler: D.PatchSampler, bs: int) -> np.ndarray:
    """Source pairs of one task: medical pairs as they are, natural images turned into multi-exposure or
    multi-focus pairs; the two sources in random order (U2Fusion draws the order at random)."""
    if task == "multimodal":
        x = sampler.sample(bs)
    elif task == "multiexposure":
        x = D.exposure_pairs(sampler.sample(bs), sampler.rng)
    else:
        x, _ = D.multifocus_pairs(sampler.sample(bs), sampler.rng)
    swap = sampler.rng.random(bs) < 0.5
    x[swap] = x[swap][:, ::-1]
    return x


TASKS = ("multiexposure", "multifocus", "multimodal")


def _sequential_build(model: torch.nn.Module, ctx: DataContext, config: TrainConfig, device, plan,
                      task_loss: Callable, ewc_weight: float, columns: Sequence[str], meta: dict) -> Build:
    """Phases of FusionDN / U2Fusion: one per task, in order, the loss of later tasks plus the EWC penalty
    of the earlier ones; Fisher information from 20 batches of each finished task."""
    bs = plan["batch_size"]
    samplers = {"natural": D.PatchSampler(ctx.natural or ctx.singles(), plan["patch"], augment=plan["augment"],
                                          seed=config.seed),
                "pairs": D.PatchSampler(ctx.pairs(), plan["patch"], augment=plan["augment"], seed=config.seed + 1)}
    ewc = EWC(ewc_weight)
    phases = []
    for task in TASKS:
        sampler = samplers["pairs" if task == "multimodal" else "natural"]
        opt = _adam(model.parameters(), plan["lr"])

        def step(_, task=task, sampler=sampler, opt=opt):
            x = _tensor(_task_batch(task, sampler, bs), device)
            loss, terms = task_loss(task, x)
            penalty = ewc.penalty(model)
            total = loss + penalty
            opt.zero_grad(set_to_none=True)
            total.backward()
            opt.step()
            return {"loss": total.item(), **terms, "ewc": penalty.item()}

        def finish(task=task, sampler=sampler):
            batches = [_tensor(_task_batch(task, sampler, bs), device) for _ in range(20)]
            ewc.consolidate(model, lambda x: task_loss(task, x)[0], batches, name=task)

        # Consolidate after every task but the last (nothing trains after it).
        phases.append(Phase(task, plan["phases"][task], step, {"adam": opt}, finish=finish if task != TASKS[-1] else None,
                            columns=("loss",) + tuple(columns) + ("ewc",)))
    return Build(model, phases, {"model": model}, samplers, extra={"ewc": ewc}, meta=meta)


@recipe("fusiondn", phases={"multiexposure": 300, "multifocus": 300, "multimodal": 900}, batch_size=12, patch=64,
        lr=1e-3, min_patch=16, summary="densely connected net, quality-adaptive SSIM + perceptual + gradient loss, "
                                       "EWC over three tasks (Xu et al. 2020)",
        options={"weights": "pixel", "c": 15.0, "w_en": 12.0, "w_quality": 1.0, "w_intensity": 1.0, "window": 7,
                 "w_perceptual": 1.0, "w_gradient": 1800.0, "ewc": 2000.0}, choices={"weights": ("pixel", "image")})
def _fusiondn(ctx: DataContext, config: TrainConfig, device, plan) -> Build:
    """FusionDN's loss sum_k w_k [(1 - SSIM(F, S_k)) + w_perceptual perceptual + w_gradient MSE of the
    gradients], w = softmax(score / c) over the sources.

    ``weights='image'`` is the paper's form: one score per image, w_quality q_k + w_en EN_k, with q the
    paper's deep no-reference quality (deepIQA) replaced by the mean Sobel gradient magnitude (no such
    network exists here). ``weights='pixel'`` (default) scores every pixel, w_quality q_k(p) +
    w_intensity I_k(p), with q_k(p) and I_k(p) the sharpness and the intensity (8-bit units) averaged
    over a ``window`` x ``window`` neighbourhood, and weights the SSIM map and the gradient term per
    pixel (the perceptual term by the per-image mean weight). Why: with one weight per image the loss's
    optimum between an MRI and a PET is a contrast-reduced compromise of the two (measured: below average
    fusion on SD, SCD and VIF on every dev set); per-pixel weights let each region keep the source that
    carries it, as PMGI's and U2Fusion's adaptive terms do."""
    opt_ = plan["options"]
    if opt_["weights"] not in ("pixel", "image"):
        raise FusionInputError("fusiondn option weights must be 'pixel' or 'image'")
    if opt_["window"] < 1 or opt_["window"] % 2 == 0:
        raise FusionInputError("fusiondn option window must be a positive odd number")
    feature = _load_feature_net(config, device)
    model = _initial(FusionDNNet(), config).to(device)
    c, w_en, w_q, w_int = opt_["c"], opt_["w_en"], opt_["w_quality"], opt_["w_intensity"]
    w_per, w_grad, window = opt_["w_perceptual"], opt_["w_gradient"], opt_["window"]
    pixel = opt_["weights"] == "pixel"

    def pixel_score(s):
        sharp = L.gradient_magnitude(s.detach() * 255.0) / 8.0
        return L.box_mean(w_q * sharp + w_int * 255.0 * s.detach(), window)

    def task_loss(task, x):
        sources = [x[:, k:k + 1] for k in range(2)]
        fused = model(x)
        gf = L.u2f_gradient(fused)
        if pixel:
            w = L.softmax_weights(torch.stack([pixel_score(s) for s in sources]), c)     # (2, B, 1, ...)
            ssim_l = sum((L.crop_valid(w[k]) * (1 - L.ssim_map(fused, s))).mean() for k, s in enumerate(sources))
            grad = sum((w[k] * (gf - L.u2f_gradient(s)) ** 2).mean() for k, s in enumerate(sources))
            w_image = w.reshape(2, x.shape[0], -1).mean(dim=2)                              # (2, B)
        else:
            scores = torch.stack([w_q * L.sharpness(s) + w_en * L.entropy_bits(s) for s in sources])
            w_image = w = L.softmax_weights(scores, c)                                        # (2, B)
            ssim_l = sum(w[k] * (1 - L.ssim(fused, s)) for k, s in enumerate(sources)).mean()
            grad = sum((w[k] * L.per_sample_mse(gf, L.u2f_gradient(s))).mean() for k, s in enumerate(sources))
        per = sum((w_image[k] * _per_sample_perceptual(feature, fused, s)).mean() for k, s in enumerate(sources))
        loss = ssim_l + w_per * per + w_grad * grad
        return loss, {"ssim": ssim_l.item(), "perceptual": per.item(), "gradient": grad.item(),
                      "w_first": w_image[0].mean().item()}

    if pixel:
        text = (f"sum_k [w_k (1 - SSIM map(F, S_k)) + {w_grad} w_k |grad F - grad S_k|^2] + {w_per} perceptual, "
                f"w = softmax(({w_q} sharpness + {w_int} intensity, {window}x{window} means) / {c}) per pixel; "
                f"EWC between tasks")
    else:
        text = (f"sum_k w_k [(1 - SSIM(F, S_k)) + {w_per} perceptual + {w_grad} MSE of gradients], "
                f"w = softmax(({w_q} sharpness + {w_en} EN) / {c}) per image; EWC between tasks")
    return _sequential_build(model, ctx, config, device, plan, task_loss, ewc_weight=opt_["ewc"],
                             columns=("ssim", "perceptual", "gradient", "w_first"), meta={"loss": text})


def _per_sample_perceptual(feature_net, x, y, layers=(1, 2, 3)):
    fx = feature_net.features(x)
    with torch.no_grad():
        fy = feature_net.features(y)
    return sum(((fx[k] - fy[k]) ** 2).reshape(x.shape[0], -1).mean(dim=1) for k in layers) / len(layers)


@recipe("u2fusion", phases={"multiexposure": 300, "multifocus": 300, "multimodal": 900}, batch_size=12, patch=64,
        lr=1e-3, min_patch=16, summary="dense net, SSIM + MSE weighted by feature-information measurement, EWC "
                                       "over three tasks (Xu et al. 2020)",
        options={"weights": "image", "alpha": 20.0, "ewc": 2000.0}, choices={"weights": ("image", "pixel")})
def _u2fusion(ctx: DataContext, config: TrainConfig, device, plan) -> Build:
    """U2Fusion's loss sum_k w_k [(1 - SSIM(F, S_k)) + alpha MSE(F, S_k)] with w = softmax(g / c) of the
    sources' information g. ``weights='image'``: one g per image (patch), as in the paper; ``'pixel'``:
    g measured per pixel (local feature-gradient energy), the SSIM and MSE terms weighted per pixel."""
    opt_ = plan["options"]
    if opt_["weights"] not in ("image", "pixel"):
        raise FusionInputError("u2fusion option weights must be 'image' or 'pixel'")
    feature = _load_feature_net(config, device)
    model = _initial(U2FusionNet(), config).to(device)
    alpha = opt_["alpha"]
    pixel = opt_["weights"] == "pixel"
    c = _information_scale(feature, ctx, config, plan, device)

    def task_loss(task, x):
        sources = [x[:, k:k + 1] for k in range(2)]
        fused = model(x)
        if pixel:
            g = torch.stack([L.feature_information(feature, s, local=True) for s in sources])   # (2, B, 1, ...)
            w = L.softmax_weights(g, c[task])
            ssim_l = sum((L.crop_valid(w[k]) * (1 - L.ssim_map(fused, s))).mean() for k, s in enumerate(sources))
            mse = sum((w[k] * (fused - s) ** 2).mean() for k, s in enumerate(sources))
        else:
            g = torch.stack([L.feature_information(feature, s) for s in sources])   # (2, B)
            w = L.softmax_weights(g, c[task])
            ssim_l = sum(w[k] * (1 - L.ssim(fused, s)) for k, s in enumerate(sources)).mean()
            mse = sum(w[k] * L.per_sample_mse(fused, s) for k, s in enumerate(sources)).mean()
        loss = ssim_l + alpha * mse
        return loss, {"ssim": ssim_l.item(), "mse": mse.item(), "w_first": w[0].mean().item(),
                      "info": g.mean().item()}

    return _sequential_build(model, ctx, config, device, plan, task_loss, ewc_weight=opt_["ewc"],
                             columns=("ssim", "mse", "w_first", "info"),
                             meta={"loss": f"sum_k w_k [(1 - SSIM(F, S_k)) + {alpha} MSE(F, S_k)], w = softmax(g / c) "
                                           f"per {opt_['weights']}, g the feature-gradient information of each source; "
                                           f"EWC (lambda {opt_['ewc']}) between tasks",
                                   "c": {k: float(f"{v:.4g}") for k, v in c.items()}})


def _information_scale(feature, ctx: DataContext, config: TrainConfig, plan, device) -> Dict[str, float]:
    """U2Fusion's constant c per task. The paper hand-sets it so that g / c is of order 1 for its VGG16
    features; our feature network has other magnitudes, so c is the mean information g of 8 calibration
    batches of the task (drawn by their own samplers, leaving the training streams untouched)."""
    samplers = {"natural": D.PatchSampler(ctx.natural or ctx.singles(), plan["patch"], seed=config.seed + 100),
                "pairs": D.PatchSampler(ctx.pairs(), plan["patch"], seed=config.seed + 101)}
    scale = {}
    for task in TASKS:
        sampler = samplers["pairs" if task == "multimodal" else "natural"]
        values = []
        for _ in range(8):
            x = _tensor(_task_batch(task, sampler, plan["batch_size"]), device)
            values += [L.feature_information(feature, x[:, k:k + 1]) for k in range(2)]
        scale[task] = float(torch.cat(values).mean().clamp_min(1e-12))
    return scale


# --- entry point ------------------------------------------------------------------------------------------
def train(config: TrainConfig) -> Dict[str, object]:
    """Train ``config.method`` and write its weights to ``config.out``; returns the metadata written."""
    if config.method not in RECIPES:
        raise FusionInputError(f"no training recipe for {config.method!r}; recipes: {', '.join(sorted(RECIPES))}")
    if config.split not in ("train", "all"):
        raise FusionInputError(f"--split must be 'train' or 'all'; got {config.split!r}")
    info = RECIPES[config.method]
    device = resolve_device(config.device)
    for name, value in (("batch size", config.batch_size), ("patch", config.patch)):
        if value is not None and value < 1:
            raise FusionInputError(f"{name} must be positive; got {value}")
    if config.lr is not None and not (config.lr > 0 and math.isfinite(config.lr)):
        raise FusionInputError(f"learning rate must be positive; got {config.lr}")
    patch = config.patch or info.patch
    if patch < info.min_patch or patch % info.patch_multiple:
        rule = f"at least {info.min_patch}" + (f" and a multiple of {info.patch_multiple}" if info.patch_multiple > 1 else "")
        raise FusionInputError(f"{config.method} patches must be {rule} pixels; got --patch {patch}")
    for flag, path in (("--resume", config.resume), ("--init", config.init)):
        if path and not os.path.isfile(path):
            raise FusionInputError(f"{flag} {path!r} does not exist")
    if config.method in NEEDS_FEATURE_NET:
        feature_path = config.feature_net or weights_path("feature_net")
        if not os.path.isfile(feature_path):
            raise WeightsError(_missing_message("feature_net", feature_path, "are missing"))
    _check_writable(config.out, "--out")
    for flag, path in (("--log", config.log), ("--checkpoint", config.checkpoint)):
        if path:
            _check_writable(path, flag)
    seed_everything(config.seed)
    plan = {"phases": _scaled_phases(info, config.steps), "batch_size": config.batch_size or info.batch_size,
            "patch": config.patch or info.patch, "lr": config.lr or info.lr,
            "augment": build_augmentation(config.augment, 2), "options": recipe_options(config)}
    ctx = DataContext(config)
    build = info.build(ctx, config, device, plan)
    # What a checkpoint must agree on to be resumed by this run (a different run's checkpoint is refused).
    signature = {"seed": config.seed, "steps": plan["phases"], "batch_size": plan["batch_size"], "patch": plan["patch"],
                 "lr": plan["lr"], "options": plan["options"], "augment": config.augment.to_dict(),
                 "data": [os.path.abspath(d) for d in config.data], "split": config.split,
                 "natural": config.natural, "phantoms": config.phantoms}
    trainer = Trainer(config.method, build.modules, samplers=build.samplers, extra=build.extra, log_path=config.log,
                      checkpoint_path=config.checkpoint, checkpoint_every=config.checkpoint_every,
                      show_progress=config.show_progress, signature=signature)
    created = [p for p in (config.log, config.checkpoint) if p and not os.path.exists(p)]
    try:
        result = trainer.run(build.phases, resume=config.resume)
    except KeyboardInterrupt:
        raise                   # the checkpoint and the log are kept for --resume
    except Exception:
        for path in created:    # an error, not a user's interruption: leave nothing half-written
            if os.path.exists(path):
                os.remove(path)
        raise
    meta = {"command": config.command or f"medfusion train {config.method} ...",
            "recipe": info.summary, "seed": config.seed, "steps": plan["phases"], "batch_size": plan["batch_size"],
            "patch": plan["patch"], "lr": plan["lr"], "augment": config.augment.to_dict(),
            "init": config.init, "options": plan["options"], "device": str(device), "wall_seconds": round(result.seconds, 1),
            "machine": machine_description(), "date": datetime.date.today().isoformat(),
            "final_losses": {k: round(v, 6) for k, v in result.last.items()},
            "data": ctx.describe(), **build.meta}
    build.model.eval()
    save_weights(config.out, config.method, build.model, meta)
    return meta


def _check_writable(path: str, flag: str) -> None:
    """Refuse an output path that is a folder or whose folder cannot be created or written to, before
    any data is loaded (rather than failing after training)."""
    path = os.path.abspath(path)
    if os.path.isdir(path):
        raise FusionInputError(f"{flag} {path!r} is a folder; give a file name")
    folder = os.path.dirname(path)
    while not os.path.exists(folder):
        folder = os.path.dirname(folder)
    if not os.path.isdir(folder) or not os.access(folder, os.W_OK | os.X_OK):
        raise FusionInputError(f"{flag} {path!r}: cannot write in {folder!r}")
