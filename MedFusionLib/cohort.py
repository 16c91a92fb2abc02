"""Fuse a cohort of studies on Dask: one task per manifest row, exactly once, nothing half-written.

:func:`fuse_cohort` (``medfusion cohort``) reads and checks the manifest (:mod:`MedFusionLib.manifest`),
skips the studies whose output is complete, submits one task per remaining study to a dask.distributed
cluster -- a ``LocalCluster`` of worker processes on this machine, or an existing scheduler -- and writes a
results table (``results.csv``, and ``results.parquet`` when pyarrow is installed). Each task runs
:func:`run_study`, which calls :func:`MedFusionLib.files.fuse_files`, the job of ``medfusion fuse``.

Why a study is produced exactly once, even when a worker dies (docs/cohorts.md):

- the output is written under a temporary name and renamed when complete (``bridge.save_volume``);
- after the rename, a completion record ``OUT/.medfusion-cohort/<study>.json`` is written (atomically)
  with the output's size and SHA-256 and a key of the job (inputs' sizes and modification times, method,
  parameters, options); a study is complete when its record's key matches and the output's size and
  SHA-256 are those recorded -- checked, not assumed;
- a task holds an exclusive lock (``flock``) on ``OUT/.medfusion-cohort/<study>.lock`` while it works; the
  kernel releases it when the process dies, so a retried task waits for a dying one, then finds the study
  complete (and does nothing) or removes the dead attempt's temporary files and fuses it again.

dask is imported only when a cohort runs, so the rest of the library works without it.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import glob
import hashlib
import json
import logging
import os
import shutil
import socket
import time
import uuid
from dataclasses import dataclass, field
from typing import Callable, Dict, Iterator, List, Mapping, Optional, Sequence

from . import __version__
from .errors import FusionCancelled, FusionError, FusionInputError
from .manifest import Study, input_location, read_manifest
from .atomic import replacing
from .digests import file_sha256

_TIMEOUTS = (TimeoutError, asyncio.TimeoutError)   # distributed.wait's, on Python 3.10 too
STATE_FOLDER = ".medfusion-cohort"
RESULT_COLUMNS = ("study", "status", "seconds", "output", "method", "worker", "error")
#: ``status`` values of the results table.
DONE, SKIPPED, FAILED, CANCELLED = "done", "skipped", "failed", "cancelled"


@dataclass
class CohortResult:
    """What :func:`fuse_cohort` did: one row per study (manifest order) and the files it wrote."""

    rows: List[Dict[str, object]]
    table: str                         # results.csv
    parquet: Optional[str] = None      # results.parquet, when pyarrow is installed
    dashboard: Optional[str] = None
    seconds: float = 0.0
    submitted: int = 0                 # studies sent to the cluster (not complete before the run)
    counts: Dict[str, int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """Every study is done or was complete already."""
        return all(r["status"] in (DONE, SKIPPED) for r in self.rows)


# --- the per-study job (runs on a worker) ----------------------------------------------------------------
def _fingerprint(path: str) -> List[object]:
    """Size and modification time of an input file, or of every file of an input folder (DICOM series)."""
    path = input_location(path)
    if os.path.isdir(path):
        entries = []
        for name in sorted(os.listdir(path)):
            full = os.path.join(path, name)
            if os.path.isfile(full):
                st = os.stat(full)
                entries.append([name, st.st_size, st.st_mtime_ns])
        return entries
    st = os.stat(path)
    return [st.st_size, st.st_mtime_ns]


def job_key(study: Study, fuse_kwargs: Optional[Mapping[str, object]] = None) -> str:
    """A SHA-256 of everything the study's output depends on: change an input, the method, a parameter or
    an option, and the recorded output no longer counts as complete."""
    description = {
        "inputs": [[p, _fingerprint(p)] for p in study.inputs],
        "output": study.output, "method": study.method, "params": sorted(dict(study.params).items()),
        "options": sorted(study.fuse_options().items()),
        "fuse_kwargs": sorted((k, repr(v)) for k, v in dict(fuse_kwargs or {}).items()),
        "medfusion": __version__,
    }
    return hashlib.sha256(json.dumps(description, sort_keys=True, default=str).encode()).hexdigest()


def _record_path(state: str, study: str) -> str:
    return os.path.join(state, f"{study}.json")


def completed_record(study: Study, state: str, key: str) -> Optional[Dict[str, object]]:
    """The study's completion record if its output is complete (record present, same job key, output and
    registration transforms of the recorded sizes and SHA-256), else None."""
    try:
        with open(_record_path(state, study.study), encoding="utf-8") as fh:
            record = json.load(fh)
        if record.get("job") != key or record.get("output") != study.output:
            return None
        if os.path.getsize(study.output) != record.get("size"):
            return None
        if file_sha256(study.output) != record.get("sha256"):
            return None
        transforms = record.get("transforms", {})
        if sorted(transforms) != sorted(transform_files(study)):
            return None
        for path, (size, sha256) in transforms.items():
            if os.path.getsize(path) != size or file_sha256(path) != sha256:
                return None
        return record
    except (OSError, ValueError, AttributeError, TypeError):
        return None


def transform_files(study: Study) -> List[str]:
    """The registration transforms a registering study writes beside its output (``OUT.input<k>.tfm``)."""
    from .files import transform_path

    if (study.register or "none") == "none":
        return []
    return [transform_path(study.output, k) for k in range(2, len(study.inputs) + 1)]


def partial_files(output: str) -> List[str]:
    """Temporary files and folders a writer of ``output`` may leave when its process is killed: the bridge's
    staging folders (``.NAME.*.tmp``), the image writer's ``ROOT.partial.EXT`` and the registration
    transforms' ``OUT.input<k>.staged.tfm`` / ``OUT.input<k>.staged.partial.tfm``."""
    from .files import transform_path

    folder, name = os.path.split(output)
    root, ext = os.path.splitext(output)
    found = glob.glob(os.path.join(glob.escape(folder), f".{glob.escape(name)}.*.tmp"))
    found += [p for p in (f"{root}.partial{ext}", f"{output}.partial") if os.path.exists(p)]
    transforms = glob.escape(transform_path(output, 2)[: -len("2.tfm")])
    found += sorted(glob.glob(f"{transforms}*.staged.tfm") + glob.glob(f"{transforms}*.staged.partial.tfm"))
    return found


