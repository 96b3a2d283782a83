"""Differentiating through the inner optimiser's trajectory: full, truncated, or not at all."""
from __future__ import annotations

from typing import Optional

import torch

from ..errors import ConfigError
from ..inner.base import InnerProblem, Params
from .base import HypergradMethod, Monitor, Solution, optimize


class Unrolled(HypergradMethod):
    """Back-propagate through all ``problem.steps`` inner updates (exact for the finite trajectory).

    Memory grows linearly with the number of steps: every intermediate iterate is kept.
    """

    name = "unrolled"

    def solve(self, problem: InnerProblem, edge_weight: torch.Tensor, params: Params, monitor: Optional[Monitor] = None) -> Solution:
        params, _, value = optimize(problem, edge_weight, params, problem.steps, differentiable=True, monitor=monitor)
        return Solution(params, value, {"differentiated_steps": problem.steps})


class Truncated(HypergradMethod):
    """Run all but the last ``k`` inner steps without a graph, then back-propagate through ``k``.

    ``k = steps`` is full unrolling; ``k = 0`` is the first-order approximation (only the
    direct dependence of the predictions on ``w``). Memory is that of ``k`` steps.
    """

    name = "truncated"

    def __init__(self, k: int = 10) -> None:
        if k < 0:
            raise ConfigError(f"truncation length k must be >= 0, got {k}")
        self.k = int(k)

    def solve(self, problem: InnerProblem, edge_weight: torch.Tensor, params: Params, monitor: Optional[Monitor] = None) -> Solution:
        k = min(self.k, problem.steps)
        params, state, value = optimize(problem, edge_weight, params, problem.steps - k, differentiable=False, monitor=monitor)
        if k:
            params, _, value = optimize(problem, edge_weight, params, k, differentiable=True, state=state, monitor=monitor)
        return Solution(params, value, {"differentiated_steps": k})

    def describe(self) -> dict:
        return {"hypergrad": self.name, "k": self.k}


class FirstOrder(Truncated):
    """Ignore how the inner solution depends on ``w`` (``Truncated(k=0)``): cheapest, biased."""

    name = "first_order"

    def __init__(self) -> None:
        super().__init__(k=0)

    def describe(self) -> dict:
        return {"hypergrad": self.name}
