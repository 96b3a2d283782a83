"""Graph-regularised MLP (``dgl_bilevel.energy.GraphRegularizedMLP``) on Cora against a plain MLP and a
GCN on the same split, and their inference time (the GR-MLP needs no graph at inference).

    python recipes/graph_regularized_mlp.py                        # 10 seeds, lam picked on validation
    python recipes/graph_regularized_mlp.py --lams 1 --seeds 2 --epochs 50
    python recipes/graph_regularized_mlp.py --report-only

Training as in ``bloomgml_node_classification.py`` (64 hidden, dropout 0.5 on input and hidden layer,
Adam lr 0.01, weight decay 5e-4, best epoch on ``v_out ∪ val``); the GR-MLP adds
``lam * G(softmax(Z))`` over every node of the graph to the cross-entropy on ``v_in``. ``lam`` and the
normalisation are chosen by mean validation accuracy over ``--select-seeds`` seeds on a grid
(``--lams``, ``--normalizations``), then the chosen setting runs ``--seeds`` seeds. GCN: the
library's ``dgl_bilevel.models.GCN`` (2 ``dgl.nn.GraphConv`` layers, symmetric normalisation, no
self-loops added: Cora's graph as loaded). Inference: the median over ``--repeats`` timed
forward passes in eval mode, one thread, on all 2,708 nodes, sparse features for every model;
ratio to the GCN's. Table between the ``bloomgml-grmlp`` markers of docs/bloomgml.md.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bloomgml_node_classification import (  # noqa: E402
    ROOT, MLPNet, SparseInput, TrainConfig, pm, train_node_classifier, write_doc_block, write_json,
)
from dgl_bilevel.energy import GraphRegularizedMLP  # noqa: E402
from dgl_bilevel.models import GCN  # noqa: E402


class GRMLPNet(nn.Module):
    """``GraphRegularizedMLP`` called like a GNN (the graph is only used by the training loss)."""

    def __init__(self, in_feats, hidden, out_feats, dropout, lam, normalize, penalty="quadratic"):
        super().__init__()
        self.net = GraphRegularizedMLP(in_feats, hidden, out_feats, 2, dropout, lam=lam, penalty=penalty,
                                       normalize=normalize)

    def forward(self, graph, feat, edge_weight=None):
        return self.net(feat)


def build(row: str, data, config: TrainConfig, lam: float = 1.0, normalize: str = "sym") -> nn.Module:
    if row == "mlp":
        return MLPNet(data.num_features, config.hidden, data.num_classes, config.dropout)
    if row == "gcn":
        return GCN(data.num_features, config.hidden, data.num_classes, dropout=config.dropout)
    return GRMLPNet(data.num_features, config.hidden, data.num_classes, config.dropout, lam, normalize)


def train(row: str, data, config: TrainConfig, seed: int, lam: float = 1.0, normalize: str = "sym"):
    torch.manual_seed(seed)
    model = build(row, data, config, lam, normalize)
    extra = None
    if row == "grmlp":
        extra = lambda m, logits: m.net.regularizer(data.graph, logits)  # noqa: E731
    result, state = train_node_classifier(model, data, config, seed, extra_loss=extra)
    model.load_state_dict(state)
    return result, model


def inference_ms(model: nn.Module, row: str, data, features: SparseInput, repeats: int) -> float:
    """Median wall time of one forward pass in eval mode (the GR-MLP and MLP never see the graph)."""
    model.eval()
    x = features.dropped(0.0, False)
    times = []
    with torch.no_grad():
        for _ in range(repeats + 3):
            started = time.perf_counter()
            if row == "grmlp":
                model.net(x)
            elif row == "mlp":
                model.mlp(x)
            else:
                model(data.graph, x)
            times.append(time.perf_counter() - started)
    return 1000 * statistics.median(times[3:])


def markdown(out: Path) -> str:
    path = out / "results.json"
    if not path.is_file():
        return ""
    payload = json.loads(path.read_text())
    gcn_ms = statistics.median(r["inference_ms"] for r in payload["rows"]["gcn"])
    lines = ["| model | test acc | val acc | seeds | inference (ms, median) | time / GCN's |", "|---|---|---|---|---|---|"]
    labels = {"mlp": "MLP", "gcn": "GCN (`dgl_bilevel.models.GCN`)",
              "grmlp": f"graph-regularised MLP (lam {payload['lam']}, {payload['normalize']}, on probabilities)"}
    for row in ("mlp", "grmlp", "gcn"):
        runs = payload["rows"].get(row)
        if not runs:
            continue
        ms = statistics.median(r["inference_ms"] for r in runs)
        lines.append(f"| {labels[row]} | {pm([r['test_acc'] for r in runs])} | {pm([r['val_acc'] for r in runs])} | "
                     f"{len(runs)} | {ms:.2f} | {ms / gcn_ms:.2f} |")
    grid = payload.get("selection", [])
    if grid:
        lines.append("")
        lines.append("Selection of the GR-MLP's lam (mean validation / test accuracy over "
                     f"{payload['select_seeds']} seeds): " + "; ".join(
                         f"{g['normalize']} lam {g['lam']}: {100 * g['val']:.1f} / {100 * g['test']:.1f}" for g in grid))
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", type=int, default=10)
    p.add_argument("--epochs", type=int, default=300)
    p.add_argument("--lams", nargs="*", type=float, default=[0.3, 1.0, 3.0])
    p.add_argument("--normalizations", nargs="*", choices=("sym", "none"), default=["sym"])
    p.add_argument("--select-seeds", type=int, default=2)
    p.add_argument("--repeats", type=int, default=50)
    p.add_argument("--data-root", default=None)
    p.add_argument("--out", default=str(ROOT / "results" / "bloomgml" / "graph_regularized_mlp"))
    p.add_argument("--report-only", action="store_true")
    p.add_argument("--no-doc", action="store_true")
    args = p.parse_args()
    torch.set_num_threads(1)
    out = Path(args.out)
    config = TrainConfig(epochs=args.epochs)
    if not args.report_only:
        from dgl_bilevel.data import cora

        data = cora(args.data_root, 0)
        features = SparseInput(data.features)
        grid = []
        for normalize in args.normalizations:
            for lam in args.lams:
                if len(args.lams) * len(args.normalizations) == 1:
                    break
                results = [train("grmlp", data, config, 100 + s, lam, normalize)[0] for s in range(args.select_seeds)]
                grid.append({"normalize": normalize, "lam": lam, "val": statistics.fmean(r.val_acc for r in results),
                             "test": statistics.fmean(r.test_acc for r in results)})
                print(f"selection: {grid[-1]}", flush=True)
        chosen = max(grid, key=lambda g: g["val"]) if grid else {"lam": args.lams[0], "normalize": args.normalizations[0]}
        rows = {}
        for row in ("mlp", "grmlp", "gcn"):
            runs = []
            for seed in range(args.seeds):
                result, model = train(row, data, config, seed, chosen["lam"], chosen["normalize"])
                runs.append({"seed": seed, **result.__dict__,
                             "inference_ms": inference_ms(model, row, data, features, args.repeats)})
                print(f"{row} seed {seed}: test {100 * result.test_acc:.1f} ({runs[-1]['inference_ms']:.2f} ms)",
                      flush=True)
            rows[row] = runs
        write_json(out / "results.json", {"lam": chosen["lam"], "normalize": chosen["normalize"], "selection": grid,
                                          "select_seeds": args.select_seeds, "config": config.__dict__, "rows": rows})
    block = markdown(out)
    print(block)
    if block and not args.no_doc:
        write_doc_block(block, "bloomgml-grmlp")


if __name__ == "__main__":
    main()