def _remove(paths: Sequence[str]) -> None:
    for path in paths:
        if os.path.isdir(path):
            shutil.rmtree(path, ignore_errors=True)
        else:
            with contextlib.suppress(OSError):
                os.remove(path)


@contextlib.contextmanager
def study_lock(state: str, study: str, blocking: bool = True) -> Iterator[bool]:
    """Hold the study's exclusive lock (released by the kernel if the process dies); yields whether it was
    acquired (always True when blocking). Without ``fcntl`` (Windows) it yields True without locking."""
    try:
        import fcntl
    except ImportError:                  # pragma: no cover - Windows: one process per study is Dask's job
        yield True
        return
    fd = os.open(os.path.join(state, f"{study}.lock"), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def _write_json(path: str, data: Mapping[str, object]) -> None:
    with replacing(path) as tmp:
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump(data, fh, indent=1)
            fh.flush()
            os.fsync(fh.fileno())       # the record claims the output is complete: on disk before it counts


def _input_nodes(study: Study, scene) -> list:
    """The study's inputs as volume nodes, read as :func:`MedFusionLib.files.fuse_files` reads them (DICOM
    series through :mod:`MedFusionLib.dicom`, PET in SUV when the row asks), each further input under the
    registration transform written beside the output when the row registers."""
    from .bridge_geometry import _vtk_matrix
    from .files import load_input_nodes, transform_path

    nodes = load_input_nodes(study.inputs, scene, study.pet_units or "stored")
    if (study.register or "none") != "none":
        from .dicom import import_simpleitk
        from .registration import ras_matrix

        sitk = import_simpleitk()
        for k, node in enumerate(nodes[1:], start=2):
            transform = scene.AddNewNodeByClass("vtkMRMLLinearTransformNode")
            transform.SetMatrixTransformFromParent(_vtk_matrix(
                ras_matrix(sitk.ReadTransform(transform_path(study.output, k)))))
            node.SetAndObserveTransformNodeID(transform.GetID())
    return nodes


def study_metrics(study: Study, names: Sequence[str],
                  fuse_kwargs: Optional[Mapping[str, object]] = None) -> Dict[str, float]:
    """Reference-free metrics (:mod:`MedFusionLib.metrics`) of a study's written output against its inputs.

    The metrics follow the published 0..255 convention, so each volume is brought to 0..255 the way the
    fusion saw it: every input, resampled onto the output's grid (through its registration transform when
    the row registers), is mapped through its intensity window (its percentiles, or the ``input_ranges``
    of ``fuse_kwargs``) and rounded; the output is mapped through the window it was written in (the
    reference's window by default, or the ``output_range``) and rounded (:func:`metrics.protocol_fused`).
    A colour (RGB) output is scored by its luminance (:func:`metrics.protocol_image`). Volumes are scored
    per slice along ``axis`` (of ``fuse_kwargs``, default 0) and averaged.

    Parameters
    ----------
    study : Study
        A study whose output is complete.
    names : sequence of str
        Metric names (:data:`MedFusionLib.metrics.METRICS`).
    fuse_kwargs : mapping, optional
        The cohort's keyword arguments of :func:`MedFusionLib.files.fuse_files`.

    Returns
    -------
    dict
        ``{"metric_<name>": value}``.
    """
    import numpy as np

    from . import bridge, intensity
    from . import metrics as quality
    from .evaluation import read_image
    from .files import is_image_file

    options = dict(fuse_kwargs or {})
    percentiles = options.get("percentiles", intensity.DEFAULT_PERCENTILES)
    if is_image_file(study.output):      # 2-D image files: 8-bit luminance, as the protocol reads images
        scores = quality.evaluate_all(quality.protocol_fused(quality.protocol_image(read_image(study.output))),
                                      [quality.protocol_image(read_image(p)) for p in study.inputs],
                                      metrics=list(names))
        return {f"metric_{k}": float(v) for k, v in scores.items()}
    scene = bridge.new_scene()
    output = bridge.load_volume(study.output, scene)
    arrays = [np.asarray(bridge.resample_to_reference(node, output), dtype=np.float64)
              for node in _input_nodes(study, scene)]
    fused = bridge.array_from_node(output)
    ranges = options.get("input_ranges")
    if ranges is None or (len(ranges) == 2 and np.isscalar(ranges[0])):
        ranges = [ranges] * len(arrays)
    windows = [intensity.robust_window(a, percentiles) if r is None else tuple(map(float, r))
               for a, r in zip(arrays, ranges)]
    sources = [np.round(intensity.normalise(a, w).astype(np.float64) * 255.0) for a, w in zip(arrays, windows)]
    if fused.ndim == sources[0].ndim + 1 and fused.shape[-1] in (3, 4):
        scored = quality.protocol_image(fused)
    else:
        out_range = options.get("output_range", "reference")
        window = windows[0] if out_range == "reference" else (0.0, 1.0) if out_range == "unit" else out_range
        lo, hi = (float(v) for v in window)
        scored = quality.protocol_fused((np.asarray(fused, dtype=np.float64) - lo) * (255.0 / (hi - lo)))
    scores = quality.evaluate_all(scored, sources, axis=int(options.get("axis", 0)), metrics=list(names))
    return {f"metric_{k}": float(v) for k, v in scores.items()}


def run_study(study: Study, state: str, key: str, fuse_kwargs: Optional[Mapping[str, object]] = None,
              metrics: Sequence[str] = (), run: str = "") -> Dict[str, object]:
    """Produce one study's output unless it is complete; the task each Dask worker runs.

    Idempotent: under the study's lock, a complete output (:func:`completed_record`) is left as it is
    (status ``skipped``, or ``done`` when an earlier attempt of the same cohort ``run`` produced it: its
    worker died before Dask had its result); otherwise the temporary files of a killed attempt are removed, the study is fused
    with :func:`MedFusionLib.files.fuse_files` (written to a temporary name, renamed when complete) and
    the completion record written. Errors of the study (a missing or unreadable input, a bad series, a
    failed registration, bad parameters) are returned as a ``failed`` row, not raised, so the cohort goes
    on and Dask does not retry a study that cannot succeed; a dying worker is what Dask retries.

    Returns
    -------
    dict
        A row of the results table (:data:`RESULT_COLUMNS`, plus ``metric_*`` columns when asked).
    """
    from .files import fuse_files

    row: Dict[str, object] = {"study": study.study, "status": FAILED, "seconds": 0.0, "output": study.output,
                              "method": study.method, "worker": f"{socket.gethostname()}:{os.getpid()}",
                              "error": ""}
    with study_lock(state, study.study):
        record = completed_record(study, state, key)
        if record is not None:
            produced_now = bool(run) and record.get("run") == run
            row.update(status=DONE if produced_now else SKIPPED, seconds=record.get("seconds", 0.0),
                       worker=record.get("worker", ""))
            return row
        with contextlib.suppress(OSError):
            os.remove(_record_path(state, study.study))
        _remove(partial_files(study.output))          # left by an attempt whose worker died
        start = time.perf_counter()
        try:
            fuse_files(list(study.inputs), study.output, study.method, params=dict(study.params),
                       **study.fuse_options(), **dict(fuse_kwargs or {}))
        except Exception as exc:        # the study's own failure: recorded, the cohort goes on
            row.update(seconds=round(time.perf_counter() - start, 3), error=_describe_error(exc))
            return row
        seconds = round(time.perf_counter() - start, 3)
        _write_json(_record_path(state, study.study), {
            "study": study.study, "output": study.output, "size": os.path.getsize(study.output),
            "sha256": file_sha256(study.output),
            "transforms": {p: [os.path.getsize(p), file_sha256(p)] for p in transform_files(study)}, "job": key, "seconds": seconds, "method": study.method,
            "worker": row["worker"], "run": run, "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z")})
    row.update(status=DONE, seconds=seconds)
    if metrics:
        try:
            row.update(study_metrics(study, metrics, fuse_kwargs))
        except Exception as exc:        # the output is fine; only its scores are missing
            row["error"] = f"metrics: {_describe_error(exc)}"
    return row


