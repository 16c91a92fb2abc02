"""The Slicer bridge on real slicer-core scenes and nodes: resampling through geometry and transforms,
output nodes, inputs left untouched, errors and cancel before any scene change, file IO."""

import json
import os

import numpy as np
import pytest
import slicer
import vtk
from slicer.util import updateVolumeFromArray

import MedFusionLib as mf
from MedFusionLib import bridge
from MedFusionLib.errors import FusionCancelled, FusionInputError

SHAPE = (16, 20, 24)   # (K, J, I)


# --- helpers -------------------------------------------------------------------------------------------
def add_volume(scene, array, name="vol", ijk_to_ras=None, spacing=None, origin=None, vector=False):
    """Add a scalar (or RGB vector) volume node with the given voxels and geometry."""
    node = scene.AddNewNodeByClass("vtkMRMLVectorVolumeNode" if vector else "vtkMRMLScalarVolumeNode", name)
    updateVolumeFromArray(node, array)
    if ijk_to_ras is not None:
        matrix = vtk.vtkMatrix4x4()
        for r in range(4):
            for c in range(4):
                matrix.SetElement(r, c, ijk_to_ras[r][c])
        node.SetIJKToRASMatrix(matrix)
    if spacing is not None:
        node.SetSpacing(*spacing)
    if origin is not None:
        node.SetOrigin(*origin)
    return node


def ijk_to_ras(node):
    matrix = vtk.vtkMatrix4x4()
    node.GetIJKToRASMatrix(matrix)
    return np.array([[matrix.GetElement(r, c) for c in range(4)] for r in range(4)])


def ras_of(node, kji):
    """RAS (node-local, before parent transforms) of voxel (k, j, i)."""
    k, j, i = kji
    return (ijk_to_ras(node) @ np.array([i, j, k, 1.0]))[:3]


def kji_of(node, ras):
    """Continuous (k, j, i) index of a node-local RAS point."""
    i, j, k, _ = np.linalg.inv(ijk_to_ras(node)) @ np.array([*ras, 1.0])
    return np.array([k, j, i])


def centroid(array):
    weights = np.asarray(array, dtype=float)
    weights = weights - weights.min()
    indices = np.indices(weights.shape).reshape(weights.ndim, -1)
    return (indices * weights.ravel()).sum(axis=1) / weights.sum()


def cube_volume(shape, center_kji, half=2, value=100.0, background=0.0, dtype=np.float32):
    array = np.full(shape, background, dtype=dtype)
    k, j, i = (int(round(c)) for c in center_kji)
    array[k - half:k + half + 1, j - half:j + half + 1, i - half:i + half + 1] = value
    return array


def add_translation(scene, offset, name="shift"):
    node = scene.AddNewNodeByClass("vtkMRMLLinearTransformNode", name)
    matrix = vtk.vtkMatrix4x4()
    for axis in range(3):
        matrix.SetElement(axis, 3, offset[axis])
    node.SetMatrixTransformToParent(matrix)
    return node


def snapshot(node):
    """What must not change on an input node: voxels, geometry, transform and modification times."""
    image = node.GetImageData()
    return (np.array(bridge.array_from_node(node)), ijk_to_ras(node), node.GetTransformNodeID(),
            node.GetMTime(), image.GetMTime(), image.GetPointData().GetScalars().GetMTime())


def assert_unchanged(before, node):
    after = snapshot(node)
    np.testing.assert_array_equal(before[0], after[0])
    np.testing.assert_array_equal(before[1], after[1])
    assert before[2:] == after[2:]


@pytest.fixture
def scene():
    return bridge.new_scene()


@pytest.fixture
def pair(scene):
    """A reference 'CT' and a 'PET' with one hot cube, on the same grid (spacing 1.5, shifted origin)."""
    rng = np.random.default_rng(7)
    ct = (rng.normal(40, 10, SHAPE) + cube_volume(SHAPE, (8, 10, 12), half=4, value=900)).astype(np.int16)
    pet = cube_volume(SHAPE, (6, 9, 14), value=5.0)
    geometry = dict(spacing=(1.5, 1.5, 2.0), origin=(-10.0, 20.0, 5.0))
    return add_volume(scene, ct, "CT", **geometry), add_volume(scene, pet, "PET", **geometry)


