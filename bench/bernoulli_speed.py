"""What sampling costs: a Bernoulli outer iteration against an edge-weight one, same graph, same inner model.

Both structures live on the same candidate graph (Cora's observed edges plus a symmetric cosine
k-NN graph, ``--knn-k``), with the inner problem and hypergradient of ``--config`` (default: the
energy model of ``recipes/configs/cora-best.yaml``, implicit). Outer iterations of the two
alternate in one process (A/B/A/B ...), so machine load hits both alike; the ratio of the medians
is printed for each number of graphs a prediction averages over (``--eval-samples``), and, with
``--scale``, the peak memory and seconds per iteration on the arxiv-shaped generated graph.

    OMP_NUM_THREADS=1 .venv/bin/python bench/bernoulli_speed.py
    OMP_NUM_THREADS=1 .venv/bin/python bench/bernoulli_speed.py --eval-samples 0 1 8 --iterations 15
    .venv/bin/python bench/bernoulli_speed.py --scale 1 --knn-k 10 --eval-samples 1 --iterations 2   # 169,343 nodes
"""
from __future__ import annotations

import argparse
import resource
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from dgl_bilevel.config import ExperimentConfig, load_yaml  # noqa: E402
from dgl_bilevel.experiment.build import build_hypergrad, build_inner  # noqa: E402
from dgl_bilevel.experiment.seed_files import run_data  # noqa: E402
from dgl_bilevel.outer import OuterLoop  # noqa: E402
from dgl_bilevel.structure import BernoulliEdges, EdgeWeights, GraphSampler, observed_knn_support  # noqa: E402


def loop_for(config: ExperimentConfig, data, structure) -> OuterLoop:
    inner = build_inner(config, data)
    return OuterLoop(data, structure, inner, build_hypergrad(config, inner), outer_steps=10**6, lr=config.outer_lr,
                     seed=0)


def timed(loop: OuterLoop) -> float:
    started = time.perf_counter()
    loop.step()
    return time.perf_counter() - started


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--config", default=str(ROOT / "recipes" / "configs" / "cora-best.yaml"))
    p.add_argument("--eval-samples", nargs="+", type=int, default=[1, 8])
    p.add_argument("--iterations", type=int, default=10, help="timed iterations per structure (after one warm-up)")
    p.add_argument("--knn-k", type=int, default=20, help="k-NN candidates per node (cora-best.yaml: 20)")
    p.add_argument("--scale", type=float, default=None, help="the arxiv-shaped generated graph at this scale instead")
    args = p.parse_args(argv)
    values = load_yaml(args.config)
    values.update(seeds=1, progress=False, knn_k=args.knn_k, knn_metric="cosine")  # options resolved as for Cora
    config = ExperimentConfig(**values).resolved()
    if args.scale is not None:
        from dgl_bilevel.data.generated import arxiv_like_bilevel

        data = arxiv_like_bilevel(scale=args.scale, seed=0)
    else:
        data = run_data(config, 0)
    tic = time.perf_counter()
    support = observed_knn_support(data.graph, data.features, args.knn_k, "cosine")
    print(f"{data.name}: {data.num_nodes:,} nodes; candidates {support.num_edges():,} directed edges "
          f"(observed {data.num_edges:,}), k-NN built in {time.perf_counter() - tic:.1f} s", flush=True)
    dense_bytes = data.num_nodes ** 2 * 4 * 3  # theta, its gradient and one Adam moment, float32, N x N
    print(f"a dense N x N Bernoulli parameter (LDS) would need {dense_bytes / 2**30:,.1f} GiB for theta, its "
          "gradient and one Adam moment alone")
    edges = EdgeWeights(support, parametrization="sigmoid", init="uniform", generator=torch.Generator().manual_seed(0))
    base = loop_for(config, data, edges)
    for eval_samples in args.eval_samples:
        sampler = GraphSampler(samples=1, resample="outer", eval_samples=eval_samples,
                               generator=torch.Generator().manual_seed(0))
        bern = loop_for(config, data, BernoulliEdges(support, candidate_value=config.theta_candidate, sampler=sampler))
        timed(base), timed(bern)  # warm-up
        a, b = [], []
        for _ in range(args.iterations):
            a.append(timed(base))
            b.append(timed(bern))
        ratio = statistics.median(b) / statistics.median(a)
        print(f"eval_samples {eval_samples}: edge weights {statistics.median(a):.3f} s, Bernoulli (1 graph per "
              f"solve) {statistics.median(b):.3f} s per outer iteration (medians of {args.iterations}); "
              f"ratio {ratio:.2f}", flush=True)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print(f"peak RSS of this process: {peak:.2f} GiB")


if __name__ == "__main__":
    main()
