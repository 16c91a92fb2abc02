"""The ``medfusion`` command line: list methods, fuse files, score results, evaluate a data set, demo.

::

    medfusion methods [--family F] [--format text|markdown|json]
    medfusion fuse IN1 IN2 [IN3 ...] -o OUT [--method M] [--param k=v ...] [--mode ...] [--colormap ...]
    medfusion cohort MANIFEST.csv --out DIR [--method M] [--param k=v ...] [--workers N | --scheduler ADDRESS]
    medfusion metrics FUSED IN1 IN2 [...] [--format text|json]
    medfusion evaluate DIR [--methods M ...] [--out DIR]
    medfusion demo [--out DIR]
    medfusion train METHOD --out W.pt [--data DIR ...] [--steps N] [--seed S] [--init W.pt] [--resume CKPT] ...

Files are read and written through Slicer's volume IO (the bridge), so NRRD, NIfTI, MetaImage and the
other formats Slicer reads keep their geometry. Long runs show tqdm progress bars; Ctrl-C cancels
and writes nothing.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Dict, List, Optional, Sequence

from . import __version__, runtime
from .errors import FusionCancelled, FusionError
from .pipeline import DEFAULT_METHOD, MODES
from .registry import FAMILIES, methods as list_methods

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_CANCELLED, EXIT_TERMINATED = 0, 1, 2, 130, 143


class _TqdmProgress:
    """A tqdm bar driven by the library's ``progress(fraction, message)`` callback.

    The bar appears at the first report, so a call rejected by validation prints only its error."""

    def __init__(self, description: str, enabled: bool = True):
        self.description = description
        self.enabled = enabled
        self.bar = None

    def __call__(self, fraction: float, message: str) -> None:
        if self.bar is None:
            from tqdm import tqdm

            self.bar = tqdm(total=1000, desc=self.description, disable=not self.enabled, leave=False,
                            bar_format="{desc}: {percentage:3.0f}%|{bar}| {elapsed}<{remaining} {postfix}")
        target = int(round(fraction * 1000))
        if target > self.bar.n:
            self.bar.update(target - self.bar.n)
        if message:
            self.bar.set_postfix_str(message, refresh=False)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _parse_params(items: Optional[Sequence[str]]) -> Dict[str, str]:
    params: Dict[str, str] = {}
    for item in items or ():
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise FusionError(f"--param takes KEY=VALUE (e.g. --param levels=4); got {item!r}")
        params[key.strip()] = value.strip()
    return params


def _parse_output_range(text: str):
    if text in ("reference", "unit"):
        return text
    try:
        lo, hi = (float(v) for v in text.split(","))
    except ValueError:
        raise FusionError(f"--output-range takes 'reference', 'unit' or LOW,HIGH; got {text!r}") from None
    return (lo, hi)


def _parse_colormap(text: Optional[str]):
    if text is None or "," not in text:
        return text
    return [None if t.strip() in ("", "none") else t.strip() for t in text.split(",")]


# --- methods ------------------------------------------------------------------------------------------
def _shown_default(param) -> str:
    """A parameter's default for listings: ``(8, 8, 16, 16)`` for a list of numbers (not ``8.0, ...``)."""
    if param.kind == "floats" and param.default is not None:
        return "(" + ", ".join(f"{float(v):g}" for v in param.default) + ")"
    return repr(param.default)


def methods_markdown(specs=None) -> str:
    """The method table of the README, generated from the registry."""
    specs = list_methods() if specs is None else specs
    lines = ["| method | family | what it does | 3-D | inputs | parameters (default) | reference |",
             "|---|---|---|---|---|---|---|"]
    for s in specs:
        params = ", ".join(f"`{p.name}`={_shown_default(p)}" for p in s.params) or "none"
        lines.append(f"| `{s.name}` | {s.family} | {s.summary} | {'native' if s.supports_3d else 'slice-wise'} "
                     f"| {s.describe_inputs()} | {params} | {s.reference} |")
    return "\n".join(lines)


def _cmd_methods(args) -> int:
    specs = list_methods(args.family)
    if args.format == "json":
        print(json.dumps([s.to_dict() for s in specs], indent=2))
    elif args.format == "markdown":
        print(methods_markdown(specs))
    else:
        for s in specs:
            dims = "2-D, 3-D" if s.supports_3d else "2-D (slice-wise on volumes)"
            print(f"{s.name}  [{s.family}; {dims}; {s.describe_inputs()} inputs]")
            print(f"    {s.summary}")
            print(f"    Reference: {s.reference}")
            for p in s.params:
                print(f"    --param {p.name}=<{p.kind}>  default {_shown_default(p)}, allowed {p.describe_range()}: {p.help}")
            print()
    return EXIT_OK


