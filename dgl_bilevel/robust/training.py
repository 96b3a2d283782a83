"""Plain and robust (min-max) training of a dense GCN, with model selection on validation.

Robust training is the bilevel program

    min_theta  max_{s in [0,1]^pairs, sum s <= budget}  CE_train(theta; A + (1 - 2A) * (s + s^T))

with the adversary at the lower level. By Danskin's theorem the gradient of the max in
``theta`` is the gradient at the maximiser, so each epoch (our interpretation of BiGrad's robust
use; the adversarial training of Xu et al. 2019 has the same min-max form) does:

1. ``adversary.steps`` projected gradient ascent steps on ``s`` (warm-started from the previous
   epoch, step ``c / sqrt(j)`` at the ``j``-th step of the epoch), on the training loss of the
   model without dropout;
2. one Adam step on the weights at the perturbed graph: the relaxed ``A(s)`` (default) or a
   Bernoulli draw of it within the budget.

The perturbation is a per-epoch approximation of the maximiser, not a solved lower level.
"""
from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass, field
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError
from .adjacency import FlipSpace, budget_from_rate, check_adjacency, check_budget, num_undirected_edges
from .attack import ascent_step, objective


@dataclass
class TrainConfig:
    """Adam on the cross-entropy of the training nodes; the epoch of best validation accuracy is kept.

    Args:
        epochs: training epochs (an integer >= 1).
        lr: Adam's learning rate (> 0).
        weight_decay: Adam's weight decay (>= 0).

    Raises:
        ~dgl_bilevel.errors.ConfigError: on a setting out of its range.

    Example:
        >>> from dgl_bilevel.robust import TrainConfig
        >>> TrainConfig(epochs=50)
        TrainConfig(epochs=50, lr=0.01, weight_decay=0.0005)
        >>> TrainConfig(epochs=0)
        Traceback (most recent call last):
        ...
        dgl_bilevel.errors.ConfigError: epochs must be an integer >= 1, got 0
    """

    epochs: int = 200
    lr: float = 0.01
    weight_decay: float = 5e-4

    def __post_init__(self) -> None:
        if isinstance(self.epochs, bool) or not isinstance(self.epochs, int) or self.epochs < 1:
            raise ConfigError(f"epochs must be an integer >= 1, got {self.epochs!r}")
        if not self.lr > 0 or not self.weight_decay >= 0:
            raise ConfigError(f"lr must be > 0 and weight_decay >= 0, got {self.lr}, {self.weight_decay}")


TARGETS = ("train", "all")


@dataclass
class AdversaryConfig:
    """The training-time adversary: budget ``round(rate * |E|)`` (or an explicit ``budget``),
    ``steps`` ascent steps per epoch with ``eta_j = step_size / sqrt(j)`` (on the normalised
    gradient unless ``normalize=False``, see :class:`~dgl_bilevel.robust.attack.PGDConfig`); ``sampled=True`` trains
    at a Bernoulli draw of the relaxed perturbation (redrawn until within the budget, at most 20
    tries, else the relaxed one), ``False`` at the relaxed one. ``targets="train"``: the adversary
    maximises the training loss (the bilevel program above); ``"all"``: the loss on every node,
    with the true labels on the training nodes and the current model's clean predictions
    elsewhere (pseudo-labels, recomputed each epoch).

    Raises:
        ~dgl_bilevel.errors.ConfigError: on a rate outside [0, 1], unknown targets, or invalid steps or step size;
            ``resolve_budget`` on a budget the graph cannot take.

    Example:
        ``resolve_budget(adj)`` turns the rate into flips on a given graph (7 edges here):

        >>> import dgl
        >>> from dgl_bilevel.robust import AdversaryConfig, dense_adjacency
        >>> adj = dense_adjacency(dgl.graph(([0, 0, 1, 3, 3, 4, 2], [1, 2, 2, 4, 5, 5, 3])))
        >>> AdversaryConfig(rate=0.3).resolve_budget(adj), AdversaryConfig(budget=5).resolve_budget(adj)
        (2, 5)
        >>> AdversaryConfig(targets="test")
        Traceback (most recent call last):
        ...
        dgl_bilevel.errors.ConfigError: adversary targets must be one of ('train', 'all'), got 'test'
    """

    rate: float = 0.05
    budget: Optional[int] = None
    steps: int = 1
    step_size: float = 1.0
    normalize: bool = True
    sampled: bool = False
    targets: str = "train"
    seed: int = 0

    def __post_init__(self) -> None:
        budget_from_rate(self.rate, 0)  # validates the rate
        if self.targets not in TARGETS:
            raise ConfigError(f"adversary targets must be one of {TARGETS}, got {self.targets!r}")
        if isinstance(self.steps, bool) or not isinstance(self.steps, int) or self.steps < 1:
            raise ConfigError(f"adversary steps must be an integer >= 1, got {self.steps!r}")
        if not (isinstance(self.step_size, (int, float)) and math.isfinite(self.step_size) and self.step_size > 0):
            raise ConfigError(f"adversary step_size must be a positive number, got {self.step_size!r}")

    def resolve_budget(self, adj: torch.Tensor) -> int:
        if self.budget is not None:
            return check_budget(self.budget, adj.shape[0])
        return budget_from_rate(self.rate, num_undirected_edges(adj))


