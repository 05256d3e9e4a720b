"""The on-disk store: every file decoded once into a fixed-shape memory map plus a manifest.

A codec, which each input kind defines, says what a row is: a picture resized and padded to a square
(uint8), or a sound decoded to mono at the run's sample rate, cropped or padded to one length (int16,
with each clip's true length kept). Opening a store is instant (np.memmap), and it is reused while the source files (path, size,
mtime) and the codec's settings are unchanged; any change gives a new key and a fresh build. Packing
fans out over all cores, each worker writing its rows straight into the map, so no samples travel
between processes. Written by hand because no maintained library packs labelled files into a reusable
memory map.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import shutil
import signal
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import NamedTuple, Protocol

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from trilla.atomic import reserve, write_csv, write_json
from trilla.data.sources import Problem
from trilla.errors import TrillaError, Unreadable, write_failed
from trilla.paths import cache_root

log = logging.getLogger("trilla")

FORMAT_VERSION = 3  # 3: index.csv has a note column; a cropped clip's length is the whole sound's
_CHUNK = 64


def default_cache_dir() -> Path:
    return cache_root() / "stores"


class DecodeError(Unreadable):
    """A file the codec cannot turn into a row; the message is the reason shown to the user."""


class Decoded(NamedTuple):
    """One file as a row of the store: the row, the length of its content (the samples of the whole
    sound, before it was cropped or padded to one length; 0 for pictures), and a note for a file that decodes but deserves a look (a picture
    that becomes a strip one pixel thick), kept in the index and shown in the report."""

    row: np.ndarray
    length: int = 0
    note: str = ""


class Codec(Protocol):
    """What a row of the store is, as an input kind defines it (a frozen dataclass, so its settings key
    the store): `resolve` decides any `auto` setting from the files and `decode` turns one file's bytes
    into a row (and the length of its content, for clips padded to one length)."""

    kind: str
    dtype: type

    def resolve(self, paths: list[Path]) -> tuple[Codec, dict[int, str]]: ...

    def row_shape(self) -> tuple[int, ...]: ...

    def decode(self, data: bytes) -> Decoded: ...


@dataclass
class Store:
    """Rows of `array` match rows of `index` (path, sha1, ok, reason, length, note).

    The codec is resolved: an `auto` in the config is decided once, when packing.
    """

    root: Path
    array: np.ndarray
    index: pd.DataFrame
    codec: Codec
    reused: bool

    @property
    def problems(self) -> list[Problem]:
        bad = self.index[~self.index["ok"]]
        return [Problem(p, r) for p, r in zip(bad["path"], bad["reason"])]

    @property
    def notes(self) -> list[Problem]:
        """Files packed with a warning (their `note`): usable, but worth a look."""
        noted = self.index[self.index["ok"] & (self.index["note"] != "")]
        return [Problem(p, n) for p, n in zip(noted["path"], noted["note"])]

    @property
    def lengths(self) -> np.ndarray:
        """Each row's content length before cropping or padding (the samples of a sound; 0 for pictures)."""
        return self.index["length"].to_numpy()


def store_key(paths: list[Path], codec: Codec) -> str:
    """Hash of the codec's settings and of every file's path, size and modification time."""
    settings = {"v": FORMAT_VERSION, "kind": codec.kind, **asdict(codec)}
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode())
    for path in paths:
        try:
            stat = path.stat()
            said = f"\0{stat.st_size}\0{stat.st_mtime_ns}\n"
        except OSError as err:  # gone since it was listed: packing lists it as unreadable
            said = f"\0{err.strerror}\n"
        digest.update(os.fsencode(path.resolve()) + said.encode())  # a name need not be UTF-8
    return digest.hexdigest()[:20]


