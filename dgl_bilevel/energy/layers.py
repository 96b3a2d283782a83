"""Unfolded energies as DGL-style layers, and an energy GNN for the trained-GNN inner problem."""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from .._dgl import dgl
from ..errors import ConfigError
from ..models import Projection
from ..registry import MODELS
from ..ops import Features
from .energy import BoundEnergy, Energy
from .steps import StepRule, make_step_rule

INITS = ("target", "zeros")


class EnergyLayer(nn.Module):
    """``K`` descent steps on the energy ``E(Y)`` with target ``F = f(feat)``, from ``Y_0 = F``.

    ``forward(graph, feat, edge_weight=None)`` returns ``Y_K``; it is differentiable in ``feat``,
    in ``f``'s parameters and in ``edge_weight``, to any order.

    Args:
        steps: ``K``, the number of unfolded steps (message-passing rounds).
        step_rule: a name from :data:`~.steps.STEP_RULES` (``gradient``, ``preconditioned``,
            ``proximal``, ``momentum``, ``nesterov``, ``irls``) or a :class:`~.steps.StepRule`.
        energy: an :class:`~.energy.Energy`; if ``None`` one is built from ``lam``, ``penalty``,
            ``fidelity``, ``regularizer`` and ``normalize`` (see :class:`~.energy.Energy`).
        step: the step size, or ``"auto"`` (the rule's safe default, see :mod:`.steps`; for
            gradient-type rules on the unnormalised energy it is ``1 / L_hat(w)``, a function of
            the edge weights through the largest degree, differentiated with them).
        beta, preconditioned: momentum options of ``momentum`` and ``nesterov``.
        f: a module giving the target ``F = f(feat)`` (``None``: ``F = feat``).
        init: ``"target"`` (``Y_0 = F``) or ``"zeros"``.

    Raises:
        ~dgl_bilevel.errors.ConfigError: ``steps`` is not a non-negative integer, an unknown ``init``, an unknown rule
            or option, or a rule that cannot run on the energy (``proximal`` without ``h``).

    Example:
        >>> import dgl
        >>> import torch
        >>> graph = dgl.graph(([0, 1, 1, 2, 2, 3], [1, 0, 2, 1, 3, 2]))  # the path 0-1-2-3
        >>> from dgl_bilevel.energy import EnergyLayer
        >>> target = torch.tensor([[1.0], [0.0], [0.0], [-1.0]])
        >>> layer = EnergyLayer(steps=30, step_rule="preconditioned", lam=1.0, normalize="none")
        >>> [round(v, 4) for v in layer(graph, target).flatten().tolist()]  # (I + L)^-1 F = [4, 1, -1, -4] / 7
        [0.5714, 0.1429, -0.1429, -0.5714]
        >>> bound = layer.bind(graph, target)
        >>> [round(bound.value(y).item(), 4) for y in layer.iterates(graph, target)[:4]]  # E decreases
        [2.0, 1.2222, 0.9877, 0.905]
        >>> EnergyLayer(steps=5, step_rule="proximal")
        Traceback (most recent call last):
            ...
        dgl_bilevel.errors.ConfigError: step_rule='proximal' needs a non-smooth term: ...
    """

    def __init__(
        self,
        steps: int = 10,
        step_rule: "str | StepRule" = "preconditioned",
        energy: Optional[Energy] = None,
        *,
        lam: float = 1.0,
        penalty="quadratic",
        fidelity="quadratic",
        regularizer="none",
        normalize: str = "sym",
        step: "float | str" = "auto",
        beta: Optional[float] = None,
        preconditioned: Optional[bool] = None,
        f: Optional[nn.Module] = None,
        init: str = "target",
    ) -> None:
        super().__init__()
        if not isinstance(steps, int) or steps < 0:
            raise ConfigError(f"steps must be a non-negative integer, got {steps!r}")
        if init not in INITS:
            raise ConfigError(f"init must be one of {INITS}, got {init!r}")
        self.steps, self.init = steps, init
        self.energy = energy if energy is not None else Energy(lam, penalty, fidelity, regularizer, normalize)
        options = {k: v for k, v in (("step", step), ("beta", beta), ("preconditioned", preconditioned))
                   if v is not None and not (k == "step" and v == "auto")}
        self.rule = make_step_rule(step_rule, **options)
        self.rule.validate(self.energy)
        self.f = f

    def target(self, feat: Features) -> torch.Tensor:
        return self.f(feat) if self.f is not None else feat

    def bind(self, graph: "dgl.DGLGraph", feat: Features, edge_weight: Optional[torch.Tensor] = None) -> BoundEnergy:
        """The energy this layer descends, on ``graph`` with target ``f(feat)``."""
        return self.energy.bind(graph, self.target(feat), edge_weight)

    def iterates(self, graph: "dgl.DGLGraph", feat: Features, edge_weight: Optional[torch.Tensor] = None,
                 bound: Optional[BoundEnergy] = None) -> list[torch.Tensor]:
        """``[Y_0, Y_1, ..., Y_K]``."""
        bound = bound if bound is not None else self.bind(graph, feat, edge_weight)
        y0 = bound.target if self.init == "target" else torch.zeros_like(bound.target)
        return [y0, *self.rule.iterate(bound, y0, self.steps)]

    def forward(self, graph: "dgl.DGLGraph", feat: Features, edge_weight: Optional[torch.Tensor] = None) -> torch.Tensor:
        bound = self.bind(graph, feat, edge_weight)
        y = bound.target if self.init == "target" else torch.zeros_like(bound.target)
        for y in self.rule.iterate(bound, y, self.steps):
            pass
        return y

    def extra_repr(self) -> str:
        return f"steps={self.steps}, {self.rule.describe()}, energy={self.energy.describe()}"


