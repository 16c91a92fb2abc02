"""Measure fusion artefacts on the held-back development pairs, per method, with three numbers.

- **haze**: share of the background pixels (0 in both 8-bit sources) that are non-zero in the fused
  image (a grey veil outside the head);
- **out of range**: share of all pixels more than 10 grey levels above the brighter or below the darker
  source (overshoot and undershoot: ringing and halos at edges, or brightening beyond both inputs);
- **checkerboard**: mean |F(i, j) - F(i+1, j) - F(i, j+1) + F(i+1, j+1)| over the image (the response to a
  2 x 2 checker pattern, which transposed convolutions leave) minus the larger of the two sources';
- **dark dots**: inside the regions where the functional image is the brighter source (and above 64 grey
  levels), the share of pixels that are dark dots of the fused image (more than 10 grey levels below the
  median of their 3 x 3 neighbourhood) where neither source has a dot (more than 10 grey levels from
  its own 3 x 3 median): the speckle a detail transfer gated pixel by pixel leaves in a PET hot region.

    python Testing/Benchmarks/artefacts.py [--methods M ...] [--split held-out|train] [--out docs/evaluation/held-out/artefacts.csv]

Images are fused with the published protocol (8-bit luminance, fixed 0..255 ranges), as in the
evaluation.
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np
from scipy import ndimage as ndi

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, ROOT)

import MedFusionLib as mf  # noqa: E402
from MedFusionLib import evaluation, metrics  # noqa: E402


def checker(x: np.ndarray) -> float:
    x = x.astype(np.float64)
    return float(np.abs(x[:-1, :-1] - x[1:, :-1] - x[:-1, 1:] + x[1:, 1:]).mean())


def _from_median(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.float32)
    return x - ndi.median_filter(x, size=3, mode="reflect")


def dark_dots(fused: np.ndarray, reference: np.ndarray, functional: np.ndarray) -> float:
    """Share of the functional-bright pixels (functional > reference and > 64) that are dark dots of the
    fused image made by the fusion (see the module docstring); 0 when there is no such region."""
    region = (functional > reference) & (functional > 64)
    if not region.any():
        return 0.0
    dots = (_from_median(fused) < -10) & (np.abs(_from_median(reference)) <= 10) \
        & (np.abs(_from_median(functional)) <= 10)
    return float(dots[region].mean())


def artefacts(fused: np.ndarray, a: np.ndarray, b: np.ndarray) -> dict:
    background = (a == 0) & (b == 0)
    haze = float((fused[background] > 0).mean()) if background.any() else 0.0
    outside = (fused > np.maximum(a, b) + 10) | (fused < np.minimum(a, b) - 10)
    return {"haze": haze, "out_of_range": float(outside.mean()),
            "checkerboard": checker(fused) - max(checker(a), checker(b)),
            "dark_dots": dark_dots(fused, a, b)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=os.path.join(ROOT, "..", "shared", "data", "aanlib-dev"))
    parser.add_argument("--methods", nargs="+", default=None)
    parser.add_argument("--sets", nargs="+", default=["MRI_CT", "MRI_PET", "MRI_SPECT"])
    parser.add_argument("--split", default="held-out", choices=["held-out", "train"])
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    methods = args.methods or [s.name for s in mf.methods()]
    rows = []
    for pair_set in evaluation.find_pairs(args.data, args.sets):
        pairs = evaluation.split_pairs(pair_set, args.split)
        sums = {m: {"haze": 0.0, "out_of_range": 0.0, "checkerboard": 0.0, "dark_dots": 0.0} for m in methods}
        for _, ref_path, other_path in pairs:
            a = metrics.protocol_image(evaluation.read_image(ref_path))
            b = metrics.protocol_image(evaluation.read_image(other_path))
            for method in methods:
                fused = evaluation.fuse_protocol(a, b, method)
                for key, value in artefacts(fused, a, b).items():
                    sums[method][key] += value / len(pairs)
        for method in methods:
            row = {"set": pair_set.name, "method": method, "pairs": len(pairs),
                   **{k: round(v, 5) for k, v in sums[method].items()}}
            rows.append(row)
            print(f"{pair_set.name:10s} {method:16s} haze {row['haze']:.4f}  out of range {row['out_of_range']:.4f}  "
                  f"checkerboard {row['checkerboard']:+.3f}  dark dots {row['dark_dots']:.4f}")
    if args.out:
        evaluation._write_csv(args.out, list(rows[0]), rows)      # the evaluation's atomic CSV writer
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
