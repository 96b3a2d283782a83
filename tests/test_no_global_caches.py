"""No module-level caches: what the library caches lives on the object it describes (the graph's
:class:`~dgl_bilevel._graph_cache.GraphCache`, the bound inner problem), so no cache can cross
from one problem to another.

* Problems on different graphs -- two of the same size with different edges (the case a cache
  keyed by shape would get wrong) and one of another size -- run interleaved phase by phase in
  one process and give, bit for bit, what each gives alone on a fresh copy of its data.
* A scan of the package's source finds no module-level weak map, ``id()`` key, ``lru_cache``,
  ``global`` statement, or module-level object that functions fill or change at run time, apart
  from :data:`ALLOWED` (with the reason).
"""
from __future__ import annotations

import ast
import copy
import textwrap
import warnings
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Iterator

import pytest
import torch

import dgl_bilevel
from dgl_bilevel._dgl import dgl
from dgl_bilevel._graph_cache import GraphCache, graph_cache
from dgl_bilevel.config import ExperimentConfig
from dgl_bilevel.data import BilevelData
from dgl_bilevel.energy import with_self_loops
from dgl_bilevel.experiment.build import build_hypergrad, build_inner, build_structure
from dgl_bilevel.ops import constant_edge_weights
from dgl_bilevel.outer.loop import OuterLoop

PACKAGE = Path(dgl_bilevel.__file__).resolve().parent

# ------------------------------------------------------------------------------ the problems
#: Small settings, as the regression fixture's: float64, 4 inner steps, 4 hidden units.
SETTINGS = dict(dataset="cheaters", dtype="float64", inner_steps=4, hidden=4, truncate_k=2, energy_steps=3,
                progress=False, save_graph=False, structure="edges")

#: Inner problem x method pairs that reach every per-graph structure and per-weight cache: the
#: paper's GNN (hand-derived path: CSR matrices, edge products, per-weight layer matrices), the
#: Laplacian (degrees, the L_s plan), label propagation, the energy model (the graph's topology).
COMBOS = {
    "gnn/unrolled": {"inner": "gnn", "hypergrad": "unrolled"},
    "gnn/implicit": {"inner": "gnn", "hypergrad": "implicit"},
    "gnn/truncated": {"inner": "gnn", "hypergrad": "truncated"},
    "gnn/unrolled-autograd": {"inner": "gnn", "hypergrad": "unrolled", "unroll_checkpoint": False},
    "laplacian/unrolled": {"inner": "laplacian", "hypergrad": "unrolled"},
    "laplacian/implicit": {"inner": "laplacian", "hypergrad": "implicit"},
    "laplacian-mse/adjoint": {"inner": "laplacian", "laplacian_loss": "mse", "hypergrad": "adjoint"},
    "lp/implicit": {"inner": "lp", "hypergrad": "implicit"},
    "energy/unrolled": {"inner": "energy", "hypergrad": "unrolled"},
    "energy/implicit": {"inner": "energy", "hypergrad": "implicit"},
}
OUTER_STEPS = 2


def random_graph(num_nodes: int, num_pairs: int, seed: int) -> "dgl.DGLGraph":
    """An undirected graph (both directions stored) with ``num_pairs`` distinct node pairs."""
    generator = torch.Generator().manual_seed(seed)
    pairs: set = set()
    while len(pairs) < num_pairs:
        u, v = torch.randint(num_nodes, (2,), generator=generator).tolist()
        if u != v:
            pairs.add((min(u, v), max(u, v)))
    src, dst = torch.tensor(sorted(pairs)).t()
    return dgl.graph((torch.cat([src, dst]), torch.cat([dst, src])), num_nodes=num_nodes)


def problem_data(graph: "dgl.DGLGraph", seed: int = 0) -> BilevelData:
    """Features, labels and the four node sets of a small 3-class problem on ``graph`` (float64)."""
    n = graph.num_nodes()
    generator = torch.Generator().manual_seed(seed)
    order = torch.randperm(n, generator=generator)
    quarter = n // 4
    return BilevelData(graph, torch.randn(n, 5, generator=generator, dtype=torch.float64),
                       torch.randint(3, (n,), generator=generator), order[:quarter], order[quarter:2 * quarter],
                       order[2 * quarter:3 * quarter], order[3 * quarter:], num_classes=3)


@pytest.fixture(scope="module")
def datasets() -> dict[str, BilevelData]:
    """``same_a`` and ``same_b``: one node count, one edge count, one degree sequence, one set of
    features and labels; ``same_b``'s edges are ``same_a``'s with the nodes relabelled. ``other``:
    another size."""
    graph = random_graph(48, 90, seed=1)
    relabel = torch.randperm(48, generator=torch.Generator().manual_seed(2))
    src, dst = graph.edges()
    relabelled = dgl.graph((relabel[src], relabel[dst]), num_nodes=48)
    return {"same_a": problem_data(graph), "same_b": problem_data(relabelled),
            "other": problem_data(random_graph(40, 70, seed=3))}


