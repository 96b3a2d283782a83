"""Honest baselines (issue 12.2): models that see the V_out labels bilevel optimisation (BO) learns
its graph on, beside BO's published numbers, so the tables can say whether learning the graph
beats simply training on more labels.

    OMP_NUM_THREADS=1 .venv/bin/python recipes/baselines.py                 # every run (5 seeds)
    OMP_NUM_THREADS=1 .venv/bin/python recipes/baselines.py --datasets texas --seeds 2
    OMP_NUM_THREADS=1 .venv/bin/python recipes/baselines.py --report-only   # the table from finished runs

Per data set (Cora with the Table I protocol; texas, cornell, wisconsin, chameleon with the
heterophilous protocol: seed ``s`` = official split ``s``, its validation part halved into V_out
and validation), each baseline trained on V_in (``--method a_obs``) and on V_in ∪ V_out
(``--method a_obs+v_out``), on the observed graph:

* the inner GNN of the paper (eq. 4, the Table I settings: 16 hidden, 100 Adam steps at 1e-2);
* the Laplacian inner problem (Cora only, Table I settings);
* GCN and APPNP (``--model gcn`` / ``appnp``), tuned per data set and training set on a small grid
  (hidden {16, 64} x inner lr {0.01, 0.05}; 100 steps, weight decay 5e-4; the inner models have
  no dropout: they are trained in eval mode for deterministic hypergradients) by the mean
  *validation* accuracy over the seeds -- the test accuracy is never read for a choice;
* label propagation (``--method lp``; ``--inner lp --method a_obs+v_out`` for V_in ∪ V_out),
  alpha 0.9, not tuned.

BO's rows are *copied* from the Table I and heterophilous tables of docs/results.md (parsed from
its text, with the dates those notes give); they are not rerun here. V_out accuracy is left out of
the table: for every V_in ∪ V_out row it is a training accuracy (it stays in each run's JSON).

Runs go to ``results/baselines/<data set>-<baseline>/`` (``seed_<s>.json``, ``summary.json``);
a rerun skips runs finished with the same settings and resumes partial ones. The table goes
between the ``baselines`` markers of docs/results.md (section "Honest baselines", created before
"## Heterophilous graphs" if missing).
"""
from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import re
import time
from pathlib import Path
from typing import Optional

from common import ROOT, cell_text, write_between_markers

from dgl_bilevel.experiment import ExperimentConfig, run_experiment
from dgl_bilevel.experiment.run import RESUME_FREE, changed_settings, comparable_settings

DATASETS = ("cora", "texas", "cornell", "wisconsin", "chameleon")
LABELS = {"cora": "Cora"}
TRAINING = {"v_in": "a_obs", "v_in+v_out": "a_obs+v_out"}
TRAINING_LABELS = {"v_in": "V_in", "v_in+v_out": "V_in ∪ V_out"}
MODEL_LABELS = {"gnn": "GNN eq. (4)", "laplacian": "Laplacian", "gcn": "GCN, tuned", "appnp": "APPNP, tuned",
                "lp": "label propagation"}
MARKER = "baselines"
SECTION = "## Honest baselines"
COMMAND = "OMP_NUM_THREADS=1 .venv/bin/python recipes/baselines.py"


@dataclasses.dataclass(frozen=True)
class Cell:
    """One run: a data set, a baseline (``model``), a training set and, for tuned models, a grid point."""

    dataset: str
    model: str
    training: str
    hidden: Optional[int] = None
    lr: Optional[float] = None

    @property
    def name(self) -> str:
        grid = f"-h{self.hidden}-lr{self.lr:g}" if self.hidden is not None else ""
        return f"{self.dataset}-{self.model}-{self.training}{grid}"

    def config(self, seeds: int, out: str, data_root: Optional[str],
               inner_steps: Optional[int] = None) -> ExperimentConfig:
        """The ``dgl-bilevel run`` configuration of this cell (``inner_steps``: None keeps the protocol's)."""
        options: dict = {} if inner_steps is None or self.model == "lp" else {"inner_steps": inner_steps}
        if self.model == "lp":
            inner, method = "lp", "lp" if self.training == "v_in" else "a_obs+v_out"
        else:
            inner, method = ("laplacian" if self.model == "laplacian" else "gnn"), TRAINING[self.training]
        if self.model in ("gcn", "appnp"):
            options.update(model=self.model, hidden=self.hidden, inner_lr=self.lr)
        elif self.model == "gnn":  # eq. (4) on every data set (off the paper's, the default model is sage)
            options.update(model="sumagg")
        return ExperimentConfig(dataset=self.dataset, inner=inner, method=method, seeds=seeds, out=out,
                                name=self.name, data_root=data_root, progress=False, resume=True,
                                save_graph=False, **options)


