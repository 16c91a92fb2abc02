"""The volume pipeline behind :func:`MedFusionLib.fuse`.

Order of work, all checks first:

1. validate inputs (count, dtypes, shapes, finiteness), method, mode/axis and parameters;
2. measure each scalar input's intensity window (:mod:`MedFusionLib.intensity`);
3. fuse: a 2-D image at once; a 3-D volume natively (``mode='3d'``) or as batches of slices along
   ``axis`` (``mode='slices'``), normalising each batch on the fly so that no normalised copy of a whole
   volume is ever held; colour inputs are split into luminance and chroma (:mod:`MedFusionLib.colour`);
4. map the fused [0, 1] result to the output range (grey) or recombine it with chroma (RGB uint8).

Progress is reported per batch and cancellation checked between batches; on cancel or error the
partial output is dropped, never returned.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from . import colour, intensity, memory
from .errors import FusionInputError
from .progress import CancelLike, Progress, ProgressCallback
from .registry import MethodSpec, get_method

DEFAULT_METHOD = "max_detail"
MODES = ("auto", "slices", "3d")
OUTPUT_RANGES = ("reference", "unit")
# Slice batches hold about this many voxels per input (4 Mi: 64 slices of 256 x 256, 16 of 512 x 512).
_BATCH_VOXELS = 1 << 22


@dataclass
class _Source:
    """One validated input and how it enters the fusion."""

    array: np.ndarray                # the caller's array, never written
    rgb: bool                        # (..., 3) uint8 colour image
    colormap: Optional[str]          # scalar functional image shown through this map
    window: Optional[Tuple[float, float]] = None

    @property
    def is_colour(self) -> bool:
        return self.rgb or self.colormap is not None


@dataclass
class FusionPlan:
    """Everything :func:`run` needs, fixed by :func:`plan` before any work starts."""

    spec: MethodSpec
    params: Dict[str, Any]
    sources: List[_Source]
    spatial_shape: Tuple[int, ...]
    mode: str                        # '2d', 'slices' or '3d'
    axis: int
    batch_size: int
    colour_space: str
    output_range: Union[str, Tuple[float, float]]
    percentiles: Tuple[float, float]

    @property
    def colour_output(self) -> bool:
        return any(s.is_colour for s in self.sources)


def _is_rgb(a: np.ndarray) -> bool:
    return a.dtype == np.uint8 and a.ndim in (3, 4) and a.shape[-1] == 3


def _as_arrays(images) -> List[np.ndarray]:
    if isinstance(images, np.ndarray):
        if images.ndim < 3:
            raise FusionInputError(
                f"images must be a sequence of 2 or more arrays; got a single array of shape {images.shape}")
        images = list(images)
    try:
        arrays = [np.asarray(a) for a in images]
    except TypeError:
        raise FusionInputError(
            f"images must be a sequence of 2 or more arrays; got {type(images).__name__}") from None
    if len(arrays) < 2:
        raise FusionInputError(f"fusion needs 2 or more input images; got {len(arrays)}")
    return arrays


def _check_array(k: int, a: np.ndarray) -> bool:
    """Validate input ``k``; return whether it is an RGB image."""
    if a.dtype.kind not in "iuf":
        raise FusionInputError(
            f"input {k} has dtype {a.dtype}; allowed: integer or floating-point arrays "
            f"(RGB images as (..., 3) uint8)")
    rgb = _is_rgb(a)
    spatial_ndim = a.ndim - 1 if rgb else a.ndim
    if spatial_ndim not in (2, 3):
        raise FusionInputError(
            f"input {k} has shape {a.shape}; allowed: 2-D (H, W) or 3-D (K, J, I) scalar arrays, or "
            f"RGB images (H, W, 3) / (K, J, I, 3) of dtype uint8")
    sizes = sorted(a.shape[:spatial_ndim])
    if sizes[0] < 1 or sizes[spatial_ndim - 2] < 2:
        raise FusionInputError(
            f"input {k} has shape {a.shape}; a 2-D image needs at least 2 x 2 samples (a 3-D volume may "
            f"be a single slice: one axis of size 1)")
    if a.dtype.kind == "f" and not np.isfinite(a).all():
        raise FusionInputError(f"input {k} contains NaN or infinite values; fusion needs finite values")
    if a.dtype.kind == "f" and a.dtype.itemsize > 4 and a.size and max(-a.min(), a.max()) > intensity.FLOAT32_MAX:
        # Fusion runs in float32 and returns float32: such values would overflow to inf.
        raise FusionInputError(
            f"input {k} has values up to {max(-a.min(), a.max()):.4g} in magnitude; fusion works in float32, "
            f"allowed: within +-{intensity.FLOAT32_MAX:.4g} (rescale the image first)")
    return rgb


def colormaps_per_input(colormap, n: int) -> List[Optional[str]]:
    """Per-input colour map names: a single name applies to the last input (the functional image)."""
    if colormap is None:
        return [None] * n
    if isinstance(colormap, str):
        maps = [None] * (n - 1) + [colormap]
    else:
        maps = [None if m in (None, "", "none") else m for m in colormap]
        if len(maps) != n:
            raise FusionInputError(f"colormap needs one entry per input ({n}) or a single name; got {len(maps)}")
    for m in maps:
        if m is not None:
            colour.colormap_lut(m)   # raises for unknown names
    return maps


def _input_windows(input_ranges, n: int) -> List[Optional[Tuple[float, float]]]:
    if input_ranges is None:
        return [None] * n
    ranges = list(input_ranges)
    if len(ranges) == 2 and all(np.isscalar(v) for v in ranges):
        window = intensity.check_window(ranges, "input_ranges")
        return [window] * n
    if len(ranges) != n:
        raise FusionInputError(
            f"input_ranges must be one (low, high) pair for all inputs or one pair (or None) per input "
            f"({n}); got {input_ranges!r}")
    return [None if r is None else intensity.check_window(r, f"input_ranges[{k}]") for k, r in enumerate(ranges)]


def plan(images, method: str = DEFAULT_METHOD, *, mode: str = "auto", axis: int = 0,
         batch_size: Optional[int] = None, percentiles: Sequence[float] = intensity.DEFAULT_PERCENTILES,
         input_ranges=None, output_range: Union[str, Sequence[float]] = "reference", colormap=None,
         colour_space: str = "ycbcr", params: Optional[Dict[str, Any]] = None) -> FusionPlan:
    """Validate everything about a fusion call and fix how it will run; no image work is done here
    except the finiteness check. Raises :class:`FusionInputError` on any problem."""
    arrays = _as_arrays(images)
    spec = get_method(method)
    rgb_flags = [_check_array(k, a) for k, a in enumerate(arrays)]
    shapes = [a.shape[:-1] if rgb else a.shape for a, rgb in zip(arrays, rgb_flags)]
    if len(set(shapes)) != 1:
        raise FusionInputError(
            f"all inputs must have the same spatial shape (co-registered on one grid); got {shapes}. "
            f"Resample them onto the first input's grid first (the Slicer bridge does this).")
    spatial_shape = tuple(shapes[0])

    if mode not in MODES:
        raise FusionInputError(f"mode must be one of {', '.join(MODES)}; got {mode!r}")
    if not isinstance(axis, (int, np.integer)) or isinstance(axis, bool):
        raise FusionInputError(f"axis must be an integer; got {axis!r}")
    if len(spatial_shape) == 2:
        if mode == "3d":
            raise FusionInputError("mode='3d' needs 3-D inputs; these are 2-D images")
        resolved_mode, axis = "2d", 0
        item_shape = spatial_shape
    else:
        if not -3 <= axis <= 2:
            raise FusionInputError(f"axis must be in -3..2 for 3-D inputs; got {axis}")
        axis = int(axis) % 3
        if 1 in spatial_shape:
            # A single-slice volume (e.g. a 2-D image loaded as a Slicer volume) is fused as that slice.
            thin = spatial_shape.index(1)
            if mode == "3d":
                raise FusionInputError(f"mode='3d' needs a volume; shape {spatial_shape} is a single slice")
            if mode == "slices" and axis != thin:
                raise FusionInputError(
                    f"slicing shape {spatial_shape} along axis {axis} gives 1-D slices; use axis={thin}")
            mode, axis = "slices", thin
        if mode == "3d" and not spec.supports_3d:
            natively = [s.name for s in _all_3d_methods()]
            raise FusionInputError(
                f"method {spec.name!r} works on 2-D slices only; use mode='slices' (or 'auto'), or a 3-D "
                f"method: {', '.join(natively)}")
        slice_shape = tuple(s for k, s in enumerate(spatial_shape) if k != axis)
        resolved_mode = "3d" if mode == "3d" or (mode == "auto" and spec.supports_3d) else "slices"
        if mode == "auto" and resolved_mode == "3d":
            # 'auto' prefers native 3-D but falls back to slices when the volume is too thin for the
            # parameters (e.g. more pyramid levels than its depth allows).
            try:
                spec.resolve_params(dict(params or {}), len(arrays), spatial_shape)
            except FusionInputError:
                resolved_mode = "slices"
        item_shape = spatial_shape if resolved_mode == "3d" else slice_shape

    resolved_params = spec.resolve_params(dict(params or {}), len(arrays), item_shape)

    maps = colormaps_per_input(colormap, len(arrays))
    for k, (m, rgb) in enumerate(zip(maps, rgb_flags)):
        if m is not None and rgb:
            raise FusionInputError(f"input {k} is already an RGB image; a colour map applies to scalar inputs only")
    if colour_space not in colour.COLOUR_SPACES:
        raise FusionInputError(
            f"colour_space must be one of {', '.join(colour.COLOUR_SPACES)}; got {colour_space!r}")
    windows = _input_windows(input_ranges, len(arrays))
    percentiles = intensity.check_percentiles(percentiles)
    if isinstance(output_range, str):
        if output_range not in OUTPUT_RANGES:
            raise FusionInputError(
                f"output_range must be 'reference', 'unit' or a (low, high) pair; got {output_range!r}")
    else:
        output_range = intensity.check_window(output_range, "output_range")

    # Checked in every mode (2-D and 3-D calls ignore it): batch_size=0 was accepted unless slicing.
    if batch_size is not None and (isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer))
                                   or batch_size < 1):
        raise FusionInputError(f"batch_size must be a positive integer; got {batch_size!r}")
    if resolved_mode == "slices":
        depth = spatial_shape[axis]
        per_slice = int(np.prod(item_shape))
        default = max(1, _BATCH_VOXELS // per_slice)
        if batch_size is None:
            batch_size = default
        batch_size = min(int(batch_size), depth) if spec.batched else 1
    else:
        batch_size = 1

    sources = [_Source(a, rgb, m, w) for a, rgb, m, w in zip(arrays, rgb_flags, maps, windows)]
    # Last check: the call's estimated peak memory fits (MEDFUSION_MAX_MEMORY or what is available).
    memory.check_fusion(spec, len(arrays), spatial_shape, resolved_mode, axis, batch_size,
                        colour_output=any(rgb_flags) or any(m is not None for m in maps))
    return FusionPlan(spec=spec, params=resolved_params, sources=sources, spatial_shape=spatial_shape,
                      mode=resolved_mode, axis=axis, batch_size=batch_size, colour_space=colour_space,
                      output_range=output_range, percentiles=percentiles)


def _all_3d_methods() -> List[MethodSpec]:
    from .registry import methods

    return [s for s in methods() if s.supports_3d]


def _fuse_block(p: FusionPlan, blocks: Sequence[np.ndarray], progress: Progress) -> np.ndarray:
    """Fuse one block (a batch of slices ``(B, *S)`` or one image/volume ``(1, *S)``) of every source.

    Returns the fused block in [0, 1] (grey) or as RGB uint8 ``(B, *S, 3)`` (colour)."""
    lumas, chromas = [], []
    for source, block in zip(p.sources, blocks):
        if source.rgb:
            luma, chroma = colour.rgb_to_luma_chroma(block, p.colour_space)
        elif source.colormap is not None:
            rgb = colour.apply_colormap(intensity.normalise(block, source.window), source.colormap)
            luma, chroma = colour.rgb_to_luma_chroma(rgb, p.colour_space)
        else:
            luma, chroma = intensity.normalise(block, source.window), None
        lumas.append(luma)
        if chroma is not None:
            chromas.append(chroma)
    stack = np.ascontiguousarray(np.stack(lumas), dtype=np.float32)
    del lumas
    kwargs = dict(p.params)
    if p.spec.wants_progress:
        kwargs["progress"] = progress
    fused = np.asarray(p.spec.func(stack, **kwargs), dtype=np.float32)
    expected = stack.shape[1:]
    if fused.shape != expected:
        raise RuntimeError(f"method {p.spec.name!r} returned shape {fused.shape}, expected {expected}")
    np.clip(fused, 0.0, 1.0, out=fused)
    if chromas:
        return colour.luma_chroma_to_rgb(fused, colour.fuse_chroma(chromas, p.colour_space), p.colour_space)
    return fused


def _output_window(p: FusionPlan) -> Optional[Tuple[float, float]]:
    if p.colour_output:
        return None   # RGB uint8 output: no grey window (and the reference, being grey, has one)
    if p.output_range == "unit":
        return (0.0, 1.0)
    if p.output_range == "reference":
        return p.sources[0].window
    return p.output_range


def run(p: FusionPlan, progress: Progress) -> np.ndarray:
    """Carry out a :class:`FusionPlan`; returns the fused float32 image (or RGB uint8)."""
    progress.report(0.0, "measuring intensity windows")
    for s in p.sources:
        if not s.rgb and s.window is None:
            s.window = intensity.robust_window(s.array, p.percentiles)
    out_window = _output_window(p)
    out_shape = p.spatial_shape + ((3,) if p.colour_output else ())
    out = np.empty(out_shape, dtype=np.uint8 if p.colour_output else np.float32)

    def store(target: np.ndarray, fused: np.ndarray) -> None:
        if p.colour_output:
            target[...] = fused
        else:
            intensity.denormalise(fused, out_window, out=target)

    work = progress.sub(0.02, 1.0)
    if p.mode in ("2d", "3d"):
        blocks = [s.array[None] for s in p.sources]
        fused = _fuse_block(p, blocks, work)
        store(out[None], fused)
        work.report(1.0, "done")
        return out

    depth = p.spatial_shape[p.axis]
    moved = [np.moveaxis(s.array, p.axis, 0) for s in p.sources]
    out_view = np.moveaxis(out, p.axis, 0)
    for start in range(0, depth, p.batch_size):
        stop = min(start + p.batch_size, depth)
        work.report(start / depth, f"fusing slices {start + 1}-{stop} of {depth}")
        fused = _fuse_block(p, [m[start:stop] for m in moved], work.sub(start / depth, stop / depth))
        store(out_view[start:stop], fused)
    work.report(1.0, "done")
    return out


def fuse(images, method: str = DEFAULT_METHOD, *, mode: str = "auto", axis: int = 0,
         batch_size: Optional[int] = None, percentiles: Sequence[float] = intensity.DEFAULT_PERCENTILES,
         input_ranges=None, output_range: Union[str, Sequence[float]] = "reference", colormap=None,
         colour_space: str = "ycbcr", progress: Optional[ProgressCallback] = None, cancel: CancelLike = None,
         **params) -> np.ndarray:
    """Fuse two or more co-registered images or volumes into one.

    Parameters
    ----------
    images : sequence of ndarray
        Two or more arrays of one spatial shape: 2-D ``(H, W)`` or 3-D ``(K, J, I)`` (the axis order of
        Slicer's ``arrayFromVolume``), any integer or float dtype, finite and within float32's range
        (+-3.4e38: fusion runs in float32). An ``(..., 3)`` uint8 array is an RGB image (e.g.
        pseudo-colour PET). The first input is the anatomical reference.
    method : str
        A registered method name (see :func:`MedFusionLib.methods`); default :data:`DEFAULT_METHOD`
        (``'max_detail'``).
    mode : {'auto', 'slices', '3d'}
        For 3-D inputs: ``'3d'`` runs the method natively on the volume, ``'slices'`` fuses 2-D slices
        along ``axis`` in batches; ``'auto'`` is ``'3d'`` when the method supports it, else ``'slices'``.
    axis : int
        Slicing axis for ``mode='slices'`` (0 = K, the slowest axis of Slicer's arrays).
    batch_size : int, optional
        Slices per batch (default: about 4 Mi voxels per input per batch).
    percentiles : (float, float)
        Percentile window used to normalise each scalar input to [0, 1] (default (0.5, 99.5)).
    input_ranges : (low, high) or sequence of (low, high) or None, optional
        Fixed intensity windows instead of percentiles: one pair for all inputs or one (or None) per
        input, e.g. ``(0, 255)`` for 8-bit images. RGB inputs always use 0..255.
    output_range : 'reference', 'unit' or (low, high)
        Where the fused [0, 1] values are mapped: the first input's window (default), [0, 1], or a
        given range. Ignored for colour output.
    colormap : str or sequence, optional
        Show scalar functional input(s) in pseudo-colour: one name (applied to the last input) or one
        name/None per input; names from :func:`MedFusionLib.colour.colormap_names`. Any RGB input or
        colour map makes the output RGB uint8.
    colour_space : {'ycbcr', 'ihs'}
        Luminance/chroma transform used for colour fusion.
    progress : callable, optional
        ``progress(fraction, message)``, called as work advances.
    cancel : CancelToken, threading.Event or callable, optional
        When set, the call raises :class:`MedFusionLib.FusionCancelled` and returns nothing.
    **params
        The method's parameters (see ``MedFusionLib.methods()``); unknown names are an error.

    Returns
    -------
    ndarray
        float32 array of the inputs' spatial shape, or ``(*shape, 3)`` uint8 for colour output.

    Raises
    ------
    FusionInputError
        Bad inputs or parameters (before any work starts).
    FusionCancelled
        The caller cancelled.

    Examples
    --------
    >>> import numpy as np, MedFusionLib
    >>> ct = np.zeros((64, 64)); ct[16:48, 16:48] = 1000.0
    >>> pet = np.zeros((64, 64)); pet[30:34, 30:34] = 5.0
    >>> fused = MedFusionLib.fuse([ct, pet], method="average")
    >>> fused.shape, fused.dtype
    ((64, 64), dtype('float32'))
    """
    reporter = Progress.wrap(progress, cancel)
    fusion_plan = plan(images, method, mode=mode, axis=axis, batch_size=batch_size, percentiles=percentiles,
                       input_ranges=input_ranges, output_range=output_range, colormap=colormap,
                       colour_space=colour_space, params=params)
    return run(fusion_plan, reporter)
