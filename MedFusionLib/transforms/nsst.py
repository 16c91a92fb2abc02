"""Nonsubsampled shearlet transform (NSST): nonsubsampled Laplacian pyramid plus shearing filters.

``nsst_decompose(x, directions=(8, 8, 16, 16))`` returns ``[low, D_1, ..., D_J]``: the low-pass band
(..., H, W), then for every pyramid level from the coarsest to the finest a stack of directional bands
(..., n_j, H, W) (``directions`` is given coarse to fine, as in the NSST toolbox of Easley et al. and the
fusion papers: "8, 8, 16, 16 directions from the coarser to the finer scales"). Every band has the
image size (no subsampling: shift-invariant). :func:`nsst_reconstruct` inverts it exactly.

Construction (frequency domain, Easley, Labate and Lim 2008, Sec. 3; Hauser and Steidl's FFST):

1. Nonsubsampled Laplacian pyramid (a trous): with the maximally flat binomial low-pass
   H(w) = cos^4(w1 / 2) cos^4(w2 / 2) (Burt's 5-tap kernel [1, 4, 6, 4, 1] / 16 per axis) and
   Phi_j(w) = prod_{k < j} H(2^k w), band-pass level j is Psi_j = Phi_j - Phi_{j+1}, the low-pass
   Phi_J; then sum_j Psi_j + Phi_J = 1.
2. Shearing filters: each band-pass level is split into n_j directional bands by windows P_l(p) of the
   shear parameter p (p = w2 / w1 in the cone |w2| <= |w1|, 2 - w1 / w2 in the other), n_j / 2 equal
   shear intervals per cone, smooth (Meyer) transitions, sum_l P_l = 1. As in Easley et al.'s
   implementation the windows are designed on a small DFT grid and used as compact spatial filters
   (:func:`shear_support`: n x n for n directions, at least 8 x 8, Yin et al.'s dsize),
   which add up to a unit impulse.

Band (j, l) is IDFT(Psi_j S_l X) with S_l the DFT of shearing filter l; reconstruction is the sum of all
bands (x = low + sum_{j,l} band_{j,l}), exact because the shearing filters add up to an impulse and the
pyramid telescopes. Filtering is circular (FFT).

References
----------
.. [1] G. Easley, D. Labate, W.-Q. Lim, "Sparse directional image representations using the discrete
       shearlet transform", Applied and Computational Harmonic Analysis 25(1):25-46, 2008.
.. [2] S. Hauser, G. Steidl, "Fast finite shearlet transform: a tutorial", arXiv:1202.1773, 2014.
.. [3] P. J. Burt, E. H. Adelson, "The Laplacian pyramid as a compact image code", IEEE Trans.
       Communications 31(4):532-540, 1983.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Iterator, List, Sequence, Tuple

import numpy as np

from . import _freq

#: Directions per level (coarse to fine) of Yin et al.'s and Easley's settings, dcomp = [3, 3, 4, 4].
DEFAULT_DIRECTIONS = (8, 8, 16, 16)


def check_directions(directions: Sequence[int], shape=None, name: str = "directions") -> Tuple[int, ...]:
    """Validate a per-level direction list (coarse to fine): 1 to 8 levels, each an even number
    2..64 (or 1: no directional split); the image must be large enough for the pyramid."""
    try:
        dirs = tuple(int(d) for d in directions)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a sequence of integers; got {directions!r}") from None
    if not 1 <= len(dirs) <= 8:
        raise ValueError(f"{name} must list 1 to 8 levels; got {len(dirs)}")
    for d in dirs:
        if d != 1 and (d < 2 or d > 64 or d % 2):
            raise ValueError(f"{name}: each level takes 1 or an even number of directions 2..64; got {dirs}")
    if shape is not None and min(shape) < 2 ** (len(dirs) + 1):
        raise ValueError(f"{name}: {len(dirs)} levels need images of at least {2 ** (len(dirs) + 1)} samples "
                         f"per side; got shape {tuple(shape)}")
    return dirs


def shear_support(directions: Sequence[int]) -> Tuple[int, ...]:
    """Side of the square spatial support of the shearing filters of each level (coarse to fine): the
    number of directions of the level, at least 8 -- Yin et al.'s setting of Easley's toolbox, dsize =
    [8, 8, 16, 16] for dcomp = [3, 3, 4, 4] (8, 8, 16, 16 directions). Short filters keep the
    coefficients local (no tails into the black background of medical images) at the price of a coarser
    directional resolution at the coarse levels."""
    return tuple(max(8, int(n)) for n in directions)


@lru_cache(maxsize=16)
def _bank(shape: Tuple[int, int], directions: Tuple[int, ...]):
    """(low-pass response, [per level coarse to fine: analysis responses], [synthesis responses])."""
    w1, w2 = _freq.frequency_grid(shape)
    levels = len(directions)

    def lowpass(scale):
        return (np.cos(scale * w1 / 2) ** 4) * (np.cos(scale * w2 / 2) ** 4)

    phi = [np.ones(np.broadcast(w1, w2).shape)]
    for j in range(levels):
        phi.append(phi[-1] * lowpass(2.0 ** j))
    analysis, synthesis = [], []
    one = np.ones((1, 1))
    for i, (n, support) in enumerate(zip(directions, shear_support(directions))):
        j = levels - 1 - i                    # i = 0 is the coarsest band-pass level
        psi = phi[j] - phi[j + 1]

        def partition(k1, k2, n=n):
            return [win ** 2 for win in _freq.angular_windows(_freq.pseudo_angle(k1, k2), n)]

        shear = _freq.compact_partition(partition, support, shape) if n > 1 else [np.ones_like(psi)]
        analysis.append(tuple(psi * r for r in shear))
        synthesis.append(tuple(one for _ in shear))     # the shearing filters add up to an impulse
    return phi[levels], tuple(analysis), tuple(synthesis)


def nsst_decompose(x: np.ndarray, directions: Sequence[int] = DEFAULT_DIRECTIONS) -> List[np.ndarray]:
    """Nonsubsampled shearlet decomposition of the last two axes of ``x``.

    Parameters
    ----------
    x : ndarray, shape (..., H, W)
        Images (any leading batch axes); float64 is kept, anything else computed in float32.
    directions : sequence of int
        Directions per pyramid level, coarse to fine (default 8, 8, 16, 16).

    Returns
    -------
    list of ndarray
        ``[low (..., H, W), D_coarsest (..., n_0, H, W), ..., D_finest (..., n_{J-1}, H, W)]``.

    Examples
    --------
    >>> import numpy as np
    >>> x = np.random.default_rng(0).random((64, 64))
    >>> bands = nsst_decompose(x, directions=(4, 8))
    >>> [b.shape for b in bands]
    [(64, 64), (4, 64, 64), (8, 64, 64)]
    >>> bool(np.allclose(nsst_reconstruct(bands), x))
    True
    """
    x = _freq.as_float(x)
    _freq.check_image_batch(x, "nsst_decompose")
    directions = check_directions(directions, x.shape[-2:])
    shape = x.shape[-2:]
    low, analysis, _ = _bank(tuple(shape), directions)
    xf = _freq.forward(x)
    real = x.dtype
    out = [_freq.inverse(xf * low.astype(real), shape)]
    for responses in analysis:
        out.append(_freq.apply_bank(xf, responses, shape))
    return out


def nsst_reconstruct(bands: Sequence[np.ndarray]) -> np.ndarray:
    """Invert :func:`nsst_decompose` (the direction counts are read from the band shapes)."""
    low = np.asarray(bands[0])
    shape = low.shape[-2:]
    directions = tuple(int(np.shape(b)[-3]) for b in bands[1:])
    _, _, synthesis = _bank(tuple(shape), check_directions(directions))
    total = _freq.forward(low)
    for level, responses in zip(bands[1:], synthesis):
        total += _freq.synthesise(np.asarray(level, dtype=low.dtype), responses)
    return _freq.inverse(total, shape).astype(low.dtype, copy=False)


class NSSTBands:
    """Streaming access to the NSST of a batch, one directional band at a time (for fusion rules that
    work band by band without holding all bands: memory of one band per source).

    ``bands = NSSTBands(x, directions)``; ``bands.low`` is the low-pass band; iterate
    ``for level, direction, band in bands`` to get each directional band (..., H, W) coarse to fine;
    ``bands.accumulate(fused_band, level, direction)`` adds a fused band to the synthesis and
    ``bands.reconstruct(fused_low)`` returns the image.
    """

    def __init__(self, x: np.ndarray, directions: Sequence[int] = DEFAULT_DIRECTIONS):
        x = _freq.as_float(x)
        _freq.check_image_batch(x, "NSSTBands")
        self.directions = check_directions(directions, x.shape[-2:])
        self.shape = tuple(x.shape[-2:])
        self.dtype = x.dtype
        low, self._analysis, self._synthesis = _bank(self.shape, self.directions)
        self._xf = _freq.forward(x)
        self.low = _freq.inverse(self._xf * low.astype(self.dtype), self.shape)
        self._total = None

    @property
    def n_bands(self) -> int:
        return sum(self.directions)

    def __iter__(self) -> Iterator[Tuple[int, int, np.ndarray]]:
        for level, responses in enumerate(self._analysis):
            for direction, r in enumerate(responses):
                yield level, direction, _freq.inverse(self._xf * r.astype(self.dtype), self.shape)

    def accumulate(self, band: np.ndarray, level: int, direction: int) -> None:
        term = _freq.forward(np.asarray(band, dtype=self.dtype)) * \
            self._synthesis[level][direction].astype(self.dtype)
        self._total = term if self._total is None else self._total.__iadd__(term)

    def reconstruct(self, low: np.ndarray) -> np.ndarray:
        total = _freq.forward(np.asarray(low, dtype=self.dtype))
        if self._total is not None:
            total = total + self._total
        return _freq.inverse(total, self.shape).astype(self.dtype, copy=False)
