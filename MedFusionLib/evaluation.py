"""Evaluate fusion methods over a folder of registered image pairs, with the published metric protocol.

A folder is laid out like the AANLIB development set: ``ROOT/SET/{MOD_A,MOD_B}/NAME.ext``, a pair
sharing its file name across the two modality folders (``MRI_CT/MRI/11.png`` with ``MRI_CT/CT/11.png``).
The set name ``A_B`` says which modality is the anatomical reference (``A``); otherwise the first folder
in alphabetical order is.

Protocol (../shared/docs/fusion-metrics.md, the CDDFuse evaluator): sources are read as 8-bit luminance
(rounded), fused with fixed 0..255 input and output ranges, the result clipped and rounded, and all
metrics averaged over the pairs of a set. Seconds per pair time the fusion call alone.
"""

from __future__ import annotations

import csv
import os
import time
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from .errors import FusionInputError
from .pipeline import fuse
from .progress import Progress

IMAGE_SUFFIXES = (".png", ".tif", ".tiff", ".jpg", ".jpeg", ".bmp")


def read_image(path: str) -> np.ndarray:
    """Read a 2-D image file as stored (grey (H, W) or RGB (H, W, 3) uint8; alpha dropped)."""
    import imageio.v3 as iio

    try:
        image = np.asarray(iio.imread(path))
    except FileNotFoundError:
        raise
    except (OSError, ValueError, RuntimeError, SyntaxError) as exc:
        # Pillow: truncated or unidentified files (OSError), a broken header (SyntaxError); imageio's
        # fallbacks (e.g. SimpleITK's plugin: RuntimeError) and "no backend" (ValueError).
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
        reason = lines[-1].replace("sitk::ERROR: ", "") if lines else type(exc).__name__
        raise FusionInputError(f"cannot read {os.fspath(path)!r} as an image ({reason}); readable: PNG, TIFF, "
                               "JPEG, BMP") from None
    if image.ndim == 3 and image.shape[-1] == 4:
        image = image[..., :3]
    if image.ndim == 3 and image.shape[-1] == 3 and image.dtype != np.uint8:
        raise FusionInputError(f"{path}: colour images must be 8-bit; got {image.dtype}")
    return image


@dataclass
class PairSet:
    """The pairs of one set folder: modality names (reference first) and (name, ref path, other path)."""

    name: str
    modalities: Tuple[str, str]
    pairs: List[Tuple[str, str, str]]


def find_pairs(root: str, sets: Optional[Sequence[str]] = None) -> List[PairSet]:
    """Discover the pair sets under ``root`` (see the module docstring for the layout)."""
    if not os.path.isdir(root):
        raise FusionInputError(f"{root!r} is not a folder")
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
        files = [{f for f in os.listdir(os.path.join(set_dir, d)) if f.lower().endswith(IMAGE_SUFFIXES)}
                 for d in folders]
        names = sorted(files[0] & files[1], key=lambda n: (len(n), n))
        if names:
            pairs = [(os.path.splitext(n)[0], os.path.join(set_dir, folders[0], n), os.path.join(set_dir, folders[1], n))
                     for n in names]
            found.append(PairSet(set_name, (folders[0], folders[1]), pairs))
    if sets:
        missing = sorted(set(sets) - {s.name for s in found})
        if missing:
            raise FusionInputError(f"no pair set {', '.join(missing)} under {root!r}")
    if not found:
        raise FusionInputError(
            f"no pair sets under {root!r}: expected SET/{{MOD_A,MOD_B}}/NAME.png with matching file names")
    return found


#: Held-back pairs: in every set, sorted by name, every fourth pair (index 3, 7, 11, ...) is kept out of
#: training and used to evaluate learned methods; the rest may be used for training.
HOLDOUT_EVERY = 4
SPLITS = ("all", "train", "held-out")


def split_pairs(pair_set: "PairSet", split: str = "all") -> List[Tuple[str, str, str]]:
    """The pairs of ``pair_set`` in ``split``: ``'all'``, ``'train'`` or ``'held-out'`` (every
    :data:`HOLDOUT_EVERY`-th pair in name order, starting with the fourth)."""
    if split not in SPLITS:
        raise FusionInputError(f"split must be one of {', '.join(SPLITS)}; got {split!r}")
    if split == "all":
        return list(pair_set.pairs)
    held = [k % HOLDOUT_EVERY == HOLDOUT_EVERY - 1 for k in range(len(pair_set.pairs))]
    return [p for p, h in zip(pair_set.pairs, held) if h == (split == "held-out")]


