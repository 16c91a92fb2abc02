"""The main job on built-in data: synthesise a CT/MRI/PET head phantom, fuse it, write volumes and a PNG.

``medfusion demo --out DIR`` (or :func:`run_demo`) needs no download. It exercises the whole path a
user's files take: the phantom is written as NRRD volumes (PET on a coarser, shifted grid, as PET is
acquired), read back through Slicer's volume IO, resampled onto the MRI grid by the bridge, fused grey and
in colour, written as NRRD, and shown as a PNG of central slices with the quality metrics of each result.
"""

from __future__ import annotations

import json
import os
from typing import List

import numpy as np

from . import colour, metrics, sampledata
from .intensity import normalise, robust_window
from .pipeline import colormaps_per_input

# (output file stem, input names, method, fuse options): grey, colour, a learned method, three inputs.
_JOBS = [
    ("mri_ct_laplacian", ["mri", "ct"], "laplacian", {}),
    ("mri_ct_guided_filter", ["mri", "ct"], "guided_filter", {"mode": "slices"}),
    ("mri_pet_dwt_colour", ["mri", "pet"], "dwt", {"colormap": "pet"}),
    ("mri_pet_ifcnn_colour", ["mri", "pet"], "ifcnn", {"colormap": "pet"}),       # a shipped learned network
    ("mri_ct_pet_laplacian_colour", ["mri", "ct", "pet"], "laplacian", {"colormap": [None, None, "hot"]}),
]


def _to_uint8(x: np.ndarray) -> np.ndarray:
    lo, hi = robust_window(x)
    return np.clip(np.rint((x - lo) / (hi - lo) * 255.0), 0, 255).astype(np.uint8)


def run_demo(out_dir: str = "medfusion-demo", size: int = 192, show_progress: bool = True) -> List[str]:
    """Write the phantom inputs, the fused volumes, ``demo_slices.png`` and ``metrics.json`` to ``out_dir``.

    Returns the paths written.
    """
    from . import bridge
    from .cli import _TqdmProgress
    from .evaluation import montage

    if size < 32:
        raise ValueError(f"size must be at least 32; got {size}")
    depth = max(16, size // 3)
    phantom = sampledata.head_phantom((depth, size, size), seed=0)
    inputs_dir = os.path.join(out_dir, "inputs")
    os.makedirs(inputs_dir, exist_ok=True)
    written: List[str] = []

    # Anatomical volumes on a 1 x 1 x 2 mm grid; PET on a 2 mm grid, half the in-plane samples, its
    # origin half a PET voxel off, as a scanner with its own geometry would store it.
    scene = bridge.new_scene()
    spacing = (1.0, 1.0, 2.0)
    origin = (-size / 2.0, -size / 2.0, -depth)
    sources = {
        "ct": bridge.node_from_array(scene, phantom["ct"], "CT", spacing=spacing, origin=origin),
        "mri": bridge.node_from_array(scene, phantom["mri"], "MRI", spacing=spacing, origin=origin),
        "pet": bridge.node_from_array(scene, np.ascontiguousarray(phantom["pet"][:, ::2, ::2]), "PET",
                                      spacing=(2.0, 2.0, 2.0), origin=(origin[0] + 0.5, origin[1] + 0.5, origin[2])),
    }
    for name, node in sources.items():
        path = os.path.join(inputs_dir, f"{name}.nrrd")
        bridge.save_volume(node, path)
        written.append(path)

    # Read them back as a user's files would be read.
    scene = bridge.new_scene()
    nodes = {name: bridge.load_volume(os.path.join(inputs_dir, f"{name}.nrrd"), scene) for name in sources}
    results = {}
    scores = {}
    for stem, names, method, options in _JOBS:
        bar = _TqdmProgress(f"{stem}", enabled=show_progress)
        try:
            node = bridge.fuse_volume_nodes([nodes[n] for n in names], method, progress=bar, output_name=stem,
                                            **options)
        finally:
            bar.close()
        path = os.path.join(out_dir, f"{stem}.nrrd")
        bridge.save_volume(node, path)
        written.append(path)
        fused = bridge.array_from_node(node)
        results[stem] = fused
        # Scores on the protocol's 0..255 scale, per axial slice, averaged (see MedFusionLib.metrics), on
        # every fourth slice: the demo stays quick and the slices are alike.
        srcs = [bridge.resample_to_reference(nodes[n], nodes[names[0]]) for n in names]
        maps = colormaps_per_input(options.get("colormap"), len(names))
        srcs8 = [metrics.protocol_image(colour.apply_colormap(normalise(s, robust_window(s)), m)) if m
                 else _to_uint8(s).astype(np.float64) for s, m in zip(srcs, maps)]
        fused8 = metrics.protocol_image(fused) if fused.ndim == 4 else _to_uint8(fused).astype(np.float64)
        # NaN for a metric whose windows do not fit a small phantom (MS-SSIM needs 176 x 176 slices).
        every4 = slice(None, None, 4)
        scores[stem] = {"method": method, "inputs": names, "slices": "every 4th axial slice",
                        **metrics.evaluate_all(fused8[every4], [x[every4] for x in srcs8])}

    metrics_path = os.path.join(out_dir, "metrics.json")
    from .atomic import replacing, write_text

    write_text(metrics_path, json.dumps(scores, indent=2))
    written.append(metrics_path)

    k = depth // 2
    pet_on_mri = bridge.resample_to_reference(nodes["pet"], nodes["mri"])
    tiles = [("CT", _to_uint8(phantom["ct"][k])), ("MRI T1", _to_uint8(phantom["mri"][k])),
             ("PET (pet map)", colour.apply_colormap(_to_uint8(pet_on_mri[k]) / 255.0, "pet"))]
    for stem, fused in results.items():
        tiles.append((stem, fused[k] if fused.ndim == 4 else _to_uint8(fused[k])))
    import imageio.v3 as iio

    png = os.path.join(out_dir, "demo_slices.png")
    with replacing(png, keep_extension=True) as tmp:
        iio.imwrite(tmp, montage(tiles, columns=len(tiles), tile=max(size, 160)))
    written.append(png)
    return written
