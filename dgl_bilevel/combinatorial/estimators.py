"""Gradient estimators that back-propagate through a discrete solver ``y(c)``.

The Jacobian of a discrete solver is zero almost everywhere; each estimator replaces it:

* **straight-through** (:func:`straight_through`): the forward is the hard solution, the backward
  pretends ``y(c) = c`` (identity; ``-c`` for a minimiser) or ``y(c) = relax(c)`` with a sigmoid or
  softmax relaxation (Bengio et al. 2013, "Estimating or propagating gradients through stochastic
  neurons").
* **perturbed optimisers** (:func:`perturbed`, :func:`fenchel_young_loss`; Berthet et al. 2020,
  "Learning with differentiable perturbed optimizers"): ``y_s(c) = E_Z[y(c + s Z)]`` is smooth in
  ``c``, and its Jacobian is ``E[y(c + s Z) grad_nu(Z)^T] / s`` with ``nu = -log density`` of ``Z``
  (integration by parts): ``grad_nu(Z) = Z`` for a standard Gaussian and ``1 - exp(-Z)`` for a
  standard Gumbel, coordinate-wise. Both are estimated by Monte Carlo with the same samples.
* **blackbox interpolation** (:func:`blackbox`; Vlastelica et al. 2020, "Differentiation of
  blackbox combinatorial solvers"): the gradient of a piecewise-linear interpolation of
  ``L(y(c))``, from one extra solve with scores shifted in the direction that lowers the loss.

Solvers follow :mod:`.base`: ``sense="max"`` maximises ``<c, y>``, ``"min"`` minimises it.
"""
from __future__ import annotations

from typing import Optional

import torch

from ..errors import ConfigError
from .base import SolverLike, as_solver, positive_float, positive_int, problem_ndim, sign, solve_samples
from .registry import ESTIMATORS

NOISES = ("gaussian", "gumbel")
RELAXATIONS = ("identity", "sigmoid", "softmax")


