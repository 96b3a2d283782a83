"""Robustness of energy models to spurious edges on Cora: uniformly random non-edges are added
(symmetrised) and the quadratic energy model is compared with robust penalties (IRLS reweighting)
and with bilevel edge refinement of the energy inner problem.

    python recipes/spurious_edges.py                           # every level and model
    python recipes/spurious_edges.py --levels 0 0.5 --models quadratic irls-lp --seeds 2
    python recipes/spurious_edges.py --bilevel-seeds 0         # single-level models only
    python recipes/spurious_edges.py --report-only

Corruption level ``f``: ``round(f * |E_u|)`` undirected pairs drawn uniformly among the pairs that
are not edges (no self-loops, no repeats), both directions added; ``|E_u|`` = 5,278 undirected
edges of Cora (10,556 stored), so the stored edges grow by the same fraction. The corrupted graph
depends on ``--graph-seed + seed``. Single-level rows train as in
``bloomgml_node_classification.py`` (train on ``v_in``, select on ``v_out ∪ val``). The bilevel row
learns one weight per stored edge (sigmoid parametrisation) of the corrupted graph with
``dgl_bilevel.fit``: inner problem = the quadratic energy model (``EnergyInner``) trained on
``v_in``, outer loss on ``v_out``, graph selected on ``val``.

Edge separation: for the learned weights (bilevel) and for the robust models' IRLS weights at the
last step (``gamma_e = a_e rho'(u_e(Y_{K-1}))``, on the clean evaluation pass of the selected
model), the mean weight of true and of spurious edges, and the ROC AUC of the weight as a
detector of true edges (1: every true edge above every spurious one; 0.5: chance).

Tables between the ``bloomgml-spurious`` markers of docs/bloomgml.md; the figure is
docs/figures/spurious_edges.png.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Optional

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bloomgml_node_classification import (  # noqa: E402
    ROOT, SparseInput, TrainConfig, energy, lp_lam, mean_std, pm, train_node_classifier, write_doc_block, write_json,
)
from dgl_bilevel._dgl import dgl  # noqa: E402
from dgl_bilevel.data import BilevelData  # noqa: E402
from dgl_bilevel.data.noise import add_spurious_edges, corrupt, undirected_edge_count  # noqa: E402,F401
from dgl_bilevel.energy import EnergyGNN, make_penalty  # noqa: E402

LEVELS = (0.0, 0.1, 0.3, 0.5, 1.0)
#: name -> (description, factory of the single-level model)
MODELS = {
    "quadratic": ("quadratic energy (preconditioned, sym, lam 9 = APPNP)", energy()),
    "irls-huber": ("IRLS, Huber delta 0.5, lam 9", energy("irls", make_penalty("huber", delta=0.5))),
    "irls-cauchy": ("IRLS, Cauchy c 0.5, lam 9", energy("irls", make_penalty("cauchy", c=0.5))),
    "irls-lp": ("IRLS, lp p 0.1 tau 0.2, lam 9 / sup rho'", energy("irls", make_penalty("lp", p=0.1, tau=0.2),
                                                                  lam=lp_lam(0.1, 0.2))),
}
FIGURE = ROOT / "docs" / "figures" / "spurious_edges.png"
#: the rows of bloomgml_node_classification.py that are these models on the clean graph
CLEAN_ROWS = {"quadratic": "energy-appnp", "irls-huber": "energy-irls-huber", "irls-cauchy": "energy-irls-cauchy",
              "irls-lp": "energy-irls-lp"}


# ----------------------------------------------------------------------------- corruption
# add_spurious_edges, corrupt and undirected_edge_count live in dgl_bilevel.data.noise (the noisy data sets
# cora-noise20 ... cora-noise80 are built with them)


# ----------------------------------------------------------------------------- edge separation
def roc_auc(scores: torch.Tensor, positive: torch.Tensor) -> float:
    """ROC AUC of ``scores`` for the boolean labels ``positive`` (Mann-Whitney, ties counted 1/2)."""
    scores = scores.detach().double().reshape(-1)
    positive = positive.reshape(-1).bool()
    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = torch.argsort(scores)
    sorted_scores = scores[order]
    ranks = torch.empty_like(scores)
    ranks[order] = torch.arange(1, scores.numel() + 1, dtype=torch.double)
    # average ranks over ties
    unique, inverse, counts = torch.unique(sorted_scores, return_inverse=True, return_counts=True)
    if unique.numel() < scores.numel():
        sums = torch.zeros(unique.numel(), dtype=torch.double).index_add(0, inverse,
                                                                           torch.arange(1, scores.numel() + 1,
                                                                                        dtype=torch.double))
        ranks[order] = (sums / counts)[inverse]
    rank_sum = float(ranks[positive].sum())
    return (rank_sum - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)


def separation(weights: torch.Tensor, spurious: torch.Tensor) -> dict:
    """Mean weight of true and spurious edges, and the AUC of the weight as a detector of true edges."""
    weights = weights.detach().reshape(-1)
    out = {"mean_true": float(weights[~spurious].mean())}
    out["mean_spurious"] = float(weights[spurious].mean()) if bool(spurious.any()) else float("nan")
    out["auc"] = roc_auc(weights, ~spurious)
    return out


def irls_weights(model: EnergyGNN, graph, features: SparseInput) -> torch.Tensor:
    """The IRLS edge weights ``gamma_e = a_e rho'(u_e)`` used by the last step (built at ``Y_{K-1}``)."""
    layer = model.propagate
    model.eval()
    with torch.no_grad():
        target = model.mlp(features.dropped(0.0, False))
        bound = layer.energy.bind(graph, target)
        ys = [bound.target]
        for y in layer.rule.iterate(bound, bound.target, max(layer.steps - 1, 0)):
            ys.append(y)
        return bound.surrogate(ys[-1]).graph.edge


