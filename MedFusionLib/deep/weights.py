"""Weight files of the learned methods: saving, loading, checking, device selection.

A weight file is a ``torch.save`` of a plain dictionary (read back with ``weights_only=True``, so loading
never runs code from the file and never touches a network)::

    {"format": "medfusion-weights/1", "method": "ifcnn", "network": "IFCNNNet",
     "arch": {...constructor arguments...}, "state_dict": {...tensors...}, "meta": {...}}

``meta`` records how the weights were made (command, seed, steps, data, wall time, machine); a JSON copy
of it is written beside the ``.pt`` file, with the ``.pt`` file's SHA-256 (``"sha256"``). Loading checks
the file against that digest before unpickling anything: a changed, truncated or swapped file is a
:class:`WeightsError` that names the training command. A ``.pt`` file without its JSON (e.g. copied
alone into ``MEDFUSION_WEIGHTS_DIR``) is read without the digest check; every shipped file has one. Shipped weights live in ``MedFusionLib/weights/<method>.pt``;
the environment variable ``MEDFUSION_WEIGHTS_DIR`` points the library at another folder (e.g. weights
fine-tuned on a site's own data).
"""

from __future__ import annotations

import json
import os
import platform
import threading
from typing import Any, Dict, Optional, Tuple

import torch

from ..digests import file_sha256
from ..errors import FusionError, FusionInputError, WeightsError
from ..families._learned import TRAINABLE
from . import networks_adversarial, networks_encoder_decoder  # noqa: F401  (register their networks)
from .networks import NETWORKS

FORMAT = "medfusion-weights/1"
WEIGHTS_ENV = "MEDFUSION_WEIGHTS_DIR"
PACKAGE_WEIGHTS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "weights")

#: The command that reproduced each shipped weight file (run from the repository root, with the AANLIB
#: development set beside the checkout). docs/models.md gives the data, seed and wall time of each.
#: Every trainable network has the same form of command (its recipe's defaults are the shipped run).
TRAIN_COMMANDS: Dict[str, str] = {
    name: f"medfusion train {name} --data ../shared/data/aanlib-dev --out MedFusionLib/weights/{name}.pt"
    for name in TRAINABLE}


def weights_dir() -> str:
    """Folder the learned methods read their weights from (``$MEDFUSION_WEIGHTS_DIR`` or the package's)."""
    return os.environ.get(WEIGHTS_ENV) or PACKAGE_WEIGHTS


def weights_path(method: str) -> str:
    return os.path.join(weights_dir(), f"{method}.pt")


def train_command(method: str) -> str:
    return TRAIN_COMMANDS.get(method, f"medfusion train {method} --data DIR --out {weights_path(method)}")


def _missing_message(method: str, path: str, why: str) -> str:
    return (f"weights of {method!r} {why} ({path}). Train them with:\n    {train_command(method)}\n"
            f"(or set {WEIGHTS_ENV} to a folder holding {method}.pt)")


# --- devices ----------------------------------------------------------------------------------------------
DEVICE_CHOICES = ("auto", "cpu", "cuda")


def resolve_device(choice: str = "auto") -> torch.device:
    """``auto``: the GPU when PyTorch sees one, else the CPU; ``cuda`` without a usable GPU is an error."""
    choice = str(choice or "auto").lower()
    if choice not in DEVICE_CHOICES:
        raise FusionInputError(f"device must be one of {', '.join(DEVICE_CHOICES)}; got {choice!r}")
    if choice == "cpu":
        return torch.device("cpu")
    if torch.cuda.is_available():
        return torch.device("cuda")
    if choice == "cuda":
        raise FusionInputError("device 'cuda' was requested but PyTorch sees no CUDA GPU; use device='auto' or "
                               "'cpu' (or install a CUDA build of PyTorch)")
    return torch.device("cpu")


# --- saving -----------------------------------------------------------------------------------------------
def machine_description() -> str:
    cpu = platform.processor() or platform.machine()
    return f"{platform.system()} {cpu}, {os.cpu_count()} CPU threads, torch {torch.__version__}"


def save_weights(path: str, method: str, model: torch.nn.Module, meta: Optional[Dict[str, Any]] = None) -> None:
    """Write ``model`` (state dict + ``model.arch``) for ``method`` to ``path`` atomically, and its
    metadata as JSON beside it (``path`` with ``.json``)."""
    network = type(model).__name__
    if network not in NETWORKS:
        raise ValueError(f"{network} is not a registered network")
    payload = {"format": FORMAT, "method": method, "network": network, "arch": dict(model.arch),
               "state_dict": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
               "meta": dict(meta or {})}
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    root, _ = os.path.splitext(path)
    from ..atomic import replacing

    # Both files are written under temporary names first and moved into place only once both are complete,
    # so an error (a full disk, Ctrl-C) leaves neither a partial file nor a new .pt with an old digest.
    with replacing(path) as tmp_weights, replacing(root + ".json") as tmp_info:
        try:
            torch.save(payload, tmp_weights)
        except RuntimeError as error:      # torch reports a failed write (e.g. a full disk) this way
            raise FusionError(f"cannot write {path!r}: {error} (is the disk full?)") from None
        info = {"method": method, "network": network, "arch": payload["arch"],
                "parameters": int(sum(v.numel() for v in payload["state_dict"].values())), **payload["meta"],
                "sha256": file_sha256(tmp_weights)}
        with open(tmp_info, "w", encoding="utf-8") as fh:
            json.dump(info, fh, indent=2, default=str)
            fh.write("\n")


