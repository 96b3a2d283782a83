"""float32 against float64 hypergradients, and long default runs checked for non-finite stops.

Issue 14.1: unrolled hypergradients went NaN in float32 (CiteSeer-like data, outer iteration 166
of 200) and the unrolled Laplacian hypergradient differed by 24% between float32 and float64.
The cause was Adam's ``eps=1e-8`` (see ``dgl_bilevel.inner.base.default_adam``); this script
measures both symptoms, with the default Adam or with another ``eps`` (``--adam-eps 1e-8``
gives the behaviour before the fix).

Part 1 (Cora, every default (inner problem, hypergradient method) pair -- gnn -> unrolled
(checkpointed), laplacian with cross-entropy -> unrolled, laplacian with squared loss ->
adjoint): the hypergradient at the same edge weights and the same inner start (drawn in float64,
cast) computed in float32 and in float64, at outer iteration 0 and after ``--late`` outer
iterations of a float32 default run, over ``--draws`` inner starts each. Printed: the smallest
cosine, the largest relative difference ``|g32 - g64| / |g64|``, whether every float32 entry is
finite, and for unrolled pairs the largest adjoint of the parameters and of Adam's state met
in the float32 backward passes.

Part 2 (``--runs``): default runs (``dgl-bilevel run --dataset X`` settings: GNN inner problem,
unrolled hypergradient, float32) for ``--outer-steps`` outer iterations; printed: whether the
run stopped on a non-finite hypergradient, best-validation test accuracy, seconds per iteration.

    OMP_NUM_THREADS=1 .venv/bin/python bench/precision.py                       # part 1, ~10 min
    OMP_NUM_THREADS=1 .venv/bin/python bench/precision.py --adam-eps 1e-8       # before the fix
    OMP_NUM_THREADS=1 .venv/bin/python bench/precision.py --no-cosines \\
        --runs cheaters texas cornell wisconsin chameleon cora --outer-steps 200  # part 2, hours
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

#: The default (inner problem, hypergradient method) pairs: config options and the expected method.
PAIRS = {
    "gnn": ({"inner": "gnn"}, "unrolled"),
    "laplacian-ce": ({"inner": "laplacian", "laplacian_loss": "ce"}, "unrolled"),
    "laplacian-mse": ({"inner": "laplacian", "laplacian_loss": "mse"}, "adjoint"),
}


def make_config(dataset: str, data_root: str, **options):
    from dgl_bilevel.config import ExperimentConfig

    return ExperimentConfig.from_mapping({"dataset": dataset, "data_root": data_root, "progress": False,
                                          **options}).resolved()


def build(config, data, adam_eps):
    """Inner problem and hypergradient method of ``config``; Adam's ``eps`` replaced if asked."""
    from dgl_bilevel.experiment.build import build_hypergrad, build_inner
    from dgl_bilevel.inner import default_adam

    inner = build_inner(config, data)
    if adam_eps is not None and config.inner_optimizer == "adam":
        inner.optimizer = default_adam(config.inner_lr, eps=adam_eps)
    return inner, build_hypergrad(config, inner)


def hypergradient(config, data, weights, start, adam_eps):
    """d(outer loss)/dw in ``data``'s precision, and the largest |adjoint| of the parameters and of
    the optimizer state in an unrolled backward pass (NaN for other methods)."""
    import torch

    from contextlib import nullcontext

    from dgl_bilevel.hypergrad import Truncated, Unrolled
    from dgl_bilevel.hypergrad.checkpointed import record_adjoints
    from dgl_bilevel.losses import task_loss

    inner, method = build(config, data, adam_eps)
    inner.bind(data, data.graph)
    dtype = data.features.dtype
    w = weights.detach().to(dtype).clone().requires_grad_(True)
    params = tuple(p.detach().to(dtype).clone().requires_grad_(True) for p in start)
    trajectory = isinstance(method, (Unrolled, Truncated))  # the methods whose backward passes log adjoints
    with record_adjoints(method) if trajectory else nullcontext([]) as log:
        solution = method.solve(inner, w, params)
        loss = task_loss(inner.predict(solution.params, w), data.labels, data.v_out, data.task)
        (grad,) = torch.autograd.grad(loss, w)
    largest = (max((max(e["params"]) for e in log), default=float("nan")),
               max((max(e["state"], default=0.0) for e in log), default=float("nan")))
    return grad.double(), largest


def late_weights(config, data32, steps: int, adam_eps):
    """Edge weights after ``steps`` outer iterations of a float32 default run (seed 0)."""
    from dgl_bilevel.experiment.build import build_regularizer, build_structure
    from dgl_bilevel.outer.loop import OuterLoop

    inner, method = build(config, data32, adam_eps)
    structure = build_structure(config, data32, 0)
    loop = OuterLoop(data32, structure, inner, method, outer_steps=steps, lr=config.outer_lr, seed=0,
                     regularizer=build_regularizer(config))
    while not loop.done:
        loop.step()
    return structure().detach(), loop.state.stopped


