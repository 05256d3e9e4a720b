"""The store cache: what is packed, how big and how old it is, and pruning what no process uses.

Every process that opens a store holds a shared lock on its `.lock` file for as long as it runs, and a
store being packed is locked exclusively until it is renamed into place (see store.py). Pruning takes
the exclusive lock without waiting, so a store in use or being written is never touched, and it moves
a store aside before deleting it, so no process ever opens half a store. Written by hand: the locks are
the store's own protocol.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pandas as pd

from trilla.data.store import LOCK, default_cache_dir
from trilla.errors import TrillaError


@dataclass
class CachedStore:
    root: Path
    kind: str
    rows: int
    bytes: int
    created: datetime
    last_used: datetime
    source: str
    state: str  # ready, partial (a build that died) or writing

    @property
    def idle_days(self) -> float:
        return (datetime.now() - self.last_used).total_seconds() / 86400


def list_stores(cache_dir: Path | None = None) -> list[CachedStore]:
    """Every store in the cache (default: $TRILLA_CACHE/stores), most recently used first."""
    cache_dir = Path(cache_dir) if cache_dir else default_cache_dir()
    if not cache_dir.is_dir():
        return []
    found = [_describe(entry) for entry in sorted(cache_dir.iterdir()) if entry.is_dir() and not entry.name.startswith(".")]
    return sorted(found, key=lambda s: s.last_used, reverse=True)


def stores_table(cache_dir: Path | None = None) -> pd.DataFrame:
    """`list_stores` as a table for people: size in MB, age and idle time in days, in use or not."""
    rows = [{
        "store": s.root.name, "kind": s.kind, "rows": s.rows, "size_mb": round(s.bytes / 1e6, 1),
        "created": s.created.isoformat(timespec="minutes"), "idle_days": round(s.idle_days, 1),
        "in_use": _in_use(s.root), "state": s.state, "source": s.source,
    } for s in list_stores(cache_dir)]
    return pd.DataFrame(rows, columns=["store", "kind", "rows", "size_mb", "created", "idle_days", "in_use", "state", "source"])


def prune(
    cache_dir: Path | None = None, older_than_days: float | None = None, max_size_gb: float | None = None, dry_run: bool = False,
) -> tuple[list[CachedStore], list[CachedStore]]:
    """Remove stores idle for more than `older_than_days`, then the least recently used ones until the
    cache fits in `max_size_gb`; stores in use or being written are kept whatever their age. Returns
    (removed, kept-because-in-use); with `dry_run`, what would be removed."""
    if older_than_days is None and max_size_gb is None:
        raise TrillaError("say what to prune: --older-than DAYS and/or --max-size GB")
    stores = list_stores(cache_dir)
    doomed = [s for s in stores if older_than_days is not None and s.idle_days > older_than_days]
    if max_size_gb is not None:
        total = sum(s.bytes for s in stores if s not in doomed)
        for store in sorted((s for s in stores if s not in doomed), key=lambda s: s.last_used):
            if total <= max_size_gb * 1e9:
                break
            doomed.append(store)
            total -= store.bytes
    removed, busy = [], []
    for store in doomed:
        (removed if _remove(store.root, dry_run) else busy).append(store)
    return removed, busy


def _describe(root: Path) -> CachedStore:
    meta_path = root / "meta.json"
    meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
    stamp = root / LOCK if (root / LOCK).exists() else root
    created = datetime.fromisoformat(meta["created"]) if "created" in meta else datetime.fromtimestamp(root.stat().st_mtime)
    if meta:
        state = "ready"
    else:
        state = "writing" if _in_use(root) else "partial"
    return CachedStore(
        root=root, kind=meta.get("kind", "?"), rows=int(meta.get("shape", [0])[0]), bytes=_size(root), created=created,
        last_used=datetime.fromtimestamp(stamp.stat().st_mtime), source=meta.get("source") or _common_folder(root), state=state,
    )


def _common_folder(root: Path) -> str:
    """Where an older store's files lie (stores packed before sources were recorded)."""
    index = root / "index.csv"
    if not index.is_file():
        return ""
    paths = pd.read_csv(index, usecols=["path"], keep_default_na=False, encoding_errors="surrogateescape")["path"].tolist()
    return os.path.commonpath(paths) if paths else ""


def _size(root: Path) -> int:
    return sum(f.stat().st_size for f in root.rglob("*") if f.is_file())


def _in_use(root: Path) -> bool:
    """Whether some process holds the store's lock (using it, or still writing it)."""
    try:
        with open(root / LOCK, "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return False
    except BlockingIOError:
        return True


def _remove(root: Path, dry_run: bool) -> bool:
    """Delete a store unless a process holds it; False when it is in use."""
    try:
        with open(root / LOCK, "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            if dry_run:
                return True
            doomed = root.with_name(f".{root.name}.pruning-{os.getpid()}-{time.monotonic_ns()}")
            root.rename(doomed)  # from here on no process finds it; the lock still keeps out late openers
    except BlockingIOError:
        return False
    shutil.rmtree(doomed, ignore_errors=True)
    return True
