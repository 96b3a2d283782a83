"""What a hypergradient method is: a way to solve the inner problem so that the solution is a
differentiable function of the edge weights.

Every method returns the inner solution's parameters as tensors attached to the autograd graph
of ``edge_weight``; the outer loss is then an ordinary function of ``predict(params, w)``, and
``loss.backward()`` delivers the hypergradient to whatever produced ``w`` (edge logits, a G2G
network, ...). Methods differ only in *how* that dependence is differentiated.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import torch

from ..inner.base import InnerProblem
from ..inner.training import Monitor, Params, run_steps


@dataclass
class Solution:
    """An inner solution: parameters (differentiable in ``w`` as the method defines) and diagnostics.

    ``params`` is the tuple of tensors :meth:`~dgl_bilevel.inner.base.InnerProblem.predict`
    takes, ``inner_objective`` the objective's last value (NaN for methods that solve exactly),
    ``info`` what the method reports (differentiated steps, solver iterations and residuals),
    which the outer loop copies into its history.

    Example:
        >>> import dgl, torch
        >>> import dgl_bilevel as dbl
        >>> graph = dgl.to_bidirected(dgl.graph(([0, 1, 2, 3, 4], [1, 2, 3, 4, 5])))
        >>> data = dbl.BilevelData(graph, torch.eye(6), torch.tensor([0, 0, 0, 1, 1, 1]),
        ...                        v_in=[0, 5], v_out=[1, 4], val=[2], test=[3])
        >>> problem = dbl.LaplacianRegularization(loss="mse", steps=20).bind(data, graph)
        >>> solution = dbl.Unrolled().solve(problem, torch.ones(graph.num_edges()),
        ...                                 problem.starting_params(torch.Generator().manual_seed(0)))
        >>> [tuple(p.shape) for p in solution.params], solution.info["differentiated_steps"]
        ([(6, 2)], 20)
        >>> isinstance(solution.inner_objective, float)
        True
    """

    params: Params
    inner_objective: float
    info: dict = field(default_factory=dict)


class HypergradMethod:
    """Base class. Subclasses implement :meth:`solve`.

    ``solve`` returns a :class:`Solution` whose parameters are attached to the autograd graph of
    ``edge_weight``; :meth:`check` refuses an inner problem the method cannot serve (called by
    the outer loop before the first iteration); ``describe`` is what logs and result files record.

    Example:
        A method that solves the inner problem without a graph and then takes one differentiable
        step (a one-step truncation):

        >>> import dgl, torch
        >>> import dgl_bilevel as dbl
        >>> graph = dgl.to_bidirected(dgl.graph(([0, 1, 2, 3, 4], [1, 2, 3, 4, 5])))
        >>> data = dbl.BilevelData(graph, torch.eye(6), torch.tensor([0, 0, 0, 1, 1, 1]),
        ...                        v_in=[0, 5], v_out=[1, 4], val=[2], test=[3])
        >>> from dgl_bilevel.inner import run_steps
        >>> class OneStep(HypergradMethod):
        ...     name = "one_step"
        ...     def solve(self, problem, edge_weight, params, monitor=None):
        ...         params, state, _ = run_steps(problem, edge_weight, params, problem.steps - 1,
        ...                                      differentiable=False, monitor=monitor)
        ...         params, _, value = run_steps(problem, edge_weight, params, 1, differentiable=True,
        ...                                      state=state, monitor=monitor)
        ...         return Solution(params, value, {"differentiated_steps": 1})
        >>> OneStep()
        OneStep()
        >>> inner = dbl.TrainedGNN(dbl.models.SumAggGNN(6, 4, 2), steps=5)
        >>> result = dbl.fit(data, dbl.EdgeWeights(graph, init="constant"), inner, hypergrad=OneStep(),
        ...                  outer_steps=2, progress=False)
        >>> result.history[0]["differentiated_steps"], len(result.history)
        (1, 2)
    """

    name = "base"
    #: True for a method that starts each solve from the previous outer iteration's (per-run state:
    #: such runs neither stack nor run in lockstep).
    warm_start: bool = False
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


#: Kept under its historical name: the inner loop lives in :mod:`dgl_bilevel.inner.training`.
optimize = run_steps
