"""Check that MedFusion reproduces the baseline rows of ../shared/docs/fusion-metrics.md.

The team's metric document lists, for the dev set (`aanlib-dev`), the nine published metrics of average
fusion, pixel max and a 3-level db2 DWT under the published convention. This script fuses every pair of
MRI_CT, MRI_PET and MRI_SPECT with ``average``, ``max`` and ``dwt`` (their defaults are those baselines),
scores them with the protocol of :mod:`MedFusionLib.evaluation`, and compares each set mean with the
document's value: a match is within 1e-3 relative (the foundation issue's criterion) or within half a
unit of the printed value's last digit.
It exits 1 and lists the mismatches if any; it needs ../shared (not in CI, which has no dev data of its own
to fuse: the unit tests check the metrics against hand-computed values instead).

    python Testing/Benchmarks/verify_published_baselines.py [--data ../shared/data/aanlib-dev]
        [--doc ../shared/docs/fusion-metrics.md] [--results docs/evaluation/all-pairs/results.csv]

``--results`` compares an existing ``medfusion evaluate`` results.csv instead of fusing again.
"""

from __future__ import annotations

import argparse
import csv
import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
METRICS = ("EN", "SD", "SF", "AG", "MI", "SCD", "VIF", "Qabf", "SSIM")
COLUMNS = {"average": 1, "max": 2, "dwt": 3}        # columns of the document's baseline table


def published_baselines(doc_path: str):
    """{(set, method): [(value, half_unit), ...]} from the document's 'Baselines on the dev set' table."""
    with open(doc_path, encoding="utf-8") as fh:
        text = fh.read()
    section = text.split("## Baselines on the dev set", 1)[1].split("\n## ", 1)[0]
    table = {}
    for line in section.splitlines():
        match = re.match(r"\|\s*(MRI_\w+)\s*\(\d+\)\s*\|(.*)\|\s*$", line)
        if not match:
            continue
        cells = [c.strip() for c in match.group(2).split("|")]
        for method, column in COLUMNS.items():
            values = []
            for item in cells[column - 1].split("/"):
                item = item.strip()
                decimals = len(item.split(".")[1]) if "." in item else 0
                values.append((float(item), 0.5 * 10 ** -decimals))
            table[(match.group(1), method)] = values
    if not table:
        raise SystemExit(f"no baseline table found in {doc_path}")
    return table


def our_means(data_root: str, results_csv: str = None):
    if results_csv:
        with open(results_csv, encoding="utf-8") as fh:
            rows = list(csv.DictReader(fh))
    else:
        sys.path.insert(0, ROOT)
        from MedFusionLib.evaluation import evaluate_folder

        result = evaluate_folder(data_root, list(COLUMNS), sets=["MRI_CT", "MRI_PET", "MRI_SPECT"], show_progress=True)
        rows = result.means()
    return {(r["set"], r["method"]): {m: float(r[m]) for m in METRICS} for r in rows}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=os.path.join(ROOT, "..", "shared", "data", "aanlib-dev"))
    parser.add_argument("--doc", default=os.path.join(ROOT, "..", "shared", "docs", "fusion-metrics.md"))
    parser.add_argument("--results", help="an existing results.csv of `medfusion evaluate` to check instead")
    args = parser.parse_args()
    published = published_baselines(args.doc)
    ours = our_means(args.data, args.results)
    mismatches, checked, worst = [], 0, 0.0
    for (set_name, method), values in sorted(published.items()):
        mine = ours.get((set_name, method))
        if mine is None:
            mismatches.append(f"{set_name} {method}: not evaluated")
            continue
        for metric, (value, half_unit) in zip(METRICS, values):
            checked += 1
            diff = abs(mine[metric] - value)
            worst = max(worst, diff / abs(value)) if value else worst
            if diff > half_unit + 1e-12 and diff > 1e-3 * abs(value):
                mismatches.append(f"{set_name} {method} {metric}: ours {mine[metric]:.4f}, published {value}")
    print(f"{checked} published values checked, {len(mismatches)} mismatches; largest relative difference "
          f"{worst:.1e}")
    for line in mismatches:
        print("  " + line)
    return 1 if mismatches else 0


if __name__ == "__main__":
    sys.exit(main())