# --- same grid -----------------------------------------------------------------------------------------
def test_same_grid_equals_fuse_on_arrays(scene, pair):
    ct, pet = pair
    expected = mf.fuse([slicer.util.arrayFromVolume(ct), slicer.util.arrayFromVolume(pet)], "laplacian", levels=2)
    out = bridge.fuse_volume_nodes([ct, pet], "laplacian", levels=2)
    np.testing.assert_array_equal(bridge.array_from_node(out), expected)
    assert out.GetClassName() == "vtkMRMLScalarVolumeNode"
    assert bridge.array_from_node(out).dtype == np.float32
    assert out.GetName() == "CT fused (laplacian)"
    assert out.GetScene() is scene and out.GetDisplayNode() is not None


def test_output_geometry_and_transform_are_the_reference_ones(scene, pair):
    ct, pet = pair
    ct.SetIJKToRASMatrix(_matrix([[0, 0, -2.0, 30], [1.5, 0, 0, -4], [0, 1.5, 0, 7], [0, 0, 0, 1]]))
    ct.SetAndObserveTransformNodeID(add_translation(scene, (1, 2, 3)).GetID())
    out = bridge.fuse_volume_nodes([ct, pet], "average", output_name="fused")
    assert out.GetName() == "fused"
    np.testing.assert_allclose(ijk_to_ras(out), ijk_to_ras(ct))
    assert out.GetSpacing() == pytest.approx(ct.GetSpacing())
    assert out.GetOrigin() == pytest.approx(ct.GetOrigin())
    assert out.GetImageData().GetDimensions() == ct.GetImageData().GetDimensions()
    assert out.GetTransformNodeID() == ct.GetTransformNodeID() is not None


def _matrix(rows):
    matrix = vtk.vtkMatrix4x4()
    for r in range(4):
        for c in range(4):
            matrix.SetElement(r, c, rows[r][c])
    return matrix


# --- resampling: geometry ------------------------------------------------------------------------------
def _reference(scene):
    """A reference with anisotropic spacing and a non-trivial origin; content irrelevant."""
    return add_volume(scene, np.zeros(SHAPE, np.float32), "reference", spacing=(1.0, 1.25, 1.5),
                      origin=(-12.0, -14.0, -9.0))


def _moving_with_blob_at(scene, ras, shape, directions, sigma=2.5):
    """An input of the given shape and axis directions (columns: RAS step of one voxel along I, J, K)
    holding a Gaussian blob (sigma in mm) centred on the RAS point ``ras``, off its voxel centres."""
    directions = np.asarray(directions, dtype=float)
    center_ijk = (np.array(shape[::-1]) - 1) / 2 + (0.3, -0.2, 0.4)
    origin = np.asarray(ras) - directions @ center_ijk
    matrix = np.eye(4)
    matrix[:3, :3], matrix[:3, 3] = directions, origin
    kji = np.indices(shape).reshape(3, -1)
    voxel_ras = directions @ kji[::-1] + origin[:, None]
    blob = 100.0 * np.exp(-((voxel_ras - np.asarray(ras)[:, None]) ** 2).sum(axis=0) / (2 * sigma ** 2))
    return add_volume(scene, blob.reshape(shape).astype(np.float32), "moving", ijk_to_ras=matrix)


def _rotation(axis, degrees):
    c, s = np.cos(np.radians(degrees)), np.sin(np.radians(degrees))
    a, b = [(1, 2), (0, 2), (0, 1)][axis]
    r = np.eye(3)
    r[a, a], r[a, b], r[b, a], r[b, b] = c, -s, s, c
    return r


@pytest.mark.parametrize("directions", [
    np.diag([0.8, 0.9, 1.1]),                                    # other spacing (and origin, extent)
    _rotation(2, 90) @ np.diag([1.1, 0.9, 1.3]),                 # 90 degrees about S
    _rotation(0, 90) @ np.diag([1.0, 1.2, 0.8]),                 # 90 degrees about R: K and J swap
    np.diag([-1.0, -1.2, 1.0]),                                  # R and A flipped (LPS-like)
    np.diag([1.0, 1.0, -1.5]),                                   # S flipped: a left-handed grid
    _rotation(1, 30) @ _rotation(2, 20) @ np.diag([0.9, 1.0, 1.1]),   # oblique
], ids=["spacing", "rot90-S", "rot90-R", "flip-RA", "flip-S", "oblique"])
def test_resampling_puts_a_feature_at_its_ras_position(scene, directions):
    reference = _reference(scene)
    target_kji = np.array([9.0, 7.0, 13.0])
    ras = ras_of(reference, target_kji) + (0.25, -0.3, 0.2)   # between reference voxels too
    moving = _moving_with_blob_at(scene, ras, (20, 26, 18), directions)
    resampled = bridge.resample_to_reference(moving, reference)
    assert resampled.shape == SHAPE and resampled.dtype == np.float32
    np.testing.assert_allclose(centroid(resampled), kji_of(reference, ras), atol=0.1)


