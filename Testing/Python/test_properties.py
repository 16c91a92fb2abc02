"""Property-based tests of :func:`MedFusionLib.fuse` over every registered method (issue 12).

For each method in the registry (parametrised, so a newly registered method is covered without editing
this file), hypothesis generates calls: 2-D and 3-D shapes down to and below the method's smallest
accepted size, every real dtype (and a few that are not), constant images, extreme and tiny ranges,
NaN/Inf sprinkled in, RGB inputs and colour maps, one input too few or too many, and random valid and
invalid parameters and options. Every call must either

* return a valid result: the inputs' spatial shape (plus a colour axis for colour output), float32
  (grey) or uint8 (colour), finite, within the output range; the same call again gives the same array;
* or raise :class:`FusionInputError` *before any work*: :func:`MedFusionLib.pipeline.run` (which
  measures the windows and calls the method) was never entered;

and the input arrays are never modified. A call built only from valid ingredients must succeed; one with
a known-invalid ingredient must raise ``FusionInputError``.

Profiles (registered in ``conftest.py``): ``ci`` (default, derandomised, bounded for the 2-core CI
machines) and ``long`` (``HYPOTHESIS_PROFILE=long``, many more random cases); see docs/reliability.md.
"""

from __future__ import annotations

import functools
import os
from unittest import mock

import numpy as np
import pytest
from hypothesis import event, given, note, settings
from hypothesis import strategies as st

import MedFusionLib as mf
from MedFusionLib import colour, intensity, pipeline
from MedFusionLib.errors import FusionInputError
from MedFusionLib.registry import get_method, methods

LONG = os.environ.get("HYPOTHESIS_PROFILE", "ci") == "long"

REAL_DTYPES = (np.uint8, np.int8, np.uint16, np.int16, np.uint32, np.int32, np.uint64, np.int64,
               np.float16, np.float32, np.float64, np.longdouble)
BAD_DTYPES = (np.bool_, np.complex64, np.complex128)

# Upper bounds on parameters that only cost time (iterations of an optimiser or a PCNN, directional
# bands): the property is the same at 25 iterations as at 5000, the run time is not.
COST_CAPS = {"max_iter": 100 if LONG else 20, "iterations": 120 if LONG else 30}
MAX_DIRECTIONS = 16 if LONG else 8
MAX_INPUTS = 4


@functools.lru_cache(maxsize=None)
def min_side(name: str) -> int:
    """The smallest square 2-D image the method accepts with its default parameters (from the registry's
    checks, so a new method's limits are found without listing them here)."""
    spec = get_method(name)
    for n in range(2, 129):
        try:
            pipeline.plan([np.zeros((n, n), np.float32)] * spec.min_inputs, name)
            return n
        except FusionInputError:
            continue
    raise AssertionError(f"method {name!r} accepts no square image up to 128 x 128 with its defaults")


# --- strategies ---------------------------------------------------------------------------------------
def _is_rgb_array(a: np.ndarray) -> bool:
    """The documented rule of fuse(): an (..., 3) uint8 array of 3 or 4 dimensions is an RGB image."""
    return a.dtype == np.uint8 and a.ndim in (3, 4) and a.shape[-1] == 3