# --- fuse ---------------------------------------------------------------------------------------------
def _parse_windows(windows, n_inputs: int, input_range):
    """``--window K LOW HIGH`` (repeatable) -> one window or None per input (None: percentiles)."""
    from .errors import FusionInputError

    ranges = [None] * n_inputs
    if input_range is not None:
        raise FusionInputError("give either --input-range (one window for all inputs) or --window K LOW HIGH "
                               "(per input), not both")
    for number, low, high in windows:
        if number != int(number) or not 1 <= int(number) <= n_inputs:
            raise FusionInputError(f"--window {number:g} {low:g} {high:g}: K must be an input number, 1 to "
                                   f"{n_inputs} (1 is the reference)")
        if ranges[int(number) - 1] is not None:
            raise FusionInputError(f"--window given twice for input {int(number)}")
        ranges[int(number) - 1] = (low, high)
    return ranges


def _cmd_fuse(args) -> int:
    from .files import fuse_files

    fuse_kwargs = dict(mode=args.mode, axis=args.axis, batch_size=args.batch_size, colour_space=args.colour_space,
                       colormap=_parse_colormap(args.colormap), output_range=_parse_output_range(args.output_range))
    if args.percentiles is not None:
        fuse_kwargs["percentiles"] = tuple(args.percentiles)
    if args.input_range is not None:
        fuse_kwargs["input_ranges"] = tuple(args.input_range)
    if args.window:
        fuse_kwargs["input_ranges"] = _parse_windows(args.window, len(args.inputs), args.input_range)
    bar = _TqdmProgress(f"fusing ({args.method})", enabled=not args.quiet)
    try:
        fuse_files(args.inputs, args.output, args.method, params=_parse_params(args.param), progress=bar,
                   register=args.register, pet_units=args.pet_units, **fuse_kwargs)
    finally:
        bar.close()
    if not args.quiet:
        print(f"wrote {args.output}")
    return EXIT_OK


# --- cohort -------------------------------------------------------------------------------------------
def _cmd_cohort(args) -> int:
    from .cohort import fuse_cohort
    from .manifest import parse_pairs

    if args.workers is not None and args.workers < 1:
        raise FusionError(f"--workers takes a positive number; got {args.workers}")
    fuse_kwargs = {"mode": args.mode, "axis": args.axis}
    log = (lambda message: None) if args.quiet else (lambda message: print(message, file=sys.stderr))
    result = fuse_cohort(args.manifest, args.out, args.method, parse_pairs(args.param or (), "--param"),
                         workers=args.workers, scheduler=args.scheduler, fuse_kwargs=fuse_kwargs,
                         metrics=args.metrics or (), progress=not args.quiet, log=log)
    counts = ", ".join(f"{n} {status}" for status, n in sorted(result.counts.items()))
    print(f"{len(result.rows)} studies: {counts} in {result.seconds:.1f} s; table {result.table}"
          + (f" (+ {result.parquet})" if result.parquet else ""))
    for row in result.rows:
        if row["status"] == "failed":
            print(f"medfusion: study {row['study']} failed: {row['error']}", file=sys.stderr)
    # A cohort with failed studies exits 1 (their errors are in the table); the others were written.
    return EXIT_OK if result.ok else EXIT_ERROR


# --- metrics ------------------------------------------------------------------------------------------
def _read_for_metrics(path: str):
    """Read an image or volume as the metric protocol expects (8-bit images: luminance, rounded)."""
    from . import metrics
    from .evaluation import read_image

    suffix = path.lower()
    if suffix.endswith((".png", ".tif", ".tiff", ".jpg", ".jpeg", ".bmp")):
        return metrics.protocol_image(read_image(path))
    from . import bridge

    scene = bridge.new_scene()
    array = bridge.array_from_node(bridge.load_volume(path, scene))
    return metrics.protocol_image(array) if array.ndim == 4 else array.astype("float64")


