"""The energy's non-smooth node term ``h(Y)``, handled by its proximal operator.

``prox_{s h}(Z) = argmin_Y h(Y) + ||Y - Z||^2 / (2 s)``, with ``s`` a scalar or a per-node
column (a diagonal metric: Jacobi-preconditioned steps use ``s_i = step / p_i``; both terms
here are separable, so their prox in a diagonal metric is the same formula with per-node ``s``).
"""
from __future__ import annotations

import torch

from ..errors import ConfigError
from ..registry import NONSMOOTH_TERMS, Registry  # noqa: F401  (Registry: the type below)



class NonSmoothTerm:
    """``h(Y)`` with its proximal operator.

    The base is ``h = 0``; a subclass overrides :meth:`value`, :meth:`prox` and ``is_zero``
    (and registers itself in :data:`NONSMOOTH_TERMS` to be reachable by name).

    Example:
        A box constraint ``Y <= 1``, whose prox is a clamp:

        >>> import torch
        >>> from dgl_bilevel.energy import NonSmoothTerm
        >>> class AtMostOne(NonSmoothTerm):
        ...     name = "at_most_one"
        ...     def value(self, y):
        ...         return y.new_zeros(()) if bool((y <= 1).all()) else y.new_tensor(float("inf"))
        ...     def prox(self, y, step):
        ...         return y.clamp_max(1.0)
        ...     @property
        ...     def is_zero(self):
        ...         return False
        >>> AtMostOne().prox(torch.tensor([[0.5, 3.0]]), step=0.1)
        tensor([[0.5000, 1.0000]])
        >>> NonSmoothTerm().is_zero
        True
    """

    name = "none"

    def value(self, y: torch.Tensor) -> torch.Tensor:
        """``h(Y)``, a scalar (``+inf`` outside its domain)."""
        return y.new_zeros(())

    def prox(self, y: torch.Tensor, step) -> torch.Tensor:
        """``prox_{step h}(Y)``; ``step`` a number or a per-node ``[N, 1]`` column."""
        return y

    @property
    def is_zero(self) -> bool:
        return True

    def describe(self) -> dict:
        return {"name": self.name}


@NONSMOOTH_TERMS.register("none", help="no non-smooth term")
class NoTerm(NonSmoothTerm):
    """``h = 0``; the prox is the identity.

    Example:
        >>> import torch
        >>> from dgl_bilevel.energy import NoTerm
        >>> y = torch.tensor([[-1.0, 2.0]])
        >>> NoTerm().value(y).item(), torch.equal(NoTerm().prox(y, 0.5), y)
        (0.0, True)
    """


@NONSMOOTH_TERMS.register("nonneg", help="non-negativity constraint; prox = ReLU")
class NonNegative(NonSmoothTerm):
    """Indicator of ``Y >= 0`` (0 there, +inf elsewhere); prox = ReLU (HALO's activation).

    Example:
        >>> import torch
        >>> from dgl_bilevel.energy import NonNegative
        >>> y = torch.tensor([[-1.0, 2.0]])
        >>> NonNegative().value(y).item()
        inf
        >>> NonNegative().prox(y, 0.5)
        tensor([[0., 2.]])
    """

    name = "nonneg"

    def value(self, y):
        inf = torch.full((), float("inf"), dtype=y.dtype, device=y.device)
        return torch.where((y >= 0).all(), y.new_zeros(()), inf)

    def prox(self, y, step):
        return torch.relu(y)

    @property
    def is_zero(self) -> bool:
        return False


@NONSMOOTH_TERMS.register("l1", help="mu * sum |Y|; prox = soft-threshold at mu * step")
class L1(NonSmoothTerm):
    """``mu ||Y||_1``; prox = soft-threshold ``sign(y) max(|y| - mu s, 0)``.

    Args:
        mu: the weight (``>= 0``; 0 is no term).

    Raises:
        ~dgl_bilevel.errors.ConfigError: ``mu < 0``.

    Example:
        >>> import torch
        >>> from dgl_bilevel.energy import L1
        >>> term = L1(mu=0.5)
        >>> y = torch.tensor([[-2.0, 0.25, 1.0]])
        >>> term.value(y).item()  # 0.5 * (2 + 0.25 + 1)
        1.625
        >>> term.prox(y, 1.0)  # every entry moves 0.5 towards 0, stopping there
        tensor([[-1.5000,  0.0000,  0.5000]])
    """

    name = "l1"

    def __init__(self, mu: float = 0.1) -> None:
        if not mu >= 0:
            raise ConfigError(f"l1 term: mu must be >= 0, got {mu}")
        self.mu = float(mu)

    def value(self, y):
        return self.mu * y.abs().sum()

    def prox(self, y, step):
        return torch.sign(y) * torch.relu(y.abs() - self.mu * step)

    @property
    def is_zero(self) -> bool:
        return self.mu == 0

    def describe(self):
        return {"name": self.name, "mu": self.mu}


def make_nonsmooth(spec: "str | NonSmoothTerm | None" = "none", **params) -> NonSmoothTerm:
    """``h`` by name (``none``, ``nonneg``, ``l1`` with ``mu``) or as given.

    Args:
        spec: a name from :data:`NONSMOOTH_TERMS`, a :class:`NonSmoothTerm` (returned as it is),
            or ``None`` (:class:`NoTerm`).
        **params: the named term's constructor parameters (``mu`` for ``l1``).

    Returns:
        The :class:`NonSmoothTerm`.

    Raises:
        ~dgl_bilevel.errors.ConfigError: an unknown name, parameters the term does not take, or a ``spec`` of
            another type.

    Example:
        >>> from dgl_bilevel.energy import make_nonsmooth
        >>> make_nonsmooth("l1", mu=0.2).describe()
        {'name': 'l1', 'mu': 0.2}
        >>> make_nonsmooth(None).is_zero
        True
        >>> make_nonsmooth("nonneg", mu=0.2)
        Traceback (most recent call last):
            ...
        dgl_bilevel.errors.ConfigError: regularizer 'nonneg': bad parameters ['mu'] ...
    """
    if spec is None:
        return NoTerm()
    if isinstance(spec, NonSmoothTerm):
        return spec
    if not isinstance(spec, str):
        raise ConfigError(f"regularizer h must be a name or a NonSmoothTerm, got {type(spec).__name__}")
    try:
        return NONSMOOTH_TERMS[spec](**params)
    except TypeError as exc:
        raise ConfigError(f"regularizer {spec!r}: bad parameters {sorted(params)} ({exc})") from None
