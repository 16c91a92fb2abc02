"""A step-based training loop shared by every learned method.

Training is a list of :class:`Phase` objects run in order (greedy layer-wise pre-training, the tasks of
sequential multi-task training, a fine-tuning stage...). A phase owns its optimisers and a ``step``
function that draws its own batch, computes its losses, steps its optimisers and returns the values to
log, so one phase may alternate several models and optimisers (a GAN's generator and discriminators).

The :class:`Trainer` adds what every method needs: seeding, a tqdm progress bar, a CSV loss log, periodic
checkpoints (all modules, all optimisers, the samplers' random state, extra state such as EWC) and exact
resumption from one, and a checkpoint on Ctrl-C.
"""

from __future__ import annotations

import csv
import os
import random
import time
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence

import numpy as np
import torch

from ..errors import FusionError

CHECKPOINT_FORMAT = "medfusion-checkpoint/1"


@dataclass
class Phase:
    """One stage of training.

    Attributes
    ----------
    name : str
        Shown in the progress bar and the log.
    steps : int
        Optimisation steps of this phase.
    step : callable
        ``step(step_in_phase) -> {name: float}``: one optimisation step; returns the values to log
        (``'loss'`` first by convention).
    optimisers : dict
        The phase's optimisers (checkpointed with it).
    setup : callable, optional
        Called when the phase starts or resumes (e.g. to freeze layers).
    finish : callable, optional
        Called once when the phase completes (e.g. to consolidate EWC); its effect must live in the
        trainer's ``extra`` state to survive a resume.
    columns : sequence of str
        Log columns this phase reports.
    """

    name: str
    steps: int
    step: Callable[[int], Dict[str, float]]
    optimisers: Dict[str, torch.optim.Optimizer] = field(default_factory=dict)
    setup: Optional[Callable[[], None]] = None
    finish: Optional[Callable[[], None]] = None
    columns: Sequence[str] = ("loss",)


@dataclass
class TrainResult:
    steps: int
    seconds: float
    last: Dict[str, float]


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2 ** 32))
    torch.manual_seed(seed)


