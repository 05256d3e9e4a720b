"""AudioSet's released embeddings, read without TensorFlow.

Three layouts, as Google and the PANNs authors published them:
- TFRecord shards of SequenceExample: context `video_id`, `start_time_seconds`, `end_time_seconds`,
  `labels` (int64 class indices); feature list `audio_embedding`, one 128-byte uint8 string per second.
  The `tfrecord` package supplies the record framing and the protobuf classes.
- The packed HDF5 file: `x` uint8 (N, 10, 128), `y` bool (N, 527), `video_id_list`. h5py reads any
  slice of rows without loading the rest, which is what streaming the 2-million-clip set needs.
- `class_labels_indices.csv`: index, mid, display_name.

Clips shorter than 10 s are padded with the value 128, which `values` maps to 0, and `frames` says how
many seconds are real; longer ones are cut to 10 s. The packed file carries no lengths and its packers
pad short clips with zeros (PANNs) or 128: trailing seconds that are all 0 or all 128 are that padding,
so a clip read from either layout gives the same tensor, mask and labels (a real second of VGGish
embeddings, PCA-whitened and quantized, is never constant).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from trilla.errors import TrillaError

SECONDS = 10
DIMS = 128
PAD = 128


@dataclass
class EmbeddingClips:
    """Clips of per-second embeddings with multi-hot labels."""

    video_ids: np.ndarray  # (N,) str
    embeddings: np.ndarray  # (N, SECONDS, DIMS) uint8, padded with PAD
    frames: np.ndarray  # (N,) int: seconds that hold embeddings
    labels: np.ndarray  # (N, classes) bool

    def __len__(self) -> int:
        return len(self.video_ids)

    def values(self) -> np.ndarray:
        """The embeddings as float32 in [-1, 1): (v - 128) / 128."""
        return (self.embeddings.astype(np.float32) - PAD) / PAD

    def mask(self) -> np.ndarray:
        """(N, SECONDS) bool: True where a second holds an embedding rather than padding."""
        return np.arange(SECONDS)[None, :] < self.frames[:, None]

    def take(self, index: np.ndarray) -> EmbeddingClips:
        return EmbeddingClips(self.video_ids[index], self.embeddings[index], self.frames[index], self.labels[index])

    @staticmethod
    def concat(parts: list[EmbeddingClips]) -> EmbeddingClips:
        return EmbeddingClips(*(np.concatenate([getattr(p, name) for p in parts]) for name in ("video_ids", "embeddings", "frames", "labels")))


def read_class_labels(path: str | Path) -> pd.DataFrame:
    """class_labels_indices.csv as a frame indexed 0..C-1, with columns mid and display_name."""
    table = pd.read_csv(path)
    missing = {"index", "mid", "display_name"} - set(table.columns)
    if missing:
        raise TrillaError(f"{path}: not an AudioSet class list, it lacks the column(s) {', '.join(sorted(missing))}")
    table = table.sort_values("index").set_index("index")
    if list(table.index) != list(range(len(table))):
        raise TrillaError(f"{path}: the class indices must run 0..{len(table) - 1} without gaps")
    return table


def fit_clips(rows: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Per-clip (T, DIMS) arrays -> (N, SECONDS, DIMS) padded, and the seconds kept."""
    out = np.full((len(rows), SECONDS, DIMS), PAD, dtype=np.uint8)
    frames = np.zeros(len(rows), dtype=np.int64)
    for i, row in enumerate(rows):
        kept = row[:SECONDS]
        out[i, : len(kept)] = kept
        frames[i] = len(kept)
    return out, frames