class Run:
    """One problem's outer loop, driven phase by phase, with its own torch generator state."""

    def __init__(self, data: BilevelData, options: dict) -> None:
        config = ExperimentConfig(**SETTINGS, **options).resolved()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            inner = build_inner(config, data)
            method = build_hypergrad(config, inner)
            self.loop = OuterLoop(data, build_structure(config, data, 0), inner, method, outer_steps=OUTER_STEPS,
                                  lr=config.outer_lr, seed=0)
        self.rng = torch.get_rng_state()
        self.hypergradients: list[torch.Tensor] = []

    @contextmanager
    def own_rng(self) -> Iterator[None]:
        outside = torch.get_rng_state()
        torch.set_rng_state(self.rng)
        try:
            yield
        finally:
            self.rng = torch.get_rng_state()
            torch.set_rng_state(outside)

    def phases(self) -> Iterator[None]:
        """One outer iteration, yielding between its phases (weights, inner solve, outer loss, backward, step)."""
        loop = self.loop
        with self.own_rng():
            pending = loop.begin_iteration()
        yield
        with self.own_rng():
            solution = loop.method.solve(loop.inner, pending.weights, loop.inner.starting_params(loop.generator))
        yield
        with self.own_rng():
            loop.score_iteration(pending, loop.inner.predict(solution.params, pending.weights))
        yield
        with self.own_rng():
            if pending.finite and pending.total.requires_grad:
                pending.total.backward()
        yield
        with self.own_rng(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            state = loop.finish_iteration(pending, solution.params, solution.inner_objective, solution.info)
        self.hypergradients.append(state.hypergradient)

    def outcome(self) -> list[torch.Tensor]:
        """Every iteration's hypergradient, then the structure's parameters as they ended."""
        return self.hypergradients + [p.detach().clone() for p in self.loop.params]


def alone(data: BilevelData, options: dict) -> list[torch.Tensor]:
    """The outcome of ``options`` on a deep copy of ``data`` (a graph no other run has touched)."""
    run = Run(copy.deepcopy(data), options)
    for _ in range(OUTER_STEPS):
        for _ in run.phases():
            pass
    return run.outcome()


def interleaved(datas: list[BilevelData], options: dict, shared_block: bool) -> list[list[torch.Tensor]]:
    """The outcomes of ``options`` on every data set, their iterations advanced phase by phase in
    turn (backward passes in reverse order); ``shared_block``: each iteration's phases all inside
    one :func:`constant_edge_weights` block, so every problem's per-weight caches are live at once."""
    runs = [Run(data, options) for data in datas]
    for _ in range(OUTER_STEPS):
        with constant_edge_weights() if shared_block else nullcontext():
            steps = [run.phases() for run in runs]
            for turn in range(5):
                for step in (steps if turn != 3 else steps[::-1]):
                    next(step, None)
    return [run.outcome() for run in runs]


def same(a: list[torch.Tensor], b: list[torch.Tensor]) -> bool:
    return len(a) == len(b) and all(
        (x is None and y is None) or (x is not None and y is not None and torch.equal(x, y)) for x, y in zip(a, b))


@pytest.mark.parametrize("shared_block", [False, True], ids=["plain", "one-block"])
@pytest.mark.parametrize("combo", sorted(COMBOS))
def test_interleaved_problems_give_what_each_gives_alone(combo, shared_block, datasets):
    options = COMBOS[combo]
    names = ["same_a", "same_b", "other"]
    reference = {name: alone(datasets[name], options) for name in names}
    # the two same-size problems must differ, or a crossing cache could not show
    assert not same(reference["same_a"], reference["same_b"])
    assert reference["same_a"][0] is not None and bool(reference["same_a"][0].any())
    # run twice on the same graphs: the second time every per-graph structure is already there
    for _ in range(2):
        outcomes = interleaved([datasets[name] for name in names], options, shared_block)
        for name, outcome in zip(names, outcomes):
            assert same(outcome, reference[name]), f"{combo} on {name}: differs from the run alone"


def test_a_cache_keyed_by_size_would_be_caught(monkeypatch, datasets):
    """The check above fails if per-graph structures were shared by graphs of one size."""
    from dgl_bilevel import ops
    from dgl_bilevel.data import bilevel_data
    from dgl_bilevel.energy import _graph_ops, twirls

    shared: dict = {}

    def by_size(graph):
        return shared.setdefault((graph.num_nodes(), graph.num_edges()), GraphCache(graph))

    for module in (ops, _graph_ops, twirls, bilevel_data):
        monkeypatch.setattr(module, "graph_cache", by_size)
    options = COMBOS["gnn/unrolled"]
    reference = alone(datasets["same_b"], options)
    shared.clear()
    outcomes = interleaved([datasets["same_a"], datasets["same_b"]], options, shared_block=False)
    assert not same(outcomes[1], reference)


def test_graph_cache_belongs_to_one_graph_object():
    """A shallow copy of a graph (DGL's ``local_var``, ``copy.copy``) shares its ``__dict__`` but gets a
    cache of its own; pickled or deep-copied graphs carry an empty one."""
    import pickle

    graph = random_graph(10, 12, seed=4)
    cache = graph_cache(graph)
    assert graph_cache(graph) is cache
    cache.edges_checked = True
    for other in (copy.copy(graph), graph.local_var(), copy.deepcopy(graph), pickle.loads(pickle.dumps(graph))):
        mine = graph_cache(other)
        assert mine is not cache and not mine.edges_checked and mine.csr is None
    assert graph_cache(graph) is cache


def test_self_looped_graphs_are_per_graph(datasets):
    """TWIRLS's self-looped graph is kept on each input graph: two same-size graphs get their own."""
    a, b = datasets["same_a"].graph, datasets["same_b"].graph
    looped_a, _ = with_self_loops(a)
    looped_b, _ = with_self_loops(b)
    assert with_self_loops(a)[0] is looped_a and with_self_loops(b)[0] is looped_b
    for graph, looped in ((a, looped_a), (b, looped_b)):
        src, dst = graph.edges()
        keep = src != dst
        nodes = torch.arange(graph.num_nodes())
        assert torch.equal(looped.edges()[0], torch.cat([src[keep], nodes]))
        assert torch.equal(looped.edges()[1], torch.cat([dst[keep], nodes]))


# ------------------------------------------------------------------------------ the source scan
#: Module-level state that stays, and why: (file relative to the package, name) -> reason.
ALLOWED = {
    ("_shims.py", "APPLIED_SHIMS"): "the names of the compatibility patches applied at import, for diagnostics: "
                                    "strings, filled once, no live objects",
    ("ops.py", "_ACTIVE_BLOCK"): "the constant_edge_weights block now running: a context variable set on entry and "
                                 "reset on exit (a mode, like torch.no_grad), holding no tensor",
}
WEAK_MAPS = {"WeakKeyDictionary", "WeakValueDictionary", "WeakSet"}
MUTATORS = {"append", "extend", "insert", "add", "update", "setdefault", "pop", "popitem", "clear", "remove",
            "discard", "set", "reset", "__setitem__", "appendleft"}
MEMOIZERS = {"lru_cache", "cache"}


def _module_names(tree: ast.Module) -> set[str]:
    """Names bound by assignments and class definitions at module level (imports and functions are not state)."""
    names: set[str] = set()
    for node in tree.body:
        targets = (node.targets if isinstance(node, ast.Assign) else [node.target]
                   if isinstance(node, (ast.AnnAssign, ast.AugAssign)) else [])
        for target in targets:
            names.update(n.id for n in ast.walk(target) if isinstance(n, ast.Name))
        if isinstance(node, ast.ClassDef):
            names.add(node.name)
    return names


def _weak_map(node: ast.AST) -> str | None:
    """The weak-map class ``node`` names (``WeakSet`` or ``weakref.WeakSet``), if it names one."""
    name = node.id if isinstance(node, ast.Name) else node.attr if isinstance(node, ast.Attribute) else None
    return name if name in WEAK_MAPS else None


def _local_names(function: ast.AST) -> set[str]:
    """Parameters and names a function assigns (they shadow module-level names)."""
    args = function.args
    names = {a.arg for a in [*args.posonlyargs, *args.args, *args.kwonlyargs, args.vararg, args.kwarg] if a}
    for node in ast.walk(function):
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
    return names


def _root_name(node: ast.AST) -> str | None:
    """``X`` for ``X``, ``X.a``, ``X[k]``, ``X.a[k].b`` ..."""
    while isinstance(node, (ast.Attribute, ast.Subscript)):
        node = node.value
    return node.id if isinstance(node, ast.Name) else None


def scan(source: str) -> list[tuple[str, str]]:
    """``(name, what)`` for every piece of module-level state in ``source`` (see the module docstring)."""
    tree = ast.parse(source)
    module_names = _module_names(tree)
    found: list[tuple[str, str]] = []
    attributed: set[tuple[int, int]] = set()  # weak maps already named by the module-level name they are bound to
    for node in tree.body:
        if isinstance(node, (ast.Assign, ast.AnnAssign)) and node.value is not None:
            weak = [n for n in ast.walk(node.value) if _weak_map(n)]
            if weak:
                attributed.update((n.lineno, n.col_offset) for n in weak)
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                found += [(_root_name(t) or "?", f"a weak map at line {node.lineno}") for t in targets]
    for node in ast.walk(tree):
        if _weak_map(node) and (node.lineno, node.col_offset) not in attributed:
            found.append((_weak_map(node), f"a weak map at line {node.lineno}"))
        elif isinstance(node, ast.Global):
            found += [(name, "a global statement") for name in node.names]
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "id":
            found.append(("id()", f"id() at line {node.lineno}"))
        elif isinstance(node, ast.ImportFrom) and node.module == "functools":
            found += [(alias.name, "a memoizer import") for alias in node.names if alias.name in MEMOIZERS]
        elif (isinstance(node, ast.Attribute) and node.attr in MEMOIZERS and _root_name(node) == "functools"
              or isinstance(node, ast.Name) and node.id == "lru_cache"):
            found.append((getattr(node, "attr", getattr(node, "id", None)), f"a memoizer at line {node.lineno}"))
    for function in ast.walk(tree):  # functions that fill or change module-level objects
        if not isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        local = _local_names(function)
        for node in ast.walk(function):
            changed = []
            if isinstance(node, (ast.Assign, ast.AugAssign, ast.AnnAssign, ast.Delete)):
                targets = (node.targets if isinstance(node, (ast.Assign, ast.Delete)) else [node.target])
                changed = [t for t in targets if isinstance(t, (ast.Attribute, ast.Subscript))]
            elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                  and node.func.attr in MUTATORS):
                changed = [node.func.value]
            for target in changed:
                name = _root_name(target)
                if name in module_names and name not in local:
                    found.append((name, f"changed in {function.name}() at line {node.lineno}"))
    return sorted(set(found))


