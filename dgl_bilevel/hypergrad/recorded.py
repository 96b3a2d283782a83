"""Reverse-mode differentiation through an inner trajectory with the problem's own second derivatives.

When an inner problem declares :attr:`~dgl_bilevel.inner.base.InnerProblem.derivatives` (a
:class:`~dgl_bilevel.inner.types.HandDerivatives`: ``gradient(params, w) -> (loss, grads, record)``,
``gradient_vjp(record, V, w) -> (V^T dg/dparams, V^T dg/dw)``, ...), each inner step is
``params' = params + update(g, state)`` with ``g`` from ``gradient``. The forward pass keeps per step the gradient, the optimizer state entering it
and the problem's compact record; the backward pass walks the steps in reverse and, per step,

1. pulls the adjoints of the new parameters and state through the optimizer's update -- written
   out for the library's Adam (:mod:`~dgl_bilevel.inner.flat_adam`, which also runs its update),
   by autograd for other elementwise transforms -- giving the adjoint of ``g`` and of the old state;
2. turns the adjoint of ``g`` into parameter and edge-weight adjoints with ``gradient_vjp``
   (one tangent pass over the stored record, no recomputation); the edge parts of a segment's
   steps are added up at once (:meth:`~dgl_bilevel.inner.types.HandDerivatives.edge_sum`: for the
   GNN one product per layer over the segment's steps side by side).

Records are kept while the whole trajectory's take at most :data:`RECORD_BUDGET_BYTES` (512 MiB:
Cora's 100 steps take 41 MB); beyond -- large graphs, where a record is ``O(nodes x hidden)`` and
the parameters are few -- each step keeps its parameters instead and its gradient and record are
recomputed, one segment at a time, in the backward pass (one more hand-derived gradient per
step, still cheaper than autograd's recomputation and double backward).

The hypergradient is that of full unrolling (the same derivatives, other rounding). The optimizer
state (Adam's two moments) is stored only every ``ceil(sqrt(steps))`` steps and replayed from the
stored gradients one segment at a time in the backward pass -- the same elementwise updates, so the
same states bit for bit, for one extra pass of the (cheap) optimizer update. Memory is
O(steps x (parameters + the record) + sqrt(steps) x optimizer state); :class:`~dgl_bilevel.inner.sumagg_derivatives.SumAggDerivatives`
documents what its record holds.
"""
from __future__ import annotations

import math
from typing import Optional

import torch
from torchopt import pytree

from ..inner.base import InnerProblem
from ..inner.optimizers import InnerOptimizer
from ..inner.flat_adam import FlatLayout
from ..inner.training import Params
from ..ops import constant_edge_weights
from .checkpointed import adjoint_entry, is_floating


def unroll_recorded(
    problem: InnerProblem,
    edge_weight: torch.Tensor,
    params: Params,
    steps: int,
    state=None,
    monitor=None,
    adjoint_log: Optional[list] = None,
) -> tuple[Params, object, float]:
    """Run ``steps`` inner updates with ``problem.derivatives``; the returned params are
    differentiable in ``edge_weight`` exactly as with full unrolling (``adjoint_log``: as for
    :func:`~dgl_bilevel.hypergrad.checkpointed.unroll_checkpointed`)."""
    record: dict = {"value": float("nan")}
    optimizer = problem.optimizer
    if state is None:
        state = optimizer.init(tuple(p.detach() for p in params))
    layout = FlatLayout(params)
    flat_state = layout.flatten_state(optimizer, state)
    leaves, treedef = pytree.tree_flatten(flat_state)
    out = _RecordedTrajectory.apply(edge_weight, problem, steps, treedef, record, monitor, adjoint_log, layout,
                                    layout.flatten(p.detach() for p in params), *leaves)
    params_out = layout.split(out[0])
    state_out = layout.unflatten_state(optimizer, pytree.tree_unflatten(treedef, list(out[1:])), params_out)
    return params_out, state_out, record["value"]


