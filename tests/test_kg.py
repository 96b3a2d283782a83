"""Knowledge-graph energies, relation-aware descent steps, filtered ranking and data loading (dgl_bilevel.kg)."""
from __future__ import annotations

import importlib.util
import itertools

import pytest
import torch

from dgl_bilevel import kg
from dgl_bilevel.errors import ConfigError, DataError

MODELS = ["transe", "distmult", "rotate"]
N, R, D = 7, 3, 6


def random_triples(n=N, r=R, m=20, seed=0, self_loops=True):
    gen = torch.Generator().manual_seed(seed)
    t = torch.stack([torch.randint(0, n, (m,), generator=gen), torch.randint(0, r, (m,), generator=gen),
                     torch.randint(0, n, (m,), generator=gen)], 1)
    if not self_loops:
        t = t[t[:, 0] != t[:, 2]]
    return t


def problem(name, seed=0, signed=True, self_loops=True):
    """A float64 relation graph, interaction, base table, start point and signed edge weights."""
    torch.manual_seed(seed)
    triples = random_triples(seed=seed, self_loops=self_loops)
    graph = kg.relation_graph(triples, N)
    inter = kg.make_interaction(name, R, D).double()
    base = torch.randn(N, D, dtype=torch.float64)
    y = torch.randn(N, D, dtype=torch.float64)
    w = torch.rand(len(triples), dtype=torch.float64) * 0.8
    if signed:
        w[::4] = -0.1 * w[::4]  # a few repulsive (negative-graph) edges
    return graph, inter, base, y, w


# ----------------------------------------------------------------------------------------- scores


@pytest.mark.parametrize("name", MODELS)
def test_scores_match_closed_forms(name):
    torch.manual_seed(1)
    inter = kg.make_interaction(name, R, D).double()
    h, t = torch.randn(5, D, dtype=torch.float64), torch.randn(5, D, dtype=torch.float64)
    ids = torch.tensor([0, 1, 2, 1, 0])
    rel = inter.relation(ids)
    if name == "transe":
        want = -(h + inter.weight[ids] - t).norm(dim=-1)
    elif name == "distmult":
        want = (h * inter.weight[ids] * t).sum(-1)
    else:  # complex arithmetic on interleaved (real, imag) pairs
        hc, tc = torch.complex(h[:, 0::2], h[:, 1::2]), torch.complex(t[:, 0::2], t[:, 1::2])
        rc = torch.exp(1j * inter.phase[ids])
        assert torch.allclose(rc.abs(), torch.ones_like(rc.abs()), atol=1e-14)
        want = -(hc * rc - tc).abs().pow(2).sum(-1).sqrt()
    assert torch.allclose(inter.score(h, rel, t), want, atol=1e-12, rtol=0)
    # the energy's edge term: the squared distance; for DistMult -2 * score + |r|-weighted norms
    d2 = inter.distance2(h, rel, t)
    if name == "distmult":
        want_d2 = (rel.abs() * (h * h + t * t)).sum(-1) - 2 * inter.score(h, rel, t)
    else:
        want_d2 = inter.score(h, rel, t) ** 2
    assert torch.allclose(d2, want_d2, atol=1e-12, rtol=0)


@pytest.mark.parametrize("name", MODELS)
def test_edge_grads_and_curvature_are_derivatives_of_the_edge_term(name):
    torch.manual_seed(2)
    inter = kg.make_interaction(name, R, D).double()
    with torch.no_grad():  # DistMult: relation entries of both signs
        for p in inter.parameters():
            p.copy_(torch.randn_like(p))
    rel = inter.relation(torch.tensor(1)).detach()
    h, t = torch.randn(D, dtype=torch.float64), torch.randn(D, dtype=torch.float64)
    half = lambda a, b: 0.5 * inter.distance2(a, rel, b)  # noqa: E731
    g_h, g_t = torch.autograd.functional.jacobian(half, (h, t))
    mine_h, mine_t = inter.edge_grads(h, rel, t)
    assert torch.allclose(mine_h, g_h, atol=1e-13, rtol=0) and torch.allclose(mine_t, g_t, atol=1e-13, rtol=0)
    hess = torch.autograd.functional.hessian(lambda x: half(x[:D], x[D:]), torch.cat([h, t]))
    c_h, c_t = inter.curvature(rel)
    assert torch.allclose(torch.cat([c_h, c_t]), torch.diag(hess), atol=1e-13, rtol=0)
    assert torch.linalg.eigvalsh(2 * torch.diag(torch.diag(hess)) - hess).min() >= -1e-12  # block <= 2 diag


