"""Co-registration before fusion: a phantom moved by a known rotation (5 deg) and translation (7 mm) is
recovered; failures are errors, never a silent fusion."""

import os

import numpy as np
import pytest

from MedFusionLib import FusionInputError, RegistrationError, bridge, files, registration

import SimpleITK as sitk  # noqa: E402  (a test dependency: the "test" extra installs it)

F4 = np.diag([-1.0, -1.0, 1.0, 1.0])     # LPS <-> RAS
SPACING = 2.5
N = 44


def _labels(n=N, spacing=SPACING):
    """An asymmetric head-like phantom: an ellipsoid with three off-centre inclusions of distinct shapes."""
    k, j, i = np.meshgrid(*(np.arange(n) for _ in range(3)), indexing="ij")
    c = (n - 1) / 2
    x, y, z = (i - c) * spacing, (j - c) * spacing, (k - c) * spacing
    labels = np.zeros((n, n, n), np.uint8)
    labels[(x / 46) ** 2 + (y / 38) ** 2 + (z / 34) ** 2 < 1] = 1
    labels[((x - 14) / 13) ** 2 + ((y + 8) / 8) ** 2 + ((z - 5) / 11) ** 2 < 1] = 2
    labels[((x + 16) / 7) ** 2 + ((y - 13) / 14) ** 2 + ((z + 9) / 6) ** 2 < 1] = 3
    labels[(np.abs(x + 2) < 6) & (np.abs(y + 18) < 5) & (np.abs(z - 16) < 9)] = 4
    return labels


def _image(array, origin=(-53.75, -53.75, -53.75)):
    image = sitk.GetImageFromArray(array.astype(np.float32))
    image.SetSpacing((SPACING,) * 3)
    image.SetOrigin(origin)
    return sitk.SmoothingRecursiveGaussian(image, 1.0)


@pytest.fixture(scope="module")
def phantom():
    return make_phantom()


def make_phantom():
    """Reference "CT" and a second modality ("MR": other intensities per tissue, not monotonic) moved by
    a known rigid transform A: moving(y) = mr(A(y)). The registration must find A^-1 (reference -> moving)."""
    labels = _labels()
    rng = np.random.default_rng(5)
    ct = _image(np.array([0, 40, 300, 1000, -200], np.float32)[labels] + rng.normal(0, 10, labels.shape))
    mr = _image(np.array([0, 600, 150, 900, 300], np.float32)[labels] + rng.normal(0, 10, labels.shape))
    axis = np.array([0.3, -0.5, 0.8])
    shift = np.array([4.0, -5.0, 3.0])
    moved = sitk.VersorRigid3DTransform()
    moved.SetCenter((0.0, 0.0, 0.0))
    moved.SetRotation(tuple(axis / np.linalg.norm(axis)), np.radians(5.0))
    moved.SetTranslation(tuple(7.0 * shift / np.linalg.norm(shift)))      # 7 mm
    moving = sitk.Resample(mr, mr, moved, sitk.sitkLinear, 0.0)
    return ct, mr, moving, moved.GetInverse()


def _node(scene, image, name):
    direction = np.array(image.GetDirection()).reshape(3, 3)
    return bridge.node_from_array(scene, sitk.GetArrayFromImage(image), name, spacing=image.GetSpacing(),
                                  origin=F4[:3, :3] @ np.array(image.GetOrigin()), directions=F4[:3, :3] @ direction)


def _matrix(vtk_matrix):
    return np.array([[vtk_matrix.GetElement(r, c) for c in range(4)] for r in range(4)])


def _from_parent(transform_node):
    import vtk

    matrix = vtk.vtkMatrix4x4()
    transform_node.GetMatrixTransformFromParent(matrix)
    return _matrix(matrix)


def _alignment_errors(aligned, moving, mr, ct, expected, unaligned):
    """Mean absolute difference to the un-moved MR inside the phantom: of ``aligned``, of the exact
    motion undone by resampling (interpolation blur only), and of the unaligned input."""
    truth = sitk.GetArrayFromImage(mr)
    ideal = sitk.GetArrayFromImage(sitk.Resample(moving, ct, expected, sitk.sitkLinear, 0.0))
    inner = (slice(6, -6),) * 3
    return tuple(float(np.abs(a[inner] - truth[inner]).mean()) for a in (aligned, ideal, unaligned))


