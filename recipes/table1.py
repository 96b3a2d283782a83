"""Table I of the paper on Cora: test and V_out accuracy (mean ± std over seeds) for the GNN and
Laplacian inner models under A_obs, BO, BO+regularization and BO+G2G, beside the paper's numbers.

    python recipes/table1.py --seeds 5                    # all cells (see docs/benchmarks.md for the time)
    python recipes/table1.py --seeds 5 --inner gnn --methods a_obs bo
    python recipes/table1.py --report-only                # rebuild the table from finished runs
    python recipes/table1.py --seeds 5 --preset paper-text  # the paper text's settings (rows "ours, text")

Two presets (``--preset``, see ``dgl_bilevel.config.PAPER_TEXT``): ``paper-code``, the settings of
the paper's public code (GNN 16 hidden, G2G 32 x 1, 200 outer steps), and ``paper-text``, what
the paper's section VI says (GNN 128 hidden, G2G 2 x 32, 150 outer steps, Laplacian inner lr
0.1, outer lr 1e-3 for Laplacian + G2G). Each preset has its own rows in the table.

Hypergradients: the GNN cells differentiate through the 100 inner steps as the paper does; the
Laplacian cells use the implicit hypergradient at the end of the 500 inner steps (one seed: 0.15 s
per outer iteration against 0.52 s unrolled, ``bench/benchmarks.py``, 2026-12-03; the same accuracy
after 10 outer iterations on seed 0 when measured on 2026-11-23: 71.2 test both).
``--hypergrad-laplacian unrolled`` gives the paper's method.

Speed: the learned cells' 30 seeds are dealt round-robin to worker processes (``--workers``), each
stacking the GNN seeds of its share into one inner solve and then its Laplacian seeds into another
(docs/usage.md) on one thread: on 2 cores faster than one stack on two threads. By default there are as
many workers as CPUs or, when that does not split the 15 learned GNN seeds evenly, the fewest more that
do (:func:`default_workers`: 3 on 2 cores). The A_obs cells run after them in this process.

Runs go to results/table1/<run>/ (resumable with --resume, whatever the worker count). The markdown table is printed and
written between the table1 markers of docs/results.md.
"""
from __future__ import annotations

import argparse
import time

import torch
from common import METHOD_LABELS, PAPER_TABLE1, add_table_arguments, cell_text, load_summary, write_between_markers

from dgl_bilevel.experiment import ExperimentConfig, run_experiments  # after common: it puts the repository on the path
from dgl_bilevel.experiment.executors import available_cpus

METHODS = ("a_obs", "bo", "bo+reg", "bo+g2g")
INNERS = ("gnn", "laplacian")
PRESETS = ("paper-code", "paper-text")
#: how each preset's rows are labelled in the table
PRESET_LABELS = {"paper-code": "ours, code", "paper-text": "ours, text"}


def run_name(inner: str, method: str, preset: str = "paper-code") -> str:
    """The run folder of a cell (the paper-code runs keep their original names)."""
    return f"cora-{inner}-{method}" + ("" if preset == "paper-code" else f"-{preset}")


