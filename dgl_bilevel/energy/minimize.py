"""Exact minimiser of a quadratic energy: ``(I + lam L) Y = F`` by Jacobi-preconditioned CG.

``grad E = 2 (Y - F) + 2 lam L Y`` vanishes there. The system matrix is symmetric positive
definite (``L`` is PSD), so conjugate gradients converge; each column of ``Y`` is solved on its
own (``column_dot``). The solution is differentiable in ``target`` and ``edge_weight`` (first
order, by the implicit function theorem: the backward pass solves the same system once more);
for higher orders unfold an :class:`~.layers.EnergyLayer` instead.
"""
from __future__ import annotations

from typing import Optional

import torch

from .._dgl import dgl
from ..errors import ConfigError
from ..numerics.linalg import SolveInfo, column_dot, conjugate_gradient, jacobi
from .energy import Energy


def _system(energy: Energy, graph, target, edge_weight):
    bound = energy.bind(graph, target, edge_weight)
    base = bound.graph_term.base_weights()
    half_lam = 0.5 * energy.lam

    def matvec(y: torch.Tensor) -> torch.Tensor:
        return y + half_lam * bound.graph_term.gradient(y, base)

    diagonal = 1.0 + half_lam * bound.graph_term.hessian_diagonal(base)
    return matvec, diagonal


def _solve(energy, graph, target, edge_weight, tol, maxiter, x0):
    matvec, diagonal = _system(energy, graph, target, edge_weight)
    (y,), info = conjugate_gradient(
        lambda v: (matvec(v[0]),), (target,), x0=None if x0 is None else (x0,),
        precondition=jacobi((diagonal.expand_as(target),)), dot=column_dot, tol=tol, maxiter=maxiter)
    return y, info


class _QuadraticSolve(torch.autograd.Function):
    @staticmethod
    def forward(ctx, target, edge_weight, energy, graph, tol, maxiter, x0, info_box):
        y, info = _solve(energy, graph, target, edge_weight, tol, maxiter, x0)
        info_box.append(info)
        ctx.energy, ctx.graph, ctx.tol, ctx.maxiter = energy, graph, tol, maxiter
        ctx.save_for_backward(edge_weight, y)
        return y

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_y):
        edge_weight, y = ctx.saved_tensors
        adjoint, _ = _solve(ctx.energy, ctx.graph, grad_y, edge_weight, ctx.tol, ctx.maxiter, None)
        grad_w = None
        if ctx.needs_input_grad[1]:
            with torch.enable_grad():
                w = edge_weight.detach().requires_grad_(True)
                matvec, _ = _system(ctx.energy, ctx.graph, y, w)
                (grad_w,) = torch.autograd.grad(-(adjoint * matvec(y)).sum(), w)
        return adjoint, grad_w, None, None, None, None, None, None


def minimize_quadratic(
    graph: "dgl.DGLGraph",
    target: torch.Tensor,
    edge_weight: Optional[torch.Tensor] = None,
    *,
    lam: float = 1.0,
    normalize: str = "sym",
    energy: Optional[Energy] = None,
    tol: float = 1e-10,
    maxiter: int = 1000,
    x0: Optional[torch.Tensor] = None,
    return_info: bool = False,
) -> "torch.Tensor | tuple[torch.Tensor, SolveInfo]":
    """``argmin_Y ||Y - F||^2 + lam tr(Y^T L Y)`` for ``F = target`` (``[N, C]``).

    Args:
        energy: a quadratic :class:`~.energy.Energy` instead of ``lam`` and ``normalize``.
        tol: stop when every column's relative residual ``|F - (I + lam L) Y| / |F|`` is below it.
        maxiter: at most this many CG iterations.
        x0: a warm start.
        return_info: also return the :class:`~dgl_bilevel.numerics.linalg.SolveInfo`
            (iterations, final relative residual, converged).
    """
    energy = energy if energy is not None else Energy(lam, normalize=normalize)
    if not energy.is_quadratic:
        raise ConfigError("minimize_quadratic needs quadratic fidelity and penalty and regularizer='none' "
                          f"(got {energy.describe()}); unfold an EnergyLayer for the others")
    if target.dim() != 2:
        raise ConfigError(f"target must be [N, C], got shape {tuple(target.shape)}")
    weight = torch.ones(graph.num_edges(), dtype=target.dtype) if edge_weight is None else edge_weight.reshape(-1).to(target.dtype)
    info_box: list = []
    y = _QuadraticSolve.apply(target, weight, energy, graph, tol, maxiter, x0, info_box)
    return (y, info_box[0]) if return_info else y