def open_or_build(
    paths: list[Path], codec: Codec, cache_dir: Path | None = None, progress: bool = True, source: str | Path | None = None,
) -> Store:
    """The store for these files and this codec: reused if packed before, else packed now. This process
    holds a shared lock on it from then on, so `trilla cache prune` leaves it alone; `source` (the
    data's path) is recorded for `trilla cache list`."""
    cache_dir = Path(cache_dir) if cache_dir else default_cache_dir()
    paths = [Path(p) for p in paths]
    root = cache_dir / store_key(paths, codec)
    remove_abandoned(cache_dir)
    for _ in range(3):  # a prune that removed the store between our check and our lock: pack it again
        reused = (root / "meta.json").is_file()
        if not reused:
            _build(root, paths, codec, progress, source)
        if _hold(root) and (root / "meta.json").is_file():
            if reused:
                log.info("reusing store %s", root)
            return _open(root, codec, reused)
        _release(root)
    raise TrillaError(f"the store {root} keeps disappearing while it is opened; is a prune running in a loop?")


_HELD: dict[Path, object] = {}
LOCK = ".lock"
TMP = ".tmp-"  # <key>.tmp-<pid>: a store being packed


def _hold(root: Path) -> bool:
    """A shared lock on the store for the rest of this process (released when the process ends); False
    when the store is gone (pruned a moment ago)."""
    if root in _HELD:
        return True
    try:
        handle = open(root / LOCK, "a")
    except FileNotFoundError:
        return False
    fcntl.flock(handle, fcntl.LOCK_SH)
    os.utime(root / LOCK)  # the store's last use, for `trilla cache list` and prune --older-than
    _HELD[root] = handle
    return True


def _release(root: Path) -> None:
    handle = _HELD.pop(root, None)
    if handle is not None:
        handle.close()


def _open(root: Path, codec: Codec, reused: bool) -> Store:
    meta = json.loads((root / "meta.json").read_text())
    codec = type(codec)(**meta["codec"])
    shape = tuple(meta["shape"])
    array = np.memmap(root / "rows.bin", dtype=codec.dtype, mode="r", shape=shape) if shape[0] else np.zeros(shape, codec.dtype)
    index = pd.read_csv(root / "index.csv", keep_default_na=False, encoding_errors="surrogateescape", dtype={"sha1": str, "reason": str, "note": str})
    return Store(root, array, index, codec, reused)


def remove_abandoned(cache_dir: Path) -> list[Path]:
    """Delete the half-packed stores of processes that died (killed, out of memory, a full disk): their
    builder's exclusive lock went with them, so a lock we can take means nobody is writing there."""
    removed = []
    for tmp in sorted(Path(cache_dir).glob(f"*{TMP}*")):
        if not tmp.is_dir():
            continue
        try:
            with open(tmp / LOCK, "a") as lock:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                shutil.rmtree(tmp, ignore_errors=True)
                removed.append(tmp)
        except OSError:
            continue  # a live builder holds it, or it is already gone
    for tmp in removed:
        log.info("removed %s, a store left half-packed by a process that is gone", tmp)
    return removed