def fuse_protocol(reference: np.ndarray, other: np.ndarray, method: str, **params) -> np.ndarray:
    """Fuse two protocol (0..255 luminance) images and return the protocol fused image (clipped, rounded)."""
    from .metrics import protocol_fused

    fused = fuse([reference, other], method=method, input_ranges=(0, 255), output_range=(0, 255), **params)
    # The pipeline computes in float32, so an exact half (the average of two integers) may come back as
    # 100.49998 or 100.50002; snapping to 1/1000 first lets protocol_fused round it half-to-even exactly
    # as the float64 reference computation does (it moves EN of average fusion by 1 %, see docs/evaluation.md).
    return protocol_fused(np.round(fused.astype(np.float64), 3))


@dataclass
class EvaluationResult:
    """Per-pair rows and per-set means of an evaluation run."""

    metric_names: List[str]
    rows: List[Dict[str, object]] = field(default_factory=list)
    written: List[str] = field(default_factory=list)

    def means(self) -> List[Dict[str, object]]:
        """One row per (set, method): the mean of every metric and of seconds per pair."""
        groups: Dict[Tuple[str, str], List[Dict[str, object]]] = {}
        for row in self.rows:
            groups.setdefault((row["set"], row["method"]), []).append(row)
        out = []
        for (set_name, method), rows in groups.items():
            mean = {"set": set_name, "method": method, "pairs": len(rows)}
            undefined = []
            for key in self.metric_names + ["seconds"]:
                values = np.array([r[key] for r in rows], dtype=np.float64)
                defined = np.isfinite(values)
                # A metric can be undefined for a pair (e.g. SCD when the result equals one source: a
                # correlation with a constant); the mean is over the pairs where it is defined.
                mean[key] = float(values[defined].mean()) if defined.any() else float("nan")
                if not defined.all():
                    undefined.append(f"{key}:{int((~defined).sum())}")
            mean["undefined"] = " ".join(undefined)
            out.append(mean)
        return out

    def markdown(self, digits: int = 3) -> str:
        """The per-set means as a Markdown table."""
        head = ["set", "method", "pairs"] + self.metric_names + ["s/pair"]
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        notes = []
        for m in self.means():
            flagged = {item.split(":")[0] for item in m["undefined"].split()}
            values = [f"{m[k]:.{digits}f}" + ("*" if k in flagged else "") for k in self.metric_names]
            values.append(f"{m['seconds']:.4f}")
            lines.append("| " + " | ".join([m["set"], f"`{m['method']}`", str(m["pairs"])] + values) + " |")
            if m["undefined"]:
                notes.append(f"{m['set']} `{m['method']}`: {m['undefined']}")
        if notes:
            lines.append("")
            lines.append("\\* mean over the pairs where the metric is defined; undefined for (metric:pairs) "
                         + "; ".join(notes))
        return "\n".join(lines)

    def write(self, out_dir: str) -> None:
        os.makedirs(out_dir, exist_ok=True)
        per_pair = os.path.join(out_dir, "results_per_pair.csv")
        keys = ["set", "pair", "method"] + self.metric_names + ["seconds"]
        _write_csv(per_pair, keys, self.rows)
        means = os.path.join(out_dir, "results.csv")
        _write_csv(means, ["set", "method", "pairs"] + self.metric_names + ["seconds", "undefined"], self.means())
        md = os.path.join(out_dir, "results.md")
        _atomic_text(md, self.markdown() + "\n")
        self.written += [per_pair, means, md]


def _atomic_text(path: str, text: str) -> None:
    from .atomic import write_text

    write_text(path, text)


def _write_csv(path: str, keys: List[str], rows: List[Dict[str, object]]) -> None:
    from .atomic import replacing

    with replacing(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=keys, extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})


