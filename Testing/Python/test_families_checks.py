"""Parameter checks of the classical families through fuse() (messages name the method and the limit) and the
PCA weights for three sources, batches and constant inputs (added from the surviving mutants of the mutation
run, docs/testing.md 'Mutation testing')."""

import numpy as np
import pytest

import MedFusionLib as mf
from MedFusionLib.errors import FusionInputError
from MedFusionLib.families.pca import pca_weights


def _pair(shape=(32, 32), n=2, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.random(shape).astype(np.float32) for _ in range(n)]


@pytest.mark.parametrize("method, levels, shape", [("dwt", 8, (32, 32)), ("dwt", 2, (8, 8)),
                                                   ("laplacian", 9, (32, 32))])
def test_too_many_levels_are_rejected_naming_the_method(method, levels, shape):
    with pytest.raises(FusionInputError, match=rf"method '{method}': levels={levels} is too many for images of "
                                               rf"shape \({shape[0]}, {shape[1]}\); at most \d allowed"):
        mf.fuse(_pair(shape), method=method, levels=levels)
    mf.fuse(_pair(shape), method=method, levels=1)


@pytest.mark.parametrize("method, rule", [("dwt", "high_rule"), ("laplacian", "detail_rule")])
def test_window_and_two_source_rule_checks_name_the_method(method, rule):
    with pytest.raises(FusionInputError, match=rf"method '{method}': window must be odd; got 4"):
        mf.fuse(_pair(), method=method, window=4)
    with pytest.raises(FusionInputError, match=rf"method '{method}': {rule}='local_similarity' compares exactly "
                                               r"2 inputs; got 3"):
        mf.fuse(_pair(n=3), method=method, **{rule: "local_similarity"})


def test_weighted_average_weights_check():
    a, b = _pair()
    out = mf.fuse([a, b], method="weighted_average", weights=(0.5, 0.5), input_ranges=(0, 1),
                  output_range=(0, 1))
    np.testing.assert_allclose(out, (a + b) / 2, atol=1e-6)
    with pytest.raises(FusionInputError, match=r"^method 'weighted_average': weights must not all be zero$"):
        mf.fuse([a, b], method="weighted_average", weights=(0, 0))


def test_pca_weights_three_sources_batches_and_constant_inputs():
    rng = np.random.default_rng(4)
    stack = rng.standard_normal((3, 2, 50)) * np.array([1.0, 2.0, 0.5])[:, None, None]
    stack[1, 1] += 0.8 * stack[0, 1]
    weights = pca_weights(stack.reshape(3, 2, 5, 10))
    for k in range(2):                                      # each batch item on its own
        x = stack[:, k]
        values, vectors = np.linalg.eigh(np.cov(x))
        principal = np.abs(vectors[:, np.argmax(values)])
        np.testing.assert_allclose(weights[:, k], principal / principal.sum(), atol=1e-12)
    assert not np.allclose(weights[:, 0], weights[:, 1])
    const = np.ones((2, 3, 4, 4))
    const[1] *= 5.0
    np.testing.assert_array_equal(pca_weights(const), np.full((2, 3), 0.5))
