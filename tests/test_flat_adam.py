"""The written-out Adam on one flat vector (dgl_bilevel.inner.flat_adam): its update bit for bit
torchopt's, its VJP against autograd through torchopt's update, and the unroll that runs on both."""
from __future__ import annotations

import pytest
import torch
import torchopt

import dgl_bilevel.hypergrad.recorded as recorded
from conftest import random_graph_data
from dgl_bilevel.hypergrad import optimize
from dgl_bilevel.inner.flat_adam import FlatAdam, FlatLayout
from dgl_bilevel.hypergrad.recorded import unroll_recorded
from dgl_bilevel.inner import TrainedGNN, default_adam
from dgl_bilevel.inner.optimizers import InnerOptimizer
from dgl_bilevel.models import SumAggGNN


def _relative(a, b):
    return float((a - b).norm() / b.norm())


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("default_dtype", [torch.float32, torch.float64])
def test_update_is_bitwise_torchopts(dtype, default_dtype):
    """30 steps with gradients that include exact zeros (Adam's sqrt at eps_root): the same updates and
    moments as torchopt's chain, to the last bit, under either default dtype (which sets the
    rounding of torchopt's bias corrections)."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(default_dtype)
    try:
        optimizer = default_adam(0.05)
        gen = torch.Generator().manual_seed(0)
        state = optimizer.init((torch.zeros(50, dtype=dtype),))
        adam = optimizer.accelerated
        assert isinstance(adam, FlatAdam)
        mine = state
        for step in range(30):
            grads = torch.randn(50, generator=gen, dtype=dtype) * 10.0 ** (-step % 7)
            grads[step % 50] = 0.0
            (theirs_update,), state = optimizer.update((grads,), state, inplace=False)
            update, mine, root = adam.update(grads, mine)
            assert torch.equal(update, theirs_update)
            for ours, theirs in zip(torchopt.pytree.tree_flatten(mine)[0], torchopt.pytree.tree_flatten(state)[0]):
                assert torch.equal(ours, theirs)
            assert torchopt.pytree.tree_structure(mine) == torchopt.pytree.tree_structure(state)
            corrected = mine[0].nu[0] / float(1 - pow(0.999, mine[0].count[0]))
            assert torch.equal(root, (corrected + optimizer.adam_settings.eps_root).sqrt())
    finally:
        torch.set_default_dtype(previous)


def test_only_the_librarys_adam_has_an_accelerated_form():
    """"Is this Adam?" is the optimizer's own answer: a torchopt transform the library did not build
    is not assumed to be anything (not even elementwise), SGD is elementwise without a flat form."""
    theirs = InnerOptimizer(torchopt.adam(0.05))
    assert theirs.accelerated is None and theirs.adam_settings is None and not theirs.elementwise
    sgd = InnerOptimizer.sgd(0.1)
    assert sgd.accelerated is None and sgd.elementwise
    ours = default_adam(0.05)
    assert isinstance(ours.accelerated, FlatAdam) and ours.elementwise
    assert ours.accelerated.settings is ours.adam_settings
    assert InnerOptimizer.wrap(ours) is ours and InnerOptimizer.wrap(torchopt.sgd(0.1)).accelerated is None
    problem = TrainedGNN(SumAggGNN(6, 5, 3), optimizer=torchopt.sgd(0.1))
    assert isinstance(problem.optimizer, InnerOptimizer) and not problem.optimizer.elementwise


def test_vjp_equals_autograd_through_torchopt():
    optimizer = default_adam(0.05)
    gen = torch.Generator().manual_seed(0)
    state = optimizer.init((torch.zeros(7, dtype=torch.float64),))
    for _ in range(3):
        _, state = optimizer.update((torch.randn(7, generator=gen, dtype=torch.float64),), state, inplace=False)
    grads = torch.randn(7, generator=gen, dtype=torch.float64)
    grads[0] = 0.0  # a coordinate without gradient: Adam's sqrt at eps_root
    adj_params = torch.randn(7, generator=gen, dtype=torch.float64)
    adj_state = [torch.randn(7, generator=gen, dtype=torch.float64), torch.randn(7, generator=gen, dtype=torch.float64), None]
    _, treedef = torchopt.pytree.tree_flatten(state)
    hand = recorded._optimizer_vjp(optimizer, grads, state, treedef, adj_params, adj_state)
    _, after, root = optimizer.accelerated.update(grads, state)  # the moments and root the step left
    hand_after = recorded._optimizer_vjp(optimizer, grads, state, treedef, adj_params, adj_state, after=after, root=root)
    generic = InnerOptimizer(optimizer.transform, elementwise=True)  # the same transform, its VJP by autograd
    auto = recorded._optimizer_vjp(generic, grads, state, treedef, adj_params, adj_state)
    assert float(auto[0].norm()) > 1e-2
    for mine in (hand, hand_after):
        assert _relative(mine[0], auto[0]) < 1e-13
        for ours, theirs in zip(mine[1][:2], auto[1][:2]):
            assert _relative(ours, theirs) < 1e-13
    assert torch.equal(hand[0], hand_after[0])  # reading the stored moments and root changes no bit


def test_recorded_unroll_forward_is_bitwise_the_plain_run():
    """The unroll's trajectory (flat vector, written-out Adam, out of place) ends on exactly the
    parameters of plain training (one tensor per parameter, torchopt's Adam, in place)."""
    data = random_graph_data(n=30, num_edges=80, features=6, classes=3, seed=1)
    problem = TrainedGNN(SumAggGNN(6, 5, 3), steps=12).bind(data, data.graph)
    start = problem.starting_params(torch.Generator().manual_seed(0))
    weight = torch.rand(data.num_edges, dtype=torch.float64, generator=torch.Generator().manual_seed(2)) + 0.5
    plain, plain_state, _ = optimize(problem, weight, tuple(p.clone() for p in start), 12, differentiable=False)
    unrolled, unrolled_state, _ = unroll_recorded(problem, weight.clone().requires_grad_(True), start, 12)
    for ours, theirs in zip(unrolled, plain):
        assert torch.equal(ours.detach(), theirs.detach())
    layout = FlatLayout(start)
    assert torch.equal(layout.flatten(unrolled_state[0].nu), layout.flatten(plain_state[0].nu))


def _plain_runs(problem, weight, start):
    """(flat path, per-tensor torchopt path) of plain training: 7 steps, then 5 more from the returned state."""
    results = []
    for flat in (True, False):
        if not flat:  # the same torchopt transform without its accelerated form: torchopt's update per tensor
            problem.optimizer = InnerOptimizer(problem.optimizer.transform, elementwise=True)
        seen = []
        params, state, value = optimize(problem, weight, tuple(p.clone() for p in start), 7, differentiable=False,
                                        monitor=lambda ps: seen.append(ps[0].clone()))
        params, state, value = optimize(problem, weight, params, 5, differentiable=False, state=state)
        results.append((params, state, value, seen))
    return results


@pytest.mark.parametrize("inner", ["gnn", "laplacian"])
def test_plain_training_on_one_flat_vector_is_bitwise_torchopts_per_tensor(inner):
    """Plain training with a hand-derived gradient runs the library's Adam on one flat vector: the
    parameters, the optimizer state (continued across two calls), the last objective and what the
    monitor saw are those of torchopt's Adam on each tensor, to the last bit."""
    from dgl_bilevel.inner import LaplacianRegularization

    data = random_graph_data(n=30, num_edges=80, features=6, classes=3, seed=1)
    if inner == "gnn":
        problem = TrainedGNN(SumAggGNN(6, 5, 3), steps=12).bind(data, data.graph)
    else:
        problem = LaplacianRegularization(loss="ce", steps=12).bind(data, data.graph)
    assert problem.derivatives is not None
    start = problem.starting_params(torch.Generator().manual_seed(0))
    weight = torch.rand(data.num_edges, dtype=torch.float64, generator=torch.Generator().manual_seed(2)) + 0.5
    (flat, flat_state, flat_value, flat_seen), (theirs, their_state, their_value, their_seen) = \
        _plain_runs(problem, weight, start)
    assert all(p.requires_grad and p.is_leaf for p in flat)
    for ours, reference in zip(flat, theirs):
        assert torch.equal(ours, reference)
    for ours, reference in zip(torchopt.pytree.tree_flatten(flat_state)[0], torchopt.pytree.tree_flatten(their_state)[0]):
        assert torch.equal(ours, reference)
    assert torchopt.pytree.tree_structure(flat_state) == torchopt.pytree.tree_structure(their_state)
    assert flat_value == their_value and len(flat_seen) == len(their_seen) == 7
    assert all(torch.equal(a, b) for a, b in zip(flat_seen, their_seen))
    assert not torch.equal(flat[0], start[0])  # it trained
