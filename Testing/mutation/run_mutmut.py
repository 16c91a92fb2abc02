"""Mutation testing of one core module with mutmut, on a throw-away copy of the repository.

    .venv/bin/python Testing/mutation/run_mutmut.py rules            # one module (see MODULES)
    .venv/bin/python Testing/mutation/run_mutmut.py rules --worktree # the working tree instead of HEAD
    .venv/bin/python Testing/mutation/run_mutmut.py --list

The tree (``git archive HEAD``, or the tracked files as they are now with ``--worktree``) is laid out in
``/tmp/medfusion-mutmut/MODULE``; ``[tool.mutmut]`` of that copy's pyproject.toml is set to mutate only the
module and to run only the test files that cover it (mutmut then runs, for every mutant, just the tests of
that selection that call the mutated function). mutmut runs under ``nice -n 19`` with one worker. The
counts and the surviving mutants go to ``summary.txt`` beside the copy and to stdout; ``mutmut show NAME``
in the copy prints a mutant's diff.

mutmut 3 does not mutate decorated functions; in the copy, every top-level function of the module with a
decorator (``@register(...)``, ``@lru_cache``) is first rewritten as a plain definition followed by
``name = decorator(name)`` (:func:`undecorate`; caches are dropped instead), so the registered method
bodies are mutated too (``--keep-decorators`` turns this off). The copy's conftest.py also empties the cache
of loaded networks at every test session (:data:`FRESH_NETWORKS`), so constructor mutants take effect.
Not part of CI (docs/testing.md, 'Mutation testing').
"""

from __future__ import annotations

import argparse
import collections
import fnmatch
import io
import os
import re
import shutil
import signal
import subprocess
import sys
import tarfile

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
T = "Testing/Python/"
RULES_TESTS = [T + "test_transforms_rules.py", T + "test_rules_reference.py", T + "test_filters_reference.py",
               T + "test_classical_methods.py"]
SP = T + "test_signal_processing.py::"
SP_REF = T + "test_signal_processing_reference.py"
#: the transform and rule tests of test_signal_processing.py (its method tests take seconds a mutant)
TRANSFORM_TESTS = [SP_REF] + [SP + t for t in (
    "test_perfect_reconstruction_random_and_real_images", "test_shift_invariance_and_batching",
    "test_directional_bands_select_orientation", "test_coefficients_are_local", "test_transform_bad_input")]
NEURAL_TESTS = [SP_REF] + [SP + t for t in (
    "test_pa_pcnn_matches_the_model_equations", "test_nsst_papcnn_is_yin_et_al_written_out",
    "test_otsu_and_local_measures", "test_dual_channel_scm_credits_the_stronger_source", "test_wncc_extremes")] + [
    T + "test_rules_neural_mutation_kills.py"]
CSC_TESTS = [SP + t for t in ("test_cbpdn_matches_a_direct_lasso_solution", "test_cbpdn_batches_independently",
                              "test_cbpdn_rejects_bad_iteration_limit")] + [T + "test_csc_reference.py"]
SP_TESTS = [T + "test_signal_processing.py", SP_REF, T + "test_sp_methods_reference.py",
            T + "test_sp_families_mutation_kills.py"]
