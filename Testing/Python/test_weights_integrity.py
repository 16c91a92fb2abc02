"""Weight integrity (issue 12, item 4): every shipped weight file's SHA-256 is recorded beside it and
checked before the file is unpickled; loading weights or a training checkpoint never runs code."""

import glob
import json
import os
import shutil

import pytest
import torch

import MedFusionLib as mf
from MedFusionLib import WeightsError
from MedFusionLib.deep.weights import (PACKAGE_WEIGHTS, TRAIN_COMMANDS, file_sha256, read_weights,
                                       recorded_sha256, save_weights)

SHIPPED = sorted(glob.glob(os.path.join(PACKAGE_WEIGHTS, "*.pt")))


class _RunsCode:
    """Unpickling this calls ``os.system``-like code: here it writes a marker file."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_every_shipped_weight_file_matches_its_recorded_sha256():
    assert len(SHIPPED) >= 14
    for path in SHIPPED:
        recorded = recorded_sha256(path)
        assert recorded is not None, f"{path}: no sha256 in its JSON"
        assert recorded == file_sha256(path), f"{path} differs from its recorded SHA-256"


def test_a_changed_file_is_refused_before_it_is_read(tmp_path, monkeypatch):
    for name in ("ifcnn.pt", "ifcnn.json"):
        shutil.copy(os.path.join(PACKAGE_WEIGHTS, name), tmp_path / name)
    data = bytearray((tmp_path / "ifcnn.pt").read_bytes())
    data[len(data) // 2] ^= 0x01                                 # one bit inside the tensors
    (tmp_path / "ifcnn.pt").write_bytes(bytes(data))
    loaded = []
    monkeypatch.setattr(torch, "load", lambda *a, **k: loaded.append(a) or {})
    monkeypatch.setenv("MEDFUSION_WEIGHTS_DIR", str(tmp_path))
    with pytest.raises(WeightsError, match="changed or are corrupt") as error:
        mf.fuse([torch.rand(32, 32).numpy(), torch.rand(32, 32).numpy()], method="ifcnn")
    assert TRAIN_COMMANDS["ifcnn"] in str(error.value)
    assert loaded == []                                          # refused before torch.load ran


def test_saved_weights_record_their_digest_and_load_back(tmp_path):
    from MedFusionLib.deep.networks import IFCNNNet

    path = str(tmp_path / "ifcnn.pt")
    save_weights(path, "ifcnn", IFCNNNet(channels=8), {"seed": 0})
    with open(tmp_path / "ifcnn.json", encoding="utf-8") as fh:
        assert json.load(fh)["sha256"] == file_sha256(path)
    assert read_weights(path, "ifcnn")["arch"]["channels"] == 8


def test_a_weight_file_that_would_run_code_is_refused_without_running_it(tmp_path):
    marker = tmp_path / "ran"
    path = tmp_path / "ifcnn.pt"
    torch.save({"format": "medfusion-weights/1", "method": "ifcnn", "payload": _RunsCode(str(marker))}, path)
    with pytest.raises(WeightsError, match="cannot be read"):
        read_weights(str(path), "ifcnn")                         # no JSON: only weights_only protects
    assert not marker.exists()
    torch.load(path, weights_only=False)                         # the file really would run code
    assert marker.exists()


def test_a_training_checkpoint_that_would_run_code_is_refused_without_running_it(tmp_path):
    from MedFusionLib.deep.trainer import Trainer
    from MedFusionLib.errors import FusionError

    marker = tmp_path / "ran"
    path = tmp_path / "checkpoint.pt"
    torch.save({"format": "x", "evil": _RunsCode(str(marker))}, path)
    trainer = Trainer.__new__(Trainer)                           # only load_checkpoint is exercised
    with pytest.raises(FusionError, match="cannot be read"):
        trainer.load_checkpoint(str(path), [])
    assert not marker.exists()