def _scalar_values(rng, shape, dtype, content):
    """An array of ``shape`` and ``dtype`` with the given kind of content, every value representable."""
    dtype = np.dtype(dtype)
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        lo_d, hi_d = float(info.min), float(info.max)
    elif dtype.kind == "f":
        big = min(float(np.finfo(dtype).max), intensity.FLOAT32_MAX)    # fuse() works in float32
        lo_d, hi_d = -big, big
    else:                                            # bool / complex: invalid dtypes, any content
        return (rng.random(shape) > 0.5).astype(dtype)
    if content == "constant":
        value = rng.choice([0.0, 1.0, -7.0, 1e4, 3e9, 1e20, 1e300, lo_d, hi_d])
        x = np.full(shape, value)
    elif content == "binary":
        x = np.where(rng.random(shape) > 0.5, rng.choice([0.0, -1e3, lo_d]), rng.choice([1.0, 4095.0, hi_d]))
    elif content == "extreme":                      # the dtype's whole range
        x = rng.uniform(-1.0, 1.0, shape) * hi_d if lo_d < 0 else rng.random(shape) * hi_d
        x.flat[0], x.flat[-1] = lo_d, hi_d
    elif content == "beyond_float32":               # float64/longdouble values float32 cannot hold
        x = rng.uniform(-1.0, 1.0, shape) * 1e300
        return x.astype(dtype) if dtype.itemsize > 4 else np.clip(x, lo_d, hi_d).astype(dtype)
    elif content == "tiny":                         # a range near float resolution (or subnormals)
        base = rng.choice([0.0, 1.0, 1e6, 1e-30, 1e-300])
        x = base + rng.random(shape) * rng.choice([1e-300, 1e-30, 1e-7, 1.0])
    elif content == "sparse":                       # a few hot spots on zero (PET-like)
        x = np.zeros(shape)
        x.flat[rng.integers(0, x.size, max(1, x.size // 50))] = rng.choice([1.0, 50.0, 1e5])
    else:                                           # 'noise': uniform over a random window
        lo = rng.choice([0.0, -1024.0, 100.0, -1e9, 1e12])
        span = rng.choice([1e-6, 1.0, 255.0, 4095.0, 1e6, 1e15])
        x = lo + rng.random(shape) * span
    with np.errstate(over="ignore", invalid="ignore"):
        return np.clip(x, lo_d, hi_d).astype(dtype)


#: The known-bad ingredients a case may carry (at most one per case; ``None``: none, the most common).
BAD_INGREDIENTS = ("input count", "dtype", "NaN/Inf", "beyond float32", "shape mismatch", "parameter value",
                   "unknown parameter", "option")


@st.composite
def fusion_cases(draw, spec):
    """One fuse() call for ``spec``: (arrays, kwargs, verdict) where verdict is 'valid', 'invalid' (one
    known-bad ingredient) or 'either' (e.g. random parameters that a method's check may refuse)."""
    bad = draw(st.one_of(st.just(None), st.sampled_from(BAD_INGREDIENTS)) if draw(st.integers(0, 2)) == 0
               else st.just(None))
    unsure = []
    side = min_side(spec.name)

    # inputs: how many
    top = min(spec.max_inputs or MAX_INPUTS, MAX_INPUTS)
    n = draw(st.integers(spec.min_inputs, top))
    if bad == "input count":
        n = draw(st.sampled_from([1] + ([spec.max_inputs + 1] if spec.max_inputs else [])))

    # shape: 2-D or 3-D, usually at or just above the smallest accepted size
    def plane_side():
        if draw(st.integers(0, 14)) == 0:
            size = draw(st.integers(1, max(1, side - 1)))
            if size < side:
                unsure.append(f"side {size} below {side}")
            return size
        return draw(st.integers(side, side + 5))

    ndim = draw(st.sampled_from([2, 3]))
    mode, axis = "auto", 0
    if ndim == 2:
        shape = (plane_side(), plane_side())
    else:
        shape = (draw(st.integers(1, 3)), plane_side(), plane_side())
        mode = draw(st.sampled_from(["auto", "auto", "slices", "3d"]))
        if mode == "3d":
            unsure.append("mode 3d")
        if draw(st.integers(0, 9)) == 0:
            axis = draw(st.sampled_from([1, 2, -1]))
            unsure.append(f"axis {axis}")
    if 1 in shape[-2:]:
        unsure.append("1-sample side")

    # inputs: dtypes and contents (the values from a seeded generator: hypothesis picks the seed)
    rng = np.random.default_rng(draw(st.integers(0, 2 ** 32 - 1)))
    spoilt = draw(st.integers(0, n - 1))          # the input that carries an input-level bad ingredient
    arrays, rgb = [], []
    for k in range(n):
        if draw(st.integers(0, 5)) == 0 and not (k == spoilt and bad in ("dtype", "NaN/Inf", "beyond float32")):
            arrays.append(_scalar_values(rng, shape + (3,), np.uint8, draw(st.sampled_from(["noise", "constant"]))))
            rgb.append(True)
            note(f"input {k}: RGB {arrays[-1].shape}")
            continue
        if k == spoilt and bad == "dtype":
            dtype = draw(st.sampled_from(BAD_DTYPES))
        elif k == spoilt and bad in ("NaN/Inf", "beyond float32"):
            dtype = draw(st.sampled_from([np.float64, np.longdouble] + ([np.float16, np.float32] if bad == "NaN/Inf" else [])))
        else:
            dtype = draw(st.sampled_from(REAL_DTYPES))
        content = "beyond_float32" if k == spoilt and bad == "beyond float32" else draw(
            st.sampled_from(["noise", "noise", "constant", "binary", "extreme", "tiny", "sparse"]))
        a = _scalar_values(rng, shape, dtype, content)
        if k == spoilt and bad == "NaN/Inf":
            a.flat[rng.integers(0, a.size, draw(st.integers(1, 3)))] = draw(st.sampled_from([np.nan, np.inf, -np.inf]))
        note(f"input {k}: {a.dtype} {a.shape} {content}")
        arrays.append(a)
        rgb.append(_is_rgb_array(a))
        if rgb[-1]:
            # A uint8 volume whose last axis has 3 samples is, by fuse()'s documented rule, an RGB image
            # (found by the long profile: such a call was marked valid and then refused as mixed shapes).
            unsure.append(f"input {k}: a uint8 (..., 3) array reads as RGB")
    if bad == "shape mismatch":
        k = spoilt if spoilt > 0 else 1 % n
        a = arrays[k]
        arrays[k] = a[..., :-1] if a.shape[-1] > 1 else np.concatenate([a, a], axis=-1)
        rgb[k] = _is_rgb_array(arrays[k])
        if n < 2:
            bad = "input count"

    # method parameters: omitted (defaults), random valid values, or one invalid value
    params = {}
    for p in spec.params:
        if draw(st.integers(0, 2)) == 0:
            params[p.name] = draw(_valid_value(p, n))
            unsure.append(f"{p.name}={params[p.name]!r}")
    if bad == "parameter value":
        if spec.params:
            p = draw(st.sampled_from(spec.params))
            params[p.name] = draw(_invalid_value(p))
        else:
            bad = "unknown parameter"
    if bad == "unknown parameter":
        params[draw(st.sampled_from(["not_a_parameter", "Levels", "progres"]))] = 1

    # options of fuse()
    kwargs = dict(params)
    if mode != "auto" or draw(st.booleans()):
        kwargs["mode"] = mode
    if axis:
        kwargs["axis"] = axis
    if bad == "option":
        key, value = draw(st.sampled_from([
            ("output_range", "hounsfield"), ("output_range", (1.0, 1.0)), ("output_range", (0.0, float("nan"))),
            ("output_range", (-1e300, 1e300)), ("percentiles", (50.0, 10.0)), ("percentiles", (-1.0, 50.0)),
            ("percentiles", (0.0, 101.0)), ("input_ranges", (5.0, 5.0)), ("input_ranges", (0.0, float("inf"))),
            ("input_ranges", (0.0, 1e-40)), ("input_ranges", [(0, 1)] * (n + 1)), ("colormap", "plasma"),
            ("colormap", ["hot"] * (n + 1)), ("mode", "4d"), ("axis", 1.5), ("batch_size", 0)]))
        kwargs[key] = value
        note(f"bad option {key}={value!r}")
    else:
        option = draw(st.integers(0, 9))
        if option == 1:
            kwargs["output_range"] = "unit"
        elif option == 2:
            lo = draw(st.sampled_from([-3e38, -1e6, 0.0, 1e6, 1e30]))
            hi = lo + draw(st.sampled_from([1e-3, 1.0, 1e6, 1e30, 6e38]))
            kwargs["output_range"] = (lo, hi)
            if not (hi <= np.finfo(np.float32).max and np.float32(hi) > np.float32(lo)):
                bad = "option"            # not representable in float32
        elif option == 3:
            lo = draw(st.floats(0.0, 60.0))
            kwargs["percentiles"] = (lo, draw(st.floats(lo + 1.0, 100.0)))
        elif option == 4:
            lo = draw(st.floats(-1e4, 1e4))
            kwargs["input_ranges"] = (lo, lo + draw(st.floats(1e-2, 1e5)))
        elif option in (5, 6):
            kwargs["colormap"] = draw(st.sampled_from(colour.colormap_names()))
            kwargs["colour_space"] = draw(st.sampled_from(colour.COLOUR_SPACES))
            if rgb[-1]:
                bad = "option"            # a colour map on an RGB input
        elif option == 7:
            kwargs["batch_size"] = draw(st.integers(1, 4))

    verdict = "invalid" if bad else ("either" if unsure else "valid")
    note(f"verdict {verdict}: {bad or unsure}")
    event(f"bad ingredient: {bad}")
    return arrays, kwargs, verdict


def _valid_value(p, n_inputs):
    hi_cap = COST_CAPS.get(p.name)
    if p.kind == "bool":
        return st.sampled_from([True, False, "true", "no", 1, 0])
    if p.kind == "choice":
        return st.sampled_from(p.choices)
    # Numbers: anywhere in the allowed range, or between its minimum and the default (more often within
    # the limits that depend on the image size, e.g. pyramid levels).
    if p.kind == "int":
        lo = int(p.minimum) if p.minimum is not None else -1000
        hi = int(p.maximum) if p.maximum is not None else lo + 1000
        hi = min(hi, hi_cap) if hi_cap else hi
        return st.one_of(st.integers(lo, hi), st.integers(lo, max(lo, min(hi, int(p.default)))))
    if p.kind == "float":
        lo = p.minimum if p.minimum is not None else -1e6
        hi = p.maximum if p.maximum is not None else lo + 1e6
        return st.one_of(st.floats(lo, hi, allow_nan=False, allow_infinity=False),
                         st.floats(lo, max(lo, p.default), allow_nan=False, allow_infinity=False))
    # 'floats': one weight per input, or a list of direction counts (powers of two mostly)
    lo = p.minimum if p.minimum is not None else -1e3
    hi = min(p.maximum if p.maximum is not None else lo + 1e3, MAX_DIRECTIONS if p.name == "directions" else 1e9)
    if p.name == "directions":
        element = st.sampled_from([d for d in (1, 2, 4, 6, 8, 16) if lo <= d <= hi])
        return st.lists(element, min_size=1, max_size=4).map(tuple)
    element = st.floats(lo, hi, allow_nan=False, allow_infinity=False)
    return st.one_of(st.lists(element, min_size=n_inputs, max_size=n_inputs), st.lists(element, max_size=5))


def _invalid_value(p):
    if p.kind == "bool":
        return st.sampled_from(["maybe", 2, 0.5, None])
    if p.kind == "choice":
        return st.sampled_from(["nope", "", None, 3])
    wrong = [float("nan"), "abc", None]
    if p.kind == "int":
        wrong += [2.5, True]
    if p.kind == "floats":
        wrong = [[], [float("nan")], [float("inf")], "a,b", 5]
    if p.minimum is not None:
        wrong.append(p.minimum - 1 if p.kind != "floats" else [p.minimum - 1])
    if p.maximum is not None:
        wrong.append(p.maximum + 1 if p.kind != "floats" else [p.maximum + 1])
    if p.kind == "float":
        wrong.append(float("inf"))
    return st.sampled_from(wrong)


# --- the oracle ---------------------------------------------------------------------------------------
def _expected_window(arrays, kwargs):
    """Where grey output must lie: 'unit', a given pair, or the first input's window."""
    output_range = kwargs.get("output_range", "reference")
    if output_range == "unit":
        return 0.0, 1.0
    if output_range != "reference":
        return tuple(float(v) for v in output_range)
    if kwargs.get("input_ranges") is not None:
        return tuple(float(v) for v in kwargs["input_ranges"])
    return intensity.robust_window(arrays[0], kwargs.get("percentiles", intensity.DEFAULT_PERCENTILES))


def _check_result(out, arrays, kwargs):
    reference = arrays[0]
    colour_output = any(_is_rgb_array(a) for a in arrays) or kwargs.get("colormap") is not None
    spatial = reference.shape[:-1] if _is_rgb_array(reference) else reference.shape
    assert isinstance(out, np.ndarray)
    assert out.shape == spatial + ((3,) if colour_output else ()), (out.shape, spatial)
    assert out.dtype == (np.uint8 if colour_output else np.float32), out.dtype
    assert np.isfinite(out).all(), "non-finite output"
    if not colour_output:
        lo, hi = _expected_window(arrays, kwargs)
        # float32 rounding of lo + y (hi - lo), and values below float32's smallest normal number
        tol = 1e-5 * max(abs(lo), abs(hi)) + float(np.finfo(np.float32).tiny)
        assert out.min() >= lo - tol and out.max() <= hi + tol, (float(out.min()), float(out.max()), lo, hi)


def _same(a, b) -> bool:
    return a.shape == b.shape and a.dtype == b.dtype and a.tobytes() == b.tobytes()


def check_fuse_call(method, arrays, kwargs, verdict):
    """Run one generated call and assert the property; returns the outcome for the statistics."""
    before = [a.copy() for a in arrays]
    entered = []
    real_run = pipeline.run

    def recording_run(fusion_plan, progress):
        entered.append(True)
        return real_run(fusion_plan, progress)

    with mock.patch.object(pipeline, "run", recording_run):
        try:
            out = mf.fuse(arrays, method, **kwargs)
        except FusionInputError as exc:
            note(f"FusionInputError: {exc}")
            assert not entered, f"FusionInputError raised after the work started: {exc}"
            assert verdict != "valid", f"a valid call was refused: {exc}"
            outcome = "FusionInputError"
        else:
            assert verdict != "invalid", "an invalid call was accepted"
            _check_result(out, arrays, kwargs)
            again = mf.fuse(arrays, method, **kwargs)
            assert _same(out, again), "the same call twice gave different results"
            outcome = "fused"
    for a, b in zip(arrays, before):
        assert _same(a, b), "an input array was modified"
    event(f"outcome: {outcome}")
    event(f"verdict: {verdict}")
    return outcome


# Parametrised over the registry: a newly registered method is covered automatically. The classical
# family runs the profile's number of examples per method; the slower signal-processing and learned
# methods a quarter of it (at least 4).
FAST = [s.name for s in methods() if s.family == "classical"]
SLOW = [s.name for s in methods() if s.family != "classical"]


@pytest.mark.parametrize("method", FAST)
@given(data=st.data())
def test_fuse_gives_a_valid_result_or_refuses_before_work(method, data):
    arrays, kwargs, verdict = data.draw(fusion_cases(get_method(method)), label="case")
    check_fuse_call(method, arrays, kwargs, verdict)


@pytest.mark.parametrize("method", SLOW)
@settings(max_examples=max(4, settings.default.max_examples // 4))
@given(data=st.data())
def test_slow_methods_give_a_valid_result_or_refuse_before_work(method, data):
    arrays, kwargs, verdict = data.draw(fusion_cases(get_method(method)), label="case")
    check_fuse_call(method, arrays, kwargs, verdict)


# --- regressions: bugs the properties found, each pinned by a plain test --------------------------------
def _refused_before_work(arrays, match, **kwargs):
    entered = []
    real_run = pipeline.run
    with mock.patch.object(pipeline, "run", lambda p, progress: entered.append(True) or real_run(p, progress)):
        with pytest.raises(FusionInputError, match=match):
            mf.fuse(arrays, **kwargs)
    assert not entered


def _finite_within(out, lo, hi):
    assert np.isfinite(out).all()
    tol = 1e-5 * max(abs(lo), abs(hi))
    assert lo - tol <= out.min() and out.max() <= hi + tol


@pytest.mark.parametrize("value", [np.iinfo(np.int64).max, np.iinfo(np.uint64).max, 3e9, 1e20])
def test_constant_image_of_huge_value_fuses(value):
    # A constant's window (v, v + 1) was empty in floating point above 2**53: ZeroDivisionError.
    dtype = np.uint64 if value == np.iinfo(np.uint64).max else (np.int64 if isinstance(value, int) else np.float64)
    constant = np.full((8, 8), value, dtype=dtype)
    other = np.arange(64, dtype=np.uint8).reshape(8, 8)
    out = mf.fuse([constant, other], "average")
    lo, hi = intensity.robust_window(constant)
    assert lo < hi and lo <= float(value) <= hi
    _finite_within(out, lo, hi)


def test_constant_image_at_the_top_of_float32_fuses():
    # Widened upwards, the window of a constant near float32's maximum would overflow to inf.
    top = np.full((8, 8), np.finfo(np.float32).max, dtype=np.float32)
    out = mf.fuse([top, np.eye(8)], "max")
    lo, hi = intensity.robust_window(top)
    assert hi <= np.finfo(np.float32).max
    _finite_within(out, lo, hi)


def test_float32_full_range_input_gives_finite_output():
    # The reference window spans float32's whole range: hi - lo overflowed float32, 0 x inf gave NaN.
    span = np.linspace(-1.0, 1.0, 64, dtype=np.float64).reshape(8, 8) * float(np.finfo(np.float32).max)
    reference = span.astype(np.float32)
    out = mf.fuse([reference, np.eye(8)], "average", percentiles=(0, 100))
    _finite_within(out, -float(np.finfo(np.float32).max), float(np.finfo(np.float32).max))


def test_values_beyond_float32_are_refused_before_work():
    # float64 values beyond float32's range gave an inf/NaN output; now a clear error.
    big = np.full((8, 8), 1e300)
    big[0, 0] = -1e300
    _refused_before_work([np.eye(8), big], "input 1 has values up to 1e\\+300 .* float32", method="average")


@pytest.mark.parametrize("option", ["input_ranges", "output_range"])
@pytest.mark.parametrize("window", [(0.0, 1e-40), (1e6, 1e6 + 1e-6), (-1e300, 1e300)])
def test_windows_unusable_in_float32_are_refused_before_work(option, window):
    # (0, 1e-40) as input_ranges scaled by 1e40 = inf in float32 and gave NaN; output windows beyond
    # float32 gave inf.
    _refused_before_work([np.eye(8), np.ones((8, 8))], "cannot be used in float32", method="average",
                         **{option: window})


@pytest.mark.parametrize("dtype", [np.int32, np.int64, np.uint64])
def test_integer_percentile_window_stays_inside_the_data(dtype):
    # numpy interpolated integer percentiles in the integer type: x[j] - x[i] overflowed and the window
    # of a full-range int64 image started below its minimum.
    info = np.iinfo(dtype)
    x = np.array([info.min, 0, info.max // 2, info.max], dtype=dtype)
    lo, hi = intensity.robust_window(x)
    assert float(info.min) <= lo < hi <= float(info.max)


def test_tiny_range_input_gives_finite_output():
    # float64 values 1e-300 apart: 1 / (hi - lo) overflowed float32 and 0 x inf gave NaN.
    tiny = 1e-300 * (1.0 + np.arange(64, dtype=np.float64).reshape(8, 8))
    out = mf.fuse([tiny, np.eye(8)], "average", output_range="unit")
    _finite_within(out, 0.0, 1.0)


@pytest.mark.parametrize("shape, mode", [((24, 24), "auto"), ((2, 24, 24), "3d"), ((2, 24, 24), "slices")])
@pytest.mark.parametrize("batch_size", [0, -3, 2.5, True, "4"])
def test_an_invalid_batch_size_is_refused_in_every_mode(shape, mode, batch_size):
    # batch_size=0 was checked only when slicing: a 2-D or 3-D call accepted it (found by the ci profile).
    a = np.random.default_rng(0).random(shape)
    _refused_before_work([a, a[::-1].copy()], "batch_size must be a positive integer", method="average", mode=mode,
                         batch_size=batch_size)
