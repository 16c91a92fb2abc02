"""The cohort manifest: one CSV row per study, read and checked as a whole before any study runs.

Columns (docs/cohorts.md):

==============  ========  =====================================================================================
column          required  meaning
==============  ========  =====================================================================================
``study``       yes       unique id of the study; names its default output ``OUT/<study>.nrrd``
``inputs``      yes       files or DICOM series folders (``FOLDER::UID``: one series of several)
                          separated by ``;``, the anatomical reference first
``output``      no        output file (its extension picks the format); default ``OUT/<study>.nrrd``
``method``      no        fusion method of this study; default: the cohort's ``--method``
``params``      no        ``k=v`` pairs separated by ``;``, over the cohort's ``--param`` values
``register``    no        ``none`` / ``rigid`` / ``affine`` (as ``medfusion fuse --register``)
``pet_units``   no        ``stored`` / ``suv`` (as ``medfusion fuse --pet-units``)
==============  ========  =====================================================================================

Relative paths are relative to the manifest's folder. :func:`read_manifest` reports every problem of the
file at once (unknown or missing columns, duplicate study ids or outputs, missing inputs, unknown methods,
bad parameters or options, parameters the reference's grid does not allow when its header tells the
grid) in one :class:`ManifestError`, so a cohort never starts half-valid.
"""

from __future__ import annotations

import csv
import os
import re
from dataclasses import dataclass, field
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

from .errors import FusionError, FusionInputError

REQUIRED_COLUMNS = ("study", "inputs")
OPTIONAL_COLUMNS = ("output", "method", "params", "register", "pet_units")
COLUMNS = REQUIRED_COLUMNS + OPTIONAL_COLUMNS
#: Values of the ``register`` and ``pet_units`` columns (checked here so a typo stops the cohort before work;
#: :func:`MedFusionLib.files.fuse_files` says which of them this version supports).
REGISTER_VALUES = ("none", "rigid", "affine")
PET_UNITS_VALUES = ("stored", "suv")
DEFAULT_SUFFIX = ".nrrd"
#: ``FOLDER::SERIES_INSTANCE_UID`` picks one series of a DICOM folder (as ``medfusion fuse`` reads it).
SERIES_SEPARATOR = "::"
# A study id names a file: letters, digits and . _ - only, not starting with a dot.
_STUDY_ID = re.compile(r"^[A-Za-z0-9_\-][A-Za-z0-9_.\-]*$")


class ManifestError(FusionInputError):
    """The manifest has problems; ``problems`` lists them all (one line each)."""

    def __init__(self, path: str, problems: Sequence[str]):
        self.path = path
        self.problems = list(problems)
        listed = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"manifest {path!r} has {len(self.problems)} problem(s); nothing was run:\n{listed}")


@dataclass(frozen=True)
class Study:
    """One row of the manifest, resolved: absolute paths, the method and parameters it runs with."""

    study: str
    inputs: Tuple[str, ...]
    output: str
    method: str
    params: Mapping[str, str] = field(default_factory=dict)
    register: Optional[str] = None
    pet_units: Optional[str] = None
    row: int = 0                     # line number in the manifest, for messages

    def fuse_options(self) -> Dict[str, object]:
        """The keyword arguments of :func:`MedFusionLib.files.fuse_files` this row sets (only those given)."""
        options: Dict[str, object] = {}
        if self.register is not None:
            options["register"] = self.register
        if self.pet_units is not None:
            options["pet_units"] = self.pet_units
        return options


def parse_pairs(text: str, what: str) -> Dict[str, str]:
    """``"k=v;k2=v2"`` (or a sequence of ``k=v``) to a dict; raises FusionError naming ``what``."""
    pairs: Dict[str, str] = {}
    items = text.split(";") if isinstance(text, str) else list(text)
    for item in items:
        if not item.strip():
            continue
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise FusionError(f"{what} takes KEY=VALUE pairs (e.g. levels=4); got {item.strip()!r}")
        pairs[key.strip()] = value.strip()
    return pairs


def input_location(path: str) -> str:
    """The file or folder an input names: ``FOLDER::SERIES_UID`` (one series of a DICOM folder) -> FOLDER."""
    return path.rsplit(SERIES_SEPARATOR, 1)[0] if SERIES_SEPARATOR in path else path