#: Records of the whole trajectory are kept while they take at most this many bytes; beyond, each
#: step keeps its parameters and its gradient and record are recomputed in the backward pass.
RECORD_BUDGET_BYTES = 512 * 2**20


class _RecordedTrajectory(torch.autograd.Function):
    @staticmethod
    def forward(ctx, edge_weight, problem, steps, treedef, record, monitor, adjoint_log, layout, flat_params, *leaves):
        derivatives, optimizer = problem.derivatives, problem.optimizer
        params = flat_params
        state = pytree.tree_unflatten(treedef, list(leaves))
        weight = edge_weight.detach()
        saved = []
        segment = state_segment(steps)
        keep_records = None
        update_fn = _update_function(optimizer)
        with constant_edge_weights(), torch.no_grad():  # one detached weight tensor: its sparse matrices are reused
            for step in range(steps):
                loss, grads, step_record = derivatives.gradient(layout.split(params), weight)
                if keep_records is None:
                    keep_records = steps * _bytes(step_record) <= RECORD_BUDGET_BYTES
                grads = layout.flatten(grads)
                saved.append(_Step(None if keep_records else params, grads if keep_records else None,
                                   state if step % segment == 0 else None, step_record if keep_records else None))
                # elementwise optimizers read no parameters; None keeps forward and backward the same function
                update, state, _ = update_fn(grads, state)
                params = params + update
                record["value"] = float(loss)
                if monitor is not None:
                    monitor(layout.split(params))
        ctx.problem, ctx.saved_steps, ctx.treedef, ctx.layout, ctx.segment = problem, saved, treedef, layout, segment
        ctx.adjoint_log = adjoint_log
        ctx.save_for_backward(edge_weight, flat_params)
        out_leaves, _ = pytree.tree_flatten(state)
        return (params, *out_leaves)

    @staticmethod
    def backward(ctx, adj_params, *adj_state):
        edge_weight, flat_params = ctx.saved_tensors
        problem, treedef, layout = ctx.problem, ctx.treedef, ctx.layout
        adj_params = torch.zeros_like(flat_params) if adj_params is None else adj_params
        adj_state = list(adj_state)
        weight = edge_weight.detach()
        grad_weight = torch.zeros_like(weight)
        saved = ctx.saved_steps
        with constant_edge_weights():
            for start in reversed(range(0, len(saved), ctx.segment)):
                end = min(start + ctx.segment, len(saved))
                _fill_segment(problem, layout, weight, saved[start:end])
                pending: list = []
                states, roots = _replay_states(problem.optimizer, saved[start:end])
                for step in reversed(range(start, end)):
                    entry = saved[step]
                    adj_grads, adj_state = _optimizer_vjp(problem.optimizer, entry.grads, states[step - start], treedef,
                                                          adj_params, adj_state, after=states[step - start + 1],
                                                          root=roots[step - start])
                    # the edge part is added up once per segment (HandDerivatives.edge_sum)
                    hessian_part, edge_part = problem.derivatives.gradient_vjp(
                        entry.record, layout.split(adj_grads), weight, defer_edges=True)
                    pending.append(edge_part)
                    adj_params = adj_params + layout.flatten(hessian_part)
                    saved[step] = None  # its record is no longer needed
                    if ctx.adjoint_log is not None:
                        ctx.adjoint_log.append(adjoint_entry(step, list(layout.split(adj_params)), adj_state))
                if pending:
                    grad_weight = grad_weight + problem.derivatives.edge_sum(pending).to(grad_weight.dtype)
        ctx.saved_steps = None
        return (grad_weight, None, None, None, None, None, None, None) + (None,) * (1 + len(adj_state))


class _Step:
    """What one step keeps: its gradient and record (or its parameters, to recompute them), and
    the optimizer state entering it at the first step of each segment."""

    __slots__ = ("params", "grads", "state", "record")

    def __init__(self, params, grads, state, record) -> None:
        self.params, self.grads, self.state, self.record = params, grads, state, record


