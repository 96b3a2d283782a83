"""Implicit differentiation at the inner solution (implicit function theorem).

At a stationary point ``d g / d phi (phi*, w) = 0`` of the inner objective,

    dF/dw = dF/dw|_direct - (d^2 g / dw dphi)^T  H^-1  dF/dphi,   H = d^2 g / dphi^2.

``H^-1 dF/dphi`` is found matrix-free -- conjugate gradient (default) or a Neumann series -- on
Hessian-vector products from ``torch.autograd.grad`` (double backward through DGL's kernels;
torchopt's functorch-based ``custom_root`` cannot trace DGL, DESIGN.md section 2). The inner
solve itself keeps no graph, so memory is that of one forward/backward pass, independent of
the number of inner steps. Exact only as far as the inner problem is solved: with few inner
steps the result is an approximation (see docs/benchmarks.md for the measured trade-off).
"""
from __future__ import annotations

from typing import Optional

import torch

from ..errors import ConfigError
from ..inner.base import InnerProblem, Params
from .base import HypergradMethod, Monitor, Solution, optimize
from .linalg import SolveInfo, conjugate_gradient, neumann_series

SOLVERS = ("cg", "neumann")


class Implicit(HypergradMethod):
    """Implicit hypergradient.

    Args:
        solver: ``"cg"`` (conjugate gradient on ``H + damping I``) or ``"neumann"``
            (``step * sum_k (I - step (H + damping I))^k``).
        maxiter: Hessian-vector products at most.
        tol: relative residual at which CG stops.
        damping: added to the Hessian's diagonal (Tikhonov); makes non-convex or
            ill-conditioned problems solvable at the cost of a small bias.
        neumann_step: the Neumann series' step (must be below ``2 / lambda_max(H)``).
        warm_start: start CG from the previous outer iteration's solution.
    """

    name = "implicit"

    def __init__(
        self,
        solver: str = "cg",
        maxiter: int = 20,
        tol: float = 1e-4,
        damping: float = 0.0,
        neumann_step: float = 1.0,
        warm_start: bool = False,
    ) -> None:
        if solver not in SOLVERS:
            raise ConfigError(f"implicit solver must be one of {SOLVERS}, got {solver!r}")
        if maxiter < 1 or tol < 0 or damping < 0 or neumann_step <= 0:
            raise ConfigError("implicit needs maxiter >= 1, tol >= 0, damping >= 0, neumann_step > 0")
        self.solver, self.maxiter, self.tol = solver, int(maxiter), float(tol)
        self.damping, self.neumann_step, self.warm_start = float(damping), float(neumann_step), bool(warm_start)
        self.last_solve: Optional[SolveInfo] = None
        self._previous: Optional[tuple] = None

    def solve(self, problem: InnerProblem, edge_weight: torch.Tensor, params: Params, monitor: Optional[Monitor] = None) -> Solution:
        params, _, value = optimize(problem, edge_weight, params, problem.steps, differentiable=False, monitor=monitor)
        params = tuple(p.detach() for p in params)
        info: dict = {}
        if edge_weight.requires_grad:
            params = _ImplicitSolution.apply(edge_weight, self, problem, info, *params)
        return Solution(tuple(params), value, info)

    def solve_linear(self, problem: InnerProblem, edge_weight: torch.Tensor, params: Params, rhs: tuple) -> tuple[tuple, tuple]:
        """``v = (H + damping I)^-1 rhs`` and the cross term ``(d^2 g / dw dphi)^T v``."""
        with torch.enable_grad():
            weight = edge_weight.detach().requires_grad_(True)
            variables = tuple(p.detach().requires_grad_(True) for p in params)
            terms = problem.objective_terms(weight)
            if terms is None:  # one graph for the whole objective, reused by every product
                grads = torch.autograd.grad(problem.objective(variables, weight), variables, create_graph=True)

                def hessian_product(v: tuple) -> tuple:
                    return torch.autograd.grad(grads, variables, grad_outputs=v, retain_graph=True)

                def mixed_product(v: tuple) -> Optional[torch.Tensor]:
                    return torch.autograd.grad(grads, weight, grad_outputs=v, allow_unused=True)[0]
            else:  # accumulate term by term, rebuilding each term's graph: memory of one term
                def hessian_product(v: tuple) -> tuple:
                    total = [torch.zeros_like(x) for x in variables]
                    for term in terms:
                        g = torch.autograd.grad(term(variables), variables, create_graph=True)
                        hv = torch.autograd.grad(g, variables, grad_outputs=v, allow_unused=True)
                        total = [t + (h if h is not None else 0) for t, h in zip(total, hv)]
                    return tuple(total)

                def mixed_product(v: tuple) -> Optional[torch.Tensor]:
                    total = torch.zeros_like(weight)
                    for term in terms:
                        g = torch.autograd.grad(term(variables), variables, create_graph=True)
                        cross = torch.autograd.grad(g, weight, grad_outputs=v, allow_unused=True)[0]
                        total = total + (cross if cross is not None else 0)
                    return total

            def hvp(v: tuple) -> tuple:
                hv = hessian_product(v)
                return tuple(h + self.damping * x for h, x in zip(hv, v)) if self.damping else hv

            if self.solver == "cg":
                x0 = self._previous if self.warm_start and self._previous is not None else None
                v, self.last_solve = conjugate_gradient(hvp, rhs, x0=x0, tol=self.tol, maxiter=self.maxiter)
            else:
                v, self.last_solve = neumann_series(hvp, rhs, step=self.neumann_step, maxiter=self.maxiter, tol=self.tol)
            if self.warm_start:
                self._previous = tuple(x.detach() for x in v)
            cross = mixed_product(v)
        if cross is None:
            cross = torch.zeros_like(edge_weight)
        return v, cross

    def describe(self) -> dict:
        return {
            "hypergrad": self.name,
            "solver": self.solver,
            "maxiter": self.maxiter,
            "tol": self.tol,
            "damping": self.damping,
            **({"neumann_step": self.neumann_step} if self.solver == "neumann" else {}),
        }


class _ImplicitSolution(torch.autograd.Function):
    """Identity on the solution in the forward pass; the implicit-function VJP in the backward."""

    @staticmethod
    def forward(ctx, edge_weight, method, problem, info, *params):
        ctx.method, ctx.problem, ctx.info = method, problem, info
        ctx.save_for_backward(edge_weight, *params)
        return tuple(p.clone() for p in params)

    @staticmethod
    def backward(ctx, *grad_params):
        edge_weight, *params = ctx.saved_tensors
        rhs = tuple(torch.zeros_like(p) if g is None else g for p, g in zip(params, grad_params))
        _, cross = ctx.method.solve_linear(ctx.problem, edge_weight, tuple(params), rhs)
        ctx.info.update(ctx.method.last_solve.as_dict())
        return (-cross, None, None, None) + (None,) * len(params)
