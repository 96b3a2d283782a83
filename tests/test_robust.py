"""Robust training against structure attacks (dgl_bilevel.robust): the projection, the PGD
topology attack (gradient, budget, effect) and min-max training, on tiny graphs in float64."""
from __future__ import annotations

import math

import pytest
import torch

from dgl_bilevel.errors import ConfigError
from dgl_bilevel.robust import (AdversaryConfig, DenseGCN, FlipSpace, PGDConfig, TrainConfig, accuracy, budget_from_rate,
                                check_budget, dense_adjacency, flip, num_undirected_edges, objective, pair_gradient,
                                pgd_attack, project_budget, train_gcn)
from dgl_bilevel.robust.models import propagate

D = torch.float64


# ---------------------------------------------------------------------------------- helpers
def sbm(seed: int, signal: float, n_train: int, n_per_block: int = 40, p_in: float = 0.15, p_out: float = 0.01):
    """Two-block SBM with Gaussian features whose first coordinate carries the block (weakly)."""
    gen = torch.Generator().manual_seed(seed)
    n = 2 * n_per_block
    y = torch.arange(n) // n_per_block
    p = torch.where(y[:, None] == y[None, :], torch.tensor(p_in), torch.tensor(p_out))
    upper = torch.triu((torch.rand(n, n, generator=gen) < p).to(D), 1)
    x = torch.randn(n, 8, generator=gen, dtype=D)
    x[:, 0] += signal * (2 * y - 1)
    perm = torch.randperm(n, generator=gen)
    return upper + upper.T, x, y, perm[:n_train], perm[n_train:n_train + 10], perm[n_train + 10:]


def trained(adj, x, y, train, val, seed: int, adversary=None) -> DenseGCN:
    torch.manual_seed(seed)
    model = DenseGCN(x.shape[1], 16, 2).to(D)
    train_gcn(model, adj, x, y, train, val, TrainConfig(epochs=100), adversary=adversary)
    return model


def reference_projection(a: torch.Tensor, budget: float) -> torch.Tensor:
    """Exact projection by scanning the sorted breakpoints of f(mu) = sum clamp(a - mu, 0, 1)."""
    if a.clamp(0, 1).sum() <= budget:
        return a.clamp(0, 1)
    f = lambda mu: float((a - mu).clamp(0, 1).sum())  # noqa: E731 - non-increasing, piecewise linear
    points = sorted({0.0, *a.flatten().tolist(), *(a.flatten() - 1).tolist()})
    points = [p for p in points if p >= 0]
    for lo, hi in zip(points[:-1], points[1:]):
        if f(lo) >= budget >= f(hi):  # linear on [lo, hi]
            mu = lo if f(lo) == f(hi) else lo + (f(lo) - budget) * (hi - lo) / (f(lo) - f(hi))
            return (a - mu).clamp(0, 1)
    raise AssertionError("no bracket")


# ------------------------------------------------------------------------------- projection
@pytest.mark.parametrize("budget", [0.0, 0.5, 3.0, 7.25, 20.0])
@pytest.mark.parametrize("seed", [0, 1])
def test_projection_matches_sorted_reference_and_kkt(budget, seed):
    gen = torch.Generator().manual_seed(seed)
    a = torch.randn(6, 7, generator=gen, dtype=D) * 0.8 + 0.3
    s, mu = project_budget(a, budget, tol=1e-13)
    assert torch.allclose(s, reference_projection(a, budget), atol=1e-10)
    assert bool((s >= 0).all() and (s <= 1).all())
    assert mu >= 0
    assert float(s.sum()) <= budget + 1e-10
    assert torch.allclose(s, (a - mu).clamp(0, 1), atol=1e-12)  # KKT: clamp(a - mu)
    if mu > 0:  # complementary slackness: an active multiplier means a tight budget
        assert float(s.sum()) == pytest.approx(budget, abs=1e-10)
    else:
        assert torch.equal(s, a.clamp(0, 1))


