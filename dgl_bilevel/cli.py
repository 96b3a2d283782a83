"""``dgl-bilevel``: run bilevel graph learning experiments from the command line.

    dgl-bilevel run --dataset cora --inner gnn --method bo --seeds 5 --out results/
    dgl-bilevel run --config results/cora-gnn-bo/config.yaml      # rerun a run exactly
    dgl-bilevel datasets

The options of ``run``, ``scarcity`` and ``leaderboard`` are generated from the configuration
dataclasses (:mod:`dgl_bilevel.config`): their help, choices (from the registries) and defaults
have one source. Precedence: explicit flags, then ``--config`` file, then the command's own
defaults (``leaderboard``: 10 seeds), then the configuration's defaults and presets. Torch and
DGL are imported only by the command that needs them, so ``dgl-bilevel --help`` is instant.
"""
from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
from typing import Any, Optional, Sequence

from .errors import BilevelError, ConfigError

#: Commands whose options are the experiment configuration.
CONFIG_COMMANDS = ("run", "scarcity", "leaderboard", "tune")
#: Defaults a command changes (below the config file, above the configuration's defaults).
COMMAND_DEFAULTS: dict[str, dict[str, Any]] = {"leaderboard": {"seeds": 10, "dataset": "ogbn-arxiv"}}

COMMANDS = {
    "run": ("run an experiment and write JSON results, the learned graphs and the resolved config",
            "Run bilevel edge refinement (or the A_obs baseline) over seeds."),
    "scarcity": ("print the hypergradient-vs-distance profile of a run and save its plot",
                 "Run a few outer iterations and show how the hypergradient is spread over edge distances to "
                 "the labelled nodes (gradient scarcity)."),
    "leaderboard": ("OGB leaderboard protocol: seeds, Evaluator, mean ± std, markdown + JSON",
                    "Run a method over seeds with the OGB protocol (v_out from the training split, validation only "
                    "for selection, the Evaluator's metric) and write leaderboard.md/json. --method a_obs and lp "
                    "give the baselines."),
    "tune": ("search hyper-parameters with Optuna on validation scores; writes a config that run --config reruns",
             "Search options (outer and inner learning rates, hidden sizes, lambda, gamma, G2G width, inner steps: "
             "the defaults depend on the inner problem and method; --space FILE.yaml sets your own) with Optuna's "
             "TPE sampler and median pruning on the outer loop, scoring each trial by the mean best validation "
             "score over --tune-seeds seeds (never the test score). Resumable: the study is an SQLite file."),
    "generate-ogb": ("write an arxiv-shaped synthetic data set in OGB's layout",
                     "Write a synthetic citation graph shaped like ogbn-arxiv (planted classes, time split) as "
                     "<root>/ogbn_arxiv in OGB's csv layout, readable by ogb's loader. It is synthetic data under "
                     "ogbn-arxiv's name: keep it apart from real OGB data."),
    "datasets": ("list data sets and where each is read from", "List the registered data sets and their files."),
}


def presets_note() -> str:
    """The paper's settings per data set, as the configuration's presets hold them."""
    from .config import PRESETS

    parts = []
    for dataset, inners in PRESETS.items():
        described = "; ".join(f"{inner}: " + ", ".join(f"{k}={v}" for k, v in values.items())
                              for inner, values in inners.items())
        parts.append(f"{dataset} -- {described}")
    from .config import PAPER_TEXT

    text_parts = []
    for dataset, inners in PAPER_TEXT.items():
        described = "; ".join(f"{inner}{'' if structure == 'edges' else ' with g2g'}: "
                              + ", ".join(f"{k}={v}" for k, v in values.items())
                              for inner, structures in inners.items() for structure, values in structures.items())
        text_parts.append(f"{dataset} -- {described}")
    return ("Options shown with 'default: preset' take the paper's setting for the data set (--preset paper-code, "
            "from its public code): " + ". ".join(parts) + ". With --preset paper-text, what the paper's text "
            "says instead: " + ". ".join(text_parts) + ".")


