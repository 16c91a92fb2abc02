"""The method registry: descriptions, parameter validation, and a method registered once appears in fuse."""

import numpy as np
import pytest

import MedFusionLib as mf
from MedFusionLib.errors import FusionInputError
from MedFusionLib.registry import Param, _REGISTRY, register

CLASSICAL = {"average", "weighted_average", "max", "min", "pca", "dwt", "laplacian", "guided_filter"}


def test_classical_methods_registered_with_complete_descriptions():
    specs = {s.name: s for s in mf.methods()}
    assert CLASSICAL <= set(specs)
    for name in CLASSICAL:
        d = specs[name].to_dict()
        assert d["family"] == "classical"
        assert d["summary"] and d["reference"]
        assert 2 in d["dims"]
        assert d["min_inputs"] == 2
        for p in d["params"]:
            assert p["help"] and p["type"] in ("int", "float", "bool", "choice", "floats")


def test_methods_filters_by_family_and_rejects_unknown_family():
    assert all(s.family == "classical" for s in mf.methods("classical"))
    with pytest.raises(FusionInputError, match="families are"):
        mf.methods("astrology")


def test_get_method_unknown_name_lists_available():
    with pytest.raises(FusionInputError, match="available methods: .*laplacian"):
        mf.get_method("nonexistent")


def test_param_coercion_from_cli_strings():
    spec = mf.get_method("dwt")
    p = spec.resolve_params({"levels": "2", "consistency": "yes", "wavelet": "haar", "threshold": "0.5"}, 2)
    assert p["levels"] == 2 and p["consistency"] is True and p["wavelet"] == "haar" and p["threshold"] == 0.5
    w = mf.get_method("weighted_average").resolve_params({"weights": "1,3"}, 2)
    assert w["weights"] == (1.0, 3.0)


@pytest.mark.parametrize("given, message", [
    ({"levels": 0}, "out of range"),
    ({"levels": 2.5}, "not a valid int"),
    ({"wavelet": "nope"}, "choose one of"),
    ({"consistency": "maybe"}, "not a valid bool"),
    ({"colour": 1}, "has no parameter"),
])
def test_param_validation_errors(given, message):
    with pytest.raises(FusionInputError, match=message):
        mf.get_method("dwt").resolve_params(given, 2)


def test_two_input_rule_refuses_three_inputs():
    with pytest.raises(FusionInputError, match="exactly 2 inputs"):
        mf.get_method("laplacian").resolve_params({"detail_rule": "local_similarity"}, 3)


def test_registering_once_makes_a_method_available_to_fuse():
    @register("_test_first_input", family="classical", summary="Returns the first input.", reference="none",
              params=(Param("gain", "float", 1.0, "Multiplier.", minimum=0.0, maximum=1.0),))
    def first(stack, gain=1.0):
        return stack[0] * gain

    try:
        assert "_test_first_input" in {s.name for s in mf.methods()}
        a = np.linspace(0, 1, 64, dtype=np.float32).reshape(8, 8)
        out = mf.fuse([a, 1 - a], method="_test_first_input", output_range="unit", input_ranges=(0, 1), gain=0.5)
        np.testing.assert_allclose(out, 0.5 * a, atol=1e-6)
        with pytest.raises(FusionInputError, match="out of range"):
            mf.fuse([a, a], method="_test_first_input", gain=2.0)
    finally:
        _REGISTRY.pop("_test_first_input", None)


def test_duplicate_registration_is_an_error():
    with pytest.raises(ValueError, match="registered twice"):
        register("average", family="classical", summary="x", reference="x")(lambda stack: stack[0])


def test_function_defaults_are_the_registered_defaults():
    """A registered function called directly (``spec.func(stack)``, as scikit-image-style library code does)
    behaves as ``fuse()`` with no parameters: every keyword default of the function equals its Param's
    default, and the function takes no parameter the registry does not describe."""
    import inspect

    for spec in mf.methods():
        signature = inspect.signature(spec.func).parameters
        described = {p.name for p in spec.params}
        assert set(signature) - described <= {"stack", "progress"}, spec.name
        for param in spec.params:
            default = signature[param.name].default
            if isinstance(param.default, (tuple, list)):
                default = list(default)
                expected = list(param.default)
            else:
                expected = param.default
            assert default == expected, (spec.name, param.name, default, param.default)
