"""Measure each method's peak memory per input voxel: the factors of ``MedFusionLib/memory.py``.

Usage (from the repository root)::

    flock /tmp/medfusion-heavy.lock python Testing/Benchmarks/calibrate_memory.py [--methods M ...] [--json out.json]

Each measurement runs in a fresh process: import, build two float32 inputs (smooth random images),
fuse a 64 x 64 pair once (loads weights, fills caches for other shapes), ``malloc_trim``, read VmRSS as
the baseline, reset the high-water mark (``/proc/self/clear_refs``), fuse, read VmHWM. The peak delta is
what the call allocated on top of its inputs (output included). Per method two block sizes are measured
(one 256 x 256 slice and a batch of 8 such slices, ``mode='slices'``; classical methods also a 3-D
32 x 128 x 128 volume natively): ``factor`` is the slope (bytes per input voxel of a block) and ``fixed``
the intercept; the recorded factors are the largest over the sizes, before memory.py's 25 % margin.
Linux only (procfs).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

CHILD = r"""
import ctypes, json, sys
import numpy as np
import MedFusionLib
from MedFusionLib import pipeline

method, shape, mode = sys.argv[1], tuple(json.loads(sys.argv[2])), sys.argv[3]
rng = np.random.default_rng(0)
def image(shape):
    from scipy import ndimage
    return ndimage.gaussian_filter(rng.random(shape, dtype=np.float32), 2).astype(np.float32) * 1000
a, b = image(shape), image(shape)
MedFusionLib.fuse([image((64, 64)), image((64, 64))], method)
def status(key):
    for line in open('/proc/self/status'):
        if line.startswith(key):
            return int(line.split()[1]) * 1024
ctypes.CDLL('libc.so.6').malloc_trim(0)
base = status('VmRSS:')
open('/proc/self/clear_refs', 'w').write('5')
p = pipeline.plan([a, b], method, mode=mode)
MedFusionLib.fuse([a, b], method, mode=mode)
peak = status('VmHWM:')
block = int(np.prod(shape)) // (shape[p.axis] if p.mode == 'slices' else 1) * p.batch_size
print(json.dumps({"delta": peak - base, "block_voxels": block, "voxels": int(np.prod(shape)), "mode": p.mode}))
"""

CLASSICAL = ["average", "max", "min", "pca", "weighted_average", "dwt", "laplacian", "guided_filter", "max_detail"]
SIGNAL = ["nsst_similarity", "nsst_papcnn", "nsst_abnm_wsml", "nsst_dcscm", "nsct", "csr"]
LEARNED = ["cnn_weight_map", "dscnn", "ifcnn", "pmgi", "fusiondn", "u2fusion", "fusiongan", "ddcgan", "mgmdcgan",
           "tissue_cgan", "unet_fusion", "mcfnet"]


def measure(method: str, shape, mode: str) -> dict:
    out = subprocess.run([sys.executable, "-c", CHILD, method, json.dumps(list(shape)), mode],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def calibrate(method: str) -> dict:
    sizes = [((1, 256, 256), "slices"), ((8, 256, 256), "slices")]
    if method in CLASSICAL:
        sizes.append(((32, 128, 128), "3d"))
    rows = [dict(measure(method, shape, mode), shape=list(shape)) for shape, mode in sizes]
    for r in rows:
        r["work"] = r["delta"] - 4 * r["voxels"]           # minus the float32 output
    small, large = rows[0], rows[1]
    slope = max(0.0, (large["work"] - small["work"]) / (2 * (large["block_voxels"] - small["block_voxels"])))
    fixed = max(0.0, small["work"] - slope * 2 * small["block_voxels"])
    # Every measured row must be covered by factor * 2 * block + fixed: raise the factor where one is not.
    factor = max([slope] + [(r["work"] - fixed) / (2 * r["block_voxels"]) for r in rows])
    return {"method": method, "factor": round(factor, 1), "fixed": int(fixed), "rows": rows}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", nargs="+", default=CLASSICAL + SIGNAL + LEARNED)
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args()
    results = []
    for method in args.methods:
        r = calibrate(method)
        results.append(r)
        print(f"{method:16s} factor {r['factor']:8.1f} B/voxel  fixed {r['fixed'] / 2**20:7.1f} MiB   "
              + "  ".join(f"{r2['shape']}:{r2['delta'] / 2**20:.1f}MiB" for r2 in r["rows"]), flush=True)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump(results, fh, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
