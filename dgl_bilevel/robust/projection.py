"""Euclidean projection onto the relaxed attack set ``{s : 0 <= s <= 1, sum(s) <= budget}``.

KKT: the projection of ``a`` is ``clamp(a - mu, 0, 1)`` with ``mu >= 0``; ``mu = 0`` when
``sum(clamp(a, 0, 1)) <= budget``, otherwise ``mu > 0`` solves
``f(mu) := sum(clamp(a - mu, 0, 1)) = budget``. ``f`` is continuous, non-increasing and piecewise
linear (breakpoints ``a_i`` and ``a_i - 1``), with slope ``-#{i : 0 < a_i - mu < 1}``.

We find ``mu`` by Newton's method on ``f`` safeguarded by bisection: on a piecewise linear
function a Newton step is exact once no breakpoint lies between the iterate and the root, so it
typically ends in a handful of passes over the ``N x N`` matrix, where plain bisection (Xu et
al. 2019) needs 30 or more. A warm start (the previous step's ``mu``) shortens it further.
"""
from __future__ import annotations

from typing import Optional

import torch

from ..errors import ConfigError


def project_budget(a: torch.Tensor, budget: float, *, mu0: Optional[float] = None, tol: float = 1e-7,
                   max_iter: int = 100) -> tuple[torch.Tensor, float]:
    """Project ``a`` onto ``{0 <= s <= 1, sum(s) <= budget}``; returns ``(s, mu)``.

    Entries that must stay zero (below the diagonal of a perturbation) stay zero as long as they
    are zero in ``a``, since ``mu >= 0``. When the constraint is active, on exit
    ``|sum(s) - budget| <= max(tol, 64 eps) * max(1, budget)`` (``eps`` of the dtype: about 8e-6
    relative in float32), unless the dtype cannot resolve ``mu`` that finely: then the feasible
    end of the final bracket is returned (``sum(s) <= budget``).

    Args:
        a: any real tensor (the point after a gradient step).
        budget: the bound on the sum, ``>= 0``.
        mu0: a guess for the multiplier (warm start), e.g. the one returned last time.
        tol: relative tolerance on the sum (floored at 64 eps of the dtype).
        max_iter: a cap on Newton/bisection iterations (each is two passes over ``a``).

    Returns:
        ``(s, mu)``: the projection and its multiplier (0 when the budget is not binding).

    Raises:
        ~dgl_bilevel.errors.ConfigError: if ``budget`` is negative (or NaN).

    Example:
        Three pairs with 0.9, 0.8 and 0.7 and a budget of 1: each drops by ``mu = 7/15``.

        >>> import torch
        >>> from dgl_bilevel.robust import project_budget
        >>> a = torch.tensor([[0.0, 0.9, 0.8], [0.0, 0.0, 0.7], [0.0, 0.0, 0.0]])
        >>> s, mu = project_budget(a, 1.0)
        >>> round(float(s.sum()), 4), round(mu, 4), round(float(s[0, 1]), 4)
        (1.0, 0.4667, 0.4333)
        >>> s, mu = project_budget(a, 3.0)  # within the budget: only clamped to [0, 1]
        >>> mu, torch.equal(s, a)
        (0.0, True)
    """
    if not budget >= 0:
        raise ConfigError(f"the projection budget must be >= 0, got {budget}")
    s = a.clamp(0.0, 1.0)
    total = float(s.sum())
    if total <= budget:
        return s, 0.0
    target = float(budget)
    resolution = 4 * torch.finfo(a.dtype).eps
    slack = max(tol, 16 * resolution) * max(1.0, target)
    lo, hi = 0.0, float(a.max())  # f(lo) > budget >= f(hi) = 0
    mu = mu0 if mu0 is not None and lo < mu0 < hi else 0.5 * (lo + hi)
    for _ in range(max_iter):  # s: the buffer of the clamp above, reused
        torch.sub(a, mu, out=s).clamp_(0.0, 1.0)
        f = float(s.sum())
        if abs(f - target) <= slack:
            return s, float(mu)
        if f > target:
            lo = mu
        else:
            hi = mu
        if hi - lo <= resolution * max(1.0, abs(hi)):  # below the dtype's resolution of a - mu
            break
        slope = int(torch.count_nonzero((s > 0) & (s < 1)))
        step = mu + (f - target) / slope if slope else None
        mu = step if step is not None and lo < step < hi else 0.5 * (lo + hi)
    # the bracket closed (ties at a breakpoint) or out of iterations: its feasible end
    return (a - hi).clamp_(0.0, 1.0), float(hi)
