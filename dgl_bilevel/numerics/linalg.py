"""Matrix-free linear solvers on tuples of tensors: preconditioned conjugate gradient (symmetric
positive definite), MINRES (symmetric indefinite), restarted GMRES (general) and Neumann series,
and :func:`linear_solve`, which picks one by name from :data:`~dgl_bilevel.registry.LINEAR_SOLVERS`
(the one list of solver names: the implicit hypergradient and ``--implicit-solver`` read it too).

torchopt's ``linalg.cg`` solves the same systems but reports neither the residual nor the
iteration count, and treats a multi-column right-hand side as one long vector. Here ``dot``
decides the geometry: one global inner product (the implicit method's Hessian systems) or
one per column (``A Y = B`` with ``A`` acting column-wise), so each column converges on its
own. Every solve returns a :class:`SolveInfo`.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Callable, Optional, Sequence

import torch

from ..errors import ConfigError
from ..registry import LINEAR_SOLVERS

Vector = tuple  # a tuple of tensors
MatVec = Callable[[Vector], Vector]


@dataclass
class SolveInfo:
    """How a linear solve ended: iterations used and the final relative residual ``|r| / |b|``.

    Every solver of this module returns one next to its solution, so a caller can check the
    solve instead of trusting it (the hypergradients copy it into their ``info``).

    Attributes:
        iterations: matrix-vector products the solver counted (its iterations).
        residual: the final relative residual ``|rhs - A x| / |rhs|`` (the largest over columns
            with :func:`column_dot`).
        converged: whether ``residual`` reached the requested tolerance.

    Example:
        >>> import torch
        >>> from dgl_bilevel.numerics import conjugate_gradient
        >>> A = torch.tensor([[2.0, 1.0], [1.0, 3.0]], dtype=torch.float64)
        >>> _, info = conjugate_gradient(lambda v: (A @ v[0],), (torch.ones(2, dtype=torch.float64),), tol=1e-10)
        >>> info.iterations, info.converged, info.residual < 1e-10
        (2, True, True)
        >>> sorted(info.as_dict())
        ['converged', 'iterations', 'residual']
    """

    iterations: int
    residual: float
    converged: bool

    def as_dict(self) -> dict:
        return asdict(self)


def global_dot(a: Vector, b: Vector) -> torch.Tensor:
    """One inner product over every entry of every tensor."""
    return sum((x * y).sum() for x, y in zip(a, b))


def column_dot(a: Vector, b: Vector) -> torch.Tensor:
    """One inner product per column of ``[N, C]`` tensors (shape ``[C]``)."""
    return sum((x * y).sum(0) for x, y in zip(a, b))


def _axpy(alpha: torch.Tensor, x: Vector, y: Vector) -> Vector:
    return tuple(b + alpha * a for a, b in zip(x, y))


def conjugate_gradient(
    matvec: MatVec,
    rhs: Vector,
    *,
    x0: Optional[Vector] = None,
    precondition: Optional[MatVec] = None,
    dot: Callable[[Vector, Vector], torch.Tensor] = global_dot,
    tol: float = 1e-6,
    maxiter: int = 100,
) -> tuple[Vector, SolveInfo]:
    """Solve ``A x = rhs`` for symmetric positive (semi-)definite ``A`` given as ``matvec``.

    Stops when every relative residual ``|r| / |rhs|`` (per column with ``column_dot``) is at
    most ``tol``, or after ``maxiter`` matrix-vector products. Zero right-hand sides give zero.

    Args:
        matvec: ``v -> A v`` on tuples of tensors shaped like ``rhs``.
        rhs: the right-hand side, a tuple of tensors.
        x0: the starting point (default zeros).
        precondition: ``r -> M^-1 r`` for a symmetric positive definite ``M`` (e.g. :func:`jacobi`).
        dot: the inner product: :func:`global_dot` (one system) or :func:`column_dot` (one
            independent system per column of ``[N, C]`` tensors).
        tol: the relative residual at which to stop.
        maxiter: matrix-vector products at most.

    Returns:
        ``(x, info)``: the solution, a tuple shaped like ``rhs``, and its :class:`SolveInfo`.

    Example:
        >>> import torch
        >>> from dgl_bilevel.numerics.linalg import conjugate_gradient, column_dot
        >>> A = torch.tensor([[4.0, 1, 0, 0], [1, 3, 1, 0], [0, 1, 2, 1], [0, 0, 1, 3]], dtype=torch.float64)
        >>> b = torch.tensor([1.0, 2, 3, 4], dtype=torch.float64)
        >>> (x,), info = conjugate_gradient(lambda v: (A @ v[0],), (b,), tol=1e-10)
        >>> bool(torch.allclose(x, torch.linalg.solve(A, b))), info.converged
        (True, True)
        >>> B = torch.stack([b, 2 * b], dim=1)  # two right-hand sides, each solved on its own
        >>> (X,), info = conjugate_gradient(lambda v: (A @ v[0],), (B,), dot=column_dot, tol=1e-10)
        >>> tuple(X.shape), bool(torch.allclose(X, torch.linalg.solve(A, B)))
        ((4, 2), True)
    """
    rhs = tuple(rhs)
    b_norm = dot(rhs, rhs).sqrt()
    scale = torch.where(b_norm > 0, b_norm, torch.ones_like(b_norm))
    if x0 is None:
        x = tuple(torch.zeros_like(b) for b in rhs)
        r = rhs
    else:
        x = tuple(x0)
        r = tuple(b - ax for b, ax in zip(rhs, matvec(x)))
    z = precondition(r) if precondition else r
    p = z
    rz = dot(r, z)
    residual = float((dot(r, r).sqrt() / scale).max())
    iterations = 0
    while residual > tol and iterations < maxiter:
        ap = matvec(p)
        curvature = dot(p, ap)
        alpha = torch.where(curvature != 0, rz / torch.where(curvature != 0, curvature, torch.ones_like(curvature)), torch.zeros_like(rz))
        x = _axpy(alpha, p, x)
        r = _axpy(-alpha, ap, r)
        iterations += 1
        residual = float((dot(r, r).sqrt() / scale).max())
        if residual <= tol:
            break
        z = precondition(r) if precondition else r
        rz_new = dot(r, z)
        beta = torch.where(rz != 0, rz_new / torch.where(rz != 0, rz, torch.ones_like(rz)), torch.zeros_like(rz))
        p = _axpy(beta, p, z)
        rz = rz_new
    return x, SolveInfo(iterations, residual, residual <= tol)


def neumann_series(
    matvec: MatVec,
    rhs: Vector,
    *,
    step: float = 1.0,
    maxiter: int = 50,
    tol: float = 0.0,
    dot: Callable[[Vector, Vector], torch.Tensor] = global_dot,
) -> tuple[Vector, SolveInfo]:
    """``x = step * sum_k (I - step A)^k rhs``: converges when ``|1 - step * eig(A)| < 1``.

    Cheaper per iteration than CG (no inner products needed), but slower to converge; the
    residual reported costs one extra ``matvec``.

    Args:
        matvec: ``v -> A v`` on tuples of tensors shaped like ``rhs``.
        rhs: the right-hand side, a tuple of tensors.
        step: the series' step; it diverges where ``|1 - step * eig(A)| >= 1``.
        maxiter: terms of the series at most.
        tol: stop once a term is at most ``tol`` times the sum (relative); 0 runs all
            ``maxiter`` terms and reports ``converged=False``.
        dot: the inner product the stopping rule and the residual use (:func:`global_dot` or
            :func:`column_dot`).

    Returns:
        ``(x, info)``: the truncated series, a tuple shaped like ``rhs``, and its :class:`SolveInfo`.

    Example:
        >>> import torch
        >>> from dgl_bilevel.numerics import neumann_series
        >>> A = torch.tensor([[4.0, 1, 0, 0], [1, 3, 1, 0], [0, 1, 2, 1], [0, 0, 1, 3]], dtype=torch.float64)
        >>> b = torch.tensor([1.0, 2, 3, 4], dtype=torch.float64)
        >>> (x,), info = neumann_series(lambda v: (A @ v[0],), (b,), step=0.3, maxiter=200, tol=1e-10)
        >>> bool(torch.allclose(x, torch.linalg.solve(A, b))), info.converged  # eig(A) in (0.9, 4.8)
        (True, True)
        >>> _, info = neumann_series(lambda v: (A @ v[0],), (b,), step=0.3, maxiter=5)
        >>> info.iterations, round(info.residual, 3)  # five terms only: an approximation
        (5, 0.004)
    """
    term = tuple(step * b for b in rhs)
    x = term
    iterations = 0
    for iterations in range(1, maxiter + 1):
        term = tuple(t - step * at for t, at in zip(term, matvec(term)))
        x = tuple(a + t for a, t in zip(x, term))
        if tol and float(dot(term, term).sqrt().max()) <= tol * float(dot(x, x).sqrt().max()):
            break
    r = tuple(b - ax for b, ax in zip(rhs, matvec(x)))
    b_norm = dot(tuple(rhs), tuple(rhs)).sqrt()
    residual = float((dot(r, r).sqrt() / torch.where(b_norm > 0, b_norm, torch.ones_like(b_norm))).max())
    return x, SolveInfo(iterations, residual, tol > 0 and residual <= tol)


def jacobi(diagonal: Sequence[torch.Tensor], active: Optional[torch.Tensor] = None) -> MatVec:
    """Diagonal preconditioner ``r -> r / diag``; rows outside ``active`` are zeroed (kept out of the solve)."""
    inverse = []
    for d in diagonal:
        inv = torch.where(d > 0, 1.0 / torch.where(d > 0, d, torch.ones_like(d)), torch.zeros_like(d))
        if active is not None:
            inv = inv * active.reshape(-1, *([1] * (inv.dim() - 1))).to(inv.dtype)
        inverse.append(inv)
    return lambda r: tuple(i * x for i, x in zip(inverse, r))


def minres(
    matvec: MatVec,
    rhs: Vector,
    *,
    x0: Optional[Vector] = None,
    tol: float = 1e-6,
    maxiter: int = 100,
    damping: float = 0.0,
    precondition: Optional[MatVec] = None,
) -> tuple[Vector, SolveInfo]:
    """Solve ``(A + damping I) x = rhs`` for symmetric, possibly indefinite ``A`` (MINRES, Paige &
    Saunders 1975).

    Each iteration minimises ``|rhs - A x|`` over the Krylov space, so the residual never grows
    -- unlike CG, which divides by ``p^T A p`` and breaks down or diverges when the curvature
    changes sign (a GNN's Hessian after a finite number of Adam steps). Lanczos three-term
    recurrence with Givens rotations: memory of five vectors. The reported residual is the
    recurrence's, which equals the true one in exact arithmetic.

    ``precondition`` applies ``M^-1`` for a symmetric positive definite ``M`` (e.g. :func:`jacobi`):
    the recurrence then runs on ``M^-1 A`` in the ``M`` inner product and needs iterations in
    proportion to the conditioning of ``M^-1 A`` rather than of ``A``. It tracks the residual in
    the ``M^-1`` norm; the reported residual is the Euclidean one, recomputed from ``x`` (one
    product each time the tracked residual reaches its target, not counted in ``iterations``).

    Args:
        matvec: ``v -> A v`` for symmetric ``A``, on tuples of tensors shaped like ``rhs``.
        rhs: the right-hand side, a tuple of tensors (solved as one flat vector).
        x0: the starting point (default zeros).
        tol: the relative residual at which to stop.
        maxiter: Lanczos steps (matrix-vector products) at most.
        damping: added to ``A``'s diagonal.
        precondition: ``r -> M^-1 r`` for a symmetric positive definite ``M``.

    Returns:
        ``(x, info)``: the solution, a tuple shaped like ``rhs``, and its :class:`SolveInfo`.

    Example:
        >>> import torch
        >>> from dgl_bilevel.numerics import minres
        >>> S = torch.tensor([[2.0, 1, 0, 0], [1, -1, 1, 0], [0, 1, 3, 1], [0, 0, 1, -2]], dtype=torch.float64)
        >>> bool((torch.linalg.eigvalsh(S) < 0).any())  # indefinite
        True
        >>> b = torch.tensor([1.0, 2, 3, 4], dtype=torch.float64)
        >>> (x,), info = minres(lambda v: (S @ v[0],), (b,), tol=1e-10)
        >>> bool(torch.allclose(x, torch.linalg.solve(S, b))), info.converged
        (True, True)
        >>> (x,), _ = minres(lambda v: (S @ v[0],), (b,), tol=1e-10, damping=0.5)
        >>> bool(torch.allclose(x, torch.linalg.solve(S + 0.5 * torch.eye(4, dtype=torch.float64), b)))
        True
    """
    rhs = tuple(rhs)
    b = _flat(rhs)  # one flat vector: each recurrence step is a handful of kernels, not one per tensor

    def apply(flat: torch.Tensor) -> torch.Tensor:
        out = _flat(matvec(_unflat(flat, rhs)))
        return out.add_(flat, alpha=damping) if damping else out

    if precondition is not None:
        x, info = _preconditioned_minres(apply, b, lambda flat: _flat(precondition(_unflat(flat, rhs))),
                                         None if x0 is None else _flat(tuple(x0)).clone(), tol, maxiter)
        return _unflat(x, rhs), info
    if x0 is None:
        x = torch.zeros_like(b)
        r = b
    else:
        x = _flat(tuple(x0)).clone()
        r = b - apply(x)
    beta = float(r.norm())
    scale = float(b.norm()) or 1.0
    residual = beta / scale
    if beta == 0.0 or residual <= tol:
        return _unflat(x, rhs), SolveInfo(0, residual, True)
    v_prev, v = torch.zeros_like(b), r / beta
    w_prev, w_prev2 = torch.zeros_like(b), torch.zeros_like(b)
    c_prev, s_prev, c_prev2, s_prev2 = 1.0, 0.0, 1.0, 0.0
    eta = beta  # the rotated right-hand side's last entry: |eta| is the residual norm
    iterations = 0
    while iterations < maxiter:
        u = apply(v)
        alpha = float(torch.dot(v, u))
        u.sub_(v, alpha=alpha).sub_(v_prev, alpha=beta)
        beta_next = float(u.norm())
        # rotations k-2 and k-1 applied to the new column (0, beta, alpha, beta_next) of T
        epsilon = s_prev2 * beta
        delta_bar = c_prev2 * beta
        delta = c_prev * delta_bar + s_prev * alpha
        gamma_bar = -s_prev * delta_bar + c_prev * alpha
        gamma = (gamma_bar**2 + beta_next**2) ** 0.5
        iterations += 1
        if gamma == 0.0:  # singular on the Krylov space: no further progress is possible
            break
        c, s = gamma_bar / gamma, beta_next / gamma
        w = (v - delta * w_prev - epsilon * w_prev2).div_(gamma)
        x.add_(w, alpha=c * eta)
        eta = -s * eta
        residual = abs(eta) / scale
        if residual <= tol or beta_next == 0.0:
            break
        v_prev, v = v, u.div_(beta_next)
        w_prev2, w_prev = w_prev, w
        c_prev2, s_prev2, c_prev, s_prev = c_prev, s_prev, c, s
        beta = beta_next
    return _unflat(x, rhs), SolveInfo(iterations, residual, residual <= tol)


def _preconditioned_minres(apply: Callable[[torch.Tensor], torch.Tensor], b: torch.Tensor,
                           inverse: Callable[[torch.Tensor], torch.Tensor], x: Optional[torch.Tensor],
                           tol: float, maxiter: int) -> tuple[torch.Tensor, SolveInfo]:
    """MINRES on flat vectors with ``inverse`` applying ``M^-1`` (see :func:`minres`).

    The Lanczos vectors ``v`` are kept unnormalised next to ``z = M^-1 v``; ``gamma = sqrt(z.v)``
    is their ``M^-1`` norm. When the tracked residual ``|eta| / gamma_0`` reaches its target, the
    Euclidean residual is computed; above ``tol`` the iteration goes on with a target tightened
    by the ratio of the two (a badly scaled ``M`` makes them differ).
    """
    scale = float(b.norm()) or 1.0

    def euclidean(x: torch.Tensor) -> float:
        return float((b - apply(x)).norm()) / scale

    if x is None:
        x, v = torch.zeros_like(b), b
    else:
        v = b - apply(x)
    zv = inverse(v)
    gamma = max(float(torch.dot(zv, v)), 0.0) ** 0.5
    if gamma == 0.0:  # the start solves the system already
        residual = euclidean(x)
        return x, SolveInfo(0, residual, residual <= tol)
    eta, gamma0 = gamma, gamma
    v_prev = torch.zeros_like(b)
    w_prev, w = torch.zeros_like(b), torch.zeros_like(b)
    gamma_prev, c_prev, c, s_prev, s = 1.0, 1.0, 1.0, 0.0, 0.0
    target, residual, iterations, fresh = tol, 1.0, 0, False
    while iterations < maxiter:
        fresh = False
        zv = zv / gamma
        az = apply(zv)
        iterations += 1
        delta = float(torch.dot(az, zv))
        v_next = az.sub_(v, alpha=delta / gamma).sub_(v_prev, alpha=gamma / gamma_prev)
        z_next = inverse(v_next)
        gamma_next = max(float(torch.dot(z_next, v_next)), 0.0) ** 0.5
        # rotations k-2 and k-1 applied to the new column of the tridiagonal matrix, then rotation k
        a0 = c * delta - c_prev * s * gamma
        a1 = (a0 * a0 + gamma_next * gamma_next) ** 0.5
        a2 = s * delta + c_prev * c * gamma
        a3 = s_prev * gamma
        if a1 == 0.0:  # singular on the Krylov space
            break
        c_next, s_next = a0 / a1, gamma_next / a1
        w_next = (zv - a3 * w_prev - a2 * w).div_(a1)
        x = x.add(w_next, alpha=c_next * eta)
        eta = -s_next * eta
        if abs(eta) / gamma0 <= target or gamma_next == 0.0:
            residual, fresh = euclidean(x), True
            if residual <= tol or gamma_next == 0.0:
                break
            target *= max(min(tol / residual, 0.5), 1e-3)
        v_prev, v, zv = v, v_next, z_next
        w_prev, w = w, w_next
        gamma_prev, gamma = gamma, gamma_next
        c_prev, c, s_prev, s = c, c_next, s, s_next
    if not fresh:
        residual = euclidean(x)
    return x, SolveInfo(iterations, residual, residual <= tol)


def _flat(vec: Vector) -> torch.Tensor:
    return torch.cat([t.reshape(-1) for t in vec])


def _unflat(flat: torch.Tensor, like: Vector) -> Vector:
    out, start = [], 0
    for t in like:
        out.append(flat[start:start + t.numel()].reshape(t.shape))
        start += t.numel()
    return tuple(out)


def gmres(
    matvec: MatVec,
    rhs: Vector,
    *,
    x0: Optional[Vector] = None,
    tol: float = 1e-6,
    maxiter: int = 100,
    restart: int = 30,
) -> tuple[Vector, SolveInfo]:
    """Solve ``A x = rhs`` for a general (non-symmetric) ``A``: restarted GMRES(``restart``).

    Minimises the residual over a Krylov space built by Arnoldi (modified Gram-Schmidt),
    restarted every ``restart`` products to bound memory at ``restart + 1`` vectors. The
    residual reported is recomputed from ``x`` at the end (one extra product, not counted).

    Args:
        matvec: ``v -> A v`` on tuples of tensors shaped like ``rhs``.
        rhs: the right-hand side, a tuple of tensors (solved as one flat vector).
        x0: the starting point (default zeros).
        tol: the relative residual at which to stop.
        maxiter: matrix-vector products at most, over all restarts.
        restart: Krylov vectors kept before a restart.

    Returns:
        ``(x, info)``: the solution, a tuple shaped like ``rhs``, and its :class:`SolveInfo`.

    Example:
        >>> import torch
        >>> from dgl_bilevel.numerics import gmres
        >>> N = torch.tensor([[3.0, 1, 0, 0], [-1, 3, 1, 0], [0, -1, 3, 1], [1, 0, -1, 3]], dtype=torch.float64)
        >>> b = torch.tensor([1.0, 2, 3, 4], dtype=torch.float64)
        >>> (x,), info = gmres(lambda v: (N @ v[0],), (b,), tol=1e-10)  # N is not symmetric
        >>> bool(torch.allclose(x, torch.linalg.solve(N, b))), info.converged
        (True, True)
        >>> (x,), info = gmres(lambda v: (N @ v[0],), (b,), tol=1e-10, restart=2)  # less memory, more products
        >>> bool(torch.allclose(x, torch.linalg.solve(N, b))), info.iterations > 4
        (True, True)
    """
    rhs = tuple(rhs)
    b = _flat(rhs)
    scale = float(b.norm()) or 1.0
    x = torch.zeros_like(b) if x0 is None else _flat(tuple(x0)).clone()

    def apply(flat: torch.Tensor) -> torch.Tensor:
        return _flat(matvec(_unflat(flat, rhs)))

    iterations = 0
    r = b - apply(x) if x0 is not None else b.clone()
    residual = float(r.norm()) / scale
    while residual > tol and iterations < maxiter:
        beta = float(r.norm())
        size = min(restart, maxiter - iterations)
        basis = [r / beta]
        hess = torch.zeros(size + 1, size, dtype=torch.float64)
        cs, sn = torch.zeros(size, dtype=torch.float64), torch.zeros(size, dtype=torch.float64)
        g = torch.zeros(size + 1, dtype=torch.float64)
        g[0] = beta
        k = 0
        for j in range(size):
            w = apply(basis[j])
            iterations += 1
            for i in range(j + 1):
                hess[i, j] = float(torch.dot(w, basis[i]))
                w = w - hess[i, j].item() * basis[i]
            hess[j + 1, j] = float(w.norm())
            for i in range(j):  # earlier rotations on the new column
                hi, hi1 = hess[i, j].item(), hess[i + 1, j].item()
                hess[i, j], hess[i + 1, j] = cs[i] * hi + sn[i] * hi1, -sn[i] * hi + cs[i] * hi1
            denom = float(torch.hypot(hess[j, j], hess[j + 1, j]))
            k = j + 1
            if denom == 0.0:  # A is singular on the Krylov space
                k = j
                break
            cs[j], sn[j] = hess[j, j] / denom, hess[j + 1, j] / denom
            hess[j, j], hess[j + 1, j] = denom, 0.0
            g[j + 1], g[j] = -sn[j] * g[j], cs[j] * g[j]
            lucky = float(w.norm()) <= 1e-14 * beta
            if abs(float(g[j + 1])) / scale <= tol or lucky:
                break
            basis.append(w / float(w.norm()))
        if k == 0:
            break
        y = torch.linalg.solve_triangular(hess[:k, :k], g[:k].unsqueeze(-1), upper=True).squeeze(-1)
        x = x + sum(float(y[i]) * basis[i] for i in range(k))
        r = b - apply(x)
        residual = float(r.norm()) / scale
    return _unflat(x, rhs), SolveInfo(iterations, residual, residual <= tol)


#: The solvers by name (the registry :data:`~dgl_bilevel.registry.LINEAR_SOLVERS`: ``"gmres" in SOLVERS``,
#: ``SOLVERS.choices()``); filled by the registrations below.
SOLVERS = LINEAR_SOLVERS
#: A user-supplied solver: ``(matvec, rhs) -> (x, SolveInfo)``.
Solver = Callable[[MatVec, Vector], "tuple[Vector, SolveInfo]"]


def _damped(matvec: MatVec, damping: float) -> MatVec:
    """``v -> matvec(v) + damping v`` (``matvec`` itself when ``damping`` is 0)."""
    if not damping:
        return matvec
    return lambda v: tuple(a + damping * x for a, x in zip(matvec(v), v))


# The linear solvers by name: the one list that linear_solve, SolveOptions, Implicit and the command line's
# --implicit-solver read (LINEAR_SOLVERS, a registry, so the configuration can name its choices without torch).
# Each entry solves ``(A + damping I) x = rhs`` from the undamped ``matvec`` and the common options.
@LINEAR_SOLVERS.register("minres", help="symmetric, indefinite allowed (its residual never grows)")
def _solve_minres(matvec: MatVec, rhs: Vector, *, tol: float, maxiter: int, damping: float,
                  x0: Optional[Vector], neumann_step: float, restart: int) -> tuple[Vector, SolveInfo]:
    # damps its flat vector itself: one kernel instead of one per tensor
    return minres(matvec, rhs, x0=x0, tol=tol, maxiter=maxiter, damping=damping)


@LINEAR_SOLVERS.register("cg", help="conjugate gradient, symmetric positive definite (diverges on "
                                    "indefinite Hessians)")
def _solve_cg(matvec: MatVec, rhs: Vector, *, tol: float, maxiter: int, damping: float,
              x0: Optional[Vector], neumann_step: float, restart: int) -> tuple[Vector, SolveInfo]:
    return conjugate_gradient(_damped(matvec, damping), rhs, x0=x0, tol=tol, maxiter=maxiter)


@LINEAR_SOLVERS.register("gmres", help="restarted GMRES (restart 30), any system")
def _solve_gmres(matvec: MatVec, rhs: Vector, *, tol: float, maxiter: int, damping: float,
                 x0: Optional[Vector], neumann_step: float, restart: int) -> tuple[Vector, SolveInfo]:
    return gmres(_damped(matvec, damping), rhs, x0=x0, tol=tol, maxiter=maxiter, restart=restart)


@LINEAR_SOLVERS.register("neumann", help="Neumann series with --neumann-step, needs |1 - step * eig| < 1")
def _solve_neumann(matvec: MatVec, rhs: Vector, *, tol: float, maxiter: int, damping: float,
                   x0: Optional[Vector], neumann_step: float, restart: int) -> tuple[Vector, SolveInfo]:
    return neumann_series(_damped(matvec, damping), rhs, step=neumann_step, maxiter=maxiter, tol=tol)


def linear_solve(
    matvec: MatVec,
    rhs: Vector,
    solve: "str | Solver" = "cg",
    *,
    tol: float = 1e-6,
    maxiter: int = 100,
    damping: float = 0.0,
    x0: Optional[Vector] = None,
    neumann_step: float = 1.0,
    restart: int = 30,
) -> tuple[Vector, SolveInfo]:
    """Solve ``(A + damping I) x = rhs`` with a solver registered in :data:`LINEAR_SOLVERS` or a callable.

    ``cg`` needs ``A + damping I`` symmetric positive definite, ``minres`` only symmetric,
    ``gmres`` nothing; ``neumann`` needs ``|1 - neumann_step * eig| < 1``. A callable receives
    the damped ``matvec`` and ``rhs`` (and none of the options). The reported residual is that
    of the damped system.

    Args:
        matvec: ``v -> A v`` (undamped) on tuples of tensors shaped like ``rhs``.
        rhs: the right-hand side, a tuple of tensors.
        solve: ``"cg"``, ``"minres"``, ``"gmres"``, ``"neumann"`` or a callable
            ``(matvec, rhs) -> (x, SolveInfo)``.
        tol: the relative residual at which to stop.
        maxiter: matrix-vector products at most.
        damping: added to ``A``'s diagonal.
        x0: the starting point (default zeros; the Neumann series ignores it).
        neumann_step: the Neumann series' step.
        restart: GMRES's restart length.

    Returns:
        ``(x, info)``: the solution, a tuple shaped like ``rhs``, and its :class:`SolveInfo`.

    Raises:
        ~dgl_bilevel.errors.ConfigError: ``solve`` is neither a registered name nor a callable.

    Example:
        >>> import torch
        >>> from dgl_bilevel.numerics import linear_solve
        >>> A = torch.tensor([[4.0, 1, 0, 0], [1, 3, 1, 0], [0, 1, 2, 1], [0, 0, 1, 3]], dtype=torch.float64)
        >>> b = torch.tensor([1.0, 2, 3, 4], dtype=torch.float64)
        >>> exact = torch.linalg.solve(A + torch.eye(4, dtype=torch.float64), b)  # damping 1
        >>> for name in ("cg", "minres", "gmres", "neumann"):
        ...     (x,), info = linear_solve(lambda v: (A @ v[0],), (b,), name, tol=1e-10, maxiter=300,
        ...                               damping=1.0, neumann_step=0.2)
        ...     print(name, bool(torch.allclose(x, exact)), info.converged)
        cg True True
        minres True True
        gmres True True
        neumann True True
        >>> from dgl_bilevel.errors import ConfigError
        >>> try:
        ...     linear_solve(lambda v: (A @ v[0],), (b,), "lu")
        ... except ConfigError as error:
        ...     print(str(error).split(";")[0])
        unknown linear solver 'lu'
    """
    rhs = tuple(rhs)
    if callable(solve):
        return solve(_damped(matvec, damping), rhs)
    if not isinstance(solve, str) or solve not in LINEAR_SOLVERS:
        raise ConfigError(f"unknown linear solver {solve!r}; choose from {', '.join(LINEAR_SOLVERS.choices())} or "
                          "pass a callable")
    return LINEAR_SOLVERS[solve](matvec, rhs, tol=tol, maxiter=maxiter, damping=damping, x0=x0,
                                 neumann_step=neumann_step, restart=restart)