def _describe_error(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text if isinstance(exc, FusionError) else f"{type(exc).__name__}: {text}"


# --- the results table ------------------------------------------------------------------------------------
def write_results(rows: Sequence[Mapping[str, object]], out_dir: str, name: str = "results"):
    """Write the results table as ``name.csv`` and, when pyarrow is installed, ``name.parquet`` (each
    atomically); returns their paths (the second None without pyarrow)."""
    columns = list(RESULT_COLUMNS) + sorted({k for r in rows for k in r} - set(RESULT_COLUMNS))
    table = os.path.join(out_dir, f"{name}.csv")
    with replacing(table) as tmp:
        with open(tmp, "w", newline="", encoding="utf-8") as fh:
            writer = csv.DictWriter(fh, fieldnames=columns)
            writer.writeheader()
            for r in rows:
                writer.writerow({c: r.get(c, "") for c in columns})
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        return table, None
    parquet = os.path.join(out_dir, f"{name}.parquet")
    data = {c: [r.get(c) for r in rows] for c in columns}
    for c in columns:
        if c not in ("seconds",) and not c.startswith("metric_"):
            data[c] = [None if v is None else str(v) for v in data[c]]
    with replacing(parquet) as tmp:
        pq.write_table(pa.table(data), tmp)
    return table, parquet


# --- the cohort -------------------------------------------------------------------------------------------
def worker_environment(workers: int) -> Dict[str, str]:
    """Environment of a cohort's worker processes on one machine of ``os.cpu_count()`` cores.

    The cores are shared out between the workers' numpy/torch threads (Dask's own default pins each worker
    to 1 thread), and glibc's allocator keeps large freed blocks for reuse as :func:`MedFusionLib.runtime.
    tune_allocator` does in the command line's own process (Dask's default, ``MALLOC_TRIM_THRESHOLD_=65536``,
    returns them at once: every temporary of tens of MB is page-faulted in again). glibc reads these
    variables when a process starts, so they must be set before the worker is spawned.
    """
    threads = str(max(1, (os.cpu_count() or 1) // max(1, workers)))
    return {"OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads, "OPENBLAS_NUM_THREADS": threads,
            "MALLOC_TRIM_THRESHOLD_": str(1 << 30), "MALLOC_MMAP_THRESHOLD_": str(32 << 20)}


def _local_cluster(workers: int, cluster_kwargs: Optional[Mapping[str, object]]):
    import dask
    from distributed import LocalCluster

    # One study at a time per worker process (threads_per_worker=1: one task), each with its share of the
    # cores for numpy/torch. The nannies read ``pre-spawn-environ`` when they are created and set it before
    # spawning their worker, so that glibc and the BLAS libraries see it at start.
    environ = worker_environment(workers)
    kwargs: Dict[str, object] = dict(n_workers=workers, threads_per_worker=1, processes=True,
                                     silence_logs=logging.ERROR, dashboard_address=":8787")
    kwargs.update(cluster_kwargs or {})
    with dask.config.set({"distributed.nanny.pre-spawn-environ": environ, "distributed.nanny.environ": environ}):
        return LocalCluster(**kwargs)


def dashboard_link(client) -> Optional[str]:
    """The dashboard's address, or None when the scheduler serves none (bokeh is not installed)."""
    try:
        if "dashboard" not in client.scheduler_info().get("services", {}):
            return None
        return client.dashboard_link
    except Exception:
        return None


def _cancelled(cancel) -> bool:
    if cancel is None:
        return False
    if hasattr(cancel, "is_set"):
        return cancel.is_set()
    return bool(cancel())


def clean_partials(studies: Sequence[Study], state: str) -> List[str]:
    """Remove the temporary files of studies no task is working on (their lock is free); returns them."""
    removed: List[str] = []
    for study in studies:
        with study_lock(state, study.study, blocking=False) as free:
            if free:
                found = partial_files(study.output)
                _remove(found)
                removed += found
    return removed


def fuse_cohort(manifest: str, out_dir: str, method: Optional[str] = None,
                params: Optional[Mapping[str, str]] = None, *, workers: Optional[int] = None,
                scheduler: Optional[str] = None, client=None, fuse_kwargs: Optional[Mapping[str, object]] = None,
                metrics: Sequence[str] = (), progress: bool = True,
                cancel=None, cluster_kwargs: Optional[Mapping[str, object]] = None,
                log: Optional[Callable[[str], None]] = None) -> CohortResult:
    """Fuse every study of a manifest on dask.distributed and write the results table.

    Parameters
    ----------
    manifest : str
        The cohort's CSV manifest (columns in :mod:`MedFusionLib.manifest`; docs/cohorts.md).
    out_dir : str
        Output folder: default outputs ``<study>.nrrd``, ``results.csv`` / ``results.parquet`` and the
        completion records (``.medfusion-cohort/``). Created if missing.
    method, params :
        The method and parameters of rows that do not give their own (a row's ``params`` override these).
    workers : int, optional
        Worker processes of the ``LocalCluster`` started on this machine (default: the number of cores).
    scheduler : str, optional
        Address of a running scheduler (``tcp://host:8786``) to use instead of a local cluster; the
        manifest's files and ``out_dir`` must be visible at the same paths from every worker.
    client : distributed.Client, optional
        A client to use as it is (neither ``workers`` nor ``scheduler``); it is not closed.
    fuse_kwargs : mapping, optional
        Further keyword arguments of :func:`MedFusionLib.files.fuse_files` for every study (``mode``,
        ``axis``, ``output_range``, ...).
    metrics : sequence of str, optional
        Reference-free metrics (:data:`MedFusionLib.metrics.METRICS` names) to compute per study into
        ``metric_<name>`` columns.
    progress : bool
        A tqdm bar of studies on the client.
    cancel : CancelToken, threading.Event or callable, optional
        Set it to stop: unfinished studies are cancelled, the cluster closed, temporary files removed,
        the table written, and :class:`FusionCancelled` raised. Ctrl-C (``KeyboardInterrupt``) does the same
        and is re-raised.
    cluster_kwargs : mapping, optional
        Extra arguments of ``distributed.LocalCluster`` (e.g. ``memory_limit``, ``dashboard_address``).
    log : callable, optional
        Receives one-line messages (the dashboard address, the summary); default: none.

    Returns
    -------
    CohortResult
        The rows (``status``: ``done``, ``skipped`` (complete before), ``failed`` (with ``error``) or
        ``cancelled``) and the tables written.

    Raises
    ------
    ManifestError
        The manifest has problems (all listed); nothing was run.
    FusionInputError
        An unknown metric name; nothing was run.
    """
    say = log or (lambda message: None)
    started = time.perf_counter()
    fuse_kwargs = dict(fuse_kwargs or {})
    metrics = [metrics] if isinstance(metrics, str) else list(metrics)
    if metrics:
        from .metrics import METRICS

        unknown = [m for m in metrics if m not in METRICS]
        if unknown:
            raise FusionInputError(f"unknown metric(s) {', '.join(map(repr, unknown))}; known: {' '.join(METRICS)}")
    studies = read_manifest(manifest, out_dir, method, params, fuse_kwargs)
    out_dir = os.path.abspath(out_dir)
    state = os.path.join(out_dir, STATE_FOLDER)
    os.makedirs(state, exist_ok=True)
    keys = {s.study: job_key(s, fuse_kwargs) for s in studies}
    rows: Dict[str, Dict[str, object]] = {}
    for s in studies:
        record = completed_record(s, state, keys[s.study])
        if record is not None:
            rows[s.study] = {"study": s.study, "status": SKIPPED, "seconds": record.get("seconds", 0.0),
                             "output": s.output, "method": s.method, "worker": "", "error": ""}
    pending = [s for s in studies if s.study not in rows]
    result = CohortResult(rows=[], table="", submitted=len(pending))
    interrupted: Optional[BaseException] = None
    if pending:
        say(f"{len(pending)} of {len(studies)} studies to fuse ({len(studies) - len(pending)} complete already)")
        try:
            _run_on_dask(pending, state, keys, fuse_kwargs, list(metrics), rows, result, workers, scheduler,
                         client, progress, cancel, cluster_kwargs, say)
        except (KeyboardInterrupt, FusionCancelled) as exc:
            interrupted = exc
        finally:
            clean_partials(studies, state)
    else:
        say(f"all {len(studies)} studies are complete already; nothing to do")
    for s in studies:
        rows.setdefault(s.study, {"study": s.study, "status": CANCELLED, "seconds": 0.0, "output": s.output,
                                  "method": s.method, "worker": "", "error": "cancelled before it finished"})
    result.rows = [rows[s.study] for s in studies]
    result.table, result.parquet = write_results(result.rows, out_dir)
    result.seconds = time.perf_counter() - started
    for r in result.rows:
        result.counts[r["status"]] = result.counts.get(r["status"], 0) + 1
    if interrupted is not None:
        raise interrupted
    return result


def _run_on_dask(pending, state, keys, fuse_kwargs, metrics, rows, result, workers, scheduler, client,
                 progress, cancel, cluster_kwargs, say) -> None:
    from distributed import Client, wait

    own_cluster = own_client = None
    try:
        if client is None:
            try:
                if scheduler is not None:
                    own_client = client = Client(scheduler, timeout="30s")
                else:
                    own_cluster = _local_cluster(workers or os.cpu_count() or 1, cluster_kwargs)
                    own_client = client = Client(own_cluster)
            except (OSError, RuntimeError, ValueError) as exc:
                where = f"the scheduler at {scheduler}" if scheduler is not None else "a local Dask cluster"
                raise FusionError(f"cannot connect to {where}: {exc}") from exc
        result.dashboard = dashboard_link(client)
        say(f"Dask dashboard: {result.dashboard}" if result.dashboard
            else "Dask dashboard: not served (install bokeh for it)")
        token = uuid.uuid4().hex[:12]     # this run: names its tasks, marks its completion records
        futures = {client.submit(run_study, s, state, keys[s.study], fuse_kwargs, metrics,
                                 token, key=f"medfusion-study-{s.study}-{token}", pure=False): s for s in pending}
        bar = None
        if progress:
            from tqdm import tqdm

            bar = tqdm(total=len(futures), desc="studies", unit="study")
        try:
            remaining = set(futures)
            while remaining:
                if _cancelled(cancel):
                    raise FusionCancelled("cohort cancelled")
                try:        # short waits, so that Ctrl-C and ``cancel`` are seen promptly
                    done, remaining = wait(list(remaining), timeout=0.5, return_when="FIRST_COMPLETED")
                except _TIMEOUTS:
                    continue
                remaining = set(remaining)
                for future in done:
                    study = futures[future]
                    try:
                        rows[study.study] = future.result()
                    except Exception as exc:     # e.g. KilledWorker: it killed its worker too often
                        rows[study.study] = {"study": study.study, "status": FAILED, "seconds": 0.0,
                                             "output": study.output, "method": study.method, "worker": "",
                                             "error": _describe_error(exc)}
                    if bar is not None:
                        bar.update(1)
                        bar.set_postfix_str(f"{study.study}: {rows[study.study]['status']}", refresh=False)
        except BaseException:
            client.cancel(list(futures), force=True)
            raise
        finally:
            if bar is not None:
                bar.close()
    finally:
        if own_client is not None:
            own_client.close()
        if own_cluster is not None:
            own_cluster.close()
