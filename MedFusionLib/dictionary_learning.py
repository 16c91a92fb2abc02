"""Convolutional dictionary learning for the CSR fusion method (Liu et al., IEEE SPL 2016).

Learns M filters d_m (default 32 of 8 x 8) minimising, over training detail layers s_k,

    sum_k 1/2 || sum_m d_m * x_km - s_k ||^2 + lambda sum_km || x_km ||_1,  ||d_m|| <= 1, supp d_m in 8x8,

by alternating minimisation: a coefficient step (warm-started CBPDN, the frequency-domain ADMM of
:mod:`MedFusionLib.transforms._csc`) and a dictionary step (FISTA on the data term in the DFT domain, with
projection onto the filter support and the unit ball, step 1/L with L the largest per-frequency
eigenvalue bound sum_k sum_m |x^_km|^2). This is the alternating scheme of convolutional dictionary
learning (Garcia-Cardona and Wohlberg 2018, Sec. III) with a projected-gradient dictionary update in
place of CCMOD's ADMM.

Training data, as the paper's "natural images" plus the medical images fusion is meant for: the
*training* split of the AANLIB development set (every 4th pair held back for evaluation is never used)
and the natural images bundled with scikit-image (no download), each turned into luminance in [0, 1],
high-passed by the same Tikhonov filter as the CSR method, and cut into fixed-seed random crops.

Command (the shipped dictionary; see docs/signal-processing.md for data, seed and wall time)::

    python -m MedFusionLib.dictionary_learning --data ../shared/data/aanlib-dev \
        --out MedFusionLib/weights/csr_dictionary.npz

References
----------
.. [1] Y. Liu, X. Chen, R. K. Ward, Z. J. Wang, "Image fusion with convolutional sparse representation",
       IEEE Signal Processing Letters 23(12):1882-1886, 2016.
.. [2] C. Garcia-Cardona, B. Wohlberg, "Convolutional dictionary learning: a comparative review and new
       algorithms", IEEE Trans. Computational Imaging 4(3):366-381, 2018.
.. [3] A. Beck, M. Teboulle, "A fast iterative shrinkage-thresholding algorithm for linear inverse
       problems", SIAM J. Imaging Sciences 2(1):183-202, 2009.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import List, Optional, Sequence

import numpy as np

from .transforms._csc import cbpdn, resolve_device

#: The natural images of scikit-image that ship with it (no download needed).
NATURAL_IMAGES = ("camera", "astronaut", "brick", "chelsea", "clock", "coffee", "coins", "grass", "gravel",
                  "horse", "moon", "page", "rocket", "text", "immunohistochemistry", "hubble_deep_field")
DEFAULT_OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "weights", "csr_dictionary.npz")
TRAIN_COMMAND = ("python -m MedFusionLib.dictionary_learning --data ../shared/data/aanlib-dev "
                 "--out MedFusionLib/weights/csr_dictionary.npz")


def tikhonov_split(images: np.ndarray, lmbda: float = 5.0, pad: int = 16):
    """Base and detail layers of a batch ``(..., H, W)`` (Liu et al. eq. 1; SPORCO's tikhonov_filter):
    base = argmin_b ||b - s||^2 + lambda (||g_x * b||^2 + ||g_y * b||^2) with g = [-1, 1], solved in the
    DFT domain after symmetric padding by ``pad`` samples (removed again); detail = s - base."""
    s = np.asarray(images, dtype=np.float32)
    padded = np.pad(s, [(0, 0)] * (s.ndim - 2) + [(pad, pad), (pad, pad)], mode="symmetric")
    h, w = padded.shape[-2:]
    gy = 2 - 2 * np.cos(2 * np.pi * np.fft.fftfreq(h))[:, None]
    gx = 2 - 2 * np.cos(2 * np.pi * np.fft.rfftfreq(w))[None, :]
    base = np.fft.irfft2(np.fft.rfft2(padded) / (1.0 + lmbda * (gx + gy)), s=(h, w))
    base = base[..., pad:pad + s.shape[-2], pad:pad + s.shape[-1]].astype(np.float32)
    return base, s - base


def _grey(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    if image.ndim == 3:
        image = image[..., :3].astype(np.float64) @ np.array([0.299, 0.587, 0.114])
    image = image.astype(np.float64)
    lo, hi = image.min(), image.max()
    return ((image - lo) / (hi - lo if hi > lo else 1.0)).astype(np.float32)


def training_images(data_root: Optional[str], natural: Sequence[str] = NATURAL_IMAGES) -> List[np.ndarray]:
    """Luminance images in [0, 1]: the train split of every pair set under ``data_root`` (both
    modalities) and the bundled scikit-image pictures named in ``natural``."""
    images = []
    if data_root:
        from .evaluation import find_pairs, read_image, split_pairs
        from .metrics import protocol_image

        for pair_set in find_pairs(data_root):
            for _, path_a, path_b in split_pairs(pair_set, "train"):
                for path in (path_a, path_b):
                    images.append((protocol_image(read_image(path)) / 255.0).astype(np.float32))
    if natural:
        import skimage.data

        for name in natural:
            images.append(_grey(getattr(skimage.data, name)()))
    return images


def random_crops(images: Sequence[np.ndarray], count: int, size: int, rng: np.random.Generator,
                 min_std: float = 0.02) -> np.ndarray:
    """``count`` crops of ``size`` x ``size`` from randomly chosen images (those with some structure:
    standard deviation >= ``min_std``; medical slices are mostly black background)."""
    usable = [im for im in images if min(im.shape) >= size]
    if not usable:
        raise ValueError(f"no training image is at least {size} x {size}")
    crops = []
    attempts = 0
    while len(crops) < count:
        attempts += 1
        im = usable[rng.integers(len(usable))]
        i = rng.integers(im.shape[0] - size + 1)
        j = rng.integers(im.shape[1] - size + 1)
        crop = im[i:i + size, j:j + size]
        if crop.std() >= min_std or attempts > 100 * count:
            crops.append(crop)
    return np.stack(crops).astype(np.float32)


def _project(filters: "torch.Tensor", support) -> "torch.Tensor":
    """Keep the filter support, unit-ball each filter."""
    import torch

    h, w = support
    out = torch.zeros_like(filters)
    out[:, :h, :w] = filters[:, :h, :w]
    norms = torch.linalg.vector_norm(out, dim=(1, 2), keepdim=True).clamp(min=1.0)
    return out / norms


def learn_dictionary(signals: np.ndarray, n_filters: int = 32, size: int = 8, lmbda: float = 0.05,
                     outer: int = 40, coef_iter: int = 15, dict_iter: int = 8, seed: int = 0,
                     device: str = "auto", verbose: bool = True, progress=None):
    """Learn ``n_filters`` filters of ``size`` x ``size`` for the signals ``(K, H, W)`` (detail layers).

    Returns
    -------
    filters : ndarray (M, size, size) float32, unit norm
    history : list of dict
        Per outer iteration: objective, data term, l1 term, seconds.
    """
    import torch

    dev = resolve_device(device)
    rng = np.random.default_rng(seed)
    s_np = np.asarray(signals, dtype=np.float32)
    k, h, w = s_np.shape
    d0 = rng.standard_normal((n_filters, size, size)).astype(np.float32)
    d0 -= d0.mean(axis=(1, 2), keepdims=True)
    d0 /= np.linalg.norm(d0.reshape(n_filters, -1), axis=1)[:, None, None]
    s = torch.as_tensor(s_np, device=dev)
    sf = torch.fft.rfft2(s)
    d_full = torch.zeros((n_filters, h, w), device=dev)
    d_full[:, :size, :size] = torch.as_tensor(d0, device=dev)
    x = None
    history = []
    start = time.perf_counter()
    for it in range(outer):
        # coefficient step: warm-started CBPDN with the current dictionary
        res = cbpdn(d_full[:, :size, :size].cpu().numpy(), s_np, lmbda, max_iter=coef_iter, rel_tol=0.0,
                    device=str(dev), x0=x)
        x = res.coefficients
        xf = torch.fft.rfft2(torch.as_tensor(x, device=dev))                    # (K, M, H, Wr)
        lipschitz = float((xf.real ** 2 + xf.imag ** 2).sum(dim=(0, 1)).max())
        step = 1.0 / max(lipschitz, 1e-12)
        # dictionary step: FISTA on 1/2 sum_k ||sum_m d_m * x_km - s_k||^2 over the constraint set
        z = d_full.clone()
        t_k = 1.0
        for _ in range(dict_iter):
            zf = torch.fft.rfft2(z)
            resid = (zf[None] * xf).sum(1) - sf                                  # (K, H, Wr)
            grad = torch.fft.irfft2((xf.conj() * resid[:, None]).sum(0), s=(h, w))
            d_new = _project(z - step * grad, (size, size))
            t_next = (1 + np.sqrt(1 + 4 * t_k * t_k)) / 2
            z = d_new + ((t_k - 1) / t_next) * (d_new - d_full)
            d_full, t_k = d_new, t_next
        data = 0.5 * float(((torch.fft.irfft2((torch.fft.rfft2(d_full)[None] * xf).sum(1), s=(h, w)) - s) ** 2).sum())
        l1 = lmbda * float(np.abs(x).sum())
        history.append({"iteration": it + 1, "objective": data + l1, "data": data, "l1": l1,
                        "seconds": time.perf_counter() - start})
        if verbose:
            print(f"outer {it + 1:3d}/{outer}: objective {data + l1:.4f} (data {data:.4f}, l1 {l1:.4f}) "
                  f"{time.perf_counter() - start:.0f} s", flush=True)
        if progress is not None:
            progress((it + 1) / outer, f"dictionary learning {it + 1}/{outer}")
    filters = d_full[:, :size, :size].cpu().numpy().astype(np.float32)
    filters /= np.maximum(np.linalg.norm(filters.reshape(n_filters, -1), axis=1), 1e-12)[:, None, None]
    return filters, history


def save_dictionary(path: str, filters: np.ndarray, meta: dict) -> None:
    """Write ``filters`` and a JSON description atomically (no half-written file on error)."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = path + ".tmp.npz"
    np.savez_compressed(tmp, filters=np.asarray(filters, dtype=np.float32), meta=np.array(json.dumps(meta)))
    os.replace(tmp, path)


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m MedFusionLib.dictionary_learning",
                                     description="Learn the CSR convolutional dictionary.")
    parser.add_argument("--data", help="AANLIB-style pair folder (its train split is used); omit for natural "
                        "images only")
    parser.add_argument("--out", default=DEFAULT_OUT, help="output .npz (default: the shipped dictionary)")
    parser.add_argument("--filters", type=int, default=32)
    parser.add_argument("--size", type=int, default=8)
    parser.add_argument("--lmbda", type=float, default=0.05, help="l1 weight while learning")
    parser.add_argument("--crops", type=int, default=24, help="number of training crops")
    parser.add_argument("--crop-size", type=int, default=96)
    parser.add_argument("--outer", type=int, default=40, help="alternating iterations")
    parser.add_argument("--coef-iter", type=int, default=15, help="CBPDN iterations per alternation")
    parser.add_argument("--dict-iter", type=int, default=8, help="FISTA iterations per alternation")
    parser.add_argument("--no-natural", action="store_true", help="skip the scikit-image pictures")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    args = parser.parse_args(argv)
    import torch

    start = time.perf_counter()
    rng = np.random.default_rng(args.seed)
    medical = training_images(args.data, natural=()) if args.data else []
    natural = [] if args.no_natural else training_images(None)
    n_med = args.crops // 2 if medical and natural else (args.crops if medical else 0)
    parts = []
    if n_med:
        parts.append(random_crops(medical, n_med, args.crop_size, rng))
    if args.crops - n_med:
        parts.append(random_crops(natural, args.crops - n_med, args.crop_size, rng))
    crops = np.concatenate(parts)
    _, detail = tikhonov_split(crops)
    filters, history = learn_dictionary(detail, args.filters, args.size, args.lmbda, args.outer, args.coef_iter,
                                        args.dict_iter, args.seed, args.device)
    meta = {"command": "python -m MedFusionLib.dictionary_learning " + " ".join(argv if argv is not None else sys.argv[1:]),
            "data": {"aanlib_train_images": len(medical), "natural_images": len(natural),
                     "medical_crops": n_med, "natural_crops": args.crops - n_med, "crop_size": args.crop_size},
            "seed": args.seed, "filters": args.filters, "size": args.size, "lmbda": args.lmbda,
            "outer": args.outer, "coef_iter": args.coef_iter, "dict_iter": args.dict_iter,
            "final_objective": history[-1]["objective"], "wall_seconds": time.perf_counter() - start,
            "torch": torch.__version__, "numpy": np.__version__}
    save_dictionary(args.out, filters, meta)
    print(json.dumps(meta, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
