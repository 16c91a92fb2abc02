"""Convolutional sparse representation fusion, CSR (Liu, Chen, Ward and Wang, IEEE SPL 2016).

Two-scale: each source is split into a base layer (Tikhonov low-pass) and a detail layer; the detail
layers are coded over a learned convolutional dictionary by convolutional basis pursuit denoising
(:func:`MedFusionLib.transforms._csc.cbpdn`: ADMM in the DFT domain, torch, batched over slices and
sources, CPU or CUDA); at each pixel the source whose coefficient maps have the largest l1 norm averaged
over a (2r+1)^2 window gives its coefficients (choose-max); base layers are averaged (the paper's rule
for non-multi-focus images); fused = base + sum_m d_m * x_m.
"""

from __future__ import annotations

import json
import os
from functools import lru_cache
from typing import Optional

import numpy as np

from .. import rules
from ..dictionary_learning import DEFAULT_OUT, TRAIN_COMMAND, tikhonov_split
from ..errors import FusionInputError, WeightsError
from ..registry import Param, register
from ..transforms._csc import cbpdn, reconstruct, resolve_device
from ..transforms.filters import box_mean

_REFERENCE = ("Y. Liu, X. Chen, R. K. Ward, Z. J. Wang, 'Image fusion with convolutional sparse representation', "
              "IEEE Signal Processing Letters 23(12):1882-1886, 2016")

# Coefficient samples (images x filters x pixels) coded together by one ADMM: 16 MB per float32 array
# of the solver (2 source-slice images of 256 x 256 with 32 filters); bounds the memory. Not larger:
# glibc serves blocks of 32 MB and more by fresh mmap, so 4 images per solve paid page faults on every
# temporary of every iteration and measured 2.5x slower per slice than 2 (docs/benchmarks.md).
_SOLVE_ELEMENTS = 1 << 22


@lru_cache(maxsize=4)
def _load(path: str, mtime: float):
    try:
        with np.load(path, allow_pickle=False) as data:
            filters = np.asarray(data["filters"], dtype=np.float32)
            meta = json.loads(str(data["meta"])) if "meta" in data.files else {}
    except (OSError, ValueError, KeyError) as exc:
        raise WeightsError(f"CSR dictionary {path!r} is missing or unreadable ({exc}); re-create it with: "
                           f"{TRAIN_COMMAND}") from None
    if filters.ndim != 3 or not 1 <= filters.shape[0] <= 512 or not 2 <= filters.shape[1] <= 32 \
            or not 2 <= filters.shape[2] <= 32 \
            or not np.isfinite(filters).all() or not np.all(np.abs(filters).sum(axis=(1, 2)) > 0):
        raise WeightsError(f"CSR dictionary {path!r} is corrupt (filters of shape {filters.shape}, finite: "
                           f"{bool(np.isfinite(filters).all())}); re-create it with: {TRAIN_COMMAND}")
    return filters, meta


def load_dictionary(path: Optional[str] = None):
    """The learned CSR dictionary ``(M, h, w)`` float32 and its training description.

    Raises
    ------
    WeightsError
        When the file is missing, unreadable or not a valid set of filters; the message names the
        training command.
    """
    path = os.path.abspath(path or DEFAULT_OUT)
    if not os.path.isfile(path):
        raise WeightsError(f"CSR dictionary {path!r} not found; create it with: {TRAIN_COMMAND}")
    return _load(path, os.path.getmtime(path))


def _check(params, n_inputs, shape):
    if shape is not None and min(shape) < 16:
        raise FusionInputError(f"method 'csr' needs images of at least 16 x 16 samples; got {shape}")
    if params["device"] == "cuda":
        try:
            resolve_device("cuda")
        except RuntimeError as exc:
            raise FusionInputError(f"method 'csr': {exc}") from None
    load_dictionary()       # a missing dictionary is reported before any work


