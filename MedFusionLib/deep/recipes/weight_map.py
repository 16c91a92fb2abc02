"""Training recipes of the weight-map / similarity family: the Siamese clarity classifier of
Liu et al. (2017) and the Siamese band features of Hermessi et al. (2018)."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from .. import data as D
from ..networks import ShearletSiameseNet, SiameseWeightNet
from ..trainer import Phase
from .base import Build, DataContext, TrainConfig, _adam, _initial, _tensor, optimise, recipe



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
        optimise(opt, loss)
        acc = (logits.argmax(1) == target).float().mean()
        return {"loss": loss.item(), "accuracy": acc.item()}

    phases = [Phase("classify", plan["phases"]["classify"], step, {"adam": opt}, columns=("loss", "accuracy"))]
    return Build(model, phases, {"model": model}, {"singles": sampler},
                 meta={"loss": "cross-entropy of 'which patch is clear' on (clear, Gaussian-blurred sigma 2 x1..5) "
                               "16x16 patch pairs, the most textured half of each drawn batch"})


def _random_bands(patches: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One random NSST directional band (default directions) of each co-registered patch pair
    ``(B, 2, P, P)`` -> ``(B, 2, P, P)``, each map scaled to unit standard deviation (as at inference)."""
    from ...transforms.nsst import DEFAULT_DIRECTIONS, nsst_decompose

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
            optimise(opt, loss)
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