@pytest.mark.parametrize("dtype", [np.int64, np.uint64])
def test_64_bit_integer_volumes_are_resampled(scene, dtype):
    # slicer-core's vtkImageReslice has no VTK_LONG_LONG support: resampling such a node crashed the
    # process (found by test_properties_bridge). It is resampled as float64 now.
    reference = _reference(scene)
    moving = bridge.node_from_array(scene, (cube_volume(SHAPE, (8, 10, 12), half=1) * 1000).astype(dtype),
                                    "int64", spacing=(1.0, 1.25, 1.5), origin=(-12.0, -14.0, -9.0))
    moving.SetAndObserveTransformNodeID(add_translation(scene, (3.0, -2.5, 3.0)).GetID())
    resampled = bridge.resample_to_reference(moving, reference)
    assert resampled.dtype == np.float64 and resampled.shape == SHAPE
    np.testing.assert_allclose(centroid(resampled), (10, 8, 15), atol=0.05)
    assert resampled.min() >= 0 and resampled.max() <= 1000 * cube_volume(SHAPE, (8, 10, 12), half=1).max()


def test_voxels_outside_the_input_take_its_minimum(scene):
    reference = _reference(scene)
    small = add_volume(scene, np.full((4, 4, 4), -1000.0, np.float32), "small CT", origin=(0, 0, 0))
    resampled = bridge.resample_to_reference(small, reference)
    assert np.all(resampled == -1000.0)   # inside: -1000 values, outside: the minimum, not 0 (water)


# --- resampling: transforms ----------------------------------------------------------------------------
def test_input_under_linear_transform_is_compensated(scene):
    reference = _reference(scene)
    moving = add_volume(scene, cube_volume(SHAPE, (8, 10, 12), half=1), "moving", spacing=(1.0, 1.25, 1.5),
                        origin=(-12.0, -14.0, -9.0))
    moving.SetAndObserveTransformNodeID(add_translation(scene, (3.0, -2.5, 3.0)).GetID())
    # +3 mm R = +3 voxels I; -2.5 mm A = -2 voxels J; +3 mm S = +2 voxels K.
    np.testing.assert_allclose(centroid(bridge.resample_to_reference(moving, reference)), (10, 8, 15), atol=0.05)


def test_reference_under_transform(scene):
    reference = _reference(scene)
    moving = add_volume(scene, cube_volume(SHAPE, (8, 10, 12), half=1), "moving", spacing=(1.0, 1.25, 1.5),
                        origin=(-12.0, -14.0, -9.0))
    reference.SetAndObserveTransformNodeID(add_translation(scene, (5.0, 0, 0), "ref shift").GetID())
    # The reference's voxels sit 5 mm further R in the world, so the input's cube is 5 voxels lower in I.
    np.testing.assert_allclose(centroid(bridge.resample_to_reference(moving, reference)), (8, 10, 7), atol=0.05)
    # Both under transforms: only the difference counts.
    moving.SetAndObserveTransformNodeID(add_translation(scene, (3.0, 0, 0), "moving shift").GetID())
    np.testing.assert_allclose(centroid(bridge.resample_to_reference(moving, reference)), (8, 10, 10), atol=0.05)


def test_input_under_nonlinear_grid_transform(scene):
    reference = _reference(scene)
    moving = add_volume(scene, cube_volume(SHAPE, (8, 10, 12), half=1), "moving", spacing=(1.0, 1.25, 1.5),
                        origin=(-12.0, -14.0, -9.0))
    # A displacement grid that moves everything 3 mm R (a translation, so the answer is known, but stored
    # as a non-linear grid transform, which takes the general resampling path).
    grid = vtk.vtkImageData()
    grid.SetOrigin(-60, -60, -60)
    grid.SetSpacing(10, 10, 10)
    grid.SetDimensions(13, 13, 13)
    grid.AllocateScalars(vtk.VTK_DOUBLE, 3)
    vtk.util.numpy_support.vtk_to_numpy(grid.GetPointData().GetScalars())[:] = (3.0, 0.0, 0.0)
    displacement = slicer.vtkOrientedGridTransform()
    displacement.SetDisplacementGridData(grid)
    node = scene.AddNewNodeByClass("vtkMRMLGridTransformNode", "grid")
    node.SetAndObserveTransformToParent(displacement)
    assert not node.IsLinear()
    moving.SetAndObserveTransformNodeID(node.GetID())
    np.testing.assert_allclose(centroid(bridge.resample_to_reference(moving, reference)), (8, 10, 15), atol=0.05)