def test_projection_inactive_budget_is_the_box_clamp():
    a = torch.tensor([[-0.5, 0.2], [0.3, 1.7]], dtype=D)
    s, mu = project_budget(a, 5.0)
    assert mu == 0.0 and torch.equal(s, torch.tensor([[0.0, 0.2], [0.3, 1.0]], dtype=D))


def test_projection_warm_start_and_zero_entries():
    gen = torch.Generator().manual_seed(3)
    a = torch.triu(torch.rand(30, 30, generator=gen, dtype=D) * 2 - 0.5, 1)
    cold, mu = project_budget(a, 10.0, tol=1e-13)
    warm, mu_warm = project_budget(a, 10.0, mu0=mu * 1.3, tol=1e-13)
    assert torch.allclose(cold, warm, atol=1e-10) and mu_warm == pytest.approx(mu, abs=1e-10)
    assert not torch.tril(cold).any()  # zero entries (the lower triangle) stay zero
    assert float(cold.sum()) == pytest.approx(10.0, abs=1e-9)


def test_projection_float32_stays_feasible():
    gen = torch.Generator().manual_seed(0)
    a = torch.rand(300, 300, generator=gen) * 0.05
    s, _ = project_budget(a, 40.0)
    assert float(s.double().sum()) <= 40.0 * (1 + 1e-5) and float(s.double().sum()) == pytest.approx(40.0, rel=1e-4)


# ------------------------------------------------------------------------------ the model
def test_dense_gcn_propagation_is_the_normalised_adjacency():
    adj, x, *_ = sbm(0, 1.0, 10)
    a_hat = adj + torch.eye(adj.shape[0], dtype=D)
    dinv = a_hat.sum(1).rsqrt()
    expected = dinv[:, None] * a_hat * dinv[None, :] @ x
    assert torch.allclose(propagate(adj, x, (adj.sum(1) + 1).rsqrt()), expected, atol=1e-12)


def test_dense_adjacency_from_a_dgl_graph():
    from dgl_bilevel._dgl import dgl
    g = dgl.graph((torch.tensor([0, 1, 1, 2, 2]), torch.tensor([1, 0, 2, 2, 0])), num_nodes=4)  # a self-loop, one-way 2->0
    adj = dense_adjacency(g, D)
    assert torch.equal(adj, adj.T) and not adj.diagonal().any()
    assert num_undirected_edges(adj) == 3


# ------------------------------------------------------------------------------ the attack
def test_pair_gradient_matches_finite_differences():
    adj, x, y, *_ = sbm(0, 1.0, 0, n_per_block=5, p_in=0.5, p_out=0.1)
    torch.manual_seed(0)
    model = DenseGCN(x.shape[1], 6, 2, dropout=0.0).to(D).eval()
    n = adj.shape[0]
    loss = objective(model, x, y, torch.arange(n))

    def value_at(s: torch.Tensor) -> float:
        with torch.no_grad():
            return float(loss(flip(adj, s)))

    gen = torch.Generator().manual_seed(1)
    s = torch.triu(torch.rand(n, n, generator=gen, dtype=D), 1)
    space = FlipSpace(adj)
    grad, value = pair_gradient(loss, space, s)
    assert value == pytest.approx(value_at(s), abs=1e-12)
    assert not torch.tril(grad).any()
    h = 1e-6
    for i, j in torch.triu_indices(n, n, 1).T.tolist():
        e = torch.zeros_like(s)
        e[i, j] = h
        fd = (value_at(s + e) - value_at(s - e)) / (2 * h)
        assert float(grad[i, j]) == pytest.approx(fd, abs=1e-7), (i, j)
    # and autograd through the flip itself agrees
    s_var = s.clone().requires_grad_(True)
    (auto,) = torch.autograd.grad(loss(flip(adj, s_var)), s_var)
    assert torch.allclose(grad, torch.triu(auto, 1), atol=1e-12)