#: module name -> (file to mutate, test files that cover it)
MODULES = {
    "rules": ("MedFusionLib/rules.py", RULES_TESTS),
    "colour": ("MedFusionLib/colour.py", [T + "test_colour.py", T + "test_colour_edges.py"]),
    "intensity": ("MedFusionLib/intensity.py", [T + "test_intensity.py", T + "test_pipeline.py"]),
    "pyramid": ("MedFusionLib/transforms/pyramid.py", RULES_TESTS),
    "filters": ("MedFusionLib/transforms/filters.py", RULES_TESTS),
    "pipeline": ("MedFusionLib/pipeline.py", [T + "test_pipeline.py", T + "test_pipeline_mutation_kills.py", T + "test_colour.py", T + "test_colour_edges.py"]),
    "families_classical": ("MedFusionLib/families/[pgpw]*.py", [T + "test_classical_methods.py",
                                                              T + "test_families_checks.py",
                                                              T + "test_classical_reference.py"]),
    "max_detail": ("MedFusionLib/families/detail_transfer.py", [T + "test_max_detail.py"]),
    "nsst": ("MedFusionLib/transforms/nsst.py", TRANSFORM_TESTS),
    "nsct": ("MedFusionLib/transforms/nsct.py", TRANSFORM_TESTS),
    "freq": ("MedFusionLib/transforms/_freq.py", TRANSFORM_TESTS),
    "transforms_sp": (("MedFusionLib/transforms/nsst.py", "MedFusionLib/transforms/nsct.py",
                       "MedFusionLib/transforms/_freq.py"), TRANSFORM_TESTS),          # the three at once
    "csc": ("MedFusionLib/transforms/_csc.py", CSC_TESTS),
    "rules_neural": ("MedFusionLib/rules_neural.py", NEURAL_TESTS),
    "families_sp": ("MedFusionLib/families/[nc]s*.py", SP_TESTS),      # nsst.py, nsct.py, csr.py
    "families_learned": ("MedFusionLib/families/*learned*.py",                           # _learned, learned_*
                         [T + "test_deep_methods.py", T + "test_deep_adversarial.py", T + "test_deep_encoder_decoder.py",
                          T + "test_learned_families_mutation_kills.py"]),
    "deep_networks": (tuple("MedFusionLib/deep/" + f for f in (                    # inference and the networks
                          "inference.py", "blocks.py", "networks.py", "networks_adversarial.py",
                          "networks_encoder_decoder.py")),
                      [T + "test_learned_regression.py", T + "test_deep_methods.py", T + "test_deep_adversarial.py",
                       T + "test_deep_encoder_decoder.py", T + "test_learned_families_mutation_kills.py",
                       T + "test_deep_mutation_kills.py",
                       T + "test_deep_training.py"]),                       # for the training-only networks
    "metrics": ("MedFusionLib/metrics/*.py", [T + "test_metrics.py", T + "test_metric_references.py",
                                              T + "test_metrics_mutation_kills.py"]),   # the whole package
}
#: decorators dropped (not re-applied) in the copy: a cache filled by the unmutated stats run would be
#: inherited by every forked mutant and hide its effect
DROPPED = {"lru_cache", "functools.lru_cache", "cache", "functools.cache"}
#: decorators mutmut handles itself
KEPT = {"staticmethod", "classmethod", "property"}


def _lay_out(work: str, worktree: bool) -> None:
    if os.path.isdir(work):
        shutil.rmtree(work)
    os.makedirs(work)
    if worktree:
        files = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, check=True,
                               capture_output=True).stdout.decode().split("\0")
        for name in filter(None, files):
            src = os.path.join(ROOT, name)
            if os.path.isfile(src):
                os.makedirs(os.path.dirname(os.path.join(work, name)), exist_ok=True)
                shutil.copy2(src, os.path.join(work, name))
    else:
        data = subprocess.run(["git", "archive", "HEAD"], cwd=ROOT, check=True, capture_output=True).stdout
        with tarfile.open(fileobj=io.BytesIO(data)) as tar:
            tar.extractall(work, filter="data")


