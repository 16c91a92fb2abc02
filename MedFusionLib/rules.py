"""Band fusion rules: how co-located coefficients of N sources are combined into one.

Every rule takes ``bands`` of shape ``(N, *batch, *spatial)`` (N sources first, then any batch axes, the
last ``spatial_dims`` axes spatial) and returns the fused band ``(*batch, *spatial)``. Window-based
rules measure activity over a (2r+1)^d neighbourhood of the spatial axes only. The multi-scale methods
(wavelets, pyramids) and later families (NSST, CNN weight maps) call these same functions.

References
----------
.. [1] P. J. Burt, R. J. Kolczynski, "Enhanced image capture through fusion", Proc. ICCV 1993,
       pp. 173-182 (local energy activity, match measure, selection/averaging by threshold).
.. [2] H. Li, B. S. Manjunath, S. K. Mitra, "Multisensor image fusion using the wavelet transform",
       Graphical Models and Image Processing 57(3):235-245, 1995 (max-abs selection, consistency check).
.. [3] Z. Zhang, R. S. Blum, "A categorization of multiscale-decomposition-based image fusion schemes
       with a performance study for a digital camera application", Proc. IEEE 87(8):1315-1326, 1999.
"""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

from .transforms.filters import box_mean, window_count, window_count_inside

#: Names accepted wherever a method lets the user pick a rule for detail (high-pass) bands.
DETAIL_RULES = ("max_abs", "local_energy", "local_similarity", "mean")
#: Names accepted for approximation (low-pass) bands.
BASE_RULES = ("mean", "max_abs", "local_energy")


def _check_bands(bands: np.ndarray, spatial_dims: int) -> None:
    if bands.ndim < spatial_dims + 1:
        raise ValueError(f"bands must have shape (N, ..., *spatial) with {spatial_dims} spatial axes; "
                         f"got shape {bands.shape}")


def _window_radius(window: int) -> int:
    if window < 1 or window % 2 == 0:
        raise ValueError(f"window must be a positive odd size; got {window}")
    return window // 2


def argmax_sources(activity: np.ndarray) -> np.ndarray:
    """Index of the source with the largest activity at each position (first one on ties).

    Same result as ``activity.argmax(axis=0)``, computed by pairwise comparisons, which numpy runs
    several times faster than an argmax over the leading axis.
    """
    index = np.zeros(activity.shape[1:], dtype=np.intp)
    best = activity[0]
    for n in range(1, activity.shape[0]):
        better = activity[n] > best
        index[better] = n
        best = np.maximum(best, activity[n])
    return index


def select(bands: np.ndarray, index: np.ndarray) -> np.ndarray:
    """Pick, at every position, the coefficient of source ``index`` (an integer map)."""
    return np.take_along_axis(bands, index[None].astype(np.intp, copy=False), axis=0)[0]


def average(bands: np.ndarray) -> np.ndarray:
    """Mean of the sources."""
    return bands.mean(axis=0, dtype=np.float32) if bands.dtype == np.float32 else bands.mean(axis=0)


def weighted_average(bands: np.ndarray, weights: Sequence[float]) -> np.ndarray:
    """Sum of ``weights[n] * bands[n]`` with the weights normalised to sum 1.

    ``weights`` is either one number per source or an array broadcastable to ``bands`` (a weight map).
    """
    w = np.asarray(weights, dtype=bands.dtype)
    if w.ndim == 1:
        if w.shape[0] != bands.shape[0]:
            raise ValueError(f"need one weight per source ({bands.shape[0]}); got {w.shape[0]}")
        w = w.reshape((-1,) + (1,) * (bands.ndim - 1))
    total = w.sum(axis=0)
    return (w * bands).sum(axis=0) / np.where(total == 0, 1, total)


def consistency_check(index: np.ndarray, n_sources: int, window: int = 3, spatial_dims: int = 2) -> np.ndarray:
    """Majority filter of a decision map (Li et al. 1995): each position takes the source chosen most
    often in its window, so isolated choices that disagree with their neighbours are overturned."""
    if window <= 1:
        return index
    _window_radius(window)
    # Vote counts are exact integers: a tie (possible where the window is cut by the border and holds an
    # even number of samples, e.g. 2 x 2 in an image corner) keeps the position's own choice.
    if n_sources == 2:
        # Odd windows hold an odd number of samples inside the image: a strict majority always exists
        # there; at the zero-padded border a tie keeps the original choice.
        votes = 2 * window_count(index == 1, window, spatial_dims)
        inside = window_count_inside(index.shape, window, spatial_dims)   # votes for 1 + votes for 0
        return np.where(votes > inside, 1, np.where(votes < inside, 0, index))
    best_votes = None
    best = index.copy()
    for n in range(n_sources):            # loop over sources, vectorised over pixels
        # twice the count, plus one for the position's own choice: ties keep the original choice
        votes = 2 * window_count(index == n, window, spatial_dims) + (index == n)
        if best_votes is None:
            best_votes = votes
            best[...] = n
        else:
            better = votes > best_votes
            best[better] = n
            np.maximum(best_votes, votes, out=best_votes)
    return best


