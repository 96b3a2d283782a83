"""Robust control with an adversarial disturbance: a bilevel layer trained end to end (BiGrad's
continuous experiment, our version), against a single-level implicit layer and LQR.

    OMP_NUM_THREADS=1 .venv/bin/python recipes/robust_control.py                 # T = 10 and 30, 3 seeds (~8 min)
    OMP_NUM_THREADS=1 .venv/bin/python recipes/robust_control.py --horizons 10 --seeds 1 --steps 20
    OMP_NUM_THREADS=1 .venv/bin/python recipes/robust_control.py --report-only   # the table from saved results

**System.** ``s_{t+1} = A s_t + B u_t + d_t`` with ``n = 4`` states and ``m = 2`` controls; ``A``
and ``B`` are Gaussian draws (seed 0), ``A`` scaled to spectral radius 0.5. The true cost of a
plan is ``J = (1/T) sum_t (s_t' Q s_t + u_t' R u_t)`` with ``Q = diag(2, 1, 0.5, 1)``, ``R = I``.
The disturbance is an adversary that sees the plan and maximises ``J - rho/2 |d|^2`` with
``rho`` = 1.1 x the smallest value keeping that concave (per horizon). Initial states
``s_0 ~ N(0, I)``: 128 for training, 1000 held out, drawn per seed.

**Controllers** (open-loop plans over the horizon ``T``, from ``s_0``):

* *LQR plan*: ``argmin_u J(u, d = 0)`` with the true ``Q``, ``R`` (no learning).
* *LQR feedback*: ``u_t = -K s_t`` with the infinite-horizon LQR gain, in closed loop: it sees
  the disturbance as it happens, which no plan here does (a reference, not a competitor).
* *single-level layer*: ``argmin_u J_z(u, 0)``, an implicit layer (``custom_root``), where
  ``z = (q, r)`` are diagonal cost weights produced from ``s_0`` by a small network
  (4 -> 32 -> 6, tanh, softplus), initialised at ``q = 1, r = 0.3`` (a misspecified design).
* *bilevel layer*: :class:`~dgl_bilevel.layers.BilevelLayer` on
  :class:`~dgl_bilevel.layers.RobustLQ`: ``min_u J_z(u, d*)`` with ``d* = argmax_d J_z(u, d) -
  rho_z/2 |d|^2``; the same network with one more output ``a``, ``rho_z = (1 + softplus(a))``
  x the concavity threshold of ``q`` (initialised at 10 x: a weak adversary). Forward: the
  program's dense closed-form solver (a user solver); backward: the exact saddle-point system
  (MINRES, tol 1e-8).
* *min-max plan, true weights*: the bilevel program with the true ``Q``, ``R``, ``rho`` (an
  oracle: the best open-loop plan against this adversary).

Both layers are trained by Adam (lr 0.03, 60 full-batch steps) on the true worst-case cost of
their plan, ``J(u, d*_true(u))``. Evaluation on the held-out states: that worst-case cost, the
cost under random Gaussian disturbances with the mean energy of the worst case against the LQR
plan (20 draws per state), and the cost without disturbance. Mean +- std over 3 seeds (network
initialisation and data). Results: ``results/robust_control/results.json``; the table is
written between the ``robust_control`` markers of docs/bigrad.md.
"""
from __future__ import annotations

import argparse
import datetime
import json
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "recipes"))

from dgl_bilevel.hypergrad import SolveOptions, custom_root, stationarity  # noqa: E402
from dgl_bilevel.layers import BilevelLayer, RobustLQ  # noqa: E402

D = torch.float64
N_STATE, N_CONTROL = 4, 2
Q_TRUE = torch.tensor([2.0, 1.0, 0.5, 1.0], dtype=D)
R_TRUE = torch.tensor([1.0, 1.0], dtype=D)
RHO_FACTOR = 1.1
SPECTRAL_RADIUS = 0.5


def system() -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    A = torch.randn(N_STATE, N_STATE, generator=gen, dtype=D)
    A = SPECTRAL_RADIUS * A / torch.linalg.eigvals(A).abs().max()
    B = torch.randn(N_STATE, N_CONTROL, generator=gen, dtype=D)
    return A, B


def lqr_gain(A: torch.Tensor, B: torch.Tensor, iterations: int = 2000) -> torch.Tensor:
    """Infinite-horizon discrete LQR gain by Riccati iteration."""
    P = torch.diag(Q_TRUE)
    R = torch.diag(R_TRUE)
    for _ in range(iterations):
        K = torch.linalg.solve(R + B.T @ P @ B, B.T @ P @ A)
        P = torch.diag(Q_TRUE) + A.T @ P @ (A - B @ K)
    return K


