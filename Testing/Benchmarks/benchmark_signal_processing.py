"""Benchmark the signal-processing family: NSST/NSCT speed, CSR's solver against SPORCO, method timings.

Usage (from the repository root, under the shared lock, nothing else heavy running):

    flock /tmp/medfusion-heavy.lock python Testing/Benchmarks/benchmark_signal_processing.py \
        [--quick] [--data ../shared/data/aanlib-dev] [--json out.json] [--only transforms|csr|methods]
        [--tune-allocator]

Parts
-----
transforms
    NSST (8, 8, 16, 16 directions) and NSCT (4, 8, 8, 16) decomposition + reconstruction of one
    256 x 256 float32 slice (median of repeats) and of a 256 x 256 x 200 volume slice-wise, in batches of
    16 slices (the whole volume's bands would need 49 x its size).
csr
    The CBPDN solver of the CSR method (:func:`MedFusionLib.transforms._csc.cbpdn`, torch, float32)
    against SPORCO's ``ConvBPDN`` (the reference implementation, PyPI ``sporco``) on the same 256 x 256
    detail layer (Tikhonov high-pass, lambda 5, of a dev-set MRI slice when --data is given, else of
    scikit-image's camera), the shipped 32 x 8 x 8 dictionary, lambda = 0.01, rho0 = 100 lambda + 0.5,
    relative stopping tolerance 1e-3, at most 500 iterations (the CSR authors' settings), SPORCO's
    defaults otherwise (over-relaxation 1.8, residual-balancing rho every iteration). Objective
    1/2||D x - s||^2 + lambda ||x||_1 evaluated by one shared float64 function on each solver's
    returned coefficient maps, and SPORCO's own ObjFun.
    Also the FFTs an iteration cannot avoid (M forward + M inverse), with torch and with FFTW (pyFFTW,
    SPORCO's FFT), against the time per iteration a 10x speed-up would allow.
methods
    Seconds per 256 x 256 pair of every signal-processing method (whole ``MedFusionLib.fuse`` call), and
    ``csr`` on an 8-slice 256 x 256 volume pair.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time

import numpy as np

from _timing import median_seconds

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, ROOT)

METHODS = ["nsst_papcnn", "nsst_abnm_wsml", "nsst_dcscm", "nsst_similarity", "nsct", "csr"]




def bench_transforms(quick: bool) -> dict:
    from MedFusionLib.transforms import nsct_decompose, nsct_reconstruct, nsst_decompose, nsst_reconstruct

    rng = np.random.default_rng(0)
    image = rng.random((256, 256), dtype=np.float32)
    depth = 50 if quick else 200
    volume = rng.random((depth, 256, 256), dtype=np.float32)
    report = {}
    for name, dec, rec, dirs in (("nsst", nsst_decompose, nsst_reconstruct, (8, 8, 16, 16)),
                                 ("nsct", nsct_decompose, nsct_reconstruct, (4, 8, 8, 16))):
        rec(dec(image, dirs))                          # filters cached for 256 x 256
        dec_s = median_seconds(lambda: dec(image, dirs), 3 if quick else 10)
        bands = dec(image, dirs)
        rec_s = median_seconds(lambda: rec(bands), 3 if quick else 10)
        err = float(np.linalg.norm(rec(bands) - image) / np.linalg.norm(image))

        def whole_volume():
            out = np.empty_like(volume)
            for a in range(0, depth, 16):
                out[a:a + 16] = rec(dec(volume[a:a + 16], dirs))
            return out

        start = time.perf_counter()
        out = whole_volume()
        vol_s = time.perf_counter() - start
        vol_err = float(np.linalg.norm(out - volume) / np.linalg.norm(volume))
        report[name] = {"directions": list(dirs), "slice_decompose_s": dec_s, "slice_reconstruct_s": rec_s,
                        "slice_total_s": dec_s + rec_s, "slice_relative_error": err,
                        "volume_shape": [depth, 256, 256], "volume_total_s": vol_s,
                        "volume_relative_error": vol_err}
        print(f"{name}: slice dec {dec_s * 1e3:.1f} ms + rec {rec_s * 1e3:.1f} ms (rel. err {err:.1e}); "
              f"volume {depth}x256x256 {vol_s:.2f} s (rel. err {vol_err:.1e})", flush=True)
    return report


def _csr_image(data_root):
    from MedFusionLib.dictionary_learning import tikhonov_split

    if data_root:
        from MedFusionLib.evaluation import find_pairs, read_image, split_pairs
        from MedFusionLib.metrics import protocol_image

        pair_set = [p for p in find_pairs(data_root) if p.name == "MRI_CT"] or find_pairs(data_root)
        name, path, _ = split_pairs(pair_set[0], "train")[0]
        image = protocol_image(read_image(path)) / 255.0
        source = f"{pair_set[0].name}/{os.path.basename(os.path.dirname(path))}/{os.path.basename(path)}"
    else:
        from skimage import data

        image = data.camera()[::2, ::2] / 255.0
        source = "skimage.data.camera, every 2nd sample"
    image = np.ascontiguousarray(image[:256, :256], dtype=np.float32)
    _, detail = tikhonov_split(image[None], 5.0)
    return detail[0], source


def bench_csr(quick: bool, data_root) -> dict:
    import torch

    from MedFusionLib.families.csr import load_dictionary
    from MedFusionLib.transforms._csc import cbpdn, objective

    filters, _ = load_dictionary()
    s, source = _csr_image(data_root)
    lmbda, tol, max_iter = 0.01, 1e-3, 500
    rho0 = 100 * lmbda + 0.5
    ours_runs = []

    def run_ours():
        ours_runs.append(cbpdn(filters, s, lmbda, rho=rho0, max_iter=max_iter, rel_tol=tol, device="cpu"))

    ours_s = median_seconds(run_ours, 1 if quick else 3)
    ours = ours_runs[-1]
    report = {"image": source, "lambda": lmbda, "rel_stop_tol": tol, "max_iter": max_iter, "rho0": rho0,
              "dictionary": list(filters.shape), "torch_threads": torch.get_num_threads(),
              "ours": {"seconds": ours_s, "iterations": ours.iterations,
                       "objective": float(objective(filters, ours.coefficients[None], s[None], lmbda)[0]),
                       "converged": ours.converged, "final_rho": float(ours.rho[0]),
                       "ms_per_iteration": 1000 * ours_s / ours.iterations}}
    print(f"ours (torch float32): {ours_s:.2f} s, {ours.iterations} iterations, objective "
          f"{report['ours']['objective']:.5f}", flush=True)
    report["fft_floor"] = _fft_floor(filters.shape[0], s.shape, 3 if quick else 20)
    try:
        from sporco.admm import cbpdn as sporco_cbpdn
        import sporco
    except ImportError:
        report["sporco"] = "not installed (pip install sporco)"
        print("sporco not installed; skipped", flush=True)
        return report
    report["sporco_version"] = sporco.__version__
    d_sporco = np.ascontiguousarray(np.moveaxis(filters, 0, -1))          # (8, 8, M)
    for dtype in (np.float32, np.float64):
        opt = sporco_cbpdn.ConvBPDN.Options({"Verbose": False, "MaxMainIter": max_iter, "RelStopTol": tol,
                                              "rho": rho0, "AuxVarObj": False})
        holder = {}

        def run_sporco():
            solver = sporco_cbpdn.ConvBPDN(d_sporco.astype(dtype), s.astype(dtype), lmbda, opt)
            holder["x"] = solver.solve()
            holder["solver"] = solver

        seconds = median_seconds(run_sporco, 1 if quick else 3)          # the statistic used for ours
        its = holder["solver"].getitstat()
        x = np.moveaxis(np.asarray(holder["x"]).reshape(256, 256, -1), -1, 0)
        row = {"seconds": seconds, "iterations": len(its.Iter),
               "objective": float(objective(filters, x[None], s[None], lmbda)[0]),
               "objective_sporco_objfun": float(its.ObjFun[-1]), "final_rho": float(holder["solver"].rho)}
        row["speedup_ours"] = seconds / ours_s
        row["ms_per_iteration"] = 1000 * seconds / row["iterations"]
        # What 10x would need per iteration at SPORCO's iteration count, beside the FFTs alone.
        row["ms_per_iteration_for_10x"] = row["ms_per_iteration"] / 10
        row["objective_ratio_ours_over_sporco"] = report["ours"]["objective"] / row["objective"]
        report[f"sporco_{np.dtype(dtype).name}"] = row
        print(f"sporco ConvBPDN {np.dtype(dtype).name}: {seconds:.2f} s, {row['iterations']} iterations, "
              f"objective {row['objective']:.5f} (its ObjFun {row['objective_sporco_objfun']:.5f}); ours "
              f"{row['speedup_ours']:.1f}x faster, objective ratio {row['objective_ratio_ours_over_sporco']:.5f}",
              flush=True)
    return report


def _fft_floor(n_filters: int, shape, repeats: int) -> dict:
    """Milliseconds of the FFTs one ADMM iteration cannot avoid: M forward and M inverse real 2-D FFTs.

    With torch (what our solver uses) and with FFTW through pyFFTW (what SPORCO uses; installed with it),
    2 threads, FFTW_MEASURE plans. A lower bound on any implementation's time per iteration here.
    """
    import torch

    x = torch.randn(1, n_filters, *shape)
    xf = torch.fft.rfft2(x)
    report = {"maps": n_filters, "shape": list(shape)}
    report["torch_ms"] = 1000 * (median_seconds(lambda: torch.fft.rfft2(x), repeats)
                                 + median_seconds(lambda: torch.fft.irfft2(xf, s=tuple(shape)), repeats))
    try:
        import pyfftw
    except ImportError:
        report["pyfftw_ms"] = None
    else:
        a = pyfftw.empty_aligned(tuple(x.shape), dtype="float32")
        a[:] = x.numpy()
        forward = pyfftw.builders.rfft2(a, threads=2, planner_effort="FFTW_MEASURE")
        b = pyfftw.empty_aligned(tuple(xf.shape), dtype="complex64")
        b[:] = xf.numpy()
        inverse = pyfftw.builders.irfft2(b, s=tuple(shape), threads=2, planner_effort="FFTW_MEASURE")
        report["pyfftw_ms"] = 1000 * (median_seconds(forward, repeats) + median_seconds(inverse, repeats))
    print(f"FFT floor per iteration ({n_filters} forward + {n_filters} inverse {shape}): torch "
          f"{report['torch_ms']:.2f} ms, FFTW {report['pyfftw_ms'] or float('nan'):.2f} ms", flush=True)
    return report


def bench_csr_volume() -> dict:
    """``csr`` on an 8-slice 256 x 256 head-phantom volume pair, slice-wise (several CBPDN batches)."""
    import MedFusionLib as mf
    from MedFusionLib import sampledata

    ph = sampledata.head_phantom((8, 256, 256))
    start = time.perf_counter()
    mf.fuse([ph["mri"], ph["pet"]], method="csr", mode="slices")
    seconds = time.perf_counter() - start
    print(f"csr on an 8 x 256 x 256 volume pair: {seconds:.1f} s ({seconds / 8:.2f} s per slice)", flush=True)
    return {"slices": 8, "seconds": seconds, "seconds_per_slice": seconds / 8}


def bench_methods(quick: bool) -> dict:
    import MedFusionLib as mf
    from MedFusionLib import sampledata

    ph = sampledata.head_phantom_slice(256)
    pair = [ph["mri"], ph["pet"]]
    rows = {}
    for method in METHODS:
        seconds = median_seconds(lambda: mf.fuse(pair, method=method), 1 if quick else 3)
        rows[method] = {"pair_256_s": seconds}
        print(f"{method:16s} {seconds:.2f} s per 256x256 pair", flush=True)
    if not quick:
        rows["csr_volume"] = bench_csr_volume()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--data", help="AANLIB-style folder for the CSR image (default: scikit-image camera)")
    parser.add_argument("--json", help="write the figures here")
    parser.add_argument("--only", choices=("transforms", "csr", "methods"), action="append")
    parser.add_argument("--tune-allocator", action="store_true",
                        help="apply MedFusionLib.runtime.tune_allocator() first (as the command line does)")
    args = parser.parse_args()
    import torch

    tuned = False
    if args.tune_allocator:
        from MedFusionLib import runtime

        tuned = runtime.tune_allocator()

    parts = args.only or ["transforms", "csr", "methods"]
    report = {"machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "numpy": np.__version__,
                          "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
                          "processor": platform.processor() or platform.machine(),
                          "allocator_tuned": tuned}}
    if "transforms" in parts:
        report["transforms"] = bench_transforms(args.quick)
    if "csr" in parts:
        report["csr"] = bench_csr(args.quick, args.data)
    if "methods" in parts:
        report["methods"] = bench_methods(args.quick)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump(report, fh, indent=1)


if __name__ == "__main__":
    main()