def test_make_interaction_errors():
    with pytest.raises(ConfigError, match="unknown KG model"):
        kg.make_interaction("complex", R, D)
    with pytest.raises(ConfigError, match="even"):
        kg.make_interaction("rotate", R, 5)


# ------------------------------------------------------------------------------- descent steps


@pytest.mark.parametrize("name", MODELS)
def test_energy_gradient_matches_autograd(name):
    graph, inter, base, y, w = problem(name)
    y = y.requires_grad_()
    (auto,) = torch.autograd.grad(kg.kg_energy(graph, y, base, inter, w), y)
    assert torch.allclose(kg.kg_energy_grad(graph, y, base, inter, w), auto, atol=1e-10, rtol=0)


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("precondition", [False, True])
def test_layer_step_is_a_gradient_step_on_the_energy(name, precondition):
    graph, inter, base, y, w = problem(name, seed=3)
    layer = kg.RelationalDescent(steps=1, step_size=0.3, precondition=precondition)
    yg = y.clone().requires_grad_()
    (grad,) = torch.autograd.grad(kg.kg_energy(graph, yg, base, inter, w), yg)
    if precondition:
        grad = grad / kg.kg_preconditioner(graph, inter, w, y)
    assert torch.allclose(layer.step(graph, y, base, inter, w), y - 0.3 * grad, atol=1e-10, rtol=0)
    # forward from the base table: one step from Y = B
    yb = base.clone().requires_grad_()
    (grad0,) = torch.autograd.grad(kg.kg_energy(graph, yb, base, inter, w), yb)
    if precondition:
        grad0 = grad0 / kg.kg_preconditioner(graph, inter, w, base)
    assert torch.allclose(layer(graph, base, inter, w), base - 0.3 * grad0, atol=1e-10, rtol=0)


@pytest.mark.parametrize("name", MODELS)
def test_preconditioner_is_the_hessian_diagonal_and_bounds_the_hessian(name):
    graph, inter, base, y, w = problem(name, seed=4, signed=False, self_loops=False)
    hess = torch.autograd.functional.hessian(lambda x: kg.kg_energy(graph, x.reshape(N, D), base, inter, w),
                                             y.reshape(-1))
    precond = kg.kg_preconditioner(graph, inter, w, y).reshape(-1)
    assert torch.allclose(precond, torch.diag(hess), atol=1e-12, rtol=0)
    # H <= 2P: the reason the preconditioned step descends for step sizes in (0, 1]
    scaled = hess / torch.sqrt(precond[:, None] * precond[None, :])
    assert torch.linalg.eigvalsh(scaled).max() <= 2 + 1e-10


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("step_size", [0.25, 0.6, 1.0])
@torch.no_grad()
def test_energy_decreases_monotonically_in_the_documented_range(name, step_size):
    graph, inter, base, y, w = problem(name, seed=5)
    for precondition in (True, False):
        alpha = step_size
        if not precondition:  # plain steps: (0, 1 / max P]
            alpha = step_size / float(kg.kg_preconditioner(graph, inter, w, y).max())
        layer = kg.RelationalDescent(steps=1, step_size=alpha, precondition=precondition)
        energies = [float(kg.kg_energy(graph, y, base, inter, w))]
        cur = y
        for _ in range(30):
            cur = layer.step(graph, cur, base, inter, w)
            energies.append(float(kg.kg_energy(graph, cur, base, inter, w)))
        diffs = torch.tensor(energies).diff()
        assert (diffs <= 1e-10 * abs(energies[0])).all(), (precondition, energies)
        assert energies[-1] < energies[0]


def test_steps_above_the_range_can_increase_the_energy():
    """The range is not vacuous: a large enough step overshoots."""
    graph, inter, base, y, w = problem("transe", seed=5, signed=False)
    layer = kg.RelationalDescent(steps=1, step_size=3.0)
    before = kg.kg_energy(graph, y, base, inter, w)
    assert kg.kg_energy(graph, layer.step(graph, y, base, inter, w), base, inter, w) > before


