"""Principal component analysis weighting (Naidu and Raol 2008)."""

from __future__ import annotations

import numpy as np

from ..registry import register

_REFERENCE = ("V. P. S. Naidu, J. R. Raol, 'Pixel-level image fusion using wavelets and principal component "
              "analysis', Defence Science Journal 58(3):338-352, 2008")


def pca_weights(stack: np.ndarray) -> np.ndarray:
    """Fusion weights ``(N, B)`` from the principal eigenvector of each image's N x N source covariance.

    The eigenvector of the largest eigenvalue, taken in absolute value and normalised to sum 1, weights
    the sources; an image whose sources are all constant gets equal weights.
    """
    n, b = stack.shape[:2]
    flat = stack.reshape(n, b, -1).astype(np.float64)
    centred = flat - flat.mean(axis=2, keepdims=True)
    cov = np.einsum("nbp,mbp->bnm", centred, centred) / max(flat.shape[2] - 1, 1)
    _, vectors = np.linalg.eigh(cov)          # ascending eigenvalues; last column is the principal one
    principal = np.abs(vectors[:, :, -1])     # (B, N)
    total = principal.sum(axis=1, keepdims=True)
    degenerate = ~(np.trace(cov, axis1=1, axis2=2) > 0)
    weights = np.where(degenerate[:, None], 1.0 / n, principal / np.where(total > 0, total, 1.0))
    return weights.T


@register("pca", family="classical",
          summary="Weighted mean with weights from the first principal component of the inputs.",
          reference=_REFERENCE, dims=(2, 3))
def pca_fusion(stack: np.ndarray) -> np.ndarray:
    """F = sum_n w_n I_n with (w_n) the normalised principal eigenvector of the sources' covariance,
    computed per image of the batch (per slice when fusing slice-wise, per volume in 3-D)."""
    weights = pca_weights(stack).astype(np.float32)
    return np.einsum("nb,nb...->b...", weights, stack)