def cells(datasets, models, laplacian, hidden, lrs) -> list[Cell]:
    out = []
    for dataset in datasets:
        for model in models:
            if model == "laplacian" and dataset not in laplacian:
                continue
            for training in TRAINING:
                if model in ("gcn", "appnp"):
                    out += [Cell(dataset, model, training, h, lr) for h in hidden for lr in lrs]
                else:
                    out.append(Cell(dataset, model, training))
    return out


def finished(config: ExperimentConfig) -> Optional[dict]:
    """The run's summary if it holds every seed, finished with this configuration's settings."""
    resolved = config.resolved()
    path = Path(resolved.out) / resolved.run_name / "summary.json"
    if not path.is_file():
        return None
    summary = json.loads(path.read_text())
    saved = {k: v for k, v in summary.get("config", {}).items() if k not in RESUME_FREE}
    seeds = [r["seed"] for r in summary.get("per_seed", [])]
    if changed_settings(saved, comparable_settings(resolved)) or seeds != list(range(resolved.seed_start,
                                                                     resolved.seed_start + resolved.seeds)):
        return None
    return summary


def load(out: str, cell: Cell) -> Optional[dict]:
    path = Path(out) / cell.name / "summary.json"
    return json.loads(path.read_text()) if path.is_file() else None


def run_all(todo: list[Cell], seeds: int, out: str, data_root: Optional[str],
            inner_steps: Optional[int] = None) -> None:
    started = time.perf_counter()
    for i, cell in enumerate(todo, 1):
        config = cell.config(seeds, out, data_root, inner_steps)
        summary = finished(config)
        tic = time.perf_counter()
        state = "finished earlier, skipped"
        if summary is None:
            summary = run_experiment(config, echo=lambda *_: None)
            state = f"{time.perf_counter() - tic:.0f} s"
        agg = summary["aggregate"]
        print(f"[{i}/{len(todo)}] {cell.name}: val {cell_text(summary, 'val_acc')}, test "
              f"{cell_text(summary, 'test_acc')} over {len(summary['per_seed'])} seeds ({state}; "
              f"{(time.perf_counter() - started) / 60:.1f} min in all)", flush=True)
        assert agg["val_acc"]["mean"] == agg["val_acc"]["mean"], f"{cell.name}: no validation score"


# ----------------------------------------------------------------------------- selection and the report
def select(out: str, candidates: list[Cell]) -> tuple[Optional[Cell], Optional[dict]]:
    """The grid point of best mean validation accuracy over the seeds (ties: the first in grid order);
    every candidate must be finished with the same number of seeds."""
    best = (None, None)
    runs = [(c, load(out, c)) for c in candidates]
    if not runs or any(s is None for _, s in runs) or len({len(s["per_seed"]) for _, s in runs}) != 1:
        return best
    for cell, summary in runs:
        if best[1] is None or summary["aggregate"]["val_acc"]["mean"] > best[1]["aggregate"]["val_acc"]["mean"]:
            best = (cell, summary)
    return best


