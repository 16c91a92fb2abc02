"""Recipes of the adversarial methods: FusionGAN, DDcGAN, MGMDcGAN and the tissue-aware cGAN.

Each GAN is one recipe whose phase step alternates the discriminator update(s) and the generator update,
one Adam optimiser per network in the phase's ``optimisers`` (so checkpoints resume exactly). Training
data: registered patches ``(B, 2, P, P)`` in [0, 1] from :meth:`DataContext.pairs`, the anatomical
reference (MRI) first. The only randomness besides torch's (seeded by the trainer) is the patch sampler's
generator, which also draws FusionGAN's soft labels. Only the generator is saved (the discriminators
exist for training); ``--init`` starts the generator from a weight file, the discriminators afresh.

The paper's settings and every deviation are in the docstrings below and in docs/models.md.
"""

from __future__ import annotations

import contextlib
from typing import Callable, Dict, List

import numpy as np
import torch
import torch.nn.functional as F

from ...errors import FusionInputError
from .. import data as D
from .. import losses as L
from ..networks_adversarial import (DDcGANGenerator, FusionGANGenerator, MGMDcGANNet, PatchDiscriminator,
                                    TissueCGANGenerator, dense_structure_mask, downsample, tissue_labels)
from ..trainer import Phase
from .base import Build, DataContext, TrainConfig, _adam, _initial, _tensor, optimise, recipe


# --- helpers ------------------------------------------------------------------------------------------------
def _positive(method: str, opt: Dict[str, object], *names: str, allow_zero: bool = False) -> None:
    for name in names:
        value = opt[name]
        if not (value > 0 or (allow_zero and value == 0)) or not np.isfinite(value):
            rule = "non-negative" if allow_zero else "positive"
            raise FusionInputError(f"{method} option {name} must be {rule}; got {value!r}")


def _with_channel(items: List[D.PairItem], fn: Callable[[torch.Tensor], torch.Tensor]) -> List[D.PairItem]:
    """``items`` with a third channel ``fn(anatomical)`` computed on each full image (volumes: on each slice
    along axis 0, the axis the sampler slices), so that a patch carries the map of its whole image."""
    out = []
    for item in items:
        anat = torch.from_numpy(np.ascontiguousarray(item.images[0]))
        batch = anat[None, None] if anat.dim() == 2 else anat[:, None]
        with torch.no_grad():
            extra = fn(batch).to(torch.float32)
        extra = extra[0, 0] if anat.dim() == 2 else extra[:, 0]
        out.append(D.PairItem(item.name, np.concatenate([item.images, extra.numpy()[None]], axis=0)))
    return out


def _gan_sampler(ctx: DataContext, config: TrainConfig, plan, fn=None) -> D.PatchSampler:
    items = ctx.pairs()
    if fn is not None:
        items = _with_channel(items, fn)
    return D.PatchSampler(items, plan["patch"], augment=plan["augment"], seed=config.seed)


def _uniform(sampler: D.PatchSampler, low: float, high: float, n: int, device) -> torch.Tensor:
    return torch.from_numpy(sampler.rng.uniform(low, high, n).astype(np.float32)).to(device)


@contextlib.contextmanager
def _frozen(*nets):
    """Context: ``nets`` take no gradients (the generator's step through the discriminators)."""
    for net in nets:
        net.requires_grad_(False)
    try:
        yield
    finally:
        for net in nets:
            net.requires_grad_(True)


def _frobenius2(x: torch.Tensor) -> torch.Tensor:
    """||x||_F^2 of each sample (sum over its pixels), mean over the batch: DDcGAN's norms are sums over
    the patch, not per-pixel means (with means the adversarial term would swamp the content term)."""
    return (x ** 2).flatten(1).sum(dim=1).mean()


def _l1_sum(x: torch.Tensor) -> torch.Tensor:
    """||x||_1 of each sample (sum over its pixels), mean over the batch (DDcGAN's TV-like gradient term)."""
    return x.abs().flatten(1).sum(dim=1).mean()


def _discriminator(in_channels: int = 1) -> PatchDiscriminator:
    return PatchDiscriminator(2, in_channels=in_channels, channels=(16, 32, 64))


GAN_PATCH = dict(min_patch=16, patch_multiple=8)
#: What the content loss keeps of the intensities: ``functional`` (the papers) or ``max`` (the brighter source
#: per pixel; our default, see docs/models.md).
INTENSITY = ("max", "functional")


