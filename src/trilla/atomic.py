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
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from trilla.errors import NO_SPACE, disk_full


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
        if err.errno in NO_SPACE:
            raise disk_full(path, err) from None
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
    with replacing(path) as tmp:
        frame.to_csv(tmp, **kwargs)
    return Path(path)
