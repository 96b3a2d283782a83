"""The per-edge dot product ``<a[row_e], b[col_e]>`` (dgl_bilevel.ops._EdgeDot) on each kernel it can
take, at the sizes the library meets: microseconds per call (median of 5 timings of 20+ calls), in one
process, float32 unless told. The rule of ``dgl_bilevel.ops.edge_dot_kernel`` and the torch
kernel's layout come from it.

    .venv/bin/python bench/edge_dot_kernels.py
    .venv/bin/python bench/edge_dot_kernels.py --dtype float64

Kernels: ``gather`` (two ``index_select`` and a row sum), ``dgl`` (DGL's ``u_dot_v``), ``torch``
(``torch.sparse.sampled_addmm`` with ``b^T`` made contiguous, as the library did before 2026-12-03)
and ``torch-view`` (the same with ``b^T`` left a transposed view: the kernel then reads rows of ``b``).
"""
from __future__ import annotations

import argparse
import os
import statistics
import time
import warnings
from pathlib import Path

import dgl
import torch

import dgl_bilevel as dbl
from dgl_bilevel.ops import _plan

ROOT = Path(__file__).resolve().parents[1]


def timed(fn, calls: int) -> float:
    fn()
    runs = []
    for _ in range(5):
        started = time.perf_counter()
        for _ in range(calls):
            fn()
        runs.append((time.perf_counter() - started) / calls * 1e6)
    return statistics.median(runs)


def kernels(graph, dtype):
    plan = _plan(graph)
    rows, cols = plan.endpoints("dst")
    crow, col, order, slot, shape = plan.by_dst
    block = plan.edge_block("dst")
    mask = torch.sparse_csr_tensor(crow, col, torch.zeros(col.numel(), dtype=dtype), shape, check_invariants=False)
    entry = torch.empty_like(order)
    entry[order] = torch.arange(order.numel()) if slot is None else slot

    def torch_kernel(view: bool):
        def run(a, b):
            values = torch.sparse.sampled_addmm(mask, a, b.t() if view else b.t().contiguous(), beta=0.0).values()
            return values.index_select(0, entry)
        return run

    return {
        "gather": lambda a, b: a.index_select(0, rows).mul_(b.index_select(0, cols)).sum(-1),
        "dgl": lambda a, b: dgl.ops.u_dot_v(block, b, a).reshape(-1),
        "torch": torch_kernel(False),
        "torch-view": torch_kernel(True),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dtype", default="float32", choices=("float32", "float64"))
    p.add_argument("--widths", nargs="*", type=int, default=[7, 8, 16, 46])
    p.add_argument("--no-large", action="store_true", help="skip the 2.3M-edge graph")
    args = p.parse_args()
    dtype = getattr(torch, args.dtype)
    warnings.simplefilter("ignore", UserWarning)
    cora = dbl.data.cora(os.environ.get("DGL_BILEVEL_DATA", str(ROOT.parent / "shared" / "data"))).graph
    graphs = [("Cora", cora), ("5 Cora", dgl.batch([cora] * 5)), ("10 x Cora edges", dgl.rand_graph(27_080, 105_560))]
    if not args.no_large:
        graphs.append(("arxiv shape", dgl.rand_graph(169_343, 2_332_486)))
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {args.dtype}; microseconds per call")
    print(f"{'graph':<16}{'edges':>10}{'width':>6}" + "".join(f"{k:>12}" for k in ("gather", "dgl", "torch", "torch-view")))
    for name, graph in graphs:
        found = kernels(graph, dtype)
        n = graph.num_nodes()
        for width in args.widths:
            a, b = torch.randn(n, width, dtype=dtype), torch.randn(n, width, dtype=dtype)
            reference = found["gather"](a, b)
            calls = max(1, int(2e6 // (graph.num_edges() * width)))
            cells = []
            for kernel in ("gather", "dgl", "torch", "torch-view"):
                out = found[kernel](a, b)
                assert torch.allclose(out, reference, rtol=1e-4, atol=1e-4), (name, width, kernel)
                cells.append(timed(lambda: found[kernel](a, b), calls))
            print(f"{name:<16}{graph.num_edges():>10,}{width:>6}" + "".join(f"{c:>12,.0f}" for c in cells), flush=True)


if __name__ == "__main__":
    main()
