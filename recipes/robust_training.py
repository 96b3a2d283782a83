"""Robust training against structure attacks on Cora: plain GCN against a GCN trained against a
PGD structure adversary (min-max; the adversary is the lower level), both attacked by the PGD
topology attack of Xu et al. (2019) at 5% and 10% of the edges.

    OMP_NUM_THREADS=1 .venv/bin/python recipes/robust_training.py                  # 5 seeds (~25 min, one core)
    OMP_NUM_THREADS=1 .venv/bin/python recipes/robust_training.py --seeds 1 --epochs 50 --attack-steps 20
    OMP_NUM_THREADS=1 .venv/bin/python recipes/robust_training.py --report-only    # the table from saved seeds

**Data.** Cora (2708 nodes, 5278 undirected edges), ``dgl_bilevel.data.cora(root, seed)``:
training nodes ``v_in`` (the 140 Planetoid training nodes), model selection on ``v_out`` and
``val`` together (the 500 Planetoid validation nodes), test = the 1000 Planetoid test nodes.
The seed sets the initialisation, dropout and the attack's random draws (the split is fixed).

**Model.** :class:`~dgl_bilevel.robust.DenseGCN`: 2 layers, hidden 16, dropout 0.5, Adam (lr
0.01, weight decay 5e-4), 200 epochs, the epoch of best (clean) validation accuracy kept.

* *plain*: trained on the clean graph.
* *robust*: each epoch, one projected gradient ascent step of a structure adversary with budget
  ``round(0.05 |E|)`` = 264 flips on the training loss (relaxed perturbation, warm-started
  across epochs, raw gradient with step 200), then one Adam step on the relaxed perturbed graph
  (Danskin: the gradient of the max is the gradient at the maximiser).

**Attack** (:func:`~dgl_bilevel.robust.pgd_attack`, evasion, white box): budget
``round(rate |E|)`` (264 and 528 flips), maximising the loss of the *test nodes with their true
labels* (the strongest evaluation; it uses labels an attacker would not have), 100 projected
gradient steps ``c / sqrt(t)`` along the normalised gradient (``c = 1``), then 20 Bernoulli draws
(plus the top-budget rounding) and the draw of highest loss. Two losses, cross-entropy and the
CW margin (``kappa = 0.1``); a cell reports, per seed, the lower accuracy of the two (the worst
case over our attacks), then mean ± std over seeds. The CE attack alone is weak against a model
with flat, low-confidence outputs: taking the worse of the two guards against that.

Per-seed results are checkpointed in ``results/robust_training/seed_<k>.json`` (a rerun skips
seeds finished with the same settings); the table is written between the ``robust_training``
markers of docs/bigrad.md.
"""
from __future__ import annotations

import argparse
import datetime
import json
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "recipes"))

from dgl_bilevel.robust import (AdversaryConfig, DenseGCN, PGDConfig, TrainConfig, accuracy,  # noqa: E402
                                budget_from_rate, dense_adjacency, num_undirected_edges, pgd_attack, train_gcn)

MODELS = ("plain", "robust")
LOSSES = ("ce", "cw")
LABELS = {"plain": "plain GCN", "robust": "robust GCN (PGD-trained)"}


def settings(args: argparse.Namespace) -> dict:
    """Everything a seed's result depends on: a checkpoint is reused only if these match."""
    return {"rates": list(args.rates), "epochs": args.epochs, "train_rate": args.train_rate,
            "adversary_steps": args.adversary_steps, "adversary_step_size": args.adversary_step_size,
            "adversary_normalize": args.adversary_normalize, "attack_steps": args.attack_steps,
            "attack_step_size": args.attack_step_size, "samples": args.samples, "hidden": 16, "dropout": 0.5}


def run_seed(seed: int, args: argparse.Namespace) -> dict:
    from dgl_bilevel.data import cora
    data = cora(args.data_root, seed)
    adj = dense_adjacency(data.graph)
    x = data.features.to_sparse()
    y = data.labels
    val = torch.cat([data.v_out, data.val])
    edges = num_undirected_edges(adj)
    out = {"seed": seed, "edges": edges, "settings": settings(args), "models": {}}
    adversaries = {"plain": None,
                   "robust": AdversaryConfig(rate=args.train_rate, steps=args.adversary_steps,
                                             step_size=args.adversary_step_size,
                                             normalize=args.adversary_normalize, seed=seed)}
    for name in MODELS:
        torch.manual_seed(seed)
        model = DenseGCN(data.num_features, 16, data.num_classes, dropout=0.5)
        trained = train_gcn(model, adj, x, y, data.v_in, val, TrainConfig(epochs=args.epochs), adversaries[name])
        row = {"clean": accuracy(model, adj, x, y, data.test), "val": trained.best_val,
               "best_epoch": trained.best_epoch, "train_seconds": trained.seconds, "attacks": {}}
        for rate in args.rates:
            budget = budget_from_rate(rate, edges)
            for loss in LOSSES:
                result = pgd_attack(model, adj, x, y, data.test, budget,
                                    PGDConfig(steps=args.attack_steps, step_size=args.attack_step_size,
                                              loss=loss, samples=args.samples, seed=seed))
                row["attacks"][f"{rate}/{loss}"] = {
                    "accuracy": accuracy(model, result.adjacency, x, y, data.test), "budget": budget,
                    "flips": result.num_flips, "loss_clean": result.loss_clean, "loss_relaxed": result.loss_relaxed,
                    "loss_attacked": result.loss_attacked, "feasible_samples": result.feasible_samples,
                    "chosen": result.chosen, "seconds": result.seconds}
        out["models"][name] = row
        cells = ", ".join(f"{r:.0%} {min(row['attacks'][f'{r}/{k}']['accuracy'] for k in LOSSES):.3f}" for r in args.rates)
        print(f"seed {seed} {name}: clean {row['clean']:.3f}, attacked {cells} "
              f"(train {row['train_seconds']:.0f} s, best epoch {row['best_epoch']})", flush=True)
    return out


