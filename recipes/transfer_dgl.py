"""The learned graph as a pipeline artifact: DGL's own layers trained on the graph a run returns.

    OMP_NUM_THREADS=1 .venv/bin/python recipes/transfer_dgl.py results/graphs_that_pay/cora-paper-bernoulli
    OMP_NUM_THREADS=1 .venv/bin/python recipes/transfer_dgl.py RUN_DIR --models graphconv sage --train v_in+v_out

For every ``graph_seed<s>.bin`` a run wrote (the best-validation graph, weights in ``edata["w"]``,
split masks in ``ndata``), a user's plain model -- two ``dgl.nn.GraphConv`` layers (``norm="both"``),
two ``SAGEConv`` (mean) layers, or two ``GATConv`` layers, each taking ``edge_weight`` -- is trained
on the returned graph and on the observed graph, with the same seed, settings and training labels
(``v_in`` or ``v_in ∪ v_out``): 200 epochs of Adam (lr 0.01, weight decay 5e-4), hidden 16 (GAT:
8 x 8 heads), dropout 0.5, the epoch chosen by validation accuracy. Edges whose weight is 0 are
dropped and every node gets a self-loop of weight 1 on both graphs (``GraphConv`` refuses zero
in-degrees, and normalises by unweighted degrees, which must not count absent edges). Printed: test accuracy on both graphs, mean ± std over seeds, the
mean difference and its standard error, and the graph a user would keep by
:func:`dgl_bilevel.validation_gate` (their model's validation outputs on both graphs: the observed
graph unless the learned one wins a paired test on validation). Where the run was made with
``--refit``, also the graph the run's own gate chose (``refit_gate`` in ``seed_<s>.json``: the
learned graph where the library's inner model, refit on every label, won the paired validation test
on it, else the observed graph) -- evidence from a stronger test, taken before the user's model runs --
and that choice confirmed by the user's model (:func:`dgl_bilevel.experiment.confirmed_choice`: the
learned graph only where the run chose it and the user's model's best validation accuracy on it is
not lower than on the observed graph), what ``handed_over_graph(..., confirm=...)`` hands over.
"""
from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
from pathlib import Path
from typing import Optional

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402

from dgl_bilevel._dgl import dgl  # noqa: E402
from dgl_bilevel.config import load_yaml  # noqa: E402
from dgl_bilevel.data import load_dataset  # noqa: E402
from dgl_bilevel.experiment.handover import LEARNED_CHOICES, confirmed_choice  # noqa: E402
from dgl_bilevel.outer.gate import validation_gate  # noqa: E402
from dgl_bilevel.outer.result import most_likely_graph  # noqa: E402


class TwoLayer(nn.Module):
    """Two DGL conv layers taking ``edge_weight``, ELU and dropout between them."""

    def __init__(self, kind: str, in_feats: int, hidden: int, classes: int, dropout: float = 0.5) -> None:
        super().__init__()
        if kind == "graphconv":
            self.a = dgl.nn.GraphConv(in_feats, hidden, norm="both")
            self.b = dgl.nn.GraphConv(hidden, classes, norm="both")
        elif kind == "sage":
            self.a = dgl.nn.SAGEConv(in_feats, hidden, "mean")
            self.b = dgl.nn.SAGEConv(hidden, classes, "mean")
        elif kind == "gat":
            self.a = dgl.nn.GATConv(in_feats, 8, 8, feat_drop=dropout, attn_drop=dropout)
            self.b = dgl.nn.GATConv(64, classes, 1, feat_drop=dropout, attn_drop=dropout)
        else:
            raise ValueError(f"unknown model {kind!r}")
        self.kind, self.dropout = kind, dropout

    def forward(self, g, x, w):
        h = self.a(g, F.dropout(x, self.dropout, self.training), edge_weight=w)
        h = F.elu(h.flatten(1))
        h = self.b(g, F.dropout(h, self.dropout, self.training), edge_weight=w)
        return h.mean(1) if self.kind == "gat" else h


