"""The Python packages MedFusionLib needs inside Slicer: checked cheaply, installed only on request.

Slicer ships NumPy (and, in recent versions, SciPy) but not PyWavelets, scikit-image, MONAI or PyTorch.
Nothing is installed when Slicer starts or when the module is imported: the panel checks what is
missing (:func:`missingRequirements`, reading installed package metadata only, no imports) and installs
only when the user asks, after a confirmation dialog that lists the packages:

1. PyTorch first, through the PyTorch extension's ``PyTorchUtils`` module (it picks the build that
   matches the NVIDIA driver); without that extension, the CPU build from PyTorch's CPU wheel index.
   PyTorch must come first: installing MONAI from PyPI would otherwise pull a default PyTorch build.
2. Then ``Resources/requirements.txt`` with ``slicer.util.pip_install`` after our own confirmation, with
   the installed PyTorch pinned as a pip constraint (:func:`torchConstraint`) so that MONAI's
   requirements can never make pip replace the build PyTorch Utils installed (without PyTorch, through
   ``slicer.packaging.pip_ensure`` where the Slicer version has it).

The panel asks first and only then shows a wait cursor, and runs one installation at a time
(:class:`InstallSession`). The self-test never downloads PyTorch or MONAI in automated testing mode
(:func:`selfTestPlan`): it installs only the light packages and skips the learned-method case.

The pure parts (parsing, version checks, the install plan, the panel's install session, the self-test
plan) are tested with pytest; the steps that show dialogs or run pip need the Slicer application and
are kept in :func:`confirmInstall` and :func:`ensureInstalled`.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import inspect
import logging
import os
import re
import sys
from dataclasses import dataclass
from typing import Callable, ContextManager, Dict, List, Optional, Sequence, Tuple

REQUIREMENTS_FILE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                 "Resources", "requirements.txt")
TORCH_REQUIREMENT = "torch>=2.1"
TORCH_CPU_INDEX_URL = "https://download.pytorch.org/whl/cpu"
#: Distributions only the learned methods need (PyTorch, and MONAI, which pulls PyTorch): gigabytes with
#: a CUDA build, against tens of megabytes for the others (SciPy, PyWavelets, scikit-image).
LEARNED_DISTRIBUTIONS = ("torch", "monai")

_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(\[[^\]]*\])?\s*(.*)$")


def readRequirements(path: str = REQUIREMENTS_FILE) -> List[str]:
    """Requirement lines of a requirements file (comments, blank lines and pip options left out)."""
    lines = []
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            line = line.split("#", 1)[0].strip()
            if line and not line.startswith("-"):
                lines.append(line)
    return lines


def requirementName(requirement: str) -> str:
    """The distribution name of a requirement string (``'PyWavelets>=1.4'`` -> ``'PyWavelets'``)."""
    match = _NAME.match(requirement.split(";", 1)[0])
    if not match:
        raise ValueError(f"not a requirement: {requirement!r}")
    return match.group(1)


def _versionTuple(text: str) -> Tuple[int, ...]:
    numbers = []
    for part in re.split(r"[.+-]", text):
        digits = re.match(r"\d+", part)
        if not digits:
            break
        numbers.append(int(digits.group()))
    return tuple(numbers)


def _satisfiesFallback(version: str, specifier: str) -> bool:
    """Minimal specifier check (>=, >, <=, <, ==, !=, comma-separated) when ``packaging`` is absent."""
    have = _versionTuple(version)
    for clause in filter(None, (c.strip() for c in specifier.split(","))):
        match = re.match(r"(>=|<=|==|!=|>|<|~=)\s*(.+)", clause)
        if not match:
            return False
        op, wanted = match.group(1), _versionTuple(match.group(2).rstrip(".*"))
        width = max(len(have), len(wanted))
        a, b = have + (0,) * (width - len(have)), wanted + (0,) * (width - len(wanted))
        ok = {">=": a >= b, "<=": a <= b, ">": a > b, "<": a < b, "==": a == b, "!=": a != b,
              "~=": a >= b}[op]
        if not ok:
            return False
    return True


def isSatisfied(requirement: str, versionOf: Callable[[str], str] = importlib.metadata.version) -> bool:
    """Whether an installed distribution satisfies ``requirement`` (from package metadata; no import).

    ``versionOf`` returns the installed version of a distribution name or raises
    ``importlib.metadata.PackageNotFoundError``."""
    text = requirement.split(";", 1)[0].strip()
    try:
        from packaging.requirements import Requirement

        parsed = Requirement(text)
        try:
            version = versionOf(parsed.name)
        except importlib.metadata.PackageNotFoundError:
            return False
        return parsed.specifier.contains(version, prereleases=True)
    except ImportError:
        name = requirementName(text)
        try:
            version = versionOf(name)
        except importlib.metadata.PackageNotFoundError:
            return False
        specifier = _NAME.match(text).group(3)
        return _satisfiesFallback(version, specifier)


def isLearnedRequirement(requirement: str) -> bool:
    """Whether a requirement is one only the learned methods need (:data:`LEARNED_DISTRIBUTIONS`)."""
    return requirementName(requirement).lower() in LEARNED_DISTRIBUTIONS


def missingRequirements(requirements: Optional[Sequence[str]] = None, *, includeTorch: bool = True,
                        learned: bool = True,
                        versionOf: Callable[[str], str] = importlib.metadata.version) -> List[str]:
    """The requirements (of ``Resources/requirements.txt`` by default, plus PyTorch) not yet satisfied.

    ``learned=False`` leaves out PyTorch and MONAI (:data:`LEARNED_DISTRIBUTIONS`): what the classical
    methods, the metrics and the phantom need."""
    wanted = list(readRequirements() if requirements is None else requirements)
    if includeTorch and not any(requirementName(r).lower() == "torch" for r in wanted):
        wanted.insert(0, TORCH_REQUIREMENT)
    if not learned:
        wanted = [r for r in wanted if not isLearnedRequirement(r)]
    return [r for r in wanted if not isSatisfied(r, versionOf)]


@dataclass(frozen=True)
class SelfTestPlan:
    """What the module's self-test installs and runs (see :func:`selfTestPlan`)."""

    #: Ask before installing (a person pressed Reload and Test) or not (automated testing mode).
    interactive: bool
    #: Whether PyTorch and MONAI are installed by the self-test if missing.
    installLearned: bool
    #: Whether the learned-method case runs; when not, ``skipReason`` says why.
    runLearned: bool
    skipReason: str = ""


