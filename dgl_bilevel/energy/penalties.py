"""Penalties ``rho(u)`` of a squared distance ``u = ||r||^2 >= 0`` for the energy's terms.

Each penalty gives its value ``rho(u)`` and its derivative ``rho'(u)``: the weight of the
quadratic majoriser used by IRLS (iteratively reweighted least squares). Every penalty here is
non-decreasing and concave in ``u``, so for any ``u0``

    rho(u) <= rho(u0) + rho'(u0) (u - u0)          (the tangent in ``u`` lies above),

which is what makes IRLS a majorise-minimise scheme. ``max_weight`` is ``sup_u rho'(u)``
(attained at ``u = 0``): it bounds the curvature of ``rho(||r||^2)`` in ``r`` by
``2 max_weight``, which the step-size rules use. ``convex`` says whether ``rho(||r||^2)`` is
convex in ``r`` (quadratic, Huber and l_p with p >= 1 are; Cauchy, Welsch and truncations are not).
"""
from __future__ import annotations

import math
from typing import Optional

import torch

from ..errors import ConfigError
from ..registry import PENALTIES, Registry  # noqa: F401



class Penalty:
    """A concave non-decreasing penalty of squared distances.

    A subclass gives :meth:`value` ``rho(u)`` and :meth:`weight` ``rho'(u)`` (elementwise, ``u >= 0``);
    ``max_weight`` defaults to ``rho'(0)``. Set ``convex = True`` only if ``rho(||r||^2)`` is
    convex in ``r``, and override ``is_quadratic`` only for ``rho(u) = u``.

    Example:
        >>> import torch
        >>> from dgl_bilevel.energy import Energy, Penalty
        >>> class SquareRoot(Penalty):
        ...     name = "sqrt"
        ...     def value(self, u):
        ...         return (1 + u).sqrt() - 1
        ...     def weight(self, u):
        ...         return 0.5 / (1 + u).sqrt()
        >>> penalty = SquareRoot()
        >>> penalty.max_weight  # rho'(0): bounds the step sizes
        0.5
        >>> penalty.weight(torch.tensor([3.0]))
        tensor([0.2500])
        >>> Energy(penalty=penalty).penalty
        SquareRoot()
    """

    name: str = "penalty"
    convex: bool = False

    def value(self, u: torch.Tensor) -> torch.Tensor:
        """``rho(u)``, elementwise."""
        raise NotImplementedError

    def weight(self, u: torch.Tensor) -> torch.Tensor:
        """``rho'(u)``: the IRLS weight."""
        raise NotImplementedError

    def derivative(self, u: torch.Tensor) -> torch.Tensor:
        """``rho'(u)`` (the same as :meth:`weight`)."""
        return self.weight(u)

    @property
    def max_weight(self) -> float:
        """``sup_u rho'(u)`` (``rho'(0)`` for concave penalties)."""
        return float(self.weight(torch.zeros(1, dtype=torch.float64)))

    @property
    def is_quadratic(self) -> bool:
        return False

    def __call__(self, u: torch.Tensor) -> torch.Tensor:
        return self.value(u)

    def describe(self) -> dict:
        return {"name": self.name}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v}" for k, v in self.describe().items() if k != "name")
        return f"{type(self).__name__}({args})"


@PENALTIES.register("quadratic", help="rho(u) = u: least squares (Laplacian smoothing, APPNP, label propagation)")
class Quadratic(Penalty):
    """``rho(u) = u``, weight 1.

    Example:
        >>> import torch
        >>> from dgl_bilevel.energy import Quadratic
        >>> penalty = Quadratic()
        >>> penalty.value(torch.tensor([0.0, 4.0])), penalty.weight(torch.tensor([0.0, 4.0]))
        (tensor([0., 4.]), tensor([1., 1.]))
        >>> penalty.is_quadratic, penalty.convex
        (True, True)
    """

    name = "quadratic"
    convex = True

    def value(self, u):
        return u

    def weight(self, u):
        return torch.ones_like(u)

    @property
    def max_weight(self) -> float:
        return 1.0

    @property
    def is_quadratic(self) -> bool:
        return True


@PENALTIES.register("huber", help="Huber: quadratic for |r| <= delta, linear in |r| beyond")
class Huber(Penalty):
    """``rho(u) = u`` for ``u <= delta^2``, ``2 delta sqrt(u) - delta^2`` beyond; weight ``min(1, delta / sqrt(u))``.

    Args:
        delta: where the quadratic part ends, in ``|r|`` (``> 0``).

    Raises:
        ~dgl_bilevel.errors.ConfigError: ``delta <= 0``.

    Example:
        >>> import torch
        >>> from dgl_bilevel.energy import Huber
        >>> penalty = Huber(delta=1.0)
        >>> u = torch.tensor([0.25, 4.0])  # |r| = 0.5 and 2
        >>> penalty.value(u)  # u, then 2 * 1 * 2 - 1
        tensor([0.2500, 3.0000])
        >>> penalty.weight(u)  # 1, then delta / |r|
        tensor([1.0000, 0.5000])
    """

    name = "huber"
    convex = True

    def __init__(self, delta: float = 1.0) -> None:
        if not delta > 0:
            raise ConfigError(f"huber penalty: delta must be > 0, got {delta}")
        self.delta = float(delta)

    def value(self, u):
        d2 = self.delta**2
        return torch.where(u <= d2, u, 2 * self.delta * u.clamp_min(d2).sqrt() - d2)

    def weight(self, u):
        return self.delta / u.clamp_min(self.delta**2).sqrt()

    @property
    def max_weight(self) -> float:
        return 1.0

    def describe(self):
        return {"name": self.name, "delta": self.delta}


