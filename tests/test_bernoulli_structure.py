"""Probabilistic structures (LDS-style Bernoulli edges): sampling, estimators against exact
enumeration in float64, the expected prediction, projection, the frozen control, resume."""
from __future__ import annotations

import math

import pytest
import torch

import dgl_bilevel as dbl
from dgl_bilevel._dgl import dgl
from dgl_bilevel.errors import ConfigError
from dgl_bilevel.inner.graph_sampling import SampledGraphs, average_predictions
from dgl_bilevel.losses import task_loss
from dgl_bilevel.outer import fit, solve_on_graph
from dgl_bilevel.structure.bernoulli import BernoulliEdges
from dgl_bilevel.structure.sampling import GraphSampler, bernoulli_log_prob, bernoulli_mask, enumerate_graphs


def tiny_data(dtype=torch.float64) -> dbl.BilevelData:
    """Six nodes on a path with two label blocks; 5 undirected edges (10 directed)."""
    src = torch.tensor([0, 1, 2, 3, 4])
    dst = src + 1
    g = dgl.graph((torch.cat([src, dst]), torch.cat([dst, src])), num_nodes=6)
    gen = torch.Generator().manual_seed(3)
    features = torch.randn(6, 3, generator=gen, dtype=dtype)
    labels = torch.tensor([0, 0, 0, 1, 1, 1])
    return dbl.BilevelData(g, features, labels, v_in=[0, 5], v_out=[1, 4], val=[2], test=[3], name="tiny")


def tiny_inner() -> dbl.LaplacianRegularization:
    return dbl.LaplacianRegularization(lam=1.0, loss="mse", steps=0)


def outer_loss_of(data, inner, weights) -> float:
    _, outputs = solve_on_graph(data, inner, weights, hypergrad="adjoint")
    return float(task_loss(outputs, data.labels, data.v_out, data.task))


# ----------------------------------------------------------------------------------- sampling
def test_pairs_are_drawn_together_and_frequencies_match_theta():
    theta = torch.tensor([0.2, 0.7, 0.2, 0.7], dtype=torch.float64)
    pair_index = torch.tensor([0, 1, 0, 1])
    gen = torch.Generator().manual_seed(0)
    draws = torch.stack([bernoulli_mask(theta, gen, pair_index) for _ in range(4000)])
    assert torch.equal(draws[:, 0], draws[:, 2]) and torch.equal(draws[:, 1], draws[:, 3])
    freq = draws.mean(0)
    se = (theta * (1 - theta) / 4000).sqrt()
    assert ((freq - theta).abs() < 4 * se).all()


def test_enumeration_is_a_distribution_and_log_prob_counts_pairs_once():
    theta = torch.tensor([0.3, 0.9, 0.3, 0.9, 0.5], dtype=torch.float64)
    pair_index = torch.tensor([0, 1, 0, 1, 2])
    masks, probabilities = enumerate_graphs(theta, pair_index)
    assert masks.shape == (8, 5) and torch.allclose(probabilities.sum(), torch.tensor(1.0, dtype=torch.float64))
    for mask, p in zip(masks, probabilities):
        assert math.isclose(float(bernoulli_log_prob(mask, theta, pair_index)), math.log(float(p)), rel_tol=1e-9)
    with pytest.raises(ConfigError, match="2\\^17"):
        enumerate_graphs(torch.full((17,), 0.5))


def test_sampler_refuses_bad_settings():
    with pytest.raises(ConfigError, match="graph samples"):
        GraphSampler(samples=0)
    with pytest.raises(ConfigError, match="resample='outer'"):
        GraphSampler(estimator="score", resample="step")
    with pytest.raises(ConfigError, match="eval samples"):
        GraphSampler(eval_samples=-1)


# ----------------------------------------------------------------------------------- estimators
def _loss_table(data, masks):
    inner = tiny_inner()
    return torch.tensor([outer_loss_of(data, inner, m) for m in masks], dtype=torch.float64)


def _exact_gradient(theta, masks, losses):
    theta = theta.clone().requires_grad_(True)
    probabilities = torch.where(masks > 0, theta, 1 - theta).prod(dim=1)
    (grad,) = torch.autograd.grad((probabilities * losses).sum(), theta)
    return grad


