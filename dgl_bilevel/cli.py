"""``dgl-bilevel``: run bilevel graph learning experiments from the command line.

    dgl-bilevel run --dataset cora --inner gnn --method bo --seeds 5 --out results/
    dgl-bilevel datasets
"""
from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
from typing import Optional, Sequence

from .errors import BilevelError

DEFAULTS_NOTE = (
    "Options shown with 'default: preset' take the paper's setting for the data set: "
    "cora -- gnn: 100 inner Adam steps, lr 1e-2, 16 hidden units; laplacian: 500 inner steps, lr 1e-2; "
    "outer Adam lr 1e-2, 200 outer steps. cheaters -- gnn: 200 inner steps, 8 hidden units, 150 outer "
    "steps, box-constrained weights initialised 1e-5*U[0,1]. synthetic1 -- laplacian: 500 inner steps, "
    "inner lr 10, outer lr 0.1, 150 outer steps."
)


def _add_run_arguments(p: argparse.ArgumentParser) -> None:
    from .experiment import INNER_CHOICES, METHOD_CHOICES
    from .experiment.config import INNER_OPTIMIZERS
    from .hypergrad import METHODS
    from .models import MODELS

    g = p.add_argument_group("what to run")
    g.add_argument("--dataset", default="cora", help="data set name (see 'dgl-bilevel datasets'); default: cora")
    g.add_argument("--inner", choices=INNER_CHOICES, default="gnn",
                   help="inner problem: a trained GNN or Laplacian regularisation; default: gnn")
    g.add_argument("--method", choices=METHOD_CHOICES, default="bo",
                   help="a_obs: the inner model on the observed graph (no outer learning); "
                        "bo: bilevel edge refinement; bo+power: refinement on the support of A^r; "
                        "bo+reg: with the log-degree regulariser; bo+g2g: latent graph learning; default: bo")
    g.add_argument("--seeds", type=int, default=1, help="number of seeds (splits and initialisations); default: 1")
    g.add_argument("--seed-start", type=int, default=0, help="first seed; default: 0")
    g.add_argument("--data-root", default=None,
                   help="folder holding the data sets; default: $DGL_BILEVEL_DATA or ../shared/data")
    g.add_argument("--v-out-fraction", type=float, default=None,
                   help="OGB data sets: share of the official training nodes used as V_out (seeded; OGB's rules "
                        "keep validation labels out of gradients); default: 0.5")
    g.add_argument("--out", default="results", help="results folder; default: results")
    g.add_argument("--name", default=None, help="run name (subfolder of --out); default: <dataset>-<inner>-<method>")

    g = p.add_argument_group("outer problem")
    g.add_argument("--outer-steps", type=int, default=None, help="outer iterations; default: preset")
    g.add_argument("--outer-lr", type=float, default=None, help="outer Adam learning rate; default: preset")
    g.add_argument("--parametrization", choices=["sigmoid", "softplus", "box"], default=None,
                   help="edge weight = sigmoid(theta), softplus(theta) or theta clipped to [0, inf); default: preset (sigmoid)")
    g.add_argument("--edge-init", choices=["uniform", "constant", "observed"], default="uniform",
                   help="initial raw parameter theta: scale*U[0,1] (paper), constant, or from the observed weights; default: uniform")
    g.add_argument("--edge-scale", type=float, default=None, help="scale of the uniform initialisation; default: preset (1)")
    g.add_argument("--tie-undirected", action="store_true", help="share one weight between u->v and v->u")

    g = p.add_argument_group("inner problem")
    g.add_argument("--inner-steps", type=int, default=None, help="inner optimisation steps; default: preset")
    g.add_argument("--inner-lr", type=float, default=None, help="inner learning rate; default: preset")
    g.add_argument("--inner-optimizer", choices=INNER_OPTIMIZERS, default="adam",
                   help="torchopt functional optimizer of the inner problem (Adam with eps_root=1e-16, or plain "
                        "gradient descent); weight decay is part of the objective either way; default: adam")
    g.add_argument("--inner-init", choices=["fresh", "fixed", "warm"], default="fresh",
                   help="inner start each outer iteration: new random draw, the same draw, or the last solution; default: fresh")
    g.add_argument("--model", choices=sorted(MODELS), default="sumagg",
                   help="GNN: sumagg (paper eq. 4), gcn, sage or appnp; default: sumagg")
    g.add_argument("--hidden", type=int, default=None, help="GNN hidden units; default: preset")
    g.add_argument("--layers", type=int, default=2, help="GNN layers; default: 2")
    g.add_argument("--weight-decay", type=float, default=5e-4, help="GNN L2 coefficient; default: 5e-4")
    g.add_argument("--lam", type=float, default=None,
                   help="Laplacian regularisation strength; default: 1 for bo, 0.1 for a_obs (paper)")
    g.add_argument("--laplacian-loss", choices=["auto", "ce", "mse"], default="auto",
                   help="Laplacian data term: cross-entropy or squared error (quadratic: exact adjoint); "
                        "default: auto (ce for classification, mse for regression)")

    g = p.add_argument_group("mitigations of gradient scarcity")
    g.add_argument("--power", type=int, default=2, help="bo+power (and --g2g-support power): r in A^r; default: 2")
    g.add_argument("--power-budget", type=int, default=5_000_000,
                   help="refuse an A^r support with more directed edges than this; default: 5000000")
    g.add_argument("--reg-gamma", type=float, default=1.0, help="bo+reg: gamma of -gamma*log-degree; default: 1")
    g.add_argument("--reg-reduction", choices=["mean", "sum"], default="mean",
                   help="bo+reg: mean over nodes (paper's code) or sum (paper's formula); default: mean")
    g.add_argument("--g2g-hidden", type=int, default=None, help="bo+g2g: hidden width; default: preset (32; cheaters 16)")
    g.add_argument("--g2g-layers", type=int, default=None, help="bo+g2g: hidden layers; default: preset (1; cheaters 2)")
    g.add_argument("--g2g-dropout", type=float, default=0.5, help="bo+g2g: input dropout; default: 0.5 (paper's code)")
    g.add_argument("--g2g-scale", type=float, default=None,
                   help="bo+g2g: initial scale of the last layer; default: preset (1; cheaters 1e-5)")
    g.add_argument("--g2g-support", choices=["observed", "power", "knn"], default="observed",
                   help="bo+g2g: edges that get weights; default: observed")
    g.add_argument("--knn-k", type=int, default=10, help="--g2g-support knn: neighbours; default: 10")

    g = p.add_argument_group("hypergradient")
    g.add_argument("--hypergrad", choices=sorted(METHODS), default=None,
                   help="how the inner solution is differentiated; default: adjoint for quadratic problems, else unrolled")
    g.add_argument("--truncate-k", type=int, default=10, help="truncated: steps differentiated; default: 10")
    g.add_argument("--no-unroll-checkpoint", dest="unroll_checkpoint", action="store_false",
                   help="unrolled/truncated: keep the whole trajectory on the autograd graph (about 30%% faster, "
                        "memory grows with steps x activations) instead of recomputing each step")
    g.add_argument("--implicit-solver", choices=["cg", "neumann"], default="cg", help="implicit: linear solver; default: cg")
    g.add_argument("--cg-maxiter", type=int, default=None,
                   help="implicit/adjoint: iterations at most; default: 20 for implicit, 2000 for adjoint")
    g.add_argument("--cg-tol", type=float, default=None, help="implicit/adjoint: relative residual tolerance; default: method's")
    g.add_argument("--damping", type=float, default=None,
                   help="implicit: Hessian damping; default: 1e-3 for a GNN (non-convex), 0 for the Laplacian")
    g.add_argument("--neumann-step", type=float, default=1.0, help="implicit with --implicit-solver neumann: step; default: 1")
    g.add_argument("--implicit-warm-start", action="store_true",
                   help="implicit: start CG from the previous outer iteration's solution")

    g = p.add_argument_group("evaluation")
    g.add_argument("--inner-select", choices=["last", "best_val"], default="last",
                   help="score the last inner iterate, or the one with the best validation score "
                        "(the paper code's protocol; the outer loss always uses the last); default: last")

    g = p.add_argument_group("running")
    g.add_argument("--dtype", choices=["float32", "float64"], default="float32", help="default: float32")
    g.add_argument("--device", default="cpu", help="cpu (cuda needs a CUDA build of DGL); default: cpu")
    g.add_argument("--checkpoint-every", type=int, default=10,
                   help="write a checkpoint every N outer iterations (0: only at the end); default: 10")
    g.add_argument("--resume", action="store_true",
                   help="continue from checkpoints in the run folder and skip finished seeds")
    g.add_argument("--no-progress", action="store_true", help="no progress bar")
    g.add_argument("--log-every", type=int, default=0, help="print a line every N outer iterations; default: 0 (never)")
    g.add_argument("--config", default=None, help="YAML file of options (keys as above, with underscores); flags override it")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dgl-bilevel",
        description="Bilevel graph learning on DGL graphs: learn edge weights through a trained inner model.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run an experiment and write JSON results",
                         description="Run bilevel edge refinement (or the A_obs baseline) over seeds. " + DEFAULTS_NOTE)
    _add_run_arguments(run)
    sc = sub.add_parser("scarcity", help="print the hypergradient-vs-distance profile of a run and save its plot",
                        description="Run a few outer iterations and show how the hypergradient is spread over "
                                    "edge distances to the labelled nodes (gradient scarcity). " + DEFAULTS_NOTE)
    _add_run_arguments(sc)
    sc.add_argument("--iteration", type=int, default=0, help="outer iteration to profile; default: 0")
    lb = sub.add_parser("leaderboard", help="OGB leaderboard protocol: seeds, Evaluator, mean ± std, markdown + JSON",
                        description="Run a method over seeds with the OGB protocol (v_out from the training split, "
                                    "validation only for selection, the Evaluator's metric) and write leaderboard.md/json. "
                                    "--method a_obs and lp give the baselines. " + DEFAULTS_NOTE)
    _add_run_arguments(lb)
    lb.add_argument("--root", dest="data_root", default=argparse.SUPPRESS, help="OGB data root (same as --data-root)")
    lb.set_defaults(seeds=10)
    gen = sub.add_parser("generate-ogb", help="write an arxiv-shaped synthetic data set in OGB's layout",
                         description="Write a synthetic citation graph shaped like ogbn-arxiv (planted classes, "
                                     "time split) as <root>/ogbn_arxiv in OGB's csv layout, readable by ogb's loader. "
                                     "It is synthetic data under ogbn-arxiv's name: keep it apart from real OGB data.")
    gen.add_argument("--root", required=True, help="folder to write <root>/ogbn_arxiv into")
    gen.add_argument("--scale", type=float, default=1.0,
                     help="fraction of ogbn-arxiv's 169,343 nodes and 1,166,243 edges; default: 1")
    gen.add_argument("--seed", type=int, default=0, help="default: 0")
    ds = sub.add_parser("datasets", help="list data sets and where each is read from")
    ds.add_argument("--data-root", default=None, help="default: $DGL_BILEVEL_DATA or ../shared/data")
    return parser


