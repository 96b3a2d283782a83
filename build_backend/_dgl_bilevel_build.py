"""PEP 517 build backend: setuptools' own, plus the import hook's ``.pth`` file in every wheel.

``dgl_bilevel_import_hook.pth`` must sit directly in site-packages to run at interpreter start
(it lets a program ``import dgl`` before ``import dgl_bilevel``: docs/design.md, section 4).
setuptools has no declarative way to put a file at a wheel's root, and the editable wheels it
builds (PEP 660, ``pip install -e .``) carry no data files at all (setuptools 84's
``editable_wheel`` looks for a ``has_data`` method that distributions do not have, so
``data_files`` are silently skipped). So this backend lets setuptools build the wheel, regular or
editable, and then adds the ``.pth`` at the wheel's root with its line in ``RECORD``: every
installer puts a pure wheel's root files in site-packages, and ``pip uninstall`` removes it with
the rest. Only the PEP 517/660 hooks' contract is relied on, not setuptools' internals.
"""
from __future__ import annotations

import base64
import hashlib
import os
import zipfile
from typing import Optional

from setuptools import build_meta as _setuptools
from setuptools.build_meta import *  # noqa: F401,F403 -- every other hook exactly as setuptools has it

#: The file installed into site-packages, and its one line (``import`` lines of a .pth run at start-up).
PTH_NAME = "dgl_bilevel_import_hook.pth"
PTH_TEXT = "import _dgl_bilevel_import_hook\n"


def build_wheel(wheel_directory: str, config_settings: Optional[dict] = None,
                metadata_directory: Optional[str] = None) -> str:
    """setuptools' wheel (``pip install .``) with the import hook's ``.pth`` added."""
    name = _setuptools.build_wheel(wheel_directory, config_settings, metadata_directory)
    add_import_hook(os.path.join(wheel_directory, name))
    return name


def build_editable(wheel_directory: str, config_settings: Optional[dict] = None,
                   metadata_directory: Optional[str] = None) -> str:
    """setuptools' editable wheel (``pip install -e .``) with the import hook's ``.pth`` added."""
    name = _setuptools.build_editable(wheel_directory, config_settings, metadata_directory)
    add_import_hook(os.path.join(wheel_directory, name))
    return name


def add_import_hook(wheel: str) -> None:
    """Rewrite ``wheel`` with :data:`PTH_NAME` at its root and listed in its RECORD (hash and size,
    as the wheel format requires); the RECORD stays the archive's last entry."""
    data = PTH_TEXT.encode()
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    tmp = wheel + ".tmp"
    with zipfile.ZipFile(wheel) as src, zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as dst:
        record = next(n for n in src.namelist() if n.endswith(".dist-info/RECORD") and n.count("/") == 1)
        for item in src.infolist():
            if item.filename not in (record, PTH_NAME):
                dst.writestr(item, src.read(item))
        record_info = src.getinfo(record)
        info = zipfile.ZipInfo(PTH_NAME, date_time=record_info.date_time)  # the build's own time stamp
        info.compress_type, info.external_attr = zipfile.ZIP_DEFLATED, 0o644 << 16
        dst.writestr(info, data)
        lines = [line for line in src.read(record).decode().splitlines()
                 if line and not line.startswith(PTH_NAME + ",")]
        own = next((i for i, line in enumerate(lines) if line.startswith(record + ",")), len(lines))
        lines.insert(own, f"{PTH_NAME},sha256={digest},{len(data)}")
        dst.writestr(record_info, "\n".join(lines) + "\n")
    os.replace(tmp, wheel)
