"""Reference-free fusion quality metrics (fused image F against its sources A, B, ...).

Fusion has no ground truth, so its quality is judged by how much of each source survives in F. This
package computes the 16 metrics most used in the medical-fusion literature, one public function each
(numpy in, float out), and :func:`evaluate_all` for the whole set in the fixed order :data:`METRICS`.

Convention
----------
Where the CDDFuse evaluator (Zhao et al., CVPR 2023) defines a metric, its convention is followed exactly,
quirks included, so that scores can be set beside published tables: EN, SD, SF, AG, MI, CC, PSNR, SCD,
VIF, Qabf, SSIM. The other metrics follow their original papers as implemented in the reference code the
literature uses (Haghighat's fast-FMI; Liu et al.'s toolbox for Qcb and Qcv; Shreyamsha Kumar's code for
Nabf; MONAI's MS-SSIM computation); each docstring says which parameters are used. See ``docs/metrics.md``.

- Images are scored in 0..255. :func:`protocol_image` turns an 8-bit RGB image into rounded luminance
  exactly as the evaluator reads images; :func:`protocol_fused` clips and rounds a fused result. The
  metric functions themselves take any finite real arrays and do not rescale them (EN and MI quantise to
  the integers 0..255, see there).
- ``sources`` is a sequence of two or more arrays of the fused image's shape. Metrics the references
  define for two sources are generalised to N sources in the way that reduces exactly to the two-source
  definition; each docstring states how (sum over sources for MI, VIF, SSIM, MS-SSIM; mean for CC, FMI
  and PSNR's MSE; SCD correlates F minus the mean of the other sources with each source;
  gradient-weighted pooling for Qabf, Nabf; saliency-weighted pooling for Qcb, Qcv).

2-D and 3-D
-----------
A 2-D input ``(H, W)`` is one image. A 3-D input ``(K, J, I)`` is a stack of 2-D slices along ``axis``
(default 0): every metric is computed on each slice and the slice values are averaged (arithmetic mean).
Slices on which a metric is undefined (NaN, e.g. a correlation with a constant slice, an edge metric on
slices without any edge) are left out of that mean; if the metric is undefined on every slice the result
is NaN. The per-slice computation is vectorised over the slice batch.

Inputs are never modified. Bad input (shapes differ, not 2-D/3-D, non-finite or non-real values, fewer
than two sources, slices too small for a metric's windows) raises
:class:`~MedFusionLib.errors.FusionInputError` before any work starts.

Layout
------
One module per family of metrics; import from ``MedFusionLib.metrics`` (this package), which re-exports
every public name:

- ``information``: EN, MI, FMI (entropy and mutual information);
- ``statistical``: SD, CC, PSNR, SCD (intensity statistics, correlations, squared error);
- ``gradient``: SF, AG, Qabf, Nabf (finite differences and Sobel edges);
- ``structural``: VIF, SSIM, MS-SSIM (local window statistics over one or more scales);
- ``perceptual``: Qcb, Qcv (contrast-sensitivity models of Liu et al.'s toolbox);
- ``protocol``: :func:`protocol_image`, :func:`protocol_fused` (reading images as the evaluator does);
- ``evaluate``: :func:`evaluate_all`, :func:`metrics_for_shape` (the whole set);
- ``table``: :data:`METRICS`, :data:`HIGHER_IS_BETTER` and the smallest slice side of each metric;
- ``_common``: input validation, slice stacks and blocks, shared filters.

References
----------
.. [1] Z. Zhao et al., "CDDFuse: Correlation-Driven Dual-Branch Feature Decomposition for Multi-Modality
       Image Fusion", CVPR 2023 (evaluator: ``utils/Evaluator.py`` of the authors' code).
.. [2] Z. Liu et al., "Objective assessment of multiresolution image fusion algorithms for context
       enhancement in night vision: a comparative study", IEEE TPAMI 34(1):94-109, 2012.
.. [3] J. Ma, Y. Ma, C. Li, "Infrared and visible image fusion methods and applications: a survey",
       Information Fusion 45:153-178, 2019.
"""

from .evaluate import evaluate_all, metrics_for_shape
from .gradient import ag, nabf, qabf, sf
from .information import en, fmi, mi
from .perceptual import qcb, qcv
from .protocol import protocol_fused, protocol_image
from .statistical import cc, psnr, scd, sd
from .structural import ms_ssim, ssim, vif
from .table import HIGHER_IS_BETTER, METRICS

__all__ = ["METRICS", "HIGHER_IS_BETTER", "evaluate_all", "metrics_for_shape", "protocol_image", "protocol_fused",
           "en", "sd", "sf", "ag", "mi", "fmi", "cc", "psnr", "scd", "vif", "qabf", "nabf", "ssim",
           "ms_ssim", "qcb", "qcv"]
