"""Shared fixtures: small synthetic multimodal data made on the fly (no download, no ../shared)."""

import numpy as np
import pytest

from MedFusionLib import sampledata


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
