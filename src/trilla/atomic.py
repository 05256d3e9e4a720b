"""Writes that never leave a half-written file: write beside the target, then rename over it.

A reader (a server reloading a run, a second training process, a person opening the CSV) sees the old
file or the new one, never a mix, and a crash mid-write leaves the old file whole. The temporary name
carries the process id, so two processes writing the same target never share a temporary file.
The file is fsynced before the rename. A full disk is a `TrillaError` naming the folder. Written by
hand: it is a few lines over `os.replace`, which is atomic on POSIX and Windows alike.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from trilla.errors import TrillaError, write_failed


@contextmanager
def replacing(path: str | Path) -> Iterator[Path]:
    """A temporary path beside `path` to write to; it replaces `path` when the block ends without an error
    (and is removed when it raises). The temporary name keeps the suffix, for writers that look at it."""
    path = Path(path)
    tmp = path.with_name(f".{path.stem}.tmp-{os.getpid()}{path.suffix}")
    try:
        yield tmp
        _sync(tmp)
        os.replace(tmp, path)
        if os.name == "posix":  # a folder cannot be opened for fsync on Windows
            _sync(path.parent)
    except OSError as err:
        if (refused := write_failed(path, err)) is not None:
            raise refused from None
        raise
    finally:
        tmp.unlink(missing_ok=True)


def _sync(path: Path) -> None:
    """Flush a file (or a folder's entries) to the disk, so a power cut after the rename keeps the new
    content rather than an empty file."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_bytes(path: str | Path, data: bytes) -> Path:
    with replacing(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_text(path: str | Path, text: str) -> Path:
    with replacing(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def write_json(path: str | Path, payload: Any) -> Path:
    return write_text(path, json.dumps(payload, indent=2, sort_keys=True))


def write_csv(path: str | Path, frame, **kwargs) -> Path:
    """A pandas DataFrame as CSV (`kwargs` go to `to_csv`; no index unless asked)."""
    kwargs.setdefault("index", False)
    kwargs.setdefault("errors", "surrogateescape")  # a file name that is not UTF-8 is written back as its own bytes
    with replacing(path) as tmp:
        frame.to_csv(tmp, **kwargs)
    return Path(path)


def reserve(path: str | Path, size: int, what: str, spare: int = 0) -> None:
    """Make `path` at least `size` bytes with every block allocated on the disk (posix_fallocate) before
    anything is written through a memory map: a map over a sparse file dies with SIGBUS at the first
    page a full disk cannot back, where this is an error naming the folder and the space `what` needs
    (`spare`: bytes the caller will write beside it)."""
    path = Path(path)
    free = shutil.disk_usage(path.parent).free
    have = path.stat().st_size if path.exists() else 0
    if size + spare - have > free:
        raise TrillaError(
            f"{what} needs {(size + spare) / 2**20:.1f} MB in {path.parent.parent} but only {free / 2**20:.1f} MB are free; "
            "free some space (trilla cache prune), or write elsewhere (data.store, TRILLA_CACHE)"
        )
    try:
        with open(path, "r+b" if path.exists() else "wb") as handle:
            if hasattr(os, "posix_fallocate"):
                os.posix_fallocate(handle.fileno(), 0, size)
            elif have < size:
                handle.truncate(size)
    except OSError as err:
        if (refused := write_failed(path, err)) is not None:
            raise refused from None
        raise