@dataclass
class TrainResult:
    """The selected epoch and its validation accuracy, per-epoch history, wall time; for robust
    training the adversary's budget and final relaxed perturbation.

    Args:
        best_epoch, best_val: the selected epoch and its clean validation accuracy.
        seconds: wall time.
        history: one dict per epoch (``epoch``, ``train_loss``, ``val_acc``, and
            ``adversary_loss`` in robust training).
        budget: the adversary's flips (0: clean training).
        perturbation: the adversary's last relaxed ``s`` (``None``: clean training).

    Example:
        >>> import dgl
        >>> import torch
        >>> from dgl_bilevel.robust import AdversaryConfig, DenseGCN, dense_adjacency, train_gcn, TrainConfig
        >>> _ = torch.manual_seed(0)
        >>> adj = dense_adjacency(dgl.graph(([0, 0, 1, 3, 3, 4, 2], [1, 2, 2, 4, 5, 5, 3])))
        >>> features, labels = torch.eye(6), torch.tensor([0, 0, 0, 1, 1, 1])
        >>> model = DenseGCN(6, 8, 2, dropout=0.0)
        >>> result = train_gcn(model, adj, features, labels, torch.tensor([0, 5]), torch.tensor([1, 4]),
        ...                    TrainConfig(epochs=10), adversary=AdversaryConfig(budget=2))
        >>> len(result.history), sorted(result.history[0]), result.budget
        (10, ['adversary_loss', 'epoch', 'train_loss', 'val_acc'], 2)
        >>> result.perturbation.shape, float(result.perturbation.sum()) <= 2 + 1e-5
        (torch.Size([6, 6]), True)
    """

    best_epoch: int
    best_val: float
    seconds: float
    history: list = field(default_factory=list)
    budget: int = 0
    perturbation: Optional[torch.Tensor] = None


def accuracy(model: nn.Module, adj: torch.Tensor, features: torch.Tensor, labels: torch.Tensor,
             nodes: torch.Tensor) -> float:
    """Accuracy of ``model`` (without dropout) on ``nodes``; the model's mode is restored.

    Args:
        model: ``model(adj, features) -> logits``.
        adj: the adjacency to evaluate on (clean or attacked).
        features, labels: of every node.
        nodes: the nodes scored.

    Returns:
        The share of ``nodes`` whose largest logit is their label.

    Example:
        Any module called as ``model(adj, features)`` works; this one predicts from the features:

        >>> import torch
        >>> from dgl_bilevel.robust import accuracy
        >>> class FeaturesAsLogits(torch.nn.Module):
        ...     def forward(self, adj, features):
        ...         return features
        >>> features = torch.tensor([[2.0, 0.0], [0.0, 1.0], [1.0, 0.0]])
        >>> accuracy(FeaturesAsLogits(), torch.zeros(3, 3), features, torch.tensor([0, 1, 1]),
        ...          torch.tensor([0, 1, 2]))
        0.6666666865348816
    """
    was_training = model.training
    model.eval()
    with torch.no_grad():
        pred = model(adj, features)[nodes].argmax(1)
    model.train(was_training)
    return float((pred == labels[nodes]).float().mean())