def _bytes(record: dict) -> int:
    tensors = [t for t in pytree.tree_flatten(record)[0] if isinstance(t, torch.Tensor)]
    return sum(t.numel() * t.element_size() for t in tensors)


@torch.no_grad()
def _fill_segment(problem, layout, weight, segment: list) -> None:
    """Recompute the gradient and record of the steps that kept only their parameters."""
    for entry in segment:
        if entry.record is None:
            _, grads, entry.record = problem.derivatives.gradient(layout.split(entry.params), weight)
            entry.grads, entry.params = layout.flatten(grads), None


def state_segment(steps: int) -> int:
    """Steps between stored optimizer states: ``ceil(sqrt(steps))``, so the states kept and the
    states replayed in one segment are both about ``sqrt(steps)``."""
    return max(1, math.isqrt(max(steps - 1, 0)) + 1)


def _update_function(optimizer: InnerOptimizer):
    """``(grads, state) -> (update, new state, Adam's root or None)`` for one flat vector: the library's
    Adam's accelerated form (:class:`~dgl_bilevel.inner.flat_adam.FlatAdam`, bitwise torchopt's), any
    other transform through its own ``update``."""
    if optimizer.accelerated is not None:
        return optimizer.accelerated.update

    def update(grads, state):
        (step,), state = optimizer.update((grads,), state, params=None, inplace=False)
        return step, state, None

    return update


@torch.no_grad()
def _replay_states(optimizer, segment: list) -> tuple[list, list]:
    """The optimizer state entering each step of ``segment`` (its first step's is stored) and the state
    after its last, rebuilt from the stored gradients by the same updates as the forward pass (bitwise
    the same states), and each step's Adam root (reused by its VJP; None for other transforms)."""
    states, roots = [segment[0].state], []
    update_fn = _update_function(optimizer)
    for entry in segment:
        _, state, root = update_fn(entry.grads, states[-1])
        states.append(state)
        roots.append(root)
    return states, roots


def _optimizer_vjp(optimizer, grads, state, treedef, adj_params, adj_state, after=None, root=None):
    """Adjoints of the (flat) gradient and of the entering state, from those of the step's outputs.

    ``params' = params + update(g, state)``: the new parameters' adjoint passes unchanged to the
    old parameters (added by the caller) and, through ``update``, to ``g`` and ``state``. The
    library's own Adam has its VJP written out (:meth:`~dgl_bilevel.inner.flat_adam.FlatAdam.vjp`,
    reading its new moments from ``after``, the state the step left, and its square root from
    ``root``, where given); other transforms go through autograd.
    """
    if optimizer.accelerated is not None:
        return optimizer.accelerated.vjp(grads, state, adj_params, adj_state, after, root)
    with torch.enable_grad():
        g = grads.detach().requires_grad_(True)
        leaves, _ = pytree.tree_flatten(state)
        leaves = [x.detach().requires_grad_(True) if is_floating(x) else x for x in leaves]
        (update,), new_state = optimizer.update((g,), pytree.tree_unflatten(treedef, leaves), params=None, inplace=False)
        new_leaves, _ = pytree.tree_flatten(new_state)
        outputs, cotangents = [update], [adj_params]
        for value, cot in zip(new_leaves, adj_state):
            if cot is not None and is_floating(value) and value.requires_grad:
                outputs.append(value)
                cotangents.append(cot)
        inputs = [g] + [x for x in leaves if is_floating(x)]
        found = torch.autograd.grad(outputs, inputs, cotangents, allow_unused=True)
    adj_grads = torch.zeros_like(g) if found[0] is None else found[0]
    float_adj = iter(found[1:])
    new_adj_state = [next(float_adj) if is_floating(x) else None for x in leaves]
    return adj_grads.detach(), [None if a is None else a.detach() for a in new_adj_state]
