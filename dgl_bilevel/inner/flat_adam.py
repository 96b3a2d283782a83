"""The library's Adam on one flat parameter vector: its update, op for op as torchopt computes it,
and the update's vector-Jacobian product, both written out; and the flat layout of parameters
and optimizer state it runs on.

Plain inner training on a hand-derived gradient (:func:`~dgl_bilevel.inner.training.run_steps`)
runs the update once per step; unrolling through Adam (:mod:`~dgl_bilevel.hypergrad.recorded`)
runs it once per step forward, once more per step to replay the optimizer state in the backward
pass, and pulls the adjoints back through it. torchopt's chain of transforms spends about as long in Python and in
kernels on 0-dimensional bias corrections as in the eleven elementwise kernels of the update
itself (Cora's GNN, 46k parameters: 210-260 us against 120-140 us here, measured 2026-12-03).
:meth:`FlatAdam.update` issues the same eleven kernels in the same order on the same values --
so its results are bitwise torchopt's (tests/test_flat_adam.py) and an unrolled trajectory equals
the plain run's -- with the bias corrections computed once per step count. It also returns the
update's square root, which the VJP reuses instead of recomputing it.

It is the accelerated form of the library's Adam, built by the
:class:`~dgl_bilevel.inner.optimizers.InnerOptimizer` that holds its settings
(:attr:`~dgl_bilevel.inner.optimizers.InnerOptimizer.accelerated`), and reads the state layout of
torchopt 0.7's ``adam`` -- a chain of ``ScaleByAdamState(mu, nu, count)`` and an empty state --
which pyproject.toml pins (``torchopt>=0.7,<0.8``) and tests/test_flat_adam.py checks bit for bit.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
from torchopt import pytree

from ..numerics.adam import adam_update
from .types import Params



@dataclass(frozen=True)
class AdamSettings:
    """The hyper-parameters of the library's Adam (:meth:`~dgl_bilevel.inner.optimizers.InnerOptimizer.adam`)."""

    lr: float
    b1: float
    b2: float
    eps: float
    eps_root: float


class FlatLayout:
    """The parameters as one flat vector, and the optimizer state to match.

    An elementwise optimizer (Adam, SGD) does on one concatenated vector exactly what it does on
    each tensor, and one tensor costs one set of operator calls instead of one per parameter --
    which, with the autograd graph the backward pass builds over each update, is most of an
    update's cost on a small model.
    """

    def __init__(self, params: Params) -> None:
        self.shapes = [p.shape for p in params]
        self.sizes = [p.numel() for p in params]

    def flatten(self, tensors) -> torch.Tensor:
        return torch.cat([t.reshape(-1) for t in tensors])

    def split(self, flat: torch.Tensor) -> Params:
        return tuple(part.view(shape) for part, shape in zip(flat.split(self.sizes), self.shapes))

    def flatten_state(self, optimizer, state):
        """``state`` (one entry per parameter in each of its fields) as the state of one flat vector."""
        n = len(self.sizes)
        template = optimizer.init((torch.zeros(sum(self.sizes)),))
        flat_leaves, flat_def = pytree.tree_flatten(template)
        leaves, _ = pytree.tree_flatten(state)
        if len(leaves) != n * len(flat_leaves):
            raise ValueError("optimizer state does not hold one entry per parameter in each field")
        merged = []
        for j, like in enumerate(flat_leaves):
            group = leaves[j * n:(j + 1) * n]
            if all(isinstance(x, torch.Tensor) and x.numel() == size for x, size in zip(group, self.sizes)) \
                    and like.numel() == sum(self.sizes):
                merged.append(self.flatten(group))
            elif all(isinstance(x, torch.Tensor) and x.numel() == 1 and torch.equal(x, group[0]) for x in group):
                merged.append(group[0].clone())  # a step count shared by every parameter
            else:
                raise ValueError("optimizer state entries differ between parameters")
        return pytree.tree_unflatten(flat_def, merged)

    def unflatten_state(self, optimizer, flat_state, params: Params):
        """The inverse of :meth:`flatten_state`."""
        leaves, _ = pytree.tree_flatten(flat_state)
        template_leaves, template_def = pytree.tree_flatten(optimizer.init(tuple(p.detach() for p in params)))
        n = len(self.sizes)
        out = []
        for leaf in leaves:
            if leaf.numel() == sum(self.sizes) and leaf.numel() != 1:
                out.extend(self.split(leaf))
            else:
                out.extend([leaf] * n)
        assert len(out) == len(template_leaves)
        return pytree.tree_unflatten(template_def, out)


