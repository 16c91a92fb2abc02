"""The recipe registry and the training entry point shared by every recipe family.

A recipe (one per trainable network, registered with :func:`recipe` in the module of its family) builds
the data, the network, the phases and the losses of a method; :func:`train` builds the data, the network, the phases and the losses of a method from a
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

from ...errors import FusionInputError, WeightsError
from .. import data as D
from .. import losses as L
from ..augment import AugmentConfig, build_augmentation
from ..networks import FeatureNet
from ..trainer import Phase, Trainer, seed_everything
from ..weights import (_missing_message, build_network, load_model, machine_description, read_weights, resolve_device,
                       save_weights, weights_path)


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


def optimise(opt: torch.optim.Optimizer, loss: torch.Tensor) -> None:
    """One optimiser step on ``loss`` (gradients cleared first)."""
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()


def _reconstruction_step(opt, y: torch.Tensor, x: torch.Tensor) -> Dict[str, float]:
    """One optimiser step on L1 + (1 - SSIM) of a reconstruction ``y`` of ``x`` (autoencoder training)."""
    l1 = (y - x).abs().mean()
    s = 1 - L.ssim(y, x).mean()
    loss = l1 + s
    optimise(opt, loss)
    return {"loss": loss.item(), "l1": l1.item(), "ssim_loss": s.item()}



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