def test_fusion_uses_the_resampled_input(scene):
    reference = add_volume(scene, cube_volume(SHAPE, (8, 10, 12), half=5, value=50.0), "MR")
    pet = add_volume(scene, cube_volume((8, 10, 12), (4, 5, 6), half=1, value=10.0), "PET", spacing=(2, 2, 2))
    pet.SetAndObserveTransformNodeID(add_translation(scene, (-1.0, 0, 0)).GetID())
    out = bridge.fuse_volume_nodes([reference, pet], "max", output_range="unit", input_ranges=(0, 10))
    expected = mf.fuse([slicer.util.arrayFromVolume(reference), bridge.resample_to_reference(pet, reference)],
                       "max", output_range="unit", input_ranges=(0, 10))
    np.testing.assert_array_equal(bridge.array_from_node(out), expected)
    # The PET cube (voxel (4,5,6) at 2 mm, moved 1 mm L) is centred on reference voxel (8, 10, 11).
    hot = np.argwhere(bridge.resample_to_reference(pet, reference) > 5).mean(axis=0)
    np.testing.assert_allclose(hot, (8, 10, 11), atol=0.05)


# --- RGB -----------------------------------------------------------------------------------------------
def test_rgb_input_gives_rgb_output(scene):
    reference = add_volume(scene, cube_volume(SHAPE, (8, 10, 12), half=5, value=300.0), "CT")
    colour = np.zeros((8, 10, 12, 3), np.uint8)
    colour[3:6, 4:7, 5:8] = (250, 40, 10)
    pet = add_volume(scene, colour, "PET rgb", spacing=(2, 2, 2), vector=True)
    resampled = bridge.resample_to_reference(pet, reference)
    assert resampled.shape == SHAPE + (3,) and resampled.dtype == np.uint8
    np.testing.assert_array_equal(resampled[9, 10, 12], (250, 40, 10))   # voxel centre (4.5, 5, 6) at 2 mm
    out = bridge.fuse_volume_nodes([reference, pet], "average")
    assert out.GetClassName() == "vtkMRMLVectorVolumeNode"
    fused = bridge.array_from_node(out)
    assert fused.shape == SHAPE + (3,) and fused.dtype == np.uint8
    red = fused[..., 0].astype(int) - fused[..., 2]
    assert red[9, 10, 12] > 50 and abs(red[0, 0, 0]) < 5   # colour where the PET is, grey elsewhere


def test_colormap_makes_vector_output_and_needs_a_vector_output_node(scene, pair):
    ct, pet = pair
    scalar_out = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "target")
    with pytest.raises(FusionInputError, match="must be a vtkMRMLVectorVolumeNode"):
        bridge.fuse_volume_nodes([ct, pet], "average", colormap="hot", output_node=scalar_out)
    assert scalar_out.GetImageData() is None
    out = bridge.fuse_volume_nodes([ct, pet], "average", colormap="hot")
    assert out.IsA("vtkMRMLVectorVolumeNode") and bridge.array_from_node(out).shape == SHAPE + (3,)


# --- output node ---------------------------------------------------------------------------------------
def test_given_output_node_is_reused(scene, pair):
    ct, pet = pair
    target = add_volume(scene, np.ones((3, 4, 5), np.int16), "target")
    count = scene.GetNumberOfNodes()
    out = bridge.fuse_volume_nodes([ct, pet], "average", output_node=target)
    assert out is target and scene.GetNumberOfNodes() == count + 1   # + its new display node only
    assert target.GetName() == "target"
    np.testing.assert_array_equal(bridge.array_from_node(target), mf.fuse(
        [slicer.util.arrayFromVolume(ct), slicer.util.arrayFromVolume(pet)], "average"))
    np.testing.assert_allclose(ijk_to_ras(target), ijk_to_ras(ct))


