"""The bilevel layer on a Cora-sized graph program: implicit backward against unrolling.

    OMP_NUM_THREADS=1 .venv/bin/python bench/bilevel_layer.py                 # about 6 minutes on one core
    OMP_NUM_THREADS=1 .venv/bin/python bench/bilevel_layer.py --reps 5 --mu 1.0 --docs

**Program** (:class:`~dgl_bilevel.layers.LaplacianProgram` on Cora's graph: 2708 nodes, 10556
stored edges, C = 7 columns, float64): ``z`` = one logit per edge (zeros, ``w = softplus(z)``);
lower ``G = 1/2 |Y - B - x|^2 + mu/2 sum_e w_e |Y_u - Y_v|^2`` with ``B`` the one-hot labels of
V_in; upper ``F = CE(Y[V_out]) + 1/2 |x|^2`` with a per-node offset ``x`` (``[N, C]``). The
outer loss is the mean cross-entropy of ``Y*`` on the validation nodes; its gradient in ``z``
is the hypergradient compared.

**Forward** (identical for every method): upper gradient descent (lr 0.5, ``--steps`` = 20
steps), lower Newton-CG (tol 1e-8, warm-started), adjoint CG (tol 1e-8, warm-started).
**Backward**: ``exact`` (MINRES on the saddle-point system, tol 1e-8, third-order products),
``second_order`` (the same without G's third derivatives in ``(x, Y)`` inside the solve: exact
here, G being quadratic in ``(x, Y)``), ``unrolled`` (back-propagation through every forward
iteration, the forward then keeping its graph). Every solve is preconditioned by the Jacobi
preconditioner ``1 / (1 + mu deg)`` (:meth:`LaplacianProgram.jacobi`: CG in the forward,
``diag(I, M, M)`` MINRES in the backward), except in the ``no preconditioner`` rows.

Each method runs in its own process: ``--reps`` repetitions of forward + backward, medians of
the seconds; peak memory is the growth of the peak RSS (``VmHWM``, reset before the forward
after a ``malloc_trim``) above the RSS before the forward, during the forward and during
forward + backward (Linux). Accuracy: each hypergradient against a reference, the exact implicit
hypergradient at a forward converged to ``|df/dx| < 1e-9`` (upper Newton). Results go to
``bench/out/bilevel_layer.json``; ``--docs`` writes the table between the ``bilevel_speed``
markers of docs/bigrad.md.
"""
from __future__ import annotations

import argparse
import datetime
import gc
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DATA_ROOT = Path(os.environ.get("DGL_BILEVEL_DATA", ROOT.parent / "shared" / "data"))
METHODS = ("exact", "second_order", "unrolled", "exact, no preconditioner", "unrolled, no preconditioner")


def _vm(field: str) -> int:
    for line in open("/proc/self/status"):
        if line.startswith(field):
            return int(line.split()[1])  # kB
    return -1


def _reset_peak() -> int:
    """Trim the heap, reset VmHWM, return the RSS (kB)."""
    gc.collect()
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except OSError:
        pass
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
    except OSError:
        pass
    return _vm("VmRSS")


def build(mu: float, steps: int, method: str):
    import torch
    import torch.nn.functional as F

    from dgl_bilevel.data import cora
    from dgl_bilevel.hypergrad import SolveOptions
    from dgl_bilevel.layers import BilevelLayer, LaplacianProgram, LevelSolver

    D = torch.float64
    data = cora(DATA_ROOT, seed=0)
    g = data.graph
    n, c = g.num_nodes(), data.num_classes
    base = torch.zeros(n, c, dtype=D)
    base[data.v_in, data.labels[data.v_in]] = 1.0
    program = LaplacianProgram(g, base, data.labels, data.v_out, mu=mu, alpha=1.0)
    reference = method == "reference"
    backward, _, plain = method.partition(", ")
    upper = LevelSolver("newton", tol=1e-9, max_steps=30, cg_tol=1e-10, cg_maxiter=5000) if reference else \
        LevelSolver("gradient", lr=0.5, tol=1e-8, max_steps=steps)

    def make_layer():
        return BilevelLayer(program.upper, program.lower, upper_solver=upper,
                            lower_solver=LevelSolver("newton", tol=1e-8, cg_tol=1e-8, cg_maxiter=2000),
                            backward="exact" if reference else backward,
                            precondition=None if plain else program.jacobi,
                            solve=SolveOptions("minres", tol=1e-10 if reference else 1e-8, maxiter=20000),
                            adjoint=SolveOptions("cg", tol=1e-8, maxiter=2000),
                            x_init=torch.zeros(n, c, dtype=D), y_init=torch.zeros(n, c, dtype=D), warm_start=False,
                            warn=False)

    def loss(y):
        return F.cross_entropy(y[data.val], data.labels[data.val])

    return make_layer, loss, g.num_edges(), data


