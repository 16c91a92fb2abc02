"""Behavioural checks shared by the learned methods' tests (a plain module, imported by the test files)."""

import numpy as np
import pytest
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


def check_keeps_anatomy_under_bright_function(method: str, mri: np.ndarray, pet: np.ndarray, **options) -> None:
    """The floor pixel max fails: inside the head, a patch where the functional image is bright and flat
    (0.7) and the MRI dimmer with fine structure (0.3 +- 0.1 stripes, 2 pixels wide). Pixel max shows the
    flat PET there and loses the anatomy entirely (stripe amplitude 0); a fusion must keep at least a quarter
    of the MRI's stripe amplitude (0.025). (Averaging keeps half of it: check_keeps_hot_spot_and_anatomy is
    the floor averaging fails.)"""
    mri, pet = mri.copy(), pet / pet.max() * 0.3
    inside = ndi.uniform_filter((mri > 0.02).astype(float), 9) > 0.999
    ys, xs = np.nonzero(inside)
    cy, cx = int(ys.mean()), int(xs.mean())
    patch = np.zeros(mri.shape, bool)
    patch[cy - 6:cy + 6, cx - 6:cx + 6] = True
    patch &= inside
    yy, xx = np.mgrid[:mri.shape[0], :mri.shape[1]]
    stripes = np.where((xx // 2) % 2 == 0, 1.0, -1.0)[patch]
    mri[patch] = 0.3 + 0.1 * stripes
    pet[patch] = 0.7
    fused = mf.fuse([mri, pet], method=method, **options)

    def amplitude(image):          # least-squares amplitude of the stripes in the patch
        z = stripes - stripes.mean()
        return float(((image[patch] - image[patch].mean()) * z).sum() / (z * z).sum())

    assert amplitude(np.maximum(mri, pet)) == 0.0 and amplitude(mri) == pytest.approx(0.1)
    assert amplitude(fused) > 0.025, f"{method} loses the anatomy under a bright functional region, as pixel max"
