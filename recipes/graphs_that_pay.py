"""Learned graphs against the labels: does learning the graph beat spending its labels on training?

    OMP_NUM_THREADS=1 .venv/bin/python recipes/graphs_that_pay.py                     # every row (10 seeds)
    OMP_NUM_THREADS=1 .venv/bin/python recipes/graphs_that_pay.py --tables clean      # Cora, both protocols
    OMP_NUM_THREADS=1 .venv/bin/python recipes/graphs_that_pay.py --tables noise --seeds 5
    OMP_NUM_THREADS=1 .venv/bin/python recipes/graphs_that_pay.py --report-only       # tables from finished runs

Every row runs the inner model of ``--config`` (default ``recipes/configs/cora-best.yaml``: the
BloomGML energy model, tuned on Cora validation only) on the Planetoid split of Cora, under a named
protocol:

* ``paper`` -- inner training on V_in (140 nodes), outer loss on V_out (half of the validation
  set), best graph selected on the other half, test reported.
* ``lds`` -- LDS's protocol: the outer loss on the whole validation set, which also selects
  (selection and outer loss share labels; test untouched).

Rows: ``A_obs`` (the inner model on the observed graph, trained on V_in); ``A_obs, V_in ∪ V_out``
(the honest baseline: trained on every label the bilevel run uses; paper protocol only);
``frozen`` (the bilevel run's loop, sampling and evaluation with the edge probabilities held at
their start: what the protocol gives without learning); ``bilevel, Bernoulli`` (edge probabilities
on the observed edges plus a cosine k-NN graph, graphs sampled, predictions averaged); ``bilevel,
edge weights`` (one weight per observed edge); ``+ refit`` (the inner model retrained on V_in ∪
V_out on the learned graph); ``cross-fit`` (graphs learned on K folds of V_in ∪ V_out, averaged,
refit on all labels). The noise table repeats the rows on Cora with 20-80% random edges added
(``cora-noise<level>``), with GCN, APPNP and a robust (IRLS) energy model on the noisy graph beside
them. Peers' published numbers are quoted with their sources and protocols.

Runs go to ``results/graphs_that_pay/<row>/`` (a rerun skips finished runs); tables between the
``graphs-that-pay`` and ``noise-table`` markers of docs/results.md; the figure is
docs/figures/noise_accuracy.png.
"""
from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import statistics
import time
from pathlib import Path
from typing import Optional

import torch
from common import ROOT, write_between_markers

from dgl_bilevel.config import ExperimentConfig, load_yaml
from dgl_bilevel.experiment import run_experiment
from dgl_bilevel.experiment.run import RESUME_FREE, changed_settings, comparable_settings

DEFAULT_CONFIG = ROOT / "recipes" / "configs" / "cora-best.yaml"
NOISE_LEVELS = (0, 20, 40, 60, 80)
BERNOULLI = {"structure": "bernoulli", "support": "observed+knn"}
LEARNED_ROWS = ("bernoulli", "bernoulli-shared")  # the noise table's learned-graph rows

#: Published numbers (test accuracy, %), with their protocol and source.
PEERS_CLEAN = [
    ("LDS", "84.1 ± 0.4", "LDS's (outer loss and early stopping on validation)",
     "Franceschi et al., ICML 2019, Table 1"),
    ("GRCN", "84.2", "Planetoid split", "Yu et al., 2020"),
    ("GRCN / IDGL / SUBLIME (OpenGSL)", "84.70 / 84.50 / 83.30", "OpenGSL, 10 seeds", "as tabulated in UnGSL, WWW 2025"),
    ("GCN", "81.5", "Planetoid split", "Kipf & Welling, 2017"),
]
PEERS_NOISE = {"GRCN": (84.7, 78.0, 75.1, 73.2, 69.4), "IDGL": (84.5, 78.6, 77.2, 74.4, 73.1)}
PEERS_NOISE_SOURCE = ("OpenGSL protocol, random edges added at 0/20/40/60/80% of the existing ones (GSLB's "
                      "random_add_edge: directed pairs, not de-duplicated), as tabulated in UnGSL (WWW 2025)")