class Trainer:
    """Runs phases with logging and checkpoints.

    Parameters
    ----------
    method : str
        Method name (recorded in checkpoints; a checkpoint of another method is refused).
    modules : dict of nn.Module
        Everything with trainable state.
    samplers : dict
        Objects with ``state()`` / ``set_state()`` (random patch samplers).
    extra : dict
        Objects with ``state_dict()`` / ``load_state_dict()`` (e.g. :class:`~.ewc.EWC`).
    log_path : str, optional
        CSV loss log (step, phase, elapsed seconds, then the phases' columns), one row at every multiple
        of ``log_every`` steps (and at the end of each phase) with the mean of the values since the last row.
    checkpoint_path : str, optional
        Where checkpoints are written (every ``checkpoint_every`` steps, at the end, and on Ctrl-C).
    signature : dict, optional
        The run's settings (seed, steps, options...): stored in checkpoints, and a checkpoint with another
        signature is refused on resume.
    """

    def __init__(self, method: str, modules: Dict[str, torch.nn.Module], *, samplers: Optional[dict] = None,
                 extra: Optional[dict] = None, log_path: Optional[str] = None, checkpoint_path: Optional[str] = None,
                 checkpoint_every: int = 0, log_every: int = 10, show_progress: bool = True,
                 signature: Optional[dict] = None):
        self.method = method
        self.signature = dict(signature or {})
        self.modules = modules
        self.samplers = samplers or {}
        self.extra = extra or {}
        self.log_path = log_path
        self.checkpoint_path = checkpoint_path
        self.checkpoint_every = int(checkpoint_every or 0)
        self.log_every = max(1, int(log_every))
        self.show_progress = show_progress
        self.step = 0
        self.elapsed = 0.0
        self.finished: List[str] = []     # phases whose ``finish`` has run

    # --- checkpoints ----------------------------------------------------------------------------------------
    def _state(self, phases: Sequence[Phase]) -> dict:
        return {"format": CHECKPOINT_FORMAT, "method": self.method, "signature": self.signature,
                "step": self.step, "elapsed": self.elapsed,
                "modules": {k: m.state_dict() for k, m in self.modules.items()},
                "optimisers": {f"{p.name}/{k}": o.state_dict() for p in phases for k, o in p.optimisers.items()},
                "samplers": {k: s.state() for k, s in self.samplers.items()},
                "extra": {k: e.state_dict() for k, e in self.extra.items()},
                "finished": list(self.finished), "torch_rng": torch.get_rng_state()}

    def save_checkpoint(self, phases: Sequence[Phase], path: Optional[str] = None) -> Optional[str]:
        path = path or self.checkpoint_path
        if not path:
            return None
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        from ..atomic import replacing

        with replacing(path) as tmp:     # a full disk or a second Ctrl-C leaves the last good checkpoint
            try:
                torch.save(self._state(phases), tmp)
            except RuntimeError as error:  # torch reports a failed write (e.g. a full disk) this way
                raise FusionError(f"cannot write checkpoint {path!r}: {error} (is the disk full?)") from None
        return path

    def load_checkpoint(self, path: str, phases: Sequence[Phase]) -> None:
        if not os.path.isfile(path):
            raise FusionError(f"checkpoint {path!r} does not exist")
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)   # never runs code from the file
        except Exception as exc:
            raise FusionError(f"checkpoint {path!r} cannot be read ({type(exc).__name__}: {exc})") from None
        if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
            raise FusionError(f"{path!r} is not a medfusion training checkpoint")
        if state["method"] != self.method:
            raise FusionError(f"checkpoint {path!r} is of method {state['method']!r}, not {self.method!r}")
        if state.get("signature", {}) != self.signature:
            theirs = state.get("signature", {})
            differ = sorted(k for k in set(theirs) | set(self.signature) if theirs.get(k) != self.signature.get(k))
            raise FusionError(f"checkpoint {path!r} was written by a run with other settings ({', '.join(differ)}); "
                              f"resume with the options of that run")
        try:
            for k, m in self.modules.items():
                m.load_state_dict(state["modules"][k])
            for p in phases:
                for k, o in p.optimisers.items():
                    key = f"{p.name}/{k}"
                    if key in state["optimisers"]:
                        o.load_state_dict(state["optimisers"][key])
        except (KeyError, RuntimeError, ValueError) as exc:
            raise FusionError(f"checkpoint {path!r} does not fit this training run (different options or "
                              f"network?): {exc}") from None
        for k, s in self.samplers.items():
            s.set_state(state["samplers"][k])
        for k, e in self.extra.items():
            e.load_state_dict(state["extra"][k])
        torch.set_rng_state(state["torch_rng"])
        self.step = int(state["step"])
        self.finished = list(state.get("finished", []))
        self.elapsed = float(state.get("elapsed", 0.0))

    # --- the loop -------------------------------------------------------------------------------------------
    def _open_log(self, columns: List[str]):
        if not self.log_path:
            return None, None
        os.makedirs(os.path.dirname(os.path.abspath(self.log_path)), exist_ok=True)
        header = ["step", "phase", "elapsed_s"] + columns
        kept = []
        if self.step > 0 and os.path.exists(self.log_path):
            # Resuming: keep the rows up to the checkpoint, drop any logged after it.
            with open(self.log_path, newline="", encoding="utf-8") as fh:
                kept = [r for r in csv.DictReader(fh) if r.get("step", "").isdigit() and int(r["step"]) <= self.step]
        fh = open(self.log_path, "w", newline="", encoding="utf-8")
        writer = csv.DictWriter(fh, fieldnames=header, extrasaction="ignore")
        writer.writeheader()
        for row in kept:
            writer.writerow(row)
        fh.flush()
        return fh, writer

    def run(self, phases: Sequence[Phase], resume: Optional[str] = None) -> TrainResult:
        """Run ``phases`` (from the checkpoint ``resume`` if given) and return the step count, wall time and
        the last logged values."""
        from tqdm import tqdm

        if resume:
            self.load_checkpoint(resume, phases)
        total = sum(p.steps for p in phases)
        columns: List[str] = []
        for p in phases:
            columns += [c for c in p.columns if c not in columns]
        fh, writer = self._open_log(columns)
        bar = tqdm(total=total, initial=min(self.step, total), desc=f"training {self.method}",
                   disable=not self.show_progress, dynamic_ncols=True)
        last: Dict[str, float] = {}
        start = time.perf_counter() - self.elapsed
        try:
            offset = 0
            for phase in phases:
                end = offset + phase.steps
                if self.step >= end:          # completed before the checkpoint
                    if phase.finish is not None and phase.name not in self.finished:
                        phase.finish()        # interrupted between its last step and its finish
                        self.finished.append(phase.name)
                    offset = end
                    continue
                for m in self.modules.values():
                    m.train()
                if phase.setup is not None:
                    phase.setup()
                sums: Dict[str, float] = {}
                count = 0
                while self.step < end:
                    values = phase.step(self.step - offset)
                    self.step += 1
                    count += 1
                    for k, v in values.items():
                        sums[k] = sums.get(k, 0.0) + float(v)
                    if self.step % self.log_every == 0 or self.step == end:   # rows at fixed steps, resumed or not
                        last = {k: v / count for k, v in sums.items()}
                        self.elapsed = time.perf_counter() - start
                        if writer is not None:
                            writer.writerow({"step": self.step, "phase": phase.name, "elapsed_s": f"{self.elapsed:.1f}",
                                             **{k: f"{v:.6g}" for k, v in last.items()}})
                            fh.flush()
                        bar.set_postfix_str(f"{phase.name} " + " ".join(f"{k}={v:.4g}" for k, v in list(last.items())[:3]),
                                            refresh=False)
                        sums, count = {}, 0
                    bar.update(1)
                    if self.checkpoint_every and self.step % self.checkpoint_every == 0 and self.step < total:
                        self.elapsed = time.perf_counter() - start
                        self.save_checkpoint(phases)
                if phase.finish is not None:
                    phase.finish()
                    self.finished.append(phase.name)
                offset = end
            self.elapsed = time.perf_counter() - start
            self.save_checkpoint(phases)
        except KeyboardInterrupt:
            self.elapsed = time.perf_counter() - start
            saved = self.save_checkpoint(phases)
            if saved:
                bar.write(f"interrupted at step {self.step}; checkpoint written to {saved} (resume with --resume)")
            raise
        finally:
            bar.close()
            if fh is not None:
                fh.close()
        return TrainResult(steps=self.step, seconds=self.elapsed, last=last)
