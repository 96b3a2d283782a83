"""What a hypergradient method is: a way to solve the inner problem so that the solution is a
differentiable function of the edge weights.

Every method returns the inner solution's parameters as tensors attached to the autograd graph
of ``edge_weight``; the outer loss is then an ordinary function of ``predict(params, w)``, and
``loss.backward()`` delivers the hypergradient to whatever produced ``w`` (edge logits, a G2G
network, ...). Methods differ only in *how* that dependence is differentiated.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Optional

import torch
import torchopt

from ..inner.base import InnerProblem, Params

#: Called with the (detached) inner iterate after every inner step, e.g. to track validation accuracy.
Monitor = Callable[[Params], None]


@dataclass
class Solution:
    """An inner solution: parameters (differentiable in ``w`` as the method defines) and diagnostics."""

    params: Params
    inner_objective: float
    info: dict = field(default_factory=dict)


class HypergradMethod:
    """Base class. Subclasses implement :meth:`solve`."""

    name = "base"
    _previous: object = None  # warm-start state of methods that keep one

    def solve(self, problem: InnerProblem, edge_weight: torch.Tensor, params: Params, monitor: Optional[Monitor] = None) -> Solution:
        """Solve the inner problem from ``params``; ``monitor`` sees every inner iterate."""
        raise NotImplementedError

    def check(self, problem: InnerProblem) -> None:
        """Raise :class:`~dgl_bilevel.errors.ConfigError` if this method cannot serve ``problem``."""

    def describe(self) -> dict:
        return {"hypergrad": self.name}

    def state_dict(self) -> dict:
        """Warm-start state carried between outer iterations (saved in checkpoints)."""
        return {"previous": self._previous}

    def load_state_dict(self, state: dict) -> None:
        if state.get("previous") is not None:
            self._previous = state["previous"]

    def __repr__(self) -> str:
        opts = ", ".join(f"{k}={v}" for k, v in self.describe().items() if k != "hypergrad")
        return f"{type(self).__name__}({opts})"


def optimize(
    problem: InnerProblem,
    edge_weight: torch.Tensor,
    params: Params,
    steps: int,
    *,
    differentiable: bool,
    state: Optional[object] = None,
    monitor: Optional[Monitor] = None,
) -> tuple[Params, object, float]:
    """Run ``steps`` updates of ``problem.optimizer`` on ``problem.objective``.

    With ``differentiable=True`` every update stays on the autograd graph (functional,
    ``inplace=False``), so the result can be differentiated through the whole trajectory.
    Otherwise updates happen in place under ``no_grad`` against a detached ``w``: the fast
    path for implicit and truncated methods. Returns ``(params, optimizer_state, last_objective)``.
    """
    opt = problem.optimizer
    if state is None:
        state = opt.init(params)
    value = float("nan")
    if differentiable:
        with torch.enable_grad():
            for _ in range(steps):
                loss = problem.objective(params, edge_weight)
                grads = torch.autograd.grad(loss, params, create_graph=True)
                updates, state = opt.update(grads, state, params=params, inplace=False)
                params = tuple(torchopt.apply_updates(params, updates, inplace=False))
                value = loss.detach()
                if monitor is not None:
                    monitor(tuple(p.detach() for p in params))
        return params, state, float(value)
    if hasattr(problem, "train"):  # problems with their own (e.g. mini-batch) training loop
        return problem.train(params, edge_weight, steps, monitor)
    weight = edge_weight.detach()
    params = tuple(p.detach().requires_grad_(True) for p in params)
    for _ in range(steps):
        with torch.enable_grad():
            loss = problem.objective(params, weight)
            grads = torch.autograd.grad(loss, params)
        with torch.no_grad():
            updates, state = opt.update(grads, state, params=params, inplace=True)
            torchopt.apply_updates(params, updates, inplace=True)
        value = loss.detach()
        if monitor is not None:
            monitor(tuple(p.detach() for p in params))
    return params, state, float(value)
