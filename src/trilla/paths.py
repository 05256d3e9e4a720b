"""Where trilla keeps things of its own, and how it names a new file beside a user's: the cache root
(`$TRILLA_CACHE`, default ~/.cache/trilla) under which the stores, the harvest's HTTP cache and the quiz
scores live, and a free name that never overwrites what is already there."""

from __future__ import annotations

import os
from pathlib import Path


def cache_root() -> Path:
    return Path(os.environ.get("TRILLA_CACHE", Path.home() / ".cache" / "trilla"))


def free_path(path: Path) -> Path:
    """`path`, or `name-2.png`, `name-3.png`... when it exists: nothing already there is overwritten."""
    candidate, n = path, 1
    while candidate.exists():
        n += 1
        candidate = path.with_name(f"{path.stem}-{n}{path.suffix}")
    return candidate
