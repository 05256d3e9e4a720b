"""The on-disk store: every picture decoded and resized once into a uint8 memory map plus a manifest.

Opening a store is instant (np.memmap), and it is reused while the source files (path, size, mtime) and
the preprocessing are unchanged; any change gives a new key and a fresh build. Packing fans out over all
cores, each worker writing its rows straight into the map, so no pixels travel between processes.
Written by hand because no maintained library packs labelled image folders into a reusable memory map.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from trilla.data import images
from trilla.data.sources import Problem

log = logging.getLogger("trilla")

FORMAT_VERSION = 1
_CHUNK = 64


def default_cache_dir() -> Path:
    return Path(os.environ.get("TRILLA_CACHE", Path.home() / ".cache" / "trilla")) / "stores"


@dataclass
class Store:
    """Rows of `images` (N, size, size, channels) match rows of `index` (path, sha1, ok, reason).

    `size` and `channels` are resolved: an `auto` in the config is decided once, when packing.
    """

    root: Path
    images: np.ndarray
    index: pd.DataFrame
    size: int
    channels: str
    reused: bool

    @property
    def problems(self) -> list[Problem]:
        bad = self.index[~self.index["ok"]]
        return [Problem(p, r) for p, r in zip(bad["path"], bad["reason"])]


def store_key(paths: list[Path], size: int | str, channels: str) -> str:
    """Hash of the preprocessing and of every file's path, size and modification time."""
    digest = hashlib.sha256(json.dumps({"v": FORMAT_VERSION, "size": size, "channels": channels}).encode())
    for path in paths:
        stat = path.stat()
        digest.update(f"{path.resolve()}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:20]


def open_or_build(
    paths: list[Path], size: int | str = "auto", channels: str = "auto", cache_dir: Path | None = None, progress: bool = True
) -> Store:
    """The store for these files and this preprocessing: reused if packed before, else packed now."""
    cache_dir = Path(cache_dir) if cache_dir else default_cache_dir()
    paths = [Path(p) for p in paths]
    root = cache_dir / store_key(paths, size, channels)
    if not (root / "meta.json").is_file():
        _build(root, paths, size, channels, progress)
        return _open(root, reused=False)
    log.info("reusing store %s", root)
    return _open(root, reused=True)


def _open(root: Path, reused: bool) -> Store:
    meta = json.loads((root / "meta.json").read_text())
    shape = tuple(meta["shape"])
    array = np.memmap(root / "images.u8", dtype=np.uint8, mode="r", shape=shape) if shape[0] else np.zeros(shape, np.uint8)
    index = pd.read_csv(root / "index.csv", keep_default_na=False, dtype={"sha1": str, "reason": str})
    return Store(root, array, index, meta["size"], meta["channels"], reused)


def _build(root: Path, paths: list[Path], size: int | str, channels: str, progress: bool) -> None:
    tmp = root.with_name(f"{root.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    probe_errors: dict[int, str] = {}
    if channels == "auto" or size == "auto":
        found_channels, sides = set(), []
        for i, path in enumerate(paths):
            try:
                kind, side = images.probe(path)
                found_channels.add(kind)
                sides.append(side)
            except images.ImageError as err:
                probe_errors[i] = str(err)
        if channels == "auto":
            channels = "rgb" if "rgb" in found_channels else "grey"
        if size == "auto":
            size = images.auto_size(sides)
    shape = (len(paths), size, size, 1 if channels == "grey" else 3)
    if len(paths):
        np.memmap(tmp / "images.u8", dtype=np.uint8, mode="w+", shape=shape).flush()
    sha1 = [""] * len(paths)
    reasons = dict(probe_errors)
    todo = [i for i in range(len(paths)) if i not in probe_errors]
    chunks = [todo[i : i + _CHUNK] for i in range(0, len(todo), _CHUNK)]
    jobs = [(str(tmp / "images.u8"), shape, [(i, str(paths[i])) for i in chunk], size, channels) for chunk in chunks]
    bar = tqdm(total=len(todo), desc="packing images", unit="img", disable=None if progress else True)
    workers = min(os.cpu_count() or 1, len(chunks))
    if workers > 1:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            results = pool.map(_pack_chunk, jobs)
            for done in results:
                _collect(done, sha1, reasons, bar)
    else:
        for job in jobs:
            _collect(_pack_chunk(job), sha1, reasons, bar)
    bar.close()
    pd.DataFrame(
        {
            "path": [str(p) for p in paths],
            "sha1": sha1,
            "ok": [i not in reasons for i in range(len(paths))],
            "reason": [reasons.get(i, "") for i in range(len(paths))],
        }
    ).to_csv(tmp / "index.csv", index=False)
    (tmp / "meta.json").write_text(json.dumps({"shape": shape, "size": size, "channels": channels, "version": FORMAT_VERSION}))
    try:
        tmp.rename(root)
    except OSError:
        # Another process packed the same key meanwhile; its store is equivalent.
        shutil.rmtree(tmp, ignore_errors=True)


def _collect(done: list[tuple[int, str, str]], sha1: list[str], reasons: dict[int, str], bar: tqdm) -> None:
    for i, digest, reason in done:
        if reason:
            reasons[i] = reason
        else:
            sha1[i] = digest
    bar.update(len(done))


def _pack_chunk(job: tuple[str, tuple[int, ...], list[tuple[int, str]], int, str]) -> list[tuple[int, str, str]]:
    """Worker: decode a chunk of files and write their rows into the shared map."""
    file, shape, items, size, channels = job
    out = np.memmap(file, dtype=np.uint8, mode="r+", shape=shape)
    done = []
    for i, path in items:
        try:
            data = images.read(path)
            out[i] = images.decode(data, size, channels)  # type: ignore[arg-type]
            done.append((i, hashlib.sha1(data).hexdigest(), ""))
        except images.ImageError as err:
            done.append((i, "", str(err)))
    out.flush()
    return done
