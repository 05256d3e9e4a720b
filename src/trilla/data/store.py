"""The on-disk store: every file decoded once into a fixed-shape memory map plus a manifest.

A codec says what a row is: a picture resized and padded to a square (uint8), or a sound decoded to
mono at the run's sample rate, cropped or padded to one length (int16, with each clip's true length
kept). Opening a store is instant (np.memmap), and it is reused while the source files (path, size,
mtime) and the codec's settings are unchanged; any change gives a new key and a fresh build. Packing
fans out over all cores, each worker writing its rows straight into the map, so no samples travel
between processes. Written by hand because no maintained library packs labelled files into a reusable
memory map.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from trilla.data import audio, images
from trilla.data.sources import Problem

log = logging.getLogger("trilla")

FORMAT_VERSION = 2
_CHUNK = 64
_PCM = 32767.0


def default_cache_dir() -> Path:
    return Path(os.environ.get("TRILLA_CACHE", Path.home() / ".cache" / "trilla")) / "stores"


class DecodeError(Exception):
    """A file the codec cannot turn into a row; the message is the reason shown to the user."""


@dataclass(frozen=True)
class ImageCodec:
    """Pictures: `size` and `channels` may be `auto`, decided once from the files when packing."""

    size: int | str = "auto"
    channels: str = "auto"
    kind = "image"

    def resolve(self, paths: list[Path]) -> tuple["ImageCodec", dict[int, str]]:
        if self.channels != "auto" and self.size != "auto":
            return self, {}
        found, sides, errors = set(), [], {}
        for i, path in enumerate(paths):
            try:
                kind, side = images.probe(path)
                found.add(kind)
                sides.append(side)
            except images.ImageError as err:
                errors[i] = str(err)
        channels = ("rgb" if "rgb" in found else "grey") if self.channels == "auto" else self.channels
        size = images.auto_size(sides) if self.size == "auto" else self.size
        return ImageCodec(size, channels), errors

    def row_shape(self) -> tuple[int, ...]:
        return (self.size, self.size, 1 if self.channels == "grey" else 3)  # type: ignore[return-value]

    dtype = np.uint8

    def decode(self, path: str) -> tuple[bytes, np.ndarray, int]:
        try:
            data = images.read(Path(path))
            return data, images.decode(data, self.size, self.channels), 0  # type: ignore[arg-type]
        except images.ImageError as err:
            raise DecodeError(str(err)) from err


@dataclass(frozen=True)
class AudioCodec:
    """Sounds: mono at `sample_rate`; `seconds: None` pads every clip to the longest one instead."""

    sample_rate: int
    seconds: float | None = None
    samples: int = 0
    kind = "audio"
    dtype = np.int16

    def resolve(self, paths: list[Path]) -> tuple["AudioCodec", dict[int, str]]:
        if self.seconds is not None:
            return AudioCodec(self.sample_rate, self.seconds, int(round(self.seconds * self.sample_rate))), {}
        longest, errors = 1, {}
        for i, path in enumerate(paths):
            try:
                longest = max(longest, int(np.ceil(audio.duration(path) * self.sample_rate)))
            except audio.AudioError as err:
                errors[i] = str(err)
        return AudioCodec(self.sample_rate, None, longest), errors

    def row_shape(self) -> tuple[int, ...]:
        return (self.samples,)

    def decode(self, path: str) -> tuple[bytes, np.ndarray, int]:
        try:
            data = Path(path).read_bytes()
            samples = audio.load(path, self.sample_rate)
        except OSError as err:
            raise DecodeError(f"cannot read file: {err.strerror or err}") from err
        except audio.AudioError as err:
            raise DecodeError(str(err)) from err
        length = min(len(samples), self.samples)
        return data, np.round(audio.fit(samples, self.samples) * _PCM).astype(np.int16), length


Codec = ImageCodec | AudioCodec


@dataclass
class Store:
    """Rows of `array` match rows of `index` (path, sha1, ok, reason, length).

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
    def size(self) -> int:
        return self.codec.size  # type: ignore[union-attr,return-value]

    @property
    def channels(self) -> str:
        return self.codec.channels  # type: ignore[union-attr]

    @property
    def lengths(self) -> np.ndarray:
        """Audio: each clip's samples before padding."""
        return self.index["length"].to_numpy()

    def waves(self, rows: np.ndarray) -> np.ndarray:
        """Audio rows as float32 in [-1, 1]."""
        return np.asarray(self.array[rows], dtype=np.float32) / _PCM