def _errors(found_lps, expected_lps):
    """Rotation error (deg) and the largest displacement error (mm) over points spread in the phantom."""
    rotation = found_lps[:3, :3].T @ expected_lps[:3, :3]
    u, _, vt = np.linalg.svd(rotation)
    rotation = u @ vt
    angle = np.degrees(np.arccos(np.clip((np.trace(rotation) - 1) / 2, -1, 1)))
    points = np.array([[0, 0, 0, 1], [30, 25, 20, 1], [-30, 20, -20, 1], [25, -30, -15, 1]], float).T
    shift = np.linalg.norm((found_lps @ points - expected_lps @ points)[:3], axis=0).max()
    return angle, shift


def _lps(transform):
    return registration._lps_matrix(transform)


def test_rigid_registration_recovers_5_degrees_and_7_mm(phantom):
    ct, mr, moving, expected = phantom
    scene = bridge.new_scene()
    reference, moving_node = _node(scene, ct, "CT"), _node(scene, moving, "MR")
    voxels = bridge.array_from_node(moving_node).copy()
    node, report = bridge.register_volume_nodes(reference, moving_node, "rigid")
    # The from-parent matrix is reference RAS -> moving RAS; in LPS it must be the inverse of the motion.
    found_lps = F4 @ _from_parent(node) @ F4
    angle, shift = _errors(found_lps, _lps(expected))
    assert angle < 0.5 and shift < 1.0, (angle, shift, report)
    assert report.rotation_deg == pytest.approx(5.0, abs=0.5)
    assert report.translation_mm > 3.0 and report.metric_final < report.metric_initial
    # End to end in Slicer's conventions: the moving volume under the transform node, resampled onto the
    # reference, is the un-moved MR (RAS/LPS and the transform direction are right).
    proxy = bridge.registered_proxy(moving_node, node)
    aligned = bridge.resample_to_reference(proxy, reference)
    error, best, unaligned = _alignment_errors(aligned, moving, mr, ct, expected, bridge.array_from_node(moving_node))
    assert error < 0.5 * unaligned and error < 1.3 * best, (error, best, unaligned)
    # The moving node is untouched.
    assert moving_node.GetTransformNodeID() is None
    np.testing.assert_array_equal(bridge.array_from_node(moving_node), voxels)


def test_affine_registration_recovers_the_rigid_motion(phantom):
    ct, _, moving, expected = phantom
    result = registration.register_images(ct, moving, "affine")
    angle, shift = _errors(_lps(result.transform), _lps(expected))
    assert angle < 0.5 and shift < 1.0, (angle, shift, result.report)
    assert result.report.kind == "affine"


def test_fuse_files_registers_and_writes_the_transform(phantom, tmp_path):
    ct, mr, moving, expected = phantom
    sitk.WriteImage(ct, str(tmp_path / "ct.nrrd"))
    sitk.WriteImage(moving, str(tmp_path / "mr.nrrd"))
    before = os.path.getmtime(tmp_path / "mr.nrrd")
    out = tmp_path / "fused.nii.gz"
    files.fuse_files([str(tmp_path / "ct.nrrd"), str(tmp_path / "mr.nrrd")], str(out), "average", register="rigid")
    assert out.is_file() and os.path.getmtime(tmp_path / "mr.nrrd") == before
    tfm = tmp_path / "fused.input2.tfm"
    assert files.transform_path(str(out), 2) == str(tfm) and tfm.is_file()
    angle, shift = _errors(_lps(sitk.ReadTransform(str(tfm))), _lps(expected))
    assert angle < 0.5 and shift < 1.0
    assert not [p for p in os.listdir(tmp_path) if "partial" in p or "staged" in p]
    # Slicer reads the file back (its transform storage node, as File > Add Data does) as the transform
    # that, set as the moving volume's parent, aligns it with the reference: the right way round.
    scene = bridge.new_scene()
    reference, moving_node = (bridge.load_volume(str(tmp_path / name), scene) for name in ("ct.nrrd", "mr.nrrd"))
    transform = scene.AddNewNodeByClass("vtkMRMLLinearTransformNode")
    storage = scene.AddNewNodeByClass("vtkMRMLTransformStorageNode")
    storage.SetFileName(str(tfm))
    assert storage.ReadData(transform)
    angle, shift = _errors(F4 @ _from_parent(transform) @ F4, _lps(expected))
    assert angle < 0.5 and shift < 1.0
    unaligned = bridge.resample_to_reference(moving_node, reference)
    moving_node.SetAndObserveTransformNodeID(transform.GetID())
    aligned = bridge.resample_to_reference(moving_node, reference)
    error, best, before = _alignment_errors(aligned, moving, mr, ct, expected, unaligned)
    assert error < 0.5 * before and error < 1.3 * best, (error, best, before)
    # The inverse (a transform applied the wrong way round) would double the motion instead.
    transform.Inverse()
    wrong = _alignment_errors(bridge.resample_to_reference(moving_node, reference), moving, mr, ct, expected,
                              unaligned)[0]
    assert wrong > before, (wrong, before)


