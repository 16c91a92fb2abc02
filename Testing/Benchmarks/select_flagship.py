"""Reproduce the choice of ``max_detail``'s defaults on the TRAINING pairs of the development set.

Every candidate setting of ``max_detail`` is scored on the training split (published metric protocol,
the nine metrics of the tables) and ranked against every other method of the pool files (written by
``medfusion evaluate ../shared/data/aanlib-dev --split train --sets MRI_CT MRI_PET MRI_SPECT --out DIR``;
``max_detail``'s own rows are left out of the pool). The held-back pairs are never read.

Two rounds were run (docs/evaluation.md, "The flagship method"):

- ``--round 1``: the pixel gate (rho = 0), against the 20 methods of ``train-split/results.csv``;
- ``--round 2``: the energy gate (rho > 0) and gain, against those and the six learned methods of
  ``train-split/results-new-methods.csv`` (26 methods);
- ``--round 4`` (the default): the undershoot knee (``floor``) with the threshold around round 2's, against
  the same 26 methods (round 3 changed nothing and is not reproduced here).

Rounds 1 and 2 ran before the knee existed and are run with ``floor=0`` (the hard clip).

    python Testing/Benchmarks/select_flagship.py [--round 2] [--data ../shared/data/aanlib-dev] [--out selection.csv]

Prints, per set and candidate, the candidate's mean rank, the best other method's, the number of the
published CDDFuse row's eight metrics it beats and the share of dark dots (``artefacts.dark_dots``);
writes the same as CSV. The rule: among the candidates that lead every set and beat CDDFuse on at least 5
of 8 on every set, the best mean rank over the three sets; ties go to fewer dark dots.
"""

from __future__ import annotations

import argparse
import csv
import importlib.util
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, ROOT)

import numpy as np  # noqa: E402

from MedFusionLib import evaluation, metrics  # noqa: E402

# Round 1, (sigma, gain, threshold, union, rho = 0): from plain transfer (no threshold, no union) to the
# first defaults (s2, g1, t12, u0.15).
ROUND_1 = [(s, g, t, u, 0.0) for s, g, t, u in [
    (1.0, 1.0, 1e-4, 0.0), (1.5, 1.0, 1e-4, 0.0), (1.0, 0.75, 1e-4, 0.0), (2.0, 0.75, 1e-4, 0.0),
    (1.5, 1.0, 2 / 255, 0.0), (2.0, 1.0, 2 / 255, 0.0), (1.5, 1.0, 4 / 255, 0.0),
    (2.0, 1.0, 2 / 255, 0.3), (2.0, 1.0, 4 / 255, 0.2), (2.0, 1.0, 10 / 255, 0.1), (2.0, 1.0, 12 / 255, 0.15),
    (2.0, 1.0, 4 / 255, 0.3), (2.0, 1.0, 6 / 255, 0.5)]]
# Round 2, sigma 2 (sigma, gain, threshold, union, rho): the first defaults, then the energy gate with the
# gain, threshold and union around them (t 0.047 is 12/255).
ROUND_2 = [(2.0, g, t, u, r) for g, t, u, r in [
    (1.0, 0.047, 0.15, 0.0), (1.0, 0.047, 0.15, 1.0), (1.0, 0.047, 0.15, 1.5), (1.25, 0.047, 0.15, 1.0),
    (1.25, 0.047, 0.15, 1.5), (1.5, 0.047, 0.15, 0.8), (1.5, 0.047, 0.15, 1.0), (1.5, 0.047, 0.15, 1.25),
    (1.5, 0.047, 0.15, 1.5), (1.75, 0.047, 0.15, 1.0), (2.0, 0.047, 0.12, 1.0), (1.5, 0.047, 0.18, 1.0),
    (1.5, 0.04, 0.15, 1.0), (1.5, 0.055, 0.15, 1.0), (1.75, 0.055, 0.15, 1.0), (1.25, 0.03, 0.15, 1.0),
    (1.25, 0.03, 0.1, 1.0), (1.5, 0.03, 0.1, 1.0), (1.25, 0.02, 0.2, 1.0)]]