# ----------------------------------------------------------------------------- runs
def single_level(model_name: str, data: BilevelData, spurious: torch.Tensor, config: TrainConfig, seed: int) -> dict:
    factory = MODELS[model_name][1]
    torch.manual_seed(seed)
    model = factory(data.num_features, config.hidden, data.num_classes, config.steps, config.dropout)
    features = SparseInput(data.features)
    result, state = train_node_classifier(model, data, config, seed, features=features)
    record = {"test_acc": result.test_acc, "val_acc": result.val_acc, "best_epoch": result.best_epoch,
              "seconds": result.seconds}
    if model_name.startswith("irls") and bool(spurious.any()):
        model.load_state_dict(state)
        record["irls"] = separation(irls_weights(model, data.graph, features), spurious)
    return record


def energy_inner(data: BilevelData, inner_steps: int, hidden: int):
    """The inner problem: the quadratic energy model (APPNP-like, K = 10, lam 9) trained on ``v_in``."""
    from dgl_bilevel.inner.energy import EnergyInner

    model = EnergyGNN(data.num_features, hidden, data.num_classes, steps=10, step_rule="preconditioned", lam=9.0,
                      normalize="sym")
    return EnergyInner(model, steps=inner_steps, lr=1e-2, weight_decay=5e-4, init="fresh")


def observed(data: BilevelData, seed: int, inner_steps: int, hidden: int) -> dict:
    """The bilevel run's inner model solved once on the corrupted graph with unit weights (its A_obs)."""
    from dgl_bilevel.outer.loop import solve_on_graph

    started = time.perf_counter()
    metrics, _ = solve_on_graph(data, energy_inner(data, inner_steps, hidden), data.observed_weights(), seed=seed)
    return {"test_acc": metrics["test"], "val_acc": metrics["val"], "v_out_acc": metrics["v_out"],
            "seconds": time.perf_counter() - started}


def bilevel(data: BilevelData, spurious: torch.Tensor, seed: int, outer_steps: int, outer_lr: float,
            hypergrad: str, inner_steps: int, hidden: int) -> dict:
    """Edge refinement: one sigmoid weight per stored edge of the corrupted graph, ``dgl_bilevel.fit``."""
    import dgl_bilevel as dbl

    inner = energy_inner(data, inner_steps, hidden)
    structure = dbl.EdgeWeights(data.graph, generator=torch.Generator().manual_seed(10_000 + seed))
    started = time.perf_counter()
    result = dbl.fit(data, structure, inner, hypergrad, outer_steps=outer_steps, lr=outer_lr, seed=seed,
                     progress=False)
    record = {"test_acc": result.best_metrics["test"], "val_acc": result.best_metrics["val"],
              "v_out_acc": result.best_metrics["v_out"], "best_iteration": result.best_iteration,
              "seconds": time.perf_counter() - started,
              "seconds_per_iteration": result.seconds_per_iteration, "stopped_early": result.stopped_early}
    if bool(spurious.any()):
        record["learned"] = separation(result.best_weights, spurious)
        record["learned_final"] = separation(result.final_weights, spurious)
    return record


