"""Benchmark cohorts on Dask: studies per minute with 1 and 2 workers, Dask's overhead per study.

Usage (from the repository root, under the shared lock so nothing else runs):

    flock /tmp/medfusion-heavy.lock python Testing/Benchmarks/cohort_bench.py [--studies 32] [--learned-studies N]
        [--shape 128 256 256] [--classical laplacian] [--learned ifcnn] [--workers 1 2] [--json out.json]
    python Testing/Benchmarks/cohort_bench.py --size-only     # time one study of each method and stop

A cohort of synthetic studies is written to a temporary folder: each study is a pair of float32 NRRD volumes
of ``--shape`` (the head phantom of :mod:`MedFusionLib.sampledata`, MRI and PET, with seeded noise so that
no two studies are alike). For each method:

- *sequential*: :func:`MedFusionLib.cohort.run_study` called for every study one after the other in this
  process (the work of a task without Dask: reading, fusing, writing, hashing the output, the record);
- *Dask, W workers*: :func:`MedFusionLib.cohort.fuse_cohort` on a ``LocalCluster`` of W worker processes
  set up as ``medfusion cohort --workers W`` sets it up (cores shared out between the workers' threads),
  with the cluster's start timed apart from the cohort (a fresh output folder each time, nothing skipped).

Dask's overhead per study is (cohort wall time with 1 worker - sequential wall time) / studies: what the
scheduler, task serialisation, the results table and the workers' separate imports and caches cost.
Figures recorded in docs/benchmarks.md ("Cohorts").
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import tempfile
import time

import numpy as np


def write_cohort(folder: str, n: int, shape, log) -> str:
    """``n`` studies of two float32 NRRD volumes each and their manifest; returns the manifest's path."""
    from MedFusionLib import bridge, sampledata

    start = time.perf_counter()
    head = sampledata.head_phantom(tuple(shape))
    mri, pet = head["mri"].astype(np.float32), head["pet"].astype(np.float32)
    data = os.path.join(folder, "data")
    os.makedirs(data, exist_ok=True)
    lines = ["study,inputs"]
    for i in range(n):
        rng = np.random.default_rng(i)
        for name, base in (("mri", mri), ("pet", pet)):
            noisy = base + rng.normal(0.0, 0.02 * float(base.std()) + 1e-6, base.shape).astype(np.float32)
            node = bridge.node_from_array(bridge.new_scene(), noisy, name)
            bridge.save_volume(node, os.path.join(data, f"s{i:03d}_{name}.nrrd"))
        lines.append(f"s{i:03d},data/s{i:03d}_mri.nrrd;data/s{i:03d}_pet.nrrd")
    manifest = os.path.join(folder, "manifest.csv")
    with open(manifest, "w") as fh:
        fh.write("\n".join(lines) + "\n")
    log(f"wrote {n} studies of 2 x {'x'.join(map(str, shape))} float32 in {time.perf_counter() - start:.0f} s")
    return manifest


def manifest_subset(manifest: str, n: int, name: str) -> str:
    """A manifest of the first ``n`` studies of ``manifest``, beside it."""
    with open(manifest) as fh:
        lines = fh.read().splitlines()
    path = os.path.join(os.path.dirname(manifest), name)
    with open(path, "w") as fh:
        fh.write("\n".join(lines[: n + 1]) + "\n")
    return path


def sequential(manifest: str, out: str, method: str, n_limit=None):
    """run_study for every study in this process; returns (wall seconds, per-study seconds)."""
    from MedFusionLib.cohort import STATE_FOLDER, job_key, run_study
    from MedFusionLib.manifest import read_manifest

    shutil.rmtree(out, ignore_errors=True)
    studies = read_manifest(manifest, out, method)[:n_limit]
    state = os.path.join(out, STATE_FOLDER)
    os.makedirs(state)
    start = time.perf_counter()
    rows = [run_study(s, state, job_key(s)) for s in studies]
    wall = time.perf_counter() - start
    bad = [r for r in rows if r["status"] != "done"]
    if bad:
        raise SystemExit(f"sequential {method}: {bad[0]['study']} {bad[0]['status']}: {bad[0]['error']}")
    return wall, [float(r["seconds"]) for r in rows]


