"""Differentiating through the inner optimiser's trajectory: full, truncated, or not at all.

How the trajectory is differentiated -- the reverse engine -- is one option, ``reverse``
(``--reverse-engine``), with the names a solution's ``info["reverse"]`` reports:

* ``"autograd"`` -- every step on torch's autograd graph (memory O(steps x activations));
* ``"checkpointed"`` -- each step's parameters and optimizer state kept, the steps recomputed one
  at a time in the backward pass (:mod:`~dgl_bilevel.hypergrad.checkpointed`);
* ``"hand-derived"`` -- the inner problem's written-out derivatives
  (:attr:`~dgl_bilevel.inner.base.InnerProblem.derivatives`) and an elementwise optimizer: one
  tangent pass per step over a compact record of it (:mod:`~dgl_bilevel.hypergrad.recorded`);
* ``"auto"`` (the default) -- hand-derived where the problem qualifies
  (:func:`hand_derived_refusal`), else checkpointed, else (a random objective) autograd.

All give the same hypergradient up to rounding.
"""
from __future__ import annotations

import logging
import warnings
from typing import Optional

import torch

from ..errors import ConfigError
from ..inner.base import InnerProblem, Params
from .base import HypergradMethod, Monitor, Solution, optimize
from .checkpointed import unroll_checkpointed
from .recorded import unroll_recorded

logger = logging.getLogger(__name__)

#: The reverse engines a trajectory method takes (``--reverse-engine``); see the module docstring.
REVERSE_ENGINES = ("auto", "autograd", "checkpointed", "hand-derived")


def _check_trajectory(method: HypergradMethod, problem: InnerProblem, steps: int) -> None:
    if steps and not problem.differentiable_trajectory:
        raise ConfigError(f"{type(problem).__name__} trains on random mini-batches and cannot be unrolled; "
                          "use the implicit or first-order hypergradient")


def hand_derived_refusal(problem: InnerProblem) -> Optional[str]:
    """Why ``problem``'s trajectory cannot be differentiated on hand-derived derivatives; None when
    it can: the problem declares them and its optimizer acts elementwise (the update reads only the
    gradient and the state, so the parameters can be one flat vector)."""
    if problem.derivatives is None:
        return problem.why_no_derivatives() or f"{type(problem).__name__}'s derivatives are None"
    if problem.stochastic_objective:
        return "its objective is random (a step cannot be replayed)"
    if not problem.optimizer.elementwise:
        return ("its inner optimizer is not known to act elementwise (the library's Adam and SGD are; a torchopt "
                "transform passed as it is is not assumed to)")
    return None


def reverse_engine(problem: InnerProblem, requested: str) -> str:
    """The engine that differentiates ``problem``'s trajectory: ``requested``, or what ``"auto"``
    chooses (its reason for passing over the hand-derived engine is logged at debug level)."""
    if requested != "auto":
        return requested
    reason = hand_derived_refusal(problem)
    if reason is None:
        return "hand-derived"
    fallback = "autograd" if problem.stochastic_objective else "checkpointed"
    logger.debug("reverse engine auto: %s, not hand-derived (%s)", fallback, reason)
    return fallback


def check_reverse_engine(requested: str, problem: InnerProblem) -> None:
    """Refuse an explicit engine ``problem`` does not qualify for, saying why."""
    if requested == "hand-derived":
        reason = hand_derived_refusal(problem)
        if reason is not None:
            raise ConfigError(f"reverse engine hand-derived (--reverse-engine) cannot differentiate "
                              f"{type(problem).__name__}'s trajectory: {reason}; use auto, checkpointed or autograd")
    elif requested == "checkpointed" and problem.stochastic_objective:
        raise ConfigError(f"reverse engine checkpointed (--reverse-engine) recomputes inner steps in the backward "
                          f"pass, and {type(problem).__name__}'s objective is random (dropout, or graphs drawn per "
                          "step): a recomputed step would differ; use autograd (or auto)")


def _reverse_option(reverse: str, checkpoint: Optional[bool]) -> str:
    """``reverse``, or what the deprecated ``checkpoint`` flag meant (False: autograd)."""
    if checkpoint is not None:
        warnings.warn("checkpoint= is deprecated: use reverse='autograd' (checkpoint=False) or reverse='auto' "
                      "(checkpoint=True)", DeprecationWarning, stacklevel=3)
        if reverse != "auto":
            raise ConfigError(f"give reverse={reverse!r} or the deprecated checkpoint={checkpoint}, not both")
        reverse = "auto" if checkpoint else "autograd"
    if reverse not in REVERSE_ENGINES:
        raise ConfigError(f"reverse must be one of {', '.join(REVERSE_ENGINES)}, got {reverse!r}")
    return reverse