def prepared(graph, weights: torch.Tensor):
    """``graph`` without its zero-weight edges, plus a weight-1 self-loop on every node."""
    keep = (weights > 0).nonzero().squeeze(1)
    src, dst = graph.edges()
    n = graph.num_nodes()
    loops = torch.arange(n)
    g = dgl.graph((torch.cat([src[keep], loops]), torch.cat([dst[keep], loops])), num_nodes=n)
    return g, torch.cat([weights[keep].float(), torch.ones(n)])


def train(kind: str, graph, weights, data, train_idx: torch.Tensor, seed: int, epochs: int = 200):
    """Test accuracy at the epoch with the best validation accuracy, the outputs of that epoch and that
    validation accuracy."""
    torch.manual_seed(seed)
    g, w = prepared(graph, weights)
    x = data.features.float()
    model = TwoLayer(kind, x.shape[1], 16, data.num_classes)
    opt = torch.optim.Adam(model.parameters(), lr=0.01, weight_decay=5e-4)
    best_val, best_test, best_out = -1.0, 0.0, None
    for _ in range(epochs):
        model.train()
        loss = F.cross_entropy(model(g, x, w)[train_idx], data.labels[train_idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        model.eval()
        with torch.no_grad():
            out = model(g, x, w)
        pred = out.argmax(1)
        val = float((pred[data.val] == data.labels[data.val]).float().mean())
        if val > best_val:
            best_val, best_test, best_out = val, float((pred[data.test] == data.labels[data.test]).float().mean()), out
    return best_test, best_out, best_val


def run_gate_choice(run: Path, seed: int) -> Optional[str]:
    """The graph the run's refit gate kept for ``seed`` (``observed``, ``learned`` or ``learned_v_in``); None
    where the run made no refit."""
    path = run / f"seed_{seed}.json"
    if not path.is_file():
        return None
    return json.loads(path.read_text())["result"].get("refit_gate")


def main(argv: Optional[list] = None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("run_dir", help="a run folder holding graph_seed<s>.bin and config.yaml")
    p.add_argument("--models", nargs="+", default=["graphconv", "sage", "gat"])
    p.add_argument("--train", choices=("v_in", "v_in+v_out"), default="v_in+v_out",
                   help="the labels the user's model trains on (default: every label the bilevel run used)")
    p.add_argument("--data-root", default=None)
    p.add_argument("--epochs", type=int, default=200)
    p.add_argument("--reading", choices=("graph", "expected"), default="graph",
                   help="graph: what result.graph returns (for edge probabilities, the edges above 1/2); "
                        "expected: every saved candidate with its weight")
    args = p.parse_args(argv)
    run = Path(args.run_dir)
    config = load_yaml(run / "config.yaml")
    rows = []
    for kind in args.models:
        learned, observed, gated, choices, run_gated, run_choices = [], [], [], [], [], []
        learned_vals, observed_vals, confirmed, confirmed_choices = [], [], [], []
        for path in sorted(run.glob("graph_seed*.bin"), key=lambda q: int(q.stem.removeprefix("graph_seed"))):
            seed = int(path.stem.removeprefix("graph_seed"))
            data = load_dataset(config["dataset"], args.data_root or config.get("data_root"), seed)
            if config.get("protocol") == "lds":
                data = data.with_outer_loss_on_validation()
            (graph,), _ = dgl.load_graphs(str(path))
            if args.reading == "graph" and config.get("structure") == "bernoulli":  # result.graph: the most likely graph
                graph = most_likely_graph(graph)
            train_idx = data.v_in if args.train == "v_in" else torch.cat([data.v_in, data.v_out]).unique()
            learned_test, learned_out, learned_val = train(kind, graph, graph.edata["w"], data, train_idx, seed,
                                                           args.epochs)
            observed_test, observed_out, observed_val = train(kind, data.graph, data.observed_weights(), data,
                                                              train_idx, seed, args.epochs)
            learned_vals.append(learned_val)
            observed_vals.append(observed_val)
            decision = validation_gate({"observed": observed_out, "learned": learned_out}, "observed", data.labels,
                                       data.val, data.metric, seed=seed)
            learned.append(learned_test)
            observed.append(observed_test)
            gated.append(learned_test if decision.choice == "learned" else observed_test)
            choices.append(decision.choice)
            run_choice = run_gate_choice(run, seed)
            if run_choice is not None:
                run_choices.append(run_choice)
                run_gated.append(learned_test if run_choice in LEARNED_CHOICES else observed_test)
                confirmed_choices.append(confirmed_choice(run_choice, learned_val, observed_val))
                confirmed.append(learned_test if confirmed_choices[-1] == "learned" else observed_test)
        diff = [a - b for a, b in zip(learned, observed)]
        se = statistics.stdev(diff) / math.sqrt(len(diff)) if len(diff) > 1 else float("nan")
        gated_diff = [a - b for a, b in zip(gated, observed)]
        row = {"model": kind, "train": args.train, "reading": args.reading, "seeds": len(diff), "learned": learned,
               "observed": observed, "gated": gated, "gate_choices": choices,
               "learned_val": learned_vals, "observed_val": observed_vals,
               "difference_mean": statistics.fmean(diff), "difference_se": se,
               "gated_difference_mean": statistics.fmean(gated_diff)}
        if len(run_gated) == len(diff):
            run_diff = [a - b for a, b in zip(run_gated, observed)]
            row.update(run_gated=run_gated, run_gate_choices=run_choices,
                       run_gated_difference_mean=statistics.fmean(run_diff),
                       run_gated_difference_se=statistics.stdev(run_diff) / math.sqrt(len(run_diff))
                       if len(run_diff) > 1 else float("nan"))
            confirmed_diff = [a - b for a, b in zip(confirmed, observed)]
            row.update(confirmed=confirmed, confirmed_choices=confirmed_choices,
                       confirmed_difference_mean=statistics.fmean(confirmed_diff),
                       confirmed_difference_se=statistics.stdev(confirmed_diff) / math.sqrt(len(confirmed_diff))
                       if len(confirmed_diff) > 1 else float("nan"))
        rows.append(row)
        fmt = lambda v: f"{100 * statistics.fmean(v):.1f} ± {100 * statistics.stdev(v):.1f}" if len(v) > 1 else \
            f"{100 * v[0]:.1f}"  # noqa: E731
        print(f"{kind:10s} trained on {args.train}, {args.reading} reading: learned graph {fmt(learned)}, observed graph "
              f"{fmt(observed)}, difference {100 * row['difference_mean']:+.1f} (se {100 * se:.1f}); graph chosen by "
              f"the validation gate {fmt(gated)} (learned in {choices.count('learned')} of {len(diff)} seeds)",
              flush=True)
        if "run_gated" in row:
            kept = sum(c in LEARNED_CHOICES for c in run_choices)
            print(f"{'':10s} graph chosen by the run's own gate (refit_gate): {fmt(run_gated)}, difference "
                  f"{100 * row['run_gated_difference_mean']:+.1f} (se {100 * row['run_gated_difference_se']:.1f}); "
                  f"learned in {kept} of {len(run_choices)} seeds", flush=True)
            print(f"{'':10s} the run's choice confirmed by the user's validation accuracy: {fmt(confirmed)}, "
                  f"difference {100 * row['confirmed_difference_mean']:+.1f} "
                  f"(se {100 * row['confirmed_difference_se']:.1f}); learned in "
                  f"{confirmed_choices.count('learned')} of {len(confirmed_choices)} seeds", flush=True)
    (run / f"transfer_{args.train}_{args.reading}.json").write_text(json.dumps(rows, indent=1))
    return rows


if __name__ == "__main__":
    main()