def test_score_estimator_is_unbiased_for_the_expected_outer_loss():
    """Exact gradient of E_m[L(m)] by enumerating all 2^10 graphs (directed edges drawn apart),
    against the mean of single-draw score estimates: within 3 standard errors per edge."""
    data = tiny_data()
    theta = torch.tensor([0.8, 0.3, 0.6, 0.5, 0.9, 0.7, 0.4, 0.6, 0.2, 0.5], dtype=torch.float64)
    masks, _ = enumerate_graphs(theta)
    losses = _loss_table(data, masks)
    exact = _exact_gradient(theta, masks, losses)
    keys = (masks * (2 ** torch.arange(10, dtype=torch.float64))).sum(1).long()
    lookup = torch.empty(2 ** 10, dtype=torch.float64)
    lookup[keys] = losses
    sampler = GraphSampler(estimator="score", resample="outer", generator=torch.Generator().manual_seed(1))
    sampler.baseline = float(losses.mean())  # a fixed baseline keeps every draw's estimate unbiased
    estimates = []
    for _ in range(6000):
        t = theta.clone().requires_grad_(True)
        (mask,) = sampler.draw(t, 1)
        loss = lookup[(mask * (2 ** torch.arange(10, dtype=torch.float64))).sum().long()]
        sampler.baseline, kept = float(losses.mean()), sampler.baseline
        surrogate = sampler.surrogate(torch.as_tensor(loss), [mask], t)
        (grad,) = torch.autograd.grad(surrogate, t)
        estimates.append(grad)
    estimates = torch.stack(estimates)
    mean, se = estimates.mean(0), estimates.std(0) / math.sqrt(len(estimates))
    assert (exact.abs() > 1e-4).sum() >= 5  # the check has something to find
    assert ((mean - exact).abs() <= 3 * se + 1e-12).all(), (mean, exact, se)
    # and a sign error would be caught: the negated estimate is far outside
    assert ((-mean - exact).abs() > 3 * se).any()


def test_straight_through_bias_against_the_exact_gradient_is_reported():
    """The straight-through estimate E_m[dL/dw at w = m] is biased by design: its bias is measured
    here (and printed), not hidden; it must still correlate with the exact gradient."""
    data = tiny_data()
    theta = torch.tensor([0.8, 0.3, 0.6, 0.5, 0.9, 0.7, 0.4, 0.6, 0.2, 0.5], dtype=torch.float64)
    masks, probabilities = enumerate_graphs(theta)
    losses = _loss_table(data, masks)
    exact = _exact_gradient(theta, masks, losses)
    inner = tiny_inner()
    inner.bind(data, data.graph)
    pathwise = torch.zeros_like(theta)
    for mask, p in zip(masks, probabilities):
        w = mask.clone().requires_grad_(True)
        solution = dbl.Adjoint().solve(inner, w, inner.starting_params())
        loss = task_loss(inner.predict(solution.params, w), data.labels, data.v_out, data.task)
        (g,) = torch.autograd.grad(loss, w)
        pathwise += p * g
    bias = (pathwise - exact).norm() / exact.norm()
    cosine = torch.nn.functional.cosine_similarity(pathwise, exact, dim=0)
    print(f"straight-through relative bias {float(bias):.3f}, cosine to the exact gradient {float(cosine):.3f}")
    assert float(bias) > 1e-3  # biased, as documented
    assert float(cosine) > 0.0


# ----------------------------------------------------------------------------------- expected prediction
def test_exact_expected_prediction_equals_enumeration_and_monte_carlo_agrees():
    data = tiny_data()
    theta = torch.tensor([0.8, 0.3, 0.6, 0.5, 0.9, 0.8, 0.3, 0.6, 0.5, 0.9], dtype=torch.float64)
    pair_index = torch.tensor([0, 1, 2, 3, 4, 0, 1, 2, 3, 4])
    model = dbl.models.GCN(3, 4, 2)
    base = dbl.TrainedGNN(model, steps=1)
    base.bind(data, data.graph)
    params = base.initial_params(torch.Generator().manual_seed(0))
    exact_sampler = GraphSampler(exact_predictions=True, pair_index=pair_index)
    exact = SampledGraphs(base, exact_sampler).bind(data, data.graph).predict(params, theta)
    masks, probabilities = enumerate_graphs(theta, pair_index)
    by_hand = sum(p * torch.softmax(base.predict(params, m), -1) for m, p in zip(masks, probabilities))
    assert torch.allclose(torch.softmax(exact, -1), by_hand, atol=1e-12)
    n = 4000
    mc_sampler = GraphSampler(eval_samples=1, pair_index=pair_index, generator=torch.Generator().manual_seed(2))
    mc = SampledGraphs(base, mc_sampler).bind(data, data.graph)
    draws = torch.stack([torch.softmax(mc.predict(params, theta), -1) for _ in range(n)])
    se = draws.std(0) / math.sqrt(n)
    assert ((draws.mean(0) - by_hand).abs() <= 3 * se + 1e-9).float().mean() > 0.95
    assert ((draws.mean(0) - by_hand).abs() <= 5 * se + 1e-9).all()