def undecorate(text: str) -> str:
    """Rewrite top-level ``@decorator`` functions of a module as plain definitions followed by
    ``name = decorator(name)``, so that mutmut (which skips decorated functions) mutates their bodies.

    Applied to the throw-away copy only. Decorators are re-applied innermost first after the function's
    last line, so registration (``@register(...)``) still happens at import, with the same arguments,
    on mutmut's trampoline. Caching decorators (:data:`DROPPED`) are removed instead.
    """
    import ast

    tree = ast.parse(text)
    lines = text.splitlines(keepends=True)
    edits = []          # (first line to drop, last line to drop, line after which to insert, inserted text)
    for node in tree.body:
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) or not node.decorator_list:
            continue
        names = [ast.get_source_segment(text, d) for d in node.decorator_list]
        if any(n in KEPT for n in names):
            continue
        first = node.decorator_list[0].lineno - 1
        last = node.lineno - 2                       # the line before ``def``
        applied = [n for n in reversed(names) if re.sub(r"\(.*", "", n, flags=re.S) not in DROPPED]
        wrapped = "".join(f"{node.name} = ({n})({node.name})\n" for n in applied)
        edits.append((first, last, node.end_lineno - 1, wrapped))
    for first, last, end, wrapped in sorted(edits, reverse=True):
        lines[end] = lines[end] if lines[end].endswith("\n") else lines[end] + "\n"
        lines.insert(end + 1, wrapped)
        del lines[first:last + 1]
    return "".join(lines)


def _undecorate_tree(work: str, pattern: str) -> list:
    import glob

    changed = []
    for path in sorted(glob.glob(os.path.join(work, pattern))):
        text = open(path, encoding="utf-8").read()
        new = undecorate(text)
        if new != text:
            open(path, "w", encoding="utf-8").write(new)
            changed.append(os.path.relpath(path, work))
    return changed


#: appended to the copy's conftest.py: mutmut forks every mutant's test session from a process whose
#: networks the stats run already built and cached (deep/weights.py), which would hide every mutant of a
#: network's constructor; the cache is emptied at the start of each session instead
FRESH_NETWORKS = """

@pytest.fixture(autouse=True, scope="session")
def _mutmut_fresh_networks():            # added by Testing/mutation/run_mutmut.py in its throw-away copy
    from MedFusionLib.deep import weights
    weights._CACHE.clear()
"""


def _empty_caches_per_session(work: str) -> None:
    with open(os.path.join(work, "Testing", "Python", "conftest.py"), "a", encoding="utf-8") as fh:
        fh.write(FRESH_NETWORKS)