def test_single_slice_volumes(scene):
    slice_shape = (1, 20, 24)
    a = add_volume(scene, cube_volume((3, 20, 24), (1, 10, 12), half=4)[1:2], "slice MR", spacing=(1, 1, 3))
    b = add_volume(scene, cube_volume((3, 20, 24), (1, 8, 8), half=2, value=7.0)[1:2], "slice PET",
                   spacing=(1, 1, 3))
    out = bridge.fuse_volume_nodes([a, b], "average")
    assert bridge.array_from_node(out).shape == slice_shape


# --- inputs untouched, failures leave no trace ---------------------------------------------------------
def test_inputs_are_not_modified(scene):
    reference = _reference(scene)
    moving = add_volume(scene, cube_volume(SHAPE, (8, 10, 12), half=1), "moving", spacing=(2, 1, 1))
    moving.SetAndObserveTransformNodeID(add_translation(scene, (1, 2, 3)).GetID())
    colour = add_volume(scene, np.full(SHAPE + (3,), 90, np.uint8), "colour", vector=True)
    before = [snapshot(n) for n in (reference, moving, colour)]
    bridge.fuse_volume_nodes([reference, moving, colour], "average", progress=lambda f, m: None)
    bridge.resample_to_reference(moving, reference)
    for state, node in zip(before, (reference, moving, colour)):
        assert_unchanged(state, node)


def test_array_views_are_read_only(scene, pair):
    ct, pet = pair
    with pytest.raises(ValueError):
        bridge.array_from_node(ct)[0, 0, 0] = 1
    with pytest.raises(ValueError):
        bridge.resample_to_reference(pet, ct)[0, 0, 0] = 1


def test_cancel_before_start_adds_nothing(scene, pair):
    ct, pet = pair
    target = add_volume(scene, np.ones((3, 4, 5), np.int16), "target")
    token = mf.CancelToken()
    token.cancel()
    count = scene.GetNumberOfNodes()
    with pytest.raises(FusionCancelled):
        bridge.fuse_volume_nodes([ct, pet], "average", cancel=token)
    with pytest.raises(FusionCancelled):
        bridge.fuse_volume_nodes([ct, pet], "average", cancel=token, output_node=target)
    assert scene.GetNumberOfNodes() == count
    np.testing.assert_array_equal(slicer.util.arrayFromVolume(target), np.ones((3, 4, 5)))


def test_cancel_during_fusion_adds_nothing(scene, pair):
    ct, pet = pair
    count = scene.GetNumberOfNodes()
    seen = []

    def cancel_when_fusing():
        return len(seen) > 2   # after resampling, during the fusion

    with pytest.raises(FusionCancelled):
        bridge.fuse_volume_nodes([ct, pet], "average", mode="slices", batch_size=2,
                                 progress=lambda f, m: seen.append(f), cancel=cancel_when_fusing)
    assert scene.GetNumberOfNodes() == count
    assert 0 < max(seen) < 1


def _label_map(scene):
    node = scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", "labels")
    updateVolumeFromArray(node, np.zeros(SHAPE, np.uint8))
    return node


def _volume_with(scene, value):
    array = np.zeros(SHAPE, np.float32)
    array[3, 4, 5] = value
    return add_volume(scene, array, "one bad voxel")


def _volume_with_float64(scene, value):
    array = np.zeros(SHAPE, np.float64)
    array[3, 4, 5] = value
    return add_volume(scene, array, "beyond float32")


def _float_vectors(scene):
    return add_volume(scene, np.zeros(SHAPE + (3,), np.float32), "displacement", vector=True)