def test_average_predictions_is_the_log_of_the_mean_probability():
    a, b = torch.randn(4, 3, dtype=torch.float64), torch.randn(4, 3, dtype=torch.float64)
    avg = average_predictions([a, b], "classification")
    assert torch.allclose(torch.softmax(avg, -1), (torch.softmax(a, -1) + torch.softmax(b, -1)) / 2, atol=1e-14)
    assert torch.allclose(average_predictions([a, b], "regression"), (a + b) / 2)


# ----------------------------------------------------------------------------------- the structure in a run
def test_initialisation_projection_and_bad_values():
    data = tiny_data()
    g = data.graph
    g.edata["observed"] = torch.tensor([1.0, 0, 1, 0, 1, 1, 0, 1, 0, 1])
    s = BernoulliEdges(g, candidate_value=0.25, tie_undirected=False, dtype=torch.float64)
    assert torch.equal(s(), torch.tensor([1.0, 0.25, 1, 0.25, 1, 1, 0.25, 1, 0.25, 1], dtype=torch.float64))
    with torch.no_grad():
        s.theta.add_(torch.linspace(-2, 2, 10, dtype=torch.float64))
    s.project_()
    theta = s.theta.detach()
    assert float(theta.min()) == 0.0 and float(theta.max()) == 1.0 and len(theta.unique()) >= 4
    for bad in (-0.1, 1.5):
        with pytest.raises(ConfigError, match="\\[0, 1\\]"):
            BernoulliEdges(g, candidate_value=bad)
        with pytest.raises(ConfigError, match="\\[0, 1\\]"):
            BernoulliEdges(g, init=bad)
    del g.edata["observed"]


def _fit(structure, data, tmp_path=None, steps=6, resume=False, hypergrad="unrolled", inner_steps=5):
    model = dbl.models.GCN(3, 4, 2)
    inner = dbl.TrainedGNN(model, steps=inner_steps, lr=0.05)
    return fit(data, structure, inner, hypergrad, outer_steps=steps, lr=0.05, seed=0, progress=False,
               checkpoint=None if tmp_path is None else tmp_path / "ck.pt", checkpoint_every=1, resume=resume)


def _structure(data, **kw):
    sampler = GraphSampler(samples=2, resample=kw.pop("resample", "step"), eval_samples=3,
                           estimator=kw.pop("estimator", "ste"), generator=torch.Generator().manual_seed(5))
    return BernoulliEdges(data.graph, init=0.6, sampler=sampler, dtype=torch.float64, **kw)


def test_learning_moves_theta_within_bounds_and_frozen_control_never_does():
    data = tiny_data()
    learned = _structure(data)
    start = learned.theta.detach().clone()
    result = _fit(learned, data)
    assert not torch.equal(learned.theta.detach(), start)
    assert float(learned.theta.detach().min()) >= 0 and float(learned.theta.detach().max()) <= 1
    # resampled at every step: differentiated on autograd's graph, never recomputed (a recomputation would redraw)
    inner = SampledGraphs(dbl.TrainedGNN(dbl.models.GCN(3, 4, 2), steps=3), learned.sampler).bind(data, data.graph)
    assert inner.stochastic_objective
    solution = dbl.Unrolled().solve(inner, learned().detach().requires_grad_(True), inner.starting_params())
    assert solution.info["reverse"] == "autograd"
    frozen = _structure(data, frozen=True)
    start = frozen.theta.detach().clone()
    result = _fit(frozen, data)
    assert torch.equal(frozen.theta.detach(), start) and len(result.history) == 6