# Round 4, sigma 2, rho 1 (gain, threshold, union, floor): round 2's defaults with the knee, the threshold
# 10-12 grey levels, the gain 1.5-2 and the union 0.12-0.2 around them.
ROUND_4 = [(2.0, g, t, u, 1.0, f) for g, t, u, f in [
    (1.75, 0.047, 0.15, 0.0), (1.75, 0.047, 0.15, 0.3), (1.75, 0.047, 0.15, 0.4), (1.75, 0.047, 0.15, 0.5),
    (1.75, 0.047, 0.15, 0.6), (1.75, 0.047, 0.15, 0.7), (1.75, 0.04, 0.15, 0.5), (1.75, 0.04, 0.15, 0.6),
    (1.75, 0.04, 0.15, 0.7), (1.75, 0.043, 0.15, 0.5), (1.75, 0.043, 0.15, 0.6), (2.0, 0.047, 0.15, 0.5),
    (2.0, 0.04, 0.15, 0.5), (2.0, 0.055, 0.15, 0.5), (2.0, 0.047, 0.12, 0.5), (1.5, 0.047, 0.15, 0.5),
    (1.75, 0.047, 0.2, 0.5), (1.75, 0.04, 0.2, 0.5)]]
TRAIN = os.path.join(ROOT, "docs", "evaluation", "train-split")


def _docs():
    spec = importlib.util.spec_from_file_location("update_docs", os.path.join(ROOT, "Testing", "update_docs.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _artefacts():
    spec = importlib.util.spec_from_file_location("artefacts", os.path.join(ROOT, "Testing", "Benchmarks", "artefacts.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _choose(rows, sets):
    """The rule of the module docstring: the best mean rank among the candidates that lead every set and
    beat CDDFuse on at least 5 of 8 on each; ties go to fewer dark dots. None when no candidate qualifies."""
    by_candidate = {}
    for row in rows:
        by_candidate.setdefault(row["candidate"], {})[row["set"]] = row
    eligible = [(sum(r[s]["rank"] for s in sets) / len(sets), sum(r[s]["dark_dots"] for s in sets), name)
                for name, r in by_candidate.items()
                if all(r[s]["rank"] < r[s]["best_other_rank"] and int(r[s]["beats_cddfuse"].split("/")[0]) >= 5
                       for s in sets)]
    return min(eligible)[2] if eligible else None


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=os.path.join(ROOT, "..", "shared", "data", "aanlib-dev"))
    parser.add_argument("--round", type=int, choices=(1, 2, 4), default=4)
    parser.add_argument("--pool", nargs="+", default=None, help="CSV files of the other methods' means")
    parser.add_argument("--out", default=None, help="CSV of the candidates' ranks")
    args = parser.parse_args(argv)
    docs = _docs()
    artefacts = _artefacts()
    pool_files = args.pool or [os.path.join(TRAIN, name) for name in
                               (["results.csv"] if args.round == 1 else ["results.csv", "results-new-methods.csv"])]
    pool_rows = []
    for path in pool_files:
        with open(path, encoding="utf-8") as fh:
            pool_rows += [r for r in csv.DictReader(fh) if r["method"] != "max_detail"]
    pool = docs._by_set(pool_rows)
    sets = list(docs.RANK_SETS)
    grid = {1: [c + (0.0,) for c in ROUND_1], 2: [c + (0.0,) for c in ROUND_2], 4: ROUND_4}[args.round]
    params = {f"max_detail s{s:g} g{g:g} t{t * 255:.0f} u{u:g} r{r:g}" + (f" f{f:g}" if args.round == 4 else ""):
              dict(sigma=s, gain=g, threshold=t, union=u, rho=r, floor=f)
              for s, g, t, u, r, f in grid}
    pairs = {s.name: [(metrics.protocol_image(evaluation.read_image(a)), metrics.protocol_image(evaluation.read_image(b)))
                      for _, a, b in evaluation.split_pairs(s, "train")]
             for s in evaluation.find_pairs(args.data, sets)}
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
            dots = float(np.mean([artefacts.dark_dots(evaluation.fuse_protocol(a, b, "max_detail", **p), a, b)
                                  for a, b in pairs[set_name]]))
            rows.append({"set": set_name, "candidate": label, "rank": round(ranks[label], 3),
                         "best_other": best_other, "best_other_rank": round(ranks[best_other], 3),
                         "beats_cddfuse": f"{cdd}/8", "dark_dots": round(dots, 5),
                         **{m: row[m] for m in docs.README_METRICS}})
            print(f"{set_name:10s} {label:36s} rank {ranks[label]:.2f}  best other {best_other} "
                  f"{ranks[best_other]:.2f}  CDDFuse {cdd}/8  dark dots {100 * dots:.2f} %", flush=True)
    chosen = _choose(rows, sets)
    print(f"chosen: {chosen}")
    if args.out:
        evaluation._write_csv(args.out, list(rows[0]), rows)      # the evaluation's atomic CSV writer
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
