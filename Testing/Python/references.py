"""Independent, written-out references shared by several test files (a plain module, imported by them).

Each function follows a published definition directly (loops, scipy), never the library's own code, so a
test comparing the library with it fails when the library's algorithm is wrong.
"""

import numpy as np
from scipy import ndimage as ndi


def burt_adelson_kernel(a: float = 0.375) -> np.ndarray:
    """The 5-tap generating kernel of Burt and Adelson (1983), eq. (1)-(2): w(0) = a, w(+-1) = 1/4,
    w(+-2) = 1/4 - a/2; a = 0.375 gives [1, 4, 6, 4, 1] / 16."""
    return np.array([0.25 - a / 2, 0.25, a, 0.25, 0.25 - a / 2])


def reduce2d(x: np.ndarray) -> np.ndarray:
    """Burt-Adelson REDUCE: g_l(i, j) = sum_mn w(m) w(n) g_(l-1)(2i + m, 2j + n), mirror borders."""
    w = burt_adelson_kernel()
    return ndi.correlate(x, np.outer(w, w), mode="mirror")[::2, ::2]


def expand2d(g: np.ndarray, shape) -> np.ndarray:
    """Burt-Adelson EXPAND: 4 sum_mn w(m) w(n) g((i - m)/2, (j - n)/2) over integer terms, mirror borders."""
    w = burt_adelson_kernel()
    up = np.zeros(shape)
    up[::2, ::2] = g
    return ndi.correlate(up, 4 * np.outer(w, w), mode="mirror")


def majority_filter(index: np.ndarray, window: int = 3) -> np.ndarray:
    """Consistency verification of a two-source decision map (Li, Manjunath and Mitra 1995), pixel by pixel:
    a position takes the source chosen by the strict majority of its window (samples inside the image
    only); on a tie (only where the border cuts the window) it keeps its own choice."""
    r = window // 2
    out = index.copy()
    h, w = index.shape
    for i in range(h):
        for j in range(w):
            patch = index[max(i - r, 0):i + r + 1, max(j - r, 0):j + r + 1]
            ones, n = int(patch.sum()), patch.size
            if 2 * ones != n:
                out[i, j] = 1 if 2 * ones > n else 0
    return out
