"""Maps from an unconstrained outer parameter to a non-negative edge weight.

Each parametrization is a small object with ``forward(theta) -> w``, ``inverse(w) -> theta``
(for initialising from given weights) and ``project_(theta)`` (applied after every outer step;
only :class:`Box` needs it: projected gradient descent onto ``[low, high]``).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ..errors import ConfigError


class Parametrization:
    """Base class: identity map with no projection.

    Subclasses override ``forward`` (``theta -> w``), ``inverse`` (``w -> theta``, to start from
    given weights) and, if constrained, ``project_`` (in place, after each outer step).

    Example:
        >>> import torch
        >>> from dgl_bilevel.structure import Parametrization
        >>> identity = Parametrization()
        >>> theta = torch.tensor([1.5, -0.5])
        >>> identity(theta), identity.name
        (tensor([ 1.5000, -0.5000]), 'identity')
        >>> identity.project_(theta)  # unconstrained: nothing changes
        >>> theta
        tensor([ 1.5000, -0.5000])
    """

    name = "identity"

    def forward(self, theta: torch.Tensor) -> torch.Tensor:
        return theta

    def inverse(self, weight: torch.Tensor) -> torch.Tensor:
        return weight.clone()

    @torch.no_grad()
    def project_(self, theta: torch.Tensor) -> None:
        """Make ``theta`` feasible in place (no-op unless constrained)."""

    def __call__(self, theta: torch.Tensor) -> torch.Tensor:
        return self.forward(theta)

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class Sigmoid(Parametrization):
    """``w = sigmoid(theta)`` in (0, 1): the paper's choice.

    ``inverse`` is the logit, with weights clamped to ``[1e-6, 1 - 1e-6]`` first.

    Example:
        >>> import torch
        >>> from dgl_bilevel.structure import Sigmoid
        >>> Sigmoid()(torch.tensor([0.0, 2.0]))
        tensor([0.5000, 0.8808])
        >>> Sigmoid().inverse(torch.tensor([0.5, 0.8808]))
        tensor([0.0000, 2.0000])
    """

    name = "sigmoid"

    def forward(self, theta: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(theta)

    def inverse(self, weight: torch.Tensor) -> torch.Tensor:
        w = weight.clamp(1e-6, 1 - 1e-6)
        return torch.log(w) - torch.log1p(-w)


class Softplus(Parametrization):
    """``w = softplus(theta) = log(1 + e^theta)`` in (0, inf).

    Example:
        >>> import torch
        >>> from dgl_bilevel.structure import Softplus
        >>> Softplus()(torch.tensor([0.0]))  # log 2
        tensor([0.6931])
        >>> theta = Softplus().inverse(torch.tensor([0.25, 3.0]))
        >>> torch.allclose(Softplus()(theta), torch.tensor([0.25, 3.0]))
        True
    """

    name = "softplus"

    def forward(self, theta: torch.Tensor) -> torch.Tensor:
        return F.softplus(theta)

    def inverse(self, weight: torch.Tensor) -> torch.Tensor:
        w = weight.clamp_min(1e-12)
        return w + torch.log(-torch.expm1(-w))


class Box(Parametrization):
    """``w = theta``, projected onto ``[low, high]`` after every outer step.

    Plain projected gradient: weights can reach exactly ``low`` (e.g. 0, removing an edge).

    Args:
        low, high: the bounds, ``low < high`` (default ``[0, inf)``).

    Raises:
        ~dgl_bilevel.errors.ConfigError: if ``low >= high``.

    Example:
        >>> import torch
        >>> from dgl_bilevel.structure import Box
        >>> box = Box(0.0, 1.0)
        >>> theta = torch.tensor([-0.5, 0.3, 1.7])
        >>> box.project_(theta)
        >>> theta, box(theta) is theta
        (tensor([0.0000, 0.3000, 1.0000]), True)
    """

    name = "box"

    def __init__(self, low: float = 0.0, high: float = math.inf) -> None:
        if not low < high:
            raise ConfigError(f"Box needs low < high, got low={low}, high={high}")
        self.low, self.high = float(low), float(high)

    def inverse(self, weight: torch.Tensor) -> torch.Tensor:
        return weight.clamp(self.low, self.high).clone()

    @torch.no_grad()
    def project_(self, theta: torch.Tensor) -> None:
        theta.clamp_(self.low, self.high)

    def __repr__(self) -> str:
        return f"Box(low={self.low}, high={self.high})"


PARAMETRIZATIONS = {"sigmoid": Sigmoid, "softplus": Softplus, "box": Box, "identity": Parametrization}


def get_parametrization(spec: "str | Parametrization", **kwargs: float) -> Parametrization:
    """A parametrization from its name (``sigmoid``, ``softplus``, ``box``, ``identity``) or itself.

    Args:
        spec: a name or a :class:`Parametrization` (returned as it is).
        **kwargs: ``low``/``high`` for ``"box"`` (ignored by the others).

    Returns:
        The :class:`Parametrization`.

    Raises:
        ~dgl_bilevel.errors.ConfigError: on an unknown name.

    Example:
        >>> from dgl_bilevel.structure import get_parametrization
        >>> get_parametrization("box", low=0.0, high=1.0), get_parametrization("sigmoid")
        (Box(low=0.0, high=1.0), Sigmoid())
        >>> get_parametrization("relu")
        Traceback (most recent call last):
        ...
        dgl_bilevel.errors.ConfigError: unknown parametrization 'relu'; choose from ['box', 'identity', ...]
    """
    if isinstance(spec, Parametrization):
        return spec
    if spec not in PARAMETRIZATIONS:
        raise ConfigError(f"unknown parametrization {spec!r}; choose from {sorted(PARAMETRIZATIONS)}")
    return PARAMETRIZATIONS[spec](**kwargs) if spec == "box" else PARAMETRIZATIONS[spec]()
