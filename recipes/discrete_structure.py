"""Discrete structure learning: a 0/1 graph of B edges learned through a gradient estimator
(``--structure topk``), against continuous edge refinement thresholded to the same budget.

    python recipes/discrete_structure.py                      # the whole grid (Laplacian inner problem)
    python recipes/discrete_structure.py --datasets cheaters --seeds 2 --methods ste perturbed
    python recipes/discrete_structure.py --gnn-check          # + the small GNN check on Cora
    python recipes/discrete_structure.py --report-only        # rebuild table and figure from the runs

Inner problem (every row): Laplacian regularisation with the squared loss, ``lam = 1`` (divided by
the support's stored edges, the paper's normalisation), exact adjoint hypergradient (``--inner
laplacian --laplacian-loss mse --hypergrad adjoint``); 100 outer Adam steps, lr 1e-2. One score or
weight per undirected pair (``--tie-undirected``): both directions are selected together, and
budgets count undirected pairs (a pair is two stored edges, so ``--budget`` gets ``2 B``).

* **cheaters** (256 nodes, seed = the data set's seed): the true graph ``A*`` is the dense kernel
  ``extras['adjacency_star']``; its binary version is the pairs ``i < j`` with ``A*_ij >= 1/2``
  (``|x_i0 - x_j0| < 0.027 sqrt(ln 2)``, about 1,400 pairs, close to ``E|A_obs|``). Candidates:
  the pairs within two hops of ``A_obs`` (``--support power``, about 3,800 pairs; they hold every
  binary ``A*`` pair but at most one per seed). Budgets 25/50/100 % of ``|A*|``.
* **Cora**: candidates = the observed graph (5,278 pairs); budgets 50/75/90 % of them.

Rows: the three estimators (``ste``, ``perturbed`` with 10 samples and sigma 0.1, ``blackbox``
with ``lam = 1000``: the hypergradient per edge is ~1e-4 here, so the default ``lam = 1`` moves
no score across the selection boundary and the gradient is exactly zero), scores ``U[0, 1]``;
their graph is the selection of the best-validation outer iteration. ``continuous``: edge
refinement (``--method bo``, the data set's preset parametrisation and initialisation) on the
same candidates and inner problem, its best-validation weights cut to the ``B`` largest pairs.
``random``: ``B`` pairs drawn uniformly. References: ``A_obs`` and (cheaters) binary ``A*``.
Every graph is scored the same way: one solve of the inner problem on the candidate graph with
0/1 weights (``solve_on_graph``), the Laplacian coefficient unchanged. Precision, recall and F1
compare the selected pairs with the binary ``A*`` (self-loops excluded).

Per-run JSON under ``results/discrete_structure/<inner>/<dataset>/`` (finished runs are skipped);
the table goes between the ``discrete_structure`` markers of docs/bigrad.md, the figure to
docs/figures/discrete_structure.png.
"""
from __future__ import annotations

import argparse
import datetime
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Optional

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import ROOT, write_between_markers  # noqa: E402
from dgl_bilevel.combinatorial.selection import topk_mask  # noqa: E402
from dgl_bilevel.config import ExperimentConfig  # noqa: E402
from dgl_bilevel.data import load_dataset  # noqa: E402
from dgl_bilevel.experiment.build import build_hypergrad, build_inner, build_structure, build_support  # noqa: E402
from dgl_bilevel.outer import fit, solve_on_graph  # noqa: E402

ESTIMATORS = ("ste", "perturbed", "blackbox")
METHODS = ESTIMATORS + ("continuous", "random")
LABELS = {"ste": "top-k, straight-through", "perturbed": "top-k, perturbed", "blackbox": "top-k, blackbox",
          "continuous": "continuous, thresholded", "random": "random", "a_obs": "A_obs (reference)",
          "a_star": "A* >= 1/2 (reference)"}
#: per data set: candidate edges, and budgets as shares of |A*| (cheaters) or of the candidates (Cora)
DATASETS = {"cheaters": {"support": "power", "shares": (0.25, 0.5, 1.0), "of": "|A*|"},
            "cora": {"support": "observed", "shares": (0.5, 0.75, 0.9), "of": "|A_obs|"}}