@pytest.mark.parametrize("name", MODELS)
def test_unrolled_steps_gradients_match_finite_differences(name):
    graph, inter, base, _, w = problem(name, seed=6)
    layer = kg.RelationalDescent(steps=2, step_size=0.7)
    rel_param = next(inter.parameters())
    target = torch.randn(N, D, dtype=torch.float64)

    assert torch.autograd.gradcheck(lambda b, ww: (layer(graph, b, inter, ww) * target).sum(),
                                    (base.clone().requires_grad_(), w.clone().requires_grad_()), eps=1e-6, atol=1e-8)
    # relation parameters: directional finite difference of a scalar loss
    direction = torch.randn_like(rel_param)
    loss = (layer(graph, base, inter, w) * target).sum()
    (grad,) = torch.autograd.grad(loss, rel_param)
    saved = rel_param.detach().clone()
    eps = 1e-6
    with torch.no_grad():
        rel_param.copy_(saved + eps * direction)
        up = float((layer(graph, base, inter, w) * target).sum())
        rel_param.copy_(saved - eps * direction)
        down = float((layer(graph, base, inter, w) * target).sum())
        rel_param.copy_(saved)
    assert abs((up - down) / (2 * eps) - float((grad * direction).sum())) < 1e-7 * max(1.0, abs(up))


@pytest.mark.parametrize("name", MODELS)
def test_zero_steps_is_the_plain_embedding_model(name):
    triples = random_triples()
    model = kg.KGEModel(name, N, R, D, graph_triples=triples, steps=0, lam=1.0, seed=0).double()
    assert model.embed() is model.entity
    pred = model.predictor()
    h, r = triples[:, 0], triples[:, 1]
    rel = model.interaction.relation(r)
    want = model.interaction.score(model.entity[h][:, None], rel[:, None], model.entity[None])
    assert torch.allclose(pred.score_tails(h, r), want, atol=0, rtol=0)
    assert torch.allclose(model.score(model.embed(), triples),
                          model.interaction.score(model.entity[h], rel, model.entity[triples[:, 2]]), atol=0, rtol=0)
    stepped = kg.KGEModel(name, N, R, D, graph_triples=triples, steps=2, lam=1.0, seed=0).double()
    assert not torch.allclose(stepped.embed(), stepped.entity)


def test_model_embed_uses_signed_weights_and_hides_edges():
    triples = random_triples(self_loops=False)
    model = kg.KGEModel("transe", N, R, D, graph_triples=triples, steps=1, lam=0.5, lam_neg=0.1, seed=0).double()
    assert model.graph.num_edges() == 2 * len(triples)
    neg = float(torch.tensor(-0.1, dtype=torch.float32))  # the buffer is built in float32, then .double()
    assert (model.edge_weight[:len(triples)] == 0.5).all() and (model.edge_weight[len(triples):] == neg).all()
    hidden = torch.arange(len(triples))
    weight = model.edge_weight.clone()
    weight[hidden] = 0
    want = model.descent(model.graph, model.entity, model.interaction, weight)
    assert torch.allclose(model.embed(hidden), want, atol=0, rtol=0)


def test_config_errors():
    with pytest.raises(ConfigError):
        kg.RelationalDescent(steps=-1)
    with pytest.raises(ConfigError):
        kg.RelationalDescent(step_size=0.0)
    with pytest.raises(ConfigError, match="graph_triples"):
        kg.KGEModel("transe", N, R, D, steps=2)
    with pytest.raises(ConfigError, match="loss"):
        kg.KGTrainConfig(loss="hinge")
    with pytest.raises(DataError, match="etype"):
        g = kg.relation_graph(random_triples(), N)
        del g.edata["etype"]
        kg.kg_energy_grad(g, torch.zeros(N, D), torch.zeros(N, D), kg.make_interaction("transe", R, D))


# ---------------------------------------------------------------------------------- evaluation


class TableScores:
    """A link predictor with an explicit score table S[h, r, t] (integers: plenty of ties)."""

    def __init__(self, table):
        self.table = table

    def score_tails(self, heads, relations):
        return self.table[heads, relations, :]

    def score_heads(self, relations, tails):
        return self.table[:, relations, tails].T


