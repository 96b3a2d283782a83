"""The PGD topology attack of Xu et al. (2019), implemented from the paper's maths.

An evasion attack on a trained, fixed GNN: flip at most ``budget`` node pairs of the graph to
maximise the model's loss on target nodes. The discrete problem
``max_{u in {0,1}^pairs, sum u <= budget} L(A + (1 - 2A) * (u + u^T))`` is relaxed to
``s in [0, 1]^pairs`` and solved by projected gradient ascent,

    s_t = Proj(s_{t-1} + eta_t * grad_s L),   eta_t = c / sqrt(t),

with :func:`~dgl_bilevel.robust.projection.project_budget`; then ``u`` is recovered by random
sampling: ``K`` draws ``u ~ Bernoulli(s)``, those within the budget kept, the one of highest
loss chosen. We add one deterministic candidate to the draws, the ``budget`` largest entries
of ``s`` (so an attack always returns a feasible perturbation even if every draw exceeds the
budget); the result says which candidate won.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable, Optional

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError
from .adjacency import FlipSpace, check_budget, flips_of
from .projection import project_budget

LossFn = Callable[[torch.Tensor], torch.Tensor]
LOSSES = ("ce", "cw")


@dataclass
class PGDConfig:
    """Settings of the PGD attack.

    Args:
        steps: projected gradient steps ``T``.
        step_size: ``c`` in ``eta_t = c / sqrt(t)``.
        normalize: divide the gradient by its largest entry (default). Xu et al. step along the
            raw gradient; its size then follows the scale of the logits, and a model with flat,
            low-confidence outputs gets tiny steps: a weak attack that looks like robustness
            (gradient masking). Normalised, ``c`` is how far the most promising pair moves at
            the first step; raw, ``c`` must be large (about 200 for a mean loss on Cora).
        samples: Bernoulli draws ``K`` in the final random sampling.
        loss: ``"ce"`` (cross-entropy) or ``"cw"`` (Carlini-Wagner margin ``max_{c != y} z_c - z_y``,
            capped at ``kappa``: a node misclassified by more than ``kappa`` stops drawing flips).
        kappa: the CW cap, in logits.
        seed: seeds the Bernoulli draws.

    Raises:
        ~dgl_bilevel.errors.ConfigError: on a setting out of its range or an unknown loss.

    Example:
        >>> from dgl_bilevel.robust import PGDConfig
        >>> config = PGDConfig(steps=50, loss="cw")
        >>> config.steps, config.step_size, config.kappa
        (50, 1.0, 0.1)
        >>> PGDConfig(loss="mse")
        Traceback (most recent call last):
        ...
        dgl_bilevel.errors.ConfigError: loss must be one of ('ce', 'cw'), got 'mse'
    """

    steps: int = 100
    step_size: float = 1.0
    normalize: bool = True
    samples: int = 20
    loss: str = "ce"
    kappa: float = 0.1
    seed: int = 0

    def __post_init__(self) -> None:
        if isinstance(self.steps, bool) or not isinstance(self.steps, int) or self.steps < 1:
            raise ConfigError(f"PGD steps must be an integer >= 1, got {self.steps!r}")
        if not (isinstance(self.step_size, (int, float)) and math.isfinite(self.step_size) and self.step_size > 0):
            raise ConfigError(f"PGD step_size must be a positive number, got {self.step_size!r}")
        if isinstance(self.samples, bool) or not isinstance(self.samples, int) or self.samples < 0:
            raise ConfigError(f"samples must be an integer >= 0 (0: only the top-budget rounding), got {self.samples!r}")
        if self.loss not in LOSSES:
            raise ConfigError(f"loss must be one of {LOSSES}, got {self.loss!r}")
        if not self.kappa >= 0:
            raise ConfigError(f"kappa must be >= 0, got {self.kappa}")


@dataclass
class AttackResult:
    """What an attack found. ``adjacency`` is the perturbed graph, ``perturbation`` the binary
    strictly upper-triangular flips (``flips`` lists them as ``[m, 2]`` pairs ``i < j``),
    ``relaxed`` the continuous PGD solution; losses are the attack objective on the target nodes.

    Args:
        adjacency, perturbation, relaxed: as above (``N x N``).
        budget: the flips allowed; ``num_flips``: the flips made.
        loss_clean, loss_relaxed, loss_attacked: the objective on the clean graph, at the
            relaxed solution and at the chosen flips.
        feasible_samples: Bernoulli draws within the budget.
        chosen: ``"sample"``, ``"top"`` (the largest entries of ``relaxed``) or ``"none"``
            (zero budget).
        seconds: wall time; ``history``: the objective at each PGD step.

    Example:
        With a zero budget the attack changes nothing:

        >>> import dgl
        >>> import torch
        >>> from dgl_bilevel.robust import dense_adjacency, DenseGCN, pgd_attack
        >>> _ = torch.manual_seed(0)
        >>> adj = dense_adjacency(dgl.graph(([0, 0, 1, 3, 3, 4, 2], [1, 2, 2, 4, 5, 5, 3])))
        >>> features, labels = torch.eye(6), torch.tensor([0, 0, 0, 1, 1, 1])
        >>> model = DenseGCN(6, 8, 2, dropout=0.0)
        >>> result = pgd_attack(model, adj, features, labels, nodes=torch.tensor([1, 2]), budget=0)
        >>> result.chosen, result.num_flips, result.flips.shape, result.loss_attacked == result.loss_clean
        ('none', 0, torch.Size([0, 2]), True)
    """

    adjacency: torch.Tensor
    perturbation: torch.Tensor
    relaxed: torch.Tensor
    budget: int
    num_flips: int
    loss_clean: float
    loss_relaxed: float
    loss_attacked: float
    feasible_samples: int
    chosen: str
    seconds: float
    history: list = field(default_factory=list)

    @property
    def flips(self) -> torch.Tensor:
        return flips_of(self.perturbation)


def objective(model: nn.Module, features: torch.Tensor, labels: torch.Tensor, nodes: torch.Tensor,
              loss: str = "ce", kappa: float = 0.1) -> LossFn:
    """``adj -> loss`` of ``model`` on ``nodes`` (mean over them): what the attacker maximises.

    Args:
        model: ``model(adj, features) -> logits`` (e.g. :class:`~dgl_bilevel.robust.DenseGCN`).
        features, labels: of every node (true or pseudo labels).
        nodes: the target nodes.
        loss: ``"ce"`` (cross-entropy) or ``"cw"`` (the capped Carlini-Wagner margin).
        kappa: the CW cap.

    Returns:
        A function of the (possibly relaxed) adjacency returning a differentiable scalar.

    Raises:
        ~dgl_bilevel.errors.ConfigError: on an unknown loss.

    Example:
        >>> import dgl
        >>> import torch
        >>> from dgl_bilevel.robust import dense_adjacency, DenseGCN, objective
        >>> _ = torch.manual_seed(0)
        >>> adj = dense_adjacency(dgl.graph(([0, 0, 1, 3, 3, 4, 2], [1, 2, 2, 4, 5, 5, 3])))
        >>> features, labels = torch.eye(6), torch.tensor([0, 0, 0, 1, 1, 1])
        >>> model = DenseGCN(6, 8, 2, dropout=0.0)
        >>> ce = objective(model, features, labels, torch.tensor([1, 2, 3, 4]))
        >>> cw = objective(model, features, labels, torch.tensor([1, 2, 3, 4]), loss="cw", kappa=0.1)
        >>> ce(adj).shape, float(cw(adj).detach()) <= 0.1
        (torch.Size([]), True)
    """
    if loss not in LOSSES:
        raise ConfigError(f"loss must be one of {LOSSES}, got {loss!r}")
    y = labels[nodes]

    def fn(adj: torch.Tensor) -> torch.Tensor:
        logits = model(adj, features)[nodes]
        if loss == "ce":
            return F.cross_entropy(logits, y)
        true = logits.gather(1, y.unsqueeze(1)).squeeze(1)
        other = logits.scatter(1, y.unsqueeze(1), float("-inf")).max(1).values
        return (other - true).clamp(max=kappa).mean()

    return fn


def pair_gradient(loss_fn: LossFn, space: FlipSpace, s: torch.Tensor) -> tuple[torch.Tensor, float]:
    """``(dL/ds, L)`` at the relaxed perturbation ``s``, ``L = loss_fn(flip(adj, s))``: the gradient
    on the strict upper triangle (one entry per pair, both directions summed), zero elsewhere.
    Differentiates w.r.t. the perturbed adjacency only, then maps to pairs in closed form.

    Args:
        loss_fn: ``adj -> loss`` (see :func:`objective`).
        space: the clean adjacency's :class:`~dgl_bilevel.robust.FlipSpace`.
        s: the relaxed perturbation (strictly upper-triangular).

    Returns:
        ``(gradient, loss)``: an ``N x N`` tensor zero on and below the diagonal, and a float.

    Example:
        >>> import dgl
        >>> import torch
        >>> from dgl_bilevel.robust import dense_adjacency, DenseGCN, FlipSpace, objective, pair_gradient
        >>> _ = torch.manual_seed(0)
        >>> adj = dense_adjacency(dgl.graph(([0, 0, 1, 3, 3, 4, 2], [1, 2, 2, 4, 5, 5, 3])))
        >>> features, labels = torch.eye(6), torch.tensor([0, 0, 0, 1, 1, 1])
        >>> model = DenseGCN(6, 8, 2, dropout=0.0)
        >>> loss_fn = objective(model, features, labels, torch.tensor([1, 2, 3, 4]))
        >>> grad, value = pair_gradient(loss_fn, FlipSpace(adj), torch.zeros(6, 6))
        >>> torch.equal(grad, torch.triu(grad, 1)), value == float(loss_fn(adj).detach())
        (True, True)
    """
    with torch.no_grad():
        perturbed = space.apply(s)
    perturbed.requires_grad_(True)
    loss = loss_fn(perturbed)
    (grad,) = torch.autograd.grad(loss, perturbed)
    return space.pair_gradient(grad), float(loss.detach())


def ascent_step(loss_fn: LossFn, space: FlipSpace, s: torch.Tensor, budget: int, eta: float,
                mu: Optional[float] = None, normalize: bool = True) -> tuple[torch.Tensor, float, float]:
    """One projected gradient step on the relaxed perturbation: returns ``(s', mu', loss at s)``
    (``mu``: the projection's multiplier, a warm start for the next step). ``normalize``: the
    step is ``eta * grad / max|grad|`` (the pair of largest gradient moves by ``eta``), so its
    length does not depend on the scale of the loss (see :class:`PGDConfig`).

    Args:
        loss_fn: ``adj -> loss`` (see :func:`objective`).
        space: the clean adjacency's :class:`~dgl_bilevel.robust.FlipSpace`.
        s: the current relaxed perturbation.
        budget: the bound on ``sum(s)``.
        eta: the step size.
        mu: the previous projection multiplier (warm start), or ``None``.
        normalize: scale the gradient by its largest absolute entry.

    Returns:
        ``(s', mu', loss at s)``.

    Example:
        A long first step hits the budget, so the projection is active (``mu > 0``):

        >>> import dgl
        >>> import torch
        >>> from dgl_bilevel.robust import ascent_step, dense_adjacency, DenseGCN, FlipSpace, objective
        >>> _ = torch.manual_seed(0)
        >>> adj = dense_adjacency(dgl.graph(([0, 0, 1, 3, 3, 4, 2], [1, 2, 2, 4, 5, 5, 3])))
        >>> features, labels = torch.eye(6), torch.tensor([0, 0, 0, 1, 1, 1])
        >>> model = DenseGCN(6, 8, 2, dropout=0.0)
        >>> loss_fn = objective(model, features, labels, torch.tensor([1, 2, 3, 4]))
        >>> s, mu, value = ascent_step(loss_fn, FlipSpace(adj), torch.zeros(6, 6), budget=1, eta=2.0)
        >>> round(float(s.sum()), 4), mu > 0, bool((s >= 0).all() and (s <= 1).all())
        (1.0, True, True)
    """
    grad, value = pair_gradient(loss_fn, space, s)
    with torch.no_grad():
        if normalize:
            scale = float(grad.abs().max())
            eta = eta / scale if scale > 0 else 0.0
        new, mu = project_budget(grad.mul_(eta).add_(s), budget, mu0=mu)
    return new, mu, value


def round_perturbation(loss_fn: LossFn, space: FlipSpace, s: torch.Tensor, budget: int, samples: int,
                       generator: torch.Generator) -> tuple[torch.Tensor, float, int, str]:
    """Binary flips from the relaxed ``s``: the best (highest loss) of ``samples`` Bernoulli draws
    within the budget and of the ``budget`` largest entries of ``s``.
    Returns ``(u, loss, feasible draws, "sample" or "top")``.

    Args:
        loss_fn: ``adj -> loss`` (see :func:`objective`).
        space: the clean adjacency's :class:`~dgl_bilevel.robust.FlipSpace`.
        s: the relaxed perturbation, entries in [0, 1].
        budget: the most flips ``u`` may hold.
        samples: Bernoulli draws.
        generator: seeds the draws.

    Example:
        >>> import dgl
        >>> import torch
        >>> from dgl_bilevel.robust import (ascent_step, dense_adjacency, DenseGCN, FlipSpace, objective,
        ...                                 round_perturbation)
        >>> _ = torch.manual_seed(0)
        >>> adj = dense_adjacency(dgl.graph(([0, 0, 1, 3, 3, 4, 2], [1, 2, 2, 4, 5, 5, 3])))
        >>> features, labels = torch.eye(6), torch.tensor([0, 0, 0, 1, 1, 1])
        >>> model = DenseGCN(6, 8, 2, dropout=0.0)
        >>> loss_fn, space = objective(model, features, labels, torch.tensor([1, 2, 3, 4])), FlipSpace(adj)
        >>> s, _, _ = ascent_step(loss_fn, space, torch.zeros(6, 6), budget=1, eta=2.0)
        >>> u, loss, feasible, chosen = round_perturbation(loss_fn, space, s, budget=1, samples=10,
        ...                                                generator=torch.Generator().manual_seed(0))
        >>> float(u.sum()) <= 1, bool(((u == 0) | (u == 1)).all()), chosen in ("sample", "top")
        (True, True, True)
    """
    with torch.no_grad():
        flat = s.flatten()
        k = min(budget, int((flat > 0).sum()))
        top = torch.zeros_like(flat)
        if k:
            top[torch.topk(flat, k).indices] = 1.0
        best, best_loss, chosen = top.view_as(s), float(loss_fn(space.apply(top.view_as(s)))), "top"
        feasible = 0
        for _ in range(samples):
            u = torch.bernoulli(s, generator=generator)
            if float(u.sum()) > budget:
                continue
            feasible += 1
            value = float(loss_fn(space.apply(u)))
            if value > best_loss:
                best, best_loss, chosen = u, value, "sample"
    return best, best_loss, feasible, chosen


def pgd_attack(model: nn.Module, adj: torch.Tensor, features: torch.Tensor, labels: torch.Tensor,
               nodes: torch.Tensor, budget: int, config: Optional[PGDConfig] = None) -> AttackResult:
    """Attack ``model`` (kept fixed, evaluated without dropout) by flipping at most ``budget`` pairs
    of the symmetric 0/1 adjacency ``adj`` to maximise its loss on ``nodes`` (true or pseudo
    ``labels``). See the module docstring for the algorithm.

    Args:
        model: the attacked model, ``model(adj, features) -> logits``; its mode is restored.
        adj: the clean symmetric 0/1 adjacency.
        features, labels: of every node.
        nodes: the target nodes (non-empty).
        budget: the most pairs to flip, in ``[0, N (N - 1) / 2]``.
        config: the attack's settings (default :class:`PGDConfig`).

    Returns:
        An :class:`AttackResult`.

    Raises:
        ~dgl_bilevel.errors.ConfigError: on an invalid adjacency or budget, or no target nodes.

    Example:
        Train a GCN on two triangles, then let two flips attack its accuracy:

        >>> import dgl
        >>> import torch
        >>> from dgl_bilevel.robust import (accuracy, dense_adjacency, DenseGCN, pgd_attack, PGDConfig, train_gcn,
        ...                                 TrainConfig)
        >>> _ = torch.manual_seed(0)
        >>> adj = dense_adjacency(dgl.graph(([0, 0, 1, 3, 3, 4, 2], [1, 2, 2, 4, 5, 5, 3])))
        >>> features, labels = torch.eye(6), torch.tensor([0, 0, 0, 1, 1, 1])
        >>> model = DenseGCN(6, 8, 2, dropout=0.0)
        >>> _ = train_gcn(model, adj, features, labels, torch.tensor([0, 5]), torch.tensor([1, 4]),
        ...               TrainConfig(epochs=30))
        >>> result = pgd_attack(model, adj, features, labels, torch.tensor([1, 2, 3, 4]), budget=2,
        ...                     config=PGDConfig(steps=20))
        >>> result.num_flips, result.loss_attacked > result.loss_clean
        (2, True)
        >>> attacked = accuracy(model, result.adjacency, features, labels, torch.arange(6))
        >>> accuracy(model, adj, features, labels, torch.arange(6)), attacked < 1.0
        (1.0, True)
    """
    config = config or PGDConfig()
    space = FlipSpace(adj)
    budget = check_budget(budget, adj.shape[0])
    nodes = torch.as_tensor(nodes, dtype=torch.long)
    if nodes.numel() == 0:
        raise ConfigError("the attack needs at least one target node")
    was_training = model.training
    model.eval()
    start = time.perf_counter()
    try:
        loss_fn = objective(model, features, labels, nodes, config.loss, config.kappa)
        with torch.no_grad():
            clean = float(loss_fn(adj))
        s = torch.zeros_like(adj)
        history: list = []
        if budget == 0:
            return AttackResult(adj.clone(), s, s.clone(), 0, 0, clean, clean, clean, 0, "none",
                                time.perf_counter() - start, history)
        mu = None
        for t in range(1, config.steps + 1):
            s, mu, value = ascent_step(loss_fn, space, s, budget, config.step_size / math.sqrt(t), mu,
                                       config.normalize)
            history.append(value)
        with torch.no_grad():
            relaxed = float(loss_fn(space.apply(s)))
        gen = torch.Generator().manual_seed(config.seed)
        u, attacked, feasible, chosen = round_perturbation(loss_fn, space, s, budget, config.samples, gen)
        with torch.no_grad():
            perturbed = space.apply(u)
        return AttackResult(perturbed, u, s, budget, int(u.sum()), clean, relaxed, attacked, feasible, chosen,
                            time.perf_counter() - start, history)
    finally:
        model.train(was_training)