def test_attack_respects_the_budget_exactly():
    adj, x, y, train, val, test = sbm(1, 0.5, 10)
    model = trained(adj, x, y, train, val, seed=1)
    result = pgd_attack(model, adj, x, y, test, budget=7, config=PGDConfig(steps=20, samples=10))
    u, new = result.perturbation, result.adjacency
    assert bool(((u == 0) | (u == 1)).all()) and not torch.tril(u).any()
    assert result.num_flips == int(u.sum()) <= 7 and result.num_flips > 0
    assert result.flips.shape == (result.num_flips, 2) and bool((result.flips[:, 0] < result.flips[:, 1]).all())
    assert bool(((new == 0) | (new == 1)).all()) and torch.equal(new, new.T) and not new.diagonal().any()
    assert int((new != adj).sum()) == 2 * result.num_flips  # each flip changes both directions
    assert torch.equal(new, flip(adj, u))
    assert float(result.relaxed.sum()) <= 7 + 1e-9 and not torch.tril(result.relaxed).any()
    assert result.loss_attacked > result.loss_clean
    none = pgd_attack(model, adj, x, y, test, budget=0)
    assert none.num_flips == 0 and torch.equal(none.adjacency, adj)


@pytest.mark.parametrize("loss", ["ce", "cw"])
def test_attack_lowers_the_accuracy_of_an_accurate_model(loss):
    adj, x, y, train, val, test = sbm(1, 0.5, 10)
    model = trained(adj, x, y, train, val, seed=1)
    clean = accuracy(model, adj, x, y, test)
    assert clean >= 0.95  # the toy is easy for the plain model
    budget = budget_from_rate(0.3, num_undirected_edges(adj))
    result = pgd_attack(model, adj, x, y, test, budget, PGDConfig(steps=50, loss=loss))
    attacked = accuracy(model, result.adjacency, x, y, test)
    assert attacked <= clean - 0.2, (clean, attacked)  # a no-op attack fails here
    # and PGD beats as many random flips
    gen = torch.Generator().manual_seed(0)
    n = adj.shape[0]
    pairs = torch.triu_indices(n, n, 1)
    pick = pairs[:, torch.randperm(pairs.shape[1], generator=gen)[:budget]]
    u = torch.zeros_like(adj)
    u[pick[0], pick[1]] = 1.0
    assert accuracy(model, flip(adj, u), x, y, test) > attacked


def test_model_mode_is_restored_after_an_attack():
    adj, x, y, train, val, test = sbm(1, 0.5, 10)
    model = DenseGCN(x.shape[1], 4, 2).to(D).train()
    pgd_attack(model, adj, x, y, test, 2, PGDConfig(steps=2))
    assert model.training


# ---------------------------------------------------------------------------- robust training
def test_robust_training_lowers_the_worst_case_training_loss():
    """The min-max objective: an independent PGD attack on the training loss hurts the
    robustly trained model less than the plainly trained one (and it has not collapsed)."""
    adj, x, y, train, val, test = sbm(0, 1.0, 20)
    budget = budget_from_rate(0.1, num_undirected_edges(adj))
    plain = trained(adj, x, y, train, val, seed=0)
    robust = trained(adj, x, y, train, val, seed=0, adversary=AdversaryConfig(rate=0.1))
    assert accuracy(robust, adj, x, y, test) >= 0.9
    attack = PGDConfig(steps=50)
    worst_plain = pgd_attack(plain, adj, x, y, train, budget, attack).loss_attacked
    worst_robust = pgd_attack(robust, adj, x, y, train, budget, attack).loss_attacked
    assert worst_robust < 0.8 * worst_plain, (worst_robust, worst_plain)
    assert worst_robust < math.log(2)  # better than a constant prediction