class _TrajectoryMethod(HypergradMethod):
    """What unrolled and truncated methods share: the reverse engine and the adjoint log."""

    reverse: str = "auto"
    #: diagnostics: a list every backward pass appends one entry per step to
    #: (:func:`~dgl_bilevel.hypergrad.checkpointed.record_adjoints`); None: nothing recorded
    adjoint_log: Optional[list] = None

    def _steps(self, problem, edge_weight, params, steps, state, monitor) -> tuple:
        """``steps`` differentiable inner steps and the engine that differentiates them."""
        engine = reverse_engine(problem, self.reverse) if edge_weight.requires_grad else "autograd"
        if engine != "autograd" and steps > 0:
            unroll = unroll_recorded if engine == "hand-derived" else unroll_checkpointed
            return unroll(problem, edge_weight, params, steps, state=state, monitor=monitor,
                          adjoint_log=self.adjoint_log), engine
        return optimize(problem, edge_weight, params, steps, differentiable=True, state=state, monitor=monitor), engine


class Unrolled(_TrajectoryMethod):
    """Back-propagate through all ``problem.steps`` inner updates (exact for the finite trajectory).

    Args:
        reverse: the reverse engine, one of :data:`REVERSE_ENGINES` (module docstring). ``"auto"``
            takes the hand-derived derivatives of the paper's GNN (:class:`~dgl_bilevel.models.SumAggGNN`,
            classification) and of the Laplacian problem, trained with the library's Adam or SGD --
            each step keeps its gradient and a compact record of its pass (or, where the records would
            pass 512 MiB, its parameters, to recompute them) -- and recomputes steps otherwise: memory
            O(steps x parameters) instead of autograd's O(steps x activations), for about one extra
            gradient evaluation per step. An explicit engine the problem does not qualify for is
            refused by :meth:`check`.
        checkpoint: deprecated; ``False`` is ``reverse="autograd"``.

    Raises:
        ~dgl_bilevel.errors.ConfigError: from :meth:`check` (at the first solve): a problem whose trajectory cannot
            be differentiated (mini-batches), or an engine the problem does not qualify for.

    Example:
        >>> import dgl, torch
        >>> import dgl_bilevel as dbl
        >>> graph = dgl.to_bidirected(dgl.graph(([0, 1, 2, 3, 4], [1, 2, 3, 4, 5])))
        >>> data = dbl.BilevelData(graph, torch.eye(6), torch.tensor([0, 0, 0, 1, 1, 1]),
        ...                        v_in=[0, 5], v_out=[1, 4], val=[2], test=[3])
        >>> _ = torch.manual_seed(0)
        >>> problem = dbl.TrainedGNN(dbl.models.SumAggGNN(6, 4, 2), steps=10, lr=0.1).bind(data, graph)
        >>> start = problem.starting_params(torch.Generator().manual_seed(0))
        >>> def hypergradient(method):
        ...     weights = torch.ones(graph.num_edges(), requires_grad=True)
        ...     solution = method.solve(problem, weights, start)
        ...     outputs = problem.predict(solution.params, weights)
        ...     loss = torch.nn.functional.cross_entropy(outputs[data.v_out], data.labels[data.v_out])
        ...     return torch.autograd.grad(loss, weights)[0]
        >>> exact = hypergradient(Unrolled())
        >>> tuple(exact.shape), bool(exact.abs().sum() > 0)
        ((10,), True)
        >>> bool(torch.allclose(exact, hypergradient(Unrolled(reverse="autograd")), atol=1e-6))  # same maths
        True
    """

    name = "unrolled"

    def __init__(self, reverse: str = "auto", *, checkpoint: Optional[bool] = None) -> None:
        self.reverse = _reverse_option(reverse, checkpoint)

    def check(self, problem: InnerProblem) -> None:
        _check_trajectory(self, problem, problem.steps)
        check_reverse_engine(self.reverse, problem)

    def solve(self, problem: InnerProblem, edge_weight: torch.Tensor, params: Params, monitor: Optional[Monitor] = None) -> Solution:
        self.check(problem)
        (params, _, value), engine = self._steps(problem, edge_weight, params, problem.steps, None, monitor)
        return Solution(params, value, {"differentiated_steps": problem.steps, "reverse": engine})

    def describe(self) -> dict:
        return {"hypergrad": self.name, "reverse": self.reverse}