@dataclasses.dataclass(frozen=True)
class Row:
    """One run: a label, a protocol and the options it changes in the base configuration."""

    key: str
    label: str
    protocol: str
    options: tuple = ()
    #: key of a ``paper``-protocol row whose stopping point (chosen on its held-out selection half) sets
    #: this row's ``outer_steps``: under ``lds`` validation is the outer loss and cannot choose it.
    stop_from: Optional[str] = None

    def config(self, base: dict, dataset: str, seeds: int, out: str, data_root: Optional[str],
               progress: bool) -> ExperimentConfig:
        # rows add the shared term and the refit only where they name them, whatever the base configuration ships
        values = {**base, "theta_shared": "none", "refit": False, **dict(self.options), "dataset": dataset, "protocol": self.protocol, "seeds": seeds,
                  "seed_start": 0, "out": out, "name": f"{dataset}-{self.protocol}-{self.key}",
                  "data_root": data_root, "progress": progress, "resume": True}
        if self.stop_from is not None:
            values["outer_steps"] = held_out_stop(out, Row(self.stop_from, "", "paper"), dataset)
        return ExperimentConfig(**values)


def held_out_stop(out: str, row: Row, dataset: str) -> int:
    """Outer steps that end at the median best iteration of a finished ``paper``-protocol row (each
    seed's best iteration chosen on the selection half, which that run never trained on)."""
    records = [json.loads(p.read_text())["result"] for p in sorted(run_dir(out, row, dataset).glob("seed_*.json"))]
    if not records:
        raise SystemExit(f"row {row.key} ({dataset}, paper protocol) must run before the rows that stop where it "
                         "peaked: run it first (it is earlier in the row list)")
    return int(round(statistics.median(r["best_iteration"] for r in records))) + 1


def clean_rows() -> list[Row]:
    rows = []
    for protocol in ("paper", "lds"):
        rows.append(Row("a_obs", "A_obs", protocol, (("method", "a_obs"),)))
        if protocol == "paper":
            rows.append(Row("a_obs+v_out", "A_obs, trained on V_in ∪ V_out", protocol, (("method", "a_obs+v_out"),)))
        rows.append(Row("frozen", "frozen (Bernoulli, not learned)", protocol,
                        tuple(BERNOULLI.items()) + (("freeze_structure", True),)))
        rows.append(Row("bernoulli", "bilevel, Bernoulli on observed + k-NN", protocol,
                        tuple(BERNOULLI.items()) + (("refit", protocol == "paper"),)))
        rows.append(Row("edges", "bilevel, edge weights on observed", protocol,
                        (("structure", "edges"), ("support", "observed"), ("refit", protocol == "paper"))))
    rows.append(Row("bernoulli-shared", "bilevel, Bernoulli + shared cosine term", "paper",
                    tuple(BERNOULLI.items()) + (("theta_shared", "cosine"), ("refit", True))))
    rows.append(Row("bernoulli-stop", "bilevel, Bernoulli, stopped where the paper protocol's held-out half peaks",
                    "lds", tuple(BERNOULLI.items()), stop_from="bernoulli"))
    rows.append(Row("bernoulli-shared-stop", "bilevel, Bernoulli + shared cosine term, stopped where the paper "
                    "protocol's held-out half peaks", "lds", tuple(BERNOULLI.items()) + (("theta_shared", "cosine"),),
                    stop_from="bernoulli-shared"))
    rows.append(Row("edges-stop", "bilevel, edge weights, stopped where the paper protocol's held-out half peaks",
                    "lds", (("structure", "edges"), ("support", "observed")), stop_from="edges"))
    rows.append(Row("crossfit3", "cross-fit, 3 folds (Bernoulli), refit", "paper",
                    tuple(BERNOULLI.items()) + (("cross_fit", 3),)))
    return rows