def _config_from_args(args: argparse.Namespace, parser: argparse.ArgumentParser):
    from .experiment import ExperimentConfig

    values = {}
    if args.config:
        import yaml

        with open(args.config) as handle:
            loaded = yaml.safe_load(handle) or {}
        if not isinstance(loaded, dict):
            raise BilevelError(f"--config {args.config}: expected a mapping of options")
        values.update(loaded)
    fields = {f.name for f in dataclasses.fields(ExperimentConfig)}
    unknown = sorted(set(values) - fields)
    if unknown:
        raise BilevelError(f"--config {args.config}: unknown option(s) {', '.join(unknown)}")
    run_parser_defaults = {a.dest: a.default for a in _run_actions(parser)}
    for key, value in vars(args).items():
        if key in ("command", "config", "no_progress", "iteration", "root", "scale", "seed"):
            continue
        if key in fields and (key not in values or value != run_parser_defaults.get(key)):
            values[key] = value
    values["progress"] = not args.no_progress and values.get("progress", True)
    return ExperimentConfig(**values)


def _run_actions(parser: argparse.ArgumentParser):
    for action in parser._subparsers._group_actions:  # noqa: SLF001 - argparse exposes no public accessor
        run = action.choices.get("run")
        if run is not None:
            return run._actions  # noqa: SLF001
    return []


