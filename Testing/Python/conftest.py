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


# Hypothesis profiles of the property tests (test_properties*.py; docs/reliability.md): 'ci' is the
# default, derandomised (the same cases on every run) and sized for the 2-core CI machines; 'long'
# (HYPOTHESIS_PROFILE=long) draws fresh random cases, many more of them. No example database is
# written into the checkout.
try:
    from hypothesis import HealthCheck, settings as _hypothesis_settings
except ImportError:          # the test extra installs it; without it only the property tests fail
    pass
else:
    _slow_ok = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much]
    _hypothesis_settings.register_profile("ci", max_examples=30, deadline=None, derandomize=True, database=None,
                                          suppress_health_check=_slow_ok, print_blob=True)
    _hypothesis_settings.register_profile("long", max_examples=600, deadline=None, database=None,
                                          suppress_health_check=_slow_ok, print_blob=True)
    _hypothesis_settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
    if os.environ.get("HYPOTHESIS_MAX_EXAMPLES"):      # e.g. a shorter long run: docs/reliability.md
        _hypothesis_settings.register_profile("override", _hypothesis_settings.default,
                                              max_examples=int(os.environ["HYPOTHESIS_MAX_EXAMPLES"]))
        _hypothesis_settings.load_profile("override")