def noise_rows() -> list[Row]:
    return [
        Row("gcn", "GCN (h 64, lr 0.01)", "paper", (("method", "a_obs"), ("inner", "gnn"), ("model", "gcn"),
                                                     ("hidden", 64), ("inner_lr", 0.01))),
        Row("appnp", "APPNP (h 16, lr 0.05)", "paper", (("method", "a_obs"), ("inner", "gnn"), ("model", "appnp"),
                                                         ("hidden", 16), ("inner_lr", 0.05))),
        Row("a_obs", "energy, quadratic (A_obs)", "paper", (("method", "a_obs"),)),
        Row("irls", "energy, IRLS Huber (A_obs)", "paper", (("method", "a_obs"), ("energy_step", "irls"),
                                                             ("penalty", "huber"))),
        Row("a_obs+v_out", "energy, trained on V_in ∪ V_out", "paper", (("method", "a_obs+v_out"),)),
        Row("frozen", "frozen (Bernoulli, not learned)", "paper",
            tuple(BERNOULLI.items()) + (("freeze_structure", True),)),
        Row("bernoulli", "bilevel, Bernoulli on observed + k-NN", "paper",
            tuple(BERNOULLI.items()) + (("refit", True),)),
        Row("bernoulli-shared", "bilevel, Bernoulli + shared cosine term", "paper",
            tuple(BERNOULLI.items()) + (("theta_shared", "cosine"), ("refit", True))),
    ]


def noise_dataset(level: int) -> str:
    return "cora" if level == 0 else f"cora-noise{level}"


def run_dir(out: str, row: Row, dataset: str) -> Path:
    return Path(out) / f"{dataset}-{row.protocol}-{row.key}"


def finished(config: ExperimentConfig) -> bool:
    resolved = config.resolved()
    path = Path(resolved.out) / resolved.run_name / "summary.json"
    if not path.is_file():
        return False
    summary = json.loads(path.read_text())
    saved = {k: v for k, v in summary.get("config", {}).items() if k not in RESUME_FREE}
    return not changed_settings(saved, comparable_settings(resolved)) and len(summary.get("per_seed", [])) == resolved.seeds


def run_rows(jobs: list[tuple[Row, str]], base: dict, seeds: int, out: str, data_root: Optional[str],
             progress: bool) -> None:
    started = time.perf_counter()
    for i, (row, dataset) in enumerate(jobs, 1):
        config = row.config(base, dataset, seeds, out, data_root, progress)
        tic = time.perf_counter()
        state = "finished earlier, skipped"
        if not finished(config):
            run_experiment(config, echo=lambda *_: None)
            state = f"{time.perf_counter() - tic:.0f} s"
        cells = read(out, row, dataset)
        print(f"[{i}/{len(jobs)}] {dataset} {row.protocol} {row.key}: test {cells.get('test_acc', '–')}, refit "
              f"{cells.get('refit_test_acc', '–')} ({state}; {(time.perf_counter() - started) / 60:.1f} min in all)",
              flush=True)


