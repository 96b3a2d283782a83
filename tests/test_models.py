"""The inner GNNs compute what their docstrings say, dense or sparse features alike."""
from __future__ import annotations

import pytest
import torch

from dgl_bilevel._dgl import dgl
from dgl_bilevel.models import GCN, APPNPNet, GraphSAGE, SumAggConv, SumAggGNN, build_model
from dgl_bilevel.ops import SparseFeatures, maybe_sparse
from dgl_bilevel.errors import ConfigError


def _setup(n=7, d=5):
    gen = torch.Generator().manual_seed(0)
    g = dgl.graph((torch.tensor([0, 1, 2, 3, 4, 5, 1, 6]), torch.tensor([1, 2, 3, 4, 5, 6, 0, 0])), num_nodes=n)
    x = torch.rand(n, d, generator=gen, dtype=torch.float64)
    x[x < 0.6] = 0  # sparse-ish
    w = torch.rand(g.num_edges(), generator=gen, dtype=torch.float64)
    dense = torch.zeros(n, n, dtype=torch.float64)
    src, dst = g.edges()
    dense.index_put_((src, dst), w, accumulate=True)
    return g, x, w, dense


def test_sumagg_conv_is_paper_eq4():
    g, x, w, a = _setup()
    conv = SumAggConv(5, 3).double()
    w_self, w_neigh = conv.weight[:, :3], conv.weight[:, 3:]
    expected = x @ w_self + a.t() @ (x @ w_neigh) + conv.bias
    assert torch.allclose(conv(g, x, w), expected)


def test_sparse_features_give_identical_outputs_and_gradients():
    g, x, w, _ = _setup()
    w.requires_grad_(True)
    model = SumAggGNN(5, 4, 3).double()
    sparse = SparseFeatures(x)
    dense_out, sparse_out = model(g, x, w), model(g, sparse, w)
    assert torch.allclose(dense_out, sparse_out)
    gd = torch.autograd.grad(dense_out.square().sum(), list(model.parameters()), create_graph=True)
    gs = torch.autograd.grad(sparse_out.square().sum(), list(model.parameters()), create_graph=True)
    for a, b in zip(gd, gs):
        assert torch.allclose(a, b)
    # second order through the sparse product (needed by unrolled differentiation)
    hd = torch.autograd.grad(gd[0].sum(), w)[0]
    hs = torch.autograd.grad(gs[0].sum(), w)[0]
    assert torch.allclose(hd, hs)


def test_maybe_sparse_only_for_sparse_inputs():
    assert isinstance(maybe_sparse(torch.eye(20)), SparseFeatures)
    assert isinstance(maybe_sparse(torch.ones(20, 20)), torch.Tensor)


def test_gcn_uses_weighted_symmetric_normalisation():
    g, x, w, a = _setup()
    model = GCN(5, 4, 3, num_layers=1).double()
    deg_out = a.sum(1).clamp_min(1e-12)
    deg_in = a.sum(0).clamp_min(1e-12)
    norm = a / deg_out.sqrt()[:, None] / deg_in.sqrt()[None, :]
    expected = norm.t() @ (x @ model.input.weight) + model.convs[0].bias
    assert torch.allclose(model(g, x, w), expected)


@pytest.mark.parametrize("name, cls", [("sumagg", SumAggGNN), ("gcn", GCN), ("sage", GraphSAGE), ("appnp", APPNPNet)])
def test_zoo_builds_and_weights_matter(name, cls):
    g, x, w, _ = _setup()
    model = build_model(name, 5, 4, 3).double()
    assert isinstance(model, cls)
    out1, out2 = model(g, x, w), model(g, x, 2 * w + 0.1)
    assert out1.shape == (7, 3) and not torch.allclose(out1, out2)


def test_unknown_model():
    with pytest.raises(ConfigError, match="unknown model"):
        build_model("gat", 5, 4, 3)