def markdown(out: str) -> str:
    lines = [
        "| inner model | row | " + " | ".join(METHOD_LABELS[m] for m in METHODS) + " |",
        "|---|---|" + "---|" * len(METHODS),
    ]
    rows = [(f"{split}, {PRESET_LABELS[preset]}", key, idx, preset)
            for split, key, idx in (("test", "test_acc", 0), ("V_out", "v_out_acc", 1))
            for preset in PRESETS]
    rows.insert(len(PRESETS), ("test, paper", None, 0, None))
    rows.append(("V_out, paper", None, 1, None))
    for inner in INNERS:
        for label, key, idx, preset in rows:
            cells = []
            for method in METHODS:
                if key is None:
                    cells.append(f"{PAPER_TABLE1[(inner, method)][idx]:.1f}")
                    continue
                summary = load_summary(out, run_name(inner, method, preset))
                if summary is None:
                    cells.append("not run")
                else:
                    seeds = len(summary["per_seed"])
                    cells.append(cell_text(summary, key) + (f" ({seeds} seeds)" if seeds < 5 else ""))
            lines.append(f"| {'GNN' if inner == 'gnn' else 'Laplacian'} | {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def default_workers(learned_seeds: int, cpus: int) -> int:
    """The fewest worker processes, one to two per CPU, that deal the learned GNN seeds (the costly
    ones) evenly with at least two seeds to stack in each: 15 seeds on 2 CPUs go to 3 workers of 5
    (7.5 seeds' work per core) rather than 2 workers of 8 and 7 (8); one per CPU where none does.
    Measured on 2 cores, 2026-12-03: Table I in 14.6-14.7 min (three runs) with 3 workers against 15.3 min twice with 2
    (docs/benchmarks.md)."""
    for workers in range(cpus, 2 * cpus + 1):
        if learned_seeds % workers == 0 and learned_seeds // workers >= 2:
            return workers
    return cpus


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--inner", nargs="*", choices=INNERS, default=list(INNERS))
    p.add_argument("--methods", nargs="*", choices=METHODS, default=list(METHODS))
    add_table_arguments(p, "table1")
    p.add_argument("--hypergrad-gnn", default="unrolled", help="hypergradient of the GNN cells (default: %(default)s)")
    p.add_argument("--hypergrad-laplacian", default="implicit",
                   help="hypergradient of the Laplacian cells (default: %(default)s)")
    p.add_argument("--preset", nargs="*", choices=PRESETS, default=["paper-code"],
                   help="whose settings: the paper's public code and/or its text (default: %(default)s)")
    p.add_argument("--no-docs", action="store_true", help="print the table, do not write it into docs/results.md")
    p.add_argument("--stack-seeds", choices=("auto", "on", "off"), default="auto",
                   help="share the inner solves of every learned cell's seeds (default: %(default)s)")
    p.add_argument("--workers", type=int, default=None,
                   help="worker processes sharing the learned cells' seeds, one torch thread each (default: the "
                        "fewest, at least one per CPU, that split the learned GNN seeds evenly -- 3 for 15 seeds on 2 "
                        "CPUs; 1: this process, stacked)")
    args = p.parse_args()
    if not args.report_only:
        started = time.perf_counter()
        learned = args.seeds * sum(method != "a_obs" for method in args.methods)
        workers = args.workers or default_workers(learned, available_cpus())
        for preset in args.preset:
            # every cell of a preset in one call: the learned cells' seeds are dealt to the workers, each
            # stacking its GNN seeds and its Laplacian seeds (dgl_bilevel.seeds; --stack-seeds off runs them apart)
            configs = [ExperimentConfig(
                dataset="cora", inner=inner, method=method, seeds=args.seeds, out=args.out,
                name=run_name(inner, method, preset), data_root=args.data_root, resume=args.resume,
                progress=not args.no_progress, preset=preset, stack_seeds=args.stack_seeds,
                # the GNN unrolls on its hand-derived second derivatives (the default; faster than
                # torch's graph, docs/benchmarks.md)
                hypergrad=None if method == "a_obs" else (args.hypergrad_gnn if inner == "gnn" else args.hypergrad_laplacian),
                workers=workers)
                for inner in args.inner for method in args.methods]
            run_experiments(configs)
        wall = time.perf_counter() - started
        print(f"\nTable I: {len(args.preset) * len(args.inner) * len(args.methods)} cells x {args.seeds} seeds in "
              f"{wall / 60:.1f} min wall ({time.strftime('%Y-%m-%d %H:%M')}, learned cells in {workers} worker "
              f"process(es); {torch.get_num_threads()} torch threads here)")
    table = markdown(args.out)
    print(table)
    if not args.no_docs:
        print(f"\nwritten into {write_between_markers(table, 'table1')}")


if __name__ == "__main__":
    main()
