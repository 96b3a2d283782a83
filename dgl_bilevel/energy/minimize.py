"""Exact minimiser of a quadratic energy: ``(I + lam L) Y = F`` by Jacobi-preconditioned CG.

``grad E = 2 (Y - F) + 2 lam L Y`` vanishes there. The system matrix is symmetric positive
definite (``L`` is PSD), so conjugate gradients converge; each column of ``Y`` is solved on its
own (``column_dot``). The solution is differentiable in ``target`` and ``edge_weight`` (first
order, by the implicit function theorem -- custom_root's construction, see ``_attach_root_vjp``:
the backward pass solves the same system once more);
for higher orders unfold an :class:`~.layers.EnergyLayer` instead.
"""
from __future__ import annotations

from typing import Optional

import torch

from .._dgl import dgl
from ..errors import ConfigError
from ..numerics.implicit_diff import SolveOptions, attach, implicit_vjp
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
    return _column_cg(matvec, diagonal.expand_as(target), target, tol, maxiter, x0)


def _column_cg(matvec, diagonal: torch.Tensor, rhs: torch.Tensor, tol: float, maxiter: int,
               x0: Optional[torch.Tensor]) -> tuple[torch.Tensor, SolveInfo]:
    """Jacobi-preconditioned CG on ``(I + lam/2 grad L) Y = rhs``, each column on its own."""
    (y,), info = conjugate_gradient(
        lambda v: (matvec(v[0]),), (rhs,), x0=None if x0 is None else (x0,),
        precondition=jacobi((diagonal,)), dot=column_dot, tol=tol, maxiter=maxiter)
    return y, info


def _attach_root_vjp(y: torch.Tensor, target: torch.Tensor, weight: torch.Tensor, energy: Energy, graph, tol: float,
                     maxiter: int) -> torch.Tensor:
    """``y`` on the graph of ``target`` and ``weight`` with the implicit-function VJP of the root of
    ``F(Y; target, w) = (I + lam/2 grad L_w) Y - target``.

    custom_root's construction (:func:`~dgl_bilevel.numerics.implicit_diff.implicit_vjp` behind
    :func:`~dgl_bilevel.numerics.implicit_diff.attach`) with two products of its own rather than
    autograd's through ``F``: ``J`` is symmetric, so ``J^T v`` is the forward's matrix-vector
    product -- one graph-term gradient per CG step, where autograd's vector-Jacobian product of
    ``F`` needs a forward and a backward pass through it (a Cora-sized graph, 7 columns, float64:
    about 380 against 620 us per product, and a different rounding) -- and the solve is the forward's
    Jacobi-preconditioned column CG, which :class:`~dgl_bilevel.numerics.implicit_diff.SolveOptions`
    does not offer by name. ``(dF/dtarget)^T v = -v``; ``(dF/dw)^T v`` comes from one autograd pass
    through the product ``A(w) Y``.
    """
    target_grad, weight_grad = target.requires_grad, weight.requires_grad
    inputs = [t for t, wanted in ((target, target_grad), (weight, weight_grad)) if wanted]
    solution, weight = y.detach(), weight.detach()

    def pullback(cotangents: tuple) -> tuple:
        matvec, diagonal = _system(energy, graph, cotangents[0], weight)

        def args_vjp(v: tuple) -> tuple:
            grads = [-v[0]] if target_grad else []
            if weight_grad:
                with torch.enable_grad():
                    w = weight.detach().requires_grad_(True)
                    product, _ = _system(energy, graph, solution, w)
                    grads.extend(torch.autograd.grad((v[0] * product(solution)).sum(), w))
            return tuple(grads)

        def solve(_, rhs: tuple) -> tuple:  # J^T is the forward's matvec: the forward's solver on it
            x, info = _column_cg(matvec, diagonal.expand_as(rhs[0]), rhs[0], tol, maxiter, None)
            return (x,), info

        grads, _, _ = implicit_vjp(lambda v: (matvec(v[0]),), args_vjp, (cotangents[0],), SolveOptions(solve=solve))
        return grads

    (y,) = attach((solution,), inputs, pullback)
    return y


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

    Solves ``(I + lam L) Y = F`` by Jacobi-preconditioned conjugate gradients, one column at a
    time; the result is differentiable (first order) in ``target`` and ``edge_weight``.

    Args:
        graph: the graph whose Laplacian ``L`` smooths ``target``.
        target: ``F``, an ``[N, C]`` tensor (one column per channel).
        edge_weight: ``[E]`` weights of ``graph``'s edges; default: all ones.
        lam: the smoothing strength (``lam = 0`` returns ``target``).
        normalize: ``"sym"`` (normalised Laplacian) or ``"none"`` (``L = D - W``).
        energy: a quadratic :class:`~.energy.Energy` instead of ``lam`` and ``normalize``.
        tol: stop when every column's relative residual ``|F - (I + lam L) Y| / |F|`` is below it.
        maxiter: at most this many CG iterations.
        x0: a warm start.
        return_info: also return the :class:`~dgl_bilevel.numerics.linalg.SolveInfo`
            (iterations, final relative residual, converged).

    Returns:
        ``Y`` (``[N, C]``, ``target``'s dtype), or ``(Y, info)`` with ``return_info=True``.

    Raises:
        ~dgl_bilevel.errors.ConfigError: if ``energy`` is not quadratic (non-quadratic fidelity or
            penalty, or a regulariser) or ``target`` is not two-dimensional.

    Example:
        >>> import dgl, torch
        >>> path = dgl.to_bidirected(dgl.graph(([0, 1, 2], [1, 2, 3])))  # 0 - 1 - 2 - 3
        >>> target = torch.tensor([[1.0], [0.0], [0.0], [-1.0]])
        >>> y, info = minimize_quadratic(path, target, lam=1.0, normalize="none", return_info=True)
        >>> [round(v, 4) for v in y.flatten().tolist()]  # exactly [4, 1, -1, -4] / 7
        [0.5714, 0.1429, -0.1429, -0.5714]
        >>> info.converged
        True
        >>> minimize_quadratic(path, torch.zeros(4))
        Traceback (most recent call last):
        ...
        dgl_bilevel.errors.ConfigError: target must be [N, C], got shape (4,)
    """
    energy = energy if energy is not None else Energy(lam, normalize=normalize)
    if not energy.is_quadratic:
        raise ConfigError("minimize_quadratic needs quadratic fidelity and penalty and regularizer='none' "
                          f"(got {energy.describe()}); unfold an EnergyLayer for the others")
    if target.dim() != 2:
        raise ConfigError(f"target must be [N, C], got shape {tuple(target.shape)}")
    weight = torch.ones(graph.num_edges(), dtype=target.dtype) if edge_weight is None else edge_weight.reshape(-1).to(target.dtype)
    y, info = _solve(energy, graph, target.detach(), weight.detach(), tol, maxiter, x0)
    if torch.is_grad_enabled() and (target.requires_grad or weight.requires_grad):
        y = _attach_root_vjp(y, target, weight, energy, graph, tol, maxiter)
    return (y, info) if return_info else y
