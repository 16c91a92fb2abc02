"""Training recipes of the autoencoder family: the feature network of the perceptual losses and the
stacked convolutional autoencoder of DSCNN (Xia et al. 2019)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .. import data as D
from ..networks import FeatureNet, StackedAutoencoderNet
from ..trainer import Phase
from .base import Build, DataContext, TrainConfig, _adam, _initial, _reconstruction_step, _tensor, optimise, recipe



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
            optimise(opt, loss)
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


