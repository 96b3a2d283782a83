"""What the implicit GNN hypergradient's cost is made of on Cora, and what a looser MINRES
tolerance buys: products, cosine to the converged hypergradient, and the ratio to a plain run.

Issue 13.3 asks the implicit GNN hypergradient for <= 1.2x a plain training run (100 Adam
steps of the paper's GNN). The overhead over the plain run is the linear solve: one
Hessian-vector product costs about one inner training step (both are timed here), so the
ratio is about ``1 + products / inner_steps`` plus the outer pass. For each tolerance this
script takes several outer iterations of Cora BO (default damping 1e-3, the CLI's), solves each
at the tolerance and at 1e-9 (the reference, up to 5,000 products), and reports the median
number of products, the smallest and median cosine of the hypergradient to the reference, and
the seconds of one outer iteration against one plain run, timed alternately in this process.

    .venv/bin/python bench/implicit_tolerance.py                 # under a minute on 2 cores
    .venv/bin/python bench/implicit_tolerance.py --tols 1e-2 3e-2 --iterations 4
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tols", nargs="*", type=float, default=[1e-2, 2e-2, 3e-2, 5e-2])
    p.add_argument("--iterations", type=int, default=6, help="outer iterations (graphs) measured")
    p.add_argument("--damping", type=float, default=1e-3)
    p.add_argument("--data-root", default=os.environ.get("DGL_BILEVEL_DATA", str(ROOT.parent / "shared" / "data")))
    args = p.parse_args(argv)

    import torch

    import dgl_bilevel as dbl
    from dgl_bilevel.hypergrad import optimize
    from dgl_bilevel.losses import task_loss
    from timing import timed_outer_iteration, timed_plain_training

    data = dbl.data.cora(args.data_root)
    inner = dbl.TrainedGNN(dbl.models.SumAggGNN(data.num_features, 16, data.num_classes), steps=100)
    structure = dbl.EdgeWeights(data.graph, generator=torch.Generator().manual_seed(0))
    inner.bind(data, structure.graph)
    optimizer = torch.optim.Adam(structure.parameters(), lr=1e-2)
    generator = torch.Generator().manual_seed(0)

    def hypergradient(weight, params, tol: float, maxiter: int = 200):
        method = dbl.Implicit(damping=args.damping, tol=tol, maxiter=maxiter, warn_residual=1.0)
        w = weight.detach().requires_grad_(True)
        variables = tuple(q.clone().requires_grad_(True) for q in params)
        loss = task_loss(inner.predict(variables, w), data.labels, data.v_out, data.task)
        *through_params, direct = torch.autograd.grad(loss, (*variables, w))
        grad, info = method.vjp(inner, w.detach(), params, tuple(through_params))
        return grad + direct, info

    def timed_outer(tol: float) -> float:
        method = dbl.Implicit(damping=args.damping, tol=tol, warn_residual=1.0)
        return timed_outer_iteration(method, inner, structure, data, optimizer, generator)

    def timed_plain() -> float:
        return timed_plain_training(inner, structure, generator)

    rows = {tol: {"products": [], "cosine": [], "outer": [], "plain": []} for tol in args.tols}
    timed_outer(args.tols[0]), timed_plain()  # warm-up
    for iteration in range(args.iterations):
        weight = structure().detach()
        params, _, _ = optimize(inner, weight, inner.starting_params(generator), inner.steps, differentiable=False)
        params = tuple(q.detach() for q in params)
        reference, ref_info = hypergradient(weight, params, 1e-9, 5000)
        for tol in args.tols:
            grad, info = hypergradient(weight, params, tol)
            rows[tol]["products"].append(info.iterations)
            rows[tol]["cosine"].append(float(torch.nn.functional.cosine_similarity(grad.double(), reference.double(),
                                                                                     dim=0)))
            rows[tol]["outer"].append(timed_outer(tol))
            rows[tol]["plain"].append(timed_plain())
        print(f"graph {iteration}: reference {ref_info.iterations} products (residual {ref_info.residual:.1e}); "
              + ", ".join(f"tol {t:g}: {rows[t]['products'][-1]} products, cosine {rows[t]['cosine'][-1]:.4f}"
                          for t in args.tols), flush=True)
    print("\n| MINRES tol | products (median) | cosine to converged: min / median | s / outer iteration | "
          "plain run | ratio |")
    print("|---|---|---|---|---|---|")
    for tol in args.tols:
        r = rows[tol]
        outer, plain = statistics.median(r["outer"]), statistics.median(r["plain"])
        print(f"| {tol:g} | {statistics.median(r['products']):.0f} | {min(r['cosine']):.4f} / "
              f"{statistics.median(r['cosine']):.4f} | {outer:.3f} | {plain:.3f} | {outer / plain:.2f} |")


if __name__ == "__main__":
    main()