def store_key(paths: list[Path], codec: Codec) -> str:
    """Hash of the codec's settings and of every file's path, size and modification time."""
    settings = {"v": FORMAT_VERSION, "kind": codec.kind, **asdict(codec)}
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode())
    for path in paths:
        stat = path.stat()
        digest.update(f"{path.resolve()}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:20]


def open_or_build(paths: list[Path], codec: Codec, cache_dir: Path | None = None, progress: bool = True) -> Store:
    """The store for these files and this codec: reused if packed before, else packed now."""
    cache_dir = Path(cache_dir) if cache_dir else default_cache_dir()
    paths = [Path(p) for p in paths]
    root = cache_dir / store_key(paths, codec)
    if not (root / "meta.json").is_file():
        _build(root, paths, codec, progress)
        return _open(root, reused=False)
    log.info("reusing store %s", root)
    return _open(root, reused=True)


def _open(root: Path, reused: bool) -> Store:
    meta = json.loads((root / "meta.json").read_text())
    codec_cls = AudioCodec if meta["kind"] == "audio" else ImageCodec
    codec = codec_cls(**meta["codec"])
    shape = tuple(meta["shape"])
    array = np.memmap(root / "rows.bin", dtype=codec.dtype, mode="r", shape=shape) if shape[0] else np.zeros(shape, codec.dtype)
    index = pd.read_csv(root / "index.csv", keep_default_na=False, dtype={"sha1": str, "reason": str})
    return Store(root, array, index, codec, reused)


def _build(root: Path, paths: list[Path], codec: Codec, progress: bool) -> None:
    tmp = root.with_name(f"{root.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    codec, probe_errors = codec.resolve(paths)
    shape = (len(paths), *codec.row_shape())
    if len(paths):
        np.memmap(tmp / "rows.bin", dtype=codec.dtype, mode="w+", shape=shape).flush()
    sha1, lengths = [""] * len(paths), [0] * len(paths)
    reasons = dict(probe_errors)
    todo = [i for i in range(len(paths)) if i not in probe_errors]
    chunks = [todo[i : i + _CHUNK] for i in range(0, len(todo), _CHUNK)]
    jobs = [(str(tmp / "rows.bin"), shape, [(i, str(paths[i])) for i in chunk], codec) for chunk in chunks]
    bar = tqdm(total=len(todo), desc=f"packing {codec.kind}s", unit="file", disable=None if progress else True)
    workers = min(os.cpu_count() or 1, len(chunks))
    if workers > 1:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            for done in pool.map(_pack_chunk, jobs):
                _collect(done, sha1, lengths, reasons, bar)
    else:
        for job in jobs:
            _collect(_pack_chunk(job), sha1, lengths, reasons, bar)
    bar.close()
    pd.DataFrame(
        {
            "path": [str(p) for p in paths],
            "sha1": sha1,
            "ok": [i not in reasons for i in range(len(paths))],
            "reason": [reasons.get(i, "") for i in range(len(paths))],
            "length": lengths,
        }
    ).to_csv(tmp / "index.csv", index=False)
    meta = {"shape": shape, "kind": codec.kind, "codec": asdict(codec), "version": FORMAT_VERSION}
    (tmp / "meta.json").write_text(json.dumps(meta))
    try:
        tmp.rename(root)
    except OSError:
        # Another process packed the same key meanwhile; its store is equivalent.
        shutil.rmtree(tmp, ignore_errors=True)


def _collect(done: list[tuple[int, str, int, str]], sha1: list[str], lengths: list[int], reasons: dict[int, str], bar: tqdm) -> None:
    for i, digest, length, reason in done:
        if reason:
            reasons[i] = reason
        else:
            sha1[i], lengths[i] = digest, length
    bar.update(len(done))


def _pack_chunk(job: tuple[str, tuple[int, ...], list[tuple[int, str]], Codec]) -> list[tuple[int, str, int, str]]:
    """Worker: decode a chunk of files and write their rows into the shared map."""
    file, shape, items, codec = job
    out = np.memmap(file, dtype=codec.dtype, mode="r+", shape=shape)
    done = []
    for i, path in items:
        try:
            data, row, length = codec.decode(path)
            out[i] = row
            done.append((i, hashlib.sha1(data).hexdigest(), length, ""))
        except DecodeError as err:
            done.append((i, "", 0, str(err)))
    out.flush()
    return done