_TARGET_TEXT = {"max": "max(functional, anatomical)", "functional": "functional"}


def _intensity_target(functional: torch.Tensor, anatomical: torch.Tensor, mode: str) -> torch.Tensor:
    """The intensity the content loss pulls the fused image to: the functional image (FusionGAN's,
    DDcGAN's and TA-cGAN's form) or the per-pixel maximum of both sources (``max``). Why ``max`` is our
    default: with the functional intensity only, the MRI's bright anatomy (scalp, marrow, white matter)
    survives only as edges, and on the AANLIB training split FusionGAN and DDcGAN then beat average fusion
    on 2-4 of the 9 metrics; the brighter source keeps the PET/SPECT hot spots and the MRI's bright
    anatomy alike (the choose-max rule of the classical methods)."""
    return torch.maximum(functional, anatomical) if mode == "max" else functional


# --- 1. FusionGAN ---------------------------------------------------------------------------------------------
@recipe("fusiongan", phases={"adversarial": 800}, batch_size=8, patch=64, lr=1e-3, **GAN_PATCH,
        summary="generator vs one discriminator (anatomical image), least-squares loss with soft labels, "
                "content = intensity (max of the sources; paper: functional) + xi x anatomical gradients (Ma et al. 2019)",
        options={"xi": 5.0, "lam": 100.0, "d_steps": 2, "soft_labels": True, "intensity": "max"},
        choices={"intensity": INTENSITY})
def _fusiongan(ctx: DataContext, config: TrainConfig, device, plan) -> Build:
    """FusionGAN (Ma et al. 2019), as the official code trains it: per step ``d_steps`` discriminator
    updates, then one generator update.

    * Discriminator (least squares): (D(anatomical) - a)^2 + (D(G) - b)^2, soft labels a ~ U[0.7, 1.2],
      b ~ U[0, 0.3] per sample (``soft_labels=False``: a = 1, b = 0).
    * Generator: (D(G) - c)^2 with c ~ U[0.7, 1.2], plus ``lam`` x content, content =
      (1/HW) (||G - T||_F^2 + ``xi`` ||lap G - lap anatomical||_F^2), lap the 4-neighbour Laplacian of the
      official code, T the intensity target: the functional image in the paper (``intensity=
      'functional'``), by default the per-pixel maximum of both sources (``'max'``, see
      :func:`_intensity_target`). Paper: xi = 5, lambda = 100.

    The infrared image of the paper (kept for its intensity) is our functional source (second input), the
    visible image (kept for its gradients, and the discriminator's 'real' class) our anatomical one."""
    opt_ = plan["options"]
    _positive("fusiongan", opt_, "lam", "d_steps")
    _positive("fusiongan", opt_, "xi", allow_zero=True)
    generator = _initial(FusionGANGenerator(), config).to(device)
    disc = _discriminator().to(device)
    sampler = _gan_sampler(ctx, config, plan)
    opt_g, opt_d = _adam(generator.parameters(), plan["lr"]), _adam(disc.parameters(), plan["lr"])
    bs, xi, lam, d_steps, soft = plan["batch_size"], opt_["xi"], opt_["lam"], int(opt_["d_steps"]), opt_["soft_labels"]

    def labels(low, high, hard):
        return _uniform(sampler, low, high, bs, device) if soft else torch.full((bs,), hard, device=device)

    def step(_):
        x = _tensor(sampler.sample(bs), device)
        anat, func = x[:, :1], x[:, 1:2]
        fused = generator(x)
        for _k in range(d_steps):
            d_loss = (L.least_squares_gan_loss(disc(anat), labels(0.7, 1.2, 1.0))
                      + L.least_squares_gan_loss(disc(fused.detach()), labels(0.0, 0.3, 0.0)))
            optimise(opt_d, d_loss)
        with _frozen(disc):
            g_adv = L.least_squares_gan_loss(disc(fused), labels(0.7, 1.2, 1.0))
            content = F.mse_loss(fused, _intensity_target(func, anat, opt_["intensity"])) \
                + xi * F.mse_loss(L.laplacian4(fused), L.laplacian4(anat))
            loss = g_adv + lam * content
            optimise(opt_g, loss)
        return {"loss": loss.item(), "g_adv": g_adv.item(), "content": content.item(), "d": d_loss.item()}

    phases = [Phase("adversarial", plan["phases"]["adversarial"], step, {"generator": opt_g, "discriminator": opt_d},
                    columns=("loss", "g_adv", "content", "d"))]
    labels_text = "soft labels U[0.7,1.2] / U[0,0.3]" if soft else "hard labels 1 / 0"
    return Build(generator, phases, {"generator": generator, "discriminator": disc}, {"pairs": sampler},
                 meta={"loss": f"LSGAN ({labels_text}, {d_steps} D steps per G step) + {lam} x "
                               f"(MSE(G, {_TARGET_TEXT[opt_['intensity']]}) + {xi} x MSE(lap G, lap anatomical))",
                       "discriminator": "PatchDiscriminator 16-32-64 (not shipped)"})