class Truncated(_TrajectoryMethod):
    """Run all but the last ``k`` inner steps without a graph, then back-propagate through ``k``.

    ``k = steps`` is full unrolling; ``k = 0`` is the first-order approximation (only the
    direct dependence of the predictions on ``w``). Memory is that of ``k`` steps. ``reverse``
    and ``checkpoint``: as for :class:`Unrolled`.

    Raises:
        ~dgl_bilevel.errors.ConfigError: ``k < 0``; from :meth:`check`, ``k = 0`` for a problem whose predictions do
            not read the weights (the hypergradient would be exactly zero), and the refusals of
            :class:`Unrolled`.

    Example:
        >>> import dgl, torch
        >>> import dgl_bilevel as dbl
        >>> graph = dgl.to_bidirected(dgl.graph(([0, 1, 2, 3, 4], [1, 2, 3, 4, 5])))
        >>> data = dbl.BilevelData(graph, torch.eye(6), torch.tensor([0, 0, 0, 1, 1, 1]),
        ...                        v_in=[0, 5], v_out=[1, 4], val=[2], test=[3])
        >>> _ = torch.manual_seed(0)
        >>> problem = dbl.TrainedGNN(dbl.models.SumAggGNN(6, 4, 2), steps=10, lr=0.1).bind(data, graph)
        >>> start = problem.starting_params(torch.Generator().manual_seed(0))
        >>> def hypergradient(method):
        ...     weights = torch.ones(graph.num_edges(), requires_grad=True)
        ...     solution = method.solve(problem, weights, start)
        ...     outputs = problem.predict(solution.params, weights)
        ...     loss = torch.nn.functional.cross_entropy(outputs[data.v_out], data.labels[data.v_out])
        ...     return torch.autograd.grad(loss, weights)[0]
        >>> full = hypergradient(Truncated(k=10))  # k = steps: full unrolling
        >>> torch.equal(full, hypergradient(Unrolled()))
        True
        >>> torch.equal(hypergradient(Truncated(k=3)), full)  # the last 3 steps only: an approximation
        False
        >>> Truncated(k=3).describe()
        {'hypergrad': 'truncated', 'k': 3, 'reverse': 'auto'}
    """

    name = "truncated"

    def __init__(self, k: int = 10, reverse: str = "auto", *, checkpoint: Optional[bool] = None) -> None:
        if k < 0:
            raise ConfigError(f"truncation length k must be >= 0, got {k}")
        self.k = int(k)
        self.reverse = _reverse_option(reverse, checkpoint)

    def check(self, problem: InnerProblem) -> None:
        k = min(self.k, problem.steps)
        if k == 0 and not problem.predictions_use_weights:
            raise ConfigError(
                f"{type(self).__name__} differentiates only the predictions' direct dependence on the edge weights, "
                f"and {type(problem).__name__}'s predictions have none: its hypergradient is exactly zero. Use a "
                "method that differentiates the inner solution (adjoint, implicit, unrolled, or truncated with k > 0)")
        _check_trajectory(self, problem, k)
        check_reverse_engine(self.reverse, problem)

    def solve(self, problem: InnerProblem, edge_weight: torch.Tensor, params: Params, monitor: Optional[Monitor] = None) -> Solution:
        self.check(problem)
        k = min(self.k, problem.steps)
        params, state, value = optimize(problem, edge_weight, params, problem.steps - k, differentiable=False, monitor=monitor)
        engine = None
        if k:
            (params, _, value), engine = self._steps(problem, edge_weight, params, k, state, monitor)
        return Solution(params, value, {"differentiated_steps": k, "reverse": engine})

    def describe(self) -> dict:
        return {"hypergrad": self.name, "k": self.k, "reverse": self.reverse}


class FirstOrder(Truncated):
    """Ignore how the inner solution depends on ``w`` (``Truncated(k=0)``): cheapest, biased.

    Only the predictions' direct dependence on ``w`` is differentiated, so it is refused for
    inner problems whose predictions do not read ``w`` (Laplacian regularisation, label
    propagation): their first-order hypergradient is exactly zero.

    Raises:
        ~dgl_bilevel.errors.ConfigError: from :meth:`check`, for such a problem.

    Example:
        >>> import dgl, torch
        >>> import dgl_bilevel as dbl
        >>> graph = dgl.to_bidirected(dgl.graph(([0, 1, 2, 3, 4], [1, 2, 3, 4, 5])))
        >>> data = dbl.BilevelData(graph, torch.eye(6), torch.tensor([0, 0, 0, 1, 1, 1]),
        ...                        v_in=[0, 5], v_out=[1, 4], val=[2], test=[3])
        >>> _ = torch.manual_seed(0)
        >>> problem = dbl.TrainedGNN(dbl.models.SumAggGNN(6, 4, 2), steps=10, lr=0.1).bind(data, graph)
        >>> start = problem.starting_params(torch.Generator().manual_seed(0))
        >>> def hypergradient(method):
        ...     weights = torch.ones(graph.num_edges(), requires_grad=True)
        ...     solution = method.solve(problem, weights, start)
        ...     outputs = problem.predict(solution.params, weights)
        ...     loss = torch.nn.functional.cross_entropy(outputs[data.v_out], data.labels[data.v_out])
        ...     return torch.autograd.grad(loss, weights)[0]
        >>> cheap = hypergradient(FirstOrder())
        >>> tuple(cheap.shape), torch.equal(cheap, hypergradient(Truncated(k=0)))
        ((10,), True)
        >>> try:
        ...     FirstOrder().check(dbl.LabelPropagation())
        ... except ConfigError as exc:
        ...     print(str(exc)[:60])
        FirstOrder differentiates only the predictions' direct depen
    """

    name = "first_order"

    def __init__(self) -> None:
        super().__init__(k=0)

    def describe(self) -> dict:
        return {"hypergrad": self.name}
