"""Co-registration of a further input onto the reference before fusion (SimpleITK).

:func:`register_images` finds the rigid (``"rigid"``: rotation + translation) or affine (``"affine"``:
rigid first, then a full affine from there) transform that best matches a moving volume to a fixed one
(the reference), with SimpleITK's ``ImageRegistrationMethod``:

- metric: Mattes mutual information (Mattes et al. 2003), 32 histogram bins, on about 100 000 random
  voxels per level (all of them if fewer) with a fixed seed and one metric thread (two runs agree to about 1e-6 mm or better). Mutual information needs no relation between the
  intensities of the two modalities except that one predicts the other, which is what CT/MR/PET pairs
  have; a correlation or mean-squares metric would assume the same modality.
- optimiser: regular-step gradient descent (2 mm first step, shrunk by 0.8 at each change of direction
  down to 0.0005 mm) with scales from physical shifts (one mm of translation weighs as much as the
  rotation that moves a voxel by one mm).
- multi-resolution: up to three levels, shrinking by 4, 2, 1 voxels with Gaussian smoothing of sigma 2, 1,
  0 voxels (levels that would leave fewer than 16 voxels along an axis are dropped). Coarse levels
  smooth the metric, so the optimiser is not caught by the local optima that fine detail and noise make,
  and they are cheap; the finest level then refines to sub-voxel accuracy.
- start: the identity in scanner (patient) coordinates, rotating about the reference's centre. Scanner
  coordinates of one session already nearly agree; starting from the images' centres instead would
  "align" images that do not overlap at all, so non-overlapping inputs are refused instead.

A registration that fails is an error (:class:`MedFusionLib.errors.RegistrationError`), never a silent
fusion of misaligned images: the images overlap over less than :data:`MIN_OVERLAP` of the smaller one
(before or after), SimpleITK stops (too few samples inside the moving image), the metric did not improve
on the start, or the result shares too little information (``-MI`` under :data:`MIN_INFORMATION` nats).

Conventions: images here are SimpleITK images in LPS (as ITK and DICOM); :func:`image_from_array` makes
one from a ``(K, J, I)`` array and Slicer's IJK-to-RAS matrix, :func:`ras_matrix` gives the found
transform in RAS. The transform maps points of the reference to points of the moving image (ITK's
resampling direction), which is what a ``.tfm`` file stores and what Slicer reads as the transform that,
set as the moving volume's parent, aligns it with the reference.

References
----------
D. Mattes, D. R. Haynor, H. Vesselle, T. K. Lewellen, W. Eubank, "PET-CT image registration in the chest
using free-form deformations", IEEE Trans. Med. Imaging 22(1), 2003.
B. C. Lowekamp, D. T. Chen, L. Ibanez, D. Blezek, "The design of SimpleITK", Front. Neuroinform. 7, 2013.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from typing import Callable, Dict, Optional

import numpy as np

from .dicom import import_simpleitk
from .errors import FusionCancelled, FusionInputError, RegistrationError

#: Registrations offered: none (inputs already co-registered), rigid, affine.
REGISTRATIONS = ("none", "rigid", "affine")
#: The images must overlap over at least this share of the smaller one, before and after registering.
MIN_OVERLAP = 0.2
#: The registered images must share at least this much mutual information (nats; unrelated images ~0.01).
MIN_INFORMATION = 0.05
#: Smallest size along each axis a volume needs to be registered.
MIN_SIZE = 8
_LPS_TO_RAS4 = np.diag([-1.0, -1.0, 1.0, 1.0])
_BINS, _SAMPLES, _SEED = 32, 100_000, 20240601
_LEVELS = ((4, 2.0), (2, 1.0), (1, 0.0))     # (shrink factor, smoothing sigma in voxels)
_MIN_LEVEL_SIZE = 16
# Regular-step gradient descent: first and smallest step (mm, the scales being physical shifts), and the
# step's shrink factor at each change of direction (0.8 rather than 0.5: the sampled metric is noisy, and a
# faster shrink stopped short of the optimum, ~2 deg off on the test phantom).
_STEP_MM, _MIN_STEP_MM, _RELAXATION = 2.0, 5e-4, 0.8


def check_registration(register: Optional[str]) -> str:
    """``None`` -> ``"none"``; an unknown value is a :class:`FusionInputError` naming the allowed ones."""
    register = "none" if register is None else register
    if register not in REGISTRATIONS:
        raise FusionInputError(f"unknown registration {register!r}; allowed: {', '.join(REGISTRATIONS)}")
    return register


def image_from_array(array: np.ndarray, ijk_to_ras: np.ndarray):
    """A float32 SimpleITK image (LPS) of a ``(K, J, I)`` array with Slicer's 4 x 4 IJK-to-RAS matrix."""
    sitk = import_simpleitk()
    matrix = _LPS_TO_RAS4 @ np.asarray(ijk_to_ras, dtype=np.float64)      # IJK -> LPS
    spacing = np.linalg.norm(matrix[:3, :3], axis=0)
    image = sitk.GetImageFromArray(np.ascontiguousarray(array, dtype=np.float32))
    image.SetSpacing([float(v) for v in spacing])
    image.SetOrigin([float(v) for v in matrix[:3, 3]])
    image.SetDirection([float(v) for v in (matrix[:3, :3] / spacing).ravel()])
    return image