def rescore_refit(jobs: list[tuple[Row, str]], base: dict, seeds: int, out: str, data_root: Optional[str]) -> None:
    """Re-score the refit of finished rows whose records predate the validation gate, from the graphs
    they saved (the refit needs only the learned graph): ``refit_seed<s>.json`` beside each record,
    merged into it by :func:`read`. The recomputed ``refit_test_acc`` must equal the recorded one."""
    from dgl_bilevel._dgl import dgl
    from dgl_bilevel.experiment.build import build_structure
    from dgl_bilevel.experiment.refit import all_label_candidates, fresh_sampler, gated as gate_record, refit
    from dgl_bilevel.experiment.seed_files import run_data
    from dgl_bilevel.outer import FitResult

    for row, dataset in jobs:
        config = row.config(base, dataset, seeds, out, data_root, False).resolved()
        if not (config.refit or config.cross_fit):
            continue
        folder = run_dir(out, row, dataset)
        for path in sorted(folder.glob("seed_*.json")):
            record = json.loads(path.read_text())["result"]
            seed, target = record["seed"], folder / f"refit_seed{record['seed']}.json"
            if "refit_gate_p_learned" in record or target.is_file():
                continue
            data = run_data(config, seed)
            structure = build_structure(config, data, seed)
            (saved,), _ = dgl.load_graphs(str(folder / f"graph_seed{seed}.bin"))
            if not all(torch.equal(a, b) for a, b in zip(saved.edges(), structure.graph.edges())):
                raise SystemExit(f"{folder}: graph_seed{seed}.bin is not on the support this configuration builds")
            weights = saved.edata["w"].to(data.features.dtype)
            if config.cross_fit:
                sampler = fresh_sampler(structure.sampler, seed) if structure.sampler is not None else None
                candidates = all_label_candidates(config, data, structure.graph, weights, seed, sampler)
                scores = {"refit_test_acc": candidates["learned"][0]["test"], **gate_record(candidates, data, seed)}
            else:
                result = FitResult(best_iteration=-1, best_metrics={}, best_weights=weights, final_weights=weights,
                                   history=[], support=structure.graph, config={}, metric=data.metric.name)
                scores = refit(config, data, result, seed, structure.sampler)
            recorded = record.get("refit_test_acc", record.get("test_acc"))
            print(f"{folder.name} seed {seed}: refit test {scores['refit_test_acc']:.4f} (recorded {recorded:.4f}), "
                  f"gate keeps {scores['refit_gate']}", flush=True)
            target.write_text(json.dumps(scores, indent=1))


def seed_records(folder: Path) -> list[dict]:
    """A row's seed records, completed by their re-scored refits (:func:`rescore_refit`)."""
    records = [json.loads(p.read_text())["result"] for p in sorted(folder.glob("seed_*.json"))]
    for record in records:
        rescored = folder / f"refit_seed{record['seed']}.json"
        if rescored.is_file():
            record.update({k: v for k, v in json.loads(rescored.read_text()).items()
                           if k not in record or k.startswith("refit_gate")})
    return records


def read(out: str, row: Row, dataset: str) -> dict:
    """Mean ± std (percent) of every score a row's seeds recorded, plus ``seeds`` and ``date``."""
    folder = run_dir(out, row, dataset)
    records = seed_records(folder)
    if not records:
        return {}
    cells: dict = {"seeds": len(records),
                   "date": datetime.datetime.fromtimestamp(max(p.stat().st_mtime for p in folder.glob("seed_*.json")),
                                                           datetime.timezone.utc).strftime("%Y-%m-%d")}
    for key in records[0]:
        values = [r.get(key) for r in records]
        if key.endswith("_acc") and all(isinstance(v, (int, float)) for v in values):
            mean = 100 * statistics.fmean(values)
            std = 100 * statistics.stdev(values) if len(values) > 1 else float("nan")
            cells[key] = f"{mean:.1f} ± {std:.1f}" if std == std else f"{mean:.1f}"
            cells[key + "_mean"] = mean
    seconds = [r.get("median_seconds_per_iteration") for r in records]
    seconds = [s for s in seconds if isinstance(s, (int, float)) and s == s]
    if seconds:
        cells["seconds"] = statistics.median(seconds)
    return cells


def gated(out: str, row: Row, dataset: str) -> str:
    """Mean ± std of ``refit_gated_test_acc``: the model the validation gate keeps per seed."""
    values = [r["refit_gated_test_acc"] for r in seed_records(run_dir(out, row, dataset)) if "refit_gated_test_acc" in r]
    if not values:
        return "–"
    mean = 100 * statistics.fmean(values)
    return f"{mean:.1f} ± {100 * statistics.stdev(values):.1f}" if len(values) > 1 else f"{mean:.1f}"