@PENALTIES.register("lp", help="l_p: ||r||^p (0 < p <= 2) with a floor tau on u keeping the weight bounded (TWIRLS)")
class Lp(Penalty):
    """``||r||^p`` made smooth at 0 by a floor ``tau`` on ``u``: weight ``(p/2) max(u, tau)^(p/2 - 1)``.

    ``rho(u) = (p/2) tau^(p/2-1) u`` for ``u <= tau`` and ``u^(p/2) - (1 - p/2) tau^(p/2)`` beyond
    (value and weight continuous at ``tau``). ``p = 2`` is the quadratic penalty. TWIRLS' weight
    ``1 / max(tau', u^(1 - p/2))`` is ``(2/p)`` times this one with ``tau = tau'^(1 / (1 - p/2))``.

    Args:
        p: the exponent on ``||r||``, in ``(0, 2]`` (convex for ``p >= 1``).
        tau: the floor on ``u`` (``> 0``); ``max_weight = (p/2) tau^(p/2 - 1)``.

    Raises:
        ~dgl_bilevel.errors.ConfigError: ``p`` outside ``(0, 2]`` or ``tau <= 0``.

    Example:
        >>> import torch
        >>> from dgl_bilevel.energy import Lp
        >>> penalty = Lp(p=1.0, tau=0.01)
        >>> u = torch.tensor([0.0, 4.0])
        >>> penalty.value(u)  # linear below tau, then sqrt(u) - 0.5 * sqrt(tau)
        tensor([0.0000, 1.9500])
        >>> penalty.weight(u)  # 0.5 / sqrt(max(u, tau))
        tensor([5.0000, 0.2500])
        >>> penalty.max_weight, Lp(p=2.0).is_quadratic
        (5.0, True)
    """

    name = "lp"

    def __init__(self, p: float = 1.0, tau: float = 1e-2) -> None:
        if not 0 < p <= 2:
            raise ConfigError(f"lp penalty: p must be in (0, 2], got {p}")
        if not tau > 0:
            raise ConfigError(f"lp penalty: the floor tau must be > 0 (it bounds the IRLS weight), got {tau}")
        self.p, self.tau = float(p), float(tau)
        self.convex = self.p >= 1

    def value(self, u):
        half = self.p / 2
        lin = half * self.tau ** (half - 1) * u
        return torch.where(u <= self.tau, lin, u.clamp_min(self.tau) ** half - (1 - half) * self.tau**half)

    def weight(self, u):
        half = self.p / 2
        return half * u.clamp_min(self.tau) ** (half - 1)

    @property
    def max_weight(self) -> float:
        return self.p / 2 * self.tau ** (self.p / 2 - 1)

    @property
    def is_quadratic(self) -> bool:
        return self.p == 2

    def describe(self):
        return {"name": self.name, "p": self.p, "tau": self.tau}


@PENALTIES.register("cauchy", help="Cauchy: c^2 log(1 + u / c^2), weight 1 / (1 + u / c^2)")
class Cauchy(Penalty):
    """``rho(u) = c^2 log(1 + u / c^2)``: grows logarithmically, weight ``1 / (1 + u / c^2)``.

    Args:
        c: the scale in ``|r|`` (``> 0``).

    Raises:
        ~dgl_bilevel.errors.ConfigError: ``c <= 0``.

    Example:
        >>> import torch
        >>> from dgl_bilevel.energy import Cauchy
        >>> penalty = Cauchy(c=1.0)
        >>> u = torch.tensor([0.0, 1.0, 3.0])
        >>> penalty.value(u)  # log(1 + u)
        tensor([0.0000, 0.6931, 1.3863])
        >>> penalty.weight(u)
        tensor([1.0000, 0.5000, 0.2500])
        >>> penalty.convex
        False
    """

    name = "cauchy"

    def __init__(self, c: float = 1.0) -> None:
        if not c > 0:
            raise ConfigError(f"cauchy penalty: c must be > 0, got {c}")
        self.c = float(c)

    def value(self, u):
        return self.c**2 * torch.log1p(u / self.c**2)

    def weight(self, u):
        return 1.0 / (1.0 + u / self.c**2)

    @property
    def max_weight(self) -> float:
        return 1.0

    def describe(self):
        return {"name": self.name, "c": self.c}


