"""Checkpoints hold tensors and plain values only and are read with ``weights_only=True``: a
checkpoint someone else hands over cannot run code on resume, and resuming stays bit for bit."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import dgl_bilevel as dbl
from dgl_bilevel.cli import main
from dgl_bilevel.errors import ConfigError
from dgl_bilevel.outer import checkpoint

QUICK = ["--dataset", "cheaters", "--inner-steps", "3", "--no-progress", "--checkpoint-every", "1"]


def _touch(path: str) -> None:
    """What the planted object runs when unpickled: leaves a file behind (proof that code ran)."""
    Path(path).write_text("ran")


class Planted:
    """An object whose unpickling calls :func:`_touch` -- a stand-in for arbitrary code."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return _touch, (self.marker,)


def _plant(path: Path, marker: Path) -> None:
    payload = torch.load(path, weights_only=True)  # what the library wrote loads safely
    payload["history"].append({"note": Planted(marker)})
    torch.save(payload, path)


def _fit(tiny, path, steps, resume=False):
    structure = dbl.EdgeWeights(tiny.graph, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    return dbl.fit(tiny, structure, dbl.TrainedGNN(dbl.models.SumAggGNN(5, 4, 3), steps=3), outer_steps=steps,
                   progress=False, checkpoint=path, checkpoint_every=1, resume=resume)


def test_a_checkpoint_carrying_a_pickled_object_is_refused_before_it_runs(tiny, tmp_path):
    path, marker = tmp_path / "ckpt.pt", tmp_path / "code-ran"
    _fit(tiny, path, 2)
    _plant(path, marker)
    torch.load(path, weights_only=False)  # the planted object is real: an unsafe load runs it
    assert marker.is_file()
    marker.unlink()
    with pytest.raises(ConfigError, match=r"ckpt.pt is refused: it holds a pickled .*_touch.*arbitrary code"):
        _fit(tiny, path, 4, resume=True)
    assert not marker.exists()


def test_the_cli_refuses_a_planted_checkpoint_on_resume(tmp_path, capsys):
    assert main(["run", *QUICK, "--outer-steps", "1", "--out", str(tmp_path)]) == 0
    path, marker = tmp_path / "cheaters-gnn-bo" / "checkpoint_seed0.pt", tmp_path / "code-ran"
    _plant(path, marker)
    capsys.readouterr()
    assert main(["run", *QUICK, "--outer-steps", "2", "--out", str(tmp_path), "--resume"]) == 2  # continues: reads it
    err = capsys.readouterr().err
    assert "checkpoint_seed0.pt is refused" in err and "Traceback" not in err
    assert not marker.exists()


def test_a_damaged_checkpoint_is_an_error_that_names_it(tiny, tmp_path):
    path = tmp_path / "ckpt.pt"
    _fit(tiny, path, 2)
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(ConfigError, match="ckpt.pt cannot be read"):
        _fit(tiny, path, 4, resume=True)
    torch.save({"weights": torch.ones(2)}, path)
    with pytest.raises(ConfigError, match="not a dgl_bilevel checkpoint"):
        _fit(tiny, path, 4, resume=True)


@pytest.mark.parametrize("value, name", [(np.float64(0.5), "numpy.float64"), (Planted(Path("x")), "Planted"),
                                         ({"ok": [1, (2, "three")], "bad": {Path("p")}}, "PosixPath")])
def test_writing_anything_but_tensors_and_plain_values_is_refused(tmp_path, value, name):
    with pytest.raises(TypeError, match=rf"checkpoint payload\['extra'\].* is a .*{name}.*weights_only=True"):
        checkpoint.write(tmp_path / "c.pt", {"next_iteration": 1, "weights": torch.ones(3), "extra": value})
    assert not (tmp_path / "c.pt").exists()
    checkpoint.write(tmp_path / "c.pt", {"next_iteration": 1, "extra": {"a": [1.5, None, "s", torch.zeros(2)],
                                                                          "size": torch.Size([2]), "t": torch.float64}})
    assert checkpoint.read(tmp_path / "c.pt")["extra"]["size"] == torch.Size([2])


@pytest.mark.parametrize("flags", [
    ["--seeds", "2"],  # the paper's GNN, seeds stacked into one lockstep run
    ["--hypergrad", "implicit", "--implicit-warm-start", "--inner-steps", "20"],  # a warm start in the checkpoint
    ["--inner", "laplacian", "--hypergrad", "adjoint", "--laplacian-loss", "mse", "--parametrization", "sigmoid"],
    ["--method", "bo+g2g", "--inner", "energy", "--energy-steps", "2"],
    ["--structure", "topk", "--budget", "0.5"],
], ids=["stacked-gnn", "implicit-warm", "laplacian-adjoint", "g2g-energy", "topk"])
def test_every_kind_of_checkpoint_loads_with_weights_only_and_resumes_bit_for_bit(tmp_path, flags):
    """Write at 1 outer step, continue to 3 from the checkpoint: the same as 3 steps in one go."""
    assert main(["run", *QUICK, *flags, "--outer-steps", "1", "--out", str(tmp_path / "a")]) == 0
    run_dir = next((tmp_path / "a").iterdir())
    for path in run_dir.glob("checkpoint_seed*.pt"):
        assert torch.load(path, weights_only=True)["next_iteration"] == 1
    assert main(["run", *QUICK, *flags, "--outer-steps", "3", "--out", str(tmp_path / "a"), "--resume"]) == 0
    assert main(["run", *QUICK, *flags, "--outer-steps", "3", "--out", str(tmp_path / "b")]) == 0
    for seed_file in sorted(run_dir.glob("seed_*.json")):
        resumed = json.loads(seed_file.read_text())["history"]
        again = json.loads((tmp_path / "b" / run_dir.name / seed_file.name).read_text())["history"]
        assert len(resumed) == 3 and [r["outer_loss"] for r in resumed] == [r["outer_loss"] for r in again]