def montage(tiles: Sequence[Tuple[str, np.ndarray]], columns: int, tile: int = 192) -> np.ndarray:
    """Arrange labelled images (grey 0..255 floats/uint8 or RGB uint8) in a grid; returns RGB uint8."""
    from PIL import Image, ImageDraw

    rows = (len(tiles) + columns - 1) // columns
    label_h = 16
    canvas = Image.new("RGB", (columns * tile, rows * (tile + label_h)), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    for k, (label, image) in enumerate(tiles):
        array = np.asarray(image)
        if array.ndim == 2:
            array = np.repeat(np.clip(np.rint(array), 0, 255).astype(np.uint8)[..., None], 3, axis=-1)
        picture = Image.fromarray(array.astype(np.uint8)).resize((tile, tile), Image.BILINEAR)
        x, y = (k % columns) * tile, (k // columns) * (tile + label_h)
        canvas.paste(picture, (x, y + label_h))
        draw.text((x + 3, y + 2), label[:30], fill=(0, 0, 0))
    return np.asarray(canvas)


def evaluate_folder(root: str, methods: Sequence[str], *, out_dir: Optional[str] = None,
                    sets: Optional[Sequence[str]] = None, limit: Optional[int] = None,
                    pairs: Optional[Sequence[str]] = None, split: str = "all", show_progress: bool = True,
                    progress=None, cancel=None,
                    params: Optional[Dict[str, Dict[str, object]]] = None) -> EvaluationResult:
    """Fuse every pair of every set with every method and score the results.

    Parameters
    ----------
    root : str
        Folder of pair sets (layout in the module docstring).
    methods : sequence of str
        Registered method names, run with their default parameters unless ``params[name]`` is given.
    out_dir : str, optional
        Where to write ``results_per_pair.csv``, ``results.csv``, ``results.md`` and ``montage_<SET>.png``.
    sets : sequence of str, optional
        Only these set folders.
    limit : int, optional
        At most this many pairs per set (the first ones in name order).
    pairs : sequence of str, optional
        Only pairs whose name (file name without extension) is listed.
    split : {'all', 'train', 'held-out'}
        Only the training or the held-back pairs of each set (see :func:`split_pairs`).
    show_progress : bool
        Show a tqdm bar over all fusions.
    progress : callable, optional
        ``progress(fraction, message)`` after every fusion.
    cancel : CancelToken, threading.Event or callable, optional
        Checked after every fusion; raises :class:`MedFusionLib.FusionCancelled` and writes nothing.
    """
    from tqdm import tqdm

    from . import metrics
    from .registry import get_method

    for name in methods:
        get_method(name)  # unknown names fail before any work
    pair_sets = find_pairs(root, sets)
    for s in pair_sets:
        s.pairs = split_pairs(s, split)
        if pairs is not None:
            s.pairs = [p for p in s.pairs if p[0] in set(pairs)]
        if limit is not None:
            s.pairs = s.pairs[:limit]
    result = EvaluationResult(metric_names=list(metrics.METRICS))
    total = sum(len(s.pairs) for s in pair_sets) * len(methods)
    reporter = Progress.wrap(progress, cancel)
    done = 0
    montages: Dict[str, np.ndarray] = {}
    bar = tqdm(total=total, desc="evaluating", disable=not show_progress, leave=False)
    try:
        for s in pair_sets:
            examples: List[Tuple[str, np.ndarray]] = []
            for k, (pair_name, ref_path, other_path) in enumerate(s.pairs):
                ref_raw, other_raw = read_image(ref_path), read_image(other_path)
                ref, other = metrics.protocol_image(ref_raw), metrics.protocol_image(other_raw)
                if k == 0:
                    examples += [(f"{s.modalities[0]} {pair_name}", ref_raw if ref_raw.ndim == 3 else ref),
                                 (f"{s.modalities[1]} {pair_name}", other_raw)]
                for method in methods:
                    bar.set_postfix_str(f"{s.name} {pair_name} {method}", refresh=False)
                    start = time.perf_counter()
                    fused = fuse_protocol(ref, other, method, **(params or {}).get(method, {}))
                    seconds = time.perf_counter() - start
                    scores = metrics.evaluate_all(fused, [ref, other])
                    result.rows.append({"set": s.name, "pair": pair_name, "method": method, **scores,
                                        "seconds": seconds})
                    if k == 0:
                        examples.append((method, fused))
                        if other_raw.ndim == 3 and not _is_grey_rgb(other_raw):
                            colour = fuse([ref_raw if ref_raw.ndim == 2 else ref, other_raw], method=method,
                                          input_ranges=(0, 255), **(params or {}).get(method, {}))
                            examples.append((f"{method} colour", colour))
                    bar.update(1)
                    done += 1
                    reporter.report(done / max(total, 1), f"{s.name} {pair_name} {method}")
            if examples:
                montages[s.name] = montage(examples, columns=6)
    finally:
        bar.close()
    if out_dir:
        # Files are written only once every pair is done: a cancelled or failed run leaves none behind.
        import imageio.v3 as iio

        from .atomic import replacing

        os.makedirs(out_dir, exist_ok=True)
        for set_name, picture in montages.items():
            path = os.path.join(out_dir, f"montage_{set_name}.png")
            with replacing(path, keep_extension=True) as tmp:
                iio.imwrite(tmp, picture)
            result.written.append(path)
        result.write(out_dir)
    return result


def _is_grey_rgb(rgb: np.ndarray) -> bool:
    return bool((rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 1] == rgb[..., 2]).all())