# Each case: (inputs, keyword arguments) made from the scene and the CT/PET pair, and the expected message.
BAD_CALLS = [
    (lambda s, ct, pet: ([ct], {}), "2 or more input volumes"),
    (lambda s, ct, pet: (ct, {}), "a single"),
    (lambda s, ct, pet: ([ct, None], {}), r"input 1 \(None\) is not a volume node"),
    (lambda s, ct, pet: ([ct, s.AddNewNodeByClass("vtkMRMLLinearTransformNode")], {}), "not a volume node"),
    (lambda s, ct, pet: ([ct, "pet.nrrd"], {}), "not a volume node"),
    (lambda s, ct, pet: ([ct, s.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "empty")], {}), "has no image data"),
    (lambda s, ct, pet: ([ct, _label_map(s)], {}), "label map volumes .* not supported"),
    (lambda s, ct, pet: ([_label_map(s), ct], {}), "label map volumes .* not supported"),
    (lambda s, ct, pet: ([ct, _float_vectors(s)], {}), "only RGB vector volumes"),
    (lambda s, ct, pet: ([ct, add_volume(s, np.full(SHAPE, np.nan, np.float32), "nan")], {}), "NaN or infinite"),
    (lambda s, ct, pet: ([ct, _volume_with(s, np.inf)], {}), "NaN or infinite"),
    (lambda s, ct, pet: ([_volume_with_float64(s, 1e300), pet], {}), "fusion works in float32"),
    (lambda s, ct, pet: ([ct, pet], dict(method="nope")), "unknown fusion method"),
    (lambda s, ct, pet: ([ct, pet], dict(levels=0)), "levels"),
    (lambda s, ct, pet: ([ct, pet], dict(mode="4d")), "mode must be one of"),
    (lambda s, ct, pet: ([ct, pet], dict(output_node=pet)), "is one of the inputs"),
    (lambda s, ct, pet: ([ct, pet], dict(output_node=_float_vectors(s))), "must be a vtkMRMLScalarVolumeNode"),
    (lambda s, ct, pet: ([ct, pet], dict(output_node=_label_map(s))), "must be a vtkMRMLScalarVolumeNode"),
    (lambda s, ct, pet: ([ct, pet], dict(output_node=s.AddNewNodeByClass("vtkMRMLModelNode"))), "must be a"),
    (lambda s, ct, pet: ([ct, pet], dict(progress=3)), "progress must be"),
    (lambda s, ct, pet: ([ct, pet], dict(cancel=3)), "cancel must be"),
]


@pytest.mark.parametrize("make_call, message", BAD_CALLS, ids=[m for _, m in BAD_CALLS])
def test_bad_inputs_fail_before_any_node_is_added(scene, pair, make_call, message):
    inputs, kwargs = make_call(scene, *pair)
    method = kwargs.pop("method", "laplacian")
    count = scene.GetNumberOfNodes()
    with pytest.raises(FusionInputError, match=message):
        bridge.fuse_volume_nodes(inputs, method, **kwargs)
    assert scene.GetNumberOfNodes() == count


def test_nodes_must_share_one_scene(scene, pair):
    ct, _ = pair
    other_scene = bridge.new_scene()
    stranger = add_volume(other_scene, np.zeros(SHAPE, np.float32), "elsewhere")
    with pytest.raises(FusionInputError, match="not in the reference volume's scene"):
        bridge.fuse_volume_nodes([ct, stranger], "average")
    orphan = slicer.vtkMRMLScalarVolumeNode()
    updateVolumeFromArray(orphan, np.zeros(SHAPE, np.float32))
    with pytest.raises(FusionInputError, match="not in a MRML scene"):
        bridge.fuse_volume_nodes([orphan, ct], "average")
    target = add_volume(other_scene, np.zeros(SHAPE, np.float32), "target elsewhere")
    with pytest.raises(FusionInputError, match="not in the input volumes' scene"):
        bridge.fuse_volume_nodes([ct, ct], "average", output_node=target)
    # The scene can be given explicitly (as slicer.mrmlScene is in Slicer); a different one is refused.
    before = other_scene.GetNumberOfNodes()
    with pytest.raises(FusionInputError, match="not in the given scene"):
        bridge.fuse_volume_nodes([ct, ct], "average", scene=other_scene)
    assert other_scene.GetNumberOfNodes() == before
    out = bridge.fuse_volume_nodes([ct, ct], "average", scene=scene)
    assert out.GetScene() is scene


