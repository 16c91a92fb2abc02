"""Training recipes of the unified end-to-end networks: IFCNN, PMGI, FusionDN, U2Fusion (the last two
by sequential multi-task training with EWC)."""

from __future__ import annotations

from typing import Callable, Dict, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ...errors import FusionInputError
from .. import data as D
from .. import losses as L
from ..ewc import EWC
from ..networks import FusionDNNet, IFCNNNet, PMGINet, U2FusionNet
from ..trainer import Phase
from .base import Build, DataContext, TrainConfig, _adam, _initial, _load_feature_net, _tensor, optimise, recipe



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
        optimise(opt, loss)
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
        optimise(opt, loss)
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
            optimise(opt, total)
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