# ---------------------------------------------------------------------------------- noise
def sample_noise(noise: str, shape: tuple, dtype: torch.dtype, device: torch.device,
                 generator: Optional[torch.Generator] = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Standard noise ``Z`` of ``shape`` and its score ``grad_nu(Z)`` (``nu = -log density``).

    Gaussian: ``grad_nu(Z) = Z``. Gumbel: ``Z = -log E`` with ``E ~ Exp(1)`` (so ``exp(-Z) = E``) and
    ``nu(z) = z + exp(-z)``, hence ``grad_nu(Z) = 1 - E``. Both scores have mean zero.

    Args:
        noise: ``"gaussian"`` or ``"gumbel"``.
        shape, dtype, device: of the samples.
        generator: seeds the draw (``None``: the global generator).

    Returns:
        ``(Z, grad_nu(Z))``, both of ``shape``.

    Raises:
        ~dgl_bilevel.errors.ConfigError: if ``noise`` is unknown.

    Example:
        >>> import torch
        >>> from dgl_bilevel.combinatorial import sample_noise
        >>> z, score = sample_noise("gumbel", (2, 3), torch.float64, torch.device("cpu"),
        ...                         torch.Generator().manual_seed(0))
        >>> z.shape, torch.allclose(score, 1 - torch.exp(-z))
        (torch.Size([2, 3]), True)
        >>> z, score = sample_noise("gaussian", (4,), torch.float32, torch.device("cpu"))
        >>> score is z
        True
    """
    if noise == "gaussian":
        z = torch.randn(shape, generator=generator, dtype=dtype, device=device)
        return z, z
    if noise == "gumbel":
        e = torch.empty(shape, dtype=dtype, device=device).exponential_(generator=generator)
        e = e.clamp_min(torch.finfo(dtype).tiny)
        return -torch.log(e), 1.0 - e
    raise ConfigError(f"unknown noise {noise!r}; choose from {NOISES}")


def _sum_trailing(x: torch.Tensor, n: int) -> torch.Tensor:
    """Sum over the last ``n`` dimensions (none if ``n == 0``)."""
    return x.flatten(start_dim=x.dim() - n).sum(-1) if n > 0 else x


def _expand_trailing(x: torch.Tensor, n: int) -> torch.Tensor:
    return x.reshape(x.shape + (1,) * n)


def _check_linear(y: torch.Tensor, c: torch.Tensor, estimator: str) -> None:
    if y.shape != c.shape:
        raise ConfigError(f"{estimator} needs a solution shaped like the scores (a linear objective <c, y>); "
                          f"the solver returned {tuple(y.shape)} for scores {tuple(c.shape)}")


# ---------------------------------------------------------------------------------- straight-through
class _StraightThrough(torch.autograd.Function):
    @staticmethod
    def forward(ctx, c, solver, s, relaxation, temperature):
        y = solver.solve(c.detach()).to(c.dtype)
        _check_linear(y, c, "the straight-through estimator")
        ctx.s, ctx.relaxation, ctx.temperature = s, relaxation, temperature
        ctx.save_for_backward(c)
        return y

    @staticmethod
    def backward(ctx, g):
        (c,) = ctx.saved_tensors
        s, tau = ctx.s, ctx.temperature
        if ctx.relaxation == "identity":
            grad = g if s > 0 else -g
        elif ctx.relaxation == "sigmoid":  # d/dc sigmoid(s c / tau)
            p = torch.sigmoid(s * c / tau)
            grad = g * p * (1 - p) * (s / tau)
        else:  # softmax over the last dimension: J^T g = p * (g - <g, p>) * s / tau
            p = torch.softmax(s * c / tau, dim=-1)
            grad = p * (g - (g * p).sum(-1, keepdim=True)) * (s / tau)
        return grad, None, None, None, None


def straight_through(solve: SolverLike, c: torch.Tensor, *, relaxation: str = "identity",
                     temperature: float = 1.0, sense: Optional[str] = None) -> torch.Tensor:
    """Hard solution ``y(c)`` forward; a surrogate Jacobian backward (straight-through).

    ``relaxation="identity"`` (default) passes the incoming gradient unchanged for a maximiser (the
    surrogate ``y = c``) and negated for a minimiser (``y = -c``: raising a cost makes its item less
    likely to be chosen). ``"sigmoid"`` and ``"softmax"`` (over the last dimension) back-propagate
    through ``sigmoid(+-c / temperature)`` / ``softmax(+-c / temperature)`` instead, the sign ``+``
    for a maximiser. The solution must have the scores' shape.

    Args:
        solve: a :class:`~.base.Solver` or a callable ``c -> y`` (see :func:`~.base.as_solver`).
        c: the scores (or costs, for a minimiser).
        relaxation: ``"identity"``, ``"sigmoid"`` or ``"softmax"``: the surrogate of the backward.
        temperature: of the sigmoid/softmax relaxation (positive).
        sense: ``"max"``/``"min"`` for a callable; must agree with a solver's own.

    Returns:
        The hard solution ``y(c)``, shaped like ``c``, with the surrogate gradient attached.

    Raises:
        ~dgl_bilevel.errors.ConfigError: on an unknown relaxation, a non-positive temperature, invalid scores, or a
            solution not shaped like ``c``.

    Example:
        The identity surrogate hands each score the gradient of its own solution entry.

        >>> import torch
        >>> from dgl_bilevel.combinatorial import TopK, straight_through
        >>> c = torch.tensor([0.5, 2.0, -1.0, 1.0], requires_grad=True)
        >>> y = straight_through(TopK(2), c)
        >>> y
        tensor([0., 1., 0., 1.], grad_fn=<_StraightThroughBackward>)
        >>> (y * torch.tensor([1.0, 2.0, 3.0, 4.0])).sum().backward()
        >>> c.grad
        tensor([1., 2., 3., 4.])
    """
    solver = as_solver(solve, sense)
    if relaxation is None:
        relaxation = "identity"
    if relaxation not in RELAXATIONS:
        raise ConfigError(f"unknown straight-through relaxation {relaxation!r}; choose from {RELAXATIONS}")
    temperature = positive_float("temperature", temperature)
    solver.check(c)
    return _StraightThrough.apply(c, solver, sign(solver.sense), relaxation, temperature)


# ---------------------------------------------------------------------------------- perturbed
class _Perturbed(torch.autograd.Function):
    @staticmethod
    def forward(ctx, c, solver, batch_ndim, sigma, noise, num_samples, hard, control_variate, generator):
        z, score = sample_noise(noise, (num_samples, *c.shape), c.dtype, c.device, generator)
        ys = solve_samples(solver, c.detach().unsqueeze(0) + sigma * z)
        if tuple(ys.shape[1:1 + batch_ndim]) != tuple(c.shape[:batch_ndim]):
            raise ConfigError(f"the solver returned solutions of shape {tuple(ys.shape[1:])} for scores "
                              f"{tuple(c.shape)}: the leading (batch) dimensions must be kept")
        ctx.batch_ndim, ctx.sigma, ctx.control_variate = batch_ndim, sigma, control_variate
        ctx.save_for_backward(ys, score)
        return solver.solve(c.detach()).to(c.dtype) if hard else ys.mean(0)

    @staticmethod
    def backward(ctx, g):
        ys, score = ctx.saved_tensors
        m, nb = ys.shape[0], ctx.batch_ndim
        # <g, y(c + s Z_m)> per sample and problem, shape (M, *batch)
        a = _sum_trailing(g.unsqueeze(0) * ys, ys.dim() - 1 - nb)
        if ctx.control_variate and m > 1:
            # leave-one-out baseline: (1/(M-1)) sum_m (a_m - mean(a)) score_m, still unbiased
            a = (a - a.mean(0, keepdim=True)) * (m / (m - 1))
        grad = (_expand_trailing(a, score.dim() - 1 - nb) * score).mean(0) / ctx.sigma
        return grad, None, None, None, None, None, None, None, None


def perturbed(solve: SolverLike, c: torch.Tensor, *, num_samples: int = 10, sigma: float = 1.0,
              noise: str = "gaussian", hard: bool = False, control_variate: bool = True,
              generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """Perturbed optimiser ``y_s(c) = E_Z[y(c + sigma Z)]`` (Berthet et al. 2020), by Monte Carlo.

    Forward: the mean of ``num_samples`` perturbed solutions (``hard=True``: the unperturbed
    solution ``y(c)`` instead, with the same backward). Backward: the vector-Jacobian product of
    ``y_s`` estimated as ``(1/M) sum_m <g, y(c + sigma Z_m)> grad_nu(Z_m) / sigma`` on the forward's
    samples; ``control_variate=True`` subtracts a leave-one-out mean of ``<g, y_m>`` (unbiased,
    lower variance; needs ``num_samples >= 2``). ``noise``: ``"gaussian"`` or ``"gumbel"`` (any
    solver; for top-1 the Gumbel forward is ``softmax(c / sigma)`` in expectation). Independent of
    the solver's sense. ``generator`` seeds the noise.

    Args:
        solve: a :class:`~.base.Solver` or a callable ``c -> y`` (its sense is not needed).
        c: the scores; the solver's ``event_ndim`` trailing dimensions form one problem.
        num_samples: Monte-Carlo samples ``M`` (positive).
        sigma: the noise scale (positive).
        noise: ``"gaussian"`` or ``"gumbel"``.
        hard: return the unperturbed solution in the forward.
        control_variate: use the leave-one-out baseline in the backward.
        generator: seeds the noise.

    Returns:
        A tensor shaped like ``c``: the sample mean of the perturbed solutions (or ``y(c)`` if
        ``hard``), differentiable in ``c``.

    Raises:
        ~dgl_bilevel.errors.ConfigError: on invalid options or scores, or a solver that drops the batch dimensions.

    Example:
        Each sample selects exactly two items, so the smoothed selection sums to 2.

        >>> import torch
        >>> from dgl_bilevel.combinatorial import TopK, perturbed
        >>> c = torch.tensor([0.5, 2.0, -1.0, 1.0], requires_grad=True)
        >>> y = perturbed(TopK(2), c, num_samples=100, sigma=0.5, generator=torch.Generator().manual_seed(0))
        >>> y[3].backward()  # how the chance of selecting item 3 moves with each score
        >>> y = y.detach()
        >>> round(float(y.sum()), 4), float(y[1]), float(y[2]), bool(c.grad[3] > 0), bool(c.grad[0] < 0)
        (2.0, 1.0, 0.0, True, True)
    """
    solver = as_solver(solve)
    num_samples = positive_int("num_samples", num_samples)
    sigma = positive_float("sigma", sigma, " (the noise scale of the perturbed optimiser)")
    if noise not in NOISES:
        raise ConfigError(f"unknown noise {noise!r}; choose from {NOISES}")
    solver.check(c)
    batch_ndim = c.dim() - problem_ndim(solver, c)
    if hard and not (torch.is_grad_enabled() and c.requires_grad):
        return solver.solve(c.detach()).to(c.dtype)  # no backward: skip the samples
    return _Perturbed.apply(c, solver, batch_ndim, sigma, noise, num_samples, bool(hard), bool(control_variate),
                            generator)


class _FenchelYoung(torch.autograd.Function):
    @staticmethod
    def forward(ctx, c, target, solver, event_ndim, sigma, noise, num_samples, generator, s):
        z, _ = sample_noise(noise, (num_samples, *c.shape), c.dtype, c.device, generator)
        theta = c.detach().unsqueeze(0) + sigma * z
        ys = solve_samples(solver, theta)
        _check_linear(ys[0], c, "the Fenchel-Young loss")
        smoothed_max = _sum_trailing(theta * ys, event_ndim).mean(0)  # F_s(c) = E[<c + sZ, y(c + sZ)>]
        loss = s * (smoothed_max - _sum_trailing(c.detach() * target.detach(), event_ndim))
        ctx.s, ctx.event_ndim = s, event_ndim
        ctx.save_for_backward(c, ys.mean(0), target)
        return loss

    @staticmethod
    def backward(ctx, g):
        c, y_mean, target = ctx.saved_tensors
        g = _expand_trailing(g, ctx.event_ndim)
        grad_c = ctx.s * g * (y_mean - target)
        grad_target = -ctx.s * g * c if ctx.needs_input_grad[1] else None
        return grad_c, grad_target, None, None, None, None, None, None, None


def fenchel_young_loss(solve: SolverLike, c: torch.Tensor, target: torch.Tensor, *, num_samples: int = 10,
                       sigma: float = 1.0, noise: str = "gaussian", generator: Optional[torch.Generator] = None,
                       sense: Optional[str] = None) -> torch.Tensor:
    """Perturbed Fenchel-Young loss (Berthet et al. 2020), one value per problem.

    For a maximiser, ``F_s(c) - <c, y_target>`` with ``F_s(c) = E[max_y <c + sigma Z, y>]``; its
    gradient is ``y_s(c) - y_target``, estimated with the same samples. For a minimiser, the mirror
    image ``<c, y_target> - E[min_y <c + sigma Z, y>]`` with gradient ``y_target - y_s(c)``. The
    loss omits the paper's term ``sigma * Omega(y_target)``, which does not depend on ``c`` -- so it
    can be negative; only its gradient matters. Returns shape ``c.shape[:-event_ndim]``.

    Args:
        solve: a :class:`~.base.Solver` or a callable ``c -> y`` (see :func:`~.base.as_solver`).
        c: the scores (or costs, for a minimiser).
        target: the solution to learn, shaped like ``c``.
        num_samples, sigma, noise, generator: as in :func:`perturbed`.
        sense: ``"max"``/``"min"`` for a callable; must agree with a solver's own.

    Returns:
        The loss per problem, shape ``c.shape[:-event_ndim]`` (a scalar for one problem).

    Raises:
        ~dgl_bilevel.errors.ConfigError: on invalid options or scores, a target not shaped like ``c``, or a solution
            not shaped like ``c``.

    Example:
        Two problems (rows): the first already ranks its target far ahead (zero gradient); the
        second ranks it last, so the gradient ``y_sigma(c) - target`` pushes its scores towards it.

        >>> import torch
        >>> from dgl_bilevel.combinatorial import TopK, fenchel_young_loss
        >>> c = torch.tensor([[10.0, 10.0, -10.0, -10.0], [-10.0, -10.0, 10.0, 10.0]], requires_grad=True)
        >>> target = torch.tensor([[1.0, 1.0, 0.0, 0.0], [1.0, 1.0, 0.0, 0.0]])
        >>> loss = fenchel_young_loss(TopK(2), c, target, num_samples=5, sigma=0.1,
        ...                           generator=torch.Generator().manual_seed(0))
        >>> loss.shape
        torch.Size([2])
        >>> loss.sum().backward()
        >>> c.grad
        tensor([[ 0.,  0.,  0.,  0.],
                [-1., -1.,  1.,  1.]])
    """
    solver = as_solver(solve, sense)
    num_samples = positive_int("num_samples", num_samples)
    sigma = positive_float("sigma", sigma, " (the noise scale of the perturbed optimiser)")
    if noise not in NOISES:
        raise ConfigError(f"unknown noise {noise!r}; choose from {NOISES}")
    solver.check(c)
    target = torch.as_tensor(target).to(c.dtype)
    if target.shape != c.shape:
        raise ConfigError(f"target has shape {tuple(target.shape)}; the scores have {tuple(c.shape)}")
    return _FenchelYoung.apply(c, target, solver, problem_ndim(solver, c), sigma, noise, num_samples, generator,
                               sign(solver.sense))


# ---------------------------------------------------------------------------------- blackbox
class _Blackbox(torch.autograd.Function):
    @staticmethod
    def forward(ctx, c, solver, s, lam):
        y = solver.solve(c.detach()).to(c.dtype)
        _check_linear(y, c, "blackbox interpolation")
        ctx.solver, ctx.s, ctx.lam = solver, s, lam
        ctx.save_for_backward(c, y)
        return y

    @staticmethod
    def backward(ctx, g):
        c, y = ctx.saved_tensors
        s, lam = ctx.s, ctx.lam
        # the solution for scores moved (by lam) in the direction that lowers the linearised loss
        y_lam = ctx.solver.solve(c.detach() - s * lam * g).to(c.dtype)
        return (s / lam) * (y - y_lam), None, None, None


def blackbox(solve: SolverLike, c: torch.Tensor, *, lam: float = 1.0, sense: Optional[str] = None) -> torch.Tensor:
    """Hard solution forward; blackbox-interpolation gradient backward (Vlastelica et al. 2020).

    With ``g = dL/dy`` at ``y = y(c)``:

    * minimiser (the paper's convention): ``dL/dc = -(1/lam) [y(c) - y(c + lam g)]``;
    * maximiser (``y_max(c) = y_min(-c)``): ``dL/dc = (1/lam) [y(c) - y(c - lam g)]``.

    Either way the extra solve sees scores moved towards solutions with lower linearised loss.
    ``lam`` trades the interpolation's faithfulness (small) against its informativeness (large);
    it is on the scale of ``c / g``. The solution must have the scores' shape.

    Args:
        solve: a :class:`~.base.Solver` or a callable ``c -> y`` (see :func:`~.base.as_solver`).
        c: the scores (or costs, for a minimiser).
        lam: the interpolation strength (positive).
        sense: ``"max"``/``"min"`` for a callable; must agree with a solver's own.

    Returns:
        The hard solution ``y(c)``, shaped like ``c``, with the interpolation gradient attached.

    Raises:
        ~dgl_bilevel.errors.ConfigError: on a non-positive ``lam``, invalid scores, or a solution not shaped like ``c``.

    Example:
        The loss rewards item 1, already chosen: the extra solve (scores ``c - 2 g``) swaps it for
        item 0, so the gradient raises item 1's score and lowers item 0's.

        >>> import torch
        >>> from dgl_bilevel.combinatorial import TopK, blackbox
        >>> c = torch.tensor([0.5, 2.0, -1.0, 1.0], requires_grad=True)
        >>> y = blackbox(TopK(2), c, lam=2.0)
        >>> (y * torch.tensor([0.0, 1.0, 0.0, 0.0])).sum().backward()
        >>> y.detach(), c.grad
        (tensor([0., 1., 0., 1.]), tensor([-0.5000,  0.5000,  0.0000,  0.0000]))
    """
    solver = as_solver(solve, sense)
    lam = positive_float("lam", lam, " (blackbox interpolation strength)")
    solver.check(c)
    return _Blackbox.apply(c, solver, sign(solver.sense), lam)


ESTIMATORS.register("ste", straight_through,
                    help="straight-through: hard solution forward, identity (or sigmoid/softmax) backward")
ESTIMATORS.register("perturbed", perturbed,
                    help="perturbed optimiser (Berthet et al. 2020): Gaussian or Gumbel Monte-Carlo smoothing")
ESTIMATORS.register("blackbox", blackbox,
                    help="blackbox interpolation (Vlastelica et al. 2020): one extra solve in the backward")

__all__ = ["straight_through", "perturbed", "blackbox", "fenchel_young_loss", "sample_noise", "NOISES",
           "RELAXATIONS"]