def selfTestPlan(testing: bool, versionOf: Callable[[str], str] = importlib.metadata.version) -> SelfTestPlan:
    """The self-test's install decisions.

    In Slicer's automated testing mode (``slicer.app.testingEnabled()``: ctest, ``--testing``) nobody can
    answer a dialog and nobody asked for gigabytes: only the light packages are installed (no dialog;
    running the test is the request) and, when PyTorch or MONAI is missing, the learned-method case is
    skipped with a message saying so. A person running *Reload and Test* gets the consent dialog for
    everything missing, and the learned case runs."""
    if not testing:
        return SelfTestPlan(interactive=True, installLearned=True, runLearned=True)
    missing = [r for r in missingRequirements(versionOf=versionOf) if isLearnedRequirement(r)]
    if not missing:
        return SelfTestPlan(interactive=False, installLearned=False, runLearned=True)
    return SelfTestPlan(
        interactive=False, installLearned=False, runLearned=False,
        skipReason=(f"MedFusion self-test: learned-method case skipped: {', '.join(missing)} not installed. "
                    "In testing mode the self-test does not download PyTorch or MONAI; install them with the "
                    "module's Install dependencies button (or run the self-test interactively) to test it."))


def installPlan(missing: Sequence[str], pyTorchUtilsAvailable: bool) -> List[Dict[str, object]]:
    """The ordered install steps for the missing requirements.

    Returns a list of steps, each a dict with ``kind``: ``'pytorchutils'`` (install PyTorch with the
    PyTorch extension), ``'torch-cpu'`` (``pip install torch --index-url <CPU index>``) or
    ``'requirements'`` (the other packages, ``requirements``: list of str). PyTorch always comes first.
    """
    torch = [r for r in missing if requirementName(r).lower() == "torch"]
    others = [r for r in missing if requirementName(r).lower() != "torch"]
    steps: List[Dict[str, object]] = []
    if torch:
        if pyTorchUtilsAvailable:
            steps.append({"kind": "pytorchutils", "requirement": torch[0]})
        else:
            steps.append({"kind": "torch-cpu", "requirement": torch[0],
                          "pipArguments": [torch[0], "--index-url", TORCH_CPU_INDEX_URL]})
    if others:
        steps.append({"kind": "requirements", "requirements": others})
    return steps