def recorded_sha256(path: str) -> Optional[str]:
    """The SHA-256 recorded in the JSON beside a weight file, or None when there is no JSON or no digest."""
    info_path = os.path.splitext(path)[0] + ".json"
    if not os.path.isfile(info_path):
        return None
    try:
        with open(info_path, encoding="utf-8") as fh:
            value = json.load(fh).get("sha256")
    except (OSError, ValueError, AttributeError):
        return None
    return value if isinstance(value, str) else None


# --- loading ----------------------------------------------------------------------------------------------
def read_weights(path: str, method: str) -> Dict[str, Any]:
    """Read and check a weight file; :class:`WeightsError` (naming the training command) when it is
    missing, differs from the SHA-256 recorded beside it, is unreadable, for another method, or not of
    this format. Loading never runs code from the file (``weights_only=True``)."""
    if not os.path.isfile(path):
        raise WeightsError(_missing_message(method, path, "are missing"))
    expected = recorded_sha256(path)
    if expected is not None:
        actual = file_sha256(path)
        if actual != expected:
            raise WeightsError(_missing_message(
                method, path, f"were changed or are corrupt (SHA-256 {actual[:12]}..., recorded "
                              f"{expected[:12]}... in {os.path.basename(os.path.splitext(path)[0])}.json)"))
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated, not a torch file, pickled code...: all unreadable for us
        raise WeightsError(_missing_message(method, path, f"cannot be read ({type(exc).__name__}: {exc})")) from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise WeightsError(_missing_message(method, path, f"are not a {FORMAT} file"))
    if payload.get("method") != method:
        raise WeightsError(_missing_message(method, path, f"hold weights of {payload.get('method')!r}, not {method!r}"))
    if payload.get("network") not in NETWORKS or not isinstance(payload.get("arch"), dict) \
            or not isinstance(payload.get("state_dict"), dict):
        raise WeightsError(_missing_message(method, path, "describe no known network"))
    return payload


def build_network(payload: Dict[str, Any], method: str, path: str) -> torch.nn.Module:
    """The network a weight file describes, with its weights (CPU, eval mode)."""
    try:
        model = NETWORKS[payload["network"]](**payload["arch"])
    except TypeError as exc:
        raise WeightsError(_missing_message(method, path, f"have an unknown architecture ({exc})")) from None
    try:
        model.load_state_dict(payload["state_dict"], strict=True)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()
        raise WeightsError(_missing_message(method, path, f"do not fit the network ({first[0] if first else exc})")) from None
    for name, tensor in model.state_dict().items():
        if tensor.is_floating_point() and not torch.isfinite(tensor).all():
            raise WeightsError(_missing_message(method, path, f"contain non-finite values in {name}"))
    return model.eval()


_CACHE: Dict[Tuple, torch.nn.Module] = {}
_CACHE_LOCK = threading.Lock()


def load_model(method: str, device: Optional[torch.device] = None, path: Optional[str] = None) -> torch.nn.Module:
    """The network of ``method`` with its weights, in eval mode on ``device``; cached per file version
    and device, so repeated fusions (slice batches) load once."""
    path = path or weights_path(method)
    device = device or torch.device("cpu")
    try:
        stat = os.stat(path)
        key = (method, os.path.abspath(path), stat.st_mtime_ns, stat.st_size, str(device))
    except OSError:
        key = None
    with _CACHE_LOCK:
        if key is not None and key in _CACHE:
            return _CACHE[key]
    # Building the network draws its (overwritten) initial weights from torch's global generator; keep
    # that stream untouched so a training run seeded before loading its feature network is reproducible
    # whether or not the network was already cached.
    with torch.random.fork_rng(devices=[]):
        model = build_network(read_weights(path, method), method, path).to(device)
    for p in model.parameters():
        p.requires_grad_(False)
    if key is not None:
        with _CACHE_LOCK:
            for old in [k for k in _CACHE if k[:2] == key[:2] and k != key]:
                del _CACHE[old]     # a rewritten file replaces its older versions
            _CACHE[key] = model
    return model


def check_weights(method: str) -> None:
    """Raise :class:`WeightsError` now when ``method``'s weights are missing or corrupt (loads and caches
    them on the CPU)."""
    load_model(method, torch.device("cpu"))


def weights_meta(method: str) -> Dict[str, Any]:
    """The metadata recorded with ``method``'s weights."""
    return dict(read_weights(weights_path(method), method).get("meta", {}))
