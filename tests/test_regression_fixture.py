"""Regression fixtures: today's numbers, recomputed and compared, so that a refactor which changes
any of them -- a hypergradient, which combinations run, a whole short outer run -- fails here.

* ``fixtures/hypergradients_float64.pt`` (``python tests/fixtures/make_hypergradient_fixture.py``):
  one outer iteration of every inner problem x hypergradient method x structure combination the
  registries offer, on cheaters and Cora, in float64. Every recorded quantity (gradient entries,
  norm, sum, dot products with fixed random vectors, outer loss) must match to relative
  :data:`RTOL`; exact zeros (edges the hypergradient cannot reach) must stay exactly zero; the
  sets of recorded, refused and crashing combinations must be the same. Recomputing is bitwise
  reproducible (in any order), so an unchanged library passes with no slack at all. Each record
  also holds its ``rounding_sensitivity`` (how far a one-ulp nudge of the structure moves it):
  implicit hypergradients amplify rounding by up to ~1e15 (their iterative solves stop on a
  tolerance), so a refactor that merely reorders floating-point operations can fail those
  combinations; a failure says so when it applies.
* ``fixtures/table1_float32.json`` (``python tests/fixtures/make_table1_fixture.py``): GNN BO and
  Laplacian BO on Cora, 20 outer steps, float32, through the command line: histories equal exactly.

A change that is meant to change numbers regenerates the fixture with its script, in the same
commit, and says why.
"""
from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path
from types import ModuleType

import pytest
import torch

FIXTURES = Path(__file__).resolve().parent / "fixtures"
RTOL = 1e-12
#: The absolute floor: only a recorded exact zero may come back as anything but itself, and then
#: only as something this small (subnormal).
ATOL = 1e-300


def _load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"_regression_{name}", FIXTURES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


hypergradients = _load("make_hypergradient_fixture")
table1 = _load("make_table1_fixture")
RECORDED = torch.load(hypergradients.FIXTURE, weights_only=True)


# ------------------------------------------------------------------------------- comparison
def mismatches(recorded: dict, now: dict) -> list[str]:
    """What differs between two :func:`make_hypergradient_fixture.summarize` records (empty: a match)."""
    problems = []
    for key in ("numel", "grad_none"):
        if recorded[key] != now[key]:
            problems.append(f"{key}: {recorded[key]} recorded, {now[key]} now")
    fields = set(recorded) - {"rounding_sensitivity"}
    if fields != set(now) - {"rounding_sensitivity"}:
        return problems + [f"fields: {sorted(fields)} recorded, {sorted(now)} now"]
    for key in ("norm", "sum", "outer_loss"):
        a, b = now[key], recorded[key]
        if not (a == b or (math.isnan(a) and math.isnan(b)) or abs(a - b) <= RTOL * abs(b) + ATOL):
            problems.append(f"{key}: {b!r} recorded, {a!r} now (relative {abs(a - b) / max(abs(b), ATOL):.2e})")
    for key in ("full", "head", "dots"):
        if key not in recorded:
            continue
        a, b = now[key], recorded[key]
        if a.shape != b.shape:
            problems.append(f"{key}: shape {tuple(b.shape)} recorded, {tuple(a.shape)} now")
            continue
        if not torch.equal(torch.isnan(a), torch.isnan(b)):
            problems.append(f"{key}: NaN entries differ")
            continue
        a, b = torch.nan_to_num(a, nan=0.0), torch.nan_to_num(b, nan=0.0)
        scale = b.abs().max().item() if b.numel() else 0.0
        worst = (a - b).abs().max().item() if b.numel() else 0.0
        if worst > RTOL * scale + ATOL:
            index = int((a - b).abs().argmax())
            problems.append(f"{key}: max difference {worst:.3e} at entry {index} (recorded {b[index].item()!r}, now "
                            f"{a[index].item()!r}), scale {scale:.3e}")
        zeros = b == 0
        if bool((a[zeros].abs() > ATOL).any()):
            problems.append(f"{key}: {int((a[zeros].abs() > ATOL).sum())} recorded exact zeros are no longer zero")
    return problems


# ----------------------------------------------------------------------------- hypergradients
@pytest.fixture(scope="module")
def recomputed() -> dict:
    """Every combination of the grid, computed now (about 30 s on one thread)."""
    return hypergradients.compute_all()


def test_fixture_is_a_strict_record():
    """The fixture itself is what the comparison relies on: many combinations, non-zero gradients,
    whole vectors for the small core ones, and a comparison that notices a change in the 11th digit."""
    records = RECORDED["records"]
    assert len(records) >= 200
    assert sum(r["norm"] > 0 for r in records.values()) >= 0.9 * len(records)
    full = [k for k, r in records.items() if "full" in r and r["numel"] > hypergradients.HEAD]
    assert len(full) >= 20 and all(k.startswith("cheaters/") for k in full)
    assert {k.split("/")[0] for k in records} == set(hypergradients.DATASETS)
    key = full[0]
    assert mismatches(records[key], records[key]) == []
    changed = {**records[key], "full": records[key]["full"].clone()}
    index = int(changed["full"].abs().argmax())
    changed["full"][index] *= 1 + 1e-11
    assert mismatches(records[key], changed)
    changed = {**records[key], "dots": records[key]["dots"] * (1 + 1e-11)}
    assert mismatches(records[key], changed)


def test_same_combinations_run_refuse_and_crash(recomputed):
    """A combination that silently disappears, starts being refused (or accepted), or starts or
    stops crashing is a change of behaviour too."""
    for part in ("records", "refused", "crashed"):
        recorded, now = set(RECORDED[part]), set(recomputed[part])
        assert now == recorded, (f"{part}: new {sorted(now - recorded)}, gone {sorted(recorded - now)}")
    stage = {key: reason.split(":")[0] for key, reason in RECORDED["refused"].items()}
    assert {key: reason.split(":")[0] for key, reason in recomputed["refused"].items()} == stage


@pytest.mark.parametrize("key", sorted(RECORDED["records"]))
def test_hypergradient_unchanged(key, recomputed):
    if key not in recomputed["records"]:
        pytest.fail(f"{key} no longer runs: {recomputed['refused'].get(key) or recomputed['crashed'].get(key)}")
    recorded = RECORDED["records"][key]
    problems = mismatches(recorded, recomputed["records"][key])
    sensitivity = recorded["rounding_sensitivity"]
    if problems and sensitivity > RTOL:
        problems.append(f"note: this combination amplifies rounding -- a one-ulp nudge of the structure changes it by "
                        f"{sensitivity:.1e} relative -- so a refactor that only reorders floating-point operations "
                        "can move it past the tolerance; combinations that do not amplify rounding tell more")
    assert not problems, f"{key}:\n  " + "\n  ".join(problems)


# --------------------------------------------------------------------------------- Table I runs
TABLE1 = json.loads(table1.FIXTURE.read_text())


@pytest.mark.parametrize("name", sorted(TABLE1["runs"]))
def test_table1_run_unchanged(name):
    """GNN BO / Laplacian BO on Cora through ``dgl-bilevel run``: every history value equal, exactly."""
    recorded = TABLE1["runs"][name]
    assert recorded["argv"] == table1.RUNS[name]
    assert len(recorded["history"]) == table1.OUTER_STEPS
    now = table1.run(name)
    for before, after in zip(recorded["history"], now["history"], strict=True):
        assert after == before, f"{name}, outer iteration {before['iteration']}"
    # every recorded field unchanged; fields added since (new diagnostics in a seed's record) are allowed
    assert {k: now["result"].get(k) for k in recorded["result"]} == recorded["result"]
