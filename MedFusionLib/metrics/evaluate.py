"""The whole set of metrics at once: :func:`evaluate_all` and :func:`metrics_for_shape`.

:func:`evaluate_all` validates the inputs once and runs the per-slice kernel of every metric of
:data:`~MedFusionLib.metrics.METRICS` (or of a subset) on the same float64 slice stacks, reporting those
whose windows do not fit the slices as NaN; :func:`metrics_for_shape` says which fit. The kernels come
from the family modules (``information``, ``statistical``, ``gradient``, ``structural``, ``perceptual``);
the protocol these scores follow is described in :mod:`MedFusionLib.metrics` and ``docs/metrics.md``.
"""

from __future__ import annotations

from typing import Callable, Dict, Iterable, Optional, Sequence, Tuple

import numpy as np

from ..errors import FusionInputError
from ._common import _check_axis, _fused_only, _per_slice, _prepare, _reduce
from .gradient import _ag_slices, _nabf_slices, _qabf_slices, _sf_slices
from .information import _en_slices, _fmi_slices, _mi_slices
from .perceptual import _qcb_slices, _qcv_slices
from .statistical import _cc_slices, _psnr_slices, _scd_slices, _sd_slices
from .structural import _ms_ssim_slices, _ssim_slices, _vif_slices
from .table import _MIN_SIZE, METRICS


_SLICE_KERNELS: Dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    "EN": _fused_only(_en_slices),
    "SD": _fused_only(_sd_slices),
    "SF": _fused_only(_sf_slices),
    "AG": _fused_only(_ag_slices),
    "MI": _mi_slices,
    "FMI": _fmi_slices,
    "CC": _cc_slices,
    "PSNR": _psnr_slices,
    "SCD": _scd_slices,
    "VIF": _vif_slices,
    "Qabf": _qabf_slices,
    "Nabf": _nabf_slices,
    "SSIM": _ssim_slices,
    "MS-SSIM": _ms_ssim_slices,
    "Qcb": _qcb_slices,
    "Qcv": _qcv_slices,
}


def metrics_for_shape(shape: Sequence[int], *, axis: int = 0) -> Tuple[str, ...]:
    """The metrics of :data:`METRICS` whose windows fit slices of an image or volume of ``shape``.

    Parameters
    ----------
    shape : sequence of int
        Shape of a 2-D image or 3-D volume.
    axis : int, optional
        Slice axis of a volume.

    Returns
    -------
    tuple of str
        In the order of :data:`METRICS`; pass it as ``evaluate_all(..., metrics=...)`` to score images too
        small for some metric (MS-SSIM needs 176 x 176 slices, VIF 41 x 41, SSIM 7 x 7).
    """
    shape = tuple(int(n) for n in shape)
    if len(shape) not in (2, 3):
        raise FusionInputError(f"shape must be that of a 2-D image or a 3-D volume; got {shape}")
    ax = _check_axis(axis, len(shape))
    side = min(shape) if len(shape) == 2 else min(n for k, n in enumerate(shape) if k != ax)
    return tuple(name for name in METRICS if side >= _MIN_SIZE[name])


def evaluate_all(fused, sources, *, axis: int = 0,
                 metrics: Optional[Iterable[str]] = None) -> Dict[str, float]:
    """All reference-free metrics of a fused image, in the fixed order :data:`METRICS`.

    Parameters
    ----------
    fused : array_like
        Fused image (H, W) or volume (K, J, I), values in 0..255 (see :func:`protocol_fused`).
    sources : sequence of array_like
        Two or more co-registered source images of the same shape (see :func:`protocol_image`).
    axis : int, optional
        Slice axis of a volume; each metric is computed per slice and averaged over slices.
    metrics : iterable of str, optional
        A subset of :data:`METRICS` (default: all). Slices smaller than 176 x 176 need a subset without
        MS-SSIM (VIF needs 41 x 41, SSIM 7 x 7): :func:`metrics_for_shape` gives the largest one.

    Returns
    -------
    dict of str to float
        Metric name to value, in the order of :data:`METRICS`; :data:`HIGHER_IS_BETTER` says which way
        each points. FMI uses its defaults (gradient feature, 3 x 3 window).

    Raises
    ------
    FusionInputError
        On bad input, before any metric is computed.
    """
    if metrics is None:
        # Every metric; those whose windows do not fit the slices (MS-SSIM below 176 x 176, VIF below
        # 41 x 41, SSIM below 7 x 7) are reported as NaN rather than failing the whole evaluation.
        shape = np.shape(fused)
        fits = set(metrics_for_shape(shape, axis=axis)) if len(shape) in (2, 3) else set(METRICS)
        names = [m for m in METRICS if m in fits]
        if not names:
            names = list(METRICS)   # let _prepare report what is wrong
        F, X = _prepare(fused, sources, axis, names)
        return {name: (_reduce(_per_slice(_SLICE_KERNELS[name], F, X)) if name in fits else float("nan"))
                for name in METRICS}
    else:
        wanted = [metrics] if isinstance(metrics, str) else list(metrics)
        unknown = [m for m in wanted if m not in METRICS]
        if unknown:
            raise FusionInputError(f"unknown metric(s) {unknown}; allowed: {', '.join(METRICS)}")
        names = [m for m in METRICS if m in wanted]
    F, X = _prepare(fused, sources, axis, names)
    return {name: _reduce(_per_slice(_SLICE_KERNELS[name], F, X)) for name in names}
