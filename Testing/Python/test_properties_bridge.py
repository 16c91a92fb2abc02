"""Property-based test of :func:`MedFusionLib.bridge.fuse_volume_nodes` on real slicer-core scenes (issue 12).

Generated volume nodes (scalar of several VTK types, or RGB vector volumes; on one grid or on grids that
need resampling; NaN/Inf sprinkled in; values beyond float32), methods drawn from the registry, random
valid and invalid parameters. Every call must either add a valid fused node (the reference's shape,
float32 or RGB uint8 voxels, finite; the same call twice gives the same voxels) or raise
:class:`FusionInputError` before any resampling or fusion and without adding a node; the input nodes'
voxels and geometry are never modified. Profiles as in ``test_properties.py``.
"""

from __future__ import annotations

from unittest import mock

import numpy as np
import pytest
from hypothesis import event, given, note, settings
from hypothesis import strategies as st

from MedFusionLib import bridge, pipeline
from MedFusionLib.errors import FusionInputError
from MedFusionLib.registry import get_method, methods

from test_properties import _valid_value, _invalid_value, _scalar_values, min_side

# VTK scalar types a volume node holds; int64/uint64 too (VTK_LONG_LONG).
NODE_DTYPES = (np.uint8, np.int8, np.uint16, np.int16, np.uint32, np.int32, np.int64, np.float32, np.float64)
# Classical methods (fast), plus the learned and signal-processing ones in the long profile.
FAST = [s.name for s in methods() if s.family == "classical"]


def _geometry(node):
    matrix = bridge._ijk_to_ras(node)
    return tuple(matrix.GetElement(r, c) for r in range(4) for c in range(4))


@st.composite
def bridge_cases(draw):
    names = [s.name for s in methods()] if settings.default.max_examples > 100 else FAST
    method = draw(st.sampled_from(names))
    spec = get_method(method)
    side = min_side(method)
    bad = draw(st.sampled_from([None] * 6 + ["NaN/Inf", "beyond float32", "parameter value", "input count"]))
    n = draw(st.integers(spec.min_inputs, min(spec.max_inputs or 3, 3)))
    if bad == "input count":
        n = 1
    shape = (draw(st.integers(1, 3)), draw(st.integers(side, side + 3)), draw(st.integers(side, side + 3)))
    rng = np.random.default_rng(draw(st.integers(0, 2 ** 32 - 1)))
    spoilt = draw(st.integers(0, n - 1))
    inputs = []
    for k in range(n):
        rgb = k != spoilt and draw(st.integers(0, 5)) == 0
        if rgb:
            array = _scalar_values(rng, shape + (3,), np.uint8, "noise")
        else:
            dtype = (draw(st.sampled_from([np.float32, np.float64])) if k == spoilt and bad == "NaN/Inf" else
                     np.float64 if k == spoilt and bad == "beyond float32" else draw(st.sampled_from(NODE_DTYPES)))
            content = ("beyond_float32" if k == spoilt and bad == "beyond float32" else
                       draw(st.sampled_from(["noise", "constant", "binary", "extreme", "sparse"])))
            array = _scalar_values(rng, shape, dtype, content)
            if k == spoilt and bad == "NaN/Inf":
                array.flat[rng.integers(0, array.size, 2)] = draw(st.sampled_from([np.nan, np.inf, -np.inf]))
        # Other inputs on their own grid half the time: the bridge resamples them onto the first's.
        moved = k > 0 and draw(st.booleans())
        spacing = (1.0, 1.0, 1.0) if not moved else tuple(draw(st.sampled_from([0.5, 1.0, 2.5])) for _ in range(3))
        origin = (0.0, 0.0, 0.0) if not moved else tuple(draw(st.floats(-3.0, 3.0)) for _ in range(3))
        inputs.append((array, spacing, origin))
    params = {}
    for p in spec.params:
        if draw(st.integers(0, 3)) == 0:
            params[p.name] = draw(_valid_value(p, n))
    if bad == "parameter value" and spec.params:
        p = draw(st.sampled_from(spec.params))
        params[p.name] = draw(_invalid_value(p))
    elif bad == "parameter value":
        params["not_a_parameter"] = 1
    if draw(st.integers(0, 4)) == 0:
        params["colormap"] = draw(st.sampled_from(["hot", "pet"]))
    return method, inputs, params, bad


def _fuse(nodes, method, params):
    return bridge.fuse_volume_nodes(nodes, method, **params)


def check_bridge_call(method, inputs, params, bad):
    scene = bridge.new_scene()
    nodes = [bridge.node_from_array(scene, a, f"in{k}", spacing=s, origin=o) for k, (a, s, o) in enumerate(inputs)]
    before = [(np.array(bridge._voxel_view(node)), _geometry(node)) for node in nodes]
    count = scene.GetNumberOfNodes()
    worked = []
    real_resample, real_fuse = bridge.resample_to_reference, pipeline.fuse

    def resample(*args, **kwargs):
        worked.append("resample")
        return real_resample(*args, **kwargs)

    def fuse(*args, **kwargs):
        worked.append("fuse")
        return real_fuse(*args, **kwargs)

    with mock.patch.object(bridge, "resample_to_reference", resample), mock.patch.object(pipeline, "fuse", fuse):
        try:
            node = _fuse(nodes, method, params)
        except FusionInputError as exc:
            note(f"FusionInputError: {exc}")
            assert not worked, f"FusionInputError raised after {worked}: {exc}"
            assert scene.GetNumberOfNodes() == count, "a node was added although the call was refused"
            outcome = "FusionInputError"
        else:
            assert bad is None, f"accepted with bad ingredient {bad}"
            out = np.array(bridge._voxel_view(node))
            reference = inputs[0][0]
            colour = any(a.dtype == np.uint8 and a.ndim == 4 for a, _, _ in inputs) or "colormap" in params
            spatial = reference.shape[:3]
            assert out.shape == spatial + ((3,) if colour else ()), (out.shape, spatial)
            assert out.dtype == (np.uint8 if colour else np.float32)
            assert np.isfinite(out).all()
            assert _geometry(node) == _geometry(nodes[0])
            again = np.array(bridge._voxel_view(_fuse(nodes, method, params)))
            assert again.tobytes() == out.tobytes(), "the same call twice gave different voxels"
            outcome = "fused"
    for node, (voxels, geometry) in zip(nodes, before):
        now = bridge._voxel_view(node)
        assert now.dtype == voxels.dtype and now.tobytes() == voxels.tobytes(), "an input node's voxels changed"
        assert _geometry(node) == geometry, "an input node's geometry changed"
    event(f"outcome: {outcome}")
    event(f"bad ingredient: {bad}")


@given(case=bridge_cases())
def test_fuse_volume_nodes_gives_a_valid_node_or_refuses_before_work(case):
    check_bridge_call(*case)