BLACKBOX_LAM = 1000.0
OUTER_STEPS = 100
#: the GNN check: cheaters (its labels are sums over A*-neighbours, which a GNN can use and the Laplacian
#: cannot), one budget, perturbed against continuous, few seeds and outer steps (~3 s per outer step)
GNN_CHECK = {"dataset": "cheaters", "share": 1.0, "methods": ("perturbed", "continuous"), "seeds": 3,
             "outer_steps": 20}
OUT = ROOT / "results" / "discrete_structure"
DOC = ROOT / "docs" / "bigrad.md"
FIGURE = ROOT / "docs" / "figures" / "discrete_structure.png"


# ----------------------------------------------------------------------------- pairs and scores
def pair_keys(graph) -> tuple[torch.Tensor, torch.Tensor]:
    """``(index, keys)``: each stored edge's unordered pair ``{u, v}`` as an index into ``keys``
    (sorted ``min * n + max``, one per pair); ``u -> v`` and ``v -> u`` share one."""
    src, dst = graph.edges()
    n = graph.num_nodes()
    key = torch.minimum(src, dst).long() * n + torch.maximum(src, dst).long()
    keys, index = torch.unique(key, return_inverse=True)
    return index, keys


def true_pair_keys(adjacency_star: torch.Tensor, threshold: float = 0.5) -> torch.Tensor:
    """The binary ``A*``: keys ``i * n + j`` of the pairs ``i < j`` with ``A*_ij >= threshold``."""
    n = adjacency_star.shape[0]
    iu = torch.triu_indices(n, n, 1)
    keep = adjacency_star[iu[0], iu[1]] >= threshold
    return iu[0][keep] * n + iu[1][keep]


def precision_recall_f1(selected: torch.Tensor, true: torch.Tensor) -> dict:
    """Precision, recall and F1 of the pair keys ``selected`` against the pair keys ``true``."""
    selected, true = torch.unique(selected), torch.unique(true)
    hits = int(torch.isin(selected, true).sum())
    precision = hits / selected.numel() if selected.numel() else 0.0
    recall = hits / true.numel() if true.numel() else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0
    return {"precision": precision, "recall": recall, "f1": f1, "hits": hits, "selected": int(selected.numel())}


def threshold_pairs(weights: torch.Tensor, index: torch.Tensor, num_pairs: int, budget: int) -> torch.Tensor:
    """0/1 weight per stored edge keeping the ``budget`` pairs of largest mean weight (both
    directions of a pair together; ties go to the lower pair key)."""
    total = torch.zeros(num_pairs, dtype=torch.float64).index_add_(0, index, weights.detach().double())
    count = torch.zeros(num_pairs, dtype=torch.float64).index_add_(0, index, torch.ones_like(total[index]))
    pair_weight = total / count.clamp_min(1)
    return topk_mask(pair_weight, budget)[index].to(weights.dtype)


