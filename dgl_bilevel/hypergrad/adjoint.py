"""Exact adjoints for quadratic inner problems (Laplacian regularisation with squared loss,
label propagation).

The inner solution solves ``A(w) Y = b(w)`` exactly (preconditioned CG, one DGL message
passing per iteration, O(E)). For an outer loss with gradient ``G = dF/dY`` the adjoint
``A p = G`` (``A`` is symmetric) gives the whole hypergradient:

    dF/dw = d/dw [ p^T b(w) - p^T A(w) Y ]   (p, Y held fixed),

which problems may supply in closed form per edge (``problem.edge_gradient``; for the
Laplacian ``-c (p_u - p_v).(Y_u - Y_v)``) and which otherwise comes from one autograd pass
through ``A(w) Y``. No inner iterate is stored. This is implicit differentiation of the root of
``F(Y, w) = A(w) Y - b(w)`` (:func:`~dgl_bilevel.numerics.implicit_diff.implicit_vjp`) with
the problem's own Jacobi-preconditioned, warm-started CG as the linear solver.
"""
from __future__ import annotations

from typing import Optional

import torch

from ..errors import ConfigError
from ..inner.base import InnerProblem, LinearSystem, Params
from .base import HypergradMethod, Monitor, Solution
from ..numerics.implicit_diff import ResidualWarner, SolveOptions, attach, implicit_vjp
from ..numerics.linalg import SolveInfo, column_dot, conjugate_gradient, jacobi


