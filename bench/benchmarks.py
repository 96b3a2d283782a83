"""Speed and memory benchmarks: seconds per outer iteration, whole-process peak RSS, and the cost
of the hypergradient relative to a plain training run of the same inner model.

    .venv/bin/python bench/benchmarks.py                 # every case (about 25 minutes on 2 cores)
    .venv/bin/python bench/benchmarks.py --quick         # Cora cases only (the paper's GNN and the Laplacian
                                                         # about 2 minutes; GCN, SAGE, APPNP 2 more)
    .venv/bin/python bench/benchmarks.py --cases cora-gnn-implicit scale-1e6-gnn-implicit

Each case runs in its own Python process, so its peak RSS (``ru_maxrss``) is that of the
whole process: interpreter, torch, DGL, the data and the run. Inside the process the outer
iterations and plain training runs are timed alternately, and medians are reported; the
ratio is taken between medians measured in the same process. Results are printed as a table
and written to ``bench/out/benchmarks.json`` (``--out`` to change).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

#: name -> settings. ``data``: "cora" or a scale of the arxiv-shaped generator; ``inner``: gnn,
#: lap-ce (paper-style Laplacian, cross-entropy, 500 Adam steps) or lap-mse (quadratic); ``model``:
#: the GNN's registered model (default ``sumagg``, the paper's; the others have no hand-derived
#: second derivatives, so their lean unroll recomputes steps and their implicit products are autograd's);
#: ``reverse``: the unrolled method's reverse engine (default auto).
CASES: dict[str, dict] = {
    "cora-gnn-unrolled": dict(data="cora", inner="gnn", method="unrolled", iters=6),
    "cora-gnn-unrolled-nockpt": dict(data="cora", inner="gnn", method="unrolled-full", iters=6),
    # the lean unroll without the GNN's hand-derived second derivatives: recomputed steps (before 2026-12-02)
    "cora-gnn-unrolled-recompute": dict(data="cora", inner="gnn", method="unrolled", iters=6, reverse="checkpointed"),
    "cora-gnn-implicit": dict(data="cora", inner="gnn", method="implicit", iters=6),
    "cora-gnn-truncated10": dict(data="cora", inner="gnn", method="truncated", iters=6),
    # the other registered GNN models, same width (16), depth (2) and 100 inner steps as the paper's
    "cora-gcn-unrolled": dict(data="cora", inner="gnn", model="gcn", method="unrolled", iters=6),
    "cora-sage-unrolled": dict(data="cora", inner="gnn", model="sage", method="unrolled", iters=6),
    "cora-appnp-unrolled": dict(data="cora", inner="gnn", model="appnp", method="unrolled", iters=6),
    "cora-gcn-implicit": dict(data="cora", inner="gnn", model="gcn", method="implicit", iters=6),
    "cora-sage-implicit": dict(data="cora", inner="gnn", model="sage", method="implicit", iters=6),
    "cora-appnp-implicit": dict(data="cora", inner="gnn", model="appnp", method="implicit", iters=6),
    "cora-lap-unrolled500": dict(data="cora", inner="lap-ce", method="unrolled", iters=5),
    "cora-lap-implicit": dict(data="cora", inner="lap-ce", method="implicit", iters=5),
    "cora-lap-adjoint": dict(data="cora", inner="lap-mse", method="adjoint", iters=20),
}
for label, scale in [("1e4", 0.00429), ("1e5", 0.0429), ("1e6", 0.429), ("arxiv", 1.0)]:
    iters = 5 if scale < 0.1 else 2
    CASES[f"scale-{label}-gnn-implicit"] = dict(data=scale, inner="gnn", method="implicit", iters=iters)
    CASES[f"scale-{label}-gnn-unrolled"] = dict(data=scale, inner="gnn", method="unrolled", iters=iters)
    CASES[f"scale-{label}-lap-adjoint"] = dict(data=scale, inner="lap-mse", method="adjoint", iters=max(iters, 5))
for label, scale in [("1e6", 0.429), ("arxiv", 1.0)]:
    CASES[f"scale-{label}-gnn-sampled-implicit"] = dict(data=scale, inner="gnn-sampled", method="implicit", iters=2)

QUICK = [c for c in CASES if c.startswith("cora-")]


# ----------------------------------------------------------------- one case (child)
def run_case(name: str) -> dict:
    import torch

    import dgl_bilevel as dbl
    from timing import timed_outer_iteration, timed_plain_training

    spec = CASES[name]
    started = time.perf_counter()
    if spec["data"] == "cora":
        data = dbl.data.cora(os.environ.get("DGL_BILEVEL_DATA", str(ROOT.parent / "shared" / "data")))
    else:
        from dgl_bilevel.data.generated import arxiv_like_bilevel

        data = arxiv_like_bilevel(spec["data"])
    load_seconds = time.perf_counter() - started
    if spec["inner"] == "gnn":
        model = dbl.models.build_model(spec.get("model", "sumagg"), data.num_features, 16, data.num_classes)
        inner = dbl.TrainedGNN(model, steps=100)
    elif spec["inner"] == "gnn-sampled":  # 1,024 v_in seeds per step, 10 neighbours per layer
        inner = dbl.SampledGNN(dbl.models.SumAggGNN(data.num_features, 16, data.num_classes), steps=100,
                               batch_size=1024, fanouts=[10, 10])
    elif spec["inner"] == "lap-ce":
        inner = dbl.LaplacianRegularization(loss="ce", steps=500)
    else:
        inner = dbl.LaplacianRegularization(loss="mse")
    reverse = spec.get("reverse", "auto")  # the reverse engine (--reverse-engine) of unrolled methods
    method = {
        "unrolled": dbl.Unrolled(reverse=reverse),
        "unrolled-full": dbl.Unrolled(reverse="autograd"),
        # the library's defaults: MINRES to a 1e-2 residual; damping 1e-3 for the non-convex GNN (the CLI's)
        "implicit": dbl.Implicit(damping=1e-3 if spec["inner"].startswith("gnn") else 0.0),
        "truncated": dbl.Truncated(10),
        "adjoint": dbl.Adjoint(),
    }[spec["method"]]
    structure = dbl.EdgeWeights(data.graph, generator=torch.Generator().manual_seed(0))
    inner.bind(data, structure.graph)
    optimizer = torch.optim.Adam(structure.parameters(), lr=1e-2)
    generator = torch.Generator().manual_seed(0)

    def outer_iteration() -> float:
        return timed_outer_iteration(method, inner, structure, data, optimizer, generator)

    def plain_training() -> float:
        """The same inner model fitted once, without any hypergradient."""
        if inner.is_quadratic and spec["method"] == "adjoint":
            t = time.perf_counter()
            method.solve(inner, structure().detach(), ())  # one exact solve
            return time.perf_counter() - t
        return timed_plain_training(inner, structure, generator)

    outer_iteration()  # warm-up (allocations, CSR structures)
    plain_training()
    outer, plain = [], []
    for _ in range(spec["iters"]):
        outer.append(outer_iteration())
        plain.append(plain_training())
    med_outer, med_plain = statistics.median(outer), statistics.median(plain)
    return {
        "case": name,
        "nodes": data.num_nodes,
        "edges": data.num_edges,
        "inner": spec["inner"],
        "model": spec.get("model", "sumagg") if spec["inner"].startswith("gnn") else None,
        "method": spec["method"],
        "inner_steps": inner.steps if spec["method"] != "adjoint" else 0,
        "iterations_timed": spec["iters"],
        "seconds_per_outer_iteration": med_outer,
        "seconds_plain_training": med_plain,
        "ratio_to_plain": med_outer / med_plain,
        "all_outer_seconds": outer,
        "load_seconds": load_seconds,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


# ----------------------------------------------------------------------- driver
def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", nargs="*", default=None, help=f"cases to run (default: all); choose from {', '.join(CASES)}")
    parser.add_argument("--quick", action="store_true", help="Cora cases only")
    parser.add_argument("--out", default=str(ROOT / "bench" / "out" / "benchmarks.json"))
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print("RESULT " + json.dumps(run_case(args.child)), flush=True)
        return 0
    names = args.cases or (QUICK if args.quick else list(CASES))
    unknown = [n for n in names if n not in CASES]
    if unknown:
        parser.error(f"unknown case(s): {', '.join(unknown)}")
    results = []
    for name in names:
        print(f"running {name} ...", flush=True)
        proc = subprocess.run([sys.executable, __file__, "--child", name], capture_output=True, text=True,
                              env={**os.environ, "PYTHONUNBUFFERED": "1"})
        line = next((l for l in proc.stdout.splitlines() if l.startswith("RESULT ")), None)
        if proc.returncode != 0 or line is None:
            print(f"  {name} failed (exit {proc.returncode}):\n{proc.stderr[-2000:]}", flush=True)
            results.append({"case": name, "error": proc.stderr[-2000:]})
            continue
        result = json.loads(line[len("RESULT "):])
        results.append(result)
        print(f"  {result['seconds_per_outer_iteration']:.3f} s/iter, {result['peak_rss_mb']:.0f} MB, "
              f"x{result['ratio_to_plain']:.2f} plain", flush=True)
    print()
    print(table(results))
    payload = {"machine": machine(), "results": results}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(payload, indent=2) + "\n")
    print(f"\nwritten to {args.out}")
    return 0 if all("error" not in r for r in results) else 1


def table(results: list) -> str:
    header = f"{'case':32} {'nodes':>8} {'edges':>9} {'s/outer iter':>12} {'plain s':>8} {'ratio':>6} {'peak RSS MB':>11}"
    lines = [header, "-" * len(header)]
    for r in results:
        if "error" in r:
            lines.append(f"{r['case']:32} FAILED")
            continue
        lines.append(f"{r['case']:32} {r['nodes']:>8} {r['edges']:>9} {r['seconds_per_outer_iteration']:>12.3f} "
                     f"{r['seconds_plain_training']:>8.3f} {r['ratio_to_plain']:>6.2f} {r['peak_rss_mb']:>11.0f}")
    return "\n".join(lines)


def machine() -> dict:
    import torch

    info = {"python": platform.python_version(), "torch": torch.__version__, "threads": torch.get_num_threads(),
            "cpus": os.cpu_count(), "processor": platform.processor() or platform.machine()}
    try:
        model = next(l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name"))
        info["cpu_model"] = model
    except (OSError, StopIteration):
        pass
    return info


if __name__ == "__main__":
    sys.exit(main())