@PENALTIES.register("welsch", help="Welsch: c^2 (1 - exp(-u / c^2)), saturating; weight exp(-u / c^2)")
class Welsch(Penalty):
    """``rho(u) = c^2 (1 - exp(-u / c^2))``: saturates at ``c^2``, so far-apart pairs stop pulling.

    Args:
        c: the scale in ``|r|`` (``> 0``).

    Raises:
        ~dgl_bilevel.errors.ConfigError: ``c <= 0``.

    Example:
        >>> import torch
        >>> from dgl_bilevel.energy import Welsch
        >>> penalty = Welsch(c=1.0)
        >>> u = torch.tensor([0.0, 1.0, 100.0])
        >>> penalty.value(u)  # 1 - exp(-u): at most c^2 = 1
        tensor([0.0000, 0.6321, 1.0000])
        >>> [round(w, 4) for w in penalty.weight(u).tolist()]  # a pair 10 apart hardly pulls
        [1.0, 0.3679, 0.0]
    """

    name = "welsch"

    def __init__(self, c: float = 1.0) -> None:
        if not c > 0:
            raise ConfigError(f"welsch penalty: c must be > 0, got {c}")
        self.c = float(c)

    def value(self, u):
        return -(self.c**2) * torch.expm1(-u / self.c**2)

    def weight(self, u):
        return torch.exp(-u / self.c**2)

    @property
    def max_weight(self) -> float:
        return 1.0

    def describe(self):
        return {"name": self.name, "c": self.c}


class Truncated(Penalty):
    """``min(rho(u), rho(T))``: constant (weight 0) beyond the threshold ``T`` on ``u``.

    The minimum of two concave functions is concave, so IRLS stays a majorise-minimise scheme;
    the weight drops to 0 past ``T`` (TWIRLS' threshold: an edge that far apart is cut).

    Args:
        base: the penalty to truncate.
        threshold: ``T`` on ``u`` (``> 0``).

    Raises:
        ~dgl_bilevel.errors.ConfigError: ``threshold <= 0``.

    Example:
        >>> import torch
        >>> from dgl_bilevel.energy import Quadratic, Truncated
        >>> penalty = Truncated(Quadratic(), threshold=1.0)
        >>> u = torch.tensor([0.5, 4.0])
        >>> penalty.value(u), penalty.weight(u)  # capped at rho(T) = 1; no pull past T
        (tensor([0.5000, 1.0000]), tensor([1., 0.]))
        >>> penalty.name
        'truncated_quadratic'
    """

    def __init__(self, base: Penalty, threshold: float) -> None:
        if not threshold > 0:
            raise ConfigError(f"truncation threshold must be > 0, got {threshold}")
        self.base, self.threshold = base, float(threshold)
        self.name = f"truncated_{base.name}"

    def value(self, u):
        cap = self.base.value(torch.full((), self.threshold, dtype=u.dtype, device=u.device))
        return torch.where(u <= self.threshold, self.base.value(u), cap)

    def weight(self, u):
        return torch.where(u <= self.threshold, self.base.weight(u), torch.zeros_like(u))

    @property
    def max_weight(self) -> float:
        return self.base.max_weight

    def describe(self):
        return {**self.base.describe(), "threshold": self.threshold}


def make_penalty(spec: "str | Penalty | None" = "quadratic", threshold: Optional[float] = None, **params) -> Penalty:
    """A penalty by name (``quadratic``, ``huber``, ``lp``, ``cauchy``, ``welsch``) or as given.

    ``threshold`` truncates it (weight 0 for ``u > threshold``); ``params`` go to its constructor
    (``delta`` for huber, ``p`` and ``tau`` for lp, ``c`` for cauchy and welsch).

    Args:
        spec: a name from :data:`PENALTIES`, a :class:`Penalty` (returned as it is), or ``None``
            (quadratic).
        threshold: truncate at this ``u`` (:class:`Truncated`); ``None`` or ``inf``: no truncation.
        **params: the named penalty's constructor parameters.

    Returns:
        The :class:`Penalty`.

    Raises:
        ~dgl_bilevel.errors.ConfigError: an unknown name, parameters the penalty does not take, parameters given
            with a ready-made penalty, or a ``spec`` of another type.

    Example:
        >>> from dgl_bilevel.energy import make_penalty
        >>> make_penalty("huber", delta=0.5)
        Huber(delta=0.5)
        >>> make_penalty("lp", threshold=4.0, p=1.0)
        Truncated(p=1.0, tau=0.01, threshold=4.0)
        >>> make_penalty("huber", c=1.0)
        Traceback (most recent call last):
            ...
        dgl_bilevel.errors.ConfigError: penalty 'huber': bad parameters ['c'] ...
    """
    if spec is None:
        spec = "quadratic"
    if isinstance(spec, Penalty):
        if params:
            raise ConfigError(f"penalty parameters {sorted(params)} given with a ready-made penalty {spec!r}")
        penalty = spec
    elif isinstance(spec, str):
        cls = PENALTIES[spec]
        try:
            penalty = cls(**params)
        except TypeError as exc:
            raise ConfigError(f"penalty {spec!r}: bad parameters {sorted(params)} ({exc})") from None
    else:
        raise ConfigError(f"penalty must be a name or a Penalty, got {type(spec).__name__}")
    if threshold is not None and not math.isinf(threshold):
        penalty = Truncated(penalty, threshold)
    return penalty
