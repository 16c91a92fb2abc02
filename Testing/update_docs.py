"""Regenerate the generated parts of the docs:

- README.md: the method table (from the registry) and the results table (from
  docs/evaluation/held-out/results.csv, written by
  `medfusion evaluate ../shared/data/aanlib-dev --split held-out --out docs/evaluation/held-out`);
- docs/models.md: the model cards (from the metadata shipped beside each weight file,
  MedFusionLib/weights/*.json) and their held-out evaluation;
- docs/evaluation.md: every method on the held-back pairs (the same results.csv), the learned methods
  counted against average fusion and the published rows;
- docs/signal-processing.md: its per-set held-out tables (from
  docs/evaluation/signal-processing-held-out/results.csv, written by the command quoted there).

    python Testing/update_docs.py

Testing/Python/test_docs.py fails when a generated block is not what this script writes.
"""

from __future__ import annotations

import csv
import json
import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
README = os.path.join(ROOT, "README.md")
MODELS = os.path.join(ROOT, "docs", "models.md")
EVALUATION = os.path.join(ROOT, "docs", "evaluation.md")
WEIGHTS = os.path.join(ROOT, "MedFusionLib", "weights")
#: The learned methods, and the feature network their losses use, in the order of the issue.
LEARNED = ("cnn_weight_map", "dscnn", "ifcnn", "pmgi", "fusiondn", "u2fusion", "fusiongan", "ddcgan", "mgmdcgan",
           "tissue_cgan", "unet_fusion", "mcfnet")
#: Every shipped network with a model card: the learned methods, the feature network, and the Siamese
#: band-feature network of the signal-processing method nsst_similarity.
MODEL_FILES = ("feature_net",) + LEARNED + ("nsst_similarity",)
RESULTS = os.path.join(ROOT, "docs", "evaluation", "held-out", "results.csv")
SIGNAL_PROCESSING = os.path.join(ROOT, "docs", "signal-processing.md")
SP_RESULTS = os.path.join(ROOT, "docs", "evaluation", "signal-processing-held-out", "results.csv")
LEARNED_RESULTS = RESULTS      # every method on the held-back pairs
# The metrics of the published tables (../shared/docs/fusion-metrics.md), in their order.
README_METRICS = ("EN", "SD", "SF", "AG", "MI", "SCD", "VIF", "Qabf", "SSIM")
# Published rows on the same dev pairs (CDDFuse paper, CVPR 2023, Table 5, as quoted in
# ../shared/docs/fusion-metrics.md): EN / SD / SF / MI / SCD / VIF / Qabf / SSIM, higher is better.
PUBLISHED_METRICS = ("EN", "SD", "SF", "MI", "SCD", "VIF", "Qabf", "SSIM")
PUBLISHED = {
    "U2Fusion": {"MRI_CT": (4.88, 52.98, 22.54, 2.08, 0.75, 0.37, 0.46, 0.49),
                 "MRI_PET": (3.73, 57.07, 23.27, 1.69, 1.27, 0.40, 0.49, 1.39),
                 "MRI_SPECT": (3.47, 52.97, 19.58, 1.68, 1.28, 0.48, 0.57, 1.41)},
    "EMFusion": {"MRI_CT": (4.76, 72.76, 22.56, 2.34, 1.32, 0.56, 0.49, 1.31),
                 "MRI_PET": (4.21, 56.80, 26.01, 1.82, 1.31, 0.62, 0.67, 1.47),
                 "MRI_SPECT": (3.74, 51.93, 17.14, 1.88, 1.12, 0.71, 0.74, 1.49)},
}


def methods_table() -> str:
    sys.path.insert(0, ROOT)
    from MedFusionLib.cli import methods_markdown

    return methods_markdown()


