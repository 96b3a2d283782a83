"""Settings of the default inner optimizer (Adam) and the stability rule they follow.

Unrolled hypergradients differentiate the inner optimizer's trajectory, so the optimizer's
update must be a well-conditioned function of the gradient, not only a good minimiser. For
Adam that is a condition on ``eps``: see :func:`~dgl_bilevel.inner.base.default_adam`.
"""
from __future__ import annotations

import weakref
from dataclasses import dataclass
from typing import Optional

#: Adam's ``eps`` in :func:`~dgl_bilevel.inner.base.default_adam` (torch's and torchopt's default is 1e-8).
ADAM_EPS = 1e-6
#: Adam's ``eps_root`` in :func:`~dgl_bilevel.inner.base.default_adam`.
ADAM_EPS_ROOT = 1e-16
#: Adam's moment decay rates (the usual ones).
ADAM_BETAS = (0.9, 0.999)


def adam_stability_bound(b1: float = ADAM_BETAS[0]) -> float:
    """``2 (1 + b1) / (1 - b1)`` (38 for ``b1 = 0.9``).

    On a coordinate whose second moment hardly changes (``D = sqrt(v_hat + eps_root) + eps``
    fixed), Adam is the heavy-ball iteration ``m <- b1 m + (1 - b1) g``, ``theta <- theta -
    lr / D * m``. On curvature ``H`` its iteration matrix has determinant ``b1`` and trace
    ``1 + b1 - (1 - b1) k`` with ``k = lr * H / D``, so it is stable -- and the product of the
    step Jacobians that unrolled differentiation multiplies stays bounded -- exactly while
    ``0 < k < 2 (1 + b1) / (1 - b1)``. Beyond it the trajectory's derivative grows
    geometrically with the number of inner steps.
    """
    return 2.0 * (1.0 + b1) / (1.0 - b1)


def adam_step_gain(lr: float, curvature: float, eps: float = ADAM_EPS, eps_root: float = ADAM_EPS_ROOT) -> float:
    """``k = lr * curvature / D`` for a coordinate that has had no gradient yet (``v_hat = 0``,
    ``D = sqrt(eps_root) + eps``): the worst case of the rule of :func:`adam_stability_bound`
    (1e-2 * 5e-4 / (1e-8 + 1e-6) = 5 at the paper's GNN settings; 250 with ``eps=1e-8``)."""
    return lr * curvature / (eps_root ** 0.5 + eps)


@dataclass(frozen=True)
class AdamSettings:
    """The hyper-parameters of an Adam transform the library built (see :func:`adam_settings`)."""

    lr: float
    b1: float
    b2: float
    eps: float
    eps_root: float


_ADAMS: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def remember_adam(optimizer, settings: AdamSettings):
    """Record that ``optimizer`` (a torchopt transform) is Adam with ``settings``; returns it."""
    _ADAMS[optimizer.update] = settings
    return optimizer


def adam_settings(optimizer) -> Optional[AdamSettings]:
    """The settings of an Adam transform built by :func:`~dgl_bilevel.inner.base.default_adam`;
    None for any other transform (whose internals the library does not assume)."""
    try:
        return _ADAMS.get(optimizer.update)
    except TypeError:
        return None