# --- files ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("suffix", [".nrrd", ".nii.gz", ".mha", ".nhdr"])
@pytest.mark.parametrize("handedness", ["right", "left"])
def test_save_load_round_trip_keeps_values_and_geometry(scene, tmp_path, suffix, handedness):
    rng = np.random.default_rng(3)
    values = rng.integers(-1000, 2000, SHAPE).astype(np.int16)
    # Rotated, anisotropic grids; NIfTI and MetaImage store LPS, so the RAS conversion must round-trip.
    flip = 1.0 if handedness == "right" else -1.0
    matrix = [[0, 0, 2.0 * flip, 30], [1.5, 0, 0, -4], [0, 1.25, 0, 7], [0, 0, 0, 1]]
    node = add_volume(scene, values, "ct", ijk_to_ras=matrix)
    path = tmp_path / f"ct{suffix}"
    bridge.save_volume(node, path)
    assert sorted(os.listdir(tmp_path)) == (["ct.nhdr", "ct.raw.gz"] if suffix == ".nhdr" else [path.name])
    assert node.GetStorageNode() is None   # saving did not attach anything to the node
    loaded = bridge.load_volume(path, scene)
    assert loaded.GetClassName() == "vtkMRMLScalarVolumeNode" and loaded.GetName() == "ct_1"
    assert loaded.GetStorageNode() is not None and loaded.GetDisplayNode() is not None
    if suffix in (".nrrd", ".nhdr") or handedness == "right":
        np.testing.assert_array_equal(bridge.array_from_node(loaded), values)
        np.testing.assert_allclose(ijk_to_ras(loaded), ijk_to_ras(node), atol=1e-5)
    else:
        # Slicer's ITK-based reader gives a left-handed grid back with its K axis reversed: other voxel order and
        # matrix, same voxels at the same RAS positions.
        np.testing.assert_array_equal(bridge.array_from_node(loaded), values[::-1])
    np.testing.assert_array_equal(bridge.resample_to_reference(loaded, node), values)


@pytest.mark.parametrize("suffix", [".nrrd", ".nii.gz"])
def test_rgb_round_trip_loads_as_vector_volume(scene, tmp_path, suffix):
    colour = (np.arange(np.prod(SHAPE) * 3) % 251).astype(np.uint8).reshape(SHAPE + (3,))
    node = add_volume(scene, colour, "rgb", spacing=(0.5, 0.6, 0.7), origin=(1, 2, 3), vector=True)
    bridge.save_volume(node, tmp_path / f"rgb{suffix}")
    loaded = bridge.load_volume(tmp_path / f"rgb{suffix}", scene, name="colour")
    assert loaded.GetClassName() == "vtkMRMLVectorVolumeNode" and loaded.GetName() == "colour"
    np.testing.assert_array_equal(bridge.array_from_node(loaded), colour)
    np.testing.assert_allclose(ijk_to_ras(loaded), ijk_to_ras(node), atol=1e-5)


def test_rgba_file_loads_as_rgb(scene, tmp_path):
    rgba = np.zeros(SHAPE + (4,), np.uint8)
    rgba[..., 0], rgba[..., 3] = 200, 255
    node = add_volume(scene, rgba, "rgba", vector=True)
    bridge.save_volume(node, tmp_path / "rgba.mha")
    loaded = bridge.load_volume(tmp_path / "rgba.mha", scene)
    assert bridge.array_from_node(loaded).shape == SHAPE + (3,)
    assert np.all(bridge.array_from_node(loaded) == (200, 0, 0))


def test_fused_output_saved_and_reloaded(scene, pair, tmp_path):
    ct, pet = pair
    out = bridge.fuse_volume_nodes([ct, pet], "average")
    bridge.save_volume(out, tmp_path / "fused.nrrd")
    loaded = bridge.load_volume(tmp_path / "fused.nrrd", scene)
    np.testing.assert_array_equal(bridge.array_from_node(loaded), bridge.array_from_node(out))
    np.testing.assert_allclose(ijk_to_ras(loaded), ijk_to_ras(ct), atol=1e-5)


def test_load_errors_are_clear_and_add_nothing(scene, tmp_path):
    count = scene.GetNumberOfNodes()
    with pytest.raises(FusionInputError, match="no such file"):
        bridge.load_volume(tmp_path / "missing.nrrd", scene)
    with pytest.raises(FusionInputError, match="not a file"):
        bridge.load_volume(tmp_path, scene)
    garbage = tmp_path / "garbage.nrrd"
    garbage.write_bytes(b"this is not a volume")
    with pytest.raises(FusionInputError, match="cannot load .*garbage.nrrd"):
        bridge.load_volume(garbage, scene)
    assert scene.GetNumberOfNodes() == count


def test_save_overwrites_and_keeps_old_file_when_writing_fails(scene, pair, tmp_path, monkeypatch):
    ct, pet = pair
    path = tmp_path / "ct.nrrd"
    bridge.save_volume(pet, path)
    bridge.save_volume(ct, path)   # overwrite
    np.testing.assert_array_equal(bridge.array_from_node(bridge.load_volume(path, scene)),
                                  slicer.util.arrayFromVolume(ct))
    old = path.read_bytes()

    def failing_replace(source, target):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(FusionInputError, match="cannot save .*No space left"):
        bridge.save_volume(pet, path)
    monkeypatch.undo()
    assert path.read_bytes() == old and os.listdir(tmp_path) == ["ct.nrrd"]   # no staging folder left


