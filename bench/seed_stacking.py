"""Seeds stacked into one computation against one seed alone (issue 13.1: 5 seeds <= 2x one seed).

For each case, in one process and alternating: an outer iteration of one seed alone
(``OuterLoop.step``) and an outer iteration of ``S`` seeds in lockstep (``Lockstep.step``, the
stacked inner solve of ``dgl-bilevel run --seeds S``); the ratio of the medians is what ``S``
seeds cost against one (``S`` when run one after the other). Peak RSS is not separated here (one
process); ``dgl-bilevel run`` prints it per run with ``/usr/bin/time``.

    .venv/bin/python bench/seed_stacking.py                      # GNN and Laplacian, 5 seeds
    .venv/bin/python bench/seed_stacking.py --cases gnn --seeds 2 5 10 --repeats 5
"""
from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from dgl_bilevel.config import ExperimentConfig
from dgl_bilevel.experiment.build import build_loop
from dgl_bilevel.seeds import Lockstep

CASES = {
    "gnn": {"inner": "gnn"},  # unrolled (checkpointed), the Table I GNN cells
    "gnn-nockpt": {"inner": "gnn", "reverse_engine": "autograd"},
    "laplacian": {"inner": "laplacian", "hypergrad": "implicit"},  # the Table I Laplacian cells
}


def timed(step) -> float:
    started = time.perf_counter()
    step()
    return time.perf_counter() - started


def measure(case: str, seeds: int, repeats: int, dataset: str) -> dict:
    config = ExperimentConfig.from_mapping({"dataset": dataset, "method": "bo", "progress": False,
                                            **CASES[case]}).resolved()
    alone = build_loop(config, 0)
    together = Lockstep([build_loop(config, s) for s in range(seeds)])
    alone.step(), together.step()  # warm-up: plans, allocations
    one, many = [], []
    for _ in range(repeats):
        one.append(timed(alone.step))
        many.append(timed(together.step))
    ratio = statistics.median(many) / statistics.median(one)
    return {"case": case, "seeds": seeds, "one_seed_s": statistics.median(one), "stacked_s": statistics.median(many),
            "ratio": ratio, "sequential_ratio": seeds, "speedup_vs_sequential": seeds / ratio,
            "one_seed_runs": one, "stacked_runs": many}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cases", nargs="*", choices=sorted(CASES), default=["gnn", "laplacian"])
    p.add_argument("--seeds", nargs="*", type=int, default=[5])
    p.add_argument("--repeats", type=int, default=5, help="timed outer iterations of each kind (default: %(default)s)")
    p.add_argument("--dataset", default="cora")
    p.add_argument("--out", default="bench/out/seed_stacking.json")
    args = p.parse_args()
    rows = []
    print(f"torch threads: {torch.get_num_threads()}; {time.strftime('%Y-%m-%d %H:%M')}")
    print(f"{'case':<12} {'seeds':>5} {'1 seed s/it':>12} {'stacked s/it':>13} {'ratio':>6} {'vs one by one':>14}")
    for case in args.cases:
        for seeds in args.seeds:
            row = measure(case, seeds, args.repeats, args.dataset)
            rows.append(row)
            print(f"{case:<12} {seeds:>5} {row['one_seed_s']:>12.3f} {row['stacked_s']:>13.3f} {row['ratio']:>6.2f} "
                  f"{row['speedup_vs_sequential']:>13.2f}x")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"date": time.strftime("%Y-%m-%d %H:%M"), "rows": rows}, indent=2))
    print(f"written to {out}")


if __name__ == "__main__":
    main()