# --- 2. DDcGAN ------------------------------------------------------------------------------------------------
def _ddcgan_losses(generator, d_anat, d_func, x, scale, lam, eta, adv_weight, opts, intensity="functional"):
    """One DDcGAN step on the batch ``x`` (B, 2, P, P): D1 (anatomical vs G), D2 (functional vs psi(G)),
    then the generator. Returns the logged values and the fused batch."""
    opt_g, opt_d1, opt_d2 = opts
    anat = x[:, :1]
    low = downsample(x[:, 1:2], scale)
    fused = generator(x, low) if scale > 1 else generator(x)
    psi = downsample(fused, scale)
    d1 = L.cross_entropy_gan_loss(d_anat(anat), True) + L.cross_entropy_gan_loss(d_anat(fused.detach()), False)
    optimise(opt_d1, d1)
    d2 = L.cross_entropy_gan_loss(d_func(low), True) + L.cross_entropy_gan_loss(d_func(psi.detach()), False)
    optimise(opt_d2, d2)
    with _frozen(d_anat, d_func):
        g_adv = L.cross_entropy_gan_loss(d_anat(fused), True) + L.cross_entropy_gan_loss(d_func(psi), True)
        target = _intensity_target(low, downsample(anat, scale), intensity)
        content = _frobenius2(psi - target) + eta * _l1_sum(L.laplacian4(fused) - L.laplacian4(anat))
        loss = adv_weight * g_adv + lam * content
        if opt_g is not None:
            optimise(opt_g, loss)
    return {"loss": loss.item(), "g_adv": g_adv.item(), "content": content.item(), "d1": d1.item(),
            "d2": d2.item()}, fused


DDCGAN_OPTIONS = {"lam": 0.8, "eta": 1.2, "adv_weight": 1.0}


@recipe("ddcgan", phases={"adversarial": 700}, batch_size=8, patch=64, lr=1e-3, **GAN_PATCH,
        summary="dense-block generator vs two discriminators (anatomical image, functional image), content = "
                "|psi(G) - psi(T)|^2 + eta |grad G - grad anatomical|_1, T = max of the sources (paper: functional) "
                "(Ma et al. 2020)",
        options={**DDCGAN_OPTIONS, "resolution": "equal", "intensity": "max"},
        choices={"resolution": ("equal", "low"), "intensity": INTENSITY})
