"""Frozen regression values of the 12 learned methods and nsst_similarity with their shipped weights
(learned_fingerprints.py).

Not references of what a method should give, but of what the shipped networks gave when frozen: the block
means and standard deviations of the fused image of a fixed phantom pair, a triple, a crop with tissue at
every border and the pair with parameters off their defaults may move by at most
``TOLERANCE`` (1e-4; float32 noise between thread counts measured at 1e-7). A changed layer, activation,
padding, normalisation or N-input fold exceeds it; averaging and pixel max are far off (checked below, so
the tolerance is shown to be tight enough)."""

import json

import numpy as np
import pytest

import MedFusionLib as mf
from learned_fingerprints import (FROZEN, TOLERANCE, VARIANTS, block_statistics, fingerprint, fingerprint_inputs,
                                  learned_methods, variant_name, weights_sha256)

with open(FROZEN, encoding="utf-8") as _fh:
    FINGERPRINTS = json.load(_fh)

REGENERATE = ("if the weights were retrained on purpose, regenerate the fingerprints: "
              ".venv/bin/python Testing/Python/learned_fingerprints.py")


def _largest_difference(got, frozen):
    return max(float(np.abs(np.asarray(got[key]) - np.asarray(frozen[key])).max()) for key in ("mean", "std"))


def test_every_learned_method_has_a_fingerprint():
    assert sorted(FINGERPRINTS["methods"]) == learned_methods()
    assert FINGERPRINTS["tolerance"] == TOLERANCE


@pytest.mark.parametrize("method", learned_methods())
def test_output_matches_the_frozen_fingerprint(method):
    frozen = FINGERPRINTS["methods"][method]
    assert weights_sha256(method) == frozen["weights_sha256"], f"the shipped {method} weights changed; {REGENERATE}"
    got = fingerprint(method)
    assert sorted(got) == sorted(k for k in frozen if k != "weights_sha256")
    for case, stats in got.items():
        difference = _largest_difference(stats, frozen[case])
        assert difference <= TOLERANCE, f"{method} ({case} inputs) moved by {difference:.2e} > {TOLERANCE:g}"


def test_the_tolerance_separates_averaging_and_pixel_max_from_every_method():
    """The fingerprint check would fail for a network replaced by the mean or the max of its inputs."""
    images = fingerprint_inputs()["two"]
    stand_ins = {name: block_statistics(mf.fuse(images, method=name, input_ranges=(0, 1), output_range="unit"))
                 for name in ("average", "max")}
    for method in learned_methods():
        for name, stats in stand_ins.items():
            assert _largest_difference(stats, FINGERPRINTS["methods"][method]["two"]) > 100 * TOLERANCE, \
                f"{method} is within 100 x tolerance of pixel {name}"


def test_each_parameter_variant_takes_another_path():
    """Every frozen variant differs from the default setting by far more than the tolerance, so it pins code
    that the default fingerprint does not."""
    for method, settings in VARIANTS.items():
        frozen = FINGERPRINTS["methods"][method]
        for params in settings:
            assert _largest_difference(frozen[variant_name(params)], frozen["two"]) > 10 * TOLERANCE, (method, params)