def iter_tfrecord(path: str | Path) -> Iterator[dict]:
    """One dict per SequenceExample: video_id, start, end, labels (int64 array), embedding (T, 128) uint8."""
    from tfrecord import example_pb2
    from tfrecord.reader import tfrecord_iterator

    try:
        for number, record in enumerate(tfrecord_iterator(str(path))):
            example = example_pb2.SequenceExample.FromString(bytes(record))
            context = example.context.feature
            seconds = example.feature_lists.feature_list["audio_embedding"].feature
            embedding = np.frombuffer(b"".join(s.bytes_list.value[0] for s in seconds), dtype=np.uint8)
            if embedding.size % DIMS:
                raise TrillaError(f"{path}: record {number} has embeddings that are not {DIMS} bytes each")
            yield {
                "video_id": context["video_id"].bytes_list.value[0].decode(),
                "start": float(context["start_time_seconds"].float_list.value[0]),
                "end": float(context["end_time_seconds"].float_list.value[0]),
                "labels": np.asarray(context["labels"].int64_list.value, dtype=np.int64),
                "embedding": embedding.reshape(-1, DIMS),
            }
    except (RuntimeError, IndexError, ValueError) as err:  # the framing or the protobuf is broken
        raise TrillaError(f"{path}: not a readable AudioSet TFRecord ({err})") from err


def read_tfrecords(paths: list[str | Path], classes: int) -> EmbeddingClips:
    """Every clip of these shards; `classes` sizes the multi-hot label matrix (527 for AudioSet)."""
    ids, rows, labels = [], [], []
    for path in paths:
        for clip in iter_tfrecord(path):
            if len(clip["labels"]) and (clip["labels"].max() >= classes or clip["labels"].min() < 0):
                raise TrillaError(f"{path}: clip {clip['video_id']} has a label outside 0..{classes - 1}")
            hot = np.zeros(classes, dtype=bool)
            hot[clip["labels"]] = True
            ids.append(clip["video_id"])
            rows.append(clip["embedding"])
            labels.append(hot)
    embeddings, frames = fit_clips(rows)
    return EmbeddingClips(np.asarray(ids, dtype=str), embeddings, frames, np.asarray(labels, dtype=bool).reshape(-1, classes))


@contextmanager
def open_hdf5(path: str | Path):
    """The packed file opened read-only, its layout checked; a file h5py cannot open is a TrillaError."""
    import h5py

    try:
        f = h5py.File(path, "r")
    except OSError as err:
        raise TrillaError(f"{path}: not a readable HDF5 file ({err})") from err
    with f:
        missing = {"x", "y", "video_id_list"} - set(f.keys())
        if missing:
            raise TrillaError(f"{path}: not a packed AudioSet HDF5 file, it lacks {', '.join(sorted(missing))}")
        if f["x"].ndim != 3 or f["x"].shape[2] != DIMS or f["x"].dtype != np.uint8:
            raise TrillaError(f"{path}: x must be uint8 (N, seconds, {DIMS}), not {f['x'].dtype} {f['x'].shape}")
        yield f


def read_hdf5(path: str | Path, start: int = 0, stop: int | None = None, rows: np.ndarray | None = None) -> EmbeddingClips:
    """Rows start..stop of the packed HDF5 file, or the given increasing `rows`; only those are read."""
    with open_hdf5(path) as f:
        where = slice(start, f["x"].shape[0] if stop is None else min(stop, f["x"].shape[0])) if rows is None else rows
        x = f["x"][where]
        labels = f["y"][where].astype(bool)
        ids = f["video_id_list"][where]
    ids = ids.astype(str) if ids.dtype.kind == "S" else np.asarray([v.decode() if isinstance(v, bytes) else str(v) for v in ids], dtype=str)
    kept = x[:, :SECONDS]
    filled = ~((kept == 0).all(axis=2) | (kept == PAD).all(axis=2))  # (N, T): seconds that hold an embedding
    frames = np.where(filled.any(axis=1), kept.shape[1] - np.argmax(filled[:, ::-1], axis=1), 0).astype(np.int64)
    embeddings = np.full((len(x), SECONDS, DIMS), PAD, dtype=np.uint8)
    real = np.arange(kept.shape[1])[None, :] < frames[:, None]
    embeddings[:, : kept.shape[1]][real] = kept[real]
    return EmbeddingClips(ids, embeddings, frames, labels)