@register("csr", family="signal processing",
          summary="Convolutional sparse representation: Tikhonov base/detail split, detail coded by CBPDN over a "
                  "learned dictionary, choose-max of windowed l1 activity, averaged base (Liu et al. 2016).",
          reference=_REFERENCE, dims=(2,), check=_check,
          params=(Param("lmbda", "float", 0.01, "Sparsity weight lambda of the convolutional BPDN (paper: 0.01).",
                        minimum=1e-5, maximum=1.0),
                  Param("window_radius", "int", 3, "Radius r of the (2r+1)^2 window averaging the l1 activity "
                        "(paper: 3; 9 for multi-focus images).", minimum=0, maximum=20),
                  Param("base_lambda", "float", 5.0, "Tikhonov weight of the base/detail split (paper: 5).",
                        minimum=0.1, maximum=100.0),
                  Param("max_iter", "int", 500, "ADMM iteration limit (authors' code: 500).", minimum=1,
                        maximum=5000),
                  Param("tolerance", "float", 1e-3, "Relative stopping tolerance of the ADMM residuals "
                        "(authors' code: 1e-3).", minimum=1e-6, maximum=0.1),
                  Param("device", "choice", "auto", "Where to run the sparse coding: auto = CUDA when "
                        "available, else CPU.", choices=("auto", "cpu", "cuda"))))
def csr_fusion(stack: np.ndarray, lmbda: float = 0.01, window_radius: int = 3, base_lambda: float = 5.0,
               max_iter: int = 500, tolerance: float = 1e-3, device: str = "auto", progress=None) -> np.ndarray:
    """CSR fusion of a ``(N, B, H, W)`` stack (Liu et al. 2016, Sec. III; the authors' CSR_Fusion.m).

    1. Base b_n = argmin ||b - s_n||^2 + eta (||g_x * b||^2 + ||g_y * b||^2), eta = ``base_lambda``
       (16-sample symmetric padding, DFT solution); detail d_n = s_n - b_n.
    2. CBPDN of every detail layer over the shipped dictionary (32 filters 8 x 8, learned by
       :mod:`MedFusionLib.dictionary_learning`), lambda = 0.01, ADMM with rho0 = 100 lambda + 0.5,
       relative tolerance 1e-3, at most 500 iterations (the authors' settings).
    3. Activity A_n = sum_m |x_{n,m}|, averaged over (2r+1)^2 windows (r = 3 for medical images);
       decision k* = argmax_n; fused maps x_{F,m} = x_{k*,m}; detail_F = sum_m d_m * x_{F,m}.
    4. Base_F = mean of the bases (the paper's rule except for multi-focus images); F = base_F + detail_F.
    N >= 2 sources (choose-max over N; the mean over N).
    """
    filters, _ = load_dictionary()
    n, b_total, h, w = stack.shape
    base, detail = tikhonov_split(stack, base_lambda)
    flat = detail.reshape(n * b_total, h, w)
    per_solve = max(1, _SOLVE_ELEMENTS // (filters.shape[0] * h * w))
    fused = np.empty((b_total, h, w), dtype=np.float32)
    # Code source-slice images in groups; fuse each slice once all its sources are coded.
    order = [(src, b) for b in range(b_total) for src in range(n)]
    pending = {}
    steps = max(1, (len(order) + per_solve - 1) // per_solve)
    for step, start in enumerate(range(0, len(order), per_solve)):
        group = order[start:start + per_solve]
        sub = progress.sub(step / steps, (step + 1) / steps) if progress is not None else None
        result = cbpdn(filters, np.stack([flat[src * b_total + b] for src, b in group]), lmbda,
                       rho=100 * lmbda + 0.5, max_iter=max_iter, rel_tol=tolerance, device=device,
                       progress=sub.report if sub is not None else None)
        for (src, b), x in zip(group, result.coefficients):
            pending.setdefault(b, {})[src] = x
        for b in [k for k, v in pending.items() if len(v) == n]:
            maps = np.stack([pending[b][src] for src in range(n)])           # (N, M, H, W)
            activity = np.abs(maps).sum(axis=1)                                # (N, H, W)
            # zero-padded box mean (MATLAB imfilter); the truncated mean gives the same argmax inside
            activity = box_mean(activity, window_radius) if window_radius > 0 else activity
            choice = rules.argmax_sources(activity)
            chosen = np.take_along_axis(maps, choice[None, None], axis=0)[0]   # (M, H, W)
            fused[b] = reconstruct(filters, chosen[None], device=device)[0]
            del pending[b]
    return fused + base.mean(axis=0)
