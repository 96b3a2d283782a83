"""The inner optimizer: a torchopt transform and what the library knows of it; the settings of the
default one (Adam) and the stability rule they follow.

Unrolled hypergradients differentiate the inner optimizer's trajectory, so the optimizer's
update must be a well-conditioned function of the gradient, not only a good minimiser. For
Adam that is a condition on ``eps``: see :func:`~dgl_bilevel.inner.base.default_adam`.
"""
from __future__ import annotations

from typing import Optional

import torchopt

from ..errors import ConfigError
from ..registry import INNER_OPTIMIZERS
from .flat_adam import AdamSettings, FlatAdam

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


class InnerOptimizer:
    """A torchopt ``GradientTransformation`` and what the library knows of it.

    ``init`` and ``update`` are the transform's own: every generic path runs torchopt's update.

    Args:
        transform: the torchopt transform (functional, supporting ``inplace=False``).
        elementwise: every coordinate is updated from its own history alone (Adam, SGD), so
            parameters may be concatenated -- one flat vector, several seeds side by side.
            Unknown for a user's transform: False.
        adam_settings: set by :meth:`adam` only, the one place that says "this is Adam": then
            :attr:`accelerated` is the same update written out on one flat vector
            (:class:`~dgl_bilevel.inner.flat_adam.FlatAdam`, bitwise torchopt's); else None.
    """

    def __init__(self, transform: torchopt.base.GradientTransformation, *, elementwise: bool = False,
                 adam_settings: Optional[AdamSettings] = None) -> None:
        if isinstance(transform, InnerOptimizer):
            raise ConfigError("InnerOptimizer wraps a torchopt transform, not another InnerOptimizer")
        self.transform = transform
        self.init, self.update = transform.init, transform.update
        self.adam_settings = adam_settings
        self.elementwise = bool(elementwise) or adam_settings is not None
        self.accelerated: Optional[FlatAdam] = None if adam_settings is None else FlatAdam(adam_settings)

    @classmethod
    def adam(cls, lr: float, eps: float = ADAM_EPS) -> "InnerOptimizer":
        """torchopt's Adam with betas :data:`ADAM_BETAS`, ``eps`` and ``eps_root`` :data:`ADAM_EPS_ROOT`
        (why these: :func:`~dgl_bilevel.inner.base.default_adam`)."""
        if not eps > 0:
            raise ConfigError(f"Adam's eps must be > 0, got {eps}")
        settings = AdamSettings(lr, ADAM_BETAS[0], ADAM_BETAS[1], eps, ADAM_EPS_ROOT)
        return cls(torchopt.adam(lr, betas=ADAM_BETAS, eps=eps, eps_root=ADAM_EPS_ROOT), adam_settings=settings)

    @classmethod
    def sgd(cls, lr: float) -> "InnerOptimizer":
        """torchopt's plain gradient descent (elementwise)."""
        return cls(torchopt.sgd(lr), elementwise=True)

    @classmethod
    def wrap(cls, optimizer: "InnerOptimizer | torchopt.base.GradientTransformation") -> "InnerOptimizer":
        """``optimizer`` itself, or a user's torchopt transform wrapped (nothing assumed of it)."""
        return optimizer if isinstance(optimizer, InnerOptimizer) else cls(optimizer)

    def __repr__(self) -> str:
        kind = "adam" if self.adam_settings is not None else "elementwise" if self.elementwise else "transform"
        return f"InnerOptimizer({kind})"


# The optimizers ``--inner-optimizer`` names: functions of the configuration returning an
# InnerOptimizer, or None for the inner problem's own default (its Adam, whose eps it chooses).
@INNER_OPTIMIZERS.register("adam", help="torchopt's Adam with eps_root=1e-16, as the inner problem configures it")
def _adam_from_config(config) -> Optional[InnerOptimizer]:
    return None


@INNER_OPTIMIZERS.register("sgd", help="torchopt's plain gradient descent at --inner-lr")
def _sgd_from_config(config) -> InnerOptimizer:
    return InnerOptimizer.sgd(config.inner_lr)