def worst_case(M: torch.Tensor, c: torch.Tensor, W: torch.Tensor, T: int, rho: float) -> torch.Tensor:
    """``max_d (1/T) |M d + c|_W^2 - rho/2 |d|^2`` per sample: the maximiser ``d`` ([b, dim])."""
    N = rho * torch.eye(M.shape[-1], dtype=D) - (2.0 / T) * M.transpose(-1, -2) @ (W.unsqueeze(-1) * M)
    if torch.linalg.eigvalsh(N).min() <= 0:
        return None
    return torch.linalg.solve(N, ((2.0 / T) * (W * c) @ M).T).T


class Evaluator:
    """True costs of open-loop plans and of the LQR feedback under the three disturbances."""

    def __init__(self, lq: RobustLQ, rho: float, s0: torch.Tensor, sigma: float, draws: int = 20, seed: int = 0):
        self.lq, self.rho, self.s0, self.T = lq, rho, s0, lq.T
        gen = torch.Generator().manual_seed(seed + 1000)
        self.noise = sigma * torch.randn(draws, *s0.shape[:1], lq.T, lq.n, generator=gen, dtype=D)

    def plan(self, u: torch.Tensor) -> dict:
        lq, s0 = self.lq, self.s0
        d = lq.worst_disturbance(s0, u, Q_TRUE.expand(s0.shape[0], -1), torch.full((s0.shape[0],), self.rho, dtype=D))
        zero = torch.zeros_like(d)
        random = torch.stack([lq.cost(s0, u, n, Q_TRUE, R_TRUE) for n in self.noise]).mean(0)
        return {"worst": float(lq.cost(s0, u, d, Q_TRUE, R_TRUE).mean()), "nominal": float(lq.cost(s0, u, zero, Q_TRUE, R_TRUE).mean()),
                "random": float(random.mean())}

    def feedback(self, A: torch.Tensor, B: torch.Tensor, K: torch.Tensor) -> dict:
        """``u_t = -K s_t``: states and controls are affine in ``d``; the worst case in closed form."""
        T, n, m = self.T, self.lq.n, self.lq.m
        Acl = A - B @ K
        powers = [torch.eye(n, dtype=D)]
        for _ in range(T):
            powers.append(Acl @ powers[-1])
        S_d = torch.zeros(T * n, T * n, dtype=D)
        for t in range(T):
            for k in range(t + 1):
                S_d[t * n:(t + 1) * n, k * n:(k + 1) * n] = powers[t - k]
        S_0 = torch.cat(powers[1:], 0)
        # controls u_t = -K s_t for t = 0..T-1: s_0 and the first T-1 stacked states
        U_d = torch.zeros(T * m, T * n, dtype=D)
        U_0 = torch.zeros(T * m, n, dtype=D)
        U_0[:m] = -K
        for t in range(1, T):
            U_d[t * m:(t + 1) * m] = -K @ S_d[(t - 1) * n:t * n]
            U_0[t * m:(t + 1) * m] = -K @ S_0[(t - 1) * n:t * n]
        M = torch.cat([S_d, U_d], 0)
        W = torch.cat([Q_TRUE.repeat(T), R_TRUE.repeat(T)])
        c = torch.cat([self.s0 @ S_0.T, self.s0 @ U_0.T], 1)

        def cost(d):
            v = d.reshape(d.shape[0], -1) @ M.T + c
            return ((v * v * W).sum(1) / T)

        d = worst_case(M, c, W, T, self.rho)
        out = {"worst": float("inf") if d is None else float(cost(d).mean()),
               "nominal": float(cost(torch.zeros(self.s0.shape[0], T * n, dtype=D)).mean()),
               "random": float(torch.stack([cost(nz.reshape(nz.shape[0], -1)) for nz in self.noise]).mean())}
        return out


class WeightNet(nn.Module):
    """``s_0 -> (q, r[, a])``: positive diagonal cost weights (and the adversary's strength)."""

    def __init__(self, outputs: int, init: list, seed: int):
        super().__init__()
        torch.manual_seed(seed)
        self.net = nn.Sequential(nn.Linear(N_STATE, 32), nn.Tanh(), nn.Linear(32, outputs)).to(D)
        with torch.no_grad():
            self.net[2].weight.mul_(0.1)
            self.net[2].bias.copy_(torch.tensor(init, dtype=D))

    def forward(self, s0):
        return self.net(s0)


def softplus_inverse(v: float) -> float:
    return float(torch.log(torch.expm1(torch.tensor(v, dtype=D))))