def selected_keys(mask: torch.Tensor, index: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
    return torch.unique(keys[index[mask > 0]])


def pairs_from_keys(support, true: torch.Tensor) -> torch.Tensor:
    """0/1 weight per stored edge of ``support``: 1 where its pair is in ``true``."""
    index, keys = pair_keys(support)
    return torch.isin(keys, true)[index].float()


# ----------------------------------------------------------------------------- configuration
def make_config(dataset: str, method: str, budget_pairs: Optional[int] = None, *, inner: str = "laplacian",
                outer_steps: int = OUTER_STEPS, support: Optional[str] = None) -> ExperimentConfig:
    """The run's configuration: ``method`` an estimator (top-k) or ``continuous`` (edge refinement)."""
    kw = dict(dataset=dataset, inner=inner, method="bo", support=support or DATASETS[dataset]["support"],
              tie_undirected=True, outer_steps=outer_steps, progress=False)
    if inner == "laplacian":
        kw.update(laplacian_loss="mse", hypergrad="adjoint")
    if method in ESTIMATORS:
        kw.update(structure="topk", budget=float(2 * budget_pairs), estimator=method, edge_scale=1.0,
                  blackbox_lam=BLACKBOX_LAM)
    elif method != "continuous":
        raise ValueError(f"no learned run for {method!r}")
    return ExperimentConfig(**kw).resolved()


def cli_command(config: ExperimentConfig) -> str:
    """The ``dgl-bilevel run`` line of a learned run (for the docs)."""
    parts = [f"dgl-bilevel run --dataset {config.dataset} --inner {config.inner}"]
    if config.inner == "laplacian":
        parts.append("--laplacian-loss mse --hypergrad adjoint")
    parts.append(f"--support {config.support} --tie-undirected --outer-steps {config.outer_steps}")
    if config.structure == "topk":
        parts.append(f"--structure topk --budget {int(config.budget)} --estimator {config.estimator} --edge-scale 1")
        if config.estimator == "blackbox":
            parts.append(f"--blackbox-lam {config.blackbox_lam:g}")
    return " ".join(parts)


class Problem:
    """One data set and seed: the candidates, the pair bookkeeping, the true pairs (if known),
    and a scorer of any 0/1 selection with the configuration's inner problem."""

    def __init__(self, data, config: ExperimentConfig, seed: int) -> None:
        self.data, self.config, self.seed = data, config, seed
        self.support = build_support(config, data)
        self.index, self.keys = pair_keys(self.support)
        a_star = (data.extras or {}).get("adjacency_star")
        self.true = true_pair_keys(a_star) if a_star is not None else None

    @property
    def num_pairs(self) -> int:
        return int(self.keys.numel())

    def score(self, mask: torch.Tensor) -> dict:
        """Accuracies of the inner problem solved on the candidates with 0/1 weights ``mask``,
        and the selection's precision/recall/F1 against the binary ``A*`` (when known)."""
        inner = build_inner(self.config, self.data)
        metrics, _ = solve_on_graph(self.data, inner, mask.to(self.data.features.dtype), graph=self.support,
                                    hypergrad=build_hypergrad(self.config, inner), seed=self.seed)
        record = {f"{split}_acc": float(v) for split, v in metrics.items()}
        chosen = selected_keys(mask, self.index, self.keys)
        record["pairs"] = int(chosen.numel())
        if self.true is not None:
            record.update(precision_recall_f1(chosen, self.true))
        return record

    def random_mask(self, budget: int, draw: int = 0) -> torch.Tensor:
        gen = torch.Generator().manual_seed(1_000 * self.seed + draw + 7)
        return threshold_pairs(torch.rand(self.num_pairs, generator=gen)[self.index], self.index, self.num_pairs,
                               budget)

    def observed_mask(self) -> torch.Tensor:
        return pairs_from_keys(self.support, pair_keys(self.data.graph)[1])


def budgets_for(dataset: str, problem: Problem, shares) -> dict:
    """Share -> number of pairs: of the binary ``A*`` (cheaters) or of the candidates."""
    base = problem.true.numel() if problem.true is not None else problem.num_pairs
    return {share: max(1, int(round(share * base))) for share in shares}


# ----------------------------------------------------------------------------- runs
def learn(problem: Problem, config: ExperimentConfig) -> tuple:
    """``fit`` with ``config`` on the problem's data; returns (FitResult, wall seconds)."""
    data, seed = problem.data, problem.seed
    inner = build_inner(config, data)
    structure = build_structure(config, data, seed)
    started = time.perf_counter()
    result = fit(data, structure, inner, build_hypergrad(config, inner), outer_steps=config.outer_steps,
                 lr=config.outer_lr, seed=seed, progress=False)
    return result, time.perf_counter() - started


def fit_summary(result, seconds: float) -> dict:
    losses = [r["outer_loss"] for r in result.history]
    return {"best_iteration": result.best_iteration, "wall_seconds": seconds,
            "median_seconds_per_iteration": result.seconds_per_iteration,
            "outer_loss_first": losses[0] if losses else None, "outer_loss_last": losses[-1] if losses else None,
            "fit_metrics": {k: float(v) for k, v in result.best_metrics.items()}}


def run_estimator(problem: Problem, dataset: str, method: str, budget: int, *, inner: str = "laplacian",
                  outer_steps: int = OUTER_STEPS) -> dict:
    config = make_config(dataset, method, budget, inner=inner, outer_steps=outer_steps,
                         support=problem.config.support)
    result, seconds = learn(problem, config)
    record = problem.score(result.best_weights)
    if record["pairs"] != budget:
        raise AssertionError(f"{method} selected {record['pairs']} pairs, expected {budget}")
    return {**record, **fit_summary(result, seconds), "command": cli_command(config)}


def run_continuous(problem: Problem, dataset: str, budgets: dict, *, inner: str = "laplacian",
                   outer_steps: int = OUTER_STEPS) -> dict:
    """Edge refinement once per seed, its best-validation weights cut to every budget."""
    config = make_config(dataset, "continuous", inner=inner, outer_steps=outer_steps, support=problem.config.support)
    result, seconds = learn(problem, config)
    per_budget = {}
    for share, budget in budgets.items():
        mask = threshold_pairs(result.best_weights, problem.index, problem.num_pairs, budget)
        per_budget[str(share)] = {**problem.score(mask), "budget": budget}
    return {"budgets": per_budget, **fit_summary(result, seconds), "command": cli_command(config),
            "parametrization": config.parametrization, "edge_scale": config.edge_scale}


def run_references(problem: Problem, budgets: dict) -> dict:
    refs = {"a_obs": problem.score(problem.observed_mask())}
    if problem.true is not None:
        refs["a_star"] = problem.score(pairs_from_keys(problem.support, problem.true))
        refs["a_star"]["outside_candidates"] = int((~torch.isin(problem.true, problem.keys)).sum())
    refs["random"] = {str(share): {**problem.score(problem.random_mask(budget)), "budget": budget}
                      for share, budget in budgets.items()}
    return refs


def _load(path: Path, settings: dict) -> Optional[dict]:
    if path.is_file():
        saved = json.loads(path.read_text())
        if saved.get("settings") == settings:
            return saved
    return None


def _save(path: Path, settings: dict, record: dict) -> dict:
    path.parent.mkdir(parents=True, exist_ok=True)
    saved = {"settings": settings, **record}
    path.write_text(json.dumps(saved, indent=1))
    return saved


def run_seed(dataset: str, seed: int, out: Path, *, methods=METHODS, shares=None, inner: str = "laplacian",
             outer_steps: int = OUTER_STEPS, data=None, echo=print, run: bool = True) -> dict:
    """Every run of one data set and seed (finished ones read back): {method: {share: record}} + refs."""
    shares = tuple(shares or DATASETS[dataset]["shares"])
    data = data if data is not None else load_dataset(dataset, None, seed).to(torch.float32)
    base_config = make_config(dataset, "continuous", inner=inner, outer_steps=outer_steps)
    problem = Problem(data, base_config, seed)
    budgets = budgets_for(dataset, problem, shares)
    folder = out / inner / dataset
    common = {"dataset": dataset, "seed": seed, "inner": inner, "outer_steps": outer_steps,
              "num_nodes": data.num_nodes, "candidate_pairs": problem.num_pairs}
    results: dict = {"budgets": {str(s): b for s, b in budgets.items()}, "candidate_pairs": problem.num_pairs,
                     "true_pairs": int(problem.true.numel()) if problem.true is not None else None}
    settings = {**common, "budgets": results["budgets"]}
    path = folder / f"references_seed{seed}.json"
    results["references"] = _load(path, settings) or (_save(path, settings, run_references(problem, budgets))
                                                       if run else None)
    if results["references"] is None:  # report only, and this seed has not run
        return {}
    if "continuous" in methods:
        path = folder / f"continuous_seed{seed}.json"
        saved = _load(path, settings)
        if saved is None and run:
            saved = _save(path, settings, run_continuous(problem, dataset, budgets, inner=inner,
                                                         outer_steps=outer_steps))
            echo(f"{dataset} seed {seed} continuous: {saved['wall_seconds']:.1f} s, " + ", ".join(
                f"B={v['budget']}: test {100 * v['test_acc']:.1f}" for v in saved["budgets"].values()))
        if saved is not None:
            results["continuous"] = saved
    for method in (m for m in methods if m in ESTIMATORS):
        for share, budget in budgets.items():
            path = folder / f"{method}_share{share}_seed{seed}.json"
            run_settings = {**common, "method": method, "budget_pairs": budget, "blackbox_lam": BLACKBOX_LAM}
            saved = _load(path, run_settings)
            if saved is None and not run:
                continue
            if saved is None:
                saved = _save(path, run_settings, run_estimator(problem, dataset, method, budget, inner=inner,
                                                                outer_steps=outer_steps))
                extra = f", F1 {saved['f1']:.3f}" if "f1" in saved else ""
                echo(f"{dataset} seed {seed} {method} B={budget}: test {100 * saved['test_acc']:.1f}{extra}, "
                     f"{saved['wall_seconds']:.1f} s ({1000 * saved['median_seconds_per_iteration']:.0f} ms/it)")
            results.setdefault(method, {})[str(share)] = saved
    return results


# ----------------------------------------------------------------------------- report
def rows(per_seed: list, method: str, share: str) -> list:
    """The records of ``method`` at ``share`` over seeds (references: the same at every share)."""
    out = []
    for r in per_seed:
        if method in ESTIMATORS:
            rec = r.get(method, {}).get(share)
        elif method == "continuous":
            rec = r.get("continuous", {}).get("budgets", {}).get(share)
        elif method == "random":
            rec = r["references"]["random"].get(share)
        else:
            rec = r["references"].get(method)
        if rec is not None:
            out.append(rec)
    return out


def md(text: str) -> str:
    """A label for a markdown table: ``A*`` and ``A_obs`` in code spans (no stray emphasis), no bare pipes."""
    return text.replace("|", "").replace("A*", "`A*`").replace("A_obs", "`A_obs`")


def mean_std(values: list, percent: bool = True) -> tuple:
    values = [v for v in values if v is not None]
    if not values:
        return None, None
    scale = 100.0 if percent else 1.0
    mean = scale * statistics.mean(values)
    std = scale * statistics.stdev(values) if len(values) > 1 else 0.0
    return mean, std


def cell(values: list, percent: bool = True) -> str:
    mean, std = mean_std(values, percent)
    if mean is None:
        return "-"
    return f"{mean:.1f} ± {std:.1f}" if percent else f"{mean:.3f} ± {std:.3f}"


def prf_cells(recs: list) -> str:
    return "".join(f" {cell([r[k] for r in recs], percent=False)} |" for k in ("precision", "recall", "f1"))


def markdown(all_results: dict, command: str, gnn: Optional[dict] = None) -> str:
    when = datetime.date.today().isoformat()
    lines = []
    seeds = sorted({len(v) for v in all_results.values()})
    lines.append(f"Command: `{command}` ({when}; {', '.join(map(str, seeds))} seeds, one CPU thread). Laplacian "
                 f"inner problem (squared loss, lam = 1, exact adjoint hypergradient), {OUTER_STEPS} outer steps, "
                 "one score per undirected pair; test accuracy in %, mean ± std over seeds; s/run: seconds of the "
                 "learning run (the continuous run is one per seed, shared by every budget).")
    for dataset, per_seed in all_results.items():
        spec = DATASETS[dataset]
        first = per_seed[0]
        shares = [str(s) for s in spec["shares"] if str(s) in first["budgets"]]
        known = first.get("true_pairs") is not None
        def span(values):
            lo, hi = min(values), max(values)
            return f"{lo}" if lo == hi else f"{lo}-{hi}"

        budgets = ", ".join(f"{float(s):.0%} = {span([r['budgets'][s] for r in per_seed])}" for s in shares)
        true = span([r["true_pairs"] for r in per_seed]) if known else None
        lines += ["", f"**{dataset}** ({span([r['candidate_pairs'] for r in per_seed])} candidate pairs"
                  + (f", binary `A*` = {true} pairs" if known else "") + f"; budgets in pairs: {budgets})", ""]
        head = "| budget | graph | test acc. |" + (" precision | recall | F1 |" if known else "") + " s/run |"
        lines.append(head)
        lines.append("|" + "---|" * (head.count("|") - 1))
        for share in shares:
            for method in METHODS:
                recs = rows(per_seed, method, share)
                if not recs:
                    continue
                secs = [r.get("wall_seconds") for r in recs] if method in ESTIMATORS else \
                    [r["continuous"]["wall_seconds"] for r in per_seed if "continuous" in r] \
                    if method == "continuous" else []
                line = f"| {float(share):.0%} of {md(spec['of'])} | {md(LABELS[method])} | " \
                       f"{cell([r['test_acc'] for r in recs])} |"
                if known:
                    line += prf_cells(recs)
                line += f" {statistics.mean(secs):.1f} |" if secs else " |"
                lines.append(line)
        for ref in ("a_obs", "a_star"):
            recs = rows(per_seed, ref, "")
            if recs:
                line = f"| all ({statistics.mean([r['pairs'] for r in recs]):.0f}) | {md(LABELS[ref])} | " \
                       f"{cell([r['test_acc'] for r in recs])} |"
                if known:
                    line += prf_cells(recs)
                lines.append(line + " |")
    if gnn:
        lines += ["", gnn_markdown(gnn)]
    return "\n".join(lines)


def gnn_markdown(gnn: dict) -> str:
    spec = GNN_CHECK
    per_seed = gnn["per_seed"]
    share = str(spec["share"])
    budgets = sorted({r["budgets"][share] for r in per_seed})
    known = per_seed[0].get("true_pairs") is not None
    lines = [f"**GNN check** ({spec['dataset']}, the paper's 2-layer sum-aggregation GNN and settings: hidden 8, "
             f"200 inner Adam steps, unrolled hypergradient; only {spec['outer_steps']} outer steps and "
             f"{len(per_seed)} seeds; budget {float(share):.0%} of {md(DATASETS[spec['dataset']]['of'])} = "
             f"{'-'.join(map(str, (budgets[0], budgets[-1]) if len(budgets) > 1 else budgets))} pairs):", "",
             "| graph | test acc. |" + (" precision | recall | F1 |" if known else "") + " s/run |",
             "|---|---|" + ("---|---|---|" if known else "") + "---|"]
    for method in ("perturbed", "continuous", "random", "a_obs", "a_star"):
        recs = rows(per_seed, method, share if method not in ("a_obs", "a_star") else "")
        if not recs:
            continue
        secs = [r["wall_seconds"] for r in recs] if method in ESTIMATORS else \
            [r["continuous"]["wall_seconds"] for r in per_seed if "continuous" in r] if method == "continuous" else []
        line = f"| {md(LABELS[method])} | {cell([r['test_acc'] for r in recs])} |"
        if known:
            line += prf_cells(recs)
        lines.append(line + (f" {statistics.mean(secs):.0f} |" if secs else " |"))
    seeds_acc = {m: [round(100 * r["test_acc"], 1) for r in rows(per_seed, m, "" if m.startswith("a_") else share)]
                 for m in ("perturbed", "continuous", "random", "a_obs", "a_star")}
    lines += ["", "Per seed, test accuracy: " + "; ".join(f"{md(LABELS[m])} {v}" for m, v in seeds_acc.items() if v)
              + "."]
    return "\n".join(lines)


def figure(all_results: dict, path: Path = FIGURE) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    datasets = [d for d in ("cheaters", "cora") if d in all_results]
    fig, axes = plt.subplots(2, len(datasets), figsize=(5.2 * len(datasets), 7.4), squeeze=False)
    styles = {"ste": ("C0", "o"), "perturbed": ("C1", "s"), "blackbox": ("C2", "^"),
              "continuous": ("C3", "D"), "random": ("0.5", "x")}
    refs = {"a_obs": ("k", "--"), "a_star": ("C4", ":")}
    for col, dataset in enumerate(datasets):
        per_seed, spec = all_results[dataset], DATASETS[dataset]
        shares = [str(s) for s in spec["shares"] if str(s) in per_seed[0]["budgets"]]
        x = [100 * float(s) for s in shares]
        panels = [("test_acc", True, "test accuracy (%)")]
        if per_seed[0].get("true_pairs") is not None:
            panels.append(("f1", False, "F1 of the selected pairs vs binary A*"))
        for row, (key, percent, ylabel) in enumerate(panels):
            ax = axes[row][col]
            spread = 0.012 * (max(x) - min(x))  # side by side, so the error bars do not hide each other
            for i, (method, (color, marker)) in enumerate(styles.items()):
                stats = [mean_std([r[key] for r in rows(per_seed, method, s)], percent) for s in shares]
                if any(m is None for m, _ in stats):
                    continue
                ax.errorbar([v + (i - 2) * spread for v in x], [m for m, _ in stats], yerr=[s for _, s in stats],
                            color=color, marker=marker, capsize=3, label=LABELS[method])
            levels = {}
            for ref, (color, style) in refs.items():
                recs = rows(per_seed, ref, "")
                if recs and key in recs[0]:
                    mean, _ = mean_std([r[key] for r in recs], percent)
                    levels[ref] = mean
                    ax.axhline(mean, color=color, linestyle=style, linewidth=1.5 if ref == "a_star" else 1,
                               label=LABELS[ref], zorder=3)
            if len(levels) == 2 and abs(levels["a_obs"] - levels["a_star"]) < 1e-9:
                ax.annotate("A_obs and A* give the same accuracy", (0.02, 0.02), xycoords="axes fraction",
                            fontsize=8)
            ax.margins(y=0.08)
            ax.set_xlabel(f"budget (% of {spec['of']}, undirected pairs)")
            ax.set_ylabel(ylabel)
            ax.set_xticks(x)
            ax.set_title(f"{dataset}, Laplacian inner problem" + (" -- selection quality" if row else ""))
            ax.grid(alpha=0.3)
        if len(panels) == 1:
            axes[1][col].axis("off")
    seen: dict = {}
    for ax in axes.flat:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            seen.setdefault(label, handle)
    fig.legend(list(seen.values()), list(seen.keys()), loc="center", bbox_to_anchor=(0.75, 0.25),
               fontsize=9, frameon=False)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


# ----------------------------------------------------------------------------- main
def run_gnn_check(out: Path, echo=print, run: bool = True) -> Optional[dict]:
    spec = GNN_CHECK
    per_seed = []
    for seed in range(spec["seeds"]):
        record = run_seed(spec["dataset"], seed, out, methods=spec["methods"] + ("random",), shares=(spec["share"],),
                          inner="gnn", outer_steps=spec["outer_steps"], echo=echo, run=run)
        if record:
            per_seed.append(record)
    return {"per_seed": per_seed} if per_seed else None


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=list(DATASETS))
    p.add_argument("--methods", nargs="+", default=list(METHODS[:-1]), choices=list(METHODS[:-1]),
                   help="learned rows (random and the references always run)")
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--out", default=str(OUT))
    p.add_argument("--gnn-check", action="store_true", help="also the small GNN check (Cora, one budget)")
    p.add_argument("--report-only", action="store_true", help="only read finished runs (runs nothing new)")
    p.add_argument("--no-docs", action="store_true", help="do not write docs/bigrad.md and the figure")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    out = Path(args.out)
    command = "OMP_NUM_THREADS=1 .venv/bin/python recipes/discrete_structure.py " + " ".join(
        argv if argv is not None else sys.argv[1:])
    all_results: dict = {}
    for dataset in args.datasets:
        all_results[dataset] = []
        for seed in range(args.seeds):
            record = run_seed(dataset, seed, out, methods=tuple(args.methods) + ("random",), run=not args.report_only)
            if record:
                all_results[dataset].append({"seed": seed, **record})
        if not all_results[dataset]:
            del all_results[dataset]
    gnn = None
    if args.gnn_check or (out / "gnn" / GNN_CHECK["dataset"] / "references_seed0.json").is_file():
        gnn = run_gnn_check(out, run=args.gnn_check and not args.report_only)
    table = markdown(all_results, command.strip(), gnn)
    print(table)
    if not args.no_docs:
        print("written to", write_between_markers(table, "discrete_structure", DOC))
        print("figure:", figure(all_results))


if __name__ == "__main__":
    main()