def copied_bo(results_md: Path) -> dict:
    """BO's test accuracy per data set, copied from the Table I and heterophilous blocks of
    docs/results.md: ``{("gnn" | "laplacian", data set): (text, source)}``; sources carry the dates
    those tables' notes give."""
    text = results_md.read_text() if results_md.is_file() else ""

    def block(marker: str) -> str:
        found = re.search(rf"<!-- {marker}:start -->(.*?)<!-- {marker}:end -->", text, flags=re.S)
        return found.group(1) if found else ""

    def rows(body: str) -> list[list[str]]:
        return [[c.strip() for c in line.strip().strip("|").split("|")] for line in body.splitlines()
                if line.strip().startswith("|") and not line.strip().startswith("|---")]

    def date(pattern: str, body: str) -> str:
        found = re.search(pattern, body)
        return found.group(1) if found else "date not stated"

    notes1, notes_h = block("table1-notes"), block("heterophilous-notes")
    first = date(r"(?:others\s+were\s+rerun\s+on|cell\s+comes\s+from\s+one\s+run\s+on)\s+(\d{4}-\d\d-\d\d)", notes1)
    rerun = date(r"†\s+marks\s+the\s+cells\s+rerun\s+on\s+(\d{4}-\d\d-\d\d)", notes1)
    out: dict = {}
    table1 = rows(block("table1"))
    if table1:
        col = table1[0].index("BO")
        for row in table1[1:]:
            if row[1] in ("test, ours", "test, ours, code"):  # the paper-code preset's row
                cell = row[col]
                inner = "gnn" if row[0] == "GNN" else "laplacian"
                out[(inner, "cora")] = (cell.replace("†", "").strip(),
                                        f"Table I ({'† rerun of ' + rerun if '†' in cell else 'runs of ' + first})")
    hetero, hetero_date = rows(block("heterophilous")), date(r"Runs of (\d{4}-\d\d-\d\d)", notes_h)
    if hetero:
        col = hetero[0].index("BO")
        for row in hetero[1:]:
            if row[1] == "test":
                cell = re.sub(r"\s*\(\d+\)$", "", row[col])
                out[("gnn", row[0])] = (cell, f"the heterophilous table (runs of {hetero_date})")
    return out


def _mean(text: str) -> Optional[float]:
    found = re.match(r"\s*([0-9.]+)", text or "")
    return float(found.group(1)) if found else None


def markdown(out: str, datasets, models, laplacian, hidden, lrs, results_md: Path, seeds: int = 5) -> str:
    """The baselines table (test accuracy, mean ± std over seeds), BO's copied rows, the
    same-model differences and the grid points chosen by validation."""
    bo = copied_bo(results_md)
    header = "| baseline | trained on | " + " | ".join(LABELS.get(d, d) for d in datasets) + " |"
    lines = [header, "|---|---|" + "---|" * len(datasets)]
    choices = []
    means: dict = {}
    for model in models:
        for training in TRAINING:
            cells_text, chosen = [], []
            for dataset in datasets:
                if model == "laplacian" and dataset not in laplacian:
                    cells_text.append("–")
                    continue
                if model in ("gcn", "appnp"):
                    cell, summary = select(out, [Cell(dataset, model, training, h, lr) for h in hidden for lr in lrs])
                    if cell is not None:
                        chosen.append(f"h {cell.hidden}, lr {cell.lr:g} (val {cell_text(summary, 'val_acc')})")
                    else:
                        chosen.append("not run")
                else:
                    summary = load(out, Cell(dataset, model, training))
                if summary is None:
                    cells_text.append("not run")
                    continue
                n = len(summary["per_seed"])
                cells_text.append(cell_text(summary, "test_acc") + ("" if n == seeds else f" ({n} seeds)"))
                means[(model, training, dataset)] = summary["aggregate"]["test_acc"]["mean"] * 100
            lines.append(f"| {MODEL_LABELS[model]} | {TRAINING_LABELS[training]} | " + " | ".join(cells_text) + " |")
            if chosen:
                choices.append(f"| {MODEL_LABELS[model]} | {TRAINING_LABELS[training]} | " + " | ".join(chosen) + " |")
    sources = []  # "GNN eq. (4): Cora from Table I, runs of ...; texas, ... from the heterophilous table, ..."
    for inner in ("gnn", "laplacian"):
        by_source: dict = {}
        for d in datasets:
            if (inner, d) in bo:
                by_source.setdefault(bo[(inner, d)][1], []).append(LABELS.get(d, d))
        if by_source:
            sources.append(f"BO, {MODEL_LABELS[inner]}: " + ", ".join(f"{', '.join(ds)} from {src}"
                                                               for src, ds in by_source.items()))
    for inner in ("gnn", "laplacian"):
        if inner not in models or not any((inner, d) in bo for d in datasets):
            continue
        cells_text = [f"{bo[(inner, d)][0]}" if (inner, d) in bo else "–" for d in datasets]
        lines.append(f"| **BO, {MODEL_LABELS[inner]}** (copied\\*) | V_in; graph learned on V_out | "
                     + " | ".join(cells_text) + " |")
    for inner in ("gnn", "laplacian"):
        diffs = []
        for d in datasets:
            with_labels, learned = means.get((inner, "v_in+v_out", d)), _mean(bo.get((inner, d), ("",))[0])
            diffs.append("–" if with_labels is None or learned is None else f"{with_labels - learned:+.1f}")
        if any(x != "–" for x in diffs):
            lines.append(f"| {MODEL_LABELS[inner]}: A_obs on V_in ∪ V_out minus BO | points | "
                         + " | ".join(diffs) + " |")
    dated = newest_run(out, datasets)
    parts = [
        f"Measured with `{COMMAND}` ({seeds} seeds; newest run finished {dated}). Test accuracy in percent, "
        "mean ± unbiased std over seeds; V_out accuracy is left out (a training accuracy for the V_in ∪ V_out "
        "rows; it is in each run's JSON).",
        "",
        *lines,
        "",
        "\\* Copied from docs/results.md, not rerun: "
        + ("; ".join(sources) if sources else "no BO numbers for these data sets") + ".",
    ]
    if choices:
        parts += ["", "Grid points chosen by mean validation accuracy (hidden units, inner learning rate):", "",
                  "| model | trained on | " + " | ".join(LABELS.get(d, d) for d in datasets) + " |",
                  "|---|---|" + "---|" * len(datasets), *choices]
    return "\n".join(parts)