def test_training_records_history_and_budget():
    adj, x, y, train, val, test = sbm(0, 1.0, 20)
    torch.manual_seed(0)
    model = DenseGCN(x.shape[1], 8, 2).to(D)
    result = train_gcn(model, adj, x, y, train, val, TrainConfig(epochs=5),
                       AdversaryConfig(budget=4, steps=2, sampled=True))
    assert result.budget == 4 and len(result.history) == 5 and 0 <= result.best_epoch < 5
    assert float(result.perturbation.sum()) <= 4 + 1e-9 and "adversary_loss" in result.history[0]
    assert not model.training
    pseudo = train_gcn(model, adj, x, y, train, val, TrainConfig(epochs=3), AdversaryConfig(rate=0.1, targets="all"))
    assert pseudo.budget == budget_from_rate(0.1, num_undirected_edges(adj)) and len(pseudo.history) == 3


# ------------------------------------------------------------------------------------ errors
@pytest.mark.parametrize("rate", [-0.1, 1.5, float("nan"), "0.1", True])
def test_bad_rates(rate):
    with pytest.raises(ConfigError, match="rate"):
        budget_from_rate(rate, 100)
    with pytest.raises(ConfigError, match="rate"):
        AdversaryConfig(rate=rate)


@pytest.mark.parametrize("budget", [-1, 2.5, 46, "3", None])
def test_bad_budgets(budget):
    with pytest.raises(ConfigError, match="budget"):
        check_budget(budget, 10)  # 45 pairs


def test_budget_from_rate_rounds():
    assert budget_from_rate(0.05, 5278) == 264 and budget_from_rate(0.10, 5278) == 528 and budget_from_rate(0, 9) == 0


def test_bad_attack_inputs():
    adj, x, y, train, val, test = sbm(1, 0.5, 10)
    model = DenseGCN(x.shape[1], 4, 2).to(D)
    with pytest.raises(ConfigError, match="budget"):
        pgd_attack(model, adj, x, y, test, budget=10 ** 6)
    with pytest.raises(ConfigError, match="symmetric"):
        bad = adj.clone()
        bad[0, 1], bad[1, 0] = 1.0, 0.0
        pgd_attack(model, bad, x, y, test, budget=1)
    with pytest.raises(ConfigError, match="target"):
        pgd_attack(model, adj, x, y, torch.zeros(0, dtype=torch.long), budget=1)
    for kwargs in ({"steps": 0}, {"step_size": -1.0}, {"samples": -1}, {"loss": "mse"}, {"kappa": -1.0}):
        with pytest.raises(ConfigError):
            PGDConfig(**kwargs)
    for kwargs in ({"steps": 0}, {"step_size": 0.0}, {"targets": "test"}):
        with pytest.raises(ConfigError):
            AdversaryConfig(**kwargs)
    with pytest.raises(ConfigError, match="epochs"):
        TrainConfig(epochs=0)
    with pytest.raises(ConfigError, match="budget"):
        project_budget(torch.zeros(3), -1.0)


def test_robust_training_recipe_runs_checkpoints_and_reports(tmp_path):
    """A tiny run of recipes/robust_training.py on Cora: every cell is written, every attack stays
    within its budget, and a rerun reads the checkpointed seed instead of training again."""
    import importlib.util
    import json
    import pathlib

    path = pathlib.Path(__file__).resolve().parents[1] / "recipes" / "robust_training.py"
    spec = importlib.util.spec_from_file_location("robust_training_recipe", path)
    recipe = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(recipe)
    argv = ["--seeds", "1", "--epochs", "3", "--attack-steps", "2", "--samples", "2", "--rates", "0.01",
            "--out", str(tmp_path), "--no-docs"]
    recipe.main(argv)
    seed_file = tmp_path / "seed_0.json"
    saved = json.loads(seed_file.read_text())
    for model in ("plain", "robust"):
        attacks = saved["models"][model]["attacks"]
        assert set(attacks) == {"0.01/ce", "0.01/cw"}
        for cell in attacks.values():
            assert 0 < cell["flips"] <= cell["budget"] == round(0.01 * saved["edges"])
            assert 0.0 <= cell["accuracy"] <= 1.0
    stamp = seed_file.stat().st_mtime_ns
    recipe.main(argv)  # resumes: the finished seed is not recomputed
    assert seed_file.stat().st_mtime_ns == stamp
