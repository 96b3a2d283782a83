"""Differentiating through the inner optimiser's trajectory: full, truncated, or not at all."""
from __future__ import annotations

from typing import Optional

import torch

from ..errors import ConfigError
from ..inner.base import InnerProblem, Params
from .base import HypergradMethod, Monitor, Solution, optimize
from .checkpointed import unroll_checkpointed
from .recorded import unroll_recorded


def _check_trajectory(method: HypergradMethod, problem: InnerProblem, steps: int) -> None:
    if steps and not problem.differentiable_trajectory:
        raise ConfigError(f"{type(problem).__name__} trains on random mini-batches and cannot be unrolled; "
                          "use the implicit or first-order hypergradient")


def uses_hand_derivatives(problem: InnerProblem, checkpoint: bool) -> bool:
    """True when the lean unroll runs on the problem's own second derivatives
    (:mod:`~dgl_bilevel.hypergrad.recorded`): declared by the problem, with one of the library's
    elementwise optimizers (their update reads only the gradient and the state)."""
    return checkpoint and problem.second_order is not None and problem.optimizer.elementwise


def _reverse(problem: InnerProblem, checkpoint: bool) -> str:
    """How the trajectory is differentiated, for result files: hand-derived, recomputed or autograd's graph."""
    if uses_hand_derivatives(problem, checkpoint):
        return "hand-derived"
    return "checkpointed" if checkpoint and not problem.stochastic_objective else "autograd"


def _differentiable_steps(problem, edge_weight, params, steps, state, monitor, checkpoint):
    # a random objective (graphs redrawn at every step) is differentiated on autograd's graph: recomputing a step
    # in the backward pass would draw other graphs
    if checkpoint and steps > 0 and edge_weight.requires_grad and not problem.stochastic_objective:
        if uses_hand_derivatives(problem, checkpoint):
            return unroll_recorded(problem, edge_weight, params, steps, state=state, monitor=monitor)
        return unroll_checkpointed(problem, edge_weight, params, steps, state=state, monitor=monitor)
    return optimize(problem, edge_weight, params, steps, differentiable=True, state=state, monitor=monitor)


class Unrolled(HypergradMethod):
    """Back-propagate through all ``problem.steps`` inner updates (exact for the finite trajectory).

    Args:
        checkpoint: the lean unroll (default). When the inner problem declares hand-derived
            second derivatives (``second_order``: the paper's GNN, :class:`~dgl_bilevel.models.SumAggGNN`,
            and the Laplacian problem, trained with the library's Adam or SGD), each step keeps its gradient and a compact
            record of its pass (or, on graphs where the records would pass 512 MiB, its
            parameters, to recompute them) and the backward pass takes one tangent pass per step
            (:mod:`~dgl_bilevel.hypergrad.recorded`). Otherwise each step's
            parameters and optimizer state are kept and one step at a time is recomputed in the
            backward pass (:mod:`~dgl_bilevel.hypergrad.checkpointed`): memory O(steps x
            parameters) instead of O(steps x activations), for about one extra gradient evaluation
            per step. ``False`` keeps the whole trajectory on torch's autograd graph. All three
            give the same hypergradient up to rounding.
    """

    name = "unrolled"

    def __init__(self, checkpoint: bool = True) -> None:
        self.checkpoint = bool(checkpoint)

    def check(self, problem: InnerProblem) -> None:
        _check_trajectory(self, problem, problem.steps)

    def solve(self, problem: InnerProblem, edge_weight: torch.Tensor, params: Params, monitor: Optional[Monitor] = None) -> Solution:
        self.check(problem)
        params, _, value = _differentiable_steps(problem, edge_weight, params, problem.steps, None, monitor, self.checkpoint)
        reverse = _reverse(problem, self.checkpoint and edge_weight.requires_grad)
        return Solution(params, value, {"differentiated_steps": problem.steps, "reverse": reverse})

    def describe(self) -> dict:
        return {"hypergrad": self.name, "checkpoint": self.checkpoint}


class Truncated(HypergradMethod):
    """Run all but the last ``k`` inner steps without a graph, then back-propagate through ``k``.

    ``k = steps`` is full unrolling; ``k = 0`` is the first-order approximation (only the
    direct dependence of the predictions on ``w``). Memory is that of ``k`` steps.
    """

    name = "truncated"

    def __init__(self, k: int = 10, checkpoint: bool = True) -> None:
        if k < 0:
            raise ConfigError(f"truncation length k must be >= 0, got {k}")
        self.k = int(k)
        self.checkpoint = bool(checkpoint)

    def check(self, problem: InnerProblem) -> None:
        k = min(self.k, problem.steps)
        if k == 0 and not problem.predictions_use_weights:
            raise ConfigError(
                f"{type(self).__name__} differentiates only the predictions' direct dependence on the edge weights, "
                f"and {type(problem).__name__}'s predictions have none: its hypergradient is exactly zero. Use a "
                "method that differentiates the inner solution (adjoint, implicit, unrolled, or truncated with k > 0)")
        _check_trajectory(self, problem, k)

    def solve(self, problem: InnerProblem, edge_weight: torch.Tensor, params: Params, monitor: Optional[Monitor] = None) -> Solution:
        self.check(problem)
        k = min(self.k, problem.steps)
        params, state, value = optimize(problem, edge_weight, params, problem.steps - k, differentiable=False, monitor=monitor)
        if k:
            params, _, value = _differentiable_steps(problem, edge_weight, params, k, state, monitor, self.checkpoint)
        reverse = _reverse(problem, self.checkpoint and edge_weight.requires_grad) if k else None
        return Solution(params, value, {"differentiated_steps": k, "reverse": reverse})

    def describe(self) -> dict:
        return {"hypergrad": self.name, "k": self.k, "checkpoint": self.checkpoint}


class FirstOrder(Truncated):
    """Ignore how the inner solution depends on ``w`` (``Truncated(k=0)``): cheapest, biased."""

    name = "first_order"

    def __init__(self) -> None:
        super().__init__(k=0)

    def describe(self) -> dict:
        return {"hypergrad": self.name}
