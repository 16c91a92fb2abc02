"""Concurrency (issue 12, item 5): fuse from several threads gives what sequential calls give, and the Slicer
logic refuses a second fusion while one runs."""

import os
import sys
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch

import MedFusionLib
from MedFusionLib.deep import weights

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "MedFusion"))

# A classical, two signal-processing (their filter banks are lru_cached per shape) and two learned methods
# (networks cached per weight file and device in MedFusionLib.deep.weights).
METHODS = ["laplacian", "nsst_papcnn", "nsct", "ifcnn", "u2fusion"]


def _jobs(phantom3d):
    mri, pet = phantom3d["mri"].astype(np.float32), phantom3d["pet"].astype(np.float32)
    # Two shapes per method, so that first uses of the caches happen concurrently too.
    return [(m, (mri[10:13], pet[10:13])) for m in METHODS] + [(m, (mri[12, :40, :36], pet[12, :40, :36]))
                                                              for m in METHODS]


def _fuse(job):
    method, images = job
    return MedFusionLib.fuse(list(images), method, mode="slices" if images[0].ndim == 3 else "auto")


def test_threads_give_the_sequential_results_bit_for_bit(phantom3d):
    jobs = _jobs(phantom3d)
    weights._CACHE.clear()                           # the first loads race too
    threads_before = torch.get_num_threads()
    with ThreadPoolExecutor(max_workers=4) as pool:
        parallel = list(pool.map(_fuse, jobs * 2))
    sequential = [_fuse(job) for job in jobs]
    for k, (job, expected) in enumerate(zip(jobs * 2, sequential * 2)):
        assert parallel[k].dtype == expected.dtype and parallel[k].shape == expected.shape, job[0]
        assert np.array_equal(parallel[k], expected), f"{job[0]} differs when run in threads"
    assert torch.get_num_threads() == threads_before     # no call changes torch's thread settings


def test_inputs_are_not_shared_state(phantom3d):
    # The same input arrays fused by several threads at once stay untouched.
    mri, pet = phantom3d["mri"][8:12].copy(), phantom3d["pet"][8:12].copy()
    before = (mri.copy(), pet.copy())
    with ThreadPoolExecutor(max_workers=3) as pool:
        list(pool.map(lambda m: MedFusionLib.fuse([mri, pet], m, mode="slices"), ["laplacian", "nsct", "ifcnn"]))
    assert np.array_equal(mri, before[0]) and np.array_equal(pet, before[1])


# --- the Slicer logic: one fusion at a time ------------------------------------------------------------------
@pytest.fixture
def volumes(phantom3d):
    from MedFusionLib import bridge
    from MedFusionModuleLib import sampledata

    scene = bridge.new_scene()          # held here: nodes do not keep their scene alive
    yield sampledata.phantomVolumes(scene, arrays=phantom3d)
    scene.Clear(1)


def _blocking_call(logic, volumes, call, entered, release, outcome):
    def progress(fraction, message):
        if not entered.is_set():
            entered.set()
            release.wait(60)

    try:
        if call == "process":
            outcome["result"] = logic.process(volumes["MRI"], [volumes["PET"]], "average", showResult=False,
                                              progress=progress)
        else:
            outcome["result"] = logic.compareMethods(volumes["MRI"], [volumes["PET"]], ["average"], progress=progress)
    except BaseException as error:  # noqa: BLE001 - handed to the test thread
        outcome["error"] = error


@pytest.mark.parametrize("first", ["process", "compareMethods"])
def test_second_apply_while_one_runs_is_refused(volumes, first):
    from MedFusionModuleLib.logic import MedFusionLogicBase

    logic = MedFusionLogicBase()
    entered, release, outcome = threading.Event(), threading.Event(), {}
    worker = threading.Thread(target=_blocking_call, args=(logic, volumes, first, entered, release, outcome))
    worker.start()
    try:
        assert entered.wait(60)
        scene = volumes["MRI"].GetScene()
        nodes_before = scene.GetNumberOfNodes()
        with pytest.raises(MedFusionLib.FusionError, match=f"a fusion is already running \\({first}\\)"):
            logic.process(volumes["MRI"], [volumes["PET"]], "average", showResult=False)
        with pytest.raises(MedFusionLib.FusionError, match="already running"):
            logic.compareMethods(volumes["MRI"], [volumes["PET"]], ["average"])
        assert scene.GetNumberOfNodes() == nodes_before     # the refused calls touched nothing
    finally:
        release.set()
        worker.join(120)
    assert "error" not in outcome, outcome.get("error")
    # Released when done: the next call runs.
    assert logic.process(volumes["MRI"], [volumes["PET"]], "average", showResult=False).outputVolume is not None


def test_the_guard_is_released_after_an_error_or_a_cancel(volumes):
    from MedFusionModuleLib.logic import MedFusionLogicBase

    logic = MedFusionLogicBase()
    with pytest.raises(MedFusionLib.FusionInputError):
        logic.process(volumes["MRI"], [volumes["PET"]], "no_such_method", showResult=False)
    token = MedFusionLib.CancelToken()
    token.cancel()
    with pytest.raises(MedFusionLib.FusionCancelled):
        logic.process(volumes["MRI"], [volumes["PET"]], "average", showResult=False, cancel=token)
    assert logic.process(volumes["MRI"], [volumes["PET"]], "average", showResult=False).outputVolume is not None
