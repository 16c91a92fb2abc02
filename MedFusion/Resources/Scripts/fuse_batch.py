"""Fuse volume files without the GUI: in Slicer's batch mode or in plain Python with ``slicer-core``.

In 3D Slicer (the MedFusion extension installed, or its source added as a module path)::

    Slicer --no-main-window --python-script MedFusion/Resources/Scripts/fuse_batch.py \\
        MRI.nrrd PET.nrrd --output fused.nrrd --method laplacian --param levels=4 --colormap pet \\
        --metrics metrics.csv

Outside Slicer, with ``pip install -e '.[slicer]'``::

    python MedFusion/Resources/Scripts/fuse_batch.py MRI.nrrd CT.nii.gz PET.nrrd -o fused.nrrd --method dwt

The first input is the anatomical reference (the output gets its grid); the others are resampled onto it,
and the last is the functional input (the one ``--colormap`` colours). ``--self-test`` makes its own
phantom volumes in a temporary folder, fuses them grey and in colour, checks the results and exits.

Exit status: 0 success, 1 fusion or check failure (the message says why), 2 bad command line,
3 Python dependencies missing (add ``--install-dependencies`` to install them, Slicer only),
130 cancelled (Ctrl-C), 143 terminated (SIGTERM). Nothing is written on failure.
"""

import argparse
import os
import sys
import tempfile

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_DEPENDENCIES, EXIT_CANCELLED, EXIT_TERMINATED = 0, 1, 2, 3, 130, 143


def _scriptPath() -> str:
    # Slicer's --python-script sets sys.argv[0] to the script; __file__ is set by plain Python.
    return globals().get("__file__") or (sys.argv[0] if sys.argv else "")


def _makeImportable() -> None:
    """Find MedFusionModuleLib and MedFusionLib: installed (already importable) or in this checkout.

    The script lives in the module's ``Resources/Scripts``: in a checkout ``<repo>/MedFusion/Resources/
    Scripts`` (the module package two folders up, the library three), in an installed extension
    ``<modules folder>/Resources/Scripts`` (both packages two folders up)."""
    here = os.path.dirname(os.path.abspath(_scriptPath()))
    parents = [os.path.dirname(os.path.dirname(here)), os.path.dirname(os.path.dirname(os.path.dirname(here)))]
    for package in ("MedFusionModuleLib", "MedFusionLib"):
        try:
            __import__(package)
            continue
        except ImportError:
            pass
        for parent in parents:
            if os.path.isfile(os.path.join(parent, package, "__init__.py")) and parent not in sys.path:
                sys.path.append(parent)
                break


def _inSlicerApp() -> bool:
    try:
        import slicer

        return getattr(slicer, "app", None) is not None
    except ImportError:
        return False


def buildParser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fuse_batch.py", description="Fuse two or more co-registered volume files with MedFusion.")
    parser.add_argument("inputs", nargs="*", help="input volumes; the first is the anatomical reference, the last "
                                                  "the functional input")
    parser.add_argument("-o", "--output", help="output volume file (.nrrd, .nii.gz, .mha, ...)")
    parser.add_argument("-m", "--method", default="laplacian", help="fusion method (default: laplacian)")
    parser.add_argument("-p", "--param", action="append", default=[], metavar="NAME=VALUE",
                        help="method parameter, repeatable (e.g. --param levels=4)")
    parser.add_argument("--mode", default="auto", choices=("auto", "slices", "3d"))
    parser.add_argument("--axis", default="K", help="slice axis K, J or I (or 0, 1, 2); default K")
    parser.add_argument("--colormap", default=None, help="colour output: colour map of the functional input "
                                                         "(pet, hot, rainbow, grey)")
    parser.add_argument("--colour-space", default="ycbcr", choices=("ycbcr", "ihs"))
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "gpu"),
                        help="where learned methods run")
    parser.add_argument("--register", default="none", choices=("none", "rigid", "affine"),
                        help="register every further input onto the reference first (SimpleITK, Mattes mutual "
                             "information); the transform of input K is written as OUTPUT.input<K>.tfm")
    parser.add_argument("--metrics", default=None, metavar="CSV", help="also write the quality metrics to this CSV")
    parser.add_argument("--install-dependencies", action="store_true",
                        help="install missing Python packages (Slicer only; this flag is the consent)")
    parser.add_argument("--self-test", action="store_true", help="fuse built-in phantom volumes and check the results")
    return parser


def _params(items):
    params = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise ValueError(f"--param takes NAME=VALUE (e.g. --param levels=4); got {item!r}")
        params[name.strip()] = value.strip()
    return params


def _writeCsv(table, path: str) -> None:
    """The metrics table as CSV, written to ``path`` (the caller renames it into place)."""
    import csv

    from MedFusionModuleLib import display

    rows = display.readTable(table)
    with open(path, "w", newline="", encoding="utf-8") as handle:
        if rows:
            writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)


