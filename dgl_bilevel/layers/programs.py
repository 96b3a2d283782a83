"""Example bilevel programs for :class:`~dgl_bilevel.layers.BilevelLayer`, with their references.

* :class:`QuadraticProgram` -- quadratic upper and lower levels: ``x*(z)``, ``y*(z)`` and their
  Jacobians in closed form.
* :class:`SoftplusProgram` -- a strongly convex non-quadratic lower level (softplus + ridge)
  under a smooth non-quadratic upper level (log-cosh + log-sum-exp + ridge).
* :class:`LaplacianProgram` -- node values ``Y`` regularised by the Laplacian of a DGL graph
  whose edge weights are ``softplus(z)`` (lower), fitted to labels through a per-node or
  global offset ``x`` (upper); built on :mod:`dgl_bilevel.ops`.
* :class:`RobustLQ` -- open-loop control of a linear system against an adversarial
  disturbance: the layer's program, its closed-form solver and the true worst-case cost.

Every objective has the layer's signature ``objective(x, y, z) -> scalar``.
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F

from .._dgl import dgl
from ..errors import ConfigError
from ..ops import weighted_degrees, weighted_sum

D = torch.float64


def _spd(n: int, low: float, high: float, gen: torch.Generator) -> torch.Tensor:
    q, _ = torch.linalg.qr(torch.randn(n, n, generator=gen, dtype=D))
    return q @ torch.diag(torch.linspace(low, high, n, dtype=D)) @ q.T


class QuadraticProgram:
    """``G = 1/2 y'Py - y'(Cx + Dz + e)``, ``F = 1/2 x'Rx + 1/2 |y - t|_S^2 + x'Wy + z'Kx``.

    With ``M = P^-1 C`` and ``m(z) = P^-1 (Dz + e)``: ``y*(x) = Mx + m(z)``; the total upper
    function has Hessian ``H = R + M'SM + WM + M'W'`` and ``x* = -H^-1 (M'S(m - t) + Wm + K'z)``.

    Args:
        nx, ny, nz: sizes of the upper variable ``x``, the lower variable ``y`` and the input ``z``.
        seed: seeds the random matrices (float64), so a program is reproducible.

    Example:
        >>> import torch
        >>> from dgl_bilevel.layers import BilevelLayer
        >>> program = QuadraticProgram(nx=3, ny=4, nz=2, seed=0)
        >>> layer = BilevelLayer(program.upper, program.lower, upper_solver="newton",
        ...                      x_init=torch.zeros(3, dtype=D), y_init=torch.zeros(4, dtype=D))
        >>> z = torch.tensor([0.5, -1.0], dtype=D, requires_grad=True)
        >>> x, y = layer(z)
        >>> x_star, y_star = program.solution(z.detach())  # the closed form
        >>> bool(torch.allclose(x, x_star)), bool(torch.allclose(y, y_star))
        (True, True)
        >>> jx, _ = program.jacobians()
        >>> bool(torch.allclose(torch.autograd.grad(x.sum(), z)[0], jx.sum(0)))  # the layer's backward
        True
    """

    def __init__(self, nx: int = 3, ny: int = 4, nz: int = 2, seed: int = 0) -> None:
        gen = torch.Generator().manual_seed(seed)
        r = lambda *s: torch.randn(*s, generator=gen, dtype=D)  # noqa: E731
        self.P, self.S = _spd(ny, 0.5, 2.0, gen), _spd(ny, 0.5, 1.5, gen)
        self.R = _spd(nx, 1.5, 3.0, gen)
        self.C, self.Dm, self.e, self.t = r(ny, nx), r(ny, nz), r(ny), r(ny)
        self.W, self.K = 0.3 * r(nx, ny), r(nz, nx)
        self.nx, self.ny, self.nz = nx, ny, nz

    def upper(self, x: torch.Tensor, y: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        d = y - self.t
        return 0.5 * x @ self.R @ x + 0.5 * d @ self.S @ d + x @ self.W @ y + z @ self.K @ x

    def lower(self, x: torch.Tensor, y: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        return 0.5 * y @ self.P @ y - y @ (self.C @ x + self.Dm @ z + self.e)

    def _parts(self):
        M = torch.linalg.solve(self.P, self.C)
        H = self.R + M.T @ self.S @ M + self.W @ M + M.T @ self.W.T
        return M, H

    def solution(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(x*(z), y*(z))`` in closed form."""
        M, H = self._parts()
        m = torch.linalg.solve(self.P, self.Dm @ z + self.e)
        x = -torch.linalg.solve(H, M.T @ self.S @ (m - self.t) + self.W @ m + self.K.T @ z)
        return x, M @ x + m

    def jacobians(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(dx*/dz, dy*/dz)`` (constant: the solution is affine in ``z``)."""
        M, H = self._parts()
        dm = torch.linalg.solve(self.P, self.Dm)
        jx = -torch.linalg.solve(H, M.T @ self.S @ dm + self.W @ dm + self.K.T)
        return jx, M @ jx + dm


class SoftplusProgram:
    """``G = sum softplus(Ay + Bx + Cz) + mu/2 |y|^2 - e'y`` (strongly convex in ``y``, non-quadratic);
    ``F = sum log cosh(y - Tz) + logsumexp(Ux + Vy) + alpha/2 |x|^2 + z'Kx``.

    A program without a closed form: tests compare the layer's gradient with finite differences.

    Args:
        nx, ny, nz: sizes of ``x``, ``y`` and ``z``.
        mu: the lower level's ridge (its strong convexity in ``y``).
        alpha: the upper level's ridge on ``x``.
        seed: seeds the random matrices (float64).

    Example:
        >>> import torch
        >>> from dgl_bilevel.layers import BilevelLayer
        >>> program = SoftplusProgram(seed=0)
        >>> layer = BilevelLayer(program.upper, program.lower, upper_solver="newton",
        ...                      x_init=torch.zeros(3, dtype=D), y_init=torch.zeros(5, dtype=D))
        >>> z = torch.zeros(4, dtype=D, requires_grad=True)
        >>> x, y = layer(z)
        >>> layer.last_forward.converged, round(layer.last_forward.upper_value, 4)
        (True, 8.1207)
        >>> y_free = y.detach().requires_grad_(True)  # y is the lower level's minimiser at x
        >>> float(torch.autograd.grad(program.lower(x.detach(), y_free, z.detach()), y_free)[0].norm()) < 1e-6
        True
        >>> tuple(torch.autograd.grad(x.sum(), z)[0].shape)
        (4,)
    """

    def __init__(self, nx: int = 3, ny: int = 5, nz: int = 4, mu: float = 0.5, alpha: float = 1.0, seed: int = 0) -> None:
        gen = torch.Generator().manual_seed(seed)
        r = lambda *s: torch.randn(*s, generator=gen, dtype=D)  # noqa: E731
        self.A, self.B, self.C, self.e = r(6, ny), r(6, nx), r(6, nz), r(ny)
        self.T, self.U, self.V, self.K = r(ny, nz), r(4, nx), r(4, ny), 0.5 * r(nz, nx)
        self.mu, self.alpha = mu, alpha
        self.nx, self.ny, self.nz = nx, ny, nz

    def upper(self, x: torch.Tensor, y: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        return (torch.log(torch.cosh(y - self.T @ z)).sum() + torch.logsumexp(self.U @ x + self.V @ y, 0)
                + 0.5 * self.alpha * (x * x).sum() + z @ self.K @ x)

    def lower(self, x: torch.Tensor, y: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        return F.softplus(self.A @ y + self.B @ x + self.C @ z).sum() + 0.5 * self.mu * (y * y).sum() - self.e @ y


class LaplacianProgram:
    """Node values on a graph with learned edge weights ``w = softplus(z)`` (one per edge).

    Lower: ``G(x, Y, z) = 1/2 |Y - B - x|^2 + mu/2 sum_e w_e |Y_u - Y_v|^2`` (``x`` broadcast:
    ``[C]`` global or ``[N, C]`` per node). Upper: ``F(x, Y, z) = CE(Y[mask], labels) +
    alpha/2 |x|^2`` (summed cross-entropy). The smoothness term is ``sum_v deg_v |Y_v|^2 -
    2 <Y, A(w)^T Y>`` with ``deg = (W + W^T) 1``, on :func:`~dgl_bilevel.ops.weighted_degrees`
    and :func:`~dgl_bilevel.ops.weighted_sum` (differentiable to any order).

    Args:
        graph: the DGL graph whose edges carry the weights.
        base: ``[N, C]`` values the lower level pulls ``Y`` towards.
        labels: ``[N]`` classes the upper level fits on ``mask``.
        mask: the labelled nodes (boolean mask or indices).
        mu: the smoothness weight.
        alpha: the ridge on the offset ``x``.
        reverse: ``dgl.reverse(graph)`` if already built.

    Raises:
        ~dgl_bilevel.errors.ConfigError: ``base`` is not ``[num_nodes, C]``.

    Example:
        >>> import dgl, torch
        >>> from dgl_bilevel.layers import BilevelLayer
        >>> graph = dgl.to_bidirected(dgl.graph(([0, 1, 2, 3, 4], [1, 2, 3, 4, 5])))
        >>> base = torch.zeros(6, 2, dtype=D)
        >>> base[0, 0] = base[5, 1] = 1.0  # one seed per class at the path's ends
        >>> program = LaplacianProgram(graph, base, torch.tensor([0, 0, 0, 1, 1, 1]), torch.tensor([0, 5]))
        >>> layer = BilevelLayer(program.upper, program.lower, upper_solver="newton", precondition=program.jacobi,
        ...                      x_init=torch.zeros(2, dtype=D), y_init=torch.zeros(6, 2, dtype=D))
        >>> z = torch.zeros(graph.num_edges(), dtype=D, requires_grad=True)  # edge weights softplus(0)
        >>> x, y = layer(z)
        >>> y.argmax(1).tolist()
        [0, 0, 0, 1, 1, 1]
        >>> loss = torch.nn.functional.cross_entropy(y[[1, 4]], torch.tensor([0, 1]))
        >>> tuple(torch.autograd.grad(loss, z)[0].shape)  # one gradient entry per edge
        (10,)
        >>> float(program.smoothness(torch.eye(6, 1, dtype=D), torch.ones(10, dtype=D)))  # node 0's two edges
        2.0
    """

    def __init__(self, graph: "dgl.DGLGraph", base: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor,
                 mu: float = 1.0, alpha: float = 1.0, reverse: Optional["dgl.DGLGraph"] = None) -> None:
        if base.dim() != 2 or base.shape[0] != graph.num_nodes():
            raise ConfigError(f"base must be [num_nodes, C]; got {tuple(base.shape)} for {graph.num_nodes()} nodes")
        self.graph, self.reverse = graph, reverse if reverse is not None else dgl.reverse(graph)
        self.base, self.labels, self.mu, self.alpha = base, labels, mu, alpha
        self.mask = mask if mask.dtype != torch.bool else mask.nonzero().flatten()

    def weights(self, z: torch.Tensor) -> torch.Tensor:
        return F.softplus(z)

    def smoothness(self, y: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        """``sum_e w_e |Y_u - Y_v|^2``."""
        deg = weighted_degrees(self.graph, w, self.reverse)
        return (deg.unsqueeze(-1) * y * y).sum() - 2 * (y * weighted_sum(self.graph, y, w)).sum()

    def lower(self, x: torch.Tensor, y: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        return 0.5 * ((y - self.base - x) ** 2).sum() + 0.5 * self.mu * self.smoothness(y, self.weights(z))

    def jacobi(self, x: torch.Tensor, y: torch.Tensor, z: torch.Tensor):
        """``v -> v / (1 + mu deg)``: the inverse diagonal of ``G_yy`` (without self-loops), a
        preconditioner for :class:`~dgl_bilevel.layers.BilevelLayer` (``precondition=program.jacobi``)."""
        diagonal = (1.0 + self.mu * weighted_degrees(self.graph, self.weights(z), self.reverse)).unsqueeze(-1)
        return lambda v: v / diagonal

    def upper(self, x: torch.Tensor, y: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(y[self.mask], self.labels[self.mask], reduction="sum") + 0.5 * self.alpha * (x * x).sum()


class RobustLQ:
    """Open-loop control of ``s_{t+1} = A s_t + B u_t + e + d_t`` over ``T`` steps against a disturbance ``d``.

    ``e`` is a known constant drift (default zero). Stacking the states ``s_1..s_T`` gives
    ``s = Phi s_0 + Gd E + Gu u + Gd d`` (``E``: ``e`` repeated; ``u``: ``[b, T, m]``, ``d``:
    ``[b, T, n]``). The cost of a plan is ``J = (1/T) (sum_t s_t' Q s_t + u_t' R u_t)``
    with diagonal ``Q = diag(q)``, ``R = diag(r)``. The layer's program at ``z = (s0, q, r, rho)``
    (rows per sample)::

        upper  F(u, d, z) = sum_b J_b(u, d)                          (pay the cost under d)
        lower  G(u, d, z) = sum_b -J_b(u, d) + rho_b/2 |d_b|^2       (the adversary: max J - rho/2 |d|^2)

    ``G`` is strongly convex in ``d`` iff ``rho > lambda_max((2/T) Gd' Q Gd)``
    (:meth:`concavity_threshold`).

    Args:
        A: ``[n, n]`` state transition.
        B: ``[n, m]`` control matrix.
        horizon: ``T``, the number of steps.
        drift: ``[n]`` known constant drift ``e`` (default zero).

    Raises:
        ~dgl_bilevel.errors.ConfigError: mismatched ``A``/``B`` shapes or ``horizon < 1``.

    Example:
        >>> import torch
        >>> A = torch.tensor([[0.9, 0.1], [0.0, 0.8]], dtype=D)
        >>> B = torch.tensor([[0.0], [1.0]], dtype=D)
        >>> lq = RobustLQ(A, B, horizon=3)
        >>> s0, q, r = torch.tensor([[1.0, -1.0]], dtype=D), torch.ones(1, 2, dtype=D), torch.full((1, 1), 0.1, dtype=D)
        >>> rho = 2 * lq.concavity_threshold(q)  # an adversary the program can handle
        >>> u, d = lq.solve((s0, q, r, rho))
        >>> tuple(u.shape), tuple(d.shape), bool(torch.allclose(lq.worst_disturbance(s0, u, q, rho), d))
        ((1, 3, 1), (1, 3, 2), True)
        >>> nominal = lq.nominal_plan(s0, q, r)  # planned as if there were no disturbance
        >>> def worst_case(plan):  # the cost paid under the adversary's best response (F at d*)
        ...     return lq.cost(s0, plan, lq.worst_disturbance(s0, plan, q, rho), q, r)
        >>> bool(worst_case(u) <= worst_case(nominal))  # the robust plan is better against its adversary
        True
    """

    def __init__(self, A: torch.Tensor, B: torch.Tensor, horizon: int, drift: Optional[torch.Tensor] = None) -> None:
        n, m = B.shape
        if A.shape != (n, n) or horizon < 1:
            raise ConfigError(f"RobustLQ needs A [n, n], B [n, m] and horizon >= 1; got {tuple(A.shape)}, {tuple(B.shape)}, {horizon}")
        self.A, self.B, self.T, self.n, self.m = A, B, horizon, n, m
        powers = [torch.eye(n, dtype=A.dtype)]
        for _ in range(horizon):
            powers.append(A @ powers[-1])
        self.Phi = torch.cat(powers[1:], 0)  # [T n, n]
        Gd = torch.zeros(horizon * n, horizon * n, dtype=A.dtype)
        Gu = torch.zeros(horizon * n, horizon * m, dtype=A.dtype)
        for t in range(horizon):  # s_{t+1} = sum_{k <= t} A^{t-k} (B u_k + d_k)
            for k in range(t + 1):
                Gd[t * n:(t + 1) * n, k * n:(k + 1) * n] = powers[t - k]
                Gu[t * n:(t + 1) * n, k * m:(k + 1) * m] = powers[t - k] @ B
        self.Gu, self.Gd = Gu, Gd
        drift = torch.zeros(n, dtype=A.dtype) if drift is None else drift
        self.offset = Gd @ drift.repeat(horizon)  # [T n]: the drift's effect on the states

    def free_states(self, s0: torch.Tensor) -> torch.Tensor:
        """States without control or disturbance, ``Phi s_0 + Gd E`` (``[b, T n]``)."""
        return s0 @ self.Phi.T + self.offset

    def states(self, s0: torch.Tensor, u: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
        """``s_1..s_T`` as ``[b, T n]``."""
        b = s0.shape[0]
        return self.free_states(s0) + u.reshape(b, -1) @ self.Gu.T + d.reshape(b, -1) @ self.Gd.T

    def cost(self, s0, u, d, q, r) -> torch.Tensor:
        """``J`` per sample ``[b]``; ``q`` ``[b, n]`` or ``[n]``, ``r`` ``[b, m]`` or ``[m]``."""
        b = s0.shape[0]
        s = self.states(s0, u, d).reshape(b, self.T, self.n)
        return ((s * s * q.reshape(-1, 1, self.n)).sum((1, 2)) + (u * u * r.reshape(-1, 1, self.m)).sum((1, 2))) / self.T

    def upper(self, u: torch.Tensor, d: torch.Tensor, z: tuple) -> torch.Tensor:
        s0, q, r, rho = z
        return self.cost(s0, u, d, q, r).sum()

    def lower(self, u: torch.Tensor, d: torch.Tensor, z: tuple) -> torch.Tensor:
        s0, q, r, rho = z
        return (-self.cost(s0, u, d, q, r) + 0.5 * rho * (d * d).sum((1, 2))).sum()

    def _blocks(self, q: torch.Tensor, b: int) -> torch.Tensor:
        return q.reshape(-1, 1, self.n).expand(b, self.T, self.n).reshape(b, -1)  # diag of the stacked Q

    def concavity_threshold(self, q: torch.Tensor) -> torch.Tensor:
        """``lambda_max((2/T) Gd' diag(q) Gd)`` per row of ``q`` (differentiable)."""
        qs = self._blocks(q, q.shape[0] if q.dim() > 1 else 1)
        mats = (2.0 / self.T) * torch.einsum("ij,bi,ik->bjk", self.Gd, qs, self.Gd)
        return torch.linalg.eigvalsh(mats)[:, -1]

    def worst_disturbance(self, s0, u, q, rho) -> torch.Tensor:
        """``argmax_d J(u, d) - rho/2 |d|^2`` (closed form; differentiable in every argument)."""
        b = s0.shape[0]
        qs = self._blocks(q, b)
        c = self.free_states(s0) + u.reshape(b, -1) @ self.Gu.T
        N = rho.reshape(-1, 1, 1) * torch.eye(self.T * self.n, dtype=c.dtype) \
            - (2.0 / self.T) * torch.einsum("ij,bi,ik->bjk", self.Gd, qs, self.Gd)
        rhs = (2.0 / self.T) * (qs * c) @ self.Gd
        return torch.linalg.solve(N, rhs.unsqueeze(-1)).squeeze(-1).reshape(b, self.T, self.n)

    def solve(self, z: tuple, u0: Optional[torch.Tensor] = None, d0: Optional[torch.Tensor] = None) -> tuple:
        """The program's exact solution ``(u*, d*)`` (dense, per sample): a user upper solver."""
        s0, q, r, rho = z
        b, Tn, Tm = s0.shape[0], self.T * self.n, self.T * self.m
        qs, rs = self._blocks(q, b), r.reshape(-1, 1, self.m).expand(b, self.T, self.m).reshape(b, -1)
        N = rho.reshape(-1, 1, 1) * torch.eye(Tn, dtype=s0.dtype) - (2.0 / self.T) * torch.einsum(
            "ij,bi,ik->bjk", self.Gd, qs, self.Gd)
        # d*(u) = Ku u + kc
        GdQ = (2.0 / self.T) * self.Gd.T.unsqueeze(0) * qs.unsqueeze(1)  # [b, Tn, Tn]
        Ku = torch.linalg.solve(N, GdQ @ self.Gu)
        c = self.free_states(s0)
        kc = torch.linalg.solve(N, (GdQ @ c.unsqueeze(-1))).squeeze(-1)
        M = self.Gu.unsqueeze(0) + self.Gd.unsqueeze(0) @ Ku  # s = s0' + M u
        s_off = c + kc @ self.Gd.T
        H = M.transpose(1, 2) @ (qs.unsqueeze(-1) * M) + torch.diag_embed(rs)
        u = -torch.linalg.solve(H, (M.transpose(1, 2) @ (qs * s_off).unsqueeze(-1))).squeeze(-1)
        d = (Ku @ u.unsqueeze(-1)).squeeze(-1) + kc
        return u.reshape(b, self.T, self.m), d.reshape(b, self.T, self.n)

    def nominal_plan(self, s0: torch.Tensor, q: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
        """``argmin_u J(u, 0)`` (the finite-horizon LQ plan without disturbance)."""
        b = s0.shape[0]
        qs, rs = self._blocks(q, b), r.reshape(-1, 1, self.m).expand(b, self.T, self.m).reshape(b, -1)
        H = torch.einsum("ij,bi,ik->bjk", self.Gu, qs, self.Gu) + torch.diag_embed(rs)
        rhs = (qs * self.free_states(s0)) @ self.Gu
        return -torch.linalg.solve(H, rhs.unsqueeze(-1)).squeeze(-1).reshape(b, self.T, self.m)


__all__ = ["LaplacianProgram", "QuadraticProgram", "RobustLQ", "SoftplusProgram"]