def clean_table(out: str) -> str:
    lines = ["| protocol | row | test | val | refit on V_in ∪ V_out (test) | refit, graph chosen by val (test) | "
             "expected graph (test) | thresholded at 0.5 (test) | seeds |", "|---|---|---|---|---|---|---|---|---|"]
    for row in clean_rows():
        c = read(out, row, "cora")
        if not c:
            continue
        choice = gated(out, row, "cora")
        lines.append(f"| {row.protocol} | {row.label} | {c.get('test_acc', '–')} | {c.get('val_acc', '–')} | "
                     f"{c.get('refit_test_acc', '–')} | {choice} | {c.get('expected_test_acc', '–')} | "
                     f"{c.get('thresholded_test_acc', '–')} | {c['seeds']} ({c['date']}) |")
    peers = ["", "Published numbers (not rerun here):", "", "| method | Cora test | protocol | source |",
             "|---|---|---|---|"]
    peers += [f"| {name} | {value} | {protocol} | {source} |" for name, value, protocol, source in PEERS_CLEAN]
    return "\n".join(lines + peers)


def noise_table(out: str) -> str:
    head = "| row | " + " | ".join(f"+{level}%" for level in NOISE_LEVELS) + " |"
    lines = [head, "|---|" + "---|" * len(NOISE_LEVELS)]
    for row in noise_rows():
        cells = [read(out, row, noise_dataset(level)) for level in NOISE_LEVELS]
        lines.append(f"| {row.label} | " + " | ".join(c.get("test_acc", "–") for c in cells) + " |")
        if row.key in LEARNED_ROWS:
            lines.append("| ... + refit on V_in ∪ V_out | " + " | ".join(c.get("refit_test_acc", "–") for c in cells)
                         + " |")
            lines.append("| ... + refit, graph chosen by validation | "
                         + " | ".join(gated(out, row, noise_dataset(level)) for level in NOISE_LEVELS) + " |")
            lines.append("| ... its expected graph (theta as weights) | "
                         + " | ".join(c.get("expected_test_acc", "–") for c in cells) + " |")
    for name, values in PEERS_NOISE.items():
        lines.append(f"| {name} (published\\*) | " + " | ".join(f"{v:.1f}" for v in values) + " |")
    lines += ["", f"\\* {PEERS_NOISE_SOURCE}; not rerun here."]
    return "\n".join(lines)


def edge_rows(out: str, data_root: Optional[str]) -> list[tuple[str, str, dict]]:
    """Learned-edge statistics of every Bernoulli run, recomputed from the saved graphs (mean over seeds)."""
    from dgl_bilevel._dgl import dgl
    from dgl_bilevel.data import load_dataset
    from dgl_bilevel.diagnostics import edge_statistics
    from dgl_bilevel.experiment.refit import _spurious_on

    rows = []
    jobs = [(row, "cora") for row in clean_rows() if row.key in ("bernoulli", "bernoulli-shared", "frozen")]
    jobs += [(row, noise_dataset(level)) for level in NOISE_LEVELS[1:] for row in noise_rows() if row.key in LEARNED_ROWS]
    for row, dataset in jobs:
        folder = run_dir(out, row, dataset)
        per_seed = []
        for path in sorted(folder.glob("graph_seed*.bin")):
            seed = int(path.stem.removeprefix("graph_seed"))
            data = load_dataset(dataset, data_root, seed)
            (graph,), _ = dgl.load_graphs(str(path))
            per_seed.append(edge_statistics(graph, graph.edata["w"], data.labels, _spurious_on(graph, data)))
        if per_seed:
            keys = per_seed[0].keys()
            rows.append((dataset, f"{row.protocol}, {row.key}",
                         {k: statistics.fmean(s[k] for s in per_seed) for k in keys} | {"seeds": len(per_seed)}))
    return rows


