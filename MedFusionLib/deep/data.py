"""Training data for the learned methods: registered pairs, natural images, synthetic phantoms, patches.

Sources of training samples
---------------------------
* **Pair folders** laid out like ``aanlib-dev``: ``ROOT/SET/{MOD_A,MOD_B}/NAME.ext``, a pair sharing its
  file name across the two modality folders, the reference (anatomical) modality first (``A`` of a set
  named ``A_B``, else the first folder in name order). 2-D images (PNG, TIFF, ... grey or RGB) are read
  exactly as the evaluation protocol reads them (8-bit luminance / 255); volumes (NRRD, NIfTI, MetaImage
  through Slicer's IO, or ``.npy``) are normalised with the pipeline's default percentile window (0.5,
  99.5), exactly what ``MedFusionLib.fuse`` does at inference. Only the ``train`` split is used by default
  (:func:`MedFusionLib.evaluation.split_pairs`: every 4th pair of each set, in name order, is held back).
* **Natural images** bundled with scikit-image (those that load offline), as grey [0, 1].
* **Synthetic head phantoms** (:func:`MedFusionLib.sampledata.head_phantom`): co-registered CT / MRI / PET
  volumes, windowed like inference.

:class:`PatchSampler` draws random patches (2-D slices of volumes, or 3-D patches), optionally augmented
(:mod:`.augment`), as float32 ``(B, C, *patch)`` batches; its numpy generator is the only source of
randomness, so a checkpoint that saves its state resumes the exact same stream.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
from scipy import ndimage as ndi

from ..errors import FusionInputError

VOLUME_SUFFIXES = (".nrrd", ".nhdr", ".nii", ".nii.gz", ".mha", ".mhd", ".npy")


@dataclass
class PairItem:
    """One registered pair (or single image): ``images`` float32 ``(C, *spatial)`` in [0, 1]."""

    name: str
    images: np.ndarray

    @property
    def spatial_shape(self) -> Tuple[int, ...]:
        return tuple(self.images.shape[1:])


# --- reading --------------------------------------------------------------------------------------------
def read_protocol_image(path: str) -> np.ndarray:
    """A 2-D image as the metric protocol and the evaluation read it: 8-bit luminance, rounded, / 255."""
    from ..evaluation import read_image
    from ..metrics import protocol_image

    return (protocol_image(read_image(path)) / 255.0).astype(np.float32)


def read_volume(path: str) -> np.ndarray:
    """A scalar volume normalised like :func:`MedFusionLib.fuse` does by default (0.5-99.5 percentile
    window to [0, 1]); ``.npy`` directly, other formats through Slicer's IO (``slicer-core``)."""
    from .. import intensity

    if path.lower().endswith(".npy"):
        array = np.load(path, allow_pickle=False)
    else:
        from .. import bridge

        scene = bridge.new_scene()
        array = bridge.array_from_node(bridge.load_volume(path, scene))
    array = np.asarray(array)
    if array.ndim == 4 and array.shape[-1] == 3 and array.dtype == np.uint8:
        from ..metrics import protocol_image

        return (protocol_image(array) / 255.0).astype(np.float32)
    if array.ndim not in (2, 3) or array.dtype.kind not in "iuf":
        raise FusionInputError(f"{path}: expected a scalar 2-D or 3-D array; got {array.dtype} {array.shape}")
    return intensity.normalise(array, intensity.robust_window(array))


def _suffix(name: str) -> str:
    low = name.lower()
    return ".nii.gz" if low.endswith(".nii.gz") else os.path.splitext(low)[1]