# --------------------------------------------------------------------------- generated options
def _argument_type(field: dataclasses.Field) -> Any:
    annotation = str(field.type)
    for name, kind in (("bool", bool), ("int", int), ("float", float)):
        if name in annotation:
            return kind
    return str


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """One flag per configuration field, grouped by stage; absent flags stay absent (SUPPRESS)."""
    from .config import SECTIONS, cli_flag
    from .registry import Registry

    for section, cls in SECTIONS.items():
        group = parser.add_argument_group(section, (cls.__doc__ or "").strip())
        for field in dataclasses.fields(cls):
            meta = field.metadata
            if not meta.get("cli", True):
                continue
            help_text = meta.get("help", "")
            kind = _argument_type(field)
            kwargs: dict[str, Any] = {"dest": field.name, "default": argparse.SUPPRESS}
            if kind is bool:
                kwargs["action"] = "store_false" if field.default is True else "store_true"
            else:
                kwargs["type"] = kind
                choices = meta.get("choices")
                if choices is not None:  # checked by the configuration, so YAML and flags get one message
                    names = choices.choices() if isinstance(choices, Registry) else choices
                    kwargs["metavar"] = meta.get("metavar") or "{" + ",".join(map(str, names)) + "}"
                    if isinstance(choices, Registry) and not meta.get("metavar"):
                        help_text += " (" + choices.describe() + ")"
                if "default:" not in help_text and field.default is not None \
                        and field.default is not dataclasses.MISSING:
                    help_text += f"; default: {field.default}"
            kwargs["help"] = help_text.replace("%", "%%")
            group.add_argument(cli_flag(field), **kwargs)
            if kind is bool:  # the opposite flag, to switch off what a --config file switched on (and back)
                group.add_argument(opposite_flag(cli_flag(field)), dest=field.name, default=argparse.SUPPRESS,
                                   action="store_true" if kwargs["action"] == "store_false" else "store_false",
                                   help=argparse.SUPPRESS)
    parser.add_argument("--config", default=None, metavar="FILE.yaml",
                        help="YAML file of options (nested by section as written next to every run's results, or "
                             "flat); explicit flags override it, and every yes/no flag has an opposite "
                             "(--refit / --no-refit, --no-progress / --progress) to override the file's choice")


def opposite_flag(flag: str) -> str:
    """``--no-x`` for ``--x`` and ``--x`` for ``--no-x``: the flag that sets a yes/no option the other way.

    Example:
        >>> opposite_flag("--refit"), opposite_flag("--no-progress")
        ('--no-refit', '--progress')
    """
    return "--" + flag[len("--no-"):] if flag.startswith("--no-") else "--no-" + flag[2:]


def build_parser(command: Optional[str] = None) -> argparse.ArgumentParser:
    """The parser; only ``command``'s options are generated (they need the registries, hence torch)."""
    parser = argparse.ArgumentParser(
        prog="dgl-bilevel",
        description="Bilevel graph learning on DGL graphs: learn edge weights through a trained inner model.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (short, long) in COMMANDS.items():
        epilog = presets_note() if name in CONFIG_COMMANDS and name == command else None
        p = sub.add_parser(name, help=short, description=long, epilog=epilog)
        if name != command:
            continue
        if name in CONFIG_COMMANDS:
            add_config_arguments(p)
        if name == "scarcity":
            p.add_argument("--iteration", type=int, default=0, help="outer iteration to profile; default: 0")
        if name == "tune":
            p.add_argument("--trials", type=int, default=20, help="trials in all (a resumed study counts its own); "
                                                                  "default: 20")
            p.add_argument("--tune-seeds", type=int, default=2, help="seeds per trial; default: 2")
            p.add_argument("--space", default=None, metavar="FILE.yaml",
                           help="search space: name: {low, high, log} | {int: [low, high]} | {choices: [...]}")
            p.add_argument("--timeout", type=float, default=None, help="stop starting trials after this many seconds")
        if name == "leaderboard":
            p.add_argument("--root", dest="data_root", default=argparse.SUPPRESS, help="OGB data root (= --data-root)")
        if name == "generate-ogb":
            p.add_argument("--root", required=True, help="folder to write <root>/ogbn_arxiv into")
            p.add_argument("--scale", type=float, default=1.0,
                           help="fraction of ogbn-arxiv's 169,343 nodes and 1,166,243 edges; default: 1")
            p.add_argument("--seed", type=int, default=0, help="default: 0")
        if name == "datasets":
            p.add_argument("--data-root", default=None, help="default: $DGL_BILEVEL_DATA or ../shared/data")
    return parser


def command_help(command: str) -> str:
    """The ``--help`` text of one command (for docs and tests)."""
    parser = build_parser(command)
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))  # noqa: SLF001
    return sub.choices[command].format_help()


