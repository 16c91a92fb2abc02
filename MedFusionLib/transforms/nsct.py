"""Nonsubsampled contourlet transform (NSCT, da Cunha, Zhou and Do, IEEE TIP 2006).

``nsct_decompose(x, directions=(4, 8, 8, 16))`` returns ``[low, D_1, ..., D_J]`` like
:func:`MedFusionLib.transforms.nsst.nsst_decompose`: the low-pass band, then per pyramid level from the
coarsest to the finest a stack of 2^l directional bands (..., 2^l, H, W); :func:`nsct_reconstruct`
inverts it exactly. Directional bands are ordered by orientation like the NSST's.

Structure (da Cunha et al., Sec. II-III), every stage a two-channel nonsubsampled filter bank (NSFB):

* Nonsubsampled pyramid (NSP): the NSFB {H0, H1} iterated a trous, stage j using H_i(2^j w). Level j
  band-pass: H1(2^j w) prod_{k<j} H0(2^k w); low-pass prod_{k<J} H0(2^k w).
* Nonsubsampled directional filter bank (NSDFB): a binary tree of fan-filter NSFBs {U0, U1}. Stage 1
  splits the plane into the two cones |w1| >= |w2| and |w1| < |w2|; stage 2 uses the fan filters
  upsampled by the quincunx matrix Q (quadrant / checkerboard filters U_i(Q^T w)); every later stage
  splits each wedge at its middle slope with the fan filters resampled by an integer matrix M
  (parallelogram filters U_i(M^T w)) whose fan boundaries map onto the wedge's bisecting line and onto
  an axis outside the wedge. 2^l equal-slope directional wedges after l stages.

Filters (our design, the deviation from the paper): da Cunha et al. design FIR filters by the mapping
approach (1-D prototype P, 2-D mapping f: H(w) = P(f(w))) with a ladder/Bezout pair H0 G0 + H1 G1 = 1.
Here the pyramid NSFB is the FIR maximally flat pair H0 = G0 = B (binomial, cos^4(w1/2) cos^4(w2/2)),
H1 = 1 - B^2, G1 = 1. The fan NSFB is U0 = cos(pi/2 r(f)), U1 = sin(pi/2 r(f)) (U0^2 + U1^2 = 1) of the
mapped variable f = (cos w2 - cos w1) / (2 - cos w1 - cos w2) (= cos 2 theta near the origin), whose
boundary set cos w1 = cos w2 is the fan's; the squared equivalent filters of the tree, a partition of
unity, are sampled on a small n x n grid (:func:`directional_support`) and used as compact spatial
filters that add up to an impulse (as Easley et al.'s shearing filters), so every coefficient depends
on a bounded neighbourhood. Filtering is circular, by FFT.

References
----------
.. [1] A. L. da Cunha, J. Zhou, M. N. Do, "The nonsubsampled contourlet transform: theory, design, and
       applications", IEEE Trans. Image Processing 15(10):3089-3101, 2006.
.. [2] R. H. Bamberger, M. J. T. Smith, "A filter bank for the directional decomposition of images",
       IEEE Trans. Signal Processing 40(4):882-893, 1992.
"""

from __future__ import annotations

from fractions import Fraction
from functools import lru_cache
from typing import List, Sequence, Tuple

import numpy as np

from . import _freq

#: Directions per level, coarse to fine: 2^[2, 3, 3, 4], a common NSCT fusion setting.
DEFAULT_DIRECTIONS = (4, 8, 8, 16)


def check_directions(directions: Sequence[int], shape=None, name: str = "directions") -> Tuple[int, ...]:
    """1 to 6 levels, each a power of two 1..64 (2^l directions from l NSDFB stages)."""
    try:
        dirs = tuple(int(d) for d in directions)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a sequence of integers; got {directions!r}") from None
    if not 1 <= len(dirs) <= 6:
        raise ValueError(f"{name} must list 1 to 6 levels; got {len(dirs)}")
    for d in dirs:
        if d < 1 or d > 64 or d & (d - 1):
            raise ValueError(f"{name}: the NSCT splits each level into a power of two of directions (1..64); "
                             f"got {dirs}")
    if shape is not None and min(shape) < 2 ** (len(dirs) + 1):
        raise ValueError(f"{name}: {len(dirs)} levels need images of at least {2 ** (len(dirs) + 1)} samples "
                         f"per side; got shape {tuple(shape)}")
    return dirs


def _ramp(f: np.ndarray, centre: float, half_width: float) -> np.ndarray:
    """0 where f >= centre + half_width (pass), 1 where f <= centre - half_width (stop), Meyer between."""
    return _freq.meyer_step((centre + half_width - f) / (2.0 * half_width))