def cosines(args) -> list:
    import torch

    from dgl_bilevel.data import load_dataset

    rows = []
    for name in args.pairs:
        options, expected = PAIRS[name]
        config = make_config("cora", args.data_root, **options)
        data64 = load_dataset("cora", args.data_root, 0).to(torch.float64)
        data32 = data64.to(torch.float32)
        inner64, method = build(config, data64, args.adam_eps)
        assert method.name == expected, (name, method.name)
        inner64.bind(data64, data64.graph)
        states = [("iteration 0", None)]
        if args.late:
            states.append((f"after {args.late} iterations", args.late))
        for label, late in states:
            started = time.perf_counter()
            stopped = None
            if late is None:
                from dgl_bilevel.experiment.build import build_structure
                weights = build_structure(config, data32, 0)().detach()
            else:
                weights, stopped = late_weights(config, data32, late, args.adam_eps)
            cos, rel, finite, adjoint, adjoint_state = [], [], True, 0.0, 0.0
            for draw in range(args.draws):
                start = [p.detach() for p in inner64.starting_params(torch.Generator().manual_seed(draw))]
                g64, _ = hypergradient(config, data64, weights, start, args.adam_eps)
                g32, adj = hypergradient(config, data32, weights, start, args.adam_eps)
                finite = finite and bool(torch.isfinite(g32).all())
                g32 = torch.nan_to_num(g32, nan=0.0, posinf=0.0, neginf=0.0)
                cos.append(float(g64 @ g32 / (g64.norm() * g32.norm()).clamp_min(1e-300)))
                rel.append(float((g32 - g64).norm() / g64.norm()))
                if adj[0] == adj[0]:
                    adjoint, adjoint_state = max(adjoint, adj[0]), max(adjoint_state, adj[1])
            row = {"pair": name, "method": method.name, "state": label, "draws": args.draws,
                   "min_cosine": min(cos), "cosines": cos, "max_relative_difference": max(rel),
                   "finite32": finite, "max_adjoint32_params": adjoint if method.name == "unrolled" else None,
                   "max_adjoint32_state": adjoint_state if method.name == "unrolled" else None,
                   "stopped_before_state": stopped, "seconds": time.perf_counter() - started}
            rows.append(row)
            adj_text = f"{adjoint:9.2e} / {adjoint_state:9.2e}" if method.name == "unrolled" else "n/a"
            print(f"{name:14} {method.name:9} {label:22} min cos {min(cos):.6f}  max rel diff {max(rel):.2e}  "
                  f"finite32 {str(finite):5}  max|adjoint| params / state {adj_text}  ({row['seconds']:.0f} s)"
                  + (f"  [run stopped: {stopped}]" if stopped else ""), flush=True)
    return rows


def long_runs(args) -> list:
    import torch

    from dgl_bilevel.data import load_dataset
    from dgl_bilevel.experiment.build import build_regularizer, build_structure
    from dgl_bilevel.outer import fit

    rows = []
    for dataset in args.runs:
        config = make_config(dataset, args.data_root, outer_steps=args.outer_steps)
        data = load_dataset(dataset, args.data_root, 0, config.v_out_fraction).to(getattr(torch, config.dtype))
        inner, method = build(config, data, args.adam_eps)
        started = time.perf_counter()
        result = fit(data, build_structure(config, data, 0), inner, method, outer_steps=config.outer_steps,
                     lr=config.outer_lr, regularizer=build_regularizer(config), seed=0, progress=False)
        history = result.history
        row = {"dataset": dataset, "method": method.name, "dtype": config.dtype, "inner_steps": config.inner_steps,
               "outer_iterations": len(history), "stopped": result.stopped_early,
               "best_iteration": result.best_iteration, "test": result.best_metrics.get("test"),
               "val": result.best_metrics.get("val"),
               "seconds_per_iteration": statistics.median(h["seconds"] for h in history) if history else None,
               "wall_seconds": time.perf_counter() - started}
        rows.append(row)
        print(f"{dataset:10} {method.name} {config.dtype} {len(history):4d} outer iterations  "
              f"non-finite stop: {'YES -- ' + row['stopped'] if row['stopped'] else 'no'}  "
              f"test {100 * row['test']:.1f} (best iteration {row['best_iteration']})  "
              f"{row['seconds_per_iteration']:.2f} s/iter", flush=True)
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--pairs", nargs="*", default=list(PAIRS), choices=list(PAIRS))
    p.add_argument("--late", type=int, default=50, help="outer iterations before the late state (0: skip it)")
    p.add_argument("--draws", type=int, default=3, help="inner starts per state")
    p.add_argument("--no-cosines", action="store_true", help="skip part 1")
    p.add_argument("--runs", nargs="*", default=[], help="data sets for part 2 (default: none)")
    p.add_argument("--outer-steps", type=int, default=200)
    p.add_argument("--adam-eps", type=float, default=None, help="Adam's eps (default: the library's)")
    p.add_argument("--data-root", default=os.environ.get("DGL_BILEVEL_DATA", str(ROOT.parent / "shared" / "data")))
    p.add_argument("--out", default=None, help="JSON file for the results")
    args = p.parse_args()

    import torch

    from dgl_bilevel.inner.optimizers import ADAM_EPS

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    print(f"Adam eps: {args.adam_eps if args.adam_eps is not None else ADAM_EPS} "
          f"({'given' if args.adam_eps is not None else 'library default'})", flush=True)
    out = {"adam_eps": args.adam_eps if args.adam_eps is not None else ADAM_EPS}
    if not args.no_cosines:
        out["cosines"] = cosines(args)
    if args.runs:
        out["runs"] = long_runs(args)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(out, indent=1))
        print(f"written to {args.out}")


if __name__ == "__main__":
    main()
