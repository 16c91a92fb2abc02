"""Benchmark the classical methods, the metrics and the memory of slice-wise fusion on this machine.

Usage (from the repository root, nothing else running):

    python Testing/Benchmarks/benchmark_classical.py [--quick] [--json out.json] [--only methods] [--methods max max_detail]

Figures recorded in docs/benchmarks.md. Timings are the median of repeated runs of the whole
``MedFusionLib.fuse`` call (normalisation included) on random float32 data; the memory figure is the peak
resident set size of a fresh process fusing two 512^3 float32 volumes slice-wise, minus and including the
inputs.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys

import numpy as np

from _timing import median_seconds

CLASSICAL = ["average", "weighted_average", "max", "min", "pca", "dwt", "laplacian", "guided_filter", "max_detail"]


def bench_methods(quick: bool, methods=CLASSICAL) -> dict:
    import MedFusionLib as mf

    rng = np.random.default_rng(0)
    a2, b2 = rng.random((256, 256), dtype=np.float32), rng.random((256, 256), dtype=np.float32)
    n = 128 if quick else 256
    a3, b3 = rng.random((n, 256, 256), dtype=np.float32), rng.random((n, 256, 256), dtype=np.float32)
    rows = {}
    for method in methods:
        row = {"slice_pair_s": median_seconds(lambda: mf.fuse([a2, b2], method=method), 3 if quick else 10)}
        for mode in ("slices", "3d"):
            row[f"volume_{mode}_s"] = median_seconds(lambda: mf.fuse([a3, b3], method=method, mode=mode),
                                                      1 if quick else 3)
        rows[method] = row
        print(f"{method:18s} " + "  ".join(f"{k}={v:.3f}" for k, v in row.items()), flush=True)
    return {"volume_shape": [n, 256, 256], "methods": rows}


def bench_metrics(quick: bool) -> dict:
    from MedFusionLib import metrics, sampledata
    from MedFusionLib.evaluation import fuse_protocol

    rng = np.random.default_rng(1)
    noise = [np.round(rng.random((256, 256)) * 255) for _ in range(2)]
    phantom = sampledata.head_phantom_slice(256)

    def to8(x):
        return np.round(255 * (x - x.min()) / (x.max() - x.min()))

    pairs = {"noise": noise, "phantom MRI/PET": [to8(phantom["mri"]), to8(phantom["pet"])]}
    report = {}
    for label, (a, b) in pairs.items():
        f = fuse_protocol(a, b, "laplacian")
        seconds = median_seconds(lambda: metrics.evaluate_all(f, [a, b]), 3 if quick else 10)
        per_metric = {name: median_seconds(lambda: metrics.evaluate_all(f, [a, b], metrics=[name]), 3)
                      for name in metrics.METRICS}
        print(f"metrics, full set per 256x256 pair ({label}): {seconds:.3f} s", flush=True)
        report[label] = {"all_metrics_per_pair_s": seconds, "per_metric_s": per_metric}
    return report


_MEMORY_CHILD = r"""
import resource, sys, numpy as np, MedFusionLib as mf
n = int(sys.argv[1]); method = sys.argv[2]
rng = np.random.default_rng(0)
a = np.empty((n, n, n), np.float32); b = np.empty((n, n, n), np.float32)
for k in range(n):  # fill slice by slice so that making the inputs does not raise the high-water mark
    a[k] = rng.random((n, n), dtype=np.float32); b[k] = rng.random((n, n), dtype=np.float32)
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
out = mf.fuse([a, b], method=method, mode="slices")
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(base * 1024, peak * 1024, a.nbytes + b.nbytes)
"""


def bench_memory(quick: bool, methods=("average", "laplacian", "guided_filter")) -> dict:
    n = 256 if quick else 512
    rows = {}
    for method in methods:
        out = subprocess.run([sys.executable, "-c", _MEMORY_CHILD, str(n), method], capture_output=True,
                             text=True, check=True)
        base, peak, inputs = (int(v) for v in out.stdout.split())
        rows[method] = {"inputs_bytes": inputs, "rss_after_inputs_bytes": base, "peak_rss_bytes": peak,
                        "peak_over_inputs_ratio": peak / inputs, "extra_over_inputs_bytes": peak - base}
        print(f"memory {method}: inputs {inputs / 2**30:.2f} GiB, peak RSS {peak / 2**30:.2f} GiB "
              f"({peak / inputs:.2f}x inputs), extra {(peak - base) / 2**30:.2f} GiB", flush=True)
    return {"volume": [n, n, n], "methods": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smaller volumes, fewer repeats")
    parser.add_argument("--json", help="write the figures here")
    parser.add_argument("--only", choices=("methods", "metrics", "memory"), action="append",
                        help="run only these parts (repeatable; default all)")
    parser.add_argument("--methods", nargs="+", choices=CLASSICAL, default=CLASSICAL,
                        help="time only these methods (default: every classical method)")
    args = parser.parse_args()
    import torch

    parts = args.only or ["methods", "metrics", "memory"]
    report = {"machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                          "numpy": np.__version__, "torch_threads": torch.get_num_threads(),
                          "platform": platform.platform()}}
    # Memory first: a child process starts with its parent's peak RSS (Linux keeps ru_maxrss across
    # fork and exec), so the children must run before this process has held the benchmark volumes.
    if "memory" in parts:
        report["memory"] = bench_memory(args.quick)
    if "methods" in parts:
        report["methods"] = bench_methods(args.quick, args.methods)
    if "metrics" in parts:
        report["metrics"] = bench_metrics(args.quick)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump(report, fh, indent=2)


if __name__ == "__main__":
    main()
