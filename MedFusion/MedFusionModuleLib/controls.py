"""Method parameters in the panel: a registry ``Param`` as a control description, and stored values.

The panel builds one control per parameter of the chosen method from :func:`controlSpec`, so a newly
registered method gets its controls without any change to the widget. The widget's Qt code is a thin
loop over these descriptions (``MedFusion.py``); everything that decides *what* a control looks like
and what value it produces lives here and is tested without Qt.

Method parameters differ per method, so the parameter node keeps them as one JSON object
``{method name: {parameter name: value}}`` (a string parameter): switching methods keeps each method's
edits, and compare-methods runs each method with its own stored values.
"""

from __future__ import annotations

import json
import math
from typing import Any, Dict, List, Mapping, Optional, Tuple

# Parameters named like this are set from the panel's device selector, not from their own control.
DEVICE_PARAMETER = "device"

# Qt's int spin box range.
_INT_MIN, _INT_MAX = -(2 ** 31), 2 ** 31 - 1
# Unbounded floats get a wide but finite spin box range.
_FLOAT_LIMIT = 1e9
# A positive float range spanning more than this ratio is edited as text (e.g. eps 1e-12..10): a spin
# box with fixed decimals cannot show both ends.
_LOG_RANGE_RATIO = 1e4
_MAX_DECIMALS = 6


def prettyLabel(name: str) -> str:
    """``'base_filter_eps'`` -> ``'Base filter eps'``."""
    text = name.replace("_", " ").strip()
    return text[:1].upper() + text[1:]


