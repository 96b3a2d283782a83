"""The paper's Figures 1-4, regenerated with dgl_bilevel (PNG files in docs/figures/).

    python recipes/figures.py                 # all figures (about 25 minutes on 2 cores)
    python recipes/figures.py --only fig1 fig3

* fig1 -- cheaters, 2-layer GNN: |hypergradient| at outer iteration 9 as an n x n heat map.
* fig2 -- cheaters: refined edges, V_out and test accuracy per outer iteration for BO,
  BO+A^2, BO+regularization and BO+G2G (seed 0).
* fig3 -- synthetic set 1, Laplacian: |hypergradient| against Laplacian edge distance for
  high- and low-frequency V_in, with the decay bound (Thm IV.2).
* fig4 -- Cora: mean |hypergradient| per distance for the GNN and the Laplacian, with and
  without the log-degree regulariser.

Profiles and curves are also written as JSON next to the figures.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from common import ROOT, run_cell

from dgl_bilevel.diagnostics import hypergradient_profile
from dgl_bilevel.diagnostics.plots import plot_curves, plot_edge_heatmap, plot_profile, plot_profile_lines
from dgl_bilevel.experiment import ExperimentConfig, scarcity_snapshot

FIGURES = ROOT / "docs" / "figures"


def fig1(args) -> dict:
    snap = scarcity_snapshot(ExperimentConfig(dataset="cheaters", inner="gnn", method="bo", progress=False), iteration=9)
    d = snap.data
    plot_edge_heatmap(snap.structure.graph, snap.hypergradient, FIGURES / "fig1_cheaters_hypergradient.png",
                      title="cheaters, 2-layer GNN, outer iteration 9",
                      marks=[("V_in", d.v_in.tolist()), ("V_out", d.v_out.tolist())])
    far = snap.distances >= 2
    return {"zero_fraction_at_distance_ge_2": float((snap.hypergradient[far] == 0).double().mean()),
            "edges_at_distance_ge_2": int(far.sum()),
            "profile": [r.as_dict() for r in hypergradient_profile(snap.hypergradient, snap.distances)]}


def fig2(args) -> dict:
    curves = {}
    for method, label in (("bo", "BO"), ("bo+power", "BO+A^2"), ("bo+reg", "BO+regularization"), ("bo+g2g", "BO+G2G")):
        name = f"fig2-cheaters-gnn-{method}"
        run_cell("cheaters", "gnn", method, 1, args.out, name=name, progress=False, resume=args.resume,
                 reverse_engine="autograd")
        history = json.loads((Path(args.out) / name / "seed_0.json").read_text())["history"]
        curves[label] = {k: [h[k] for h in history] for k in ("refined_edges", "v_out_acc", "test_acc")}
    plot_curves({k: v["refined_edges"] for k, v in curves.items()}, FIGURES / "fig2_cheaters_refined_edges.png",
                ylabel="refined edges (> 1% of max weight)", title="cheaters: refined edges", logy=True)
    plot_curves({k: v["v_out_acc"] for k, v in curves.items()}, FIGURES / "fig2_cheaters_vout_accuracy.png",
                ylabel="V_out accuracy", title="cheaters: V_out accuracy")
    plot_curves({k: v["test_acc"] for k, v in curves.items()}, FIGURES / "fig2_cheaters_test_accuracy.png",
                ylabel="test accuracy", title="cheaters: test accuracy")
    return curves


def fig3(args) -> dict:
    out = {}
    for freq in ("high", "low"):
        snap = scarcity_snapshot(ExperimentConfig(dataset=f"synthetic1-{freq}", inner="laplacian", method="bo",
                                                  progress=False), iteration=0)
        b = snap.bound
        plot_profile(snap.hypergradient, snap.distances, FIGURES / f"fig3_synthetic1_{freq}.png",
                     title=f"synthetic set 1, {freq}-frequency V_in (Laplacian)", bound=b.per_distance, rate=b.rho,
                     xlabel="Laplacian edge distance (d_in + d_out)")
        out[freq] = {"mu_min": b.mu_min, "mu_max": b.mu_max, "rho": b.rho,
                     "profile": [r.as_dict() for r in hypergradient_profile(snap.hypergradient, snap.distances)]}
    return out


def fig4(args) -> dict:
    out = {}
    for inner in ("gnn", "laplacian"):
        profiles = {}
        for method, label in (("bo", "BO"), ("bo+reg", "BO+regularization")):
            snap = scarcity_snapshot(ExperimentConfig(dataset="cora", inner=inner, method=method, progress=False,
                                                      reverse_engine="autograd"), iteration=0)
            profiles[label] = hypergradient_profile(snap.hypergradient, snap.distances)
        kind = "GNN (distance to V_in U V_out)" if inner == "gnn" else "Laplacian (d_in + d_out)"
        plot_profile_lines(profiles, FIGURES / f"fig4_cora_{inner}.png", title=f"Cora, {kind}",
                           xlabel="edge distance")
        out[inner] = {k: [r.as_dict() for r in v] for k, v in profiles.items()}
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--only", nargs="*", choices=["fig1", "fig2", "fig3", "fig4"], default=["fig1", "fig2", "fig3", "fig4"])
    p.add_argument("--out", default=str(ROOT / "results" / "figures"))
    p.add_argument("--resume", action="store_true")
    args = p.parse_args()
    FIGURES.mkdir(parents=True, exist_ok=True)
    for name in args.only:
        data = globals()[name](args)
        (FIGURES / f"{name}.json").write_text(json.dumps(data, indent=1) + "\n")
        print(f"{name}: written to {FIGURES}")


if __name__ == "__main__":
    main()