def on_dask(manifest: str, out: str, method: str, workers: int):
    """fuse_cohort on a fresh LocalCluster of ``workers`` processes; returns a dict of timings."""
    from distributed import Client

    from MedFusionLib.cohort import _local_cluster, fuse_cohort

    shutil.rmtree(out, ignore_errors=True)
    start = time.perf_counter()
    cluster = _local_cluster(workers, {"dashboard_address": ":0"})
    client = Client(cluster)
    client.wait_for_workers(workers)
    startup = time.perf_counter() - start
    try:
        start = time.perf_counter()
        result = fuse_cohort(manifest, out, method, client=client, progress=False)
        wall = time.perf_counter() - start
    finally:
        client.close()
        cluster.close()
    bad = [r for r in result.rows if r["status"] != "done"]
    if bad:
        raise SystemExit(f"dask {method} x{workers}: {bad[0]['study']} {bad[0]['status']}: {bad[0]['error']}")
    task = [float(r["seconds"]) for r in result.rows]
    return {"startup_s": round(startup, 2), "wall_s": round(wall, 2), "studies": len(result.rows),
            "studies_per_min": round(60.0 * len(result.rows) / wall, 2),
            "task_fuse_s_mean": round(float(np.mean(task)), 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--studies", type=int, default=32)
    parser.add_argument("--learned-studies", type=int, help="studies of the learned method (default --studies)")
    parser.add_argument("--shape", type=int, nargs=3, default=(128, 256, 256), metavar=("K", "J", "I"))
    parser.add_argument("--classical", default="laplacian")
    parser.add_argument("--learned", default="ifcnn")
    parser.add_argument("--workers", type=int, nargs="+", default=(1, 2))
    parser.add_argument("--size-only", action="store_true", help="time one study of each method and stop")
    parser.add_argument("--keep", help="folder for the cohort (default: a temporary one, removed)")
    parser.add_argument("--json", help="write the figures here")
    args = parser.parse_args()

    from MedFusionLib import runtime

    runtime.tune_allocator()             # as the command line (and so each cohort worker's fuse) would
    log = lambda message: print(message, flush=True)   # noqa: E731
    folder = args.keep or tempfile.mkdtemp(prefix="medfusion-cohort-bench-")
    import torch

    figures = {"machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "numpy": np.__version__,
                           "torch": torch.__version__, "torch_threads": torch.get_num_threads()},
               "shape": list(args.shape), "methods": {}}
    try:
        import dask
        import distributed

        figures["machine"].update(dask=dask.__version__, distributed=distributed.__version__)
        n_learned = args.learned_studies or args.studies
        manifest = write_cohort(folder, 1 if args.size_only else max(args.studies, n_learned), args.shape, log)
        for method, n in ((args.classical, args.studies), (args.learned, n_learned)):
            if args.size_only:
                sequential(manifest, os.path.join(folder, "warm"), method)          # imports, weights
                wall, _ = sequential(manifest, os.path.join(folder, "size"), method)
                log(f"{method}: one study in {wall:.1f} s")
                figures["methods"][method] = {"one_study_s": round(wall, 2)}
                continue
            subset = manifest_subset(manifest, n, f"manifest_{method}.csv")
            sequential(subset, os.path.join(folder, "warm"), method, n_limit=1)    # imports, weights
            wall, per_study = sequential(subset, os.path.join(folder, "seq"), method)
            entry = {"studies": n, "sequential": {"wall_s": round(wall, 2),
                                                  "studies_per_min": round(60.0 * n / wall, 2),
                                                  "study_s_mean": round(float(np.mean(per_study)), 3)}}
            log(f"{method}: sequential {n} studies in {wall:.1f} s ({60 * n / wall:.2f} / min)")
            for w in args.workers:
                entry[f"dask_{w}"] = on_dask(subset, os.path.join(folder, f"dask{w}"), method, w)
                log(f"{method}: dask {w} worker(s) {entry[f'dask_{w}']}")
            if 1 in args.workers:
                entry["dask_overhead_per_study_s"] = round((entry["dask_1"]["wall_s"] - wall) / n, 3)
            figures["methods"][method] = entry
    finally:
        if not args.keep:
            shutil.rmtree(folder, ignore_errors=True)
    print(json.dumps(figures, indent=1))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(figures, fh, indent=1)


if __name__ == "__main__":
    main()