#: the network's initial output: q = 1, r = 0.3 (a misspecified design; the truth is diag(2, 1, 0.5, 1), 1)
INIT = [softplus_inverse(1.0)] * N_STATE + [softplus_inverse(0.3)] * N_CONTROL


class SingleLevel(nn.Module):
    """``argmin_u J_z(u, 0)`` with ``z = (q, r)`` from the network: an implicit layer (custom_root)."""

    def __init__(self, lq: RobustLQ, seed: int):
        super().__init__()
        self.lq = lq
        self.weights = WeightNet(N_STATE + N_CONTROL, INIT, seed)
        objective = lambda u, s0, q, r: lq.cost(s0, u, torch.zeros(*u.shape[:2], lq.n, dtype=D), q, r).sum()  # noqa: E731
        self.solve = custom_root(stationarity(objective), solve="cg", tol=1e-10, maxiter=500)(
            lambda init, s0, q, r: lq.nominal_plan(s0, q, r))

    def forward(self, s0):
        out = F.softplus(self.weights(s0)) + 1e-3
        q, r = out[:, :N_STATE], out[:, N_STATE:]
        return self.solve(None, s0, q, r)


class Bilevel(nn.Module):
    """The bilevel layer on :class:`RobustLQ` with ``z = (s0, q, r, rho)`` from the network."""

    def __init__(self, lq: RobustLQ, seed: int):
        super().__init__()
        self.lq = lq
        self.weights = WeightNet(N_STATE + N_CONTROL + 1, INIT + [softplus_inverse(9.0)], seed)
        self.layer = BilevelLayer(lq.upper, lq.lower, upper_solver=lq.solve,
                                  solve=SolveOptions("minres", tol=1e-8, maxiter=2000),
                                  x_init=torch.zeros(1, lq.T, lq.m, dtype=D), y_init=torch.zeros(1, lq.T, lq.n, dtype=D),
                                  warm_start=False)

    def forward(self, s0):
        out = self.weights(s0)
        q = F.softplus(out[:, :N_STATE]) + 1e-3
        r = F.softplus(out[:, N_STATE:N_STATE + N_CONTROL]) + 1e-3
        rho = self.lq.concavity_threshold(q) * (1 + F.softplus(out[:, -1]))
        b = s0.shape[0]
        u, _ = self.layer((s0, q, r, rho), torch.zeros(b, self.lq.T, self.lq.m, dtype=D),
                          torch.zeros(b, self.lq.T, self.lq.n, dtype=D))
        return u


def train(model: nn.Module, lq: RobustLQ, rho: float, s0: torch.Tensor, steps: int, lr: float) -> dict:
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    q = Q_TRUE.expand(s0.shape[0], -1)
    rhos = torch.full((s0.shape[0],), rho, dtype=D)
    history, iterations = [], []
    start = time.perf_counter()
    for _ in range(steps):
        u = model(s0)
        loss = lq.cost(s0, u, lq.worst_disturbance(s0, u, q, rhos), Q_TRUE, R_TRUE).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        history.append(float(loss.detach()))
        if isinstance(model, Bilevel):
            iterations.append(model.layer.last_backward.iterations)
    out = {"loss_first": history[0], "loss_last": history[-1], "seconds": time.perf_counter() - start}
    if iterations:
        out["minres_iterations_median"] = statistics.median(iterations)
        out["minres_iterations_max"] = max(iterations)
    return out


def run(horizon: int, seed: int, steps: int, lr: float, n_train: int, n_test: int) -> dict:
    A, B = system()
    lq = RobustLQ(A, B, horizon)
    rho = RHO_FACTOR * float(lq.concavity_threshold(Q_TRUE.unsqueeze(0))[0])
    gen = torch.Generator().manual_seed(seed)
    s_train = torch.randn(n_train, N_STATE, generator=gen, dtype=D)
    s_test = torch.randn(n_test, N_STATE, generator=gen, dtype=D)
    # random disturbances with the energy of the worst case against the LQR plan
    lqr_plan = lq.nominal_plan(s_test, Q_TRUE, R_TRUE)
    d_lqr = lq.worst_disturbance(s_test, lqr_plan, Q_TRUE.expand(n_test, -1), torch.full((n_test,), rho, dtype=D))
    sigma = float(d_lqr.pow(2).sum((1, 2)).mean() / (horizon * N_STATE)) ** 0.5
    ev = Evaluator(lq, rho, s_test, sigma, seed=seed)
    rows = {"LQR plan": ev.plan(lqr_plan), "LQR feedback (closed loop)": ev.feedback(A, B, lqr_gain(A, B))}
    for name, cls in (("single-level layer", SingleLevel), ("bilevel layer", Bilevel)):
        model = cls(lq, seed)
        with torch.no_grad():
            initial = ev.plan(model(s_test))
        info = train(model, lq, rho, s_train, steps, lr)
        with torch.no_grad():
            rows[name] = {**ev.plan(model(s_test)), "initial_worst": initial["worst"], **info}
    robust_oracle = lq.solve((s_test, Q_TRUE.expand(n_test, -1), R_TRUE.expand(n_test, -1), torch.full((n_test,), rho, dtype=D)))[0]
    rows["min-max plan, true weights (oracle)"] = ev.plan(robust_oracle)
    return {"horizon": horizon, "seed": seed, "rho": rho, "sigma": sigma, "rows": rows}