def config_from_args(args: argparse.Namespace):
    """The configuration: command defaults < ``--config`` file < explicit flags."""
    from .config import ExperimentConfig, flatten, read_yaml_options

    names = {f.name for f in dataclasses.fields(ExperimentConfig)}
    values: dict[str, Any] = dict(COMMAND_DEFAULTS.get(args.command, {}))
    given = {k: v for k, v in vars(args).items() if k in names}
    from_file: dict[str, Any] = {}
    lines: dict[str, int] = {}
    if args.config:
        read, lines = read_yaml_options(args.config)
        from_file = _file_values(read, given, args.config)
        values.update(from_file)
    values.update(given)
    config = ExperimentConfig(**flatten(values, "command line"))
    _check_inner_options(config, given, {k: v for k, v in from_file.items() if k not in given}, args.config, lines,
                         file_dataset=from_file.get("dataset"))
    if config.unroll_checkpoint is False:  # a DeprecationWarning too, which Python hides from a command's user
        print("dgl-bilevel: warning: --no-unroll-checkpoint (unroll_checkpoint: false) is deprecated: it is "
              "--reverse-engine autograd", file=sys.stderr)
    return config


def _check_inner_options(config: Any, given: dict, from_file: dict, path: Optional[str], lines: dict,
                         file_dataset: Optional[str] = None) -> None:
    """Refuse flags the run's inner problem does not read (``--model gcn --inner laplacian``); warn
    about such options in a ``--config`` file only where they differ from what the run uses anyway.

    A file is only warned about: a written ``config.yaml`` lists every option, including those of
    the other inner problems, and must rerun as it is. "Anyway" is judged on the file's own data set
    (``file_dataset``), whose presets filled the file, even when ``--dataset`` runs it elsewhere.
    ``inner_problem.config_options`` declares what each inner problem reads
    (:func:`dgl_bilevel.config.unread_options`).
    """
    from .config import ExperimentConfig, cli_flag, unread_options
    from .methods import METHODS

    config.validate()  # the inner problem and method are registered names before asking what they read
    fields = {f.name: f for f in dataclasses.fields(ExperimentConfig)}
    inner = METHODS[config.method].requires.get("inner", config.inner)
    if "inner" in given and given["inner"] != inner:
        raise ConfigError(f"--method {config.method} runs the {inner} inner problem: --inner {given['inner']} would "
                          "be ignored; drop --inner or choose another method")
    refused = unread_options(inner, given)
    if len(refused) == 1:
        (name, readers), = refused.items()
        raise ConfigError(f"{cli_flag(fields[name])} is not read by the {inner} inner problem (only by "
                          f"{', '.join(readers)}): it would be ignored; drop it or choose --inner {readers[0]}")
    if refused:
        flags = ", ".join(cli_flag(fields[name]) for name in refused)
        readers = "; ".join(f"{cli_flag(fields[name])}: {', '.join(r)}" for name, r in refused.items())
        raise ConfigError(f"{flags} are not read by the {inner} inner problem (only by: {readers}): they would be "
                          "ignored; drop them or choose another --inner")
    ignored = unread_options(inner, from_file)
    if not ignored:
        return
    defaults = {name: fields[name].default for name in ignored if fields[name].default is not dataclasses.MISSING}
    # what the file's own data set would have used anyway: a file run with --dataset NAME (a written
    # config.yaml, a shipped configuration) holds its data set's preset values, not NAME's
    anyway = dataclasses.replace(config, **defaults).resolved()
    if file_dataset is not None and file_dataset != config.dataset:
        try:
            anyway = dataclasses.replace(config, dataset=file_dataset, **defaults).resolved()
        except ConfigError:  # the file's data set is unknown here: judge by the run's
            pass
    for name, readers in ignored.items():
        if from_file[name] != getattr(anyway, name):
            where = f"{path}, line {lines[name]}" if name in lines else str(path)
            print(f"dgl-bilevel: warning: {where}: option '{name}' ({from_file[name]!r}) has no effect: the {inner} "
                  f"inner problem does not read it (only {', '.join(readers)})", file=sys.stderr)


def _file_values(from_file: dict, given: dict, path: str) -> dict:
    """A config file's options under the command line's: a ``--method`` other than the file's drops
    the file's expansion of its own method (a written ``config.yaml`` records ``regularizer: none``
    for ``bo``; kept, it would silently turn ``--method bo+reg`` back into ``bo``), with the options of
    the file's structure (the shared term), and, for a method that learns no graph, the file's options
    of a learned graph (refit, cross-fitting)."""
    from .methods import LEARNED_GRAPH_OPTIONS, METHODS, STRUCTURE_OPTIONS, preset_fields

    method = given.get("method")
    if method is None or method == from_file.get("method"):
        return from_file
    follow = set(preset_fields()) | set(STRUCTURE_OPTIONS)
    if method in METHODS and not METHODS[method].learns_graph:
        follow |= set(LEARNED_GRAPH_OPTIONS)
    dropped = sorted(k for k in follow if k in from_file and k not in given)
    if dropped:
        print(f"--method {method} replaces {from_file.get('method', 'the default method')} of {path}: "
              f"{', '.join(dropped)} follow {method} (pass them as flags to set them)", file=sys.stderr)
    return {k: v for k, v in from_file.items() if k not in dropped}