def _formatNumber(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def tooltip(param) -> str:
    """Tooltip of a parameter's control: its help, the allowed values and the default."""
    default = param.default
    if param.kind == "floats":
        shown = "derived from the inputs" if default is None else ", ".join(_formatNumber(v) for v in default)
    elif param.kind == "bool":
        shown = "on" if default else "off"
    else:
        shown = _formatNumber(default)
    return f"{param.help} Allowed: {param.describe_range()}. Default: {shown}."


def _decimals(*values: Optional[float]) -> int:
    """Enough decimals to show every given number exactly (up to _MAX_DECIMALS), at least 2."""
    needed = 2
    for v in values:
        if v is None or v == 0 or not math.isfinite(v):
            continue
        text = f"{abs(v):.{_MAX_DECIMALS}f}".rstrip("0")
        if "." in text:
            needed = max(needed, len(text.split(".")[1]))
    return min(needed, _MAX_DECIMALS)


def _singleStep(minimum: float, maximum: float, decimals: int) -> float:
    span = maximum - minimum
    if not math.isfinite(span) or span <= 0 or span >= 2 * _FLOAT_LIMIT:
        return 1.0
    step = 10.0 ** math.floor(math.log10(span / 100.0)) if span >= 1e-12 else 10.0 ** -decimals
    return max(step, 10.0 ** -decimals)


def controlSpec(param) -> Dict[str, Any]:
    """Describe the Qt control for one method parameter.

    Parameters
    ----------
    param : MedFusionLib.Param

    Returns
    -------
    dict
        ``name``, ``label``, ``tooltip``, ``kind`` (the Param kind) and ``widget``, one of
        ``'QSpinBox'`` (``minimum``, ``maximum``, ``singleStep``, ``value``), ``'QDoubleSpinBox'``
        (``minimum``, ``maximum``, ``decimals``, ``singleStep``, ``value``), ``'QCheckBox'``
        (``checked``), ``'QComboBox'`` (``items``, ``currentText``) or ``'QLineEdit'`` (``text``,
        ``placeholderText``; for lists of numbers and for positive floats whose range spans several
        orders of magnitude, which a spin box with fixed decimals cannot edit).
    """
    spec: Dict[str, Any] = {"name": param.name, "label": prettyLabel(param.name), "tooltip": tooltip(param),
                            "kind": param.kind}
    if param.kind == "int":
        spec.update(widget="QSpinBox",
                    minimum=int(param.minimum) if param.minimum is not None else _INT_MIN,
                    maximum=int(param.maximum) if param.maximum is not None else _INT_MAX,
                    singleStep=1, value=int(param.default))
    elif param.kind == "float":
        lo = float(param.minimum) if param.minimum is not None else -_FLOAT_LIMIT
        hi = float(param.maximum) if param.maximum is not None else _FLOAT_LIMIT
        if lo > 0 and hi / lo > _LOG_RANGE_RATIO:
            spec.update(widget="QLineEdit", text=repr(float(param.default)),
                        placeholderText=f"a number in {param.describe_range()}")
        else:
            decimals = _decimals(param.minimum, param.maximum, param.default)
            spec.update(widget="QDoubleSpinBox", minimum=lo, maximum=hi, decimals=decimals,
                        singleStep=_singleStep(lo, hi, decimals), value=float(param.default))
    elif param.kind == "bool":
        spec.update(widget="QCheckBox", checked=bool(param.default))
    elif param.kind == "choice":
        spec.update(widget="QComboBox", items=list(param.choices), currentText=str(param.default))
    elif param.kind == "floats":
        text = "" if param.default is None else ", ".join(_formatNumber(float(v)) for v in param.default)
        placeholder = ("comma-separated numbers; empty: derived from the inputs" if param.default is None
                       else "comma-separated numbers")
        spec.update(widget="QLineEdit", text=text, placeholderText=placeholder)
    else:  # a kind the registry added later: edit as text, the library validates it
        spec.update(widget="QLineEdit", text="" if param.default is None else str(param.default),
                    placeholderText=param.describe_range())
    return spec


def methodControlSpecs(spec) -> List[Dict[str, Any]]:
    """Control descriptions for every parameter of a method (``MethodSpec``), in registry order.

    A parameter named ``device`` is left out: the panel's device selector sets it."""
    return [controlSpec(p) for p in spec.params if p.name != DEVICE_PARAMETER]


def setControlValue(controlSpecDict: Mapping[str, Any], value: Any) -> Dict[str, Any]:
    """The control properties that show ``value`` (a stored parameter value) in a described control.

    Returns a dict with one of ``value``, ``checked``, ``currentText`` or ``text``."""
    widget = controlSpecDict["widget"]
    if widget in ("QSpinBox", "QDoubleSpinBox"):
        return {"value": value}
    if widget == "QCheckBox":
        return {"checked": bool(value)}
    if widget == "QComboBox":
        return {"currentText": str(value)}
    if value is None:
        return {"text": ""}
    if isinstance(value, (list, tuple)):
        return {"text": ", ".join(_formatNumber(float(v)) for v in value)}
    return {"text": repr(value) if isinstance(value, float) else str(value)}


def valueFromControl(param, raw: Any, method: str = "") -> Any:
    """The parameter value a control shows, as a JSON-friendly Python value, validated.

    ``raw`` is what the control holds: an int or float (spin boxes), a bool (check box), a str (combo
    box, line edit). Raises ``MedFusionLib.FusionInputError`` (via ``Param.coerce``) when the value is
    not allowed; an empty line edit for a ``floats`` parameter gives ``None`` ("derived")."""
    if param.kind == "floats" and isinstance(raw, str) and not raw.strip():
        return None
    value = param.coerce(raw, method)
    if isinstance(value, tuple):
        return list(value)
    return value


def loadStored(text: Optional[str]) -> Dict[str, Dict[str, Any]]:
    """Parse the stored method parameters (the parameter node's JSON string); bad text gives ``{}``."""
    if not text:
        return {}
    try:
        data = json.loads(text)
    except (TypeError, ValueError):
        return {}
    if not isinstance(data, dict):
        return {}
    return {str(m): dict(v) for m, v in data.items() if isinstance(v, dict)}


def dumpStored(stored: Mapping[str, Mapping[str, Any]]) -> str:
    """Serialise stored method parameters (stable key order, so unchanged values give the same text)."""
    return json.dumps({m: dict(v) for m, v in stored.items()}, sort_keys=True)


def withValue(text: Optional[str], method: str, name: str, value: Any) -> str:
    """The stored-parameters JSON with ``method``'s parameter ``name`` set to ``value``."""
    stored = loadStored(text)
    stored.setdefault(method, {})[name] = value
    return dumpStored(stored)


def withoutMethod(text: Optional[str], method: str) -> str:
    """The stored-parameters JSON with ``method``'s values removed (back to its defaults)."""
    stored = loadStored(text)
    stored.pop(method, None)
    return dumpStored(stored)


def parametersForMethod(spec, stored: Mapping[str, Mapping[str, Any]]) -> Tuple[Dict[str, Any], List[str]]:
    """The parameter values to run ``spec`` (a ``MethodSpec``) with, from stored values and defaults.

    Returns ``(values, problems)``: ``values`` holds every parameter of the method (stored value when it
    is valid, else the default; ``device`` left out), ``problems`` one message per stored value that was
    unknown or invalid and therefore ignored.
    """
    given = dict(stored.get(spec.name, {}))
    values: Dict[str, Any] = {}
    problems: List[str] = []
    known = {p.name: p for p in spec.params if p.name != DEVICE_PARAMETER}
    for name in sorted(set(given) - set(known)):
        problems.append(f"method {spec.name!r} has no parameter {name!r}; stored value ignored")
    for name, param in known.items():
        if name in given:
            try:
                values[name] = valueFromControl(param, given[name], spec.name)
                continue
            except ValueError as error:   # FusionInputError is a ValueError
                problems.append(f"{error}; using the default")
        values[name] = list(param.default) if isinstance(param.default, tuple) else param.default
    return values, problems