def _cmd_metrics(args) -> int:
    from . import metrics

    fused = _read_for_metrics(args.fused)
    sources = [_read_for_metrics(p) for p in args.sources]
    scores = metrics.evaluate_all(fused, sources, axis=args.axis)
    if args.format == "json":
        print(json.dumps(scores, indent=2))
    else:
        width = max(len(k) for k in scores)
        for name, value in scores.items():
            arrow = "higher is better" if metrics.HIGHER_IS_BETTER[name] else "lower is better"
            print(f"{name:<{width}}  {value:10.4f}   ({arrow})")
    return EXIT_OK


# --- evaluate -----------------------------------------------------------------------------------------
def _cmd_evaluate(args) -> int:
    from .evaluation import evaluate_folder

    chosen = args.methods or [s.name for s in list_methods()]
    result = evaluate_folder(args.folder, chosen, out_dir=args.out, sets=args.sets, limit=args.limit,
                             split=args.split, show_progress=not args.quiet)
    print(result.markdown())
    if args.out:
        print(f"\nwrote {', '.join(result.written)}")
    return EXIT_OK


# --- demo ---------------------------------------------------------------------------------------------
def _cmd_demo(args) -> int:
    from .demo import run_demo

    written = run_demo(args.out, size=args.size, show_progress=not args.quiet)
    for path in written:
        print(f"wrote {path}")
    return EXIT_OK


# --- train --------------------------------------------------------------------------------------------
def _train_command_text(args) -> str:
    """The training command as a reproducible string (recorded in the weights' metadata)."""
    import shlex

    parts = ["medfusion", "train", args.method]
    for d in args.data or ():
        parts += ["--data", d]
    parts += ["--out", args.out]
    options = [("--steps", args.steps), ("--batch-size", args.batch_size), ("--patch", args.patch), ("--lr", args.lr),
               ("--device", args.device if args.device != "auto" else None), ("--init", args.init),
               ("--augment", args.augment), ("--feature-net", args.feature_net),
               ("--phantoms", args.phantoms if args.phantoms != 2 else None),
               ("--split", args.split if args.split != "train" else None)]
    parts += ["--seed", str(args.seed)]
    for flag, value in options:
        if value is not None:
            parts += [flag, str(value)]
    if args.no_natural:
        parts.append("--no-natural")
    for item in args.set or ():
        parts += ["--set", item]
    return " ".join(shlex.quote(p) for p in parts)