def case(method: str, reps: int, mu: float, steps: int, grad_path: str) -> dict:
    """One method in this process: ``reps`` forward + backward passes."""
    import torch

    torch.set_num_threads(1)
    make_layer, loss_fn, num_edges, _ = build(mu, steps, method)
    out = {"forward_s": [], "backward_s": [], "forward_peak_mb": [], "total_peak_mb": []}
    for _ in range(1 if method == "reference" else reps):
        layer = make_layer()
        z = torch.zeros(num_edges, dtype=torch.float64, requires_grad=True)
        base = _reset_peak()
        t0 = time.perf_counter()
        x, y = layer(z)
        loss = loss_fn(y)
        t1 = time.perf_counter()
        forward_peak = _vm("VmHWM") - base
        loss.backward()
        t2 = time.perf_counter()
        out["forward_s"].append(t1 - t0)
        out["backward_s"].append(t2 - t1)
        out["forward_peak_mb"].append(forward_peak / 1024)
        out["total_peak_mb"].append((_vm("VmHWM") - base) / 1024)
        report = layer.last_forward
        out["forward"] = {"upper_gradient": report.upper_gradient, "lower_gradient": report.lower_gradient,
                          "linear_solves": report.linear_solves, "products": report.products,
                          "upper_steps": report.upper_steps}
        out["backward"] = None if layer.last_backward is None else layer.last_backward.as_dict()
        grad = z.grad.detach().clone()
        del x, y, loss, layer, z
    torch.save(grad, grad_path)
    return out


def run(reps: int, mu: float, steps: int) -> dict:
    import torch

    results = {"date": datetime.date.today().isoformat(), "reps": reps, "mu": mu, "steps": steps, "methods": {}}
    grads = {}
    with tempfile.TemporaryDirectory() as tmp:
        for method in ("reference", *METHODS):
            path = str(Path(tmp) / f"{method.replace(' ', '_').replace(',', '')}.pt")
            started = time.perf_counter()
            proc = subprocess.run([sys.executable, __file__, "case", method, "--reps", str(reps), "--mu", str(mu),
                                   "--steps", str(steps), "--grad", path],
                                  capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
            if proc.returncode != 0:
                raise RuntimeError(f"{method} failed:\n{proc.stderr[-3000:]}")
            results["methods"][method] = json.loads(proc.stdout.strip().splitlines()[-1])
            grads[method] = torch.load(path)
            print(f"{method}: {time.perf_counter() - started:.0f} s", file=sys.stderr, flush=True)
    ref = grads["reference"]
    for method in METHODS:
        r = results["methods"][method]
        r["rel_error_vs_reference"] = float((grads[method] - ref).norm() / ref.norm())
        r["rel_diff_vs_exact"] = float((grads[method] - grads["exact"]).norm() / grads["exact"].norm())
    return results


def markdown(results: dict, command: str) -> str:
    m = results["methods"]
    med = lambda r, k: statistics.median(r[k])  # noqa: E731
    lines = [f"Command: `{command}` ({results['date']}; one CPU thread, float64, medians of {results['reps']} "
             f"repetitions; mu = {results['mu']}, {results['steps']} upper steps).", "",
             "| backward | forward s | backward s | total s | peak MB, forward | peak MB, fwd+bwd | backward products | "
             "rel. error vs converged reference | rel. diff. vs exact |",
             "|---|---|---|---|---|---|---|---|---|"]
    for method in METHODS:
        r = m[method]
        products = r["backward"]["iterations"] if r.get("backward") else "-"
        lines.append(f"| {method} | {med(r, 'forward_s'):.2f} | {med(r, 'backward_s'):.2f} | "
                     f"{med(r, 'forward_s') + med(r, 'backward_s'):.2f} | {med(r, 'forward_peak_mb'):.0f} | "
                     f"{med(r, 'total_peak_mb'):.0f} | {products} | {r['rel_error_vs_reference']:.2e} | "
                     f"{r['rel_diff_vs_exact']:.2e} |")
    total = lambda r: med(r, "forward_s") + med(r, "backward_s")  # noqa: E731
    lines.append("")
    for suffix, label in (("", "Jacobi-preconditioned"), (", no preconditioner", "without preconditioner")):
        ex, un = m["exact" + suffix], m["unrolled" + suffix]
        f = ex["forward"]
        lines.append(f"{label}: exact / unrolled = {med(ex, 'backward_s') / med(un, 'backward_s'):.2f} in backward "
                     f"time, {total(ex) / total(un):.2f} in total time, {med(ex, 'total_peak_mb') / med(un, 'total_peak_mb'):.3f} "
                     f"in peak memory. The forward made {f['linear_solves']} Krylov solves ({f['products']} products, "
                     f"{f['products'] / max(f['linear_solves'], 1):.0f} per solve) over {f['upper_steps']} upper steps, "
                     f"ending at |df/dx| = {f['upper_gradient']:.1e}; the exact backward is one MINRES solve of "
                     f"{ex['backward']['iterations']} (third-order) products, relative residual "
                     f"{ex['backward']['residual']:.1e}.")
    return "\n".join(lines)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("mode", nargs="?", default="table", choices=["table", "case"])
    p.add_argument("method", nargs="?", default=None)
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--mu", type=float, default=0.5)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--grad", default=None)
    p.add_argument("--docs", action="store_true", help="write the table into docs/bigrad.md")
    args = p.parse_args(argv)
    if args.mode == "case":
        print(json.dumps(case(args.method, args.reps, args.mu, args.steps, args.grad)))
        return
    results = run(args.reps, args.mu, args.steps)
    out = ROOT / "bench" / "out"
    out.mkdir(parents=True, exist_ok=True)
    (out / "bilevel_layer.json").write_text(json.dumps(results, indent=1))
    command = "OMP_NUM_THREADS=1 .venv/bin/python bench/bilevel_layer.py " + " ".join(argv if argv is not None else sys.argv[1:])
    table = markdown(results, command.strip())
    print(table)
    if args.docs:
        sys.path.insert(0, str(ROOT / "recipes"))
        from common import write_between_markers
        print("written to", write_between_markers(table, "bilevel_speed", ROOT / "docs" / "bigrad.md"))


if __name__ == "__main__":
    main()