def fuseFiles(args, scene) -> str:
    """Load, fuse, save; returns a one-line summary. Raises MedFusionLib errors."""
    import MedFusionLib
    from MedFusionLib import bridge
    from MedFusionModuleLib.controls import parametersForMethod
    from MedFusionModuleLib.logic import MedFusionLogicBase

    logic = MedFusionLogicBase()
    params = _params(args.param)
    spec = logic.methodSpec(args.method)
    nodes = [bridge.load_volume(path, scene) for path in args.inputs]
    resolved, problems = parametersForMethod(spec, {spec.name: params})
    if problems:
        raise MedFusionLib.FusionInputError("; ".join(problems))
    result = logic.process(nodes[0], nodes[1:], spec.name, resolved, mode=args.mode, sliceAxis=args.axis,
                           colourMap=args.colormap, colourSpace=args.colour_space, device=args.device,
                           showResult=False, computeMetrics=bool(args.metrics), register=args.register)
    from MedFusionLib.atomic import replacing
    from MedFusionLib.files import save_fused   # the volume and, when registered, the transforms beside it

    # The metrics CSV is written to a temporary name first and renamed only once the volume is saved: on
    # any error (a full disk, Ctrl-C, SIGTERM) neither file is left half-written, nor the CSV alone.
    if args.metrics:
        with replacing(args.metrics) as csvTemporary:
            _writeCsv(result.metricsTable, csvTemporary)
            save_fused(result.outputVolume, args.output)
    else:
        save_fused(result.outputVolume, args.output)
    return f"{spec.name}: fused {len(nodes)} volumes in {result.seconds:.2f} s -> {args.output}"


def selfTest(scene) -> str:
    """Write phantom volumes, fuse them from the files (grey, colour, three inputs), check the results."""
    from MedFusionLib import bridge
    from MedFusionModuleLib import checks, sampledata

    with tempfile.TemporaryDirectory(prefix="medfusion-batch-") as folder:
        paths = {}
        for name, node in sampledata.phantomVolumes(scene, (24, 64, 64)).items():
            paths[name] = os.path.join(folder, f"{name}.nrrd")
            bridge.save_volume(node, paths[name])
        jobs = [(["MRI", "PET"], "laplacian", None), (["MRI", "PET"], "dwt", "pet"),
                (["MRI", "CT", "PET"], "average", "hot")]
        failures = []
        for names, method, colormap in jobs:
            output = os.path.join(folder, f"{method}.nrrd")
            args = buildParser().parse_args([paths[n] for n in names] + ["-o", output, "-m", method]
                                            + (["--colormap", colormap] if colormap else []))
            fuseFiles(args, scene)
            fused = bridge.load_volume(output, scene)
            inputs = [bridge.load_volume(paths[n], scene) for n in names]
            problems = checks.fusionProblems(fused, inputs, colormap)
            if problems:
                failures.append(f"{method} {names} {colormap or 'grey'}: {'; '.join(problems)}")
        if failures:
            raise RuntimeError("self-test failed: " + " | ".join(failures))
    return f"self-test passed ({len(jobs)} fusions checked)"


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "--":
        argv = argv[1:]
    parser = buildParser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as stop:   # argparse exits 2 on bad usage, 0 for --help
        return EXIT_USAGE if stop.code else EXIT_OK
    if not args.self_test and (len(args.inputs) < 2 or not args.output):
        parser.print_usage(sys.stderr)
        print("fuse_batch.py: error: give two or more input volumes and --output (or --self-test)", file=sys.stderr)
        return EXIT_USAGE

    _makeImportable()
    from MedFusionModuleLib import dependencies

    dependencies.ensureLibraryImportable()
    missing = dependencies.missingRequirements()
    if missing:
        if args.install_dependencies and _inSlicerApp():
            try:
                dependencies.ensureInstalled(interactive=False)
            except Exception as error:
                print(f"fuse_batch.py: installing dependencies failed: {error}", file=sys.stderr)
                return EXIT_DEPENDENCIES
        else:
            print("fuse_batch.py: missing Python packages: " + ", ".join(missing) + ". In Slicer, add "
                  "--install-dependencies to install them; outside Slicer: pip install -e '.[slicer]'",
                  file=sys.stderr)
            return EXIT_DEPENDENCIES

    import MedFusionLib
    from MedFusionLib import bridge, runtime

    scene = bridge.new_scene()   # a private scene: the batch run never touches an application scene
    # Outside Slicer the process is ours: SIGTERM unwinds like Ctrl-C, so temporary files are removed.
    previous = None if _inSlicerApp() else runtime.terminate_as_interrupt()
    try:
        message = selfTest(scene) if args.self_test else fuseFiles(args, scene)
    except runtime.Terminated:
        print("fuse_batch.py: terminated (SIGTERM); nothing was written", file=sys.stderr)
        return EXIT_TERMINATED
    except KeyboardInterrupt:
        print("fuse_batch.py: cancelled; nothing was written", file=sys.stderr)
        return EXIT_CANCELLED
    except (MedFusionLib.FusionError, ValueError, RuntimeError) as error:
        print(f"fuse_batch.py: error: {error}", file=sys.stderr)
        return EXIT_FAILED
    except OSError as error:     # e.g. a full disk: the writers removed their partial files
        print(f"fuse_batch.py: error: {error}; nothing was written", file=sys.stderr)
        return EXIT_FAILED
    finally:
        if previous is not None:
            import signal

            signal.signal(signal.SIGTERM, previous)
    print(message)
    return EXIT_OK


def _exit(status: int) -> None:
    if _inSlicerApp():
        import slicer

        slicer.util.exit(status)   # ends Slicer's event loop with this status
    else:
        sys.exit(status)


if __name__ == "__main__":
    _exit(main())
