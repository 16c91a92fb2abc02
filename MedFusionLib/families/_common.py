"""Parameter descriptions and checks shared by several method families."""

from __future__ import annotations

from typing import Any, Mapping, Optional, Tuple

from ..errors import FusionInputError
from ..registry import Param
from ..rules import BASE_RULES, DETAIL_RULES

WINDOW = Param("window", "int", 3, "Odd side of the window for local energy, similarity and the consistency "
               "check.", minimum=1, maximum=15)
THRESHOLD = Param("threshold", "float", 0.75, "Match-measure threshold of the local-similarity rule: above it "
                  "coefficients are averaged, below it the more energetic one is selected.",
                  minimum=0.0, maximum=0.99)
CONSISTENCY = Param("consistency", "bool", True, "Majority-filter the choose-max decision map over the window "
                    "(consistency verification, Li et al. 1995).")


def detail_rule_param(default: str = "max_abs") -> Param:
    return Param("detail_rule", "choice", default, "Rule for detail (high-pass) bands.", choices=DETAIL_RULES)


def base_rule_param(default: str = "mean") -> Param:
    return Param("base_rule", "choice", default, "Rule for the approximation (low-pass) band.", choices=BASE_RULES)


def check_rules(method: str, params: Mapping[str, Any], n_inputs: int) -> None:
    """Odd windows, and the two-source rules only with two inputs."""
    if "window" in params and params["window"] % 2 == 0:
        raise FusionInputError(f"method {method!r}: window must be odd; got {params['window']}")
    for key in ("detail_rule", "base_rule", "high_rule", "low_rule"):
        if params.get(key) == "local_similarity" and n_inputs != 2:
            raise FusionInputError(
                f"method {method!r}: {key}='local_similarity' compares exactly 2 inputs; got {n_inputs}. "
                f"Use 'max_abs' or 'local_energy' for three or more inputs.")


def check_levels(method: str, levels: int, max_levels: int, shape: Optional[Tuple[int, ...]]) -> None:
    if shape is not None and levels > max_levels:
        raise FusionInputError(
            f"method {method!r}: levels={levels} is too many for images of shape {shape}; "
            f"at most {max_levels} allowed")
