"""Exact adjoints for quadratic inner problems (Laplacian regularisation with squared loss,
label propagation).

The inner solution solves ``A(w) Y = b(w)`` exactly (preconditioned CG, one DGL message
passing per iteration, O(E)). For an outer loss with gradient ``G = dF/dY`` the adjoint
``A p = G`` (``A`` is symmetric) gives the whole hypergradient:

    dF/dw = d/dw [ p^T b(w) - p^T A(w) Y ]   (p, Y held fixed),

which problems may supply in closed form per edge (``problem.edge_gradient``; for the
Laplacian ``-c (p_u - p_v).(Y_u - Y_v)``) and which otherwise comes from one autograd pass
through ``A(w) Y``. No inner iterate is stored.
"""
from __future__ import annotations

from typing import Optional

import torch

from ..errors import ConfigError
from ..inner.base import InnerProblem, LinearSystem, Params
from .base import HypergradMethod, Monitor, Solution
from .linalg import SolveInfo, column_dot, conjugate_gradient, jacobi


class Adjoint(HypergradMethod):
    """Exact solve plus one adjoint solve.

    Args:
        tol: relative residual per column at which CG stops (both solves).
        maxiter: CG iterations at most per solve.
        warm_start: start each solve from the previous outer iteration's solution, which
            changes little between outer steps (typically halves the iterations).
    """

    name = "adjoint"

    def __init__(self, tol: float = 1e-6, maxiter: int = 2000, warm_start: bool = True) -> None:
        if tol <= 0 or maxiter < 1:
            raise ConfigError("adjoint needs tol > 0 and maxiter >= 1")
        self.tol, self.maxiter, self.warm_start = float(tol), int(maxiter), bool(warm_start)
        self._previous: dict[str, torch.Tensor] = {}
        self.last_forward: Optional[SolveInfo] = None
        self.last_adjoint: Optional[SolveInfo] = None

    def check(self, problem: InnerProblem) -> None:
        if not problem.is_quadratic:
            raise ConfigError(
                f"the adjoint method needs a quadratic inner problem; {type(problem).__name__} "
                f"with these settings is not (use loss='mse' for Laplacian regularisation, or implicit/unrolled)"
            )

    def solve(self, problem: InnerProblem, edge_weight: torch.Tensor, params: Params, monitor: Optional[Monitor] = None) -> Solution:
        self.check(problem)
        info: dict = {}
        solution = problem.solution_to_params(_LinearSolve.apply(edge_weight, self, problem, info))
        if monitor is not None:
            monitor(tuple(p.detach() for p in solution))
        return Solution(solution, float("nan"), info)

    def cg(self, system: LinearSystem, rhs: torch.Tensor, key: str) -> tuple[torch.Tensor, SolveInfo]:
        """Solve ``A x = rhs`` on the system's active rows, warm-started under ``key``."""
        if system.active is not None:
            rhs = rhs * system.active.unsqueeze(-1).to(rhs.dtype)
        x0 = self._previous.get(key) if self.warm_start else None
        if x0 is not None and x0.shape != rhs.shape:
            x0 = None
        (x,), info = conjugate_gradient(
            lambda v: (system.matvec(v[0]),),
            (rhs,),
            x0=None if x0 is None else (x0,),
            precondition=jacobi((system.diagonal,), system.active),
            dot=column_dot,
            tol=self.tol,
            maxiter=self.maxiter,
        )
        if self.warm_start:
            self._previous[key] = x.detach()
        return x, info

    def describe(self) -> dict:
        return {"hypergrad": self.name, "tol": self.tol, "maxiter": self.maxiter, "warm_start": self.warm_start}


class _LinearSolve(torch.autograd.Function):
    @staticmethod
    def forward(ctx, edge_weight, method, problem, info):
        system = problem.linear_system(edge_weight)
        solution, forward_info = method.cg(system, system.rhs, "forward")
        method.last_forward = forward_info
        info.update({f"forward_{k}": v for k, v in forward_info.as_dict().items()})
        ctx.method, ctx.problem, ctx.info = method, problem, info
        ctx.save_for_backward(edge_weight, solution)
        return solution

    @staticmethod
    def backward(ctx, grad_solution):
        edge_weight, solution = ctx.saved_tensors
        method, problem = ctx.method, ctx.problem
        system = problem.linear_system(edge_weight)
        adjoint, adjoint_info = method.cg(system, grad_solution, "adjoint")
        method.last_adjoint = adjoint_info
        ctx.info.update({f"adjoint_{k}": v for k, v in adjoint_info.as_dict().items()})
        if hasattr(problem, "edge_gradient"):
            grad_weight = problem.edge_gradient(edge_weight, adjoint, solution)
        else:
            with torch.enable_grad():
                weight = edge_weight.detach().requires_grad_(True)
                system_w = problem.linear_system(weight)
                residual = (adjoint * system_w.rhs).sum() - (adjoint * system_w.matvec(solution)).sum()
                (grad_weight,) = torch.autograd.grad(residual, weight, allow_unused=True)
            if grad_weight is None:
                grad_weight = torch.zeros_like(edge_weight)
        return grad_weight, None, None, None