def torchConstraint(versionOf: Callable[[str], str] = importlib.metadata.version) -> Optional[str]:
    """``'torch==<installed version>'`` when PyTorch is installed, else None.

    Installing MONAI from PyPI after PyTorch Utils must never replace the PyTorch build it chose (a CUDA
    build matching the driver, from PyTorch's own index): a current MONAI may require a newer torch, and
    pip would then upgrade torch from PyPI. Pinning the installed version as a pip *constraint* makes pip
    pick a MONAI release that accepts it (or fail with a clear conflict) instead, as
    SlicerTotalSegmentator does for its own torch-dependent packages."""
    try:
        return f"torch=={versionOf('torch')}"
    except importlib.metadata.PackageNotFoundError:
        return None


def requirementsPipArguments(requirements: Sequence[str], constraintsFile: Optional[str]) -> List[str]:
    """pip arguments installing ``requirements`` under the constraints file (torch pinned), if any."""
    arguments = list(requirements)
    if constraintsFile:
        arguments += ["--constraint", constraintsFile]
    return arguments


def describePlan(steps: Sequence[Dict[str, object]]) -> str:
    """One paragraph per step, for the consent dialog and the panel."""
    lines = []
    for step in steps:
        if step["kind"] == "pytorchutils":
            lines.append(f"PyTorch ({step['requirement']}) through the PyTorch extension (the build matching "
                         "your GPU driver, or the CPU build).")
        elif step["kind"] == "torch-cpu":
            lines.append(f"PyTorch ({step['requirement']}), CPU build (the PyTorch extension is not installed; "
                         "install it from the Extensions Manager for GPU support).")
        else:
            lines.append("Python packages: " + ", ".join(step["requirements"]) + ".")
    return "\n".join(lines)


def libraryRoot() -> Optional[str]:
    """The folder holding the ``MedFusionLib`` package in a source checkout (``<repo>/MedFusionLib``).

    Inside an installed extension ``MedFusionLib`` sits beside the module and is importable already; when
    the module is used from a source checkout (Developer mode, additional module path
    ``<repo>/MedFusion``) the library is one folder up."""
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    return root if os.path.isfile(os.path.join(root, "MedFusionLib", "__init__.py")) else None


def ensureLibraryImportable() -> None:
    """Make ``import MedFusionLib`` work from a source checkout (adds the checkout root to sys.path)."""
    if importlib.util.find_spec("MedFusionLib") is not None:
        return
    root = libraryRoot()
    if root is not None and root not in sys.path:
        sys.path.append(root)
        importlib.invalidate_caches()


# --- the steps that need the Slicer application --------------------------------------------------------
def _pyTorchUtilsLogic():
    try:
        import PyTorchUtils  # the PyTorch extension's module (on sys.path when the extension is installed)
    except ImportError:
        return None
    return PyTorchUtils.PyTorchUtilsLogic()


def _pipEnsure():
    """``pip_ensure`` and ``load_requirements`` of Slicer's packaging module, where this version has them."""
    for moduleName in ("slicer.packaging", "slicer.pydeps"):
        try:
            module = importlib.import_module(moduleName)
        except ImportError:
            continue
        ensure = getattr(module, "pip_ensure", None)
        if callable(ensure):
            return ensure, getattr(module, "load_requirements", None)
    return None, None


def _callWithSupported(function, *args, **kwargs):
    try:
        parameters = inspect.signature(function).parameters
    except (TypeError, ValueError):
        return function(*args)
    if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        kwargs = {k: v for k, v in kwargs.items() if k in parameters}
    return function(*args, **kwargs)


class DependenciesDeclined(RuntimeError):
    """The user declined to install the packages MedFusion needs."""


