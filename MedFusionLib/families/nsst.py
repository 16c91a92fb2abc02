"""Fusion in the nonsubsampled shearlet transform (NSST) domain: four published methods.

* ``nsst_papcnn``: Yin, Liu, Liu, Chen, IEEE TIM 2019 (parameter-adaptive PCNN);
* ``nsst_abnm_wsml``: Singh and Anand, IJIST 2019 (adaptive biologically inspired neural model, WSML);
* ``nsst_dcscm``: Hou, Zhou, Nie, Liu, Ruan, Med. Biol. Eng. Comput. 2019 (dual-channel spiking cortical
  model; CNN weight map for the low band when the deep-learning family provides one);
* ``nsst_similarity``: Hermessi, Mourali, Zagrouba, Neural Comput. Appl. 2018 (weighted normalised
  cross-correlation of Siamese-CNN features learned by similarity learning, local energy).

All decompose every source with :mod:`MedFusionLib.transforms.nsst` and fuse band by band, holding one
directional band of every source at a time (the transform is streamed; memory stays a few bands), then
reconstruct. 2-D methods: a volume is fused slice by slice (the pipeline batches slices; the slices of
a batch are processed together). See docs/signal-processing.md for how each follows its paper.
"""

from __future__ import annotations

import importlib
import sys
from typing import Any, Mapping, Tuple

import numpy as np

from .. import rules
from .. import rules_neural as neural
from ..errors import FusionInputError, WeightsError
from ..registry import Param, get_method, register
from ..transforms.nsst import DEFAULT_DIRECTIONS, NSSTBands, check_directions
from ._learned import DEVICE, learned_check

# Slices per internal chunk: keeps the spectra of a chunk (N x chunk x H x W/2 complex) small.
_CHUNK_PIXELS = 1 << 19

_YIN = ("M. Yin, X. Liu, Y. Liu, X. Chen, 'Medical image fusion with parameter-adaptive pulse coupled neural "
        "network in nonsubsampled shearlet transform domain', IEEE Trans. Instrum. Meas. 68(1):49-64, 2019")
_SINGH = ("S. Singh, R. S. Anand, 'Multimodal neurological image fusion based on adaptive biological inspired "
          "neural model in nonsubsampled shearlet domain', Int. J. Imaging Syst. Technol. 29(1):50-64, 2019")
_HOU = ("R. Hou, D. Zhou, R. Nie, D. Liu, X. Ruan, 'Brain CT and MRI medical image fusion using convolutional "
        "neural networks and a dual-channel spiking cortical model', Med. Biol. Eng. Comput. 57(4):887-900, 2019")
_HERMESSI = ("H. Hermessi, O. Mourali, E. Zagrouba, 'Convolutional neural network-based multimodal image fusion "
             "via similarity learning in the shearlet domain', Neural Comput. Appl. 30(7):2029-2045, 2018")


def directions_param(default=DEFAULT_DIRECTIONS, transform: str = "NSST") -> Param:
    return Param("directions", "floats", tuple(float(d) for d in default),
                 f"{transform} directions per pyramid level, coarse to fine (one number per level; the number "
                 f"of levels is the list length).", minimum=1, maximum=64)


def _directions(value) -> Tuple[int, ...]:
    return tuple(int(round(v)) for v in value)


def check_transform(method: str, params: Mapping[str, Any], shape, checker) -> None:
    value = params["directions"]
    if any(float(v) != int(round(v)) for v in value):
        raise FusionInputError(f"method {method!r}: directions must be whole numbers; got {value}")
    try:
        checker(_directions(value), shape)
    except ValueError as exc:
        raise FusionInputError(f"method {method!r}: {exc}") from None


