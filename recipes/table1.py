"""Table I of the paper on Cora: test and V_out accuracy (mean ± std over seeds) for the GNN and
Laplacian inner models under A_obs, BO, BO+regularization and BO+G2G, beside the paper's numbers.

    python recipes/table1.py --seeds 5                    # all cells (about 2 hours on 2 cores)
    python recipes/table1.py --seeds 5 --inner gnn --methods a_obs bo
    python recipes/table1.py --report-only                # rebuild the table from finished runs

Runs go to results/table1/<run>/ (resumable with --resume). The markdown table is printed and
written between the table1 markers of docs/results.md.
"""
from __future__ import annotations

import argparse
import re
from pathlib import Path

from common import METHOD_LABELS, PAPER_TABLE1, ROOT, cell_text, load_summary, run_cell

METHODS = ("a_obs", "bo", "bo+reg", "bo+g2g")
INNERS = ("gnn", "laplacian")
START, END = "<!-- table1:start -->", "<!-- table1:end -->"


def run_name(inner: str, method: str) -> str:
    return f"cora-{inner}-{method}"


def markdown(out: str) -> str:
    lines = [
        "| inner model | row | " + " | ".join(METHOD_LABELS[m] for m in METHODS) + " |",
        "|---|---|" + "---|" * len(METHODS),
    ]
    for inner in INNERS:
        for label, key, idx in (("test, ours", "test_acc", 0), ("test, paper", None, 0),
                                ("V_out, ours", "v_out_acc", 1), ("V_out, paper", None, 1)):
            cells = []
            for method in METHODS:
                if key is None:
                    cells.append(f"{PAPER_TABLE1[(inner, method)][idx]:.1f}")
                    continue
                summary = load_summary(out, run_name(inner, method))
                if summary is None:
                    cells.append("not run")
                else:
                    seeds = len(summary["per_seed"])
                    cells.append(cell_text(summary, key) + (f" ({seeds} seeds)" if seeds < 5 else ""))
            lines.append(f"| {'GNN' if inner == 'gnn' else 'Laplacian'} | {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_into_results(table: str) -> Path:
    path = ROOT / "docs" / "results.md"
    text = path.read_text() if path.is_file() else ""
    block = f"{START}\n{table}\n{END}"
    if START in text and END in text:
        text = re.sub(re.escape(START) + r".*?" + re.escape(END), lambda _: block, text, flags=re.S)
    else:
        text = text + "\n" + block + "\n"
    path.write_text(text)
    return path


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--inner", nargs="*", choices=INNERS, default=list(INNERS))
    p.add_argument("--methods", nargs="*", choices=METHODS, default=list(METHODS))
    p.add_argument("--out", default=str(ROOT / "results" / "table1"))
    p.add_argument("--data-root", default=None)
    p.add_argument("--resume", action="store_true")
    p.add_argument("--report-only", action="store_true")
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args()
    if not args.report_only:
        for inner in args.inner:
            for method in args.methods:
                # unroll on torch's graph (same numbers, ~30% faster; memory is no concern on Cora)
                run_cell("cora", inner, method, args.seeds, args.out, name=run_name(inner, method),
                         data_root=args.data_root, resume=args.resume, progress=not args.no_progress,
                         unroll_checkpoint=False)
    table = markdown(args.out)
    print(table)
    print(f"\nwritten into {write_into_results(table)}")


if __name__ == "__main__":
    main()
