"""Adam's update as arithmetic on tensors: the one place the library writes it out.

The inner problems' flat Adam (:class:`~dgl_bilevel.inner.flat_adam.FlatAdam`, bitwise torchopt's)
and the bilevel layer's level solvers both call :func:`adam_update`; each computes its own bias
corrections (torchopt's rounding or plain Python floats) and keeps its own state.
"""
from __future__ import annotations

import torch


def adam_update(grads: torch.Tensor, mu: torch.Tensor, nu: torch.Tensor, c1: float, c2: float, *, lr: float,
                b1: float, b2: float, eps: float, eps_root: float = 0.0
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(update, mu', nu', root)``: one Adam step from the gradient and the entering moments.

    ``mu' = b1 mu + (1 - b1) g``, ``nu' = b2 nu + (1 - b2) g^2``,
    ``root = sqrt(nu' / c2 + eps_root)`` and ``update = -lr (mu' / c1) / (root + eps)``, with
    ``c1 = 1 - b1^t`` and ``c2 = 1 - b2^t`` the bias corrections of step ``t``. The kernels are
    torchopt's, in its order, so its results are reproduced bit for bit; in-place operations
    touch only intermediates created here, so the step is differentiable when its inputs are.

    Example:
        >>> import torch
        >>> g = torch.tensor([1.0, -2.0])
        >>> update, mu, nu, _ = adam_update(g, torch.zeros(2), torch.zeros(2), 0.1, 0.001,
        ...                                 lr=0.5, b1=0.9, b2=0.999, eps=0.0)
        >>> update  # the first step moves each coordinate by lr against its gradient's sign
        tensor([-0.5000,  0.5000])
    """
    mu = mu.mul(b1).add_(grads, alpha=1 - b1)
    nu = nu.mul(b2).addcmul_(grads, grads, value=1 - b2)
    root = nu.div(c2).add_(eps_root).sqrt_()
    update = mu.div(c1).div_(root + eps).mul_(-lr)
    return update, mu, nu, root


__all__ = ["adam_update"]
