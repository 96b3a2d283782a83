"""Implicit differentiation at the inner solution (implicit function theorem).

The optimality condition is stationarity, ``F(phi, w) = d g / d phi (phi*, w) = 0``; its Jacobian
is the Hessian ``H = d^2 g / dphi^2`` (symmetric). With ``u = dF/dphi`` the outer gradient,

    dF/dw = dF/dw|_direct - (d^2 g / dw dphi)^T v,    (H + damping I) v = u,

computed by :func:`~dgl_bilevel.numerics.implicit_diff.implicit_vjp`: matrix-free, on
Hessian-vector products from ``torch.autograd.grad`` (double backward through DGL's kernels;
torchopt's functorch-based ``custom_root`` cannot trace DGL, DESIGN.md section 2) -- or, when the
inner problem declares hand-derived derivatives (``derivatives``: the paper's GNN, the Laplacian), from
those, one tangent pass per product. The inner
solve keeps no graph, so memory is that of one forward/backward pass, independent of the number
of inner steps. Exact only as far as the inner problem is solved: after a finite number of
Adam steps a GNN's Hessian is indefinite, which is why ``minres`` and damping exist (see
docs/benchmarks.md for the measured residuals).
"""
from __future__ import annotations

import dataclasses
from typing import Any, Optional

import torch

from ..errors import ConfigError
from ..inner.base import InnerProblem, Params
from ..ops import constant_edge_weights
from ..registry import LINEAR_SOLVERS
from .base import HypergradMethod, Monitor, Solution, optimize
from ..numerics.implicit_diff import (
    ResidualWarner, SolveOptions, attach, implicit_vjp, optimality_products, residual_advice, stationarity,
)
from ..numerics.linalg import SolveInfo, Vector

# The implicit hypergradient's defaults, declared once: ``Implicit()`` uses them, and the command line
# leaves --implicit-solver, --cg-maxiter, --cg-tol and --damping at None, which resolves to them
# (ExperimentConfig.resolved fills the solver and the damping from here, for config.yaml to show them).
#: The linear solver (any of :data:`~dgl_bilevel.registry.LINEAR_SOLVERS`).
DEFAULT_SOLVER = "minres"
#: Hessian-vector products at most.
DEFAULT_MAXITER = 200
#: Relative residual at which the solve stops.
DEFAULT_TOL = 1e-2
#: Damping of a trained model's Hessian (:func:`default_damping`).
TRAINED_MODEL_DAMPING = 1e-3


def default_damping(problem: Any) -> float:
    """The damping used when none is given, for ``problem`` (an inner problem or its class): 1e-3 for a
    trained model (``needs_steps``: a GNN after finitely many Adam steps, whose Hessian is indefinite and
    so ill-conditioned that the undamped solve does not converge in 200 products), 0 otherwise
    (Laplacian, label propagation: damping would only bias them); docs/lab/defaults.md has the measurements."""
    return TRAINED_MODEL_DAMPING if problem.needs_steps else 0.0