def _lps_matrix(transform) -> np.ndarray:
    """The 4 x 4 matrix of a linear SimpleITK transform (fixed LPS point -> moving LPS point)."""
    # Any linear transform of ours (Euler3D, Affine, or a composite of them) maps the origin and the unit
    # vectors affinely; reading them off is exact and independent of the parameterisation.
    origin = np.array(transform.TransformPoint((0.0, 0.0, 0.0)))
    columns = [np.array(transform.TransformPoint(tuple(e))) - origin for e in np.eye(3)]
    matrix = np.eye(4)
    matrix[:3, :3] = np.stack(columns, axis=1)
    matrix[:3, 3] = origin
    return matrix


def ras_matrix(transform) -> np.ndarray:
    """The transform in RAS: reference RAS point -> moving RAS point (Slicer's "from parent" matrix)."""
    return _LPS_TO_RAS4 @ _lps_matrix(transform) @ _LPS_TO_RAS4


def affine_from_ras_matrix(matrix: np.ndarray):
    """A SimpleITK AffineTransform (LPS) from a 4 x 4 reference-RAS -> moving-RAS matrix."""
    sitk = import_simpleitk()
    lps = _LPS_TO_RAS4 @ np.asarray(matrix, dtype=np.float64) @ _LPS_TO_RAS4
    transform = sitk.AffineTransform(3)
    transform.SetMatrix([float(v) for v in lps[:3, :3].ravel()])
    transform.SetTranslation([float(v) for v in lps[:3, 3]])
    return transform


