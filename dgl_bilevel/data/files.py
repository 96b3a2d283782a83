"""Locating data files on disk with errors that name what was expected where."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable, Union

from ..errors import DataError

PathLike = Union[str, os.PathLike]

#: Where data is looked for when no root is given: $DGL_BILEVEL_DATA, else ../shared/data.
DEFAULT_DATA_ROOT = os.environ.get("DGL_BILEVEL_DATA", os.path.join("..", "shared", "data"))


def data_root(root: PathLike | None) -> Path:
    """The data root: ``root`` if given, else ``$DGL_BILEVEL_DATA``, else ``../shared/data``."""
    return Path(root if root is not None else DEFAULT_DATA_ROOT).expanduser()


def require_files(folder: Path, names: Iterable[str], what: str) -> list[Path]:
    """Paths of ``names`` inside ``folder``; a :class:`DataError` naming every missing one."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"{what}: data folder {folder.resolve()} does not exist (pass --data-root / root=...)")
    paths = [folder / name for name in names]
    missing = [str(p.resolve()) for p in paths if not p.is_file()]
    if missing:
        raise DataError(f"{what}: missing data file(s): " + ", ".join(missing))
    return paths