def _input_problem(path: str) -> Optional[str]:
    path = input_location(path)
    if os.path.isdir(path):
        try:
            if not any(os.path.isfile(os.path.join(path, n)) for n in os.listdir(path)):
                return f"input folder {path!r} holds no files (a DICOM series folder is expected)"
        except OSError as exc:
            return f"input folder {path!r} cannot be listed ({exc.strerror})"
        return None
    if not os.path.exists(path):
        return f"input {path!r} does not exist"
    if not os.access(path, os.R_OK):
        return f"input {path!r} is not readable"
    return None


def _plan_problem(inputs: Sequence[str], method: str, params: Mapping[str, str],
                  fuse_kwargs: Optional[Mapping[str, object]]) -> Optional[str]:
    """What :func:`MedFusionLib.pipeline.plan` refuses about this study on its reference's grid, read from
    the header; None when it plans, or when the grid is not known here (DICOM, 2-D images, other formats:
    checked when the study runs)."""
    import numpy as np

    from .memory import volume_info
    from .pipeline import plan

    if len(inputs) < 2 or any(os.path.isdir(input_location(p)) or SERIES_SEPARATOR in p for p in inputs):
        return None
    if not inputs[0].lower().endswith((".nrrd", ".nhdr", ".nii", ".nii.gz", ".mha", ".mhd")):
        return None
    try:
        info = volume_info(inputs[0])
    except Exception:        # noqa: BLE001 - an unreadable header is the study's error, when it runs
        return None
    if info is None or info.components != 1 or len(info.shape) != 3:
        return None
    options = {k: v for k, v in dict(fuse_kwargs or {}).items()
               if k in ("mode", "axis", "batch_size", "percentiles", "input_ranges", "output_range", "colormap",
                        "colour_space")}
    stand_in = np.broadcast_to(np.zeros((), np.int32), info.shape)     # zero-stride: no memory, no work
    try:
        plan([stand_in] * len(inputs), method, params=dict(params), **options)
    except FusionInputError as exc:
        return str(exc)
    return None


