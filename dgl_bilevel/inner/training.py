"""Inner training: one update step, written once, and the loop over steps.

Every way of training an inner problem -- the fast in-place loop of implicit and truncated
methods, full unrolling, the recomputing (checkpointed) unroll and mini-batch training -- is a
sequence of the same step: loss -> gradient -> optimizer update -> apply -> monitor. Only what
is kept of it differs, which ``mode`` names:

* ``"differentiable"``: the step stays on the autograd graph (``create_graph=True``, functional
  updates), so the result can be differentiated through the whole trajectory;
* ``"detached"``: no graph, out-of-place update (the previous iterate stays valid -- the
  checkpointed unroll stores every iterate);
* ``"inplace"``: no graph, the parameters are updated in place (the fast path). With a
  hand-derived gradient and the library's Adam it runs on one flat parameter vector
  (:func:`_run_flat_adam`, the optimizer's accelerated form), bitwise the same values.
"""
from __future__ import annotations

from contextlib import nullcontext
from typing import TYPE_CHECKING, Any, Callable, Optional

import torch
import torchopt

from ..errors import ConfigError
from ..ops import constant_edge_weights
from .flat_adam import FlatAdam, FlatLayout
from .optimizers import InnerOptimizer
from .types import Monitor, Params

if TYPE_CHECKING:
    from .base import InnerProblem


STEP_MODES = ("differentiable", "detached", "inplace")


def update_step(
    loss_fn: Callable[[Params], torch.Tensor],
    optimizer: "InnerOptimizer | torchopt.base.GradientTransformation",
    params: Params,
    state: Any,
    *,
    mode: str,
    monitor: Optional[Monitor] = None,
    gradient_fn: Optional[Callable[[Params], tuple]] = None,
) -> tuple[Params, Any, torch.Tensor]:
    """One inner update of ``params`` on ``loss_fn``; returns ``(params, state, loss)``.

    With ``mode="inplace"`` the parameters must be leaf tensors that require grad; they are
    updated in place and returned. The loss returned is detached except in the
    differentiable mode. ``gradient_fn`` (``params -> (loss, grads)``, hand-derived) replaces
    autograd's backward pass in the two modes that keep no graph.

    Args:
        loss_fn: ``params -> scalar`` loss.
        optimizer: the inner optimizer (or a torchopt transform).
        params: the current parameters, a tuple of tensors.
        state: the optimizer's state (``optimizer.init(params)`` before the first step).
        mode: ``"differentiable"``, ``"detached"`` or ``"inplace"`` (module docstring).
        monitor: called with the new (detached) parameters.
        gradient_fn: a hand-derived ``params -> (loss, grads)``.

    Returns:
        ``(params, state, loss)``: the updated parameters, the optimizer's new state and the loss
        at the parameters before the update.

    Raises:
        ~dgl_bilevel.errors.ConfigError: an unknown ``mode``.

    Example:
        >>> import torch
        >>> from dgl_bilevel.inner import default_adam
        >>> optimizer = default_adam(0.1)
        >>> x = (torch.tensor([1.0, -2.0], requires_grad=True),)
        >>> def loss_fn(params):
        ...     return (params[0] ** 2).sum()
        >>> new, state, loss = update_step(loss_fn, optimizer, x, optimizer.init(x), mode="differentiable")
        >>> [round(v, 4) for v in new[0].tolist()], float(loss.detach()), new[0].requires_grad  # on the graph of x
        ([0.9, -1.9], 5.0, True)
        >>> new, state, loss = update_step(loss_fn, optimizer, x, optimizer.init(x), mode="inplace")
        >>> new[0] is x[0], [round(v, 4) for v in x[0].tolist()]  # x itself was updated
        (True, [0.9, -1.9])
    """
    if mode == "differentiable":
        with torch.enable_grad():
            loss = loss_fn(params)
            grads = torch.autograd.grad(loss, params, create_graph=True)
            updates, state = optimizer.update(grads, state, params=params, inplace=False)
            params = tuple(torchopt.apply_updates(params, updates, inplace=False))
    elif mode in ("detached", "inplace"):
        variables = params if mode == "inplace" else tuple(p.detach().requires_grad_(True) for p in params)
        if gradient_fn is not None:
            with torch.no_grad():
                loss, grads = gradient_fn(variables)
        else:
            with torch.enable_grad():
                loss = loss_fn(variables)
                grads = torch.autograd.grad(loss, variables)
        with torch.no_grad():
            inplace = mode == "inplace"
            updates, state = optimizer.update(grads, state, params=params, inplace=inplace)
            applied = torchopt.apply_updates(params, updates, inplace=inplace)
            params = params if inplace else tuple(applied)
        loss = loss.detach()
    else:
        raise ConfigError(f"inner step mode must be one of {STEP_MODES}, got {mode!r}")
    if monitor is not None:
        monitor(tuple(p.detach() for p in params))
    return params, state, loss