def test_score_estimator_runs_in_the_outer_loop_and_implicit_needs_fixed_graphs():
    data = tiny_data()
    structure = _structure(data, resample="outer", estimator="score")
    start = structure.theta.detach().clone()
    _fit(structure, data, hypergrad="implicit")
    assert not torch.equal(structure.theta.detach(), start)
    with pytest.raises(ConfigError, match="no fixed point"):
        _fit(_structure(data, resample="step"), data, hypergrad="implicit")


def test_resume_draws_the_same_graphs(tmp_path):
    data = tiny_data()
    whole = _fit(_structure(data), data, steps=6)
    first = tmp_path / "a"
    first.mkdir()
    _fit(_structure(data), data, first, steps=3)
    resumed = _fit(_structure(data), data, first, steps=6, resume=True)
    strip = lambda h: [{k: v for k, v in r.items() if k != "seconds"} for r in h]  # noqa: E731
    assert strip(resumed.history) == strip(whole.history)
    assert torch.equal(resumed.final_weights, whole.final_weights)


# ----------------------------------------------------------------------------------- shared similarity term
def _shared(data, **kw):
    g = data.graph
    g.edata["observed"] = (torch.arange(g.num_edges()) % 5 != 4).double()  # pair 4-5 is an "added" candidate
    similarity = torch.linspace(-1.0, 1.0, g.num_edges(), dtype=torch.float64)
    return BernoulliEdges(g, init="observed", observed_value=0.7, candidate_value=0.2, similarity=similarity,
                          dtype=torch.float64, **kw)


def test_shared_term_is_standardised_per_group_and_starts_at_theta():
    data = tiny_data()
    structure = _shared(data)
    basis = structure.similarity_basis  # one row per pair: pairs 0-3 observed, pair 4 (nodes 4-5) added
    assert basis.shape == (5, 2)
    assert float(basis[:4, 0].mean()) == pytest.approx(0.0, abs=1e-12) and float(basis[4, 0]) == 0.0
    assert torch.equal(basis[:4, 1], torch.zeros(4, dtype=torch.float64))
    assert torch.equal(structure(), torch.where(structure.observed_mask(), torch.tensor(0.7, dtype=torch.float64),
                                                torch.tensor(0.2, dtype=torch.float64)))


def test_shared_scale_gradient_matches_finite_differences_and_moves_edges_without_their_own_gradient():
    data = tiny_data()
    structure = _shared(data)
    target = torch.zeros(structure.graph.num_edges(), dtype=torch.float64)
    target[0] = 1.0  # the loss reads edge 0 (pair 0) only: every other edge gets no gradient of its own

    def loss() -> torch.Tensor:
        return ((structure() - 0.9) * target).pow(2).sum()

    (grad_theta, grad_scale) = torch.autograd.grad(loss(), [structure.theta, structure.shared_scale])
    assert torch.count_nonzero(grad_theta) == 1  # scarcity: only pair 0's own theta
    eps = 1e-6
    for k in range(2):
        with torch.no_grad():
            structure.shared_scale[k] += eps
            up = float(loss())
            structure.shared_scale[k] -= 2 * eps
            down = float(loss())
            structure.shared_scale[k] += eps
        assert float(grad_scale[k]) == pytest.approx((up - down) / (2 * eps), rel=1e-7, abs=1e-12)
    assert float(grad_scale[0]) != 0.0 and float(grad_scale[1]) == 0.0  # edge 0 is observed
    before = structure().detach().clone()
    with torch.no_grad():
        structure.shared_scale -= 0.1 * grad_scale
    moved = (structure().detach() - before).abs() > 0
    assert bool(moved[structure.observed_mask()].all())  # every observed edge moves with what edge 0 learned
    assert not bool(moved[~structure.observed_mask()].any())  # the added group has its own scale


def test_shared_term_keeps_probabilities_in_bounds_and_frozen_control_learns_nothing():
    data = tiny_data()
    structure = _shared(data)
    with torch.no_grad():
        structure.shared_scale.fill_(50.0)
    p = structure().detach()
    assert float(p.min()) == 0.0 and float(p.max()) == 1.0
    frozen = _shared(tiny_data(), frozen=True)
    assert not frozen.shared_scale.requires_grad and not frozen.theta.requires_grad
    with pytest.raises(dbl.DataError, match="one finite score per candidate edge"):
        BernoulliEdges(data.graph, similarity=torch.ones(3, dtype=torch.float64), dtype=torch.float64)