def results_table(path: str = RESULTS) -> str:
    if not os.path.exists(path):
        return "_Run `medfusion evaluate` (see docs/evaluation.md) to fill this table._"
    with open(path, encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    head = ["set", "method"] + list(README_METRICS) + ["s/pair"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    footnotes = []
    for row in rows:
        values = [_cell(row, m) for m in README_METRICS] + [f"{float(row['seconds']):.3f}"]
        lines.append("| " + " | ".join([row["set"], f"`{row['method']}`"] + values) + " |")
        if row.get("undefined"):
            footnotes.append(f"{row['set']} `{row['method']}`: {row['undefined']}")
    if footnotes:
        lines += ["", "\\* mean over the pairs where the metric is defined; undefined on (metric:pairs) "
                  + "; ".join(footnotes) + "."]
    return "\n".join(lines)


def set_tables(path: str = SP_RESULTS) -> str:
    """One table per set (method, the published metrics, seconds per pair), as in docs/signal-processing.md."""
    with open(path, encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    parts, footnotes = [], []
    for set_name in sorted(dict.fromkeys(row["set"] for row in rows), key=lambda n: (n == "MIXED", n)):
        members = [row for row in rows if row["set"] == set_name]
        head = ["method"] + list(README_METRICS) + ["s/pair"]
        lines = [f"#### {set_name} ({members[0]['pairs']} held-out pairs)", "",
                 "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for row in members:
            values = [_cell(row, m) for m in README_METRICS] + [f"{float(row['seconds']):.2f}"]
            lines.append("| " + " | ".join([f"`{row['method']}`"] + values) + " |")
            if row.get("undefined"):
                footnotes.append(f"{set_name} `{row['method']}`: {row['undefined']}")
        parts.append("\n".join(lines))
    text = "\n\n".join(parts)
    if footnotes:
        text += ("\n\n\\* mean over the pairs where the metric is defined; undefined on (metric:pairs) "
                 + "; ".join(footnotes) + ".")
    return text


def _cell(row, metric: str) -> str:
    """A set mean to 3 decimals, starred when the metric was undefined on some pairs of the set."""
    try:
        value = float(row[metric])
    except ValueError:
        return "n/a"
    if value != value:
        return "n/a"
    undefined = {part.split(":")[0] for part in (row.get("undefined") or "").split()}
    return f"{value:.3f}" + ("*" if metric in undefined else "")


def replace_block(text: str, name: str, body: str, where: str = "README.md") -> str:
    pattern = re.compile(rf"(<!-- {name}:begin -->\n).*?(<!-- {name}:end -->)", re.S)
    if not pattern.search(text):
        raise SystemExit(f"{where} has no <!-- {name}:begin/end --> markers")
    return pattern.sub(lambda m: m.group(1) + body + "\n" + m.group(2), text)


def block(text: str, name: str) -> str:
    match = re.search(rf"<!-- {name}:begin -->\n(.*?)<!-- {name}:end -->", text, re.S)
    return match.group(1).rstrip("\n") if match else ""


# --- docs/models.md and the learned part of docs/evaluation.md ----------------------------------------------
def _weights_meta(name: str) -> dict:
    import json

    with open(os.path.join(WEIGHTS, f"{name}.json"), encoding="utf-8") as fh:
        return json.load(fh)


def _read_results(path: str = LEARNED_RESULTS):
    if not os.path.exists(path):
        return None
    with open(path, encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def _by_set(rows):
    sets = {}
    for row in rows:
        sets.setdefault(row["set"], {})[row["method"]] = row
    return sets


def _value(row, metric):
    text = row.get(metric, "")
    try:
        value = float(text)
    except ValueError:
        return None
    return value if value == value else None      # NaN: undefined


def wins_against(row, reference, metrics=README_METRICS):
    """Metrics (all higher-is-better) on which ``row`` beats ``reference`` (a row or a tuple of values)."""
    won = []
    for k, metric in enumerate(metrics):
        mine = _value(row, metric)
        theirs = reference[k] if isinstance(reference, tuple) else _value(reference, metric)
        if mine is not None and theirs is not None and mine > theirs:
            won.append(metric)
    return won


def model_cards_table() -> str:
    head = ["model", "network (parameters)", "weights", "training phases (steps)", "batch x patch", "wall time"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name in MODEL_FILES:
        meta = _weights_meta(name)
        size = os.path.getsize(os.path.join(WEIGHTS, f"{name}.pt")) / 1024
        phases = ", ".join(f"{k} {v}" for k, v in meta["steps"].items())
        lines.append(f"| [`{name}`](#{name.replace('_', '-')}) | `{meta['network']}` ({meta['parameters']:,}) | "
                     f"{size:.0f} KiB | {phases} | {meta['batch_size']} x {meta['patch']}^2 | "
                     f"{meta['wall_seconds'] / 60:.1f} min |")
    return "\n".join(lines)


def _data_summary(data: dict) -> str:
    parts = []
    for root, sets in data.get("pair_folders", {}).items():
        counts = ", ".join(f"{s} {len(names)}" for s, names in sorted(sets.items()))
        held = sum(len(v) for v in data.get("held_out", {}).get(root, {}).values())
        parts.append(f"`{os.path.basename(root.rstrip('/'))}` {data['split']} split ({counts}; {held} pairs held back)")
    if data.get("natural_images"):
        parts.append(f"{len(data['natural_images'])} scikit-image natural images")
    if data.get("phantom_pairs"):
        parts.append(f"{len(data['phantom_pairs'])} synthetic phantom pairs")
    return "; ".join(parts) or "none recorded"


def model_card(name: str) -> str:
    meta = _weights_meta(name)
    aug = meta.get("augment") or {}
    aug_text = ", ".join(f"{k}={v}" for k, v in aug.items()) if aug else "none"
    options = meta.get("options") or {}
    lines = [
        f"- **Command** (run from the repository root, `../shared/data/aanlib-dev` beside it): `{meta['command']}`",
        f"- **Network**: `{meta['network']}` {json.dumps(meta['arch'])}, {meta['parameters']:,} parameters; "
        f"weights `MedFusionLib/weights/{name}.pt` ({os.path.getsize(os.path.join(WEIGHTS, name + '.pt')) / 1024:.0f} KiB)",
        f"- **Recipe**: {meta['recipe']}",
        f"- **Loss**: {meta.get('loss', '')}",
        "- **Steps**: " + ", ".join(f"{k} {v}" for k, v in meta["steps"].items())
        + f" (batch {meta['batch_size']}, patch {meta['patch']}, Adam lr {meta['lr']}, seed {meta['seed']})"
        + (f"; recipe options {json.dumps(options)}" if options else ""),
        f"- **Data**: {_data_summary(meta.get('data', {}))}",
        f"- **Augmentation**: {aug_text}",
        f"- **Trained**: {meta['date']}, {meta['wall_seconds'] / 60:.1f} min on {meta['machine']} ({meta['device']})"
        + (f", from `{meta['init']}`" if meta.get("init") else ""),
        "- **Final losses** (mean of the last logged steps): "
        + ", ".join(f"{k} {v:.4g}" for k, v in meta.get("final_losses", {}).items()),
        f"- **Loss log**: [models/{name}.log.csv](models/{name}.log.csv)",
    ]
    if name in LEARNED:
        lines.append("- **Held-out evaluation** (EN / SD / SF / AG / MI / SCD / VIF / Qabf / SSIM; wins against "
                     "average fusion on the same pairs):")
        rows = _read_results()
        if rows is None:
            lines.append("  _not evaluated yet: see docs/evaluation.md_")
        else:
            for set_name, methods in sorted(_by_set(rows).items()):
                row = methods.get(name)
                if row is None:
                    continue
                values = " / ".join(f"{_value(row, m):.3f}" if _value(row, m) is not None else "n/a"
                                    for m in README_METRICS)
                won = wins_against(row, methods["average"]) if "average" in methods else []
                lines.append(f"  - {set_name} ({row['pairs']} pairs): {values}; beats average on {len(won)}/9")
    return "\n".join(lines)


def learned_evaluation() -> str:
    rows = _read_results()
    if rows is None:
        return "_Run the command above to fill this section._"
    sets = _by_set(rows)
    out = []
    for set_name in sorted(sets):
        methods = sets[set_name]
        pairs = next(iter(methods.values()))["pairs"]
        head = ["method"] + list(README_METRICS) + ["s/pair", "beats average", "vs U2Fusion / EMFusion (published)"]
        out += [f"#### {set_name} ({pairs} held-back pairs)", "",
                "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for method, row in methods.items():
            values = [_cell(row, m) for m in README_METRICS]
            won = f"{len(wins_against(row, methods['average']))}/9" if method != "average" and "average" in methods else ""
            published = ""
            if set_name in PUBLISHED["U2Fusion"]:
                published = " / ".join(f"{len(wins_against(row, PUBLISHED[p][set_name], PUBLISHED_METRICS))}/8"
                                       for p in ("U2Fusion", "EMFusion"))
            label = f"**`{method}`**" if method in LEARNED else f"`{method}`"
            out.append("| " + " | ".join([label] + values + [f"{float(row['seconds']):.4f}", won, published]) + " |")
        out.append("")
    undefined = [f"{r['set']} `{r['method']}`: {r['undefined']}" for r in rows if r.get("undefined")]
    if undefined:
        out.append("\\* mean over the pairs where the metric is defined; "
                   "undefined on (metric:pairs) " + "; ".join(undefined) + ".")
    return "\n".join(out).rstrip("\n")


# --- mean rank over the nine published metrics -------------------------------------------------------------
#: The published CDDFuse row (CVPR 2023, Table 5; ../shared/docs/fusion-metrics.md), EN / SD / SF / MI / SCD /
#: VIF / Qabf / SSIM: the flagship method must beat it on at least 5 of 8 on every set.
CDDFUSE = {"MRI_CT": (4.88, 79.17, 38.14, 2.61, 1.41, 0.61, 0.68, 1.34),
           "MRI_PET": (4.22, 70.74, 29.57, 2.03, 1.69, 0.71, 0.71, 1.49),
           "MRI_SPECT": (3.90, 58.31, 20.87, 2.49, 1.35, 0.97, 0.78, 1.48)}
RANK_SETS = ("MRI_CT", "MRI_PET", "MRI_SPECT")


def mean_ranks(methods: dict) -> dict:
    """Mean over the nine metrics of each method's rank among ``methods`` ({name: row}) on one set: rank 1
    is the highest value (all nine are higher-is-better), tied values share the mean of their ranks, and
    an undefined (NaN) mean ranks last."""
    totals = {name: 0.0 for name in methods}
    for metric in README_METRICS:
        values = {name: _value(row, metric) for name, row in methods.items()}
        for name, mine in values.items():
            if mine is None:
                above = sum(v is not None for v in values.values())
                ties = sum(v is None for v in values.values())
            else:
                above = sum(v is not None and v > mine for v in values.values())
                ties = sum(v is not None and v == mine for v in values.values())
            totals[name] += above + (ties + 1) / 2
    return {name: total / len(README_METRICS) for name, total in totals.items()}


def rank_table() -> str:
    """Every method's mean rank per set (held-back pairs), best first by the mean over the three sets, with
    its wins against the published CDDFuse row."""
    rows = _read_results()
    if rows is None:
        return "_Run the held-out evaluation to fill this table._"
    sets = _by_set(rows)
    ranks = {s: mean_ranks(sets[s]) for s in RANK_SETS if s in sets}
    names = list(next(iter(sets.values())))
    overall = {n: sum(ranks[s][n] for s in ranks) / len(ranks) for n in names}
    head = ["method"] + [f"{s} rank" for s in ranks] + ["mean"] + [f"vs CDDFuse {s}" for s in ranks]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    leaders = {s: min(ranks[s], key=ranks[s].get) for s in ranks}
    for name in sorted(names, key=lambda n: (overall[n], n)):
        cells = [f"**{ranks[s][name]:.2f}**" if leaders[s] == name else f"{ranks[s][name]:.2f}" for s in ranks]
        wins = [f"{len(wins_against(sets[s][name], CDDFUSE[s], PUBLISHED_METRICS))}/8" for s in ranks]
        lines.append("| " + " | ".join([f"`{name}`"] + cells + [f"{overall[name]:.2f}"] + wins) + " |")
    return "\n".join(lines)


def update_models_and_evaluation() -> None:
    with open(MODELS, encoding="utf-8") as fh:
        text = fh.read()
    text = replace_block(text, "cards", model_cards_table(), "docs/models.md")
    for name in MODEL_FILES:
        text = replace_block(text, f"card-{name}", model_card(name), "docs/models.md")
    with open(MODELS, "w", encoding="utf-8") as fh:
        fh.write(text)
    with open(EVALUATION, encoding="utf-8") as fh:
        text = fh.read()
    text = replace_block(text, "learned", learned_evaluation(), "docs/evaluation.md")
    text = replace_block(text, "ranks", rank_table(), "docs/evaluation.md")
    with open(EVALUATION, "w", encoding="utf-8") as fh:
        fh.write(text)
    with open(SIGNAL_PROCESSING, encoding="utf-8") as fh:
        text = fh.read()
    text = replace_block(text, "held-out", set_tables(), "docs/signal-processing.md")
    with open(SIGNAL_PROCESSING, "w", encoding="utf-8") as fh:
        fh.write(text)


def main() -> None:
    with open(README, encoding="utf-8") as fh:
        text = fh.read()
    text = replace_block(text, "methods", methods_table())
    text = replace_block(text, "results", results_table())
    with open(README, "w", encoding="utf-8") as fh:
        fh.write(text)
    update_models_and_evaluation()
    print("README.md, docs/models.md, docs/evaluation.md and docs/signal-processing.md updated")


if __name__ == "__main__":
    main()
