"""Reproduce the choice of ``max_detail``'s defaults on the TRAINING pairs of the development set.

Every candidate setting of ``max_detail`` is scored on the training split (published metric protocol,
the nine metrics of the tables) and ranked against every method of
``docs/evaluation/train-split/results.csv`` (written by
``medfusion evaluate ../shared/data/aanlib-dev --split train --sets MRI_CT MRI_PET MRI_SPECT --out DIR``,
all methods registered at the time of the choice). The held-back pairs are never read.

    python Testing/Benchmarks/select_flagship.py [--data ../shared/data/aanlib-dev] [--out selection.csv]

Prints, per set and candidate, the candidate's mean rank, the best other method's and the number of
the published CDDFuse row's eight metrics it beats; writes the same as CSV.
"""

from __future__ import annotations

import argparse
import csv
import importlib.util
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, ROOT)

from MedFusionLib import evaluation  # noqa: E402

# (sigma, gain, threshold, union): from plain transfer (no threshold, no union) to the defaults.
CANDIDATES = [
    (1.0, 1.0, 1e-4, 0.0), (1.5, 1.0, 1e-4, 0.0), (1.0, 0.75, 1e-4, 0.0), (2.0, 0.75, 1e-4, 0.0),
    (1.5, 1.0, 2 / 255, 0.0), (2.0, 1.0, 2 / 255, 0.0), (1.5, 1.0, 4 / 255, 0.0),
    (2.0, 1.0, 2 / 255, 0.3), (2.0, 1.0, 4 / 255, 0.2), (2.0, 1.0, 10 / 255, 0.1), (2.0, 1.0, 12 / 255, 0.15),
    (2.0, 1.0, 4 / 255, 0.3), (2.0, 1.0, 6 / 255, 0.5),
]


def _docs():
    spec = importlib.util.spec_from_file_location("update_docs", os.path.join(ROOT, "Testing", "update_docs.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=os.path.join(ROOT, "..", "shared", "data", "aanlib-dev"))
    parser.add_argument("--pool", default=os.path.join(ROOT, "docs", "evaluation", "train-split", "results.csv"))
    parser.add_argument("--out", default=None, help="CSV of the candidates' ranks")
    args = parser.parse_args(argv)
    docs = _docs()
    with open(args.pool, encoding="utf-8") as fh:
        pool = docs._by_set(list(csv.DictReader(fh)))
    sets = list(docs.RANK_SETS)
    params = {f"max_detail s{s:g} g{g:g} t{t * 255:.0f} u{u:g}": dict(sigma=s, gain=g, threshold=t, union=u)
              for s, g, t, u in CANDIDATES}
    rows = []
    for label, p in params.items():
        result = evaluation.evaluate_folder(args.data, ["max_detail"], params={"max_detail": p}, sets=sets,
                                            split="train", show_progress=False)
        for mean in result.means():
            set_name = mean["set"]
            row = {k: str(v) for k, v in mean.items()}
            methods = dict(pool[set_name])
            methods[label] = row
            ranks = docs.mean_ranks(methods)
            best_other = min((n for n in ranks if n != label), key=ranks.get)
            cdd = len(docs.wins_against(row, docs.CDDFUSE[set_name], docs.PUBLISHED_METRICS))
            rows.append({"set": set_name, "candidate": label, "rank": round(ranks[label], 3),
                         "best_other": best_other, "best_other_rank": round(ranks[best_other], 3),
                         "beats_cddfuse": f"{cdd}/8", **{m: row[m] for m in docs.README_METRICS}})
            print(f"{set_name:10s} {label:32s} rank {ranks[label]:.2f}  best other {best_other} "
                  f"{ranks[best_other]:.2f}  CDDFuse {cdd}/8")
    if args.out:
        evaluation._write_csv(args.out, list(rows[0]), rows)      # the evaluation's atomic CSV writer
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