def _ddcgan(ctx: DataContext, config: TrainConfig, device, plan) -> Build:
    """DDcGAN (Ma et al. 2020): per step, D1 (anatomical image vs G) and D2 (functional image vs psi(G))
    are updated once each with the cross-entropy GAN loss, then the generator with
    L_G = ``adv_weight`` (-log D1(G) - log D2(psi(G))) + ``lam`` (||psi(G) - T||_F^2 +
    ``eta`` ||lap G - lap anatomical||_1); paper lam = 0.8, eta = 1.2. The norms are sums over each patch's
    pixels (as the paper writes them and its code computes them), averaged over the batch. T = the
    functional image in the paper (``intensity='functional'``), by default psi(max(functional,
    anatomical)) (``'max'``, see :func:`_intensity_target`).

    ``resolution='low'``: the paper's multi-resolution mode. Each training functional patch is replaced by
    its average-pooled (psi, factor 4) version, the generator (``scale=4``) upsamples it, and psi(G) is
    compared with it (content and D2); patches must then be multiples of 32 (D2 sees P/4). ``'equal'``
    (default, AANLIB's equal-size pairs, the shipped weights): psi is the identity.

    Not reproduced: the official code's adaptive schedule (extra generator or discriminator steps while
    one side's loss is far above the other's); here one step of each per iteration."""
    opt_ = plan["options"]
    _positive("ddcgan", opt_, "lam")
    _positive("ddcgan", opt_, "eta", "adv_weight", allow_zero=True)
    scale = 4 if opt_["resolution"] == "low" else 1
    if plan["patch"] % (8 * scale):
        raise FusionInputError(f"ddcgan resolution='low' needs patches that are a multiple of {8 * scale} pixels "
                               f"(the functional patch is 1/4 of it); got --patch {plan['patch']}")
    generator = _initial(DDcGANGenerator(scale=scale), config).to(device)
    if generator.scale != scale:
        raise FusionInputError(f"--init weights are of a scale-{generator.scale} DDcGAN; resolution="
                               f"{opt_['resolution']!r} trains scale {scale}")
    d_anat, d_func = _discriminator().to(device), _discriminator().to(device)
    sampler = _gan_sampler(ctx, config, plan)
    opts = tuple(_adam(m.parameters(), plan["lr"]) for m in (generator, d_anat, d_func))
    bs = plan["batch_size"]

    def step(_):
        x = _tensor(sampler.sample(bs), device)
        values, _ = _ddcgan_losses(generator, d_anat, d_func, x, scale, opt_["lam"], opt_["eta"], opt_["adv_weight"],
                                   opts, opt_["intensity"])
        return values

    phases = [Phase("adversarial", plan["phases"]["adversarial"], step,
                    {"generator": opts[0], "d_anatomical": opts[1], "d_functional": opts[2]},
                    columns=("loss", "g_adv", "content", "d1", "d2"))]
    return Build(generator, phases, {"generator": generator, "d_anatomical": d_anat, "d_functional": d_func},
                 {"pairs": sampler},
                 meta={"loss": f"{opt_['adv_weight']} x cross-entropy GAN (D1 anatomical, D2 functional) + "
                               f"{opt_['lam']} x (||psi G - psi {_TARGET_TEXT[opt_['intensity']]}||_F^2 + {opt_['eta']} x ||lap G - lap anatomical||_1) "
                               f"(norms summed over each patch), "
                               f"psi = {'average pooling by 4' if scale > 1 else 'identity'}",
                       "discriminators": "2 x PatchDiscriminator 16-32-64 (not shipped)"})


# --- 3. MGMDcGAN ----------------------------------------------------------------------------------------------
@recipe("mgmdcgan", phases={"first": 350, "second": 200}, batch_size=8, patch=64, lr=1e-3, **GAN_PATCH,
        summary="two cGANs: a DDcGAN (generator + two discriminators), then a refining generator vs a "
                "discriminator on the anatomical image's dense-structure mask (Le et al. 2020)",
        options={**DDCGAN_OPTIONS, "lam2": 1.0, "eta2": 1.2, "background": 0.05})
