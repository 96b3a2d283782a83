"""Checkpoints of the outer loop: everything needed to continue a run bit for bit.

One payload holds the configuration it was written under, the outer state (next iteration,
history, best graph, early stop), the structure's parameters and optimizer state, the inner
problem's and the hypergradient method's warm starts, and both random generators. Files are
written atomically (temporary file, then rename), so an interrupted write leaves the previous
checkpoint intact.

A payload holds tensors and plain values only (checked when written), and files are read with
``torch.load(..., weights_only=True)``: a checkpoint folder someone else hands over cannot run code
on ``--resume`` (a pickle of any other object is refused with a :class:`ConfigError`).
"""
from __future__ import annotations

import copy
import os
import pickle
import re
from collections import OrderedDict
from pathlib import Path
from typing import Any

import torch

from ..errors import ConfigError
from .state import LoopView

#: Settings a resumed run may change: it may run longer than the run that wrote the checkpoint.
RESUMABLE_CHANGES = ("outer_steps",)

#: Values a payload may hold besides tensors: what ``torch.load(weights_only=True)`` reads back.
#: Exact types, so a subclass that pickles as its own class (a numpy float, an enum) is caught.
PLAIN_TYPES = (type(None), bool, int, float, complex, str, bytes, torch.Size, torch.dtype, torch.device)
CONTAINERS = (dict, OrderedDict, list, tuple, set)


def snapshot(loop: LoopView) -> dict:
    """A deep copy of the loop's state: later optimizer steps do not change it."""
    payload = {
        "config": loop.config,
        "next_iteration": loop.state.next_iteration,
        "structure": loop.structure.state_dict(),
        "optimizer": loop.optimizer.state_dict() if loop.optimizer is not None else {},  # None: a frozen structure
        "inner": loop.inner.state_dict(),
        "method": loop.method.state_dict(),
        "generator": loop.generator.get_state(),
        "torch_rng": torch.get_rng_state(),
        "best": loop.selection.state_dict(),
        "history": list(loop.state.history),
        "stopped": loop.state.stopped,
    }
    return copy.deepcopy(payload)


def check_plain(value: Any, where: str = "payload") -> None:
    """Raise ``TypeError`` naming the first value in ``value`` that is neither a tensor nor a plain
    value (:data:`PLAIN_TYPES` in :data:`CONTAINERS`): it could not be read back with weights_only."""
    if isinstance(value, torch.Tensor) or type(value) in PLAIN_TYPES:
        return
    if type(value) not in CONTAINERS:
        raise TypeError(f"checkpoint {where} is a {type(value).__module__}.{type(value).__qualname__}: checkpoints "
                        "hold tensors and plain values only (they are read with torch.load(weights_only=True)); "
                        "make the state_dict that returns it return tensors, numbers, strings and containers of them")
    if isinstance(value, dict):
        for key, item in value.items():
            check_plain(key, f"{where} key {key!r}")
            check_plain(item, f"{where}[{key!r}]")
    else:
        for i, item in enumerate(value):
            check_plain(item, f"{where}[{i}]")


def write(path: "str | os.PathLike", payload: dict) -> None:
    """Write ``payload`` to ``path`` atomically (after :func:`check_plain`)."""
    check_plain(payload)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)


def read(path: "str | os.PathLike") -> dict:
    """The payload in ``path``, read with ``weights_only=True``; anything else is a :class:`ConfigError`."""
    try:
        payload = torch.load(Path(path), weights_only=True)
    except pickle.UnpicklingError as exc:
        found = re.search(r"Unsupported global: GLOBAL ([\w.]+)", str(exc))
        what = f"a pickled {found.group(1)}" if found else "a pickled object"
        raise ConfigError(f"checkpoint {path} is refused: it holds {what}, not only tensors and plain values, and "
                          "loading it could run arbitrary code (checkpoints are read with "
                          "torch.load(weights_only=True)); delete it, or resume only from checkpoints that "
                          "dgl_bilevel wrote") from None
    except (RuntimeError, EOFError, OSError) as exc:
        first = (str(exc).splitlines() or [""])[0]
        raise ConfigError(f"checkpoint {path} cannot be read ({type(exc).__name__}: {first}); delete it, or run "
                          "without resume") from exc
    if not isinstance(payload, dict) or "next_iteration" not in payload:
        raise ConfigError(f"checkpoint {path} is not a dgl_bilevel checkpoint (no next_iteration); delete it, or "
                          "run without resume")
    return payload


def check_settings(path: "str | os.PathLike", saved: dict, current: dict) -> None:
    """Refuse a checkpoint written under other settings (other than :data:`RESUMABLE_CHANGES`)."""
    saved = {k: v for k, v in saved.items() if k not in RESUMABLE_CHANGES}
    current = {k: v for k, v in current.items() if k not in RESUMABLE_CHANGES}
    if saved != current:
        changed = sorted(k for k in set(saved) | set(current) if saved.get(k) != current.get(k))
        raise ConfigError(f"checkpoint {path} was written by a run with different settings ({', '.join(changed)}); "
                          "remove it or use a different output folder")


def restore(loop: LoopView, path: "str | os.PathLike") -> None:
    """Load a checkpoint into ``loop`` after checking that it was written under the same settings."""
    payload = read(path)
    check_settings(path, payload.get("config", {}), loop.config)
    loop.structure.load_state_dict(payload["structure"])
    if loop.optimizer is not None:
        loop.optimizer.load_state_dict(payload["optimizer"])
    loop.inner.load_state_dict(payload["inner"])
    loop.method.load_state_dict(payload["method"])
    loop.generator.set_state(payload["generator"])
    torch.set_rng_state(payload["torch_rng"])
    loop.selection.load_state_dict(payload["best"])
    loop.state.history = list(payload["history"])
    loop.state.stopped = payload.get("stopped")
    loop.state.next_iteration = int(payload["next_iteration"])