def brute_force_ranks(table, triples, known):
    known = {tuple(t) for t in known.tolist()}
    heads, tails = [], []
    for h, r, t in triples.tolist():
        for side, true, out in (("tail", t, tails), ("head", h, heads)):
            s_true = table[h, r, t]
            greater = equal = 0
            for j in range(table.shape[0]):
                cand = (h, r, j) if side == "tail" else (j, r, t)
                if j == true or cand in known:
                    continue
                s = table[cand]
                greater += int(s > s_true)
                equal += int(s == s_true)
            out.append(((1 + greater) + (1 + greater + equal)) / 2)
    return torch.tensor(heads, dtype=torch.float64), torch.tensor(tails, dtype=torch.float64)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_filtered_ranks_match_brute_force(seed):
    n, r = 6, 2
    gen = torch.Generator().manual_seed(seed)
    table = torch.randint(0, 4, (n, r, n), generator=gen).double()
    known = torch.tensor(list(itertools.product(range(n), range(r), range(n))))
    known = known[torch.randperm(len(known), generator=gen)[:30]]
    test = known[:12]
    index = kg.FilterIndex(known, n, r)
    ranks = kg.rank_triples(TableScores(table), test, index, batch_size=5)
    heads, tails = brute_force_ranks(table, test, known)
    assert torch.equal(ranks["head"], heads) and torch.equal(ranks["tail"], tails)
    # raw (unfiltered) ranks: nothing known but the triple itself
    raw = kg.rank_triples(TableScores(table), test, None)
    heads, tails = brute_force_ranks(table, test, test[:0])
    assert torch.equal(raw["head"], heads) and torch.equal(raw["tail"], tails)


def test_rank_metrics_closed_form_and_evaluate():
    f64 = torch.float64
    ranks = {"head": torch.tensor([1.0, 2.5], dtype=f64), "tail": torch.tensor([4.0, 11.0], dtype=f64)}
    m = kg.rank_metrics(ranks, ks=(1, 3, 10))
    assert m["mrr"] == pytest.approx((1 + 1 / 2.5 + 1 / 4 + 1 / 11) / 4, abs=1e-15)
    assert m["hits@1"] == 0.25 and m["hits@3"] == 0.5 and m["hits@10"] == 0.75
    assert m["mean_rank"] == pytest.approx(18.5 / 4)
    with pytest.raises(DataError):
        kg.rank_metrics(torch.zeros(0))


def test_realistic_ranks_ties_and_errors():
    scores = torch.tensor([[1.0, 1.0, 1.0, 0.0]])
    assert kg.realistic_ranks(scores, torch.tensor([0])).item() == 2.0  # optimistic 1, pessimistic 3
    assert kg.realistic_ranks(scores, torch.tensor([3])).item() == 4.0
    exclude = torch.tensor([[False, True, True, False]])
    assert kg.realistic_ranks(scores, torch.tensor([0]), exclude).item() == 1.0
    with pytest.raises(DataError, match="NaN"):
        kg.realistic_ranks(torch.tensor([[float("nan"), 0.0]]), torch.tensor([0]))


# ----------------------------------------------------------------------------- training, data


def test_corrupt_changes_exactly_one_end():
    triples = random_triples(m=200)
    neg = kg.corrupt(triples, N, 5, torch.Generator().manual_seed(0))
    assert neg.shape == (200, 5, 3)
    same = neg == triples[:, None, :]
    assert same[..., 1].all()
    assert (same[..., 0] ^ same[..., 2]).all()  # exactly one of head / tail changed
    assert (~same[..., 0]).any() and (~same[..., 2]).any()


@pytest.mark.parametrize("steps", [0, 2])
def test_training_learns_a_tiny_kg(steps):
    # a deterministic KG: relation 0 maps i -> i+1, relation 1 maps i -> i+2 (mod n)
    n = 12
    heads = torch.arange(n).repeat(2)
    rels = torch.arange(2).repeat_interleave(n)
    triples = torch.stack([heads, rels, (heads + 1 + rels) % n], 1)
    data = kg.KGData("ring", triples, triples[:4], triples[:4], {str(i): i for i in range(n)}, {"a": 0, "b": 1})
    cfg = kg.KGTrainConfig(epochs=60, batch_size=8, lr=0.05, loss="margin", seed=0)
    _, result = kg.fit_kge(data, "rotate", dim=8, steps=steps, config=cfg, lam=0.1)  # rotations close a ring
    assert result.losses[-1] < result.losses[0]
    assert result.metrics["test"]["mrr"] > 0.9  # random ranking gives about 0.27


