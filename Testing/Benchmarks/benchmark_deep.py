"""Benchmark the learned methods' inference on this machine (CPU, and the GPU when there is one).

Usage (from the repository root, under the shared lock so nothing else runs):

    flock /tmp/medfusion-heavy.lock python Testing/Benchmarks/benchmark_deep.py [--quick] [--device cpu|cuda] [--json out.json]

Figures recorded in docs/benchmarks.md. Timings are the whole ``MedFusionLib.fuse`` call (normalisation and
weight loading from the cache included; the first call, which loads the weights, is a warm-up): the median
seconds per 256 x 256 pair over repeated runs, and slices per second fusing two 200 x 256 x 256 float32
volumes slice-wise (slices batched by the pipeline, mini-batched through the network).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

import numpy as np

from _timing import median_seconds

LEARNED = ["cnn_weight_map", "dscnn", "ifcnn", "pmgi", "fusiondn", "u2fusion", "fusiongan", "ddcgan", "mgmdcgan",
           "tissue_cgan", "unet_fusion", "mcfnet"]




def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats and a 40-slice volume")
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--methods", nargs="+", default=LEARNED)
    parser.add_argument("--json", help="write the figures here")
    args = parser.parse_args()

    import torch

    import MedFusionLib as mf

    rng = np.random.default_rng(0)
    from MedFusionLib import sampledata

    phantom = sampledata.head_phantom_slice(256)
    a2, b2 = phantom["mri"].astype(np.float32), phantom["pet"].astype(np.float32)
    depth = 40 if args.quick else 200
    a3 = np.repeat(a2[None], depth, axis=0) + rng.normal(0, 1, (depth, 256, 256)).astype(np.float32)
    b3 = np.repeat(b2[None], depth, axis=0)
    report = {"machine": f"{platform.system()} {platform.machine()}, {os.cpu_count()} CPU threads, "
                         f"torch {torch.__version__} ({torch.get_num_threads()} threads)",
              "device": args.device, "volume_shape": [depth, 256, 256], "methods": {}}
    if args.device == "cuda":
        report["gpu"] = torch.cuda.get_device_name(0)
    print(report["machine"], report.get("gpu", ""), flush=True)
    for method in args.methods:
        pair = median_seconds(lambda: mf.fuse([a2, b2], method=method, device=args.device), 3 if args.quick else 10)
        start = time.perf_counter()
        mf.fuse([a3, b3], method=method, mode="slices", device=args.device)
        volume = time.perf_counter() - start
        report["methods"][method] = {"pair_256_s": pair, "volume_s": volume, "slices_per_s": depth / volume}
        print(f"{method:16s} pair {pair:.3f} s   volume {volume:.1f} s   {depth / volume:.1f} slices/s", flush=True)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump(report, fh, indent=2)


if __name__ == "__main__":
    main()