class Implicit(HypergradMethod):
    """Implicit hypergradient.

    Args:
        solver: a name in :data:`~dgl_bilevel.registry.LINEAR_SOLVERS`: ``"minres"`` (symmetric,
            indefinite ``H + damping I`` allowed), ``"cg"`` (conjugate gradient; needs it positive
            definite), ``"gmres"`` (restarted GMRES, any system) or ``"neumann"``
            (``step * sum_k (I - step (H + damping I))^k``).
        maxiter: Hessian-vector products at most.
        tol: relative residual at which the solver stops.
        damping: added to the Hessian's diagonal (Tikhonov); makes non-convex or
            ill-conditioned problems solvable at the cost of a bias (directions of curvature
            ``lambda`` are scaled by ``lambda / (lambda + damping)``). ``None``: the rule
            :func:`default_damping`, applied to the problem each solve is for (1e-3 for a trained
            model, 0 otherwise) -- the command line's default too.
        neumann_step: the Neumann series' step (must be below ``2 / lambda_max(H)``).
        warm_start: start the solver from the previous outer iteration's solution.
        warn_residual: warn (once per instance) when a solve ends above this relative residual.

    Defaults: ``minres`` (CG diverges on a trained GNN's indefinite Hessian; MINRES's residual
    never grows), ``tol=1e-2``, ``maxiter=200`` and :func:`default_damping`; the measurements
    behind them are in docs/lab/defaults.md.

    Every solve's final residual and iteration count are in the returned solution's ``info``
    (``implicit_residual``, ``implicit_iterations``, ``implicit_converged``) once the outer
    loss has been back-propagated, and in :attr:`last_solve`.

    Raises:
        ~dgl_bilevel.errors.ConfigError: an unknown ``solver`` or invalid solve options; from
            :meth:`check` (at the first solve): an inner problem that draws new graphs at every
            inner step (``stochastic_objective``), which has no fixed point to differentiate.

    Example:
        >>> import dgl, torch
        >>> import dgl_bilevel as dbl
        >>> graph = dgl.to_bidirected(dgl.graph(([0, 1, 2, 3, 4], [1, 2, 3, 4, 5])))
        >>> data = dbl.BilevelData(graph, torch.eye(6, dtype=torch.float64), torch.tensor([0, 0, 0, 1, 1, 1]),
        ...                        v_in=[0, 5], v_out=[1, 4], val=[2], test=[3])
        >>> problem = dbl.LaplacianRegularization(loss="mse").bind(data, graph)
        >>> targets = torch.nn.functional.one_hot(data.labels[data.v_out], 2).double()
        >>> def hypergradient(method):
        ...     weights = torch.ones(graph.num_edges(), dtype=torch.float64, requires_grad=True)
        ...     start = problem.starting_params(torch.Generator().manual_seed(0))
        ...     solution = method.solve(problem, weights, start)
        ...     loss = ((problem.predict(solution.params, weights)[data.v_out] - targets) ** 2).sum()
        ...     return torch.autograd.grad(loss, weights)[0], solution.info
        >>> implicit = Implicit(solver="cg", tol=1e-12)
        >>> grad, info = hypergradient(implicit)
        >>> info["implicit_converged"], implicit.damping_for(problem)  # no damping for a convex problem
        (True, 0.0)
        >>> exact, _ = hypergradient(dbl.Adjoint(tol=1e-12))  # the exact solve of this quadratic problem
        >>> bool(torch.allclose(grad, exact, atol=1e-8))
        True
        >>> Implicit().describe()  # the defaults; the damping is chosen per problem
        {'hypergrad': 'implicit', 'solver': 'minres', 'maxiter': 200, 'tol': 0.01, 'damping': 'auto'}
    """

    name = "implicit"

    def __init__(
        self,
        solver: str = DEFAULT_SOLVER,
        maxiter: int = DEFAULT_MAXITER,
        tol: float = DEFAULT_TOL,
        damping: Optional[float] = None,
        neumann_step: float = 1.0,
        warm_start: bool = False,
        warn_residual: float = 1e-2,
    ) -> None:
        if not isinstance(solver, str) or solver not in LINEAR_SOLVERS:
            raise ConfigError(f"implicit solver must be one of {', '.join(LINEAR_SOLVERS.choices())}, got {solver!r}")
        self.solver, self.maxiter, self.tol = solver, int(maxiter), float(tol)
        self.damping: Optional[float] = None if damping is None else float(damping)
        self.neumann_step, self.warm_start = float(neumann_step), bool(warm_start)
        # checks every option once (SolveOptions' own checks); the damping of a None is filled per problem
        self.options = SolveOptions(solve=solver, tol=self.tol, maxiter=self.maxiter,
                                    damping=0.0 if self.damping is None else self.damping,
                                    neumann_step=self.neumann_step, warn_residual=float(warn_residual))
        self.last_solve: Optional[SolveInfo] = None
        #: how the last solve's Hessian products were computed: "hand-derived" or "autograd"
        self.products: Optional[str] = None
        self._previous: Optional[tuple] = None
        self._warner = ResidualWarner(f"{type(self).__name__}(solver={solver!r}, maxiter={maxiter})")
        #: the damping the rule gave for the problem last checked (what describe() reports for damping=None)
        self._checked_damping: Optional[float] = None

    def _described_damping(self) -> "float | str":
        """The damping given, else the rule's value for the problem last checked, else ``"auto"``."""
        if self.damping is not None:
            return self.damping
        return "auto" if self._checked_damping is None else self._checked_damping

    def damping_for(self, problem: InnerProblem) -> float:
        """The damping a solve for ``problem`` uses: the one given, else :func:`default_damping`."""
        return default_damping(problem) if self.damping is None else self.damping

    def options_for(self, problem: InnerProblem) -> SolveOptions:
        """How the linear system of ``problem`` is solved (solver, tolerance, cap, damping, ...)."""
        if self.damping is not None:
            return self.options
        return dataclasses.replace(self.options, damping=default_damping(problem))

    def check(self, problem: InnerProblem) -> None:
        self._checked_damping = self.damping_for(problem)
        if problem.stochastic_objective:
            raise ConfigError(f"{type(problem).__name__} draws new graphs at every inner step: its inner problem has "
                              "no fixed point to differentiate implicitly; use the unrolled or truncated "
                              "hypergradient, or draw graphs once per outer iteration (resample 'outer')")

    def solve(self, problem: InnerProblem, edge_weight: torch.Tensor, params: Params, monitor: Optional[Monitor] = None) -> Solution:
        params, _, value = optimize(problem, edge_weight, params, problem.steps, differentiable=False, monitor=monitor)
        params = tuple(p.detach() for p in params)
        info: dict = {}
        if edge_weight.requires_grad:
            weight = edge_weight.detach()

            def pullback(cotangents: tuple) -> tuple:
                grad, solve_info = self.vjp(problem, weight, params, cotangents)
                info.update({f"implicit_{k}": v for k, v in solve_info.as_dict().items()})
                info["implicit_products"] = self.products
                return (grad,)

            params = attach(params, (edge_weight,), pullback)
        return Solution(tuple(params), value, info)

    def vjp(
        self, problem: InnerProblem, edge_weight: torch.Tensor, params: Params, cotangent: Vector
    ) -> tuple[torch.Tensor, SolveInfo]:
        """``-(d^2 g / dw dphi)^T (H + damping I)^-1 cotangent`` at ``params`` and its solve's info."""
        weight = edge_weight.detach().requires_grad_(True)
        x0 = self._previous if self.warm_start else None
        if x0 is not None and any(a.shape != c.shape for a, c in zip(x0, cotangent)):
            x0 = None
        # custom_root's root VJP (implicit_vjp) on F = d objective / d params, not the custom_root decorator:
        # the damping follows the problem (default_damping), the products must run inside one
        # constant_edge_weights block, the warm start spans outer iterations of this object and each solve's
        # info goes into the Solution. Only the generic branch's products are custom_root's own (autograd's
        # double backward, optimality_products); the other two stay because they are cheaper. Hand-derived
        # products (the paper's GNN, the Laplacian) agree with autograd's to rounding (8e-16 relative) and
        # cost less: on Cora in float64 (the regression fixture's GNN) 0.4 against 1.1 ms per Hessian product
        # and 0.7 against 1.5 ms for the mixed one. Term-by-term products (mini-batched problems) rebuild one
        # term's graph per product, so memory stays that of one term instead of the whole objective's.
        with constant_edge_weights():  # every product reuses one sparse matrix of the weights
            with torch.enable_grad():
                terms = problem.objective_terms(weight)
            if terms is not None:
                matvec, args_vjp = _term_products(terms, params, weight)
            elif problem.derivatives is not None:  # hand-derived products (the paper's GNN, the Laplacian)
                matvec, args_vjp = _hand_derived_products(problem.derivatives, params, weight)
            else:  # one graph of the gradient, reused by every product
                matvec, args_vjp, _ = optimality_products(stationarity(problem.objective), tuple(params), (weight,))
            options = self.options_for(problem)
            (grad,), v, info = implicit_vjp(matvec, args_vjp, tuple(cotangent), options, x0)
        self.products = "autograd" if terms is not None or problem.derivatives is None else "hand-derived"
        if self.warm_start:
            self._previous = tuple(t.detach() for t in v)
        self.last_solve = info
        self._warner.check(info, options.warn_residual,
                           residual_advice(self.solver, self.maxiter, options.damping, parameter="solver"))
        return (torch.zeros_like(edge_weight) if grad is None else grad), info

    def describe(self) -> dict:
        return {
            "hypergrad": self.name,
            "solver": self.solver,
            "maxiter": self.maxiter,
            "tol": self.tol,
            "damping": self._described_damping(),
            **({"neumann_step": self.neumann_step} if self.solver == "neumann" else {}),
        }