def run_steps(
    problem: "InnerProblem",
    edge_weight: torch.Tensor,
    params: Params,
    steps: int,
    *,
    differentiable: bool,
    state: Optional[Any] = None,
    monitor: Optional[Monitor] = None,
) -> tuple[Params, Any, float]:
    """``steps`` updates of ``problem.optimizer`` on ``problem.objective``.

    Differentiable: every update stays on the autograd graph of ``edge_weight`` and ``params``.
    Otherwise updates happen in place against a detached ``w`` -- or in the problem's own loop
    when it declares one (:attr:`~dgl_bilevel.inner.base.InnerProblem.custom_steps`, e.g.
    mini-batch training). Returns ``(params, optimizer_state, last_objective)``.

    Args:
        problem: a bound inner problem.
        edge_weight: one weight per edge of the problem's graph.
        params: the starting parameters.
        steps: how many updates.
        differentiable: keep the trajectory on autograd's graph.
        state: the optimizer's state to continue from (``None``: a fresh one).
        monitor: called with every iterate's (detached) parameters.

    Returns:
        ``(params, optimizer_state, last_objective)``; ``last_objective`` is the objective before
        the last update (NaN after zero steps).

    Example:
        >>> import dgl, torch
        >>> import dgl_bilevel as dbl
        >>> graph = dgl.to_bidirected(dgl.graph(([0, 1, 2, 3, 4], [1, 2, 3, 4, 5])))
        >>> data = dbl.BilevelData(graph, torch.eye(6), torch.tensor([0, 0, 0, 1, 1, 1]),
        ...                        v_in=[0, 5], v_out=[1, 4], val=[2], test=[3])
        >>> problem = dbl.LaplacianRegularization(loss="mse", lr=0.1).bind(data, graph)
        >>> weights, start = torch.ones(graph.num_edges()), problem.initial_params(torch.Generator().manual_seed(0))
        >>> seen = []
        >>> params, state, last = run_steps(problem, weights, start, 200, differentiable=False, monitor=seen.append)
        >>> len(seen), bool(problem.objective(params, weights) < problem.objective(start, weights))
        (200, True)
        >>> problem.predict(params, weights).argmax(1).tolist()
        [0, 0, 0, 1, 1, 1]
    """
    if not differentiable and problem.custom_steps is not None:
        return problem.custom_steps(params, edge_weight, steps, monitor)
    optimizer = problem.optimizer
    if differentiable:
        weight = edge_weight
        mode = "differentiable"
        # a start that is a constant (``initial_params``) becomes the trajectory's leaf: the steps
        # differentiate the objective in it
        params = tuple(p if p.requires_grad else p.detach().requires_grad_(True) for p in params)
    else:
        weight = edge_weight.detach()
        params = tuple(p.detach().requires_grad_(True) for p in params)
        mode = "inplace"
    if state is None:
        state = optimizer.init(params)
    value = torch.tensor(float("nan"))

    def loss_fn(variables: Params) -> torch.Tensor:
        return problem.objective(variables, weight)

    gradient_fn = None
    derivatives = problem.derivatives
    if mode == "inplace" and derivatives is not None:  # hand-derived gradient: no autograd graph per step
        adam = optimizer.accelerated
        if adam is not None and len({p.dtype for p in params}) == 1:
            return _run_flat_adam(problem, adam, weight, params, state, steps, monitor)

        def gradient_fn(variables: Params) -> tuple:
            return derivatives.value_and_gradient(variables, weight)

    with constant_edge_weights() if mode == "inplace" else nullcontext():  # w is one detached tensor throughout
        for _ in range(steps):
            params, state, value = update_step(loss_fn, optimizer, params, state, mode=mode, monitor=monitor,
                                               gradient_fn=gradient_fn)
    return params, state, float(value.detach())


def _run_flat_adam(problem: "InnerProblem", adam: FlatAdam, weight: torch.Tensor, params: Params, state: Any,
                   steps: int, monitor: Optional[Monitor]) -> tuple[Params, Any, float]:
    """:func:`run_steps` for a hand-derived gradient and the library's Adam: the parameters as one
    flat vector updated in place by its accelerated form (:class:`~dgl_bilevel.inner.flat_adam.FlatAdam`) -- the same
    values, bit for bit, as torchopt's Adam on each tensor, in one set of kernels per step instead
    of one per parameter tensor and without the transform chain's Python."""
    optimizer, derivatives = problem.optimizer, problem.derivatives
    layout = FlatLayout(params)
    flat = layout.flatten(p.detach() for p in params)
    variables = layout.split(flat)
    flat_state = layout.flatten_state(optimizer, state)
    value = torch.tensor(float("nan"))
    with torch.no_grad(), constant_edge_weights():
        for _ in range(steps):
            value, grads = derivatives.value_and_gradient(variables, weight)
            update, flat_state, _ = adam.update(layout.flatten(grads), flat_state)
            flat.add_(update)
            if monitor is not None:
                monitor(variables)
    params = tuple(p.detach().requires_grad_(True) for p in variables)
    return params, layout.unflatten_state(optimizer, flat_state, params), float(value)