def find_pair_sets(root: str, sets: Optional[Sequence[str]] = None):
    """Pair sets under ``root`` (images and volumes), as :class:`MedFusionLib.evaluation.PairSet`, with
    pairs in the order :func:`MedFusionLib.evaluation.split_pairs` splits them."""
    from ..evaluation import IMAGE_SUFFIXES, PairSet

    if not os.path.isdir(root):
        raise FusionInputError(f"training data folder {root!r} does not exist")
    found = []
    for set_name in sorted(os.listdir(root)):
        set_dir = os.path.join(root, set_name)
        if not os.path.isdir(set_dir) or (sets and set_name not in sets):
            continue
        folders = sorted(d for d in os.listdir(set_dir) if os.path.isdir(os.path.join(set_dir, d)))
        if len(folders) != 2:
            continue
        head = set_name.split("_")[0]
        if head in folders:
            folders = [head] + [f for f in folders if f != head]
        allowed = IMAGE_SUFFIXES + VOLUME_SUFFIXES
        files = [{f for f in os.listdir(os.path.join(set_dir, d)) if _suffix(f) in allowed} for d in folders]
        names = sorted(files[0] & files[1], key=lambda n: (len(n), n))
        if names:
            pairs = [(n[: -len(_suffix(n))], os.path.join(set_dir, folders[0], n), os.path.join(set_dir, folders[1], n))
                     for n in names]
            found.append(PairSet(set_name, (folders[0], folders[1]), pairs))
    if not found:
        raise FusionInputError(f"no pair sets under {root!r}: expected SET/{{MOD_A,MOD_B}}/NAME.ext with matching "
                               f"file names (images or volumes)")
    return found


def load_pair_folder(root: str, split: str = "train", sets: Optional[Sequence[str]] = None) -> List[PairItem]:
    """All pairs of ``split`` under ``root`` as :class:`PairItem` ``(2, *spatial)``."""
    from ..evaluation import IMAGE_SUFFIXES, split_pairs

    items = []
    for pair_set in find_pair_sets(root, sets):
        for name, ref_path, other_path in split_pairs(pair_set, split):
            reader = read_protocol_image if _suffix(ref_path) in IMAGE_SUFFIXES else read_volume
            a, b = reader(ref_path), reader(other_path)
            if a.shape != b.shape:
                raise FusionInputError(f"{pair_set.name}/{name}: the two sources differ in shape "
                                       f"({a.shape} vs {b.shape}); training pairs must be co-registered")
            items.append(PairItem(f"{pair_set.name}/{name}", np.stack([a, b])))
    return items


def pair_files(root: str, split: str = "train", sets: Optional[Sequence[str]] = None) -> Dict[str, List[str]]:
    """The pair names used from ``root`` per set (recorded in the weights' metadata)."""
    from ..evaluation import split_pairs

    return {s.name: [p[0] for p in split_pairs(s, split)] for s in find_pair_sets(root, sets)}


#: scikit-image sample images that ship with the package (no download) and are photographs or scans.
NATURAL_IMAGES = ("astronaut", "brick", "camera", "cat", "cell", "chelsea", "clock", "coffee", "coins",
                  "grass", "gravel", "hubble_deep_field", "immunohistochemistry", "moon", "page", "retina",
                  "rocket", "text", "microaneurysms", "colorwheel", "shepp_logan_phantom")


def natural_images(names: Sequence[str] = NATURAL_IMAGES) -> List[PairItem]:
    """scikit-image's bundled images as grey float32 [0, 1] single-channel items; those that cannot be
    loaded offline are skipped."""
    import skimage.data
    from skimage.color import rgb2gray

    items = []
    for name in names:
        try:
            image = np.asarray(getattr(skimage.data, name)())
        except Exception:   # not bundled with this scikit-image (it would need a download): skip
            continue
        if image.ndim == 3 and image.shape[-1] == 4:
            image = image[..., :3]
        if image.ndim == 3:
            image = rgb2gray(image)
        image = image.astype(np.float32)
        if image.max() > 1.0:
            image /= 255.0
        items.append(PairItem(f"skimage/{name}", image[None]))
    return items


def phantom_pairs(count: int = 2, size: int = 128, depth: int = 24, seed: int = 0) -> List[PairItem]:
    """Synthetic co-registered MRI/PET, MRI/CT and CT/PET volume pairs from :func:`head_phantom`,
    each modality windowed like the pipeline (0.5-99.5 percentiles to [0, 1])."""
    from .. import intensity
    from ..sampledata import head_phantom

    items = []
    for k in range(count):
        volume = head_phantom((depth, size, size), seed=seed + k)
        norm = {m: intensity.normalise(volume[m], intensity.robust_window(volume[m])) for m in ("mri", "pet", "ct")}
        for a, b in (("mri", "pet"), ("mri", "ct"), ("ct", "pet")):
            items.append(PairItem(f"phantom{seed + k}/{a}_{b}", np.stack([norm[a], norm[b]])))
    return items


