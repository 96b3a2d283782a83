"""Checkpoints of the outer loop: everything needed to continue a run bit for bit.

One payload holds the configuration it was written under, the outer state (next iteration,
history, best graph, early stop), the structure's parameters and optimizer state, the inner
problem's and the hypergradient method's warm starts, and both random generators. Files are
written atomically (temporary file, then rename), so an interrupted write leaves the previous
checkpoint intact.
"""
from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from ..errors import ConfigError

if TYPE_CHECKING:
    from .loop import OuterLoop

#: Settings a resumed run may change: it may run longer than the run that wrote the checkpoint.
RESUMABLE_CHANGES = ("outer_steps",)


def snapshot(loop: "OuterLoop") -> dict:
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


def write(path: "str | os.PathLike", payload: dict) -> None:
    """Write ``payload`` to ``path`` atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)


def read(path: "str | os.PathLike") -> dict:
    return torch.load(Path(path), weights_only=False)


def check_settings(path: "str | os.PathLike", saved: dict, current: dict) -> None:
    """Refuse a checkpoint written under other settings (other than :data:`RESUMABLE_CHANGES`)."""
    saved = {k: v for k, v in saved.items() if k not in RESUMABLE_CHANGES}
    current = {k: v for k, v in current.items() if k not in RESUMABLE_CHANGES}
    if saved != current:
        changed = sorted(k for k in set(saved) | set(current) if saved.get(k) != current.get(k))
        raise ConfigError(f"checkpoint {path} was written by a run with different settings ({', '.join(changed)}); "
                          "remove it or use a different output folder")


def restore(loop: "OuterLoop", path: "str | os.PathLike") -> None:
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