def read_manifest(path: str, out_dir: str, method: Optional[str] = None,
                  params: Optional[Mapping[str, str]] = None,
                  fuse_kwargs: Optional[Mapping[str, object]] = None) -> List[Study]:
    """Read and check a cohort manifest; every problem is reported at once.

    Parameters
    ----------
    path : str
        The CSV file (UTF-8, a header row; see the module docstring for the columns).
    out_dir : str
        The cohort's output folder (outputs default to ``out_dir/<study>.nrrd``).
    method : str, optional
        The cohort's method, used by rows without a ``method``; a row without one when this is None is a
        problem.
    params : mapping, optional
        The cohort's method parameters; a row's ``params`` override them key by key.
    fuse_kwargs : mapping, optional
        The cohort's further options of :func:`MedFusionLib.files.fuse_files` (``mode``, ``axis``, ...).
        When a row's reference is a volume file whose header gives its grid (NRRD, NIfTI, MetaImage), the
        whole fusion call is planned on that grid (:func:`MedFusionLib.pipeline.plan`, no voxel read), so
        that parameters the size does not allow (e.g. too many pyramid levels) and bad options are
        reported here too. DICOM series and other formats are checked when their study runs.

    Returns
    -------
    list of Study
        In the manifest's order.

    Raises
    ------
    ManifestError
        Listing every problem found (nothing is run).
    """
    from .paths import VOLUME_SUFFIXES
    from .evaluation import IMAGE_SUFFIXES
    from .registry import get_method

    path = os.fspath(path)
    out_dir = os.path.abspath(os.fspath(out_dir))
    base = os.path.dirname(os.path.abspath(path))
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            rows = list(csv.reader(fh))
    except OSError as exc:
        raise ManifestError(path, [f"cannot read the manifest ({exc.strerror})"]) from exc
    except (UnicodeDecodeError, csv.Error) as exc:
        raise ManifestError(path, [f"not a UTF-8 CSV file ({exc})"]) from exc
    rows = [r for r in rows if any(cell.strip() for cell in r)]
    if not rows:
        raise ManifestError(path, ["the manifest is empty (a header row with at least study,inputs is needed)"])
    header = [h.strip().lower() for h in rows[0]]
    problems: List[str] = []
    unknown = [h for h in header if h not in COLUMNS]
    if unknown:
        problems.append(f"unknown column(s) {', '.join(map(repr, unknown))}; allowed: {', '.join(COLUMNS)}")
    missing = [c for c in REQUIRED_COLUMNS if c not in header]
    if missing:
        problems.append(f"missing column(s) {', '.join(missing)} (required: {', '.join(REQUIRED_COLUMNS)})")
    repeated = sorted({h for h in header if header.count(h) > 1})
    if repeated:
        problems.append(f"column(s) given twice: {', '.join(repeated)}")
    if missing or repeated:
        raise ManifestError(path, problems)
    if len(rows) == 1:
        problems.append("the manifest has no study rows")

    base_params = dict(params or {})
    studies: List[Study] = []
    seen_ids: Dict[str, int] = {}
    seen_outputs: Dict[str, Tuple[str, int]] = {}
    for line, cells in enumerate(rows[1:], start=2):
        where = f"line {line}"
        if len(cells) > len(header):
            problems.append(f"{where}: {len(cells)} cells for {len(header)} columns (quote cells holding commas)")
            continue
        row = {h: (cells[i].strip() if i < len(cells) else "") for i, h in enumerate(header)}
        study = row.get("study", "")
        if not study:
            problems.append(f"{where}: empty study id")
            continue
        where = f"line {line} (study {study!r})"
        if not _STUDY_ID.match(study):
            problems.append(f"{where}: a study id may hold letters, digits, '.', '_' and '-' only (it names files)")
            continue
        if study in seen_ids:
            problems.append(f"{where}: study id already used on line {seen_ids[study]}")
        seen_ids.setdefault(study, line)

        inputs = [os.path.normpath(os.path.join(base, p.strip())) for p in row.get("inputs", "").split(";")
                  if p.strip()]
        if len(inputs) < 2:
            problems.append(f"{where}: needs at least two inputs separated by ';' (got {len(inputs)})")
        for p in inputs:
            problem = _input_problem(p)
            if problem:
                problems.append(f"{where}: {problem}")

        output = row.get("output") or os.path.join(out_dir, study + DEFAULT_SUFFIX)
        output = os.path.normpath(os.path.join(base, output))
        if not output.lower().endswith(tuple(VOLUME_SUFFIXES) + tuple(IMAGE_SUFFIXES)):
            problems.append(f"{where}: output {output!r} has an unknown format; allowed: "
                            f"{', '.join(VOLUME_SUFFIXES + tuple(IMAGE_SUFFIXES))}")
        if os.path.isdir(output):
            problems.append(f"{where}: output {output!r} is a folder")
        key = os.path.normcase(output)
        if key in seen_outputs:
            problems.append(f"{where}: output {output!r} is also the output of study {seen_outputs[key][0]!r} "
                            f"(line {seen_outputs[key][1]})")
        seen_outputs.setdefault(key, (study, line))
        if output in inputs:
            problems.append(f"{where}: output {output!r} is one of its inputs")

        study_method = row.get("method") or method
        study_params = dict(base_params)
        try:
            study_params.update(parse_pairs(row.get("params", ""), "the params column"))
        except FusionError as exc:
            problems.append(f"{where}: {exc}")
        if not study_method:
            problems.append(f"{where}: no method (give --method or a method column)")
        else:
            try:
                get_method(study_method).resolve_params(study_params, n_inputs=len(inputs) if len(inputs) >= 2
                                                        else None)
            except FusionInputError as exc:
                problems.append(f"{where}: {exc}")
            else:
                problem = _plan_problem(inputs, study_method, study_params, fuse_kwargs)
                if problem:
                    problems.append(f"{where}: {problem}")

        register = row.get("register") or None
        if register is not None and register not in REGISTER_VALUES:
            problems.append(f"{where}: register {register!r} unknown; allowed: {', '.join(REGISTER_VALUES)}")
        pet_units = row.get("pet_units") or None
        if pet_units is not None and pet_units not in PET_UNITS_VALUES:
            problems.append(f"{where}: pet_units {pet_units!r} unknown; allowed: {', '.join(PET_UNITS_VALUES)}")
        studies.append(Study(study=study, inputs=tuple(inputs), output=output, method=study_method or "",
                             params=study_params, register=register, pet_units=pet_units, row=line))

    folders = sorted({os.path.dirname(s.output) for s in studies} - {out_dir})
    for folder in folders:
        if not os.path.isdir(folder):
            problems.append(f"output folder {folder!r} does not exist; create it first")
    if problems:
        raise ManifestError(path, problems)
    return studies