def single_images(items: Sequence[PairItem]) -> List[PairItem]:
    """Every channel of ``items`` as its own single-channel item (e.g. each modality of the pairs)."""
    return [PairItem(f"{it.name}[{c}]", it.images[c:c + 1]) for it in items for c in range(it.images.shape[0])]


# --- patches ----------------------------------------------------------------------------------------------
class PatchSampler:
    """Random patches from a list of :class:`PairItem` (all with the same number of channels).

    Parameters
    ----------
    items : list of PairItem
        2-D images ``(C, H, W)`` or volumes ``(C, K, J, I)``.
    patch : int
        Patch side.
    spatial_dims : {2, 3}
        2: 2-D patches (from volumes: a random slice along a random one of ``axes``); 3: 3-D patches
        (volumes only).
    augment : MONAI transform, optional
        Built by :func:`.augment.build_augmentation`.
    seed : int
        Seed of the sampler's generator (everything random here derives from it).
    min_signal : float
        Patches whose maximum is below this (empty background) are redrawn, up to 10 times.
    axes : sequence of int
        Slicing axes of volumes for 2-D patches.
    """

    def __init__(self, items: Sequence[PairItem], patch: int, *, spatial_dims: int = 2, augment=None,
                 seed: int = 0, min_signal: float = 0.05, axes: Sequence[int] = (0,)):
        if not items:
            raise FusionInputError("no training images: give --data folders or keep the built-in sources")
        channels = {it.images.shape[0] for it in items}
        if len(channels) != 1:
            raise FusionInputError(f"training items mix channel counts {sorted(channels)}")
        if spatial_dims == 3 and any(len(it.spatial_shape) != 3 for it in items):
            raise FusionInputError("3-D patches need volume pairs")
        self.items = list(items)
        self.patch = int(patch)
        self.spatial_dims = spatial_dims
        self.augment = augment
        self.rng = np.random.default_rng(seed)
        self.min_signal = min_signal
        self.axes = tuple(axes)
        # Volumes count once per slice, so a 200-slice volume is not drawn as often as one image.
        weights = np.array([it.spatial_shape[0] if len(it.spatial_shape) == 3 and spatial_dims == 2 else 1
                            for it in self.items], dtype=np.float64)
        self.probabilities = weights / weights.sum()

    @property
    def channels(self) -> int:
        return self.items[0].images.shape[0]

    def _view(self, item: PairItem) -> np.ndarray:
        x = item.images
        if x.ndim - 1 == 3 and self.spatial_dims == 2:
            axis = int(self.rng.choice(self.axes))
            index = int(self.rng.integers(0, x.shape[1 + axis]))
            x = np.take(x, index, axis=1 + axis)
        return x

    def _crop(self, x: np.ndarray) -> np.ndarray:
        p = self.patch
        pads = [(0, 0)] + [(max(0, p - s) // 2, max(0, p - s) - max(0, p - s) // 2) for s in x.shape[1:]]
        if any(a or b for a, b in pads):
            x = np.pad(x, pads, mode="reflect" if min(x.shape[1:]) > p // 2 else "edge")
        starts = [int(self.rng.integers(0, s - p + 1)) for s in x.shape[1:]]
        return x[(slice(None),) + tuple(slice(s, s + p) for s in starts)]

    def sample(self, batch: int) -> np.ndarray:
        """A batch ``(batch, C, *patch)`` float32 in [0, 1]."""
        out = np.empty((batch, self.channels) + (self.patch,) * self.spatial_dims, dtype=np.float32)
        picks = self.rng.choice(len(self.items), size=batch, p=self.probabilities)
        for k, pick in enumerate(picks):    # per patch, never per pixel
            for _ in range(10):
                crop = self._crop(self._view(self.items[pick]))
                if crop.max() >= self.min_signal:
                    break
            out[k] = crop
        from .augment import augment_batch

        return augment_batch(out, self.augment, self.rng)

    def state(self) -> dict:
        return self.rng.bit_generator.state

    def set_state(self, state: dict) -> None:
        self.rng.bit_generator.state = state


# --- synthetic training pairs made from single images -----------------------------------------------------
def blur(x: np.ndarray, sigma, spatial_dims: int = 2) -> np.ndarray:
    """Gaussian blur of the last ``spatial_dims`` axes (``sigma`` a number or one per leading sample)."""
    sigma = np.broadcast_to(np.asarray(sigma, dtype=np.float64), x.shape[:1])
    out = np.empty_like(x)
    for k in range(x.shape[0]):   # per sample: each has its own sigma
        out[k] = ndi.gaussian_filter(x[k], (0,) * (x.ndim - 1 - spatial_dims) + (float(sigma[k]),) * spatial_dims,
                                     mode="reflect")
    return out


def random_masks(shape: Tuple[int, ...], rng: np.random.Generator, spatial_dims: int = 2) -> np.ndarray:
    """Random binary region masks (B, 1, *spatial): thresholded smooth noise, so each source of a
    synthetic multi-focus pair is sharp in irregular regions covering about half of the patch."""
    b, spatial = shape[0], shape[-spatial_dims:]
    coarse = rng.standard_normal((b, 1) + tuple(max(2, s // 16) for s in spatial)).astype(np.float32)
    zoomed = ndi.zoom(coarse, (1, 1) + tuple(s / c for s, c in zip(spatial, coarse.shape[2:])), order=1)
    zoomed = zoomed[(slice(None), slice(None)) + tuple(slice(0, s) for s in spatial)]
    return (zoomed > 0).astype(np.float32)


def multifocus_pairs(clear: np.ndarray, rng: np.random.Generator, sigma: Tuple[float, float] = (1.0, 3.0),
                     spatial_dims: int = 2) -> Tuple[np.ndarray, np.ndarray]:
    """Synthetic multi-focus pairs with ground truth (the clear image), as IFCNN's training set: each
    source is the clear image in a random region and its blurred version elsewhere, complementary.

    Returns ``(sources (B, 2, ...), target (B, 1, ...))``."""
    blurred = blur(clear, rng.uniform(*sigma, size=clear.shape[0]), spatial_dims)
    mask = random_masks(clear.shape, rng, spatial_dims)
    a = mask * clear + (1 - mask) * blurred
    b = (1 - mask) * clear + mask * blurred
    return np.concatenate([a, b], axis=1).astype(np.float32), clear.astype(np.float32)


def exposure_pairs(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Synthetic under/over-exposed pairs (B, 2, ...) of single images (B, 1, ...): a dark gamma curve
    and a bright one, as in the multi-exposure tasks of FusionDN and U2Fusion."""
    b = image.shape[0]
    shape = (b,) + (1,) * (image.ndim - 1)
    dark = np.power(image, rng.uniform(1.8, 3.0, size=shape)) * rng.uniform(0.6, 0.9, size=shape)
    bright = 1.0 - np.power(1.0 - image, rng.uniform(1.8, 3.0, size=shape)) * rng.uniform(0.6, 0.9, size=shape)
    return np.concatenate([dark, bright], axis=1).astype(np.float32)


def blur_patch_pairs(clear: np.ndarray, rng: np.random.Generator, levels: int = 5, sigma: float = 2.0,
                     spatial_dims: int = 2) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Liu et al.'s training pairs: a clear patch and a version blurred by a Gaussian (sigma 2) applied
    1..``levels`` times, in random order. Returns ``(a, b, label)`` with label 1 when ``a`` is the clear
    one (``a``, ``b`` of shape (B, 1, ...))."""
    times = rng.integers(1, levels + 1, size=clear.shape[0])
    blurred = blur(clear, sigma * np.sqrt(times), spatial_dims)   # k passes of sigma = one of sigma sqrt(k)
    first_clear = rng.random(clear.shape[0]) < 0.5
    sel = first_clear.reshape((-1,) + (1,) * (clear.ndim - 1))
    a = np.where(sel, clear, blurred)
    b = np.where(sel, blurred, clear)
    return a.astype(np.float32), b.astype(np.float32), first_clear.astype(np.int64)