# --------------------------------------------------------------------------- commands
def _generate_ogb(args: argparse.Namespace) -> int:
    from .data.generated import ARXIV_SHAPE, arxiv_like
    from .data.ogb import write_ogb_layout

    n = max(10, int(round(ARXIV_SHAPE["num_nodes"] * args.scale)))
    e = max(n, int(round(ARXIV_SHAPE["num_edges"] * args.scale)))
    folder = write_ogb_layout(arxiv_like(num_nodes=n, num_edges=e, seed=args.seed), args.root)
    print(f"wrote a synthetic arxiv-shaped data set ({n:,} nodes, {e:,} citations) to {folder}")
    return 0


def _datasets(args: argparse.Namespace) -> int:
    from ._dgl import APPLIED_SHIMS, dgl
    from .data.files import resolve_data_root
    from .data.graph_file import FORMAT
    from .registry import DATASETS

    root, why = resolve_data_root(args.data_root)
    print(f"data root: {root} ({why})\n")
    width = max(len(n) for n in DATASETS)
    counts: dict[str, int] = {}
    for name, entry in sorted(DATASETS.items()):
        state = entry.state(args.data_root)
        counts[state] = counts.get(state, 0) + 1
        print(f"{name.ljust(width)}  {state.ljust(9)}  {entry.description}")
        print(f"{''.ljust(width)}  {''.ljust(9)}  {_where(entry, args.data_root)}")
    print("\n" + ", ".join(f"{counts.get(s, 0)} {s}" for s in ("available", "missing", "generated")))
    print(f"your own graph: --dataset path/to/graph.bin, {FORMAT}")
    print(f"DGL {dgl.__version__}" + (f" (compatibility shims: {', '.join(APPLIED_SHIMS)})" if APPLIED_SHIMS else ""))
    return 0


def _where(entry: Any, root: Optional[str]) -> str:
    """Where a data set is read from; for a missing one, which files are absent."""
    paths = entry.paths(root)
    if not paths:
        return "generated in memory (seeded); no files"
    folder = paths[0].parent.resolve()
    missing = entry.missing(root)
    if not missing:
        return f"reads {paths[0].resolve()}" if len(paths) == 1 else f"reads {len(paths)} files in {folder}"
    if len(paths) == 1:
        return f"missing {paths[0].resolve()}"
    names = ", ".join(p.name for p in missing[:4]) + (", ..." if len(missing) > 4 else "")
    return f"looks in {folder}: {len(missing)} of {len(paths)} file(s) missing ({names})"


def _run_command(args: argparse.Namespace) -> int:
    if args.command == "datasets":
        return _datasets(args)
    if args.command == "generate-ogb":
        return _generate_ogb(args)
    config = config_from_args(args)
    config.validate()  # every option checked before any data loads
    if config.outer_steps == 0 and config.learns_graph and args.command in ("run", "leaderboard"):
        print("dgl-bilevel: --outer-steps 0: nothing is learned; each seed's initial graph (the structure's "
              "starting weights) is scored once", file=sys.stderr)
    if args.command == "leaderboard":
        from .experiment import run_leaderboard

        run_leaderboard(config)
        return 0
    if args.command == "tune":
        from .experiment.tune import run_tune, space_from_yaml

        for flag, value in (("--trials", args.trials), ("--tune-seeds", args.tune_seeds)):
            if value < 1:
                raise ConfigError(f"{flag} must be >= 1; got {value}")
        space = space_from_yaml(args.space) if args.space else None
        given = tuple(k for k in vars(args) if k not in ("command", "config", "trials", "tune_seeds", "space", "timeout"))
        run_tune(config, trials=args.trials, seeds=args.tune_seeds, space=space, timeout=args.timeout, fixed=given)
        return 0
    if args.command == "scarcity":
        from .experiment import run_scarcity

        run_scarcity(config, iteration=args.iteration)
        return 0
    from .experiment import run_experiment

    summary = run_experiment(config)
    return 1 if any(r.get("stopped_early") for r in summary["per_seed"]) else 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = next((a for a in argv if a in COMMANDS), None)
    parser = build_parser(command)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        return _run_command(args)
    except BilevelError as exc:
        print(f"dgl-bilevel: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:
        checkpoint = getattr(exc, "checkpoint", None)
        if checkpoint is not None:
            print(f"dgl-bilevel: interrupted; outer iteration {exc.iteration} is saved in {checkpoint}: rerun the "
                  "same command with --resume to continue from there", file=sys.stderr)
        else:
            print("dgl-bilevel: interrupted; no checkpoint was written, so there is nothing to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
