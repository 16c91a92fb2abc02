"""Frozen fingerprints of the learned methods' outputs with the shipped weights (a regression check): the
deep-learning family and nsst_similarity (whose band features come from a shipped network).

A fingerprint is the mean and the standard deviation of every 8 x 8 block of the image that a method fuses
from a fixed input: a slice of the seeded head phantom, as MRI + PET (two sources) and as MRI + PET + CT
(three, which the two-source networks fold pairwise; for the methods that take three), a pair cropped inside
the head (tissue at every border), and the first pair again with parameters off their defaults
(:data:`VARIANTS`). It is not a reference of what the method should give:
it freezes what the shipped networks give, so that a change to a network's code (a layer, an activation, a
padding, the inference tiling or normalisation) that the behavioural tests let through is seen. The
tolerance (:data:`TOLERANCE`, 1e-4) is far above the float32 noise between thread counts (measured: 1e-7) and
below what the changed networks of the deep_networks mutation run gave (docs/testing.md).

The values are tied to the SHA-256 of each method's weight file; after a deliberate retraining, regenerate
them (the test says so) with::

    .venv/bin/python Testing/Python/learned_fingerprints.py
"""

from __future__ import annotations

import functools
import json
import os
from typing import Dict, List

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
FROZEN = os.path.join(HERE, "learned_fingerprints.json")
BLOCK = 8
#: largest allowed difference of any block mean or block standard deviation (images in [0, 1])
TOLERANCE = 1e-4


@functools.lru_cache(maxsize=1)
def fingerprint_inputs() -> Dict[str, List[np.ndarray]]:
    """The fixed inputs, 2-D in [0, 1]: ``"two"`` (MRI, PET, 48 x 40, head on a black background), ``"three"``
    (MRI, PET, CT) and ``"inner"`` (MRI, PET, a 40 x 40 crop inside the head of a larger phantom). Built once
    (half a second) and shared by every fingerprint: ``fuse`` never modifies its inputs."""
    from MedFusionLib import sampledata

    volume = sampledata.head_phantom((24, 48, 40), seed=1)
    unit = {}
    for name in ("mri", "pet", "ct"):
        x = volume[name][9].astype(np.float32)
        unit[name] = (x - x.min()) / (x.max() - x.min())
    # tissue up to the borders (the phantom's black background hides how a method treats the image edge)
    inner = sampledata.head_phantom((24, 96, 96), seed=1)
    crops = []
    for name in ("mri", "pet"):
        x = inner[name][9, 28:68, 28:68].astype(np.float32)
        crops.append((x - x.min()) / (x.max() - x.min()))
    return {"two": [unit["mri"], unit["pet"]], "three": [unit["mri"], unit["pet"], unit["ct"]], "inner": crops}


def block_statistics(image: np.ndarray) -> Dict[str, List[List[float]]]:
    """Mean and standard deviation of each ``BLOCK`` x ``BLOCK`` block (the image sides are multiples)."""
    rows, cols = image.shape[0] // BLOCK, image.shape[1] // BLOCK
    blocks = image[:rows * BLOCK, :cols * BLOCK].astype(np.float64).reshape(rows, BLOCK, cols, BLOCK)
    return {"mean": blocks.mean(axis=(1, 3)).round(7).tolist(), "std": blocks.std(axis=(1, 3)).round(7).tolist()}


#: parameter settings off the defaults, each fingerprinted on the two-source input (the other code paths of
#: the methods with parameters: IFCNN's fusion rules, DSCNN's low-band rules, window and consistency check,
#: the CNN weight map's pyramid depth, window and threshold)
VARIANTS = {
    "ifcnn": [{"rule": "mean"}, {"rule": "sum"}],
    "dscnn": [{"low_rule": "weighted"}, {"low_rule": "mean", "window": 5, "consistency": False}],
    "cnn_weight_map": [{"levels": 2, "window": 5, "threshold": 0.8}],
}


def variant_name(params: Dict) -> str:
    return "two " + " ".join(f"{k}={v}" for k, v in sorted(params.items()))


def fingerprint(method: str) -> Dict[str, Dict[str, List[List[float]]]]:
    """The block statistics of ``method``'s fused image on each fixed input it takes, and on the two-source
    input with each of its :data:`VARIANTS` (CPU, unit ranges)."""
    import MedFusionLib as mf

    def fused(images, **params):
        return mf.fuse(images, method=method, input_ranges=(0, 1), output_range="unit", device="cpu", **params)

    most = mf.get_method(method).max_inputs or 3
    inputs = fingerprint_inputs()
    out = {case: block_statistics(fused(images)) for case, images in inputs.items() if len(images) <= most}
    for params in VARIANTS.get(method, []):
        out[variant_name(params)] = block_statistics(fused(inputs["two"], **params))
    return out


#: methods of other families that run a shipped network (nsst_similarity's learned band features)
OTHER_NETWORK_METHODS = ("nsst_similarity",)


def learned_methods() -> List[str]:
    """The deep-learning family and :data:`OTHER_NETWORK_METHODS`, sorted."""
    import MedFusionLib as mf

    return sorted([spec.name for spec in mf.methods("deep learning")] + list(OTHER_NETWORK_METHODS))


def weights_sha256(method: str) -> str:
    from MedFusionLib.digests import file_sha256
    from MedFusionLib.deep.weights import PACKAGE_WEIGHTS

    return file_sha256(os.path.join(PACKAGE_WEIGHTS, f"{method}.pt"))


def main() -> None:
    frozen = {"tolerance": TOLERANCE, "block": BLOCK, "methods": {}}
    for method in learned_methods():
        frozen["methods"][method] = {"weights_sha256": weights_sha256(method), **fingerprint(method)}
        print(method, flush=True)
    with open(FROZEN, "w", encoding="utf-8") as fh:
        json.dump(frozen, fh, indent=1)
        fh.write("\n")
    print("wrote", FROZEN)


if __name__ == "__main__":
    main()