def test_read_triples_and_load_kg_from_a_folder(tmp_path):
    (tmp_path / "train.txt").write_text("b\tr1\ta\na\tr2\tc\n")
    (tmp_path / "valid.txt").write_text("c\tr1\ta\nz\tr1\ta\n")  # z is unseen in training: dropped
    (tmp_path / "test.txt").write_text("a\tr1\tb\n\n")
    data = kg.load_kg(tmp_path)
    assert data.entity_to_id == {"a": 0, "b": 1, "c": 2} and data.relation_to_id == {"r1": 0, "r2": 1}
    assert data.train.tolist() == [[1, 0, 0], [0, 1, 2]]
    assert data.valid.tolist() == [[2, 0, 0]] and data.dropped == {"train": 0, "valid": 1, "test": 0}
    g = data.graph()
    assert g.num_nodes() == 3 and g.edata["etype"].tolist() == [0, 1]
    (tmp_path / "test.txt").write_text("a\tr1\n")
    with pytest.raises(DataError, match="test.txt:1"):
        kg.load_kg(tmp_path)
    (tmp_path / "test.txt").unlink()
    with pytest.raises(DataError, match="test.txt"):
        kg.load_kg(tmp_path)


def test_missing_pykeen_names_the_extra(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "pykeen" else real(name, *a))
    with pytest.raises(DataError, match=r"pykeen.*kg extra"):
        kg.load_kg("nations")
    with pytest.raises(DataError, match="unknown knowledge graph"):
        kg.pykeen_dataset_dir("fb15k")


# pykeen is part of the test extra, so these never skip: a missing pykeen fails them loudly
needs_pykeen = pytest.mark.kg


@needs_pykeen
def test_nations_and_umls_from_the_pykeen_wheel():
    nations, umls = kg.nations(), kg.umls()
    assert (nations.num_entities, nations.num_relations) == (14, 55)
    assert (len(nations.train), len(nations.valid), len(nations.test)) == (1592, 199, 201)
    assert (umls.num_entities, umls.num_relations) == (135, 46)
    assert (len(umls.train), len(umls.valid), len(umls.test)) == (5216, 652, 661)


@needs_pykeen
def test_evaluator_agrees_with_pykeen_on_the_same_model():
    """Our filtered realistic MRR / Hits@k equal PyKEEN's RankBasedEvaluator on an (untrained) PyKEEN model."""
    from pykeen.evaluation import RankBasedEvaluator
    from pykeen.models import TransE
    from pykeen.triples import TriplesFactory

    folder = kg.pykeen_dataset_dir("nations")  # factories from the files: no cache written under ~/.data
    training = TriplesFactory.from_path(folder / "train.txt")
    maps = dict(entity_to_id=training.entity_to_id, relation_to_id=training.relation_to_id)
    validation = TriplesFactory.from_path(folder / "valid.txt", **maps)
    testing = TriplesFactory.from_path(folder / "test.txt", **maps)
    data = kg.nations()
    assert training.entity_to_id == data.entity_to_id and training.relation_to_id == data.relation_to_id
    assert torch.equal(torch.unique(testing.mapped_triples, dim=0), torch.unique(data.test, dim=0))
    torch.manual_seed(0)
    model = TransE(triples_factory=training, embedding_dim=8)
    result = RankBasedEvaluator().evaluate(
        model, testing.mapped_triples, batch_size=256,
        additional_filter_triples=[training.mapped_triples, validation.mapped_triples])

    class Wrapped:
        def score_tails(self, h, r):
            return model.score_t(torch.stack([h, r], 1))

        def score_heads(self, r, t):
            return model.score_h(torch.stack([r, t], 1))

    ours = kg.evaluate_link_prediction(Wrapped(), data.test, data.all_triples(), data.num_entities, data.num_relations)
    assert ours["mrr"] == pytest.approx(result.get_metric("both.realistic.inverse_harmonic_mean_rank"), abs=1e-6)
    for k in (1, 3, 10):
        assert ours[f"hits@{k}"] == pytest.approx(result.get_metric(f"both.realistic.hits_at_{k}"), abs=1e-6)


def test_a_seeded_model_leaves_the_global_generator_alone():
    torch.manual_seed(123)
    state = torch.get_rng_state()
    first = kg.KGEModel("rotate", 5, 2, 4, seed=0)
    assert torch.equal(torch.get_rng_state(), state)  # the caller's random stream is not reset
    second = kg.KGEModel("rotate", 5, 2, 4, seed=0)
    assert torch.equal(first.entity, second.entity)
    assert all(torch.equal(a, b) for a, b in zip(first.interaction.parameters(), second.interaction.parameters()))
    assert not torch.equal(first.entity, kg.KGEModel("rotate", 5, 2, 4, seed=1).entity)