def _mgmdcgan(ctx: DataContext, config: TrainConfig, device, plan) -> Build:
    """MGMDcGAN (Le et al. 2020) in two phases.

    ``first``: the first cGAN, DDcGAN's losses and settings at equal resolution (``lam``, ``eta``,
    ``adv_weight``; see the ddcgan recipe).

    ``second`` (the first generator frozen): the refining generator G2 (F2 = F1 + R(F1, anatomical)) vs a
    third discriminator D3 that tells M * F2 from M * anatomical, M the dense-structure mask of the
    anatomical image (:func:`~..networks_adversarial.dense_structure_mask`: above the Otsu threshold of
    its foreground, computed on the whole image before patches are cut). L_G2 = -log D3(M F2) + ``lam2``
    (||(1 - M)(F2 - F1)||_F^2 + ||M (F2 - max(F1, anatomical))||_F^2 + ``eta2`` ||M (lap F2 - lap
    anatomical)||_1), norms summed over the patch as DDcGAN's: outside the mask keep the first fusion, inside it keep the dense structure at
    least as bright as in the anatomical image, with its edges. The public code holds only the first cGAN;
    this second loss is our reading of the paper (docs/models.md)."""
    opt_ = plan["options"]
    _positive("mgmdcgan", opt_, "lam", "lam2")
    _positive("mgmdcgan", opt_, "eta", "adv_weight", "eta2", allow_zero=True)
    if not 0 <= opt_["background"] < 1:
        raise FusionInputError(f"mgmdcgan option background must be in [0, 1); got {opt_['background']!r}")
    model = _initial(MGMDcGANNet(), config).to(device)
    d_anat, d_func, d_mask = _discriminator().to(device), _discriminator().to(device), _discriminator().to(device)
    background = opt_["background"]
    sampler = _gan_sampler(ctx, config, plan, fn=lambda a: dense_structure_mask(a, background))
    opt_g1, opt_d1, opt_d2 = (_adam(m.parameters(), plan["lr"]) for m in (model.first, d_anat, d_func))
    opt_g2, opt_d3 = _adam(model.second.parameters(), plan["lr"]), _adam(d_mask.parameters(), plan["lr"])
    bs, lam2, eta2 = plan["batch_size"], opt_["lam2"], opt_["eta2"]

    def first_step(_):
        x = _tensor(sampler.sample(bs), device)[:, :2]
        values, _ = _ddcgan_losses(model.first, d_anat, d_func, x, 1, opt_["lam"], opt_["eta"], opt_["adv_weight"],
                                   (opt_g1, opt_d1, opt_d2))
        return values

    def second_step(_):
        batch = _tensor(sampler.sample(bs), device)
        x, mask = batch[:, :2], batch[:, 2:3].round()
        anat = x[:, :1]
        with torch.no_grad():
            f1 = model.first(x).clamp(0, 1)
        f2 = model.refine(f1, anat)
        d3 = (L.cross_entropy_gan_loss(d_mask(mask * anat), True)
              + L.cross_entropy_gan_loss(d_mask(mask * f2.detach()), False))
        optimise(opt_d3, d3)
        with _frozen(d_mask):
            g_adv = L.cross_entropy_gan_loss(d_mask(mask * f2), True)
            content = _frobenius2((1 - mask) * (f2 - f1)) + _frobenius2(mask * (f2 - torch.maximum(f1, anat))) \
                + eta2 * _l1_sum(mask * (L.laplacian4(f2) - L.laplacian4(anat)))
            loss = opt_["adv_weight"] * g_adv + lam2 * content
            optimise(opt_g2, loss)
        return {"loss": loss.item(), "g_adv": g_adv.item(), "content": content.item(), "d3": d3.item(),
                "mask": mask.mean().item()}

    def freeze_first():
        model.first.requires_grad_(False)

    phases = [Phase("first", plan["phases"]["first"], first_step,
                    {"generator1": opt_g1, "d_anatomical": opt_d1, "d_functional": opt_d2},
                    columns=("loss", "g_adv", "content", "d1", "d2")),
              Phase("second", plan["phases"]["second"], second_step, {"generator2": opt_g2, "d_mask": opt_d3},
                    setup=freeze_first, columns=("loss", "g_adv", "content", "d3", "mask"))]
    return Build(model, phases, {"model": model, "d_anatomical": d_anat, "d_functional": d_func, "d_mask": d_mask},
                 {"pairs": sampler},
                 meta={"loss": f"first cGAN: DDcGAN ({opt_['adv_weight']} x adversarial + {opt_['lam']} x (||G1 - "
                               f"functional||_F^2 + {opt_['eta']} x ||lap G1 - lap anatomical||_1)); second cGAN: "
                               f"-log D3(M G2) + {lam2} x (||(1-M)(G2 - G1)||_F^2 + ||M (G2 - max(G1, anatomical))||_F^2 "
                               f"+ {eta2} x ||M (lap G2 - lap anatomical)||_1) (norms summed over each patch), M = anatomical > Otsu threshold of its "
                               f"foreground (> {background})",
                       "discriminators": "3 x PatchDiscriminator 16-32-64 (not shipped)"})


# --- 4. tissue-aware cGAN -------------------------------------------------------------------------------------
@recipe("tissue_cgan", phases={"adversarial": 500}, batch_size=8, patch=64, lr=1e-3, **GAN_PATCH,
        summary="generator and discriminator conditioned on the MRI's tissue label map (k-means), joint loss: "
                "intensity (max of PET, MRI) + MRI gradients + MRI structure (SSIM) (Kang et al. 2020)",
        options={"lam": 100.0, "xi": 5.0, "w_ssim": 0.05, "background": 0.05, "intensity": "max"},
        choices={"intensity": INTENSITY})