def _hand_derived_products(derivatives, params: Params, weight: torch.Tensor):
    """Hessian- and mixed-vector products from an inner problem's hand-derived second derivatives
    (:attr:`~dgl_bilevel.inner.base.InnerProblem.derivatives`): what does not depend on the vector
    is computed once, each product is one tangent pass (about 35% cheaper than autograd's double
    backward on Cora's GNN)."""
    weight = weight.detach()
    _, _, record = derivatives.gradient(tuple(params), weight)
    hessian, mixed = derivatives.hessian_products(record, weight)
    return hessian, (lambda v: (mixed(tuple(v)),))


def _term_products(terms: list, params: Params, weight: torch.Tensor):
    """Hessian- and mixed-vector products accumulated term by term, rebuilding each term's
    gradient graph per product: memory of one term (mini-batched problems)."""
    variables = tuple(p.detach().requires_grad_(True) for p in params)

    def accumulate(v: Vector, inputs: tuple) -> tuple:
        total = [torch.zeros_like(x) for x in inputs]
        with torch.enable_grad():
            for term in terms:
                g = torch.autograd.grad(term(variables), variables, create_graph=True, allow_unused=True)
                live = [(gi, vi) for gi, vi in zip(g, v) if gi is not None and gi.requires_grad]
                if not live:
                    continue
                parts = torch.autograd.grad([gi for gi, _ in live], inputs, grad_outputs=[vi for _, vi in live],
                                            allow_unused=True)
                total = [t + p if p is not None else t for t, p in zip(total, parts)]
        return tuple(total)

    return (lambda v: accumulate(v, variables)), (lambda v: accumulate(v, (weight,)))
