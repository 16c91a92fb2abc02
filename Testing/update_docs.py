"""Regenerate the generated parts of README.md: the method table (from the registry) and the results
table (from docs/evaluation/all-pairs/results.csv, written by `medfusion evaluate ... --out docs/evaluation/all-pairs`).

    python Testing/update_docs.py

Testing/Python/test_docs.py fails when the README's method table is not what this script writes.
"""

from __future__ import annotations

import csv
import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
README = os.path.join(ROOT, "README.md")
RESULTS = os.path.join(ROOT, "docs", "evaluation", "all-pairs", "results.csv")
# The metrics of the published tables (../shared/docs/fusion-metrics.md), in their order.
README_METRICS = ("EN", "SD", "SF", "AG", "MI", "SCD", "VIF", "Qabf", "SSIM")


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
    for row in rows:
        values = [f"{float(row[m]):.3f}" for m in README_METRICS] + [f"{float(row['seconds']):.3f}"]
        lines.append("| " + " | ".join([row["set"], f"`{row['method']}`"] + values) + " |")
    return "\n".join(lines)


def replace_block(text: str, name: str, body: str) -> str:
    pattern = re.compile(rf"(<!-- {name}:begin -->\n).*?(<!-- {name}:end -->)", re.S)
    if not pattern.search(text):
        raise SystemExit(f"README.md has no <!-- {name}:begin/end --> markers")
    return pattern.sub(lambda m: m.group(1) + body + "\n" + m.group(2), text)


def block(text: str, name: str) -> str:
    match = re.search(rf"<!-- {name}:begin -->\n(.*?)<!-- {name}:end -->", text, re.S)
    return match.group(1).rstrip("\n") if match else ""


def main() -> None:
    with open(README, encoding="utf-8") as fh:
        text = fh.read()
    text = replace_block(text, "methods", methods_table())
    text = replace_block(text, "results", results_table())
    with open(README, "w", encoding="utf-8") as fh:
        fh.write(text)
    print("README.md updated")


if __name__ == "__main__":
    main()
