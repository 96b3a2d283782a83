"""Matrix-free linear solvers on tuples of tensors: preconditioned conjugate gradient and Neumann series.

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

Vector = tuple  # a tuple of tensors
MatVec = Callable[[Vector], Vector]


@dataclass
class SolveInfo:
    """How a linear solve ended: iterations used and the final relative residual ``|r| / |b|``."""

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
