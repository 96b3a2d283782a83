"""Robust training against structure attacks: an adversary flips at most a budget of edges to
maximise the loss (lower level), the GNN is trained against it (upper level). ::

    from dgl_bilevel.robust import DenseGCN, dense_adjacency, pgd_attack, train_gcn, AdversaryConfig
    adj = dense_adjacency(data.graph)
    model = DenseGCN(data.num_features, 16, data.num_classes)
    train_gcn(model, adj, data.features, data.labels, data.v_in, val, adversary=AdversaryConfig(rate=0.05))
    result = pgd_attack(model, adj, data.features, data.labels, data.test, budget=264)
    accuracy(model, result.adjacency, data.features, data.labels, data.test)

Dense ``N x N`` matrices throughout (see :mod:`.adjacency` for why); docs/bigrad.md has the
Cora results.
"""
from .adjacency import (FlipSpace, budget_from_rate, check_adjacency, check_budget, dense_adjacency, flip, flips_of,
                        num_pairs, num_undirected_edges, symmetric)
from .attack import AttackResult, PGDConfig, ascent_step, objective, pair_gradient, pgd_attack, round_perturbation
from .models import DenseGCN
from .projection import project_budget
from .training import AdversaryConfig, TrainConfig, TrainResult, accuracy, train_gcn

__all__ = [
    "AdversaryConfig",
    "AttackResult",
    "FlipSpace",
    "DenseGCN",
    "PGDConfig",
    "TrainConfig",
    "TrainResult",
    "accuracy",
    "ascent_step",
    "budget_from_rate",
    "check_adjacency",
    "check_budget",
    "dense_adjacency",
    "flip",
    "flips_of",
    "num_pairs",
    "num_undirected_edges",
    "objective",
    "pair_gradient",
    "pgd_attack",
    "project_budget",
    "round_perturbation",
    "symmetric",
    "train_gcn",
]
