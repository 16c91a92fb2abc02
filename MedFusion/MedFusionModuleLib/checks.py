"""Checks of a fused volume: geometry, type and values that any correct fusion must show.

Shared by the module's self-test (``MedFusionTest``), the batch script's ``--self-test`` and pytest, so the
Slicer application and ``slicer-core`` check the very same properties. :func:`fusionProblems` returns a
list of problems (empty when the result is sound) instead of asserting, so each caller reports them its
own way, and a test can also show that a broken result *is* caught.
"""

from __future__ import annotations

from typing import List, Optional, Sequence

import numpy as np

# Thresholds, chosen well inside what every registered classical method gives on the phantom (see
# Testing/Python/test_slicer_module.py): correlations 0.68..1.0, hot-spot saturation >= 40.
MIN_CORRELATION_REFERENCE = 0.5
MIN_CORRELATION_OTHER = 0.2
MAX_NEUTRAL_SPREAD = 2.0
MIN_HOT_SATURATION = 20.0


def _matrix(node) -> np.ndarray:
    import vtk

    m = vtk.vtkMatrix4x4()
    node.GetIJKToRASMatrix(m)
    return np.array([[m.GetElement(r, c) for c in range(4)] for r in range(4)])


def _corr(a: np.ndarray, b: np.ndarray) -> float:
    a = np.asarray(a, np.float64).ravel()
    b = np.asarray(b, np.float64).ravel()
    if a.std() == 0 or b.std() == 0:
        return 0.0
    return float(np.corrcoef(a, b)[0, 1])


def _luma(rgb: np.ndarray) -> np.ndarray:
    return rgb[..., 0] * 0.299 + rgb[..., 1] * 0.587 + rgb[..., 2] * 0.114


def fusionProblems(output, inputs: Sequence, colourMap: Optional[str] = None) -> List[str]:
    """What is wrong with ``output``, the fusion of ``inputs`` (reference first), or ``[]``.

    Checks that the output
    - is a volume in the reference's scene with the reference's grid (dimensions, IJK-to-RAS matrix)
      and parent transform;
    - has the right kind: a float32 scalar volume for grey output, an RGB uint8 vector volume for colour
      output (``colourMap`` given or an RGB input);
    - has finite values and, for grey output, lies within the reference's intensity window (the library's
      default ``output_range='reference'``);
    - resembles its inputs: correlation with the reference above 0.5 and with each other input (resampled)
      above 0.2 (luminance for colour output);
    - for colour output through a map whose low end is black or grey ('pet', 'hot', 'grey'), is neutral
      where the functional input is low and saturated at its hottest voxels.
    """
    from MedFusionLib import bridge, colour, intensity

    problems: List[str] = []
    if output is None:
        return ["no output volume"]
    reference = inputs[0]
    if output.GetScene() is None or output.GetScene() is not reference.GetScene():
        problems.append("the output is not in the reference's scene")
    if output.GetImageData() is None:
        return problems + ["the output has no image data"]
    rgbInputs = any(n.IsA("vtkMRMLVectorVolumeNode") for n in inputs)
    colourOutput = bool(colourMap) or rgbInputs
    if output.GetImageData().GetDimensions() != reference.GetImageData().GetDimensions():
        problems.append(f"output dimensions {output.GetImageData().GetDimensions()} differ from the reference's "
                        f"{reference.GetImageData().GetDimensions()}")
        return problems
    if not np.allclose(_matrix(output), _matrix(reference), atol=1e-6, rtol=0.0):
        problems.append("output IJK-to-RAS matrix differs from the reference's")
    if output.GetTransformNodeID() != reference.GetTransformNodeID():
        problems.append("output parent transform differs from the reference's")
    fused = np.asarray(bridge.array_from_node(output))
    if colourOutput:
        if not output.IsA("vtkMRMLVectorVolumeNode") or fused.dtype != np.uint8 or fused.shape[-1:] != (3,):
            problems.append(f"colour output should be an RGB uint8 vector volume; got {output.GetClassName()} "
                            f"{fused.dtype} {fused.shape}")
            return problems
        values = _luma(fused.astype(np.float64))
    else:
        if output.IsA("vtkMRMLVectorVolumeNode") or fused.dtype != np.float32:
            problems.append(f"grey output should be a float32 scalar volume; got {output.GetClassName()} {fused.dtype}")
            return problems
        if not np.isfinite(fused).all():
            return problems + ["the output has NaN or infinite voxels"]
        values = fused.astype(np.float64)
        reference_array = np.asarray(bridge.array_from_node(reference))
        lo, hi = intensity.robust_window(reference_array)
        tolerance = 1e-4 * (hi - lo)
        if fused.min() < lo - tolerance or fused.max() > hi + tolerance:
            problems.append(f"grey output range {fused.min():g}..{fused.max():g} leaves the reference window "
                            f"{lo:g}..{hi:g}")
    if values.std() == 0:
        return problems + ["the output is constant"]
    sources = [np.asarray(bridge.resample_to_reference(n, reference)) for n in inputs]
    sources = [_luma(s.astype(np.float64)) if n.IsA("vtkMRMLVectorVolumeNode") else s
               for n, s in zip(inputs, sources)]
    r0 = _corr(values, sources[0])
    if r0 < MIN_CORRELATION_REFERENCE:
        problems.append(f"correlation with the reference {reference.GetName()!r} is {r0:.2f} "
                        f"(< {MIN_CORRELATION_REFERENCE})")
    for node, source in zip(inputs[1:], sources[1:]):
        r = _corr(values, source)
        if r < MIN_CORRELATION_OTHER:
            problems.append(f"correlation with input {node.GetName()!r} is {r:.2f} (< {MIN_CORRELATION_OTHER})")
    functional = inputs[-1]
    if colourMap and not functional.IsA("vtkMRMLVectorVolumeNode"):
        lut = colour.colormap_lut(colourMap).astype(np.float64)
        f = sources[-1]
        rgb = fused.astype(np.float64)
        spread = np.maximum(np.abs(rgb[..., 0] - rgb[..., 1]), np.abs(rgb[..., 1] - rgb[..., 2]))
        saturation = rgb.max(axis=-1) - rgb.min(axis=-1)
        if np.ptp(lut[0]) == 0:   # the map starts neutral: low functional values must stay uncoloured
            low = f <= np.percentile(f, 30)
            if low.any() and spread[low].mean() > MAX_NEUTRAL_SPREAD:
                problems.append(f"colour output is tinted ({spread[low].mean():.1f}) where the functional input "
                                f"is low; expected neutral grey")
        hot = f >= np.percentile(f, 99)
        coloured = np.ptp(lut, axis=1).max() > 0   # the 'grey' map has no colours to look for
        if coloured and hot.any() and np.ptp(f) > 0 and saturation[hot].mean() < MIN_HOT_SATURATION:
            problems.append(f"colour output is nearly grey ({saturation[hot].mean():.1f}) at the functional "
                            f"input's hottest voxels; expected the colour map's colours")
    return problems