def _generate_ogb(args: argparse.Namespace) -> int:
    from .data.generated import ARXIV_SHAPE, arxiv_like
    from .data.ogb import write_ogb_layout

    n = max(10, int(round(ARXIV_SHAPE["num_nodes"] * args.scale)))
    e = max(n, int(round(ARXIV_SHAPE["num_edges"] * args.scale)))
    folder = write_ogb_layout(arxiv_like(num_nodes=n, num_edges=e, seed=args.seed), args.root)
    print(f"wrote a synthetic arxiv-shaped data set ({n:,} nodes, {e:,} citations) to {folder}")
    return 0


def _datasets(args: argparse.Namespace) -> int:
    from ._dgl import APPLIED_SHIMS, dgl
    from .data import DATASETS

    width = max(len(n) for n in DATASETS)
    for name, entry in sorted(DATASETS.items()):
        print(f"{name.ljust(width)}  {entry.description}")
        print(f"{''.ljust(width)}  source: {entry.source(args.data_root)}")
    print(f"\nDGL {dgl.__version__}" + (f" (compatibility shims: {', '.join(APPLIED_SHIMS)})" if APPLIED_SHIMS else ""))
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        if args.command == "datasets":
            return _datasets(args)
        from .experiment import run_experiment, run_scarcity

        if args.command == "generate-ogb":
            return _generate_ogb(args)
        if args.command == "leaderboard":
            from .experiment import run_leaderboard

            run_leaderboard(_config_from_args(args, parser))
            return 0
        if args.command == "scarcity":
            run_scarcity(_config_from_args(args, parser), iteration=args.iteration)
            return 0
        summary = run_experiment(_config_from_args(args, parser))
        return 1 if any(r.get("stopped_early") for r in summary["per_seed"]) else 0
    except BilevelError as exc:
        print(f"dgl-bilevel: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("dgl-bilevel: interrupted; rerun with --resume to continue from the last checkpoint", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
