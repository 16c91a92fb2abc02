"""Behavioural checks shared by the learned methods' tests (a plain module, imported by the test files)."""

import numpy as np
from scipy import ndimage as ndi

import MedFusionLib as mf


def check_keeps_hot_spot_and_anatomy(method: str, mri: np.ndarray, pet: np.ndarray, **options) -> None:
    """A dim functional image with a hot spot where the MRI is darkest inside the head: the fused image
    must show the hot spot (not a copy of the MRI, nor their average, which halves it) and keep the
    MRI's anatomy elsewhere (not a copy of the PET)."""
    pet = pet / pet.max() * 0.3
    inside = ndi.uniform_filter((mri > 0.02).astype(float), 9) > 0.999
    cy, cx = np.unravel_index(np.where(inside, ndi.uniform_filter(mri, 7), 9).argmin(), mri.shape)
    yy, xx = np.mgrid[:mri.shape[0], :mri.shape[1]]
    hot = (yy - cy) ** 2 + (xx - cx) ** 2 <= 9
    pet[hot] = 0.95
    fused = mf.fuse([mri, pet], method=method, **options)
    assert fused[hot].mean() - mri[hot].mean() > 0.03, f"{method} copies the MRI"
    anatomy = mri > pet + 0.2
    assert np.abs(fused - pet)[anatomy].mean() > 0.2, f"{method} copies the PET"
    assert np.abs(fused - mri)[anatomy].mean() < np.abs(fused - pet)[anatomy].mean()
    # The brighter source per region, as the losses ask: closer to it than the average of the two is.
    brighter = np.maximum(mri, pet)
    region = hot | anatomy
    assert np.abs(fused - brighter)[region].mean() < 0.5 * np.abs((mri + pet) / 2 - brighter)[region].mean(), \
        f"{method} is no closer to the brighter source than averaging"