def train_gcn(model: nn.Module, adj: torch.Tensor, features: torch.Tensor, labels: torch.Tensor,
              train_nodes: torch.Tensor, val_nodes: torch.Tensor, config: Optional[TrainConfig] = None,
              adversary: Optional[AdversaryConfig] = None) -> TrainResult:
    """Train ``model`` on the clean graph (``adversary=None``) or against a structure adversary
    (robust training, see the module docstring). Selection: clean validation accuracy, ties to
    the later epoch; the model ends with the selected epoch's weights.

    Args:
        model: ``model(adj, features) -> logits``, e.g. :class:`~dgl_bilevel.robust.DenseGCN`.
        adj: the clean symmetric 0/1 adjacency.
        features, labels: of every node.
        train_nodes, val_nodes: non-empty node sets.
        config: optimiser settings (default :class:`TrainConfig`).
        adversary: the training-time adversary (``None``: clean training).

    Returns:
        A :class:`TrainResult`; the model is left in eval mode.

    Raises:
        ~dgl_bilevel.errors.ConfigError: on an invalid adjacency or budget, or an empty node set.

    Example:
        >>> import dgl
        >>> import torch
        >>> from dgl_bilevel.robust import accuracy, AdversaryConfig, DenseGCN, dense_adjacency, train_gcn, TrainConfig
        >>> _ = torch.manual_seed(0)
        >>> adj = dense_adjacency(dgl.graph(([0, 0, 1, 3, 3, 4, 2], [1, 2, 2, 4, 5, 5, 3])))
        >>> features, labels = torch.eye(6), torch.tensor([0, 0, 0, 1, 1, 1])
        >>> model = DenseGCN(6, 8, 2, dropout=0.0)
        >>> train, val = torch.tensor([0, 5]), torch.tensor([1, 4])
        >>> result = train_gcn(model, adj, features, labels, train, val, TrainConfig(epochs=30))
        >>> result.best_val, result.budget, accuracy(model, adj, features, labels, torch.arange(6))
        (1.0, 0, 1.0)
        >>> robust = train_gcn(DenseGCN(6, 8, 2, dropout=0.0), adj, features, labels, train, val,
        ...                    TrainConfig(epochs=30), adversary=AdversaryConfig(rate=0.3))
        >>> robust.budget, "adversary_loss" in robust.history[0]
        (2, True)
    """
    config = config or TrainConfig()
    adj = check_adjacency(adj)
    train_nodes = torch.as_tensor(train_nodes, dtype=torch.long)
    val_nodes = torch.as_tensor(val_nodes, dtype=torch.long)
    if train_nodes.numel() == 0 or val_nodes.numel() == 0:
        raise ConfigError("training needs non-empty training and validation node sets")
    budget = adversary.resolve_budget(adj) if adversary is not None else 0
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    y = labels[train_nodes]
    s, mu = torch.zeros_like(adj), None
    gen = torch.Generator().manual_seed(adversary.seed if adversary is not None else 0)
    adv_loss = objective(model, features, labels, train_nodes) if budget else None
    every = torch.arange(adj.shape[0])
    space = FlipSpace(adj) if budget else None
    best = (-1.0, -1, None)
    history = []
    start = time.perf_counter()
    for epoch in range(config.epochs):
        record = {"epoch": epoch}
        graph = adj
        if budget:
            model.eval()
            if adversary.targets == "all":
                adv_loss = objective(model, features, _pseudo_labels(model, adj, features, labels, train_nodes), every)
            for j in range(1, adversary.steps + 1):
                s, mu, value = ascent_step(adv_loss, space, s, budget, adversary.step_size / math.sqrt(j), mu,
                                           adversary.normalize)
            record["adversary_loss"] = value
            graph = space.apply(_draw(s, budget, gen) if adversary.sampled else s)
        model.train()
        loss = F.cross_entropy(model(graph, features)[train_nodes], y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        record["train_loss"] = float(loss.detach())
        record["val_acc"] = accuracy(model, adj, features, labels, val_nodes)
        history.append(record)
        if record["val_acc"] >= best[0]:
            best = (record["val_acc"], epoch, copy.deepcopy(model.state_dict()))
    model.load_state_dict(best[2])
    model.eval()
    return TrainResult(best[1], best[0], time.perf_counter() - start, history, budget, s if budget else None)


def _pseudo_labels(model: nn.Module, adj: torch.Tensor, features: torch.Tensor, labels: torch.Tensor,
                   train_nodes: torch.Tensor) -> torch.Tensor:
    """The model's clean predictions, with the true labels on the training nodes."""
    with torch.no_grad():
        pseudo = model(adj, features).argmax(1)
    pseudo[train_nodes] = labels[train_nodes]
    return pseudo


def _draw(s: torch.Tensor, budget: int, gen: torch.Generator, tries: int = 20) -> torch.Tensor:
    """A Bernoulli draw of ``s`` within the budget (the relaxed ``s`` if none of ``tries`` is)."""
    for _ in range(tries):
        u = torch.bernoulli(s, generator=gen)
        if float(u.sum()) <= budget:
            return u
    return s