ROWS = ("LQR plan", "LQR feedback (closed loop)", "single-level layer", "bilevel layer", "min-max plan, true weights (oracle)")


def fmt(values: list) -> str:
    if any(v == float("inf") for v in values):
        return "unbounded"
    mean = statistics.mean(values)
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{mean:.4f} ± {std:.4f}"


def markdown(results: list, command: str) -> str:
    horizons = sorted({r["horizon"] for r in results})
    seeds = sorted({r["seed"] for r in results})
    lines = [f"Command: `{command}` ({datetime.date(2026, 11, 23).isoformat()}; {len(seeds)} seeds, CPU). "
             "Average cost per step on 1000 held-out initial states, mean ± std over seeds.", ""]
    lines.append("| T | controller | worst-case disturbance | random disturbance | no disturbance | train s |")
    lines.append("|---|---|---|---|---|---|")
    for T in horizons:
        runs = [r for r in results if r["horizon"] == T]
        for row in ROWS:
            cells = [fmt([r["rows"][row][k] for r in runs]) for k in ("worst", "random", "nominal")]
            secs = [r["rows"][row].get("seconds") for r in runs]
            sec = f"{statistics.mean(secs):.1f}" if all(s is not None for s in secs) else ""
            lines.append(f"| {T} | {row} | " + " | ".join(cells) + f" | {sec} |")
    lines.append("")
    for T in horizons:
        runs = [r for r in results if r["horizon"] == T]
        paired = {k: [100 * (r["rows"]["bilevel layer"][k] / r["rows"]["single-level layer"][k] - 1) for r in runs]
                  for k in ("worst", "random", "nominal")}
        lines.append(f"T = {T}, bilevel against single-level, paired by seed (cost change in %): worst case "
                     f"{fmt_pct(paired['worst'])}, random {fmt_pct(paired['random'])}, no disturbance "
                     f"{fmt_pct(paired['nominal'])}.")
    return "\n".join(lines)


def fmt_pct(values: list) -> str:
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):+.1f} ± {std:.1f}"


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--horizons", type=int, nargs="+", default=[10, 30])
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--steps", type=int, default=60)
    p.add_argument("--lr", type=float, default=0.03)
    p.add_argument("--train", type=int, default=128)
    p.add_argument("--test", type=int, default=1000)
    p.add_argument("--out", default=str(ROOT / "results" / "robust_control"))
    p.add_argument("--no-docs", action="store_true", help="do not write the table into docs/bigrad.md")
    p.add_argument("--report-only", action="store_true", help="rebuild the table from OUT/results.json")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    out = Path(args.out)
    if args.report_only:
        saved = json.loads((out / "results.json").read_text())
        results, command = saved["runs"], saved["command"]
        args.horizons = []
    else:
        results = []
        command = "OMP_NUM_THREADS=1 .venv/bin/python recipes/robust_control.py " + " ".join(
            argv if argv is not None else sys.argv[1:])
    for T in args.horizons:
        for seed in range(args.seeds):
            t0 = time.perf_counter()
            results.append(run(T, seed, args.steps, args.lr, args.train, args.test))
            rows = results[-1]["rows"]
            print(f"T={T} seed={seed} ({time.perf_counter() - t0:.0f} s): " + ", ".join(
                f"{k}: {v['worst']:.4f}" for k, v in rows.items()), flush=True)
    if not args.report_only:
        out.mkdir(parents=True, exist_ok=True)
        (out / "results.json").write_text(json.dumps({"command": command.strip(), "runs": results}, indent=1))
    table = markdown(results, command.strip())
    print(table)
    if not args.no_docs:
        from common import write_between_markers
        print("written to", write_between_markers(table, "robust_control", ROOT / "docs" / "bigrad.md"))


if __name__ == "__main__":
    main()
