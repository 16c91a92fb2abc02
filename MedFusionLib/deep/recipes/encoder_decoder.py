"""Training recipes of the encoder-decoder networks: the MONAI U-Net (``unet_fusion``) and MCFNet.

Both are trained unsupervised on registered pairs (``ctx.pairs()``: the training split of the pair
folders and the phantom pairs, reference first) with one structure + intensity + gradient loss
(:func:`structure_intensity_gradient_loss`).
"""

from __future__ import annotations

from typing import Dict, Tuple

import torch

from ...errors import FusionInputError
from .. import data as D
from .. import losses as L
from ..networks_encoder_decoder import UPSAMPLING, MCFNet, UNetFusionNet
from ..trainer import Phase
from .base import Build, DataContext, TrainConfig, _adam, _initial, _tensor, optimise, recipe


def structure_intensity_gradient_loss(fused: torch.Tensor, sources: torch.Tensor, w_ssim: float, alpha: float,
                                      beta: float) -> Tuple[torch.Tensor, Dict[str, float]]:
    """``w_ssim * mean_k (1 - SSIM(F, S_k)) + alpha * |F - max_k S_k|_1 + beta * |grad F| - max_k |grad S_k||_1``.

    Why these three terms: no fused ground truth exists for multi-modal pairs, so the loss must say
    what a good fusion keeps. The SSIM term keeps the local structure (contrast and correlation) of
    every source, equally weighted; but SSIM is blind to which source's brightness to keep, and between
    a dark MRI region and a bright PET one its optimum is a washed-out compromise. The intensity term
    pulls F towards the brighter source per pixel (the functional uptake of PET/SPECT and CT's bone are
    the bright signal; the black background, where every source is 0, is pulled to exactly 0), and the
    gradient term towards the stronger edge per pixel (Sobel magnitude), so edges of both sources
    survive at full contrast. These are the pieces PMGI's and the GAN recipes' content losses are made
    of (``losses.ssim``, ``intensity_loss``, ``max_gradient_loss``). ``sources`` is ``(B, N, ...)``."""
    n = sources.shape[1]
    ssim_l = sum(1 - L.ssim(fused, sources[:, k:k + 1]) for k in range(n)).mean() / n
    intensity = L.intensity_loss(fused, sources.max(dim=1, keepdim=True).values)
    gradient = L.max_gradient_loss(fused, sources)
    loss = w_ssim * ssim_l + alpha * intensity + beta * gradient
    return loss, {"ssim": ssim_l.item(), "intensity": intensity.item(), "gradient": gradient.item()}


def _check_weights(method: str, opt_: dict) -> None:
    for key in ("w_ssim", "alpha", "beta"):
        if not opt_[key] >= 0:
            raise FusionInputError(f"{method} option {key} must be a number >= 0; got {opt_[key]!r}")
    if opt_["w_ssim"] + opt_["alpha"] + opt_["beta"] <= 0:
        raise FusionInputError(f"{method} options w_ssim, alpha and beta cannot all be 0")


def _parse_widths(method: str, text: str, count=None) -> list:
    try:
        widths = [int(v) for v in str(text).replace(" ", "").split(",") if v]
    except ValueError:
        widths = []
    if not widths or min(widths) < 2 or (count is not None and len(widths) != count) or (count is None and len(widths) < 2):
        need = f"{count} comma-separated integers >= 2" if count else "at least two comma-separated integers >= 2"
        raise FusionInputError(f"{method} option channels must be {need}; got {text!r}")
    return widths


def _fusion_build(model: torch.nn.Module, ctx: DataContext, config: TrainConfig, device, plan, text: str) -> Build:
    opt_ = plan["options"]
    sampler = D.PatchSampler(ctx.pairs(), plan["patch"], augment=plan["augment"], seed=config.seed)
    opt = _adam(model.parameters(), plan["lr"])
    bs = plan["batch_size"]

    def step(_):
        x = _tensor(sampler.sample(bs), device)
        loss, terms = structure_intensity_gradient_loss(model(x), x, opt_["w_ssim"], opt_["alpha"], opt_["beta"])
        optimise(opt, loss)
        return {"loss": loss.item(), **terms}

    phases = [Phase("fusion", plan["phases"]["fusion"], step, {"adam": opt},
                    columns=("loss", "ssim", "intensity", "gradient"))]
    loss_text = (f"{opt_['w_ssim']} x mean_k (1 - SSIM(F, S_k)) + {opt_['alpha']} x |F - max S|_1 + "
                 f"{opt_['beta']} x ||grad F| - max |grad S||_1 (Sobel), unsupervised on registered pairs")
    return Build(model, phases, {"model": model}, {"pairs": sampler}, meta={"loss": loss_text, "network_notes": text})


_LOSS_OPTIONS = {"w_ssim": 1.0, "alpha": 2.0, "beta": 2.0}


@recipe("unet_fusion", phases={"fusion": 600}, batch_size=12, patch=64, lr=1e-3, min_patch=16, patch_multiple=16,
        summary="MONAI U-Net (BasicUNet, or AttentionUnet with attention=true), bias-free, unsupervised "
                "SSIM + intensity + gradient loss",
        options={"attention": False, "channels": "16,16,32,64,96,16", **_LOSS_OPTIONS})
def _unet_fusion(ctx: DataContext, config: TrainConfig, device, plan) -> Build:
    """The U-Net of :class:`~..networks_encoder_decoder.UNetFusionNet`; ``attention`` picks MONAI's
    AttentionUnet (an architecture choice, stored in the weight file's arch), ``channels`` its six widths
    (AttentionUnet uses the first five)."""
    opt_ = plan["options"]
    _check_weights("unet_fusion", opt_)
    widths = _parse_widths("unet_fusion", opt_["channels"], 6)
    model = _initial(UNetFusionNet(features=widths, attention=opt_["attention"]), config).to(device)
    kind = "MONAI AttentionUnet" if model.arch["attention"] else "MONAI BasicUNet (bilinear up-sampling)"
    return _fusion_build(model, ctx, config, device, plan, f"{kind}, widths {model.arch['features']}, bias-free")


@recipe("mcfnet", phases={"fusion": 600}, batch_size=12, patch=64, lr=1e-3, min_patch=16, patch_multiple=4,
        summary="MCFNet: per-source convolutional encoders, up-sampling decoder concatenating both sources' "
                "features of every level (Liang et al. 2019); unsupervised SSIM + intensity + gradient loss",
        options={"channels": "16,32,48", "shared": False, "upsampling": "bilinear", **_LOSS_OPTIONS},
        choices={"upsampling": UPSAMPLING})
def _mcfnet(ctx: DataContext, config: TrainConfig, device, plan) -> Build:
    """MCFNet (:class:`~..networks_encoder_decoder.MCFNet`); ``shared`` uses one encoder for both sources,
    ``upsampling`` 'bilinear' (default) or the paper's 'deconv'."""
    opt_ = plan["options"]
    _check_weights("mcfnet", opt_)
    widths = _parse_widths("mcfnet", opt_["channels"])
    factor = 2 ** (len(widths) - 1)
    patch = plan["patch"]
    if patch % factor:
        raise FusionInputError(f"mcfnet with {len(widths)} levels needs patches that are multiples of {factor}; "
                               f"got --patch {patch}")
    model = _initial(MCFNet(channels=widths, shared=opt_["shared"], upsampling=opt_["upsampling"]), config).to(device)
    return _fusion_build(model, ctx, config, device, plan,
                         f"MCFNet widths {model.arch['channels']}, {'shared' if model.arch['shared'] else 'separate'} "
                         f"encoders, {model.arch['upsampling']} up-sampling, bias-free")