def worst(row: dict, rate: float) -> float:
    return min(row["attacks"][f"{rate}/{loss}"]["accuracy"] for loss in LOSSES)


def mean_std(values: list, percent: bool = True) -> str:
    scale = 100 if percent else 1
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{scale * statistics.mean(values):.1f} ± {scale * std:.1f}"


def markdown(results: list, command: str, date: str) -> str:
    rates = results[0]["settings"]["rates"]
    s = results[0]["settings"]
    seeds = f"{len(results)} seed{'s' if len(results) > 1 else ''}"
    lines = [f"Command: `{command}` ({date}; {seeds}, one CPU thread). Test accuracy (%) on the "
             "1000 Planetoid test nodes, mean ± std over seeds; under attack, the worse of the CE and CW PGD "
             f"attacks per seed ({s['attack_steps']} steps, {s['samples']} draws).", ""]
    head = "| model | clean | " + " | ".join(f"PGD {r:.0%} ({budget_from_rate(r, results[0]['edges'])} flips)"
                                             for r in rates) + " | train s | attack s (all) |"
    lines += [head, "|" + "---|" * (len(rates) + 4)]
    for name in MODELS:
        rows = [r["models"][name] for r in results]
        cells = [mean_std([row["clean"] for row in rows])] + [mean_std([worst(row, rate) for row in rows]) for rate in rates]
        train_s = statistics.mean(row["train_seconds"] for row in rows)
        attack_s = statistics.mean(sum(a["seconds"] for a in row["attacks"].values()) for row in rows)
        lines.append(f"| {LABELS[name]} | " + " | ".join(cells) + f" | {train_s:.0f} | {attack_s:.0f} |")
    lines += ["", "By attack loss (accuracy %; flips used, mean):", "",
              "| model | " + " | ".join(f"{r:.0%} {k.upper()}" for r in rates for k in LOSSES) + " |",
              "|" + "---|" * (1 + len(rates) * len(LOSSES))]
    for name in MODELS:
        rows = [r["models"][name] for r in results]
        cells = []
        for rate in rates:
            for loss in LOSSES:
                att = [row["attacks"][f"{rate}/{loss}"] for row in rows]
                flips = statistics.mean(a["flips"] for a in att)
                cells.append(f"{mean_std([a['accuracy'] for a in att])} ({flips:.0f})")
        lines.append(f"| {LABELS[name]} | " + " | ".join(cells) + " |")
    gains = {rate: [worst(r["models"]["robust"], rate) - worst(r["models"]["plain"], rate) for r in results]
             for rate in rates}
    clean_gain = [r["models"]["robust"]["clean"] - r["models"]["plain"]["clean"] for r in results]
    lines += ["", "Robust minus plain, paired by seed (points): clean " + mean_std(clean_gain) + ", " + ", ".join(
        f"PGD {rate:.0%} {mean_std(g)} (better on {sum(v > 0 for v in g)} of {len(g)} seeds)" for rate, g in gains.items())
        + "."]
    return "\n".join(lines)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--rates", type=float, nargs="+", default=[0.05, 0.10], help="attack budgets, fractions of |E|")
    p.add_argument("--epochs", type=int, default=200)
    p.add_argument("--train-rate", type=float, default=0.05, help="the training adversary's budget, fraction of |E|")
    p.add_argument("--adversary-steps", type=int, default=1, help="ascent steps of the training adversary per epoch")
    p.add_argument("--adversary-step-size", type=float, default=200.0)
    p.add_argument("--adversary-normalize", action="store_true", help="normalised gradient steps for the training adversary")
    p.add_argument("--attack-steps", type=int, default=100)
    p.add_argument("--attack-step-size", type=float, default=1.0)
    p.add_argument("--samples", type=int, default=20)
    p.add_argument("--data-root", default=None)
    p.add_argument("--out", default=str(ROOT / "results" / "robust_training"))
    p.add_argument("--no-docs", action="store_true", help="do not write the table into docs/bigrad.md")
    p.add_argument("--report-only", action="store_true", help="rebuild the table from the saved seeds")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    command = "OMP_NUM_THREADS=1 .venv/bin/python recipes/robust_training.py " + " ".join(
        argv if argv is not None else sys.argv[1:])
    results = []
    for seed in range(args.seeds):
        path = out / f"seed_{seed}.json"
        saved = json.loads(path.read_text()) if path.is_file() else None
        if saved is not None and (args.report_only or saved["settings"] == settings(args)):
            print(f"seed {seed}: finished earlier ({path})", flush=True)
            results.append(saved)
            continue
        if args.report_only:
            continue
        start = time.perf_counter()
        result = run_seed(seed, args)
        result["seconds"] = time.perf_counter() - start
        result["command"] = command.strip()
        result["date"] = datetime.date.today().isoformat()
        path.write_text(json.dumps(result, indent=1))
        print(f"seed {seed} done in {result['seconds']:.0f} s -> {path}", flush=True)
        results.append(result)
    if not results:
        raise SystemExit(f"no finished seeds under {out}")
    table = markdown(results, results[-1]["command"], results[-1]["date"])
    print(table)
    if not args.no_docs:
        from common import write_between_markers
        print("written to", write_between_markers(table, "robust_training", ROOT / "docs" / "bigrad.md"))


if __name__ == "__main__":
    main()