def choose_max(bands: np.ndarray, activity: np.ndarray, consistency_window: int = 0,
               spatial_dims: int = 2) -> np.ndarray:
    """Select at each position the source with the largest ``activity`` (same shape as ``bands``),
    optionally followed by a :func:`consistency_check` of the decision map."""
    index = argmax_sources(activity)
    if consistency_window and consistency_window > 1:
        index = consistency_check(index, bands.shape[0], consistency_window, spatial_dims)
    return select(bands, index)


def max_abs(bands: np.ndarray, consistency_window: int = 0, spatial_dims: int = 2) -> np.ndarray:
    """Choose-max of the absolute coefficient ("max-abs" rule, Li et al. 1995)."""
    _check_bands(bands, spatial_dims)
    return choose_max(bands, np.abs(bands), consistency_window, spatial_dims)


def local_energy(bands: np.ndarray, window: int = 3, spatial_dims: int = 2) -> np.ndarray:
    """Activity map: mean of squared coefficients over a ``window``^d neighbourhood."""
    _check_bands(bands, spatial_dims)
    return box_mean(bands * bands, _window_radius(window), spatial_dims)


def local_energy_rule(bands: np.ndarray, window: int = 3, consistency_window: int = 0,
                      spatial_dims: int = 2) -> np.ndarray:
    """Choose-max of the local energy (window-based activity, Burt and Kolczynski 1993)."""
    return choose_max(bands, local_energy(bands, window, spatial_dims), consistency_window, spatial_dims)


def local_similarity(bands: np.ndarray, window: int = 3, threshold: float = 0.75,
                     weight_map: Optional[np.ndarray] = None, spatial_dims: int = 2) -> np.ndarray:
    """Burt and Kolczynski's match-measure rule for two sources.

    With local energies E_A, E_B and the match measure M = 2 mean(A B) / (E_A + E_B) over the window:
    where M <= ``threshold`` the sources differ and the one of higher energy is selected; where
    M > ``threshold`` they are averaged with w_min = 1/2 - 1/2 (1 - M) / (1 - threshold) for the
    lower-energy source and 1 - w_min for the other. When ``weight_map`` (the weight of source 0, as in
    Liu et al.'s CNN method) is given, similar positions use it instead: F = W A + (1 - W) B.

    Parameters
    ----------
    bands : ndarray, shape (2, ...)
        The two sources' coefficients.
    window : int
        Odd window side for energies and match measure.
    threshold : float in [0, 1)
        Similarity threshold alpha.
    weight_map : ndarray, optional
        Weight of source 0 where the sources are similar (same shape as one band).
    """
    _check_bands(bands, spatial_dims)
    if bands.shape[0] != 2:
        raise ValueError(f"the local-similarity rule is defined for 2 sources; got {bands.shape[0]}")
    if not 0.0 <= threshold < 1.0:
        raise ValueError(f"threshold must be in [0, 1); got {threshold}")
    radius = _window_radius(window)
    energy = box_mean(bands * bands, radius, spatial_dims)
    cross = box_mean(bands[0] * bands[1], radius, spatial_dims)
    denom = energy[0] + energy[1]
    match = np.where(denom > 0, 2.0 * cross / np.where(denom > 0, denom, 1.0), 1.0)
    a_stronger = energy[0] >= energy[1]
    selected = np.where(a_stronger, bands[0], bands[1])
    if weight_map is None:
        w_min = 0.5 - 0.5 * (1.0 - match) / (1.0 - threshold)
        w_a = np.where(a_stronger, 1.0 - w_min, w_min)
    else:
        w_a = weight_map
    blended = w_a * bands[0] + (1.0 - w_a) * bands[1]
    return np.where(match > threshold, blended, selected).astype(bands.dtype, copy=False)


def fuse_band(bands: np.ndarray, rule: str, *, window: int = 3, threshold: float = 0.75,
              consistency: bool = False, spatial_dims: int = 2) -> np.ndarray:
    """Apply the rule named ``rule`` (one of :data:`DETAIL_RULES` or :data:`BASE_RULES`).

    ``consistency`` adds a majority-filter check (over ``window``) to the choose-max rules.
    """
    cw = window if consistency else 0
    if rule == "mean":
        return average(bands)
    if rule == "max_abs":
        return max_abs(bands, cw, spatial_dims)
    if rule == "local_energy":
        return local_energy_rule(bands, window, cw, spatial_dims)
    if rule == "local_similarity":
        return local_similarity(bands, window, threshold, spatial_dims=spatial_dims)
    raise ValueError(f"unknown band rule {rule!r}; rules are {sorted(set(DETAIL_RULES) | set(BASE_RULES))}")
