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
    """Base class: identity map with no projection."""

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
    """``w = sigmoid(theta)`` in (0, 1): the paper's choice."""

    name = "sigmoid"

    def forward(self, theta: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(theta)

    def inverse(self, weight: torch.Tensor) -> torch.Tensor:
        w = weight.clamp(1e-6, 1 - 1e-6)
        return torch.log(w) - torch.log1p(-w)


class Softplus(Parametrization):
    """``w = softplus(theta) = log(1 + e^theta)`` in (0, inf)."""

    name = "softplus"

    def forward(self, theta: torch.Tensor) -> torch.Tensor:
        return F.softplus(theta)

    def inverse(self, weight: torch.Tensor) -> torch.Tensor:
        w = weight.clamp_min(1e-12)
        return w + torch.log(-torch.expm1(-w))


class Box(Parametrization):
    """``w = theta``, projected onto ``[low, high]`` after every outer step.

    Plain projected gradient: weights can reach exactly ``low`` (e.g. 0, removing an edge).
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
    """A parametrization from its name (``sigmoid``, ``softplus``, ``box``, ``identity``) or itself."""
    if isinstance(spec, Parametrization):
        return spec
    if spec not in PARAMETRIZATIONS:
        raise ConfigError(f"unknown parametrization {spec!r}; choose from {sorted(PARAMETRIZATIONS)}")
    return PARAMETRIZATIONS[spec](**kwargs) if spec == "box" else PARAMETRIZATIONS[spec]()