def slice_chunks(n_slices: int, shape) -> list:
    step = max(1, _CHUNK_PIXELS // int(np.prod(shape)))
    return [(a, min(a + step, n_slices)) for a in range(0, n_slices, step)]


def fuse_bandwise(stack: np.ndarray, bank_class, directions, fuse_low, fuse_band, progress=None,
                  per_level: bool = False) -> np.ndarray:
    """Decompose ``stack`` (N, B, H, W) chunk by chunk of slices, fuse the low band with
    ``fuse_low(low (N, b, H, W))`` and every directional band with ``fuse_band(band (N, b, H, W))`` (or,
    with ``per_level``, each level at once: ``fuse_band(level (N, b, n_dir, H, W))`` returning
    (b, n_dir, H, W)), and reconstruct. Reports progress per band and checks for cancellation."""
    n, b_total = stack.shape[:2]
    out = np.empty(stack.shape[1:], dtype=np.float32)
    chunks = slice_chunks(b_total, stack.shape[-2:])
    units = len(chunks) * (sum(directions) + 1)
    done = 0
    for a, b in chunks:
        bank = bank_class(stack[:, a:b], directions)
        if per_level:
            level_bands = []
            current = 0
            for level, direction, band in bank:
                if level != current:
                    fused = fuse_band(np.stack(level_bands, axis=2))
                    for d in range(fused.shape[1]):
                        bank.accumulate(fused[:, d], current, d)
                    level_bands, current = [], level
                level_bands.append(band)
                done += 1
                if progress is not None:
                    progress.report(done / units, "fusing NSST/NSCT bands")
            fused = fuse_band(np.stack(level_bands, axis=2))
            for d in range(fused.shape[1]):
                bank.accumulate(fused[:, d], current, d)
        else:
            for level, direction, band in bank:
                bank.accumulate(fuse_band(band), level, direction)
                done += 1
                if progress is not None:
                    progress.report(done / units, "fusing NSST/NSCT bands")
        out[a:b] = bank.reconstruct(fuse_low(bank.low))
        done += 1
        if progress is not None:
            progress.report(done / units, "reconstructing")
    return out


def _check_for(method: str, two_inputs: bool = False):
    def check(params, n_inputs, shape):
        check_transform(method, params, shape, check_directions)
        if "window" in params and params["window"] % 2 == 0:
            raise FusionInputError(f"method {method!r}: window must be odd; got {params['window']}")
        if two_inputs and n_inputs != 2:
            raise FusionInputError(f"method {method!r} compares exactly 2 inputs; got {n_inputs}")
    return check


# --- 1. NSST + PA-PCNN (Yin et al. 2019) -------------------------------------------------------------
@register("nsst_papcnn", family="signal processing",
          summary="NSST; low band by weighted local energy x WSEML, high bands by parameter-adaptive PCNN firing "
                  "times (Yin et al. 2019).",
          reference=_YIN, dims=(2,), check=_check_for("nsst_papcnn"),
          params=(directions_param(),
                  Param("iterations", "int", 110, "PA-PCNN iterations (paper: 110).", minimum=1, maximum=255)))
def nsst_papcnn(stack: np.ndarray, directions=DEFAULT_DIRECTIONS, iterations: int = 110, progress=None) -> np.ndarray:
    """NSST-PAPCNN fusion (Yin et al. 2019, Sec. III).

    1. NSST of every source (default 4 levels, 8, 8, 16, 16 directions coarse to fine: the authors'
       dcomp = [3, 3, 4, 4]).
    2. Low band: activity WLE x WSEML (weighted local energy, eq. 15, times the weighted sum of
       eight-neighbourhood modified Laplacian, eq. 16-17, 3x3 binomial weights); the source of largest
       activity is selected (choose-max; N >= 2 sources).
    3. Each directional band: the PA-PCNN (eq. 4-12) is run on |coefficients| of each source with its
       own adaptive parameters; the coefficient of the source that fired most often is selected (the
       first source on ties, as the authors' ``map = T1 >= T2``).
    4. Inverse NSST.

    Deviations from the authors' MATLAB code (kept: the published evaluation depends on them; details in
    ``docs/signal-processing.md``): WSEML follows the paper's eq. 17 (|2C - C_a - C_b| terms, weighted by W)
    where their ``WSEML.m`` sums |C - neighbour| over the eight neighbours, takes the square root of the
    3x3 mean and then filters with W; W is applied with mirrored borders (d c b | a b c) where
    ``WSEML.m`` uses MATLAB's 'symmetric' (c b a | a b c); WLE matches their ``WLE.m`` except at the 4
    image corners, where their ``es2`` extension leaves the corner samples 0; alpha_f = log10(1/sigma)
    and Otsu over [0, max] (see the docs).
    """
    dirs = _directions(directions)

    def low(band):
        activity = neural.weighted_local_energy(band) * neural.wseml(band)
        return neural.choose_by_activity(band, activity)

    def high(band):
        check = progress.check if progress is not None else None
        return neural.choose_by_activity(band, neural.pa_pcnn_firing_times(band, iterations, check=check))

    return fuse_bandwise(stack, NSSTBands, dirs, low, high, progress)


# --- 2. NSST + adaptive biologically inspired neural model, WSML (Singh and Anand 2019) ---------------
@register("nsst_abnm_wsml", family="signal processing",
          summary="NSST; low band by weighted sum-modified Laplacian, high bands by an adaptive PCNN fed with "
                  "the modified spatial frequency (Singh and Anand 2019).",
          reference=_SINGH, dims=(2,), check=_check_for("nsst_abnm_wsml"),
          params=(directions_param(),
                  Param("iterations", "int", 110, "Iterations of the neural model.", minimum=1, maximum=255)))
def nsst_abnm_wsml(stack: np.ndarray, directions=DEFAULT_DIRECTIONS, iterations: int = 110,
                   progress=None) -> np.ndarray:
    """NSST fusion with an adaptive biologically inspired neural model (ABNM) and WSML.

    1. NSST of every source.
    2. Low band: choose-max of the weighted sum-modified Laplacian (WSML: binomial 3x3 weighted sum of
       the squared modified Laplacian).
    3. Directional bands: a pulse-coupled model whose stimulus is the modified spatial frequency (MSF,
       3x3, with diagonal terms) of the band, whose decay, threshold and linking strength are set
       adaptively from the stimulus statistics (the PA-PCNN rules of Yin et al.), and whose linking
       strength is further modulated per neuron by the local WSML (WSML / mean WSML, clipped to
       [0.25, 4]): strongly structured neighbourhoods couple more. The source with more firings wins.
    4. Inverse NSST.

    The full text of Singh and Anand's paper was not available to us; this model is our reading of its
    published description (adaptive neural model, MSF-like feature stimulus, WSML) built from the PCNN
    pieces of this library. See docs/signal-processing.md.
    """
    dirs = _directions(directions)

    def low(band):
        return neural.choose_by_activity(band, neural.wsml(band))

    def high(band):
        check = progress.check if progress is not None else None
        stimulus = neural.modified_spatial_frequency(band)
        w = neural.wsml(band)
        mean = w.mean(axis=(-2, -1), keepdims=True)
        scale = np.clip(w / np.where(mean > 0, mean, 1.0), 0.25, 4.0)
        return neural.choose_by_activity(band, neural.pa_pcnn_firing_times(stimulus, iterations, scale,
                                                                             check=check))

    return fuse_bandwise(stack, NSSTBands, dirs, low, high, progress)


# --- 3. NSST + dual-channel SCM (Hou et al. 2019) ----------------------------------------------------
def cnn_weight_map_function():
    """The deep-learning family's CNN weight map as ``fn(stack (2, B, H, W)) -> (B, H, W)``, or None.

    Available when the registered method ``cnn_weight_map`` exists, its module exposes
    ``weight_map(a, b)`` (images in [0, 1], (B, H, W) each; returns the weight of ``a`` in [0, 1]) and
    its trained weights load (probed on a tiny pair; a :class:`WeightsError` means unavailable).
    """
    try:
        spec = get_method("cnn_weight_map")
    except FusionInputError:
        return None
    module = sys.modules.get(spec.func.__module__) or importlib.import_module(spec.func.__module__)
    fn = getattr(module, "weight_map", None)
    if not callable(fn):
        return None

    def from_stack(stack):
        return np.asarray(fn(stack[0], stack[1]), dtype=np.float32)

    try:
        probe = from_stack(np.full((2, 1, 16, 16), 0.5, dtype=np.float32))
        if probe.shape != (1, 16, 16) or not np.isfinite(probe).all():
            return None
    except (WeightsError, FusionInputError, FileNotFoundError, OSError, RuntimeError, ValueError):
        return None
    return from_stack


def _check_dcscm(params, n_inputs, shape):
    _check_for("nsst_dcscm")(params, n_inputs, shape)
    if params.get("use_cnn_weights"):
        if n_inputs != 2:
            raise FusionInputError(f"method 'nsst_dcscm': use_cnn_weights=true needs exactly 2 inputs (the CNN "
                                   f"weight map compares two images); got {n_inputs}")
        if cnn_weight_map_function() is None:
            raise FusionInputError(
                "method 'nsst_dcscm': use_cnn_weights=true needs the deep-learning family's 'cnn_weight_map' "
                "method with its trained weights, which are not available here; set use_cnn_weights=false "
                "(local-similarity low-band rule) or train/install the CNN weight-map model")


@register("nsst_dcscm", family="signal processing",
          summary="NSST; high bands by a dual-channel spiking cortical model fed with the modified average "
                  "gradient, low band by a similarity rule (CNN weight map optional) (Hou et al. 2019).",
          reference=_HOU, dims=(2,), check=_check_dcscm,
          params=(directions_param(),
                  Param("iterations", "int", 110, "Iterations of the spiking cortical model.", minimum=1,
                        maximum=1000),
                  Param("beta", "float", 0.3, "Linking strength of the spiking cortical model.", minimum=0.0,
                        maximum=5.0),
                  Param("window", "int", 3, "Odd window of the low-band similarity rule.", minimum=1, maximum=15),
                  Param("use_cnn_weights", "bool", False, "Fuse the low band with the CNN weight map of the "
                        "deep-learning family's 'cnn_weight_map' model (Hou et al.'s full method; 2 inputs, "
                        "needs its trained weights); false uses local energies.")))
def nsst_dcscm(stack: np.ndarray, directions=DEFAULT_DIRECTIONS, iterations: int = 110, beta: float = 0.3,
               window: int = 3, use_cnn_weights: bool = False, progress=None) -> np.ndarray:
    """NSST fusion with a dual-channel spiking cortical model (Hou et al. 2019).

    1. NSST of every source.
    2. Directional bands: a multi-channel SCM (:func:`MedFusionLib.rules_neural.dual_channel_scm`, one
       channel per source: two for CT/MRI as in the paper, N in general) is fed with the modified average
       gradient of each source's band; each coefficient comes from the source credited with most firings.
    3. Low band, two sources: Burt and Kolczynski's match-measure rule (similar: weighted average; else
       the source of larger local energy). With ``use_cnn_weights`` the weights of the averaged positions
       are the CNN weight map of the deep-learning family (Liu et al.'s CNN, as in Hou et al.); without it
       they come from local energies (the non-CNN variant). N > 2 sources: choose-max local energy.
    4. Inverse NSST.

    The CNN variant runs only when the registered method ``cnn_weight_map`` exposes ``weight_map(a, b)``
    and its weights load; ``use_cnn_weights=True`` otherwise raises :class:`FusionInputError` at planning.
    The SCM constants (f = 0.8, g = 0.7, h = 20, beta = 0.3, 110 iterations) are ours: the paper's full
    text was not available to us.
    """
    dirs = _directions(directions)
    n = stack.shape[0]
    weight_fn = cnn_weight_map_function() if use_cnn_weights else None
    if use_cnn_weights and weight_fn is None:
        raise FusionInputError("method 'nsst_dcscm': the CNN weight map is not available (see use_cnn_weights)")
    chunk_weights = {}

    def low(band):
        if n == 2:
            weight = chunk_weights.get("current")
            return rules.local_similarity(band, window, 0.75, weight_map=weight)
        return rules.local_energy_rule(band, window)

    def high(band):
        check = progress.check if progress is not None else None
        credits = neural.dual_channel_scm(neural.modified_average_gradient(band), iterations, beta=beta,
                                          check=check)
        return neural.choose_by_activity(band, credits)

    if weight_fn is None:
        return fuse_bandwise(stack, NSSTBands, dirs, low, high, progress)
    out = np.empty(stack.shape[1:], dtype=np.float32)
    for a, b in slice_chunks(stack.shape[1], stack.shape[-2:]):
        chunk_weights["current"] = np.asarray(weight_fn(np.ascontiguousarray(stack[:, a:b])), dtype=np.float32)
        sub = progress.sub(a / stack.shape[1], b / stack.shape[1]) if progress is not None else None
        out[a:b] = fuse_bandwise(stack[:, a:b], NSSTBands, dirs, low, high, sub)
    return out


# --- 4. NSST + similarity of features (Hermessi et al. 2018) -----------------------------------------
SIMILARITY_FEATURES = ("learned", "bands")


def band_feature_function(device: str = "auto"):
    """The trained Siamese feature branch (:class:`MedFusionLib.deep.networks.ShearletSiameseNet`) as
    ``fn(maps (K, H, W)) -> (K, F, H, W)`` float32, each map scaled to unit standard deviation first (as
    in training), run on ``device`` ('auto', 'cpu' or 'cuda'). Raises :class:`WeightsError` (naming the
    training command) when its weights are missing or corrupt."""
    import torch

    from ..deep.inference import minibatch_size
    from ..deep.networks import ShearletSiameseNet
    from ..deep.weights import load_model, resolve_device

    device = resolve_device(device)
    model = load_model("nsst_similarity", device)

    def features(maps: np.ndarray) -> np.ndarray:
        scaled = ShearletSiameseNet.unit_std(maps)
        group = minibatch_size(scaled.shape[-2:], device)      # the learned methods' maps per forward pass
        out = []
        with torch.inference_mode():
            for k in range(0, len(scaled), group):
                x = torch.from_numpy(np.ascontiguousarray(scaled[k:k + group, None])).to(device)
                out.append(model(x).float().cpu().numpy())
        return np.concatenate(out)

    return features


_check_learned_features = learned_check("nsst_similarity")     # device, then weights (before any work)


def _check_similarity(params, n_inputs, shape):
    _check_for("nsst_similarity", True)(params, n_inputs, shape)
    if params.get("features", "learned") == "learned":
        _check_learned_features(params, n_inputs, shape)


@register("nsst_similarity", family="signal processing",
          summary="NSST; high bands by weighted normalised cross-correlation of learned (Siamese CNN) feature "
                  "maps of the bands (average if similar, else choose-max), low band by local energy "
                  "(Hermessi et al. 2018).",
          reference=_HERMESSI, dims=(2,), min_inputs=2, max_inputs=2, check=_check_similarity,
          params=(directions_param(),
                  Param("threshold", "float", 0.6, "WNCC above which the sources count as similar and are "
                        "averaged.", minimum=-1.0, maximum=0.99),
                  Param("window", "int", 3, "Odd window of the local energies.", minimum=1, maximum=15),
                  Param("sigma", "float", 1.5, "Standard deviation of the Gaussian WNCC window.", minimum=0.3,
                        maximum=10.0),
                  Param("features", "choice", "learned", "Feature maps compared by the WNCC: 'learned' (the "
                        "paper's Siamese CNN, trained here; needs its weights) or 'bands' (the band "
                        "magnitudes themselves, no network).", choices=SIMILARITY_FEATURES),
                  DEVICE))
def nsst_similarity(stack: np.ndarray, directions=DEFAULT_DIRECTIONS, threshold: float = 0.6, window: int = 3,
                    sigma: float = 1.5, features: str = "learned", device: str = "auto",
                    progress=None) -> np.ndarray:
    """NSST fusion by similarity of learned features (Hermessi et al. 2018).

    1. NSST of both sources.
    2. Low band: choose-max of the local energy (window x window).
    3. High bands, level by level: every directional band of each source goes through the Siamese
       network's feature branch (``features='learned'``: :func:`band_feature_function`, trained by
       similarity learning, ``medfusion train nsst_similarity``), giving F feature maps per direction;
       the weighted normalised cross-correlation (Gaussian window) of the two sources' features over all
       directions and channels of the level measures where they agree. Where WNCC > ``threshold`` the
       coefficients are averaged with weights proportional to local energy, elsewhere the source of
       larger local energy is chosen. ``features='bands'``: the band magnitudes themselves are the
       features (one channel per direction; no network).
    4. Inverse NSST.

    Deviations: the network is ours (3 layers, 8 output maps, trained here on natural then medical
    patches) instead of the paper's SiamFC-initialised one; the threshold and window are ours.
    """
    if features not in SIMILARITY_FEATURES:
        raise FusionInputError(f"method 'nsst_similarity': features must be one of {SIMILARITY_FEATURES}; "
                               f"got {features!r}")
    dirs = _directions(directions)
    radius = max(1, int(round(3 * sigma)))
    extract = band_feature_function(device) if features == "learned" else None

    def low(band):
        return rules.local_energy_rule(band, window)

    def level(bands):                     # (2, b, n_dir, H, W)
        if extract is None:
            maps = np.abs(np.moveaxis(bands, 2, 1))                             # (2, n_dir, b, H, W)
            similarity = neural.wncc(maps[0], maps[1], sigma, radius)           # (b, H, W)
        else:
            sums = None
            n_b = bands.shape[1]
            for d in range(bands.shape[2]):   # one direction at a time bounds the memory of F maps each
                f = extract(bands[:, :, d].reshape(2 * n_b, *bands.shape[-2:]))  # (2 b, F, H, W)
                f = np.moveaxis(f.reshape(2, n_b, *f.shape[1:]), 2, 1)          # (2, F, b, H, W)
                part = neural.wncc_sums(f[0], f[1], sigma, radius)
                sums = part if sums is None else tuple(x + y for x, y in zip(sums, part))
            similarity = neural.wncc_from_sums(*sums)
        energy = rules.local_energy(bands, window)                              # (2, b, n_dir, H, W)
        return neural.similarity_rule(bands, similarity[:, None], energy, threshold)

    return fuse_bandwise(stack, NSSTBands, dirs, low, level, progress, per_level=True)