def edge_table(out: str, data_root: Optional[str]) -> str:
    lines = ["| data set | run | mean theta, observed | mean theta, added | added kept (theta > 0.5) | "
             "same class: observed / added / theta-weighted | mean theta, true / spurious | AUC true vs spurious | "
             "seeds |", "|---|---|---|---|---|---|---|---|---|"]
    for dataset, name, m in edge_rows(out, data_root):
        spurious = (f"{m['mean_w_true']:.3f} / {m['mean_w_spurious']:.3f}", f"{m['true_edge_auc']:.3f}") \
            if "true_edge_auc" in m else ("–", "–")
        lines.append(f"| {dataset} | {name} | {m['mean_w_observed']:.3f} | {m.get('mean_w_added', float('nan')):.3f} | "
                     f"{100 * m.get('kept_added', float('nan')):.1f}% | {100 * m['same_class_observed']:.1f}% / "
                     f"{100 * m.get('same_class_added', float('nan')):.1f}% / {100 * m['same_class_weighted']:.1f}% | "
                     f"{spurious[0]} | {spurious[1]} | {m['seeds']} |")
    return "\n".join(lines)


def noise_figure(out: str, path: Path) -> Optional[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for row in noise_rows():
        means = [read(out, row, noise_dataset(level)).get("test_acc_mean") for level in NOISE_LEVELS]
        if all(m is None for m in means):
            continue
        points = [(level, m) for level, m in zip(NOISE_LEVELS, means) if m is not None]
        style = "-o" if row.key in LEARNED_ROWS else "-" if row.key in ("a_obs", "a_obs+v_out") else "--"
        ax.plot(*zip(*points), style, label=row.label, linewidth=2.2 if row.key in LEARNED_ROWS else 1.2)
    for name, values in PEERS_NOISE.items():
        ax.plot(NOISE_LEVELS, values, ":", marker="s", markersize=3, label=f"{name} (published)")
    ax.set_xlabel("random edges added (% of the observed edges)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title("Cora with random edges: learned graph vs. baselines")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=130)
    plt.close(fig)
    return path


def main(argv: Optional[list] = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--config", default=str(DEFAULT_CONFIG), help="the inner model and bilevel settings (YAML)")
    p.add_argument("--tables", nargs="+", choices=("clean", "noise"), default=("clean", "noise"))
    p.add_argument("--levels", nargs="+", type=int, default=NOISE_LEVELS)
    p.add_argument("--rows", nargs="+", default=None, help="only these row keys")
    p.add_argument("--seeds", type=int, default=10)
    p.add_argument("--out", default=str(ROOT / "results" / "graphs_that_pay"))
    p.add_argument("--data-root", default=None)
    p.add_argument("--report-only", action="store_true")
    p.add_argument("--no-docs", action="store_true", help="print the tables, leave docs/ alone")
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)
    base = {k: v for k, v in load_yaml(args.config).items() if k not in ("dataset", "seeds", "seed_start", "out", "name")}
    wanted: list[tuple[Row, str]] = []
    if "clean" in args.tables:
        wanted += [(row, "cora") for row in clean_rows()]
    if "noise" in args.tables:
        wanted += [(row, noise_dataset(level)) for level in args.levels for row in noise_rows()]
    jobs = list({run_dir(args.out, row, dataset): (row, dataset) for row, dataset in wanted}.values())  # each run once
    if args.rows:
        jobs = [(row, dataset) for row, dataset in jobs if row.key in args.rows]
    if not args.report_only:
        run_rows(jobs, base, args.seeds, args.out, args.data_root, not args.no_progress)
        rescore_refit(jobs, base, args.seeds, args.out, args.data_root)
    clean, noise, edges = clean_table(args.out), noise_table(args.out), edge_table(args.out, args.data_root)
    print(clean, "\n", noise, "\n", edges, sep="\n")
    if not args.no_docs:
        write_between_markers(clean, "graphs-that-pay")
        write_between_markers(noise, "noise-table")
        write_between_markers(edges, "learned-edges")
        noise_figure(args.out, ROOT / "docs" / "figures" / "noise_accuracy.png")


if __name__ == "__main__":
    main()