def write_transform(path: str, matrix: np.ndarray) -> None:
    """Write a reference-RAS -> moving-RAS matrix as an ITK transform file (LPS), atomically."""
    sitk = import_simpleitk()
    root, ext = os.path.splitext(os.fspath(path))
    tmp = f"{root}.partial{ext}"      # the extension picks ITK's writer
    try:
        sitk.WriteTransform(affine_from_ras_matrix(matrix), tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


@dataclass
class RegistrationReport:
    """How a registration went; everything a log or a node attribute needs."""

    kind: str
    metric_initial: float        #: Mattes MI at the start (negative: lower is better)
    metric_final: float
    overlap_initial: float       #: overlap / the smaller image, at the start
    overlap_final: float
    iterations: int              #: optimiser iterations, all levels and stages
    levels: int
    stop_condition: str
    rotation_deg: float          #: angle of the found rotation (rigid part)
    translation_mm: float        #: displacement of the reference's centre

    def as_dict(self) -> Dict[str, object]:
        return asdict(self)


@dataclass
class RegistrationResult:
    transform: object            #: SimpleITK transform, fixed (reference) LPS -> moving LPS
    report: RegistrationReport

    @property
    def ras_matrix(self) -> np.ndarray:
        return ras_matrix(self.transform)


def _check_image(image, what: str) -> None:
    sitk = import_simpleitk()
    size = image.GetSize()
    if len(size) != 3 or min(size) < MIN_SIZE:
        raise FusionInputError(f"{what} is {'x'.join(map(str, size))} voxels; registration needs volumes of at "
                               f"least {MIN_SIZE} voxels along each axis")
    stats = sitk.MinimumMaximumImageFilter()
    stats.Execute(image)
    if not np.isfinite([stats.GetMinimum(), stats.GetMaximum()]).all():
        raise FusionInputError(f"{what} has non-finite values (NaN or infinity); registration needs finite values")
    if stats.GetMinimum() == stats.GetMaximum():
        raise FusionInputError(f"{what} has one value everywhere ({stats.GetMinimum():g}); there is nothing "
                               "to register")


def _overlap(fixed, moving, transform) -> float:
    """Share of the smaller image that lies in both, with ``transform`` (fixed -> moving)."""
    sitk = import_simpleitk()
    inside = sitk.Image(moving.GetSize(), sitk.sitkUInt8) + 1
    inside.CopyInformation(moving)
    mapped = sitk.Resample(inside, fixed, transform, sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8)
    voxel_fixed = float(np.prod(fixed.GetSpacing()))
    common = float(np.count_nonzero(sitk.GetArrayViewFromImage(mapped))) * voxel_fixed
    volumes = [float(np.prod(im.GetSize())) * float(np.prod(im.GetSpacing())) for im in (fixed, moving)]
    return common / min(volumes)


def _sampling(fixed, levels):
    """Share of the fixed image's voxels sampled per level: about :data:`_SAMPLES` voxels, all if fewer."""
    voxels = float(np.prod(fixed.GetSize()))
    return [min(1.0, _SAMPLES / (voxels / shrink ** 3)) for shrink, _ in levels]


def _method(levels, transform, iterations: int, sampling):
    sitk = import_simpleitk()
    method = sitk.ImageRegistrationMethod()
    method.SetMetricAsMattesMutualInformation(numberOfHistogramBins=_BINS)
    method.SetMetricSamplingStrategy(method.RANDOM)
    method.SetMetricSamplingPercentagePerLevel(list(sampling), _SEED)
    method.SetInterpolator(sitk.sitkLinear)
    method.SetOptimizerAsRegularStepGradientDescent(learningRate=_STEP_MM, minStep=_MIN_STEP_MM,
                                                    numberOfIterations=iterations, relaxationFactor=_RELAXATION,
                                                    gradientMagnitudeTolerance=1e-8)
    method.SetOptimizerScalesFromPhysicalShift()
    method.SetShrinkFactorsPerLevel([f for f, _ in levels])
    method.SetSmoothingSigmasPerLevel([s for _, s in levels])
    method.SmoothingSigmasAreSpecifiedInPhysicalUnitsOff()
    method.SetInitialTransform(transform, inPlace=True)
    # One thread: Mattes MI sums its samples per thread, and a different split of the sum across threads
    # moves the result by ~1e-6 mm from run to run (SimpleITK's documentation, 'Reproducibility'); one
    # thread narrows that, though two runs are still not guaranteed bit for bit.
    method.SetNumberOfThreads(1)
    return method


def _metric(fixed, moving, transform) -> float:
    """Mattes MI at full resolution with the registration's own sampling (comparable start and end)."""
    sitk = import_simpleitk()
    method = _method(((1, 0.0),), sitk.Transform(transform), 1, _sampling(fixed, ((1, 0.0),)))
    return float(method.MetricEvaluate(fixed, moving))


def register_images(fixed, moving, kind: str = "rigid", *,
                    progress: Optional[Callable[[float, str], None]] = None,
                    iterations: int = 200) -> RegistrationResult:
    """Register ``moving`` onto ``fixed`` (SimpleITK images) rigidly or affinely.

    Parameters
    ----------
    fixed, moving : SimpleITK.Image
        3-D scalar images with their physical geometry (LPS; see :func:`image_from_array`).
    kind : {"rigid", "affine"}
        ``"affine"`` runs the rigid registration first and refines it to an affine one.
    progress : callable, optional
        ``progress(fraction, message)`` per optimiser iteration; it may raise
        :class:`MedFusionLib.FusionCancelled` (a ``Progress`` with a cancel token does), which stops the
        optimiser and is raised again here.
    iterations : int
        Most optimiser iterations per level.

    Returns
    -------
    RegistrationResult
        The transform (fixed LPS point -> moving LPS point) and its :class:`RegistrationReport`.

    Raises
    ------
    FusionInputError
        ``kind`` unknown, an image too small, constant or non-finite (before any work).
    RegistrationError
        The registration failed: no or too little overlap, too few samples, no improvement, too little
        shared information.
    """
    sitk = import_simpleitk()
    if kind not in ("rigid", "affine"):
        raise FusionInputError(f"unknown registration {kind!r}; allowed: rigid, affine")
    fixed = sitk.Cast(fixed, sitk.sitkFloat32)
    moving = sitk.Cast(moving, sitk.sitkFloat32)
    _check_image(fixed, "the reference")
    _check_image(moving, "the moving image")
    centre = fixed.TransformContinuousIndexToPhysicalPoint([(s - 1) / 2.0 for s in fixed.GetSize()])
    rigid = sitk.Euler3DTransform()
    rigid.SetCenter(centre)
    overlap_initial = _overlap(fixed, moving, rigid)
    if overlap_initial < MIN_OVERLAP:
        raise RegistrationError(
            f"the images overlap over {100 * overlap_initial:.0f} % of the smaller one in scanner coordinates "
            f"(at least {100 * MIN_OVERLAP:.0f} % needed): registration starts from the scanner coordinates and "
            "cannot find inputs that lie elsewhere; check the inputs (same patient and session?) or align them "
            "roughly first")
    metric_initial = _metric(fixed, moving, rigid)
    smallest = min(min(fixed.GetSize()), min(moving.GetSize()))
    levels = tuple(level for level in _LEVELS if level[0] == 1 or smallest / level[0] >= _MIN_LEVEL_SIZE)
    stages = [("rigid", rigid)]
    if kind == "affine":
        stages.append(("affine", None))
    counted, stop, cancelled = [], "", []
    for index, (name, transform) in enumerate(stages):
        if transform is None:          # affine stage, starting from the rigid result
            transform = sitk.AffineTransform(3)
            transform.SetCenter(centre)
            transform.SetMatrix(rigid.GetMatrix())
            transform.SetTranslation(rigid.GetTranslation())
        method = _method(levels, transform, iterations, _sampling(fixed, levels))
        share = 1.0 / len(stages)

        def observe(method=method, index=index, name=name):
            counted.append(1)
            if progress is None or cancelled:
                return
            level = method.GetCurrentLevel()
            fraction = share * (index + (level + min(method.GetOptimizerIteration() / iterations, 1.0))
                                / len(levels))
            try:
                progress(min(fraction, 1.0), f"registering ({name}, level {level + 1}/{len(levels)})")
            except FusionCancelled as exc:
                cancelled.append(exc)
                method.StopRegistration()

        method.AddCommand(sitk.sitkIterationEvent, observe)
        try:
            transform = method.Execute(fixed, moving)
        except RuntimeError as exc:
            lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
            reason = next((line for line in lines if "sample" in line.lower()), lines[-1] if lines else "")
            raise RegistrationError(f"the {name} registration failed in SimpleITK: {reason}") from None
        if cancelled:
            raise cancelled[0]
        stop = method.GetOptimizerStopConditionDescription()
        if name == "rigid":
            rigid = transform
    final = transform
    metric_final = _metric(fixed, moving, final)
    overlap_final = _overlap(fixed, moving, final)
    lps = _lps_matrix(final)
    rotation = lps[:3, :3]
    if kind == "affine":         # the rotation of the polar decomposition
        u, _, vt = np.linalg.svd(rotation)
        rotation = u @ vt
    angle = float(np.degrees(np.arccos(np.clip((np.trace(rotation) - 1.0) / 2.0, -1.0, 1.0))))
    shift = float(np.linalg.norm(np.array(final.TransformPoint(centre)) - np.array(centre)))
    report = RegistrationReport(kind=kind, metric_initial=metric_initial, metric_final=metric_final,
                                overlap_initial=overlap_initial, overlap_final=overlap_final,
                                iterations=len(counted), levels=len(levels), stop_condition=stop,
                                rotation_deg=angle, translation_mm=shift)
    if overlap_final < MIN_OVERLAP:
        raise RegistrationError(f"the registration moved the images apart: they overlap over "
                                f"{100 * overlap_final:.0f} % of the smaller one after it (at least "
                                f"{100 * MIN_OVERLAP:.0f} % needed)")
    if metric_final > metric_initial + 0.01 * abs(metric_initial):
        raise RegistrationError(f"the registration made the match worse (Mattes mutual information "
                                f"{-metric_initial:.3f} -> {-metric_final:.3f} nats); the inputs are not fused")
    if -metric_final < MIN_INFORMATION:
        raise RegistrationError(f"the registered images share almost no information (mutual information "
                                f"{-metric_final:.3f} nats, at least {MIN_INFORMATION} needed): are they images of "
                                "the same region? The inputs are not fused")
    return RegistrationResult(final, report)


def resample_onto(fixed, moving, transform, default: Optional[float] = None) -> np.ndarray:
    """``moving`` resampled onto ``fixed``'s grid through ``transform`` (linear), as a ``(K, J, I)`` array.

    Voxels outside ``moving`` take ``default`` (its minimum by default: background, e.g. air in CT)."""
    sitk = import_simpleitk()
    if default is None:
        stats = sitk.MinimumMaximumImageFilter()
        stats.Execute(moving)
        default = stats.GetMinimum()
    out = sitk.Resample(moving, fixed, transform, sitk.sitkLinear, float(default), moving.GetPixelID())
    return sitk.GetArrayFromImage(out)
