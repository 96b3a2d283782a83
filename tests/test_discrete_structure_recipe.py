"""recipes/discrete_structure.py: its helpers against hand computations, and a tiny end-to-end run."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

from dgl_bilevel._dgl import dgl
from dgl_bilevel.data import cheaters

RECIPES = Path(__file__).resolve().parents[1] / "recipes"
sys.path.insert(0, str(RECIPES))

import discrete_structure as ds  # noqa: E402


def test_precision_recall_f1_by_hand():
    # selected {1, 2, 3, 4}, true {3, 4, 5}: 2 hits -> P = 2/4, R = 2/3, F1 = 2PR/(P+R) = 4/7
    out = ds.precision_recall_f1(torch.tensor([1, 2, 3, 4, 4]), torch.tensor([5, 3, 4]))
    assert out["hits"] == 2 and out["selected"] == 4
    assert abs(out["precision"] - 0.5) < 1e-12 and abs(out["recall"] - 2 / 3) < 1e-12
    assert abs(out["f1"] - 4 / 7) < 1e-12
    nothing = ds.precision_recall_f1(torch.tensor([1]), torch.tensor([2]))
    assert nothing["f1"] == 0.0


def test_true_pairs_are_the_upper_triangle_above_one_half():
    a = torch.tensor([[1.0, 0.9, 0.2], [0.9, 1.0, 0.5], [0.2, 0.5, 1.0]])
    assert ds.true_pair_keys(a).tolist() == [0 * 3 + 1, 1 * 3 + 2]  # (0,1) and (1,2); no diagonal, not (0,2)


def test_thresholding_keeps_exactly_b_pairs_both_directions():
    # a 5-cycle stored in both directions: 5 pairs, 10 edges
    src = torch.arange(5)
    dst = (src + 1) % 5
    g = dgl.graph((torch.cat([src, dst]), torch.cat([dst, src])), num_nodes=5)
    index, keys = ds.pair_keys(g)
    assert keys.numel() == 5 and index.numel() == 10
    weights = torch.rand(10, generator=torch.Generator().manual_seed(0))
    for budget in range(1, 6):
        mask = ds.threshold_pairs(weights, index, 5, budget)
        assert int(mask.sum()) == 2 * budget
        chosen = ds.selected_keys(mask, index, keys)
        assert chosen.numel() == budget
        # both directions of every chosen pair are in, and the chosen pairs have the largest mean weights
        pair_mean = torch.zeros(5, dtype=torch.float64).index_add_(0, index, weights.double()) / 2
        assert set(chosen.tolist()) == set(keys[pair_mean.argsort(descending=True)[:budget]].tolist())
        for e in range(10):
            assert mask[e] == mask[(e + 5) % 10]


def test_tiny_end_to_end(tmp_path):
    data = cheaters(n=64, seed=0).to(torch.float32)
    lines = []
    res = ds.run_seed("cheaters", 0, tmp_path, methods=("ste", "continuous", "random"), shares=(0.5, 1.0),
                      outer_steps=2, data=data, echo=lines.append)
    budgets = res["budgets"]
    true = res["true_pairs"]
    assert budgets == {"0.5": round(0.5 * true), "1.0": true}
    for share, budget in budgets.items():
        for rec in (res["ste"][share], res["continuous"]["budgets"][share], res["references"]["random"][share]):
            assert rec["pairs"] == budget and rec["selected"] == budget
            assert 0.0 <= rec["f1"] <= 1.0 and 0.0 <= rec["test_acc"] <= 1.0
    assert res["ste"]["0.5"]["command"].startswith("dgl-bilevel run --dataset cheaters --inner laplacian")
    star = res["references"]["a_star"]
    assert star["recall"] == 1.0 - star["outside_candidates"] / true and star["precision"] == 1.0
    files = sorted(p.name for p in (tmp_path / "laplacian" / "cheaters").iterdir())
    assert files == ["continuous_seed0.json", "references_seed0.json", "ste_share0.5_seed0.json",
                     "ste_share1.0_seed0.json"]
    assert json.loads((tmp_path / "laplacian" / "cheaters" / "ste_share0.5_seed0.json").read_text())["settings"][
        "budget_pairs"] == budgets["0.5"]
    # a rerun reads the finished runs back instead of running again
    again = ds.run_seed("cheaters", 0, tmp_path, methods=("ste", "continuous", "random"), shares=(0.5, 1.0),
                        outer_steps=2, data=data, echo=lines.append, run=False)
    assert again["ste"]["0.5"]["test_acc"] == res["ste"]["0.5"]["test_acc"] and len(lines) == 3
    table = ds.markdown({"cheaters": [{"seed": 0, **res}]}, "cmd")
    assert "top-k, straight-through" in table and " F1 |" in table
    assert ds.figure({"cheaters": [{"seed": 0, **res}]}, tmp_path / "fig.png").is_file()