def reused_clean_runs(folder: Path, name: str, config: TrainConfig, seeds: int) -> Optional[list]:
    """The clean-graph runs of ``name`` from bloomgml_node_classification.py's results, if that run used
    the same training configuration and has these seeds (level 0 adds no edge: the same computation)."""
    path = folder / f"{CLEAN_ROWS[name]}.json"
    if not path.is_file():
        return None
    payload = json.loads(path.read_text())
    runs = [r for r in payload["runs"] if r["seed"] < seeds]
    if payload["config"] != config.__dict__ or len(runs) < seeds:
        return None
    return [{k: r[k] for k in ("seed", "test_acc", "val_acc", "best_epoch", "seconds")} for r in runs]


# ----------------------------------------------------------------------------- report
def load(out: Path, name: str) -> Optional[dict]:
    path = out / f"{name}.json"
    return json.loads(path.read_text()) if path.is_file() else None


def collect(out: Path, levels, models, with_bilevel: bool) -> dict:
    table = {}
    for model in list(models) + (["bilevel-a_obs", "bilevel"] if with_bilevel else []):
        for level in levels:
            payload = load(out, f"{model}-{level:g}")
            if payload is not None:
                table[(model, level)] = payload["runs"]
    return table


def label(model: str) -> str:
    if model == "bilevel":
        return "bilevel edge refinement (energy inner, learned weights)"
    if model == "bilevel-a_obs":
        return "same inner energy model on the corrupted graph (no refinement)"
    return MODELS[model][0]


def markdown(results: dict, levels, models, with_bilevel: bool) -> str:
    names = list(models) + (["bilevel-a_obs", "bilevel"] if with_bilevel else [])
    lines = ["| model | " + " | ".join(f"+{100 * lv:.0f}%" for lv in levels) + " | drop at +50% | seeds |",
             "|---|" + "---|" * (len(levels) + 2)]
    for name in names:
        cells, seeds = [], set()
        for level in levels:
            runs = results.get((name, level))
            cells.append(pm([r["test_acc"] for r in runs]) if runs else "-")
            if runs:
                seeds.add(len(runs))
        drop = "-"
        if (name, 0.0) in results and (name, 0.5) in results:
            clean = mean_std([r["test_acc"] for r in results[(name, 0.0)]])[0]
            half = mean_std([r["test_acc"] for r in results[(name, 0.5)]])[0]
            drop = f"{100 * (clean - half):.1f}"
        lines.append(f"| {label(name)} | " + " | ".join(cells) + f" | {drop} | {'/'.join(map(str, sorted(seeds)))} |")
    lines.append("")
    lines.append("| weights | level | mean weight, true edges | mean weight, spurious edges | AUC (true vs spurious) | seeds |")
    lines.append("|---|---|---|---|---|---|")
    for name, key in [(m, "irls") for m in models if m.startswith("irls")] + [("bilevel", "learned")] * with_bilevel:
        for level in levels:
            runs = [r for r in results.get((name, level), []) if key in r]
            if not runs:
                continue
            what = "IRLS weights at the last step" if key == "irls" else "learned weights (best graph)"
            lines.append(f"| {label(name)}: {what} | +{100 * level:.0f}% | "
                         f"{pm([r[key]['mean_true'] for r in runs], 1.0, 3)} | "
                         f"{pm([r[key]['mean_spurious'] for r in runs], 1.0, 3)} | "
                         f"{pm([r[key]['auc'] for r in runs], 1.0, 3)} | {len(runs)} |")
    return "\n".join(lines)