def _nsp_filters(w1, w2):
    """Two-channel NSFB of the pyramid, all FIR: H0 = G0 = B, the maximally flat binomial low-pass
    B = cos^4(w1/2) cos^4(w2/2) (5 x 5 taps), H1 = 1 - B^2 (9 x 9), G1 = 1; H0 G0 + H1 G1 = 1."""
    b = (np.cos(w1 / 2) ** 4) * (np.cos(w2 / 2) ** 4)
    return b, 1.0 - b * b, b, np.ones_like(b)


def _fan_pair(n1, n2):
    """Fan NSFB at frequencies (n1, n2): U0 passes |n1| >= |n2| (cos n1 <= cos n2), U1 the other cone."""
    a = 1 - np.cos(n1)
    b = 1 - np.cos(n2)
    den = a + b
    f = np.where(den > 1e-12, (a - b) / np.where(den > 1e-12, den, 1.0), 0.0)
    r = _ramp(f, 0.0, 0.6)
    return np.cos(0.5 * np.pi * r), np.sin(0.5 * np.pi * r)


def _split_matrix(mid: Fraction, cone: int) -> Tuple[Tuple[int, int], Tuple[int, int]]:
    """Rows m1, m2 of M^T for the stage that bisects a wedge at slope ``mid``.

    For cone 0 (|w1| >= |w2|, slope w2/w1) the fan boundaries (m1 - m2).w = 0 and (m1 + m2).w = 0 are
    the bisecting line (normal (-p, q) for mid = p/q) and the axis w1 = 0 (normal (1, 0)), which lies
    outside the cone; cone 1 swaps the roles of w1 and w2. Normals are doubled when needed to make
    M integer (only the quadrant stage, mid = 0).
    """
    p, q = mid.numerator, mid.denominator
    n_mid = np.array([-p, q]) if cone == 0 else np.array([q, -p])
    n_axis = np.array([1, 0]) if cone == 0 else np.array([0, 1])
    if np.any((n_mid + n_axis) % 2):
        n_mid, n_axis = 2 * n_mid, 2 * n_axis
    m1 = (n_mid + n_axis) // 2
    m2 = (n_axis - n_mid) // 2
    return (int(m1[0]), int(m1[1])), (int(m2[0]), int(m2[1]))


def _directional_bank(w1, w2, stages: int) -> List[np.ndarray]:
    """The 2^stages NSDFB equivalent filters (tight: sum of squares 1), ordered by orientation."""
    shape = np.broadcast(w1, w2).shape
    if stages == 0:
        return [np.ones(shape)]
    u0, u1 = _fan_pair(w1, w2)
    # (response, cone, slope interval [lo, hi]) ; cone 0: slope w2/w1, cone 1: slope w1/w2
    wedges = [(u0, 0, Fraction(-1), Fraction(1)), (u1, 1, Fraction(-1), Fraction(1))]
    for _ in range(1, stages):
        children = []
        for response, cone, lo, hi in wedges:
            mid = (lo + hi) / 2
            (a, b), (c, d) = _split_matrix(mid, cone)
            f0, f1 = _fan_pair(a * w1 + b * w2, c * w1 + d * w2)
            # Which child holds the upper half (mid, hi)? Probe a low frequency inside it.
            s = float((mid + hi) / 2)
            probe = (0.2, 0.2 * s) if cone == 0 else (0.2 * s, 0.2)
            g0, _ = _fan_pair(np.array(a * probe[0] + b * probe[1]), np.array(c * probe[0] + d * probe[1]))
            upper_is_0 = float(g0) > 0.5
            low_child, high_child = (f1, f0) if upper_is_0 else (f0, f1)
            children.append((response * low_child, cone, lo, mid))
            children.append((response * high_child, cone, mid, hi))
        wedges = children

    def orientation(item):
        _, cone, lo, hi = item
        centre = float((lo + hi) / 2)
        # same pseudo-angle as the NSST: p = slope in cone 0, 2 - slope in cone 1
        return centre if cone == 0 else 2.0 - centre

    return [w[0] for w in sorted(wedges, key=orientation)]


def directional_support(directions: Sequence[int]) -> Tuple[int, ...]:
    """Side of the spatial support of the NSDFB filters per level (coarse to fine): as the NSST's
    shearing filters, the number of directions of the level, at least 8."""
    return tuple(max(8, int(n)) for n in directions)


