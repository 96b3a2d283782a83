"""The implicit hypergradient on the arxiv-shaped graph: today's defaults against a fast setting.

Two parts, both printed as tables and written to ``bench/out/arxiv_speed.json``:

* ``speed`` -- seconds per outer iteration and whole-process peak RSS on the arxiv-shaped graph
  (169,343 nodes, 2,332,486 directed edges; ``--scale 1``), each configuration in its own
  process, one after the other in the same run; ratio = fast / default (medians).
* ``accuracy`` -- test accuracy of the best-validation graph of full ``fit`` runs on the
  scale-0.1 set (16,934 nodes, 233,249 edges), mean +- std over seeds, for the same configurations.

Configurations (2-layer sum-aggregation GNN, 16 hidden units, implicit hypergradient, MINRES to a
1e-2 residual with damping 1e-3, outer Adam lr 1e-2):

* ``default`` -- the library's defaults: a fresh inner initialisation and 100 Adam steps per
  outer iteration, MINRES from zero, at most 200 Hessian-vector products;
* ``cg20`` -- the implicit default until commit 2751fc7 (2026-11-23): as ``default`` but CG with at most 20
  products (the arxiv shape took 33.3 s per outer iteration with it on 2026-11-23);
* ``fast`` -- the inner training continues from the previous outer iteration's solution
  (``init="warm"``) for ``--fast-steps`` steps, and MINRES starts from the previous solve's
  solution (``warm_start=True``) with at most ``--fast-maxiter`` products.

    .venv/bin/python bench/arxiv_speed.py                        # both parts, about 40 minutes
    .venv/bin/python bench/arxiv_speed.py --part speed --speed-iters 2
    .venv/bin/python bench/arxiv_speed.py --part accuracy --seeds 3 --outer-steps 50
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

DAMPING = 1e-3  # the CLI's default for a GNN inner problem


def configurations(fast_steps: int, fast_maxiter: int) -> dict:
    return {
        "default": dict(init="fresh", steps=100, solver="minres", maxiter=200, warm_start=False),
        # the implicit default until commit 2751fc7 (2026-11-23), when the arxiv shape took 33.3 s
        "cg20": dict(init="fresh", steps=100, solver="cg", maxiter=20, warm_start=False),
        "fast": dict(init="warm", steps=fast_steps, solver="minres", maxiter=fast_maxiter, warm_start=True),
    }


def build(data, config: dict):
    """(inner problem, hypergradient method) for one configuration."""
    import dgl_bilevel as dbl

    inner = dbl.TrainedGNN(dbl.models.SumAggGNN(data.num_features, 16, data.num_classes),
                           steps=config["steps"], init=config["init"])
    method = dbl.Implicit(solver=config.get("solver", "minres"), damping=DAMPING, maxiter=config["maxiter"],
                          warm_start=config["warm_start"])
    return inner, method


# ------------------------------------------------------------------ speed (one child per configuration)
def speed_child(config: dict, scale: float, iterations: int) -> dict:
    import torch

    import dgl_bilevel as dbl
    from dgl_bilevel.data.generated import arxiv_like_bilevel
    from dgl_bilevel.losses import task_loss

    data = arxiv_like_bilevel(scale)
    inner, method = build(data, config)
    structure = dbl.EdgeWeights(data.graph, generator=torch.Generator().manual_seed(0))
    inner.bind(data, structure.graph)
    optimizer = torch.optim.Adam(structure.parameters(), lr=1e-2)
    generator = torch.Generator().manual_seed(0)
    seconds, solves = [], []
    for i in range(iterations + 1):  # the first one warms up (allocations; the warm start's first solve)
        started = time.perf_counter()
        w = structure()
        solution = method.solve(inner, w, inner.starting_params(generator))
        inner.remember(solution.params)
        loss = task_loss(inner.predict(solution.params, w), data.labels, data.v_out, data.task)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        elapsed = time.perf_counter() - started
        info = method.last_solve
        print(f"  iteration {i}: {elapsed:.2f} s, {info.iterations} products, residual {info.residual:.3g}", flush=True)
        if i:
            seconds.append(elapsed)
            solves.append({"products": info.iterations, "residual": info.residual})
    return {"nodes": data.num_nodes, "edges": data.num_edges, "seconds": seconds,
            "median_seconds": statistics.median(seconds), "solves": solves,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def run_speed(configs: dict, scale: float, iterations: int) -> dict:
    out = {}
    for name, config in configs.items():
        print(f"speed: {name} {config} at scale {scale:g} ...", flush=True)
        proc = subprocess.run([sys.executable, __file__, "--child", json.dumps({"config": config, "scale": scale,
                               "iterations": iterations})], text=True, stdout=subprocess.PIPE,
                              env={**os.environ, "PYTHONUNBUFFERED": "1"})
        line = next((l for l in proc.stdout.splitlines() if l.startswith("RESULT ")), None)
        for l in proc.stdout.splitlines():
            if not l.startswith("RESULT "):
                print(l, flush=True)
        if proc.returncode != 0 or line is None:
            raise SystemExit(f"speed child {name} failed (exit {proc.returncode})")
        out[name] = {"config": config, **json.loads(line[len("RESULT "):])}
    return out


# ------------------------------------------------------------------ accuracy (full fits, scale 0.1)
def run_accuracy(configs: dict, scale: float, seeds: int, outer_steps: int) -> dict:
    import torch

    import dgl_bilevel as dbl
    from dgl_bilevel.data.generated import arxiv_like_bilevel

    out = {}
    for name, config in configs.items():
        runs = []
        for seed in range(seeds):
            data = arxiv_like_bilevel(scale, seed=seed)
            inner, method = build(data, config)
            structure = dbl.EdgeWeights(data.graph, generator=torch.Generator().manual_seed(10_000 + seed))
            started = time.perf_counter()
            result = dbl.fit(data, structure, inner, method, outer_steps=outer_steps, seed=seed, progress=False)
            runs.append({"seed": seed, "test": result.best_metrics["test"], "val": result.best_metrics["val"],
                         "best_iteration": result.best_iteration, "seconds": time.perf_counter() - started,
                         "seconds_per_iteration": result.seconds_per_iteration})
            print(f"accuracy: {name} seed {seed}: test {100 * runs[-1]['test']:.2f} (val "
                  f"{100 * runs[-1]['val']:.2f}, best iteration {result.best_iteration}), "
                  f"{runs[-1]['seconds_per_iteration']:.2f} s/iteration", flush=True)
        tests = [r["test"] for r in runs]
        out[name] = {"config": config, "runs": runs, "test_mean": statistics.mean(tests),
                     "test_std": statistics.stdev(tests) if len(tests) > 1 else 0.0,
                     "median_seconds_per_iteration": statistics.median(r["seconds_per_iteration"] for r in runs)}
    return out


def report(payload: dict) -> str:
    lines = []
    speed = payload.get("speed")
    if speed:
        first = next(iter(speed))  # ratios against the first configuration run ("default" unless left out)
        base = speed[first]["median_seconds"]
        lines += [f"speed at scale {payload['speed_scale']:g} ({speed[first]['nodes']:,} nodes, "
                  f"{speed[first]['edges']:,} edges), medians of {payload['speed_iterations']} iterations, "
                  f"ratio to {first}:",
                  f"{'config':10} {'s/iter':>9} {'ratio':>6} {'products':>9} {'residual':>9} {'peak RSS MB':>11}"]
        for name, r in speed.items():
            products = statistics.median(s["products"] for s in r["solves"])
            residual = statistics.median(s["residual"] for s in r["solves"])
            lines.append(f"{name:10} {r['median_seconds']:>9.2f} {r['median_seconds'] / base:>6.2f} {products:>9.0f} "
                         f"{residual:>9.3g} {r['peak_rss_mb']:>11.0f}")
    accuracy = payload.get("accuracy")
    if accuracy:
        lines += ["", f"accuracy at scale {payload['accuracy_scale']:g}, {payload['seeds']} seeds, "
                  f"{payload['outer_steps']} outer iterations (test accuracy of the best-validation graph):"]
        for name, r in accuracy.items():
            lines.append(f"{name:10} {100 * r['test_mean']:.2f} +- {100 * r['test_std']:.2f}   "
                         f"{r['median_seconds_per_iteration']:.2f} s/iteration")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--part", choices=["speed", "accuracy", "both"], default="both")
    p.add_argument("--scale", type=float, default=1.0, help="speed: size against ogbn-arxiv (default 1)")
    p.add_argument("--speed-iters", type=int, default=3, help="timed outer iterations per configuration")
    p.add_argument("--accuracy-scale", type=float, default=0.1)
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--outer-steps", type=int, default=50)
    p.add_argument("--fast-steps", type=int, default=10, help="inner steps per outer iteration of 'fast'")
    p.add_argument("--fast-maxiter", type=int, default=20, help="Hessian-vector products at most, 'fast'")
    p.add_argument("--configs", nargs="*", default=["default", "fast"],
                   help="configurations, the first being the reference of the ratios (default, cg20, fast)")
    p.add_argument("--out", default=str(ROOT / "bench" / "out" / "arxiv_speed.json"))
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        spec = json.loads(args.child)
        print("RESULT " + json.dumps(speed_child(spec["config"], spec["scale"], spec["iterations"])), flush=True)
        return 0
    every = configurations(args.fast_steps, args.fast_maxiter)
    unknown = [c for c in args.configs if c not in every]
    if unknown or not args.configs:
        p.error(f"--configs: choose from {sorted(every)} (ratios are taken against the first)")
    configs = {name: every[name] for name in args.configs}
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    payload: dict = {"started": started, "command": " ".join(sys.argv)}
    if args.part in ("speed", "both"):
        payload.update(speed_scale=args.scale, speed_iterations=args.speed_iters,
                       speed=run_speed(configs, args.scale, args.speed_iters))
    if args.part in ("accuracy", "both"):
        payload.update(accuracy_scale=args.accuracy_scale, seeds=args.seeds, outer_steps=args.outer_steps,
                       accuracy=run_accuracy(configs, args.accuracy_scale, args.seeds, args.outer_steps))
    payload["finished"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    print()
    print(report(payload))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(payload, indent=1) + "\n")
    print(f"\nwritten to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
