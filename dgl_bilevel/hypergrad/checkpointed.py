"""Reverse-mode differentiation through an inner trajectory with recomputation ("checkpointed unrolling").

Plain unrolling keeps every intermediate tensor of every inner step on the autograd graph:
memory O(steps x activations). Here the forward pass runs without a graph and stores only each
step's parameters and optimizer state; the backward pass walks the steps in reverse, recomputes
one step at a time with a graph, and pulls the adjoint of (parameters, optimizer state) and the
edge-weight gradient through it. The result is the same hypergradient (same operations, so equal
to rounding), at about one extra inner gradient evaluation per step, with memory
O(steps x parameters + one step's activations).
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import TYPE_CHECKING, Iterator, Optional

import torch
from torchopt import pytree

from ..inner.base import InnerProblem
from ..ops import constant_edge_weights
from ..inner.training import Params, update_step

if TYPE_CHECKING:
    from .base import HypergradMethod


def is_floating(x) -> bool:
    """True for a floating-point tensor (the optimizer-state leaves that carry adjoints)."""
    return isinstance(x, torch.Tensor) and x.is_floating_point()


@contextmanager
def record_adjoints(method: "HypergradMethod") -> Iterator[list]:
    """Diagnostics: inside the block, every backward pass through the differentiated inner steps
    (checkpointed or hand-derived) of ``method`` (unrolled or truncated) appends one dict per step
    (last step first) to the yielded list (:func:`adjoint_entry`), kept as ``method.adjoint_log``. Exploding unrolled derivatives show
    here as adjoints that grow geometrically towards the first step."""
    log: list = []
    previous, method.adjoint_log = method.adjoint_log, log
    try:
        yield log
    finally:
        method.adjoint_log = previous


def adjoint_entry(step: int, adj_params: list, adj_state: list) -> dict:
    """``step``, ``params`` and ``state`` (the largest ``|adjoint|`` of each parameter and floating
    optimizer-state tensor entering that step) and ``nonfinite`` (how many adjoint entries are inf or NaN)."""
    def largest(t):
        return float(t.detach().abs().max()) if t is not None and t.numel() else 0.0

    state = [a for a in adj_state if a is not None]
    return {"step": step, "params": [largest(a) for a in adj_params], "state": [largest(a) for a in state],
            "nonfinite": int(sum(int((~torch.isfinite(a)).sum()) for a in adj_params + state))}


def _step(problem: InnerProblem, params: Params, state, edge_weight: torch.Tensor):
    """One differentiable optimizer step (graph kept)."""
    return update_step(lambda p: problem.objective(p, edge_weight), problem.optimizer, params, state,
                       mode="differentiable")


def unroll_checkpointed(
    problem: InnerProblem,
    edge_weight: torch.Tensor,
    params: Params,
    steps: int,
    state=None,
    monitor=None,
    adjoint_log: Optional[list] = None,
) -> tuple[Params, object, float]:
    """Run ``steps`` inner updates; the returned params are differentiable in ``edge_weight``
    (exactly as with full unrolling) through a recomputing backward pass, which appends each step's
    :func:`adjoint_entry` to ``adjoint_log`` when one is given."""
    record: dict = {"value": float("nan")}
    if state is None:
        state = problem.optimizer.init(tuple(p.detach() for p in params))
    leaves, treedef = pytree.tree_flatten(state)
    out = _CheckpointedTrajectory.apply(edge_weight, problem, steps, treedef, record, monitor, adjoint_log, len(params),
                                        *[p.detach() for p in params], *leaves)
    params_out = tuple(out[: len(params)])
    state_out = pytree.tree_unflatten(treedef, list(out[len(params):]))
    return params_out, state_out, record["value"]


class _CheckpointedTrajectory(torch.autograd.Function):
    @staticmethod
    def forward(ctx, edge_weight, problem, steps, treedef, record, monitor, adjoint_log, num_params, *flat):
        params = tuple(flat[:num_params])
        state = pytree.tree_unflatten(treedef, list(flat[num_params:]))
        weight = edge_weight.detach()
        saved = []
        with constant_edge_weights():  # one detached weight tensor for every step
            for _ in range(steps):
                saved.append((params, state))
                params, state, loss = update_step(lambda p: problem.objective(p, weight), problem.optimizer, params,
                                                  state, mode="detached", monitor=monitor)
                record["value"] = float(loss)
        ctx.problem, ctx.saved_steps, ctx.treedef, ctx.num_params = problem, saved, treedef, num_params
        ctx.adjoint_log = adjoint_log
        ctx.save_for_backward(edge_weight)
        leaves, _ = pytree.tree_flatten(state)
        return (*params, *leaves)

    @staticmethod
    def backward(ctx, *grads_out):
        (edge_weight,) = ctx.saved_tensors
        problem, treedef, n = ctx.problem, ctx.treedef, ctx.num_params
        adj_params = list(grads_out[:n])
        adj_state = list(grads_out[n:])
        grad_weight = torch.zeros_like(edge_weight)
        last = len(ctx.saved_steps) - 1
        weight = edge_weight.detach().requires_grad_(True)  # one leaf for every step: its sparse matrix is reused
        with constant_edge_weights():
            grad_weight = _backward_steps(ctx, problem, treedef, n, weight, adj_params, adj_state, grad_weight, last)
        ctx.saved_steps = None
        return (grad_weight, None, None, None, None, None, None, None) + (None,) * (len(grads_out))


def _backward_steps(ctx, problem, treedef, n, weight, adj_params, adj_state, grad_weight, last):
    """The reverse walk over the stored steps: recompute each with a graph, pull the adjoints through it."""
    for k, (params, state) in enumerate(reversed(ctx.saved_steps)):
        with torch.enable_grad():
            p = tuple(x.detach().requires_grad_(True) for x in params)
            leaves, _ = pytree.tree_flatten(state)
            leaves = [x.detach().requires_grad_(True) if is_floating(x) else x for x in leaves]
            new_params, new_state, _ = _step(problem, p, pytree.tree_unflatten(treedef, leaves), weight)
            new_leaves, _ = pytree.tree_flatten(new_state)
            outputs, cotangents = [], []
            for value, cot in zip(list(new_params) + list(new_leaves), adj_params + adj_state):
                if cot is not None and is_floating(value) and value.requires_grad:
                    outputs.append(value)
                    cotangents.append(cot)
            inputs = list(p) + [x for x in leaves if is_floating(x)] + [weight]
            grads = torch.autograd.grad(outputs, inputs, cotangents, allow_unused=True)
        grads = [None if g is None else g.detach() for g in grads]
        adj_params = [g if g is not None else torch.zeros_like(x) for g, x in zip(grads[:n], p)]
        float_adj = iter(grads[n:-1])
        adj_state = [next(float_adj) if is_floating(x) else None for x in leaves]
        if ctx.adjoint_log is not None:
            ctx.adjoint_log.append(adjoint_entry(last - k, adj_params, adj_state))
        if grads[-1] is not None:
            grad_weight = grad_weight + grads[-1]
    return grad_weight