def test_non_overlapping_inputs_are_an_error_and_nothing_is_written(phantom, tmp_path):
    ct, _, moving, _ = phantom
    far = sitk.Image(moving)
    far.SetOrigin((946.25, -53.75, -53.75))          # 1 m to the side
    sitk.WriteImage(ct, str(tmp_path / "ct.nrrd"))
    sitk.WriteImage(far, str(tmp_path / "far.nrrd"))
    out = tmp_path / "fused.nrrd"
    with pytest.raises(RegistrationError, match="overlap over 0 %"):
        files.fuse_files([str(tmp_path / "ct.nrrd"), str(tmp_path / "far.nrrd")], str(out), "average",
                         register="rigid")
    assert sorted(os.listdir(tmp_path)) == ["ct.nrrd", "far.nrrd"]


def test_unrelated_content_is_an_error(phantom):
    ct = sitk.Shrink(phantom[0], [2, 2, 2])           # small: a failing registration runs all its iterations
    rng = np.random.default_rng(0)
    noise = sitk.GetImageFromArray(rng.normal(0, 1, sitk.GetArrayFromImage(ct).shape).astype(np.float32))
    noise.CopyInformation(ct)
    scene = bridge.new_scene()
    reference, other = _node(scene, ct, "CT"), _node(scene, noise, "noise")
    count = scene.GetNumberOfNodes()
    with pytest.raises(RegistrationError, match="not fused"):
        bridge.fuse_volume_nodes([reference, other], "average", register="rigid")
    assert scene.GetNumberOfNodes() == count          # no transform, proxy or output left behind


def test_bad_requests_are_refused_before_work(phantom, tmp_path):
    ct, _, moving, _ = phantom
    scene = bridge.new_scene()
    reference, moving_node = _node(scene, ct, "CT"), _node(scene, moving, "MR")
    with pytest.raises(FusionInputError, match="allowed: none, rigid, affine"):
        bridge.fuse_volume_nodes([reference, moving_node], "average", register="elastic")
    with pytest.raises(FusionInputError, match="allowed: none, rigid, affine"):
        files.fuse_files(["a.nrrd", "b.nrrd"], str(tmp_path / "o.nrrd"), register="deformable")
    flat = bridge.node_from_array(scene, np.ones((1, 40, 40), np.float32), "slice")
    with pytest.raises(FusionInputError, match="at least 8 voxels"):
        bridge.register_volume_nodes(reference, flat)
    parent = scene.AddNewNodeByClass("vtkMRMLLinearTransformNode")
    moved = _node(scene, moving, "MR2")
    moved.SetAndObserveTransformNodeID(parent.GetID())
    with pytest.raises(FusionInputError, match="parent transform"):
        bridge.fuse_volume_nodes([reference, moved], "average", register="rigid")
    with pytest.raises(FusionInputError, match="unknown fusion method"):
        bridge.fuse_volume_nodes([reference, moving_node], "no-such-method", register="rigid")
    assert scene.GetFirstNodeByClass("vtkMRMLLinearTransformNode") is parent