class Adjoint(HypergradMethod):
    """Exact solve plus one adjoint solve.

    Args:
        tol: relative residual per column at which CG stops (both solves).
        maxiter: CG iterations at most per solve.
        warm_start: start each solve from the previous outer iteration's solution, which
            changes little between outer steps (typically halves the iterations).

    Both solves' final residuals and iteration counts are in the solution's ``info``
    (``forward_residual``, ``forward_iterations``, ``forward_converged`` at once,
    ``adjoint_*`` after the backward pass); a solve ending above relative residual 1e-2
    warns once per instance.

    Raises:
        ~dgl_bilevel.errors.ConfigError: ``tol <= 0`` or ``maxiter < 1``; from :meth:`check` (at
            the first solve): an inner problem that is not quadratic (``is_quadratic``).

    Example:
        >>> import dgl, torch
        >>> import dgl_bilevel as dbl
        >>> graph = dgl.to_bidirected(dgl.graph(([0, 1, 2, 3, 4], [1, 2, 3, 4, 5])))
        >>> data = dbl.BilevelData(graph, torch.eye(6, dtype=torch.float64), torch.tensor([0, 0, 0, 1, 1, 1]),
        ...                        v_in=[0, 5], v_out=[1, 4], val=[2], test=[3])
        >>> problem = dbl.LaplacianRegularization(loss="mse").bind(data, graph)
        >>> targets = torch.nn.functional.one_hot(data.labels[data.v_out], 2).double()
        >>> def outer_loss(weights, method=None):
        ...     method = method or Adjoint(tol=1e-12)
        ...     start = problem.starting_params(torch.Generator().manual_seed(0))
        ...     solution = method.solve(problem, weights, start)
        ...     return ((problem.predict(solution.params, weights)[data.v_out] - targets) ** 2).sum(), solution
        >>> weights = torch.ones(graph.num_edges(), dtype=torch.float64, requires_grad=True)
        >>> loss, solution = outer_loss(weights)
        >>> (hypergradient,) = torch.autograd.grad(loss, weights)
        >>> solution.info["forward_converged"], solution.info["adjoint_converged"]
        (True, True)
        >>> step = torch.zeros_like(weights)
        >>> step[0] = 1e-6  # a central finite difference along the first edge agrees
        >>> difference = (outer_loss(weights.detach() + step)[0] - outer_loss(weights.detach() - step)[0]) / 2e-6
        >>> round(hypergradient[0].item(), 6), round(difference.item(), 6)
        (-0.043053, -0.043053)
        >>> from dgl_bilevel.errors import ConfigError
        >>> try:  # the cross-entropy loss makes the inner problem non-quadratic
        ...     Adjoint().check(dbl.LaplacianRegularization(loss="ce").bind(data, graph))
        ... except ConfigError as error:
        ...     print(str(error).split(";")[0])
        the adjoint method needs a quadratic inner problem
    """

    name = "adjoint"

    def __init__(self, tol: float = 1e-6, maxiter: int = 2000, warm_start: bool = True) -> None:
        if tol <= 0 or maxiter < 1:
            raise ConfigError("adjoint needs tol > 0 and maxiter >= 1")
        self.tol, self.maxiter, self.warm_start = float(tol), int(maxiter), bool(warm_start)
        self._previous: dict[str, torch.Tensor] = {}
        self.last_forward: Optional[SolveInfo] = None
        self.last_adjoint: Optional[SolveInfo] = None
        self._warner = ResidualWarner(f"{type(self).__name__}(tol={tol}, maxiter={maxiter})")
        self._warn_residual = SolveOptions().warn_residual

    def check(self, problem: InnerProblem) -> None:
        if not problem.is_quadratic:
            raise ConfigError(
                f"the adjoint method needs a quadratic inner problem; {type(problem).__name__} "
                f"with these settings is not (use loss='mse' for Laplacian regularisation, or implicit/unrolled)"
            )

    def solve(self, problem: InnerProblem, edge_weight: torch.Tensor, params: Params, monitor: Optional[Monitor] = None) -> Solution:
        self.check(problem)
        info: dict = {}
        weight = edge_weight.detach()
        system = problem.linear_system(weight)
        solution, forward_info = self.cg(system, system.rhs, "forward")
        self.last_forward = forward_info
        info.update({f"forward_{k}": v for k, v in forward_info.as_dict().items()})
        self._warner.check(forward_info, self._warn_residual, self._advice())
        if edge_weight.requires_grad:

            def pullback(cotangents: tuple) -> tuple:
                grad, adjoint_info = self.vjp(problem, weight, solution, cotangents[0])
                info.update({f"adjoint_{k}": v for k, v in adjoint_info.as_dict().items()})
                return (grad,)

            (solution,) = attach((solution,), (edge_weight,), pullback)
        params = problem.solution_to_params(solution)
        if monitor is not None:
            monitor(tuple(p.detach() for p in params))
        return Solution(params, float("nan"), info)

    def vjp(
        self, problem: InnerProblem, edge_weight: torch.Tensor, solution: torch.Tensor, cotangent: torch.Tensor
    ) -> tuple[torch.Tensor, SolveInfo]:
        """The hypergradient of ``<cotangent, Y(w)>``: the optimality condition is
        ``F(Y, w) = A(w) Y - b(w)``, ``J = A`` symmetric, solved by :meth:`cg`; the mixed product
        ``(dF/dw)^T p`` is ``-problem.edge_gradient(w, p, Y)`` when the problem declares it,
        autograd through ``linear_system`` otherwise."""
        system = problem.linear_system(edge_weight)
        edge_gradient = problem.edge_gradient  # a declared capability: None means autograd computes it

        def transpose_matvec(v: tuple) -> tuple:
            return (system.matvec(v[0]),)

        def args_vjp(v: tuple) -> tuple:
            if edge_gradient is not None:
                return (-edge_gradient(edge_weight, v[0], solution),)
            with torch.enable_grad():
                weight = edge_weight.detach().requires_grad_(True)
                system_w = problem.linear_system(weight)
                residual = (v[0] * system_w.matvec(solution)).sum() - (v[0] * system_w.rhs).sum()
                return torch.autograd.grad(residual, weight, allow_unused=True)

        # custom_root's root VJP (implicit_vjp) with the adjoint's own products and solver, not autograd's:
        # J = A is symmetric, so J^T v is the system's matvec; the closed-form edge gradient agrees with
        # autograd through linear_system to rounding (5e-16 relative) at a quarter of the cost (Cora's
        # Laplacian, float64: 0.32 against 1.17 ms); and the solve is the forward's Jacobi-preconditioned CG
        # with one inner product per column, warm-started from the previous outer iteration's adjoint --
        # what SolveOptions' named solvers do not offer.
        def solve(matvec, rhs: tuple) -> tuple:  # the preconditioned, warm-started column CG
            x, info = self.cg(system, rhs[0], "adjoint")
            return (x,), info

        (grad,), _, info = implicit_vjp(transpose_matvec, args_vjp, (cotangent,), SolveOptions(solve=solve))
        self.last_adjoint = info
        self._warner.check(info, self._warn_residual, self._advice())
        return (torch.zeros_like(edge_weight) if grad is None else grad), info

    def _advice(self) -> str:
        """What helps a CG solve of the quadratic problem's positive definite system that stopped short."""
        return f"raise maxiter (now {self.maxiter}; --cg-maxiter on the command line)"

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