def _tissue_cgan(ctx: DataContext, config: TrainConfig, device, plan) -> Build:
    """TA-cGAN (Kang et al. 2020). The label map T (background + 3 tissue classes, :func:`tissue_labels`)
    of each MRI is computed on the whole image before patches are cut; the generator sees (MRI, PET, T),
    the discriminator (image, T): it tells the MRI from the fused image given the tissue map (the paper's
    discriminator 'urges the fused image to include more structural information of MRI').

    * Discriminator: cross-entropy, real = (MRI, T), fake = (G, T).
    * Generator, the joint loss: -log D(G, T) + ``lam`` (||G - I||^2 / HW + ``xi`` ||lap G - lap MRI||^2 /
      HW + ``w_ssim`` (1 - SSIM(G, MRI))): the PET's intensity (its luminance: the pipeline keeps the PET's
      chroma exactly, so the paper's colour term reduces to this) and the MRI's anatomy (edges and local
      structure). I = the PET luminance with ``intensity='functional'``, by default max(PET, MRI)
      (``'max'``, see :func:`_intensity_target`; the PET's chroma is kept exactly either way)."""
    opt_ = plan["options"]
    _positive("tissue_cgan", opt_, "lam")
    _positive("tissue_cgan", opt_, "xi", "w_ssim", allow_zero=True)
    if not 0 <= opt_["background"] < 1:
        raise FusionInputError(f"tissue_cgan option background must be in [0, 1); got {opt_['background']!r}")
    generator = _initial(TissueCGANGenerator(background=opt_["background"]), config).to(device)
    disc = _discriminator(in_channels=4).to(device)
    background = generator.arch["background"]
    sampler = _gan_sampler(ctx, config, plan, fn=lambda a: tissue_labels(a, background).to(torch.float32) / 3.0)
    opt_g, opt_d = _adam(generator.parameters(), plan["lr"]), _adam(disc.parameters(), plan["lr"])
    bs, lam, xi, w_ssim = plan["batch_size"], opt_["lam"], opt_["xi"], opt_["w_ssim"]
    from ..networks_adversarial import tissue_onehot

    def step(_):
        batch = _tensor(sampler.sample(bs), device)
        x = batch[:, :2]
        labels = (batch[:, 2:3] * 3.0).round().long().clamp(0, 3)
        condition = tissue_onehot(labels)
        mri, pet = x[:, :1], x[:, 1:2]
        fused = generator(x, labels)
        d_loss = (L.cross_entropy_gan_loss(disc(torch.cat([mri, condition], 1)), True)
                  + L.cross_entropy_gan_loss(disc(torch.cat([fused.detach(), condition], 1)), False))
        optimise(opt_d, d_loss)
        with _frozen(disc):
            g_adv = L.cross_entropy_gan_loss(disc(torch.cat([fused, condition], 1)), True)
            content = F.mse_loss(fused, _intensity_target(pet, mri, opt_["intensity"])) + xi * F.mse_loss(L.laplacian4(fused), L.laplacian4(mri)) \
                + w_ssim * (1 - L.ssim(fused, mri).mean())
            loss = g_adv + lam * content
            optimise(opt_g, loss)
        return {"loss": loss.item(), "g_adv": g_adv.item(), "content": content.item(), "d": d_loss.item()}

    phases = [Phase("adversarial", plan["phases"]["adversarial"], step, {"generator": opt_g, "discriminator": opt_d},
                    columns=("loss", "g_adv", "content", "d"))]
    return Build(generator, phases, {"generator": generator, "discriminator": disc}, {"pairs": sampler},
                 meta={"loss": f"cross-entropy cGAN conditioned on the tissue map + {lam} x (MSE(G, "
                               f"{_TARGET_TEXT[opt_['intensity']].replace('functional', 'PET').replace('anatomical', 'MRI')}) + {xi} x "
                               f"MSE(lap G, lap MRI) + {w_ssim} x (1 - SSIM(G, MRI)))",
                       "tissue_map": f"background (MRI <= {background}) + 3-class histogram k-means of the MRI's "
                                     f"foreground, ordered by intensity",
                       "discriminator": "conditional PatchDiscriminator 16-32-64 on (image, 3 tissue channels) "
                                        "(not shipped)"})
