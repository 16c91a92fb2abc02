"""The README's generated method table matches the registry; the README's commands match .ci/run."""

import importlib.util
import os
import re

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _update_docs():
    spec = importlib.util.spec_from_file_location("update_docs", os.path.join(ROOT, "Testing", "update_docs.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _readme():
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as fh:
        return fh.read()


def test_readme_method_table_is_generated_from_the_registry():
    docs = _update_docs()
    assert docs.block(_readme(), "methods") == docs.methods_table(), \
        "README method table is stale: run `python Testing/update_docs.py`"


def test_ci_runs_the_readme_test_command():
    commands = re.findall(r"```bash\n(python3 -m venv .*?)\n```", _readme())
    assert len(commands) == 2, "the README must show the main-job command and the test command"
    with open(os.path.join(ROOT, ".ci", "run"), encoding="utf-8") as fh:
        ci = fh.read()
    assert commands[1] in ci.splitlines()
    assert "medfusion demo" in commands[0]


def test_readme_python_example_runs(capsys):
    blocks = re.findall(r"```python\n(.*?)```", _readme(), re.S)
    assert blocks, "the README has a Python example"
    exec(compile(blocks[0], "README.md", "exec"), {})
    out = capsys.readouterr().out
    assert "laplacian classical" in out and "'Qabf'" in out


def test_model_cards_and_learned_evaluation_are_generated_from_the_weights_and_results():
    docs = _update_docs()
    with open(os.path.join(ROOT, "docs", "models.md"), encoding="utf-8") as fh:
        models = fh.read()
    assert docs.block(models, "cards") == docs.model_cards_table(), \
        "docs/models.md is stale: run `python Testing/update_docs.py`"
    for name in docs.MODEL_FILES:
        assert docs.block(models, f"card-{name}") == docs.model_card(name), \
            f"docs/models.md card of {name} is stale: run `python Testing/update_docs.py`"
    with open(os.path.join(ROOT, "docs", "evaluation.md"), encoding="utf-8") as fh:
        evaluation = fh.read()
    assert docs.block(evaluation, "learned") == docs.learned_evaluation()
    assert docs.block(_readme(), "results") == docs.results_table()
    with open(os.path.join(ROOT, "docs", "signal-processing.md"), encoding="utf-8") as fh:
        assert docs.block(fh.read(), "held-out") == docs.set_tables(), \
            "docs/signal-processing.md held-out tables are stale: run `python Testing/update_docs.py`"


def test_win_counting():
    docs = _update_docs()
    row = {m: "1.0" for m in docs.README_METRICS}
    worse = dict(row, SD="0.5", VIF="nan")
    assert docs.wins_against(row, worse) == ["SD"]                # NaN (undefined) counts as no win
    assert docs.wins_against(worse, row) == []
    assert docs.wins_against(row, (0.5,) * 8, docs.PUBLISHED_METRICS) == list(docs.PUBLISHED_METRICS)


def test_rank_table_is_generated_and_ranks_are_right():
    docs = _update_docs()
    with open(os.path.join(ROOT, "docs", "evaluation.md"), encoding="utf-8") as fh:
        assert docs.block(fh.read(), "ranks") == docs.rank_table(), \
            "docs/evaluation.md rank table is stale: run `python Testing/update_docs.py`"
    # Three methods, nine metrics: 'a' best on all, 'b' and 'c' tied on all but SSIM (b better) and VIF
    # (undefined for c: ranked last).
    a = {m: "3" for m in docs.README_METRICS}
    b = dict({m: "2" for m in docs.README_METRICS}, SSIM="1.5")
    c = dict({m: "2" for m in docs.README_METRICS}, SSIM="1.0", VIF="nan")
    ranks = docs.mean_ranks({"a": a, "b": b, "c": c})
    assert ranks["a"] == 1.0
    # b: 7 ties at 2.5, SSIM 2, VIF 2; c: 7 ties at 2.5, SSIM 3, VIF 3.
    assert abs(ranks["b"] - (7 * 2.5 + 2 + 2) / 9) < 1e-12 and abs(ranks["c"] - (7 * 2.5 + 3 + 3) / 9) < 1e-12