def test_save_leaves_nothing_on_unwritable_format(scene, pair, tmp_path):
    ct, _ = pair
    with pytest.raises(FusionInputError, match="cannot save"):
        bridge.save_volume(ct, tmp_path / "ct.notaformat")
    assert os.listdir(tmp_path) == []


def test_save_errors_for_bad_targets(scene, pair, tmp_path):
    ct, _ = pair
    with pytest.raises(FusionInputError, match="does not exist"):
        bridge.save_volume(ct, tmp_path / "no" / "ct.nrrd")
    with pytest.raises(FusionInputError, match="it is a folder"):
        bridge.save_volume(ct, tmp_path)
    empty = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "empty")
    with pytest.raises(FusionInputError, match="image data"):
        bridge.save_volume(empty, tmp_path / "empty.nrrd")
    assert os.listdir(tmp_path) == []


def test_fused_nodes_are_marked_as_display_images(phantom3d):
    """Every fused node says what it is (attribute and description) with its method and parameters."""
    scene = bridge.new_scene()
    mri = bridge.node_from_array(scene, phantom3d["mri"], "MRI")
    pet = bridge.node_from_array(scene, phantom3d["pet"], "PET")
    out = bridge.fuse_volume_nodes([mri, pet], "laplacian", levels=2)
    assert out.GetAttribute(bridge.FUSED_ATTRIBUTE) == bridge.FUSED_NOTICE
    assert out.GetAttribute("MedFusion.Method") == "laplacian"
    assert json.loads(out.GetAttribute("MedFusion.Parameters"))["levels"] == 2
    text = out.GetDescription()
    assert text.startswith("MedFusion fused image: for display, not for quantitative measurement")
    assert "laplacian" in text and '"levels": 2' in text and "MRI, PET" in text
    for source in (mri, pet):                           # the inputs are not marked
        assert source.GetAttribute(bridge.FUSED_ATTRIBUTE) is None


@pytest.mark.parametrize("suffix", [".nrrd", ".nhdr"])
def test_fused_nrrd_files_carry_the_notice_and_read_back(tmp_path, phantom3d, suffix):
    scene = bridge.new_scene()
    mri = bridge.node_from_array(scene, phantom3d["mri"], "MRI")
    pet = bridge.node_from_array(scene, phantom3d["pet"], "PET")
    out = bridge.fuse_volume_nodes([mri, pet], "max")
    path = tmp_path / f"fused{suffix}"
    bridge.save_volume(out, path)
    with open(path, "rb") as fh:
        header = fh.read().split(b"\n\n")[0].decode()
    # Slicer's NRRD writer stores node attributes as key/value lines.
    assert "MedFusion.FusedImage:=MedFusion fused image: for display, not for quantitative measurement" in header
    assert "MedFusion.Method:=max\n" in header and "MedFusion.Provenance:=" in header
    back = bridge.load_volume(path, bridge.new_scene())
    np.testing.assert_array_equal(bridge.array_from_node(back), bridge.array_from_node(out))
    # A source volume written the same way gets no such line.
    bridge.save_volume(mri, tmp_path / f"mri{suffix}")
    with open(tmp_path / f"mri{suffix}", "rb") as fh:
        assert b"MedFusion.FusedImage" not in fh.read().split(b"\n\n")[0]


@pytest.mark.parametrize("suffix", [".nii", ".nii.gz"])
def test_fused_nifti_files_say_so_in_their_description(tmp_path, phantom3d, suffix):
    import gzip

    scene = bridge.new_scene()
    mri = bridge.node_from_array(scene, phantom3d["mri"], "MRI")
    out = bridge.fuse_volume_nodes([mri, bridge.node_from_array(scene, phantom3d["pet"], "PET")], "max")
    for node, name in ((out, "fused"), (mri, "mri")):
        path = tmp_path / f"{name}{suffix}"
        bridge.save_volume(node, path)
        with (gzip.open(path, "rb") if suffix.endswith(".gz") else open(path, "rb")) as fh:
            header = fh.read(348)
        descrip = header[148:228].rstrip(b"\0").decode()
        assert descrip == (bridge.NIFTI_FUSED_DESCRIPTION if node is out else "")
    back = bridge.load_volume(tmp_path / f"fused{suffix}", bridge.new_scene())
    np.testing.assert_array_equal(bridge.array_from_node(back), bridge.array_from_node(out))