def newest_run(out: str, datasets) -> str:
    stamps = [p.stat().st_mtime for d in datasets for p in Path(out).glob(f"{d}-*/summary.json")]
    return datetime.date.fromtimestamp(max(stamps)).isoformat() if stamps else "never"


def write_section(block: str, path: Path) -> Path:
    """The block between the baselines markers; the section is created before the heterophilous
    one when the markers are missing."""
    text = path.read_text() if path.is_file() else ""
    if f"<!-- {MARKER}:start -->" not in text:
        section = f"{SECTION}\n\n<!-- {MARKER}:start -->\n<!-- {MARKER}:end -->\n\n"
        anchor = "## Heterophilous graphs"
        text = text.replace(anchor, section + anchor, 1) if anchor in text else text + "\n" + section
        path.write_text(text)
    return write_between_markers(block, MARKER, path)


def main(argv: Optional[list] = None) -> str:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--datasets", nargs="*", default=list(DATASETS), help="data sets (default: %(default)s)")
    p.add_argument("--models", nargs="*", choices=list(MODEL_LABELS), default=list(MODEL_LABELS))
    p.add_argument("--laplacian", nargs="*", default=["cora"], help="data sets with Laplacian rows (default: cora)")
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--hidden", nargs="*", type=int, default=[16, 64], help="grid of GCN/APPNP hidden units")
    p.add_argument("--lr", nargs="*", type=float, default=[0.01, 0.05], help="grid of GCN/APPNP inner learning rates")
    p.add_argument("--inner-steps", type=int, default=None,
                   help="inner steps of every trained baseline (default: the protocol's; a cheap path for tests)")
    p.add_argument("--out", default=str(ROOT / "results" / "baselines"))
    p.add_argument("--data-root", default=None)
    p.add_argument("--report-only", action="store_true", help="only rebuild the table from finished runs")
    p.add_argument("--docs", default=str(ROOT / "docs" / "results.md"),
                   help="markdown file whose baselines block is written (default: %(default)s)")
    p.add_argument("--no-docs", action="store_true", help="print the table only")
    args = p.parse_args(argv)
    if not args.report_only:
        run_all(cells(args.datasets, args.models, args.laplacian, args.hidden, args.lr), args.seeds, args.out,
                args.data_root, args.inner_steps)
    table = markdown(args.out, args.datasets, args.models, args.laplacian, args.hidden, args.lr, Path(args.docs),
                     args.seeds)
    print(table)
    if not args.no_docs:
        print(f"\nwritten into {write_section(table, Path(args.docs))}")
    return table


if __name__ == "__main__":
    main()
