"""BloomGML energy models on heterophilous graphs (texas, cornell, wisconsin, chameleon), over the
10 official splits, next to the GNN columns of docs/results.md.

    python recipes/bloomgml_heterophilous.py                         # every data set and row, 10 splits
    python recipes/bloomgml_heterophilous.py --datasets texas --rows mlp quadratic --seeds 2
    python recipes/bloomgml_heterophilous.py --report-only

Seed ``s`` uses official split ``s`` (``dgl_bilevel.data.load_dataset(name, root, s)``): train on
``v_in`` (the official training nodes), select the epoch on ``v_out ∪ val`` (the official
validation nodes), report test. The training recipe is the one of
``bloomgml_node_classification.py`` (MLP 64 hidden, dropout 0.5 on input and hidden layer, Adam
lr 0.01, weight decay 5e-4, best-validation epoch). Table between the ``bloomgml-heterophilous``
markers of docs/bloomgml.md.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bloomgml_node_classification import (  # noqa: E402
    ROOT, MLPNet, TrainConfig, energy, lp_lam, pm, train_node_classifier, write_doc_block, write_json,
)
from dgl_bilevel.energy import make_penalty  # noqa: E402

DATASETS = ("texas", "cornell", "wisconsin", "chameleon")
ROWS = {
    "mlp": ("MLP (no graph)", lambda i, h, c, k, d: MLPNet(i, h, c, d)),
    "quadratic": ("energy, quadratic, sym, lam 9 (= APPNP)", energy()),
    "quadratic-lam1": ("energy, quadratic, sym, lam 1", energy(lam=1.0)),
    "quadratic-lam0.1": ("energy, quadratic, sym, lam 0.1", energy(lam=0.1)),
    "unnormalised-lam0.1": ("energy, quadratic, unnormalised (HALO-style Jacobi step), lam 0.1",
                            energy(lam=0.1, normalize="none")),
    "irls-lp": ("energy, IRLS, sym, lp p 0.1 tau 0.2, lam 9 / sup rho'",
                energy("irls", make_penalty("lp", p=0.1, tau=0.2), lam=lp_lam(0.1, 0.2))),
    "irls-lp-lam1": ("energy, IRLS, sym, lp p 0.1 tau 0.2, lam 1 / sup rho'",
                     energy("irls", make_penalty("lp", p=0.1, tau=0.2), lam=lp_lam(0.1, 0.2, 1.0))),
}
#: columns of docs/results.md's heterophilous table (2-layer eq. (4) GNN; first 5 splits; test accuracy)
RESULTS_MD = {
    "texas": ("76.2 ± 5.5", "80.5 ± 7.5"),
    "cornell": ("69.7 ± 3.0", "74.1 ± 3.1"),
    "wisconsin": ("76.1 ± 5.3", "78.4 ± 5.4"),
    "chameleon": ("58.6 ± 1.6", "62.8 ± 2.8"),
}


def markdown(out: Path, datasets, rows) -> str:
    header = "| row | " + " | ".join(datasets) + " |"
    lines = [header, "|---|" + "---|" * len(datasets)]
    for row in rows:
        cells = []
        for dataset in datasets:
            path = out / f"{dataset}-{row}.json"
            if not path.is_file():
                cells.append("-")
                continue
            runs = json.loads(path.read_text())["runs"]
            cells.append(f"{pm([r['test_acc'] for r in runs])} ({len(runs)})")
        lines.append(f"| {ROWS[row][0]} | " + " | ".join(cells) + " |")
    lines.append("| *docs/results.md: GNN on A_obs (first 5 splits)* | "
                 + " | ".join(f"*{RESULTS_MD[d][0]} (5)*" for d in datasets) + " |")
    lines.append("| *docs/results.md: GNN, BO edge refinement (first 5 splits)* | "
                 + " | ".join(f"*{RESULTS_MD[d][1]} (5)*" for d in datasets) + " |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--datasets", nargs="*", choices=DATASETS, default=list(DATASETS))
    p.add_argument("--rows", nargs="*", choices=list(ROWS), default=list(ROWS))
    p.add_argument("--seeds", type=int, default=10, help="splits 0 .. seeds-1 (at most 10)")
    p.add_argument("--epochs", type=int, default=300)
    p.add_argument("--data-root", default=None)
    p.add_argument("--out", default=str(ROOT / "results" / "bloomgml" / "heterophilous"))
    p.add_argument("--report-only", action="store_true")
    p.add_argument("--no-doc", action="store_true")
    args = p.parse_args()
    torch.set_num_threads(1)
    out = Path(args.out)
    config = TrainConfig(epochs=args.epochs)
    if not args.report_only:
        from dgl_bilevel.data import load_dataset

        for dataset in args.datasets:
            splits = [load_dataset(dataset, args.data_root, s) for s in range(min(args.seeds, 10))]
            for row in args.rows:
                runs = []
                for seed, data in enumerate(splits):
                    torch.manual_seed(seed)
                    model = ROWS[row][1](data.num_features, config.hidden, data.num_classes, config.steps,
                                         config.dropout)
                    result, _ = train_node_classifier(model, data, config, seed)
                    runs.append({"seed": seed, **result.__dict__})
                print(f"{dataset} {row}: test {pm([r['test_acc'] for r in runs])} "
                      f"({statistics.fmean(r['seconds'] for r in runs):.1f} s / split)", flush=True)
                write_json(out / f"{dataset}-{row}.json", {"dataset": dataset, "row": row, "config": config.__dict__,
                                                           "runs": runs})
    block = markdown(out, args.datasets, args.rows)
    print(block)
    if not args.no_doc:
        write_doc_block(block, "bloomgml-heterophilous")


if __name__ == "__main__":
    main()
