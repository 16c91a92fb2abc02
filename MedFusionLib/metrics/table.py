"""The metric table: which metrics there are, in which order, which way each points, and the smallest
slice each one's windows fit.

:data:`METRICS` is the fixed order :func:`~MedFusionLib.metrics.evaluate_all` reports in, :data:`HIGHER_IS_BETTER`
the direction of each; ``_MIN_SIZE`` is read by the input checks (``_common._prepare``) and by
:func:`~MedFusionLib.metrics.metrics_for_shape`. The window constants that set the minimum sizes of VIF
(Sheikh & Bovik 2006: 4 scales) and MS-SSIM (Wang, Simoncelli & Bovik 2003: an 11 x 11 window, as MONAI
checks it) live here so that the structural metrics and the size table read the same numbers.
"""

from __future__ import annotations

from typing import Dict, Tuple

#: The metrics :func:`evaluate_all` returns, in this order.
METRICS: Tuple[str, ...] = ("EN", "SD", "SF", "AG", "MI", "FMI", "CC", "PSNR", "SCD", "VIF", "Qabf",
                            "Nabf", "SSIM", "MS-SSIM", "Qcb", "Qcv")
#: True where a larger value means a better fusion; Nabf (artefacts) and Qcv (distortion) are lower-better.
HIGHER_IS_BETTER: Dict[str, bool] = {name: name not in ("Nabf", "Qcv") for name in METRICS}

# Smallest slice side each metric's windows allow (the whole slice must hold them).
_VIF_SCALES = 4
_MS_SSIM_KERNEL = 11


def _vif_min_size() -> int:
    # Smallest side for which every one of the 4 'valid' scales keeps at least one pixel.
    n = 1
    while True:
        m, ok = n, True
        for scale in range(1, _VIF_SCALES + 1):
            taps = 2 ** (_VIF_SCALES + 1 - scale) + 1
            if scale > 1:
                m = m - (taps - 1)
                m = (m + 1) // 2 if m > 0 else 0
            if m - (taps - 1) < 1:
                ok = False
                break
        if ok:
            return n
        n += 1


_MIN_SIZE: Dict[str, int] = {
    "EN": 1, "SD": 1, "SF": 2, "AG": 2, "MI": 1, "FMI": 3, "CC": 1, "PSNR": 1, "SCD": 1,
    "VIF": _vif_min_size(), "Qabf": 1, "Nabf": 2, "SSIM": 7,
    # MONAI's check for 5 scales: side // 16 must exceed kernel_size - 1.
    "MS-SSIM": 16 * _MS_SSIM_KERNEL, "Qcb": 1, "Qcv": 1,
}