def package_state() -> dict[tuple[str, str], list[str]]:
    """Every finding of :func:`scan` over the package, keyed by (file, name)."""
    findings: dict[tuple[str, str], list[str]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        for name, what in scan(path.read_text()):
            findings.setdefault((path.relative_to(PACKAGE).as_posix(), name), []).append(what)
    return findings


def test_no_module_level_caches_left():
    findings = package_state()
    unexpected = {key: whats for key, whats in findings.items() if key not in ALLOWED}
    assert not unexpected, "module-level state (make it an attribute of the object it describes):\n" + "\n".join(
        f"  {path}: {name}: {', '.join(whats)}" for (path, name), whats in sorted(unexpected.items()))
    stale = set(ALLOWED) - set(findings)
    assert not stale, f"allowed entries no longer found (remove them): {sorted(stale)}"


@pytest.mark.parametrize("source, flagged", [
    ("import weakref\n_PLANS = weakref.WeakKeyDictionary()\n", {"_PLANS"}),
    ("from weakref import WeakSet\n_SEEN: 'WeakSet' = WeakSet()\n", {"_SEEN"}),
    ("import weakref\nclass Plans:\n    def __init__(self):\n        self.plans = weakref.WeakKeyDictionary()\n",
     {"WeakKeyDictionary"}),
    ("class _Reuse:\n    active = 0\n_REUSE = _Reuse()\ndef enter():\n    _REUSE.active += 1\n", {"_REUSE"}),
    ("_INSTANCES: dict = {}\ndef get(k):\n    held = _INSTANCES[k] = object()\n    return held\n", {"_INSTANCES"}),
    ("_LOG = []\ndef record(x):\n    _LOG.append(x)\n", {"_LOG"}),
    ("def key(x):\n    return id(x)\n", {"id()"}),
    ("import functools\n@functools.lru_cache(None)\ndef plan(graph):\n    return graph\n", {"lru_cache"}),
    ("from functools import cache\n", {"cache"}),
    ("COUNT = 0\ndef bump():\n    global COUNT\n    COUNT += 1\n", {"COUNT"}),
    # legitimate: registries of classes by name, constants, instance attributes, local names
    ("MODELS = Registry('model')\n@MODELS.register('gcn')\nclass GCN:\n    pass\n", set()),
    ("PARAMETRIZATIONS = {'sigmoid': object, 'box': object}\nSPLITS = ('v_in', 'v_out')\n", set()),
    ("class Plan:\n    def __init__(self):\n        self.cache = {}\n    def get(self, k):\n"
     "        self.cache[k] = 1\n        cache = {}\n        cache.update(a=1)\n", set()),
    ("_TITLES = {'cora': 'Cora'}\ndef title(name, _TITLES=_TITLES):\n    _TITLES.get(name)\n", set()),
])
def test_the_scan_flags_state_and_spares_registries(source, flagged):
    assert {name for name, _ in scan(textwrap.dedent(source))} == flagged
