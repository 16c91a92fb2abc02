"""Elastic weight consolidation (Kirkpatrick et al., PNAS 2017) for sequential multi-task training.

After each task, :meth:`EWC.consolidate` estimates the diagonal Fisher information of every parameter
(the mean over samples of the squared gradient of each sample's loss of that task) and stores a copy of the parameters
(theta*). While later tasks train, :meth:`EWC.penalty` adds

    lambda / 2 * sum_tasks sum_i F_i (theta_i - theta*_i)^2

to their loss, so parameters important for earlier tasks move little. FusionDN and U2Fusion train one
network on several fusion tasks in sequence this way.

References
----------
.. [1] J. Kirkpatrick et al., "Overcoming catastrophic forgetting in neural networks", PNAS 114(13):3521-3526, 2017.
.. [2] H. Xu, J. Ma, J. Jiang, X. Guo, H. Ling, "U2Fusion: A unified unsupervised image fusion network",
       IEEE TPAMI 44(1):502-518, 2022 (online 2020).
"""

from __future__ import annotations

from typing import Callable, Dict, Iterable, List

import torch


class EWC:
    """Accumulated Fisher information and anchor parameters of the tasks trained so far.

    Parameters
    ----------
    weight : float
        lambda, the strength of the consolidation penalty.
    """

    def __init__(self, weight: float = 1.0):
        self.weight = float(weight)
        self.tasks: List[Dict[str, Dict[str, torch.Tensor]]] = []

    def consolidate(self, model: torch.nn.Module, loss_fn: Callable[[object], torch.Tensor],
                    batches: Iterable[object], name: str = "") -> Dict[str, torch.Tensor]:
        """Estimate the diagonal Fisher information of ``model`` on ``batches`` and anchor the current
        parameters. Returns the Fisher diagonal.

        ``loss_fn(batch)`` gives the task loss of a batch. A tensor batch ``(B, ...)`` is split into its
        ``B`` samples and the Fisher diagonal is the mean over samples of the squared gradient of each
        sample's loss, as in Kirkpatrick et al. (one sample at a time). The gradient of a whole batch's
        mean loss is not an estimate of it: at the end of a task that gradient is close to zero, while
        the per-sample gradients are not. Other batch objects are used whole."""
        params = {n: p for n, p in model.named_parameters() if p.requires_grad}
        fisher = {n: torch.zeros_like(p) for n, p in params.items()}
        count = 0
        was_training = model.training
        for batch in batches:
            samples = ([batch[i:i + 1] for i in range(batch.shape[0])]
                       if isinstance(batch, torch.Tensor) and batch.dim() > 0 else [batch])
            for sample in samples:
                model.zero_grad(set_to_none=True)
                loss = loss_fn(sample)
                grads = torch.autograd.grad(loss, list(params.values()), allow_unused=True)
                for (n, _), g in zip(params.items(), grads):
                    if g is not None:
                        fisher[n] += g.detach() ** 2
                count += 1
        model.train(was_training)
        if count == 0:
            raise ValueError("EWC.consolidate needs at least one batch")
        for n in fisher:
            fisher[n] /= count
        anchor = {n: p.detach().clone() for n, p in params.items()}
        self.tasks.append({"name": name, "fisher": fisher, "anchor": anchor})
        return fisher

    def penalty(self, model: torch.nn.Module) -> torch.Tensor:
        """``lambda / 2 * sum F (theta - theta*)^2`` over the consolidated tasks (0 before the first)."""
        device = next(model.parameters()).device
        total = torch.zeros((), device=device)
        if not self.tasks:
            return total
        params = dict(model.named_parameters())
        for task in self.tasks:
            for n, f in task["fisher"].items():
                if n in params:
                    total = total + (f.to(device) * (params[n] - task["anchor"][n].to(device)) ** 2).sum()
        return 0.5 * self.weight * total

    # --- checkpointing ----------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {"weight": self.weight,
                "tasks": [{"name": t["name"], "fisher": {k: v.cpu() for k, v in t["fisher"].items()},
                           "anchor": {k: v.cpu() for k, v in t["anchor"].items()}} for t in self.tasks]}

    def load_state_dict(self, state: dict) -> None:
        self.weight = float(state["weight"])
        self.tasks = [{"name": t["name"], "fisher": dict(t["fisher"]), "anchor": dict(t["anchor"])}
                      for t in state["tasks"]]
