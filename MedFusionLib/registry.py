"""The one method registry that the API, the command line and the Slicer panel read.

A fusion method is a function that takes a stack of normalised images and returns the fused image (see
:func:`register` for the exact contract). Decorating it with :func:`register` describes it once (family,
one-line summary, reference, typed parameters with defaults, ranges and help, 2-D/3-D support, how many
inputs it takes) and makes it appear in :func:`MedFusionLib.fuse`, ``medfusion methods`` and the
Slicer panel. Modules in :mod:`MedFusionLib.families` are imported on first use of the registry, so a new
family module placed there registers itself.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

from .errors import FusionInputError

#: Method families, in the order the documentation and the Slicer panel list them.
FAMILIES = ("classical", "signal processing", "deep learning")

PARAM_KINDS = ("int", "float", "bool", "choice", "floats")

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


@dataclass(frozen=True)
class Param:
    """One method parameter: what the API validates, the CLI parses and the Slicer panel shows.

    Parameters
    ----------
    name : str
        Keyword name in :func:`MedFusionLib.fuse`.
    kind : {'int', 'float', 'bool', 'choice', 'floats'}
        Value type. ``'floats'`` is a sequence of numbers (e.g. one weight per input); ``'choice'`` is
        one of ``choices`` (strings).
    default : object
        Value used when the caller gives none (``None`` allowed for ``'floats'``: "derive it").
    help : str
        One sentence for tooltips and ``medfusion methods``.
    minimum, maximum : float, optional
        Inclusive range for numbers (for ``'floats'``, for each element).
    choices : tuple of str
        Allowed values of a ``'choice'`` parameter.
    """

    name: str
    kind: str
    default: Any
    help: str
    minimum: Optional[float] = None
    maximum: Optional[float] = None
    choices: Tuple[str, ...] = ()

    def __post_init__(self):
        if self.kind not in PARAM_KINDS:
            raise ValueError(f"parameter {self.name!r}: kind must be one of {PARAM_KINDS}, got {self.kind!r}")
        if self.kind == "choice" and self.default not in self.choices:
            raise ValueError(f"parameter {self.name!r}: default {self.default!r} not in {self.choices}")

    def describe_range(self) -> str:
        """Human-readable allowed values, e.g. ``'1..8'`` or ``'max_abs | local_energy'``."""
        if self.kind == "choice":
            return " | ".join(self.choices)
        if self.kind == "bool":
            return "true | false"
        lo = "" if self.minimum is None else f"{self.minimum:g}"
        hi = "" if self.maximum is None else f"{self.maximum:g}"
        if not lo and not hi:
            return "any" if self.kind != "floats" else "list of numbers"
        rng = f"{lo}..{hi}"
        return rng if self.kind != "floats" else f"list of numbers in {rng}"

    def _check_number(self, value: float, method: str) -> None:
        if (self.minimum is not None and value < self.minimum) or (self.maximum is not None and value > self.maximum):
            raise FusionInputError(
                f"method {method!r}: parameter {self.name}={value!r} is out of range; allowed: {self.describe_range()}")

    def coerce(self, value: Any, method: str) -> Any:
        """Convert ``value`` (a Python value or a command-line string) to this parameter's type.

        Raises
        ------
        FusionInputError
            When the value has the wrong type or lies outside the allowed range or choices.
        """
        where = f"method {method!r}: parameter {self.name}"
        try:
            if self.kind == "bool":
                if isinstance(value, str):
                    low = value.strip().lower()
                    if low in _TRUE:
                        return True
                    if low in _FALSE:
                        return False
                    raise ValueError
                if isinstance(value, (bool, int)) and value in (0, 1):
                    return bool(value)
                raise ValueError
            if self.kind == "int":
                if isinstance(value, bool):
                    raise ValueError
                if isinstance(value, str):
                    value = value.strip()
                number = float(value)
                if not number.is_integer():
                    raise ValueError
                number = int(number)
                self._check_number(number, method)
                return number
            if self.kind == "float":
                if isinstance(value, bool):
                    raise ValueError
                number = float(value)
                if number != number or number in (float("inf"), float("-inf")):
                    raise ValueError
                self._check_number(number, method)
                return number
            if self.kind == "choice":
                text = str(value).strip()
                if text not in self.choices:
                    raise FusionInputError(
                        f"{where}={value!r} is not allowed; choose one of: {', '.join(self.choices)}")
                return text
            # floats
            if value is None:
                return None
            if isinstance(value, str):
                parts = [p for p in value.replace(";", ",").split(",") if p.strip()]
                numbers = tuple(float(p) for p in parts)
            else:
                numbers = tuple(float(v) for v in value)
            if not numbers or any(n != n or n in (float("inf"), float("-inf")) for n in numbers):
                raise ValueError
            for n in numbers:
                self._check_number(n, method)
            return numbers
        except FusionInputError:
            raise
        except (TypeError, ValueError):
            raise FusionInputError(
                f"{where}={value!r} is not a valid {self.kind}; allowed: {self.describe_range()}") from None

    def to_dict(self) -> Dict[str, Any]:
        return {"name": self.name, "type": self.kind, "default": self.default, "help": self.help,
                "minimum": self.minimum, "maximum": self.maximum, "choices": list(self.choices),
                "allowed": self.describe_range()}


@dataclass(frozen=True)
class MethodSpec:
    """Everything the library knows about one registered fusion method (see :func:`register`)."""

    name: str
    family: str
    summary: str
    reference: str
    func: Callable = field(repr=False, compare=False)
    params: Tuple[Param, ...] = ()
    dims: Tuple[int, ...] = (2,)
    min_inputs: int = 2
    max_inputs: Optional[int] = None
    batched: bool = True
    check: Optional[Callable[[Mapping[str, Any], int, Tuple[int, ...]], None]] = field(
        default=None, repr=False, compare=False)
    wants_progress: bool = False

    @property
    def supports_3d(self) -> bool:
        return 3 in self.dims

    def param(self, name: str) -> Param:
        for p in self.params:
            if p.name == name:
                return p
        raise KeyError(name)

    def describe_inputs(self) -> str:
        if self.max_inputs is None:
            return f"{self.min_inputs} or more"
        if self.max_inputs == self.min_inputs:
            return f"exactly {self.min_inputs}"
        return f"{self.min_inputs} to {self.max_inputs}"

    def resolve_params(self, given: Mapping[str, Any], n_inputs: Optional[int] = None,
                       shape: Optional[Tuple[int, ...]] = None) -> Dict[str, Any]:
        """Validate ``given`` against this method's parameters and fill in defaults.

        Parameters
        ----------
        given : mapping
            Parameter values by name (Python values or command-line strings).
        n_inputs : int, optional
            Number of inputs, checked against the method's limits and its parameter-dependent rules.
        shape : tuple of int, optional
            Spatial shape of one image as the method will see it (2-D slice or 3-D volume), passed to
            the method's ``check`` (e.g. to bound the number of decomposition levels).

        Returns
        -------
        dict
            Every parameter of the method, coerced to its type.

        Raises
        ------
        FusionInputError
            Unknown parameter names, bad values, or an input count the method cannot take.
        """
        known = {p.name: p for p in self.params}
        unknown = sorted(set(given) - set(known))
        if unknown:
            allowed = ", ".join(known) if known else "none"
            raise FusionInputError(
                f"method {self.name!r} has no parameter(s) {', '.join(unknown)}; its parameters are: {allowed}")
        resolved = {name: (p.coerce(given[name], self.name) if name in given else p.default)
                    for name, p in known.items()}
        if n_inputs is not None:
            if n_inputs < self.min_inputs or (self.max_inputs is not None and n_inputs > self.max_inputs):
                raise FusionInputError(
                    f"method {self.name!r} takes {self.describe_inputs()} inputs; got {n_inputs}")
            if self.check is not None:
                self.check(resolved, n_inputs, tuple(shape) if shape is not None else None)
        return resolved

    def to_dict(self) -> Dict[str, Any]:
        return {"name": self.name, "family": self.family, "summary": self.summary,
                "reference": self.reference, "dims": list(self.dims), "min_inputs": self.min_inputs,
                "max_inputs": self.max_inputs, "params": [p.to_dict() for p in self.params]}


_REGISTRY: Dict[str, MethodSpec] = {}
_LOADED = False


def register(name: str, *, family: str, summary: str, reference: str, params: Sequence[Param] = (),
             dims: Sequence[int] = (2,), min_inputs: int = 2, max_inputs: Optional[int] = None,
             batched: bool = True,
             check: Optional[Callable[[Mapping[str, Any], int, Optional[Tuple[int, ...]]], None]] = None):
    """Class the decorated function as fusion method ``name``.

    The function is called as ``func(stack, **params)`` where ``stack`` is a C-contiguous float32 array
    of shape ``(N, B, *spatial)``: N inputs, a batch of B independent images (slices), and 2 or 3
    spatial axes, every value normalised to [0, 1]. It returns the fused batch ``(B, *spatial)`` in
    [0, 1] (the pipeline clips) and must not modify ``stack``. When the function has a ``progress``
    keyword it receives a :class:`MedFusionLib.progress.Progress` for its own sub-steps.

    ``check(params, n_inputs, shape)`` may raise :class:`FusionInputError` for parameter-dependent
    limits (e.g. a rule defined for two inputs only, or more levels than the image size allows);
    ``shape`` is the spatial shape of one image, or None when it is not known yet. ``batched=False`` makes the pipeline pass one image at a
    time. ``dims`` lists the spatial dimensionalities the function handles natively.
    """
    if family not in FAMILIES:
        raise ValueError(f"family must be one of {FAMILIES}, got {family!r}")
    if not set(dims) <= {2, 3} or 2 not in dims:
        raise ValueError("dims must contain 2 and may contain 3")

    def decorator(func: Callable) -> Callable:
        if name in _REGISTRY and _REGISTRY[name].func is not func:
            raise ValueError(f"method {name!r} is registered twice")
        wants_progress = "progress" in inspect.signature(func).parameters
        _REGISTRY[name] = MethodSpec(name=name, family=family, summary=summary, reference=reference,
                                     func=func, params=tuple(params), dims=tuple(sorted(dims)),
                                     min_inputs=min_inputs, max_inputs=max_inputs, batched=batched,
                                     check=check, wants_progress=wants_progress)
        return func

    return decorator


def _load_builtin_methods() -> None:
    global _LOADED
    if _LOADED:
        return
    from . import families as package

    for info in pkgutil.iter_modules(package.__path__):
        if not info.name.startswith("_"):
            importlib.import_module(f"{package.__name__}.{info.name}")
    _LOADED = True


def get_method(name: str) -> MethodSpec:
    """The :class:`MethodSpec` registered as ``name``.

    Raises
    ------
    FusionInputError
        When no method of that name exists; the message lists the available ones.
    """
    _load_builtin_methods()
    if not isinstance(name, str) or name not in _REGISTRY:
        raise FusionInputError(
            f"unknown fusion method {name!r}; available methods: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name]


def methods(family: Optional[str] = None) -> List[MethodSpec]:
    """All registered methods, grouped by family (in :data:`FAMILIES` order), then by name.

    Each :class:`MethodSpec` carries the name, family, one-line summary, reference, typed parameters
    (default, allowed range or choices, help), supported dimensionalities and the number of inputs it
    takes; ``spec.to_dict()`` gives the same as plain data.
    """
    _load_builtin_methods()
    if family is not None and family not in FAMILIES:
        raise FusionInputError(f"unknown family {family!r}; families are: {', '.join(FAMILIES)}")
    specs = [s for s in _REGISTRY.values() if family is None or s.family == family]
    return sorted(specs, key=lambda s: (FAMILIES.index(s.family), s.name))