def _cmd_train(args) -> int:
    import os

    from .deep.augment import AugmentConfig
    from .deep.recipes import TrainConfig, train

    stem = args.out[:-3] if args.out.endswith(".pt") else args.out
    checkpoint = args.checkpoint or stem + ".ckpt"
    config = TrainConfig(method=args.method, out=args.out, data=tuple(args.data or ()), steps=args.steps,
                         batch_size=args.batch_size, patch=args.patch, lr=args.lr, seed=args.seed, device=args.device,
                         init=args.init, resume=args.resume, checkpoint=checkpoint,
                         checkpoint_every=args.checkpoint_every, log=args.log or stem + ".log.csv",
                         augment=AugmentConfig.parse(args.augment), natural=not args.no_natural,
                         phantoms=args.phantoms, split=args.split, feature_net=args.feature_net,
                         show_progress=not args.quiet, command=_train_command_text(args),
                         options=_parse_params(args.set))
    try:
        meta = train(config)
    except KeyboardInterrupt:
        kept = [p for p in (checkpoint, config.log) if os.path.exists(p)]
        print("medfusion: training interrupted; no weights were written"
              + (f"; kept {' and '.join(kept)}: continue with --resume {checkpoint}" if checkpoint in kept else ""),
              file=sys.stderr)
        return EXIT_CANCELLED
    if args.checkpoint is None and os.path.exists(checkpoint):
        os.remove(checkpoint)      # the default checkpoint only serves an interrupted run
    if not args.quiet:
        print(f"wrote {args.out} ({meta['wall_seconds']:.0f} s, log {config.log})")
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="medfusion", description="Multimodal medical image fusion.")
    parser.add_argument("--version", action="version", version=f"medfusion {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("methods", help="list the fusion methods and their parameters")
    p.add_argument("--family", choices=FAMILIES)
    p.add_argument("--format", choices=("text", "markdown", "json"), default="text")
    p.set_defaults(func=_cmd_methods)

    from .registration import REGISTRATIONS
    from .suv import PET_UNITS

    p = sub.add_parser("fuse", help="fuse co-registered volumes or images (first = anatomical reference)")
    p.add_argument("inputs", nargs="+", metavar="IN",
                   help="input files (NRRD, NIfTI, MetaImage, PNG, ...) or DICOM series (a folder holding one "
                        "series, or FOLDER::SERIES_UID)")
    p.add_argument("-o", "--output", required=True, help="output file (.nrrd, .nii.gz, ...)")
    p.add_argument("-m", "--method", default=DEFAULT_METHOD, help=f"fusion method (default {DEFAULT_METHOD})")
    p.add_argument("-p", "--param", action="append", metavar="KEY=VALUE", help="method parameter (repeatable)")
    p.add_argument("--mode", choices=MODES, default="auto", help="3-D volumes: native 3-D or slice-wise")
    p.add_argument("--axis", type=int, default=0, help="slicing axis of the (K, J, I) array (default 0)")
    p.add_argument("--batch-size", type=int, default=None, help="slices per batch")
    p.add_argument("--percentiles", type=float, nargs=2, metavar=("LOW", "HIGH"),
                   help="percentile window normalising each input (default 0.5 99.5)")
    p.add_argument("--input-range", type=float, nargs=2, metavar=("LOW", "HIGH"),
                   help="fixed intensity window for all inputs instead of percentiles")
    p.add_argument("--window", type=float, nargs=3, action="append", metavar=("K", "LOW", "HIGH"),
                   help="fixed intensity window of input K (1 = the reference) in its own units, e.g. "
                        "--window 2 0 10 for a PET in SUV (repeatable; other inputs use --percentiles)")
    p.add_argument("--register", choices=REGISTRATIONS, default="none",
                   help="register every further input onto the reference before fusing (Mattes mutual "
                        "information; transforms written as OUT.input<K>.tfm; default none)")
    p.add_argument("--pet-units", choices=PET_UNITS, default="stored",
                   help="PET DICOM series: values as stored (Bq/mL, default) or body-weight SUV")
    p.add_argument("--output-range", default="reference", help="'reference' (default), 'unit' or LOW,HIGH")
    p.add_argument("--colormap", help="pseudo-colour for the last input (or NAME,NAME,... per input)")
    p.add_argument("--colour-space", choices=("ycbcr", "ihs"), default="ycbcr")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_fuse)

    p = sub.add_parser("cohort", help="fuse every study of a CSV manifest on Dask (local or cluster)",
                       description="Fuse one study per manifest row (columns study, inputs; optional output, "
                                   "method, params, register, pet_units) on a dask.distributed cluster; write "
                                   "OUT/results.csv (+ .parquet). A rerun skips complete studies. "
                                   "See docs/cohorts.md.")
    p.add_argument("manifest", metavar="MANIFEST.csv")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder (default outputs OUT/<study>.nrrd)")
    p.add_argument("-m", "--method", default=DEFAULT_METHOD,
                   help=f"method of rows without a method column (default {DEFAULT_METHOD})")
    p.add_argument("-p", "--param", action="append", metavar="KEY=VALUE", help="method parameter (repeatable)")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--workers", type=int, metavar="N", help="worker processes of a local cluster "
                                                              "(default: one per core)")
    where.add_argument("--scheduler", metavar="ADDRESS", help="use a running Dask scheduler (tcp://host:8786)")
    p.add_argument("--mode", choices=MODES, default="auto", help="3-D volumes: native 3-D or slice-wise")
    p.add_argument("--axis", type=int, default=0, help="slicing axis of the (K, J, I) array (default 0)")
    p.add_argument("--metrics", nargs="+", metavar="NAME", help="reference-free metrics per study (e.g. EN SD)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar or messages")
    p.set_defaults(func=_cmd_cohort)

    p = sub.add_parser("metrics", help="score a fused image against its sources")
    p.add_argument("fused")
    p.add_argument("sources", nargs="+")
    p.add_argument("--axis", type=int, default=0, help="3-D: metrics per slice along this axis, then averaged")
    p.add_argument("--format", choices=("text", "json"), default="text")
    p.set_defaults(func=_cmd_metrics)

    p = sub.add_parser("evaluate", help="fuse and score every pair of a folder laid out like aanlib-dev")
    p.add_argument("folder", help="folder of sets: SET/{MOD_A,MOD_B}/NAME.png")
    p.add_argument("--methods", nargs="+", metavar="M", help="methods to evaluate (default: all)")
    p.add_argument("--sets", nargs="+", metavar="SET", help="only these set folders")
    p.add_argument("--limit", type=int, help="at most this many pairs per set")
    p.add_argument("--split", choices=("all", "train", "held-out"), default="all",
                   help="all pairs, or only the training / held-back pairs (every 4th pair of each set is "
                        "held back from training)")
    p.add_argument("--out", help="write results.csv, results.md and montage PNGs here")
    p.add_argument("-q", "--quiet", action="store_true")
    p.set_defaults(func=_cmd_evaluate)

    p = sub.add_parser("demo", help="fuse the built-in synthetic CT/MRI/PET phantom (no download)")
    p.add_argument("--out", default="medfusion-demo", help="output folder (default ./medfusion-demo)")
    p.add_argument("--size", type=int, default=192, help="in-plane size of the phantom (default 192)")
    p.add_argument("-q", "--quiet", action="store_true")
    p.set_defaults(func=_cmd_demo)

    from .families._learned import TRAINABLE

    p = sub.add_parser("train", help="train a learned method's network and write its weights",
                       description="Train the network of a learned method (or the feature network their losses "
                                   "use) on pair folders laid out like aanlib-dev (images or volumes), "
                                   "scikit-image's natural images and synthetic phantoms; write W.pt (+ .json).")
    p.add_argument("method", metavar="METHOD", help=f"one of: {', '.join(TRAINABLE)}")
    p.add_argument("--data", action="append", metavar="DIR",
                   help="folder of registered pairs SET/{MOD_A,MOD_B}/NAME.ext (repeatable)")
    p.add_argument("--out", required=True, metavar="W.pt", help="weight file to write")
    p.add_argument("--steps", type=int, help="total optimisation steps (default: the recipe's)")
    p.add_argument("--batch-size", type=int, help="patches per step (default: the recipe's)")
    p.add_argument("--patch", type=int, help="patch side in pixels (default: the recipe's)")
    p.add_argument("--lr", type=float, help="learning rate (default: the recipe's)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    p.add_argument("--init", metavar="W.pt", help="start from these weights (fine-tune shipped weights on your data)")
    p.add_argument("--resume", metavar="CKPT", help="continue an interrupted run from its checkpoint")
    p.add_argument("--checkpoint", metavar="CKPT", help="checkpoint file (default OUT.ckpt, removed after success)")
    p.add_argument("--checkpoint-every", type=int, default=250, metavar="N", help="steps between checkpoints")
    p.add_argument("--log", metavar="CSV", help="loss log (default OUT.log.csv)")
    p.add_argument("--augment", metavar="SPEC",
                   help="'default', 'none' or overrides like rotate=10,flip=0.5,zoom=0.1,scale=0.1,shift=0.05,"
                        "noise=0.01,prob=0.5")
    p.add_argument("--no-natural", action="store_true", help="do not use scikit-image's natural images")
    p.add_argument("--phantoms", type=int, default=2, metavar="K", help="synthetic phantom volumes to add (default 2)")
    p.add_argument("--split", choices=("train", "all"), default="train",
                   help="pairs of --data folders used: the training split (every 4th pair held back) or all")
    p.add_argument("--feature-net", metavar="W.pt", help="feature network for perceptual/information losses "
                                                          "(default: the shipped one)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="recipe option (repeatable), e.g. --set proportions=adaptive for pmgi (docs/models.md)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_train)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    """Entry point of the ``medfusion`` console script; returns the exit status."""
    args = build_parser().parse_args(argv)
    runtime.tune_allocator()        # our own process: keep large temporaries for reuse (see runtime.py)
    previous = runtime.terminate_as_interrupt()     # SIGTERM unwinds like Ctrl-C: temporary files are removed
    try:
        return args.func(args)
    except FusionCancelled as exc:
        print(f"medfusion: {exc}", file=sys.stderr)
        return EXIT_CANCELLED
    except runtime.Terminated:
        print("medfusion: terminated (SIGTERM); nothing was written", file=sys.stderr)
        return EXIT_TERMINATED
    except KeyboardInterrupt:
        print("medfusion: interrupted; nothing was written", file=sys.stderr)
        return EXIT_CANCELLED
    except (FusionError, FileNotFoundError) as exc:
        print(f"medfusion: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except OSError as exc:          # e.g. a full disk while writing: the writers removed their partial files
        # Some writers (Pillow's PNG) raise without a file name: name the output then.
        output = getattr(args, "output", None)
        where = f" (writing {output!r})" if output and not exc.filename else ""
        print(f"medfusion: error: {exc}{where}; nothing was written", file=sys.stderr)
        return EXIT_ERROR
    finally:
        if previous is not None:
            import signal

            signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    sys.exit(main())