@lru_cache(maxsize=16)
def _bank(shape: Tuple[int, int], directions: Tuple[int, ...]):
    """(low-pass synthesis x analysis response, [per level: analysis responses], [synthesis responses])."""
    w1, w2 = _freq.frequency_grid(shape)
    levels = len(directions)
    analysis_low = np.ones(np.broadcast(w1, w2).shape)    # prod_k H0(2^k w)
    synthesis_low = np.ones_like(analysis_low)            # prod_k G0(2^k w)
    band_analysis, band_synthesis = [], []                # fine (j = 0) to coarse
    for j in range(levels):
        h0, h1, g0, g1 = _nsp_filters((2.0 ** j) * w1, (2.0 ** j) * w2)
        band_analysis.append(analysis_low * h1)
        band_synthesis.append(synthesis_low * g1)
        analysis_low = analysis_low * h0
        synthesis_low = synthesis_low * g0
    bandpass = band_analysis
    analysis, synthesis = [], []
    for i, (n, support) in enumerate(zip(directions, directional_support(directions))):
        j = levels - 1 - i
        stages = int(round(np.log2(n)))
        if stages == 0:
            analysis.append((bandpass[j],))
            synthesis.append((band_synthesis[j],))
            continue

        def partition(k1, k2, stages=stages):
            return [d * d for d in _directional_bank(k1, k2, stages)]      # sum of squares = 1

        dfb = _freq.compact_partition(partition, support, shape)
        analysis.append(tuple(bandpass[j] * d for d in dfb))
        synthesis.append(tuple(band_synthesis[j] for _ in dfb))   # sum_l dfb_l = 1
    return analysis_low, synthesis_low, tuple(analysis), tuple(synthesis)


def nsct_decompose(x: np.ndarray, directions: Sequence[int] = DEFAULT_DIRECTIONS) -> List[np.ndarray]:
    """Nonsubsampled contourlet decomposition of the last two axes of ``x``.

    Parameters
    ----------
    x : ndarray, shape (..., H, W)
        Images (any leading batch axes); float64 is kept, anything else computed in float32.
    directions : sequence of int
        Directions per pyramid level, coarse to fine, each a power of two (default 4, 8, 8, 16).

    Returns
    -------
    list of ndarray
        ``[low (..., H, W), D_coarsest (..., n_0, H, W), ..., D_finest (..., n_{J-1}, H, W)]``.

    Examples
    --------
    >>> import numpy as np
    >>> x = np.random.default_rng(0).random((64, 64))
    >>> bands = nsct_decompose(x, directions=(2, 4))
    >>> [b.shape for b in bands]
    [(64, 64), (2, 64, 64), (4, 64, 64)]
    >>> bool(np.allclose(nsct_reconstruct(bands), x))
    True
    """
    x = _freq.as_float(x)
    _freq.check_image_batch(x, "nsct_decompose")
    directions = check_directions(directions, x.shape[-2:])
    shape = x.shape[-2:]
    low, _, analysis, _ = _bank(tuple(shape), directions)
    xf = _freq.forward(x)
    out = [_freq.inverse(xf * low.astype(x.dtype), shape)]
    for responses in analysis:
        out.append(_freq.apply_bank(xf, responses, shape))
    return out


def nsct_reconstruct(bands: Sequence[np.ndarray]) -> np.ndarray:
    """Invert :func:`nsct_decompose` (direction counts read from the band shapes)."""
    low = np.asarray(bands[0])
    shape = low.shape[-2:]
    directions = check_directions(tuple(int(np.shape(b)[-3]) for b in bands[1:]))
    _, low_synthesis, _, synthesis = _bank(tuple(shape), directions)
    total = _freq.forward(low) * low_synthesis.astype(low.dtype)
    for level, responses in zip(bands[1:], synthesis):
        total += _freq.synthesise(np.asarray(level, dtype=low.dtype), responses)
    return _freq.inverse(total, shape).astype(low.dtype, copy=False)


class NSCTBands:
    """Streaming access to the NSCT of a batch, band by band (see :class:`..nsst.NSSTBands`)."""

    def __init__(self, x: np.ndarray, directions: Sequence[int] = DEFAULT_DIRECTIONS):
        x = _freq.as_float(x)
        _freq.check_image_batch(x, "NSCTBands")
        self.directions = check_directions(directions, x.shape[-2:])
        self.shape = tuple(x.shape[-2:])
        self.dtype = x.dtype
        low, self._low_synthesis, self._analysis, self._synthesis = _bank(self.shape, self.directions)
        self._xf = _freq.forward(x)
        self.low = _freq.inverse(self._xf * low.astype(self.dtype), self.shape)
        self._total = None

    @property
    def n_bands(self) -> int:
        return sum(self.directions)

    def __iter__(self):
        for level, responses in enumerate(self._analysis):
            for direction, r in enumerate(responses):
                yield level, direction, _freq.inverse(self._xf * r.astype(self.dtype), self.shape)

    def accumulate(self, band: np.ndarray, level: int, direction: int) -> None:
        term = _freq.forward(np.asarray(band, dtype=self.dtype)) * \
            self._synthesis[level][direction].astype(self.dtype)
        self._total = term if self._total is None else self._total.__iadd__(term)

    def reconstruct(self, low: np.ndarray) -> np.ndarray:
        total = _freq.forward(np.asarray(low, dtype=self.dtype)) * self._low_synthesis.astype(self.dtype)
        if self._total is not None:
            total = total + self._total
        return _freq.inverse(total, self.shape).astype(self.dtype, copy=False)
