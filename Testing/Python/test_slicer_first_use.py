"""What a Slicer user meets on first use (issue 10): the built-in phantom without PyTorch/MONAI, the
self-test's install decisions, the install button's state, the Sample Data entry, the side-by-side
comparison views and the extension screenshot.

MRML parts run on slicer-core's real scene and nodes (with Slicer's own application, layout and slice
logics where the application would have them); the parts that need Qt are checked statically in
test_extension_files.py.
"""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MODULE_DIR = os.path.join(ROOT, "MedFusion")
sys.path.insert(0, MODULE_DIR)

from MedFusionLib import sampledata as library_sampledata  # noqa: E402
from MedFusionModuleLib import dependencies  # noqa: E402

# Importing either makes an import fail (None in sys.modules), as if PyTorch and MONAI were not installed.
BLOCK_LEARNED = "import sys\nfor _name in ('torch', 'monai'):\n    sys.modules[_name] = None\n"


def _run_python(code, *args):
    run = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=300,
                         cwd=ROOT)
    assert run.returncode == 0, run.stdout + run.stderr
    return run.stdout


# --- item 11: the phantom and the self-test without PyTorch ---------------------------------------------
def test_phantom_is_built_without_torch_or_monai(tmp_path, phantom3d):
    out = tmp_path / "phantom.npz"
    _run_python(BLOCK_LEARNED + textwrap.dedent("""
        import numpy as np
        from MedFusionLib import sampledata
        arrays = sampledata.head_phantom((24, 48, 40), seed=1)
        np.savez(sys.argv[1], **arrays)
        loaded = [m for m in sys.modules if m.split('.')[0] in ('torch', 'monai') and sys.modules[m] is not None]
        assert not loaded, loaded
    """), str(out))
    with np.load(out) as built:
        assert sorted(built.files) == sorted(phantom3d)
        for name, array in phantom3d.items():   # the same phantom as with everything installed
            np.testing.assert_array_equal(built[name], array)
            assert built[name].dtype == array.dtype


def test_hot_spots_are_the_draws_monai_made():
    monai_synthetic = pytest.importorskip("monai.data.synthetic")
    for shape, seed in (((24, 48, 40), 1), ((8, 8, 8), 3), ((16, 64, 48), 7)):
        rad_max = max(3, min(shape) // 6)
        mine, theirs = np.random.RandomState(seed), np.random.RandomState(seed)
        labels = library_sampledata.random_spheres(shape, 24, rad_max, 2, 3, mine)
        _, expected = monai_synthetic.create_test_image_3d(*shape, num_objs=24, rad_max=rad_max, rad_min=2,
                                                           noise_max=0.0, num_seg_classes=3, random_state=theirs)
        np.testing.assert_array_equal(labels, expected)
        assert labels.max() >= 1 and set(np.unique(labels)) <= {0, 1, 2, 3}
        assert mine.random_sample() == theirs.random_sample()   # the generator is left in the same state


def test_random_spheres_refuse_impossible_sizes():
    with pytest.raises(ValueError, match="larger than 2 \\* rad_max"):
        library_sampledata.random_spheres((6, 64, 64), 3, 3, 2, 3, np.random.RandomState(0))
    with pytest.raises(ValueError, match="rad_min < rad_max"):
        library_sampledata.random_spheres((32, 32, 32), 3, 2, 2, 3, np.random.RandomState(0))