def _build(root: Path, paths: list[Path], codec: Codec, progress: bool, source: str | Path | None) -> None:
    tmp = root.with_name(f"{root.name}{TMP}{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        tmp.mkdir(parents=True)
        with open(tmp / LOCK, "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # a store being written is never pruned
            _pack(tmp, paths, codec, progress, source)
            try:
                tmp.rename(root)
            except OSError:
                # Another process packed the same key meanwhile; its store is equivalent.
                shutil.rmtree(tmp, ignore_errors=True)
    except OSError as err:
        shutil.rmtree(tmp, ignore_errors=True)
        if (refused := write_failed(tmp / "rows.bin", err)) is not None:
            raise refused from None
        raise
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)  # an error or Ctrl+C: a partial store only fills the disk
        raise


def _pack(tmp: Path, paths: list[Path], codec: Codec, progress: bool, source: str | Path | None) -> None:
    codec, probe_errors = codec.resolve(paths)
    shape = (len(paths), *codec.row_shape())
    if len(paths):
        size = int(np.prod(shape)) * np.dtype(codec.dtype).itemsize
        reserve(tmp / "rows.bin", size, f"packing {len(paths)} files", spare=len(paths) * 200)  # and ~200 bytes of index.csv per file
    sha1, lengths, notes = [""] * len(paths), [0] * len(paths), [""] * len(paths)
    reasons = dict(probe_errors)
    todo = [i for i in range(len(paths)) if i not in probe_errors]
    chunks = [todo[i : i + _CHUNK] for i in range(0, len(todo), _CHUNK)]
    jobs = [(str(tmp / "rows.bin"), shape, [(i, str(paths[i])) for i in chunk], codec) for chunk in chunks]
    bar = tqdm(total=len(todo), desc=f"packing {codec.kind}s", unit="file", disable=None if progress else True)
    workers = min(int(os.environ.get("TRILLA_PACK_WORKERS", 0)) or os.cpu_count() or 1, len(chunks))
    if workers > 1:
        try:
            with ProcessPoolExecutor(max_workers=workers, initializer=die_with_parent, initargs=(os.getpid(),)) as pool:
                for done in pool.map(_pack_chunk, jobs):
                    _collect(done, sha1, lengths, notes, reasons, bar)
        except BrokenProcessPool as err:
            raise TrillaError(
                f"a packing worker died ({err}); the usual cause is memory: pack with fewer cores (TRILLA_PACK_WORKERS=1)"
            ) from None
    else:
        for job in jobs:
            _collect(_pack_chunk(job), sha1, lengths, notes, reasons, bar)
    bar.close()
    index = pd.DataFrame(
        {
            "path": [str(p) for p in paths],
            "sha1": sha1,
            "ok": [i not in reasons for i in range(len(paths))],
            "reason": [reasons.get(i, "") for i in range(len(paths))],
            "length": lengths,
            "note": notes,
        }
    )
    write_csv(tmp / "index.csv", index)
    meta = {
        "shape": shape, "kind": codec.kind, "codec": asdict(codec), "version": FORMAT_VERSION,
        "source": str(source) if source is not None else None, "created": datetime.now().isoformat(timespec="seconds"),
    }
    write_json(tmp / "meta.json", meta)


def die_with_parent(parent: int) -> None:
    """Worker initializer: end this process when its parent (`parent`, the packer's pid, passed in: a
    parent killed between the fork and this call must not be mistaken for init) ends, even by `kill -9`.
    Otherwise a worker of a killed packer waits on its pipe for ever, holding its memory and the store's
    lock. Linux delivers a signal on the parent's death (prctl PR_SET_PDEATHSIG); elsewhere a thread
    watches the parent id."""
    if _death_signal():
        if os.getppid() != parent:  # the parent died before the signal was asked for
            os._exit(1)
        return

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=watch, daemon=True).start()


def _death_signal() -> bool:
    """Ask Linux for SIGKILL when the parent dies; False where there is no prctl (macOS, Windows)."""
    import ctypes

    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return False
    return prctl(1, signal.SIGKILL, 0, 0, 0) == 0  # 1 = PR_SET_PDEATHSIG


def _collect(
    done: list[tuple[int, str, int, str, str]], sha1: list[str], lengths: list[int], notes: list[str], reasons: dict[int, str], bar: tqdm,
) -> None:
    for i, digest, length, reason, note in done:
        if reason:
            reasons[i] = reason
        else:
            sha1[i], lengths[i], notes[i] = digest, length, note
    bar.update(len(done))


def _pack_chunk(job: tuple[str, tuple[int, ...], list[tuple[int, str]], Codec]) -> list[tuple[int, str, int, str, str]]:
    """Worker: read and decode a chunk of files and write their rows into the shared map."""
    file, shape, items, codec = job
    out = np.memmap(file, dtype=codec.dtype, mode="r+", shape=shape)
    done = []
    for i, path in items:
        try:
            data = _read(path)
            row, length, note = codec.decode(data)
            out[i] = row
            done.append((i, hashlib.sha1(data).hexdigest(), length, "", note))
        except Unreadable as err:  # the decoders' own kinds, and a codec's DecodeError
            done.append((i, "", 0, str(err), ""))
    out.flush()
    return done


def _read(path: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as err:
        raise DecodeError(f"cannot read file: {err.strerror or err}") from err
