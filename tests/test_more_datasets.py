"""More real data sets through DGL's own classes (CiteSeer, PubMed, the heterophilous benchmark),
binary ROC-AUC, a user's own graph file, and ``dgl-bilevel datasets`` -- on small files the tests write."""
from __future__ import annotations

import json
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml
import scipy.sparse as sp
import torch

from dgl_bilevel._dgl import dgl
from dgl_bilevel.cli import main
from dgl_bilevel.config import ExperimentConfig, is_graph_file, preset
from dgl_bilevel.data import citeseer, cora, load_dataset, load_graph_file, planetoid, pubmed
from dgl_bilevel.data.heterophilous import heterophilous
from dgl_bilevel.errors import ConfigError, DataError
from dgl_bilevel.losses import BINARY_ROCAUC, binary_scores, roc_auc

# ----------------------------------------------------------------------------- Planetoid files
N_TRAIN, N_ALL, FEATURES, CLASSES = 10, 520, 6, 3  # DGL's validation set is nodes N_TRAIN .. N_TRAIN + 499


def write_planetoid(folder: Path, name: str, test_nodes: list[int], seed: int = 0) -> dict:
    """Planetoid pickles for ``name`` in ``folder``; returns what each node should hold after DGL's
    processing: ``features`` (raw counts, before row normalisation), ``labels``, ``nodes``, ``edges``."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    n = max(test_nodes) + 1
    counts = rng.integers(0, 3, size=(n, FEATURES)).astype(np.float32)
    counts[np.arange(n), rng.integers(0, FEATURES, size=n)] += 1.0  # no empty row
    classes = rng.integers(0, CLASSES, size=n)
    onehot = np.eye(CLASSES, dtype=np.int32)[classes]
    order = list(rng.permutation(test_nodes))  # test.index is not sorted in the real files
    objects = {
        "x": sp.csr_matrix(counts[:N_TRAIN]), "y": onehot[:N_TRAIN],
        "allx": sp.csr_matrix(counts[:N_ALL]), "ally": onehot[:N_ALL],
        "tx": sp.csr_matrix(counts[order]), "ty": onehot[order],
    }
    graph: dict[int, list[int]] = {i: [] for i in range(n)}
    edges = set()
    for i in range(n):  # a ring over the non-gap nodes, plus chords
        if i in test_nodes or i < N_ALL:
            j = next(k for k in range(i + 1, i + n + 1) if (k % n) in test_nodes or (k % n) < N_ALL) % n
            edges.add((min(i, j), max(i, j)))
    for _ in range(n):
        i, j = rng.integers(0, N_ALL, size=2)
        if i != j:
            edges.add((int(min(i, j)), int(max(i, j))))
    for i, j in edges:
        graph[i].append(j)
        graph[j].append(i)
    graph[3].append(3)  # a self-loop, as CiteSeer and PubMed have: dropped on loading
    objects["graph"] = graph
    for suffix, obj in objects.items():
        with open(folder / f"ind.{name}.{suffix}", "wb") as handle:
            pickle.dump(obj, handle)
    (folder / f"ind.{name}.test.index").write_text("\n".join(str(i) for i in order) + "\n")
    labels = classes.copy()
    gaps = sorted(set(range(N_ALL, n)) - set(test_nodes))
    counts[gaps] = 0.0  # nodes missing from test.index: DGL adds them as zero rows with label 0
    labels[gaps] = 0
    return {"features": counts, "labels": labels, "n": n, "gaps": gaps, "edges": edges}


CITESEER_TEST = [520, 521, 523, 524, 527, 528, 529, 531]  # gaps 522, 525, 526, 530
PUBMED_TEST = list(range(520, 528))


@pytest.fixture
def planetoid_root(tmp_path) -> tuple[Path, dict]:
    folder = tmp_path / "planetoid"
    written = {"citeseer": write_planetoid(folder, "citeseer", CITESEER_TEST, seed=1),
               "pubmed": write_planetoid(folder, "pubmed", PUBMED_TEST, seed=2)}
    return tmp_path, written


def _check_planetoid(data, written, test_nodes):
    n = written["n"]
    assert data.num_nodes == n and data.num_features == FEATURES and data.num_classes == CLASSES
    raw = torch.from_numpy(written["features"])
    sums = raw.sum(1, keepdim=True)
    expected = torch.where(sums > 0, raw / sums.clamp_min(1e-12), torch.zeros_like(raw))
    assert torch.allclose(data.features, expected, atol=1e-6)  # DGL's row normalisation, in node order
    assert torch.equal(data.labels, torch.from_numpy(written["labels"]).long())
    assert torch.equal(data.v_in, torch.arange(N_TRAIN))
    assert torch.equal(torch.cat([data.v_out, data.val]).sort().values, torch.arange(N_TRAIN, N_TRAIN + 500))
    assert data.v_out.numel() == data.val.numel() == 250
    assert torch.equal(data.test, torch.tensor(sorted(test_nodes)))
    src, dst = data.graph.edges()
    assert not bool((src == dst).any())  # the self-loop is gone
    assert data.num_edges == 2 * len(written["edges"])
    undirected = {(min(int(a), int(b)), max(int(a), int(b))) for a, b in zip(src, dst)}
    assert undirected == written["edges"]


def test_citeseer_format_with_isolated_test_nodes(planetoid_root):
    root, written = planetoid_root
    data = citeseer(root, seed=0)
    _check_planetoid(data, written["citeseer"], CITESEER_TEST)
    gaps = torch.tensor(written["citeseer"]["gaps"])
    assert gaps.tolist() == [522, 525, 526, 530]
    assert bool((data.features[gaps] == 0).all()) and bool((data.labels[gaps] == 0).all())
    labelled = data.labelled()
    assert not bool(torch.isin(gaps, labelled).any())  # in no node set
    assert data.name == "citeseer"


def test_pubmed_format(planetoid_root):
    root, written = planetoid_root
    data = load_dataset("pubmed", root, seed=5)
    _check_planetoid(data, written["pubmed"], PUBMED_TEST)
    again, other = pubmed(root, seed=5), pubmed(root, seed=6)
    assert torch.equal(data.v_out, again.v_out) and not torch.equal(data.v_out, other.v_out)


def test_cora_through_the_shared_planetoid_loader(data_root):
    a, b = planetoid("cora", data_root, seed=2), cora(data_root, seed=2)
    assert a.name == b.name == "cora" and a.num_nodes == 2708 and a.num_classes == 7
    assert torch.equal(a.v_out, b.v_out) and torch.equal(a.features, b.features)


def test_missing_planetoid_files_are_named(tmp_path, data_root):
    shutil.copytree(data_root / "planetoid", tmp_path / "planetoid")  # Cora only
    expected = r"CiteSeer: missing data file\(s\): .*ind\.citeseer\.x.*ind\.citeseer\.test\.index"
    with pytest.raises(DataError, match=expected):
        citeseer(tmp_path)
    with pytest.raises(DataError, match=str(tmp_path / "nowhere" / "planetoid")):
        pubmed(tmp_path / "nowhere")


def test_broken_planetoid_file_is_a_data_error(planetoid_root):
    root, _ = planetoid_root
    (root / "planetoid" / "ind.pubmed.graph").write_bytes(b"not a pickle")
    with pytest.raises(DataError, match="PubMed: could not read the Planetoid files"):
        pubmed(root)


def test_cli_names_the_missing_citeseer_files(tmp_path, capsys):
    (tmp_path / "planetoid").mkdir()
    assert main(["run", "--dataset", "citeseer", "--data-root", str(tmp_path), "--out", str(tmp_path / "out"),
                 "--outer-steps", "1", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "ind.citeseer.allx" in err and "Traceback" not in err


# ----------------------------------------------------------------------------- heterophilous files
def write_npz(path: Path, n: int = 60, classes: int = 2, splits: int = 10, seed: int = 0,
              labels: "np.ndarray | None" = None, **replace) -> dict:
    """An npz in upstream's format: every split 50% train, 25% val, 25% test."""
    rng = np.random.default_rng(seed)
    arrays = {
        "node_features": rng.normal(size=(n, 4)).astype(np.float32),  # embeddings: negative values too
        "node_labels": labels if labels is not None else np.arange(n) % classes,
        "edges": np.stack([np.arange(n), (np.arange(n) + 1) % n], 1),  # a ring, one direction
    }
    masks = {k: np.zeros((splits, n), dtype=bool) for k in ("train_masks", "val_masks", "test_masks")}
    for s in range(splits):
        perm = rng.permutation(n)
        masks["train_masks"][s, perm[: n // 2]] = True
        masks["val_masks"][s, perm[n // 2: 3 * n // 4]] = True
        masks["test_masks"][s, perm[3 * n // 4:]] = True
    arrays.update(masks)
    arrays.update(replace)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **arrays)
    return arrays


def test_benchmark_set_with_its_official_split(tmp_path):
    written = write_npz(tmp_path / "heterophilous" / "roman_empire.npz", classes=5)  # upstream's file name
    data = heterophilous("roman-empire", tmp_path, seed=13)
    n = 60
    assert data.num_nodes == n and data.num_classes == 5 and data.metric.name == "acc"
    assert data.num_edges == 2 * n  # DGL makes the ring bidirected
    assert torch.allclose(data.features, torch.from_numpy(written["node_features"]))  # not row-normalised
    split = 13 % 10
    assert data.extras["official_split"] == split
    assert torch.equal(data.v_in, torch.from_numpy(written["train_masks"][split]).nonzero().flatten())
    assert torch.equal(data.test, torch.from_numpy(written["test_masks"][split]).nonzero().flatten())
    val = torch.from_numpy(written["val_masks"][split]).nonzero().flatten()
    assert torch.equal(torch.cat([data.v_out, data.val]).sort().values, val)
    assert load_dataset("roman-empire", tmp_path, seed=3).v_in.tolist() == data.v_in.tolist()


def test_hyphenated_file_name_and_bag_of_words_normalisation(tmp_path):
    counts = np.random.default_rng(0).integers(1, 4, size=(60, 4)).astype(np.float32)
    write_npz(tmp_path / "heterophilous" / "chameleon-filtered.npz", classes=5, node_features=counts)
    data = load_dataset("chameleon-filtered", tmp_path, seed=0)
    assert torch.allclose(data.features.sum(1), torch.ones(60))
    assert torch.allclose(data.features, torch.from_numpy(counts / counts.sum(1, keepdims=True)))


@pytest.mark.parametrize("name", ["minesweeper", "tolokers", "questions"])
def test_binary_sets_are_scored_by_rocauc(tmp_path, name):
    write_npz(tmp_path / "heterophilous" / f"{name}.npz", classes=2)
    data = load_dataset(name, tmp_path, seed=1)
    assert data.metric is BINARY_ROCAUC and data.num_classes == data.out_dim == 2
    out = torch.randn(data.num_nodes, 2, generator=torch.Generator().manual_seed(0))
    test = data.test
    margin = (out[:, 1] - out[:, 0])[test]
    y = data.labels[test]
    pos, neg = margin[y == 1], margin[y == 0]
    by_hand = float((pos[:, None] > neg[None, :]).double().mean())  # no ties among random floats
    assert data.score(out, "test") == pytest.approx(by_hand, abs=1e-12)


def test_binary_set_with_other_labels_is_refused(tmp_path):
    write_npz(tmp_path / "heterophilous" / "tolokers.npz", classes=3)
    with pytest.raises(DataError, match="tolokers is a binary task"):
        load_dataset("tolokers", tmp_path)


def test_malformed_npz_files_are_named(tmp_path):
    folder = tmp_path / "heterophilous"
    arrays = write_npz(folder / "questions.npz")
    del arrays["val_masks"]
    np.savez(folder / "questions.npz", **arrays)
    with pytest.raises(DataError, match=r"lacks the key\(s\) val_masks"):
        load_dataset("questions", tmp_path)
    transposed = write_npz(folder / "minesweeper.npz")
    np.savez(folder / "minesweeper.npz", **{**transposed, "train_masks": transposed["train_masks"].T})
    with pytest.raises(DataError, match=r"masks must all have shape \[num_splits, 60\]"):
        load_dataset("minesweeper", tmp_path)
    with pytest.raises(DataError, match=r"amazon-ratings\.npz \(or upstream's amazon_ratings\.npz\)"):
        load_dataset("amazon-ratings", tmp_path)


def test_cli_selects_and_reports_by_rocauc(tmp_path):
    write_npz(tmp_path / "data" / "heterophilous" / "minesweeper.npz", n=80, seed=3)
    out = tmp_path / "out"
    assert main(["run", "--dataset", "minesweeper", "--data-root", str(tmp_path / "data"), "--out", str(out),
                 "--outer-steps", "3", "--inner-steps", "3", "--no-progress"]) == 0
    seed0 = json.loads((out / "minesweeper-gnn-bo" / "seed_0.json").read_text())
    result, history = seed0["result"], seed0["history"]
    assert "test_rocauc" in result and "test_acc" not in result and 0.0 <= result["test_rocauc"] <= 1.0
    val = [h["val_rocauc"] for h in history]
    best = int(np.argmax(val))  # the first best: ties keep the earlier graph
    assert result["best_iteration"] == history[best]["iteration"]
    assert result["test_rocauc"] == pytest.approx(history[best]["test_rocauc"])
    summary = json.loads((out / "minesweeper-gnn-bo" / "summary.json").read_text())
    assert "test_rocauc" in summary["aggregate"]


# ----------------------------------------------------------------------------- ROC-AUC
def test_rocauc_by_hand_with_ties():
    assert roc_auc(torch.tensor([0.1, 0.4, 0.35, 0.8]), torch.tensor([0, 0, 1, 1])) == pytest.approx(0.75)
    # pairs (positive, negative): (1,1) tie 1/2, (1,2) 0, (2,1) 1, (2,2) tie 1/2 -> 2/4
    assert roc_auc(torch.tensor([1.0, 1.0, 2.0, 2.0]), torch.tensor([0, 1, 0, 1])) == pytest.approx(0.5)
    assert roc_auc(torch.tensor([3.0, 1.0, 2.0]), torch.tensor([1, 0, 0])) == 1.0
    assert np.isnan(roc_auc(torch.tensor([0.2, 0.3]), torch.tensor([1, 1])))


def test_rocauc_matches_sklearn():
    sklearn_metrics = pytest.importorskip("sklearn.metrics")
    gen = torch.Generator().manual_seed(0)
    scores = torch.randint(0, 6, (300,), generator=gen).double()  # many ties
    y = torch.randint(0, 2, (300,), generator=gen)
    assert roc_auc(scores, y) == pytest.approx(sklearn_metrics.roc_auc_score(y.numpy(), scores.numpy()), abs=1e-12)


def test_binary_scores_take_the_logit_margin_or_one_logit():
    out = torch.tensor([[0.0, 2.0], [1.0, -1.0], [0.5, 0.5]])
    assert torch.equal(binary_scores(out), torch.tensor([2.0, -2.0, 0.0]))
    assert torch.equal(binary_scores(out[:, :1]), out[:, 0])
    with pytest.raises(ValueError, match="two logits"):
        binary_scores(torch.zeros(3, 3))
    # the margin ranks nodes as the softmax probability of class 1 does
    logits = torch.randn(50, 2, generator=torch.Generator().manual_seed(1))
    y = torch.arange(50) % 2
    assert BINARY_ROCAUC(logits, y, torch.arange(50)) == pytest.approx(roc_auc(logits.softmax(-1)[:, 1], y))


# ----------------------------------------------------------------------------- a user's graph file
def save_graph(path: Path, n: int = 40, classes: int = 3, splits: "int | None" = None, **overrides) -> dgl.DGLGraph:
    gen = torch.Generator().manual_seed(0)
    ring = torch.arange(n)
    g = dgl.graph((torch.cat([ring, (ring + 1) % n]), torch.cat([(ring + 1) % n, ring])), num_nodes=n)
    g.ndata["feat"] = torch.rand(n, 5, generator=gen)
    g.ndata["label"] = torch.arange(n) % classes
    role = torch.arange(n) % 4  # 0, 1: train; 2: val; 3: test
    masks = {"train_mask": role < 2, "val_mask": role == 2, "test_mask": role == 3}
    if splits is not None:
        masks = {k: torch.stack([m.roll(s) for s in range(splits)], 1) for k, m in masks.items()}
    g.ndata.update(masks)
    for key, value in overrides.items():
        if value is None:
            g.ndata.pop(key)
        else:
            g.ndata[key] = value
    dgl.save_graphs(str(path), [g])
    return g


def test_graph_file_loads_with_coras_split(tmp_path):
    g = save_graph(tmp_path / "mine.bin")
    data = load_graph_file(tmp_path / "mine.bin", seed=4)
    assert data.name == "mine" and data.task == "classification" and data.num_classes == 3
    assert data.num_nodes == 40 and data.num_edges == 80
    assert torch.equal(data.features, g.ndata["feat"]) and torch.equal(data.labels, g.ndata["label"])
    assert torch.equal(data.v_in, g.ndata["train_mask"].nonzero().flatten())
    assert torch.equal(data.test, g.ndata["test_mask"].nonzero().flatten())
    assert torch.equal(torch.cat([data.v_out, data.val]).sort().values, g.ndata["val_mask"].nonzero().flatten())
    assert data.v_out.numel() == data.val.numel() == 5


def test_graph_file_with_several_splits_and_float_labels(tmp_path):
    n = 40
    g = save_graph(tmp_path / "multi.bin", splits=3, label=torch.linspace(0, 1, n))
    data = load_dataset(str(tmp_path / "multi.bin"), seed=5)  # split 5 mod 3 = 2
    assert data.task == "regression" and data.extras["split"] == 2
    assert torch.equal(data.v_in, g.ndata["train_mask"][:, 2].nonzero().flatten())


@pytest.mark.parametrize("overrides, message", [
    ({"label": None}, r"ndata lacks 'label'"),
    ({"train_mask": None, "test_mask": None}, r"ndata lacks 'train_mask', 'test_mask'"),
    ({"feat": torch.ones(40, 5, dtype=torch.long)}, r"ndata\['feat'\] must be a \[N, D\] floating-point tensor.*int64"),
    ({"feat": torch.ones(40)}, r"ndata\['feat'\] must be a \[N, D\].*shape \(40,\)"),
    ({"val_mask": (torch.arange(40) % 4 == 2).float()}, r"ndata\['val_mask'\] must be a boolean.*float32"),
    ({"test_mask": torch.arange(40) % 3}, r"ndata\['test_mask'\] must be a boolean.*values other than 0 and 1"),
    ({"label": torch.ones(40, 2, dtype=torch.long)}, r"ndata\['label'\] must be \[N\] integer classes"),
    ({"val_mask": torch.arange(40) == 2}, r"val_mask holds 1 node\(s\); at least 2"),
    ({"test_mask": torch.zeros(40, 2, dtype=torch.bool)}, r"masks disagree on the number of splits"),
])
def test_graph_file_errors_name_the_key(tmp_path, overrides, message):
    save_graph(tmp_path / "bad.bin", **overrides)
    with pytest.raises(DataError, match=message):
        load_graph_file(tmp_path / "bad.bin")


def test_graph_file_errors_for_the_file_itself(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        load_graph_file(tmp_path / "none.bin")
    (tmp_path / "text.bin").write_text("hello")
    with pytest.raises(DataError, match="not a file written by dgl.save_graphs"):
        load_graph_file(tmp_path / "text.bin")
    g = dgl.graph(([0, 1], [1, 0]))
    dgl.save_graphs(str(tmp_path / "two.bin"), [g, g])
    with pytest.raises(DataError, match="holds 2 graphs"):
        load_graph_file(tmp_path / "two.bin")


def test_graph_file_through_the_cli(tmp_path, capsys):
    save_graph(tmp_path / "graph.bin")
    out = tmp_path / "out"
    assert main(["run", "--dataset", str(tmp_path / "graph.bin"), "--outer-steps", "2", "--inner-steps", "3",
                 "--out", str(out), "--no-progress"]) == 0
    seed0 = json.loads((out / "graph-gnn-bo" / "seed_0.json").read_text())
    assert len(seed0["history"]) == 2 and "test_acc" in seed0["result"]
    assert "graph file: " + str((tmp_path / "graph.bin").resolve()) in capsys.readouterr().out
    assert main(["run", "--dataset", str(tmp_path / "missing.bin"), "--out", str(out), "--no-progress"]) == 2
    assert "--dataset: graph file" in capsys.readouterr().err


def test_a_relative_graph_file_is_written_absolute_so_the_config_reruns_elsewhere(tmp_path, monkeypatch):
    save_graph(tmp_path / "graph.bin")
    monkeypatch.chdir(tmp_path)
    assert main(["run", "--dataset", "graph.bin", "--outer-steps", "1", "--inner-steps", "2", "--out", "out",
                 "--no-progress"]) == 0
    written = tmp_path / "out" / "graph-gnn-bo" / "config.yaml"
    assert yaml.safe_load(written.read_text())["data"]["dataset"] == str((tmp_path / "graph.bin").resolve())
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert main(["run", "--config", str(written), "--out", "again", "--no-progress"]) == 0
    assert (elsewhere / "again" / "graph-gnn-bo" / "seed_0.json").is_file()


def test_graph_file_names_in_the_configuration():
    assert is_graph_file("data/g.bin") and is_graph_file("g.bin") and is_graph_file("dir/graph")
    assert not is_graph_file("cora") and not is_graph_file("roman-empire")
    assert ExperimentConfig(dataset="some/where/cora-copy.bin").run_name == "cora-copy-gnn-bo"
    assert preset("cora-copy.bin", "gnn") == preset("unknown", "gnn")  # a file gets the fallbacks, not Cora's
    with pytest.raises(ConfigError, match="v_out_fraction applies to OGB"):
        load_dataset("x.bin", v_out_fraction=0.5)


# ----------------------------------------------------------------------------- dgl-bilevel datasets
def test_datasets_command_shows_each_state(tmp_path, capsys):
    write_planetoid(tmp_path / "planetoid", "citeseer", CITESEER_TEST)
    write_npz(tmp_path / "heterophilous" / "amazon_ratings.npz", classes=5)
    assert main(["datasets", "--data-root", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    lines = {line.split()[0]: line for line in out.splitlines() if line and not line.startswith(" ")}
    assert lines["citeseer"].split()[1] == "available" and lines["amazon-ratings"].split()[1] == "available"
    assert lines["pubmed"].split()[1] == "missing" and lines["cora"].split()[1] == "missing"
    assert lines["cheaters"].split()[1] == "generated"
    assert str((tmp_path / "heterophilous" / "amazon_ratings.npz").resolve()) in out
    assert f"looks in {(tmp_path / 'planetoid').resolve()}: 8 of 8 file(s) missing (ind.pubmed.x" in out
    assert str((tmp_path / "heterophilous" / "tolokers.npz").resolve()) in out
    assert "--dataset path/to/graph.bin" in out
    for name in ("citeseer", "pubmed", "roman-empire", "amazon-ratings", "minesweeper", "tolokers", "questions",
                 "squirrel-filtered", "chameleon-filtered"):
        assert name in lines
