"""Shared fixtures: small synthetic multimodal data made on the fly (no download, no ../shared)."""

import os

import numpy as np
import pytest

from MedFusionLib import sampledata


def pytest_configure(config):
    config.addinivalue_line("markers", "cuda: needs a CUDA GPU (skipped with a reason elsewhere; pytest -m cuda -ra)")


@pytest.fixture(scope="session")
def phantom3d():
    """A small co-registered CT / MRI / PET head phantom, (24, 48, 40)."""
    return sampledata.head_phantom((24, 48, 40), seed=1)


@pytest.fixture(scope="session")
def phantom2d(phantom3d):
    """One axial slice of the phantom: MRI, PET, CT as 2-D arrays."""
    return {k: v[12] for k, v in phantom3d.items()}


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


def to8(x):
    """An image scaled to its full range and rounded to 8 bits (as the development set's PNGs)."""
    x = x.astype(np.float64)
    return np.round(255 * (x - x.min()) / (x.max() - x.min())).astype(np.uint8)


@pytest.fixture(scope="session")
def grey_pair_folder(tmp_path_factory, phantom3d):
    """A folder laid out like aanlib-dev: MRI_PET/{MRI,PET}/k.png, 8 grey pairs (6 train, 2 held out)."""
    import imageio.v3 as iio

    root = tmp_path_factory.mktemp("grey-pairs")
    for mod in ("MRI", "PET"):
        os.makedirs(root / "MRI_PET" / mod)
    for k in range(8):
        iio.imwrite(root / "MRI_PET" / "MRI" / f"{k + 10}.png", to8(phantom3d["mri"][8 + k]))
        iio.imwrite(root / "MRI_PET" / "PET" / f"{k + 10}.png", to8(phantom3d["pet"][8 + k]))
    return str(root)


@pytest.fixture(scope="session")
def slices(phantom3d):
    """Three co-registered sources in [0, 1], a small volume of each (first = anatomical)."""
    def unit(x):
        x = x.astype(np.float32)
        return (x - x.min()) / (x.max() - x.min())

    return {k: unit(phantom3d[k][6:14]) for k in ("mri", "pet", "ct")}