@pytest.mark.parametrize("edge_dot_kernel", ["gather", "dgl", "sddmm"])
@pytest.mark.parametrize("multigraph", [False, True])
def test_weighted_sum_equals_dgl_message_passing_to_second_order(multigraph, edge_dot_kernel, monkeypatch):
    from dgl_bilevel import ops
    from dgl_bilevel.ops import weighted_sum, weighted_sum_reverse

    # the per-edge dot product of the backward pass switches kernel by size: test both
    monkeypatch.setattr(ops, "FORCE_EDGE_DOT_KERNEL", edge_dot_kernel)

    if multigraph:
        g = dgl.graph((torch.tensor([0, 0, 1, 1, 2]), torch.tensor([1, 1, 2, 2, 2])), num_nodes=4)
    else:
        g = dgl.graph((torch.tensor([0, 1, 2, 3, 3, 0, 2]), torch.tensor([1, 2, 3, 0, 1, 2, 2])), num_nodes=5)
    gen = torch.Generator().manual_seed(0)
    h = torch.randn(g.num_nodes(), 3, generator=gen, dtype=torch.float64, requires_grad=True)
    w = torch.rand(g.num_edges(), generator=gen, dtype=torch.float64, requires_grad=True)
    assert torch.allclose(weighted_sum(g, h, w), dgl.ops.u_mul_e_sum(g, h, w.view(-1, 1)))
    assert torch.allclose(weighted_sum_reverse(g, h, w), dgl.ops.u_mul_e_sum(dgl.reverse(g), h, w.view(-1, 1)))
    assert torch.autograd.gradgradcheck(lambda a, b: weighted_sum(g, a, b), (h, w))
    assert torch.autograd.gradgradcheck(lambda a, b: weighted_sum_reverse(g, a, b), (h, w))


@pytest.mark.parametrize("edge_dot_kernel", ["gather", "dgl", "sddmm"])
def test_weighted_sum_on_a_block_to_second_order(edge_dot_kernel, monkeypatch):
    """A sampled block (more source than destination nodes): every edge-dot kernel, both orders."""
    from dgl_bilevel import ops
    from dgl_bilevel.ops import weighted_sum

    monkeypatch.setattr(ops, "FORCE_EDGE_DOT_KERNEL", edge_dot_kernel)
    block = dgl.create_block((torch.tensor([0, 3, 4, 2, 4, 1]), torch.tensor([0, 0, 1, 2, 2, 1])),
                             num_src_nodes=5, num_dst_nodes=3)
    gen = torch.Generator().manual_seed(1)
    h = torch.randn(5, 2, generator=gen, dtype=torch.float64, requires_grad=True)
    w = torch.rand(block.num_edges(), generator=gen, dtype=torch.float64, requires_grad=True)
    assert torch.allclose(weighted_sum(block, h, w), dgl.ops.u_mul_e_sum(block, h, w.view(-1, 1)))
    assert torch.autograd.gradcheck(lambda a, b: weighted_sum(block, a, b), (h, w))
    assert torch.autograd.gradgradcheck(lambda a, b: weighted_sum(block, a, b), (h, w))


def _count_edge_dots(monkeypatch):
    from dgl_bilevel import ops

    calls = []
    forward = ops._EdgeDot.forward

    def counted(ctx, *args):
        calls.append(1)
        return forward(ctx, *args)

    monkeypatch.setattr(ops._EdgeDot, "forward", staticmethod(counted))
    return calls