class InstallSession:
    """The panel's installation state: one installation at a time, consent asked before the wait cursor.

    ``setButtonEnabled(bool)`` enables or disables the Install button. :meth:`run` disables it for the
    whole installation (pip lets Qt process events while it runs, so the button could otherwise be
    pressed again and start a second, nested installation) and enables it again however the installation
    ends. The question is asked before the wait cursor is shown: a dialog under a busy cursor looks as if
    Slicer were hung."""

    INSTALLED = "installed"
    DECLINED = "declined"
    ALREADY_RUNNING = "already running"

    def __init__(self, setButtonEnabled: Callable[[bool], None]):
        self._setButtonEnabled = setButtonEnabled
        self.running = False

    def run(self, ask: Callable[[], bool], install: Callable[[], object], busy: Callable[[], ContextManager],
            refresh: Callable[[], None]) -> str:
        """Ask, then install under ``busy()`` (the wait cursor), then ``refresh()`` the panel.

        Returns :attr:`INSTALLED`, :attr:`DECLINED` (nothing installed) or :attr:`ALREADY_RUNNING` (a
        second press while installing: nothing asked, nothing done). ``refresh`` (method list, help text,
        the Dependencies section) runs after every installation attempt, also a failed one, since some
        packages may have been installed; an exception of ``install`` is raised again after it, outside
        the wait cursor, so that the caller's error dialog is not shown under it either."""
        if self.running:
            return self.ALREADY_RUNNING
        self.running = True
        self._setButtonEnabled(False)
        try:
            if not ask():
                return self.DECLINED
            try:
                with busy():
                    install()
            finally:
                refresh()
            return self.INSTALLED
        finally:
            self.running = False
            self._setButtonEnabled(True)


def confirmInstall(requester: str = "MedFusion", learned: bool = True) -> bool:
    """Ask the user (a Slicer dialog listing every package) whether to install what is missing.

    True when nothing is missing or the user pressed OK. Slicer only."""
    import slicer

    missing = missingRequirements(learned=learned)
    if not missing:
        return True
    steps = installPlan(missing, _pyTorchUtilsLogic() is not None)
    return bool(slicer.util.confirmOkCancelDisplay(
        "MedFusion needs Python packages that are not installed yet. Install them now? This can take "
        "several minutes and downloads from the Python Package Index.",
        windowTitle=f"{requester}: install dependencies", detailedText=describePlan(steps)))


def ensureInstalled(interactive: bool = True, requester: str = "MedFusion", learned: bool = True) -> List[str]:
    """Install whatever of PyTorch and ``Resources/requirements.txt`` is missing (Slicer only).

    With ``interactive`` the user confirms first (:func:`confirmInstall`: one dialog listing everything);
    without it (the panel after its own question, batch mode with ``--install-dependencies``, self-test)
    the caller has already obtained consent. ``learned=False`` leaves PyTorch and MONAI out. Returns the
    requirements that were missing. Raises :class:`DependenciesDeclined` when the user says no, and
    ``RuntimeError`` when something is still missing afterwards.
    """
    import slicer

    missing = missingRequirements(learned=learned)
    if not missing:
        return []
    if interactive and not confirmInstall(requester, learned):
        raise DependenciesDeclined("installation of MedFusion's Python dependencies was declined")
    torchUtils = _pyTorchUtilsLogic()
    steps = installPlan(missing, torchUtils is not None)
    for step in steps:
        if step["kind"] == "pytorchutils":
            # Consent was given above; the version bound of TORCH_REQUIREMENT goes to PyTorch Utils.
            torch = _callWithSupported(torchUtils.installTorch, askConfirmation=False,
                                       torchVersionRequirement=str(step["requirement"])[len("torch"):])
            if torch is None:
                raise RuntimeError("PyTorch was not installed (PyTorch Utils reported no installation)")
        elif step["kind"] == "torch-cpu":
            slicer.util.pip_install(list(step["pipArguments"]))
        elif torchConstraint() is not None:
            # PyTorch is there (it is installed first): pin it, so that pip cannot replace it.
            import tempfile

            with tempfile.NamedTemporaryFile("w", suffix="-constraints.txt", delete=False) as handle:
                handle.write(torchConstraint() + "\n")
            try:
                slicer.util.pip_install(requirementsPipArguments(step["requirements"], handle.name))
            finally:
                os.remove(handle.name)
        else:
            ensure, load = _pipEnsure()
            if ensure is not None and load is not None and learned:
                # Consent was given above; pip_ensure would otherwise ask a second time.
                _callWithSupported(ensure, load(REQUIREMENTS_FILE), requester=requester, prompt_install=False,
                                   skip_in_testing=False)
            else:
                slicer.util.pip_install(list(step["requirements"]))
    importlib.invalidate_caches()
    still = missingRequirements(learned=learned)
    if still:
        raise RuntimeError(f"still missing after installation: {', '.join(still)}")
    logging.info("MedFusion: installed %s", ", ".join(missing))
    return missing
