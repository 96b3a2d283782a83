"""Which ``--model`` should a data set without a paper preset get? Every candidate inner GNN, with
default settings otherwise, on every data set at hand; tables of V_in / val / test (mean ± std over
seeds) for docs/lab/default-model.md. Choose by validation, never by test.

The user graphs are written first into ``--work``: Cora saved as a ``.bin`` file (what a user with
Cora in DGL would pass), three degree-skewed power-law graphs (Chung-Lu; binary labels, 20%
positive, homophilous edges; ``skewed-pos`` has non-negative, counts-like features), and an
arxiv-shaped graph in OGB's layout (``dgl-bilevel generate-ogb --scale``). Each run is
``dgl-bilevel run --method METHOD --model M --seeds 3`` (``--inner energy`` for the energy model),
one after the other; finished runs are skipped, so the script resumes.

    OMP_NUM_THREADS=1 .venv/bin/python bench/default_model.py                       # a_obs, ~20 min on 2 cores
    OMP_NUM_THREADS=1 .venv/bin/python bench/default_model.py --method bo --outer-steps 10 \\
        --models sumagg gcn energy sage --datasets cornell texas wisconsin chameleon cora-noise40 skewed-pos.bin
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PRESET_SETS = ["cora", "cheaters", "synthetic1-low"]  # the paper's: reference rows, their default stays sumagg
OTHER_SETS = ["chameleon", "cornell", "texas", "wisconsin", "cora-noise20", "cora-noise40", "cora-noise60",
              "cora-noise80", "ogb05", "ogb25", "cora.bin", "skewed-3k.bin", "skewed-20k.bin", "skewed-pos.bin"]
#: name -> (nodes, mean degree, power-law exponent, feature offset, label signal) of the skewed user graphs
SKEWED = {"skewed-3k": (3000, 20, 1.8, 1.0, 0.5), "skewed-20k": (20000, 40, 2.0, 0.0, 0.5),
          "skewed-pos": (3000, 20, 1.8, 5.0, 1.0)}


def skewed_graph(n: int, mean_degree: int, exponent: float, offset: float, signal: float, seed: int = 0):
    """A Chung-Lu power-law graph with binary labels (20% positive; an edge is kept with
    probability 0.8 between equal labels, 0.2 otherwise), 16 Gaussian features shifted by
    ``offset`` plus ``signal`` times a random direction for the positive class, and a random
    20 / 20 / 60 % train / val / test split."""
    import numpy as np
    import torch

    from dgl_bilevel._dgl import dgl

    rng = np.random.default_rng(seed)
    w = np.arange(1, n + 1) ** (-1.0 / (exponent - 1))
    w /= w.sum()
    labels = (rng.random(n) < 0.2).astype(np.int64)
    m = n * mean_degree // 2
    src, dst = rng.choice(n, 4 * m, p=w), rng.choice(n, 4 * m, p=w)
    keep = (rng.random(src.size) < np.where(labels[src] == labels[dst], 0.8, 0.2)) & (src != dst)
    g = dgl.to_simple(dgl.to_bidirected(dgl.graph((torch.from_numpy(src[keep][:m]),
                                                   torch.from_numpy(dst[keep][:m])), num_nodes=n)))
    features = offset + rng.normal(size=(n, 16)) + signal * labels[:, None] * rng.normal(size=(1, 16))
    g.ndata["feat"] = torch.tensor(features, dtype=torch.float32)
    g.ndata["label"] = torch.from_numpy(labels)
    order = rng.permutation(n)
    for name, nodes in (("train_mask", order[: n // 5]), ("val_mask", order[n // 5: 2 * n // 5]),
                        ("test_mask", order[2 * n // 5:])):
        mask = torch.zeros(n, dtype=torch.bool)
        mask[torch.from_numpy(nodes)] = True
        g.ndata[name] = mask
    return g


def write_inputs(work: Path) -> None:
    from dgl_bilevel._dgl import dgl
    from dgl_bilevel.data.planetoid import load_cora_graph

    work.mkdir(parents=True, exist_ok=True)
    if not (work / "cora.bin").exists():
        cora = load_cora_graph()
        user = dgl.graph(cora.edges(), num_nodes=cora.num_nodes())
        for key in ("feat", "label", "train_mask", "val_mask", "test_mask"):
            user.ndata[key] = cora.ndata[key]
        dgl.save_graphs(str(work / "cora.bin"), [user])
    for name, shape in SKEWED.items():
        if not (work / f"{name}.bin").exists():
            dgl.save_graphs(str(work / f"{name}.bin"), [skewed_graph(*shape)])
    for name, scale in (("ogb05", "0.05"), ("ogb25", "0.25")):
        if not (work / name / "ogbn_arxiv").exists():
            subprocess.run([sys.executable, "-m", "dgl_bilevel.cli", "generate-ogb", "--root", str(work / name),
                            "--scale", scale], check=True, cwd=ROOT)


def dataset_args(name: str, work: Path) -> list[str]:
    if name.startswith("ogb"):
        return ["--dataset", "ogbn-arxiv", "--data-root", str(work / name)]
    if name.endswith(".bin"):
        return ["--dataset", str(work / name)]
    return ["--dataset", name]


def table(out: Path, datasets: list[str], models: list[str]) -> str:
    rows = ["| data set | metric | " + " | ".join(f"{m}: V_in / val / test" for m in models) + " |",
            "|---|---|" + "---|" * len(models)]
    for name in datasets:
        cells, metric = [], ""
        for model in models:
            path = out / name / model / "summary.json"
            if not path.exists():
                cells.append("–")
                continue
            summary = json.loads(path.read_text())
            metric, aggregate = summary["metric"], summary["aggregate"]
            scale, digits = (100, 1) if metric == "acc" else (1, 3)
            cells.append(" / ".join(f"{scale * aggregate[f'{split}_{metric}']['mean']:.{digits}f} ± "
                                    f"{scale * aggregate[f'{split}_{metric}']['std']:.{digits}f}"
                                    for split in ("v_in", "val", "test")))
        rows.append(f"| {name} | {metric} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--method", default="a_obs")
    p.add_argument("--models", nargs="*", default=["sumagg", "gcn", "energy", "sage", "appnp"])
    p.add_argument("--datasets", nargs="*", default=PRESET_SETS + OTHER_SETS)
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--work", type=Path, default=ROOT / "results" / "default-model")
    args, extra = p.parse_known_args(argv)  # anything else goes to every run (--outer-steps 10)
    write_inputs(args.work)
    out = args.work / args.method
    for name in args.datasets:
        for model in args.models:
            if (out / name / model / "summary.json").exists():
                continue
            (out / name).mkdir(parents=True, exist_ok=True)
            choice = ["--inner", "energy"] if model == "energy" else ["--model", model]
            command = [sys.executable, "-m", "dgl_bilevel.cli", "run", *dataset_args(name, args.work), "--method",
                       args.method, *choice, "--seeds", str(args.seeds), "--out", str(out / name), "--name", model,
                       "--no-progress", "--no-save-graph", *extra]
            started = time.perf_counter()
            with open(out / name / f"{model}.log", "w") as log:
                code = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT).returncode
            print(f"{args.method} {name} {model}: exit {code}, {time.perf_counter() - started:.0f} s", flush=True)
    print(table(out, args.datasets, args.models))


if __name__ == "__main__":
    main()