def build_layer(step_rule: "str | StepRule" = "preconditioned", steps: int = 10, **options) -> EnergyLayer:
    """An :class:`EnergyLayer` by step-rule name (the CLI's entry point); ``options`` as its keywords.

    Args:
        step_rule: a name from :data:`~.steps.STEP_RULES` or a :class:`~.steps.StepRule`.
        steps: ``K``, the number of unfolded steps.
        **options: :class:`EnergyLayer`'s keywords (``lam``, ``penalty``, ``step``, ``f``, ...).

    Returns:
        The :class:`EnergyLayer`.

    Raises:
        ~dgl_bilevel.errors.ConfigError: as :class:`EnergyLayer`.

    Example:
        >>> import dgl
        >>> import torch
        >>> graph = dgl.graph(([0, 1, 1, 2, 2, 3], [1, 0, 2, 1, 3, 2]))  # the path 0-1-2-3
        >>> from dgl_bilevel.energy import build_layer
        >>> target = torch.tensor([[1.0], [0.0], [0.0], [-1.0]])
        >>> layer = build_layer("irls", steps=3, penalty="huber", normalize="none")
        >>> layer.rule.name, layer.steps, layer.energy.penalty
        ('irls', 3, Huber(delta=1.0))
        >>> layer(graph, target).shape
        torch.Size([4, 1])
    """
    return EnergyLayer(steps, step_rule, **options)


class MLP(nn.Module):
    """``f_theta``: a sparse-aware first projection, then linear layers with ELU and dropout between.

    Args:
        in_feats: input feature size.
        hidden: width of the hidden layers.
        out_feats: output size.
        num_layers: linear layers in all (1: just the projection).
        dropout: dropout probability before every layer but the first.

    Raises:
        ~dgl_bilevel.errors.ConfigError: ``num_layers < 1``.

    Example:
        >>> import torch
        >>> from dgl_bilevel.energy import MLP
        >>> _ = torch.manual_seed(0)
        >>> mlp = MLP(in_feats=3, hidden=8, out_feats=2, num_layers=2)
        >>> mlp(torch.randn(5, 3)).shape
        torch.Size([5, 2])
        >>> len(mlp.hidden), len(MLP(3, 8, 2, num_layers=1).hidden)
        (1, 0)
    """

    accepts_sparse_features = True

    def __init__(self, in_feats: int, hidden: int, out_feats: int, num_layers: int = 2, dropout: float = 0.0) -> None:
        super().__init__()
        if num_layers < 1:
            raise ConfigError(f"num_layers must be >= 1, got {num_layers}")
        dims = [hidden] * (num_layers - 1) + [out_feats]
        self.input = Projection(in_feats, dims[0])
        self.hidden = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:]))
        self.dropout = dropout

    def forward(self, feat: Features) -> torch.Tensor:
        h = self.input(feat)
        for layer in self.hidden:
            h = layer(F.dropout(F.elu(h), self.dropout, self.training))
        return h


@MODELS.register("energy", help="an MLP followed by K descent steps on a BloomGML energy (see --inner energy)")
class EnergyGNN(nn.Module):
    """``Y_K``: an MLP ``f_theta(X)`` followed by ``K`` unfolded steps on the energy.

    A model for :class:`~dgl_bilevel.inner.TrainedGNN` (``model(graph, feat, edge_weight=w)``);
    sparse features are projected before any propagation. With ``step_rule="preconditioned"``,
    ``normalize="sym"`` and a graph without self-loops it is APPNP with teleport ``1/(1 + lam)``.

    Args:
        in_feats, hidden, out_feats, num_layers, dropout: the MLP ``f_theta``.
        steps, step_rule, penalty, lam, normalize: the energy and its descent (``layer_options``
            go to :class:`EnergyLayer`: ``fidelity``, ``regularizer``, ``step``, ``beta``, ...).

    Raises:
        ~dgl_bilevel.errors.ConfigError: as :class:`MLP` and :class:`EnergyLayer`.

    Example:
        The default is APPNP with teleport ``1 / (1 + lam)`` on the MLP's outputs:

        >>> import dgl
        >>> import torch
        >>> graph = dgl.graph(([0, 1, 1, 2, 2, 3], [1, 0, 2, 1, 3, 2]))  # the path 0-1-2-3
        >>> from dgl_bilevel.energy import EnergyGNN
        >>> _ = torch.manual_seed(0)
        >>> model = EnergyGNN(in_feats=3, hidden=8, out_feats=2, steps=5, lam=1.0)
        >>> feat = torch.randn(4, 3)
        >>> out = model(graph, feat)
        >>> out.shape
        torch.Size([4, 2])
        >>> appnp = dgl.nn.APPNPConv(k=5, alpha=0.5)
        >>> torch.allclose(out, appnp(graph, model.mlp(feat)), atol=1e-6)
        True
    """

    accepts_sparse_features = True

    def __init__(
        self,
        in_feats: int,
        hidden: int,
        out_feats: int,
        steps: int = 10,
        step_rule: "str | StepRule" = "preconditioned",
        penalty="quadratic",
        lam: float = 1.0,
        normalize: str = "sym",
        num_layers: int = 2,
        dropout: float = 0.0,
        **layer_options,
    ) -> None:
        super().__init__()
        self.mlp = MLP(in_feats, hidden, out_feats, num_layers, dropout)
        self.propagate = EnergyLayer(steps, step_rule, lam=lam, penalty=penalty, normalize=normalize, **layer_options)

    def forward(self, graph: "dgl.DGLGraph", feat: Features, edge_weight: Optional[torch.Tensor] = None) -> torch.Tensor:
        return self.propagate(graph, self.mlp(feat), edge_weight=edge_weight)
