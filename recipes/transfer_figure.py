"""Figure: what each graph a run can hand over does to a user's DGL model, against the observed graph.

    OMP_NUM_THREADS=1 .venv/bin/python recipes/transfer_figure.py \\
        results/graphs_that_pay/cora-paper-bernoulli-shared \\
        results/graphs_that_pay/cora-noise40-paper-bernoulli-shared \\
        results/graphs_that_pay/cora-noise60-paper-bernoulli-shared \\
        results/graphs_that_pay/cora-noise80-paper-bernoulli-shared

Reads the ``transfer_v_in+v_out_graph.json`` that ``recipes/transfer_dgl.py`` wrote in each run folder
(nothing is retrained) and draws, per layer, the mean test-accuracy difference to the observed graph
with its standard error over seeds, for the returned graph (``result.graph``), the graph handed over
by the run's validation test and that choice confirmed by the user's model. The x axis is the share
of random edges added, read from the data set's name (``cora-noiseNN``; none: 0).
"""
from __future__ import annotations

import argparse
import json
import re
from pathlib import Path
from typing import Optional

ROOT = Path(__file__).resolve().parents[1]
LAYERS = {"graphconv": "GraphConv", "sage": "SAGEConv", "gat": "GATConv"}
#: the three graphs a user may take, each as (prefix of transfer_dgl.py's ``<prefix>_mean`` / ``_se``
#: differences to the observed graph, label, line style)
READINGS = (("difference", "returned graph (result.graph)", ":"),
            ("run_gated_difference", "handed over by the run", "--"),
            ("confirmed_difference", "confirmed by the user's model", "-"))


def noise_level(run: Path) -> int:
    """The share of random edges added, in percent, from a run folder's data set name."""
    found = re.search(r"noise(\d+)", run.name)
    return int(found.group(1)) if found else 0


def differences(row: dict, prefix: str) -> tuple[float, float]:
    """The mean difference to the observed graph and its standard error over seeds, in points, as
    ``recipes/transfer_dgl.py`` recorded them (``<prefix>_mean``, ``<prefix>_se``)."""
    return 100 * row[f"{prefix}_mean"], 100 * row[f"{prefix}_se"]


def main(argv: Optional[list] = None) -> Path:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("runs", nargs="+", help="run folders holding transfer_v_in+v_out_graph.json")
    p.add_argument("--out", default=str(ROOT / "docs" / "figures" / "transfer_difference.png"))
    args = p.parse_args(argv)
    rows: dict = {}
    for run in map(Path, args.runs):
        path = run / "transfer_v_in+v_out_graph.json"
        if not path.is_file():
            raise SystemExit(f"{path} is missing: run recipes/transfer_dgl.py {run} --train v_in+v_out first")
        for row in json.loads(path.read_text()):
            if "confirmed_difference_mean" not in row:
                raise SystemExit(f"{path} predates the confirmed column (or the run made no --refit): rerun "
                                 "recipes/transfer_dgl.py on it")
            rows[(row["model"], noise_level(run))] = row
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    levels = sorted({level for _, level in rows})
    layers = [m for m in LAYERS if any(model == m for model, _ in rows)]
    fig, axes = plt.subplots(1, len(layers), figsize=(4.2 * len(layers), 3.6), sharey=True, squeeze=False)
    for ax, model in zip(axes[0], layers):
        for shift, (column, label, style) in zip((-1.2, 0.0, 1.2), READINGS):
            points = [(level, *differences(rows[(model, level)], column)) for level in levels if (model, level) in rows]
            xs, means, ses = zip(*points)
            ax.errorbar([x + shift for x in xs], means, yerr=ses, linestyle=style, marker="o", markersize=4,
                        capsize=3, label=label)
        ax.axhline(0.0, color="black", linewidth=0.8)
        ax.set_title(LAYERS[model])
        ax.set_xticks(levels)
        ax.set_xlabel("random edges added (%)")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("test accuracy minus observed graph's (points)")
    axes[0][-1].legend(loc="lower right", fontsize=8)
    fig.suptitle("A user's DGL model on the graph a run hands over (Cora, 10 seeds, mean ± SE)", fontsize=10)
    fig.tight_layout()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    plt.close(fig)
    print(f"wrote {out}")
    return out


if __name__ == "__main__":
    main()