class FlatAdam:
    """torchopt's Adam with ``settings`` on one flat vector (see the module docstring); its
    state is that of torchopt's Adam on a single tensor."""

    def __init__(self, settings: "AdamSettings") -> None:
        self.settings = settings
        self._corrections: dict = {}

    def corrections(self, count: torch.Tensor) -> tuple[float, float]:
        """``(1 - b1^count, 1 - b2^count)`` as torchopt computes them (``pow`` of a float and the
        integer count tensor, so rounded to the default float dtype), once per count and dtype."""
        key = (int(count), torch.get_default_dtype())
        held = self._corrections.get(key)
        if held is None:
            held = self._corrections[key] = (float(1 - pow(self.settings.b1, count)),
                                             float(1 - pow(self.settings.b2, count)))
        return held

    @torch.no_grad()
    def update(self, grads: torch.Tensor, state) -> tuple[torch.Tensor, tuple, torch.Tensor]:
        """``(update, new state, root)`` for the gradient ``grads``: the values torchopt's
        ``update((grads,), state, inplace=False)`` returns, bit for bit, and the step's
        ``root = sqrt(v / (1 - b2^c) + eps_root)`` for :meth:`vjp`."""
        s = self.settings
        moments = state[0]
        (m0,), (v0,), (count,) = moments.mu, moments.nu, moments.count
        count = count + 1
        c1, c2 = self.corrections(count)
        step, m, v, root = adam_update(grads, m0, v0, c1, c2, lr=s.lr, b1=s.b1, b2=s.b2, eps=s.eps,
                                       eps_root=s.eps_root)
        new = moments._replace(mu=type(moments.mu)([m]), nu=type(moments.nu)([v]),
                               count=type(moments.count)([count]))
        return step, (new, state[1]), root

    @torch.no_grad()
    def vjp(self, grads: torch.Tensor, state, adj_params: torch.Tensor, adj_state: list, after=None,
            root: Optional[torch.Tensor] = None) -> tuple[torch.Tensor, list]:
        """Adjoints of the gradient and of the entering moments, from those of the step's outputs.

        With ``m = b1 m0 + (1 - b1) g``, ``v = b2 v0 + (1 - b2) g^2``, ``c`` the new count,
        ``S = sqrt(v / (1 - b2^c) + eps_root)`` and ``D = S + eps``, the update is
        ``u = -lr (m / (1 - b1^c)) / D``; the adjoints of ``m`` and ``v`` collect the state's own and
        ``u``'s, and flow back to ``g``, ``m0`` and ``v0`` through the two moment updates. ``m`` is
        read from ``after`` (the state the step left) and ``S`` from ``root`` (what
        :meth:`update` returned) when both are given, else the step is run again; in-place operations
        keep the pass at about a dozen elementwise operations.
        """
        s = self.settings
        if after is None or root is None:  # the step again: the same moments and root as the forward pass
            _, after, root = self.update(grads, state)
        (m,), (count,) = after[0].mu, after[0].count
        c1, c2 = self.corrections(count)
        denominator = root + s.eps
        adj_m = adj_params.div(denominator).mul_(-s.lr / c1)  # from u
        # from u: lr m / (2 c1 c2 S D^2) = -(adj_m from u) m / (2 c2 S D)
        adj_v = adj_m.mul(m).div_(root * denominator).mul_(-0.5 / c2)
        if adj_state[0] is not None:
            adj_m.add_(adj_state[0])
        if adj_state[1] is not None:
            adj_v.add_(adj_state[1])
        adj_grads = torch.addcmul(adj_m * (1.0 - s.b1), grads, adj_v, value=2.0 * (1.0 - s.b2))
        return adj_grads, [adj_m.mul_(s.b1), adj_v.mul_(s.b2), None]