def figure(results: dict, levels, models, with_bilevel: bool, path: Path = FIGURE) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    names = list(models) + (["bilevel-a_obs", "bilevel"] if with_bilevel else [])
    for name in names:
        xs, ms, ss = [], [], []
        for level in levels:
            runs = results.get((name, level))
            if runs:
                m, s = mean_std([r["test_acc"] for r in runs])
                xs.append(100 * level)
                ms.append(100 * m)
                ss.append(0.0 if s != s else 100 * s)
        if xs:
            style = "--" if name.startswith("bilevel") else "-"
            ax.errorbar(xs, ms, yerr=ss, marker="o", capsize=3, linestyle=style, label=name)
    ax.set_xlabel("spurious edges added (% of |E|)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title("Cora with random non-edges added")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--levels", nargs="*", type=float, default=list(LEVELS))
    p.add_argument("--models", nargs="*", choices=list(MODELS), default=list(MODELS))
    p.add_argument("--seeds", type=int, default=5, help="seeds of the single-level models")
    p.add_argument("--epochs", type=int, default=300)
    p.add_argument("--graph-seed", type=int, default=100, help="the corrupted graph of seed s uses graph-seed + s")
    p.add_argument("--bilevel-seeds", type=int, default=2)
    p.add_argument("--bilevel-levels", nargs="*", type=float, default=None, help="default: --levels")
    p.add_argument("--outer-steps", type=int, default=40)
    p.add_argument("--outer-lr", type=float, default=0.1)
    p.add_argument("--inner-steps", type=int, default=100)
    p.add_argument("--hidden", type=int, default=64)
    p.add_argument("--hypergrad", default="implicit")
    p.add_argument("--data-root", default=None)
    p.add_argument("--out", default=str(ROOT / "results" / "bloomgml" / "spurious_edges"))
    p.add_argument("--reuse-clean", default=str(ROOT / "results" / "bloomgml" / "node_classification"),
                   help="take level 0 from bloomgml_node_classification.py's runs when their settings match")
    p.add_argument("--report-only", action="store_true")
    p.add_argument("--no-doc", action="store_true", help="write neither the table into docs/bloomgml.md nor the "
                                                          "figure into docs/figures (the figure goes to --out)")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    out = Path(args.out)
    config = TrainConfig(epochs=args.epochs, hidden=args.hidden)
    bilevel_levels = args.levels if args.bilevel_levels is None else args.bilevel_levels
    if not args.report_only:
        from dgl_bilevel.data import cora

        base = cora(args.data_root, 0)
        for level in args.levels:
            for name in args.models:
                reused = reused_clean_runs(Path(args.reuse_clean), name, config, args.seeds) if level == 0 else None
                if reused is not None:
                    print(f"{name} +0%: {len(reused)} runs reused from {args.reuse_clean}", flush=True)
                runs = reused or []
                for seed in range(0 if reused else args.seeds):
                    data, spurious = corrupt(base, level, args.graph_seed + seed)
                    runs.append({"seed": seed, **single_level(name, data, spurious, config, seed)})
                    r = runs[-1]
                    print(f"{name} +{100 * level:.0f}% seed {seed}: test {100 * r['test_acc']:.1f} "
                          f"{r.get('irls', '')} ({r['seconds']:.0f} s)", flush=True)
                write_json(out / f"{name}-{level:g}.json", {"model": name, "level": level, "config": config.__dict__,
                                                             "runs": runs})
        for level in bilevel_levels:
            if args.bilevel_seeds <= 0:
                break
            for name in ("bilevel-a_obs", "bilevel"):
                runs = []
                for seed in range(args.bilevel_seeds):
                    data, spurious = corrupt(base, level, args.graph_seed + seed)
                    if name == "bilevel":
                        r = bilevel(data, spurious, seed, args.outer_steps, args.outer_lr, args.hypergrad,
                                    args.inner_steps, args.hidden)
                    else:
                        r = observed(data, seed, args.inner_steps, args.hidden)
                    runs.append({"seed": seed, **r})
                    print(f"{name} +{100 * level:.0f}% seed {seed}: test {100 * r['test_acc']:.1f} "
                          f"{r.get('learned', '')} ({r['seconds']:.0f} s)", flush=True)
                write_json(out / f"{name}-{level:g}.json",
                           {"model": name, "level": level, "runs": runs,
                            "config": {"outer_steps": args.outer_steps, "outer_lr": args.outer_lr,
                                       "hypergrad": args.hypergrad, "inner_steps": args.inner_steps,
                                       "hidden": args.hidden}})
    with_bilevel = any((out / f"bilevel-{lv:g}.json").is_file() for lv in args.levels)
    results = collect(out, args.levels, args.models, with_bilevel)
    block = markdown(results, args.levels, args.models, with_bilevel)
    print(block)
    if results:  # --no-doc keeps docs/ untouched: the figure goes next to the runs instead
        path = Path(out) / "spurious_edges.png" if args.no_doc else FIGURE
        print(f"figure: {figure(results, args.levels, args.models, with_bilevel, path)}")
    if not args.no_doc:
        write_doc_block(block, "bloomgml-spurious")


if __name__ == "__main__":
    main()