def _configure(work: str, module: str, tests, timeout_multiplier=None) -> list:
    tests = [t for t in tests if os.path.exists(os.path.join(work, t.split("::")[0]))]   # files not there yet
    path = os.path.join(work, "pyproject.toml")
    text = open(path, encoding="utf-8").read()
    text = re.sub(r"\n\[tool\.mutmut\]\n(?:(?!\n\[).)*", "\n", text, flags=re.S)   # replace any section
    quoted = lambda items: "[" + ", ".join(f'"{x}"' for x in items) + "]"   # noqa: E731
    text += ("\n[tool.mutmut]\n"
             'source_paths = ["MedFusionLib"]\n'
             f"only_mutate = {quoted([module] if isinstance(module, str) else list(module))}\n"
             'also_copy = ["Testing/"]\n'
             f"pytest_add_cli_args_test_selection = {quoted(tests)}\n"
             'pytest_add_cli_args = ["-p", "no:cacheprovider", "-q"]\n'
             + (f"timeout_multiplier = {float(timeout_multiplier)}\n" if timeout_multiplier else ""))
    open(path, "w", encoding="utf-8").write(text)
    return tests


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("module", nargs="?", choices=sorted(MODULES))
    parser.add_argument("--worktree", action="store_true", help="mutate the working tree, not HEAD")
    parser.add_argument("--list", action="store_true", help="print the modules and their test files")
    parser.add_argument("--work-dir", default="/tmp/medfusion-mutmut")
    parser.add_argument("--diffs", action="store_true", help="also write MODULE-survivors.diff (mutmut show)")
    parser.add_argument("--time-limit", type=float, default=None,
                        help="stop mutmut after this many seconds; unchecked mutants are listed as such")
    parser.add_argument("--only", nargs="+", default=None, metavar="GLOB",
                        help="run only the mutants whose names match (fnmatch), e.g. '*__mutmut_*[05]' for a "
                             "one-in-five sample or 'MedFusionLib.rules_neural.x_wncc*'; the score counts them only")
    parser.add_argument("--timeout-multiplier", type=float, default=None,
                        help="mutmut's CPU-time limit factor (its default 15, doubled): raise it where the tests "
                             "of a mutant pay a set-up cost (session fixtures, weights) that the stats run "
                             "charged to another test; a changed value re-runs only the timed-out mutants")
    parser.add_argument("--keep-copy", action="store_true",
                        help="reuse the copy of an earlier run (its stats and verdicts) instead of laying it out")
    parser.add_argument("--keep-decorators", action="store_true",
                        help="do not rewrite decorated functions (mutmut then skips their bodies)")
    args = parser.parse_args(argv)
    if args.list or not args.module:
        for name, (path, tests) in MODULES.items():
            print(f"{name}: {path} <- {' '.join(tests)}")
        return 0
    path, tests = MODULES[args.module]
    work = os.path.join(args.work_dir, args.module)
    patterns = [path] if isinstance(path, str) else list(path)
    if args.keep_copy and os.path.isdir(os.path.join(work, "mutants")):
        undecorated = ["(kept from the earlier run)"]
    else:
        _lay_out(work, args.worktree)
        _empty_caches_per_session(work)
        undecorated = [] if args.keep_decorators else [f for p in patterns for f in _undecorate_tree(work, p)]
    tests = _configure(work, path, tests, args.timeout_multiplier)
    mutmut = os.path.join(os.path.dirname(sys.executable), "mutmut")
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
    with open(os.path.join(work, "mutmut-run.log"), "w") as log:   # its progress bar, kept out of stdout
        proc = subprocess.Popen(["nice", "-n", "19", mutmut, "run", "--max-children", "1"] + (args.only or []),
                                cwd=work, env=env,
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            returncode = proc.wait(timeout=args.time_limit)
        except subprocess.TimeoutExpired:          # mutmut and its forked workers: one process group
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            returncode = 124
    listing = subprocess.run([mutmut, "results", "--all", "true"], cwd=work, env=env, capture_output=True,
                             text=True).stdout
    status = dict(re.findall(r"^\s+(\S+): (.+)$", listing, flags=re.M))
    if args.only:
        status = {k: v for k, v in status.items() if any(fnmatch.fnmatch(k, g) for g in args.only)}
    counts = collections.Counter(status.values())
    total = len(status)
    killed = counts.get("killed", 0) + counts.get("timeout", 0)      # a timeout is a detected mutant
    lines = [f"module {args.module} ({path}); tests: {' '.join(tests)}",
             "decorators rewritten in: " + (", ".join(undecorated) or "none"),
             f"mutants {total}, " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())),
             ("sample: " + " ".join(args.only) if args.only else "all mutants"),
             f"score ((killed + timeout) / checked) {100.0 * killed / max(total - counts['not checked'], 1):.1f} %"
             + (" (stopped by --time-limit)" if returncode == 124 else ""), "not killed:"]
    lines += [f"  {name}: {s}" for name, s in sorted(status.items())
              if s not in ("killed", "timeout", "not checked")]
    summary = "\n".join(lines) + "\n"
    if args.diffs:
        diffs = [subprocess.run([mutmut, "show", name], cwd=work, env=env, capture_output=True, text=True).stdout
                 for name, s in sorted(status.items()) if s not in ("killed", "timeout", "not checked")]
        open(os.path.join(args.work_dir, f"{args.module}-survivors.diff"), "w").write("\n".join(diffs))
    open(os.path.join(args.work_dir, f"{args.module}-summary.txt"), "w").write(summary)
    print(summary)
    return returncode


if __name__ == "__main__":
    sys.exit(main())