def test_parameter_only_products_skip_the_edge_weight_gradient(monkeypatch):
    """A gradient or Hessian-vector product in the features alone computes no per-edge product
    (about half of an implicit solve's time on large graphs), yet gives the same numbers; the
    edge-weight gradient is still there when asked for, to second order."""
    from dgl_bilevel.ops import weighted_sum

    g, x, w, dense = _setup()
    h = x.clone().requires_grad_(True)
    w = w.clone().requires_grad_(True)
    calls = _count_edge_dots(monkeypatch)

    def objective(h, w):
        return weighted_sum(g, torch.tanh(weighted_sum(g, h, w)), w).square().sum()

    (grad_h,) = torch.autograd.grad(objective(h, w), h, create_graph=True)
    v = torch.randn_like(h)
    (hvp,) = torch.autograd.grad(grad_h, h, v, retain_graph=True)
    assert calls == []  # neither the gradient nor the Hessian-vector product touched the weights
    (mixed,) = torch.autograd.grad(grad_h, w, v)
    assert len(calls) > 0

    def dense_objective(h, w):
        a = torch.zeros_like(dense).index_put((g.edges()[0], g.edges()[1]), w, accumulate=True)
        return (a.t() @ torch.tanh(a.t() @ h)).square().sum()

    (grad_d,) = torch.autograd.grad(dense_objective(h, w), h, create_graph=True)
    hvp_d, mixed_d = torch.autograd.grad(grad_d, (h, w), v)
    assert torch.allclose(hvp, hvp_d, atol=1e-12) and torch.allclose(mixed, mixed_d, atol=1e-12)


def test_constant_weights_build_one_matrix_for_every_product(monkeypatch):
    """Inside constant_edge_weights the sparse matrix of one weight tensor is built once, also
    when backward passes unpack the weights as new tensor objects (Hessian-vector products)."""
    from dgl_bilevel import ops
    from dgl_bilevel.ops import constant_edge_weights, weighted_sum

    g, x, w, _ = _setup()
    w.requires_grad_(True)  # as in an implicit solve: the mixed product needs the weights' graph
    builds = []
    build = ops._CSRPlan._build_matrix
    monkeypatch.setattr(ops._CSRPlan, "_build_matrix", lambda self, *a: builds.append(a[0]) or build(self, *a))
    h = x.clone().requires_grad_(True)
    with constant_edge_weights():
        out = weighted_sum(g, torch.tanh(weighted_sum(g, h, w)), w)
        (grad_h,) = torch.autograd.grad(out.square().sum(), h, create_graph=True)
        for _ in range(3):
            torch.autograd.grad(grad_h, h, torch.ones_like(h), retain_graph=True)
    assert sorted(builds) == ["dst", "src"]  # forward A^T, backward A: once each
    builds.clear()
    other = w.clone()  # other memory, same values: its own matrix
    with constant_edge_weights():
        weighted_sum(g, h, w), weighted_sum(g, h, other)
    assert builds == ["dst", "dst"]


@pytest.mark.parametrize("width", [1, 7, 8, 16, 46])
def test_edge_dot_kernels_agree_in_float32(width, monkeypatch):
    """Every kernel of the per-edge dot product, on a multigraph with unsorted edge ids, equals the
    plain formula (the torch kernel reads b^T as a view and maps CSR entries back to edge ids)."""
    from dgl_bilevel import ops

    gen = torch.Generator().manual_seed(width)
    src, dst = torch.randint(0, 30, (200,), generator=gen), torch.randint(0, 30, (200,), generator=gen)
    src[:5], dst[:5] = 3, 4  # parallel edges
    g = dgl.graph((src, dst), num_nodes=30)
    a, b = torch.randn(30, width, generator=gen), torch.randn(30, width, generator=gen)
    expected = (a[dst] * b[src]).sum(-1)
    for kernel in ("gather", "dgl", "sddmm"):
        monkeypatch.setattr(ops, "FORCE_EDGE_DOT_KERNEL", kernel)
        assert torch.allclose(ops.edge_products(g, a, b), expected, atol=1e-5), kernel


def test_edge_dot_kernel_choice():
    from dgl_bilevel.ops import edge_dot_kernel

    assert edge_dot_kernel(10_556, 16, torch.float32) == "sddmm"
    assert edge_dot_kernel(10_556, 7, torch.float32) == "dgl"  # torch's kernel is slow below 8 columns
    assert edge_dot_kernel(10_556, 16, torch.float64) == "dgl"
    assert edge_dot_kernel(2_332_486, 16, torch.float64) == "sddmm"
    assert edge_dot_kernel(10_556, 16, torch.float16) == "gather"
