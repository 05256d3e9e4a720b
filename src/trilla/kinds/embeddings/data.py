"""AudioSet-style embeddings as a LabelledData: a packed HDF5 file or a folder of TFRecord shards, the
two packed sources of the embeddings kind (registered with the other sources, in data/sources.py).

Clips are kept in memory when they fit; a file larger than that (the two-million-clip unbalanced set is
2.6 GB of embeddings) stays on disk: its labels are read once (bool, 1 byte per class and clip), the
training rows are streamed by HDF5Stream, and validation or test rows are read batch by batch. The
fingerprint hashes the ids, embeddings and labels, read in chunks.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from trilla.data import multilabel as multi
from trilla.data.dataset import LabelledData, Rows
from trilla.data.sources import register_packed_source
from trilla.errors import TrillaError
from trilla.kinds.embeddings.audioset import DIMS, SECONDS, EmbeddingClips, open_hdf5, read_class_labels, read_hdf5, read_tfrecords

if TYPE_CHECKING:
    from trilla.config import Config, DataConfig
    from trilla.kinds.embeddings.kind import EmbeddingsInput

AUDIOSET_CLASSES = 527
STREAM_BYTES = 1 << 30
HDF5_SUFFIXES = (".h5", ".hdf5", ".hdf")


class EmbeddingSource(Rows):
    """Where a set's embedding rows come from: `clips` in memory, or rows of the HDF5 file at `path`."""

    kind = "embeddings"

    def __init__(self, clips: EmbeddingClips | None = None, path: Path | None = None):
        self.clips, self.path = clips, path

    @property
    def on_disk(self) -> bool:
        return self.clips is None

    def train_stream(self, rows: np.ndarray, train_cfg, input_cfg: EmbeddingsInput):
        """A loader that streams these training rows from the file when they stay on disk, else None."""
        if not self.on_disk:
            return None
        from torch.utils.data import DataLoader

        from trilla.kinds.embeddings.stream import HDF5Stream

        stream = HDF5Stream(
            self.path, np.sort(rows), train_cfg.batch_size, input_cfg.chunk, input_cfg.buffer,
            balanced=train_cfg.imbalance == "balanced_sampler", seed=train_cfg.seed,
        )
        return DataLoader(stream, batch_size=None)

    def inputs(self, rows: np.ndarray) -> dict[str, np.ndarray]:
        if self.clips is not None:
            clips = self.clips.take(rows)
        else:  # h5py reads increasing, distinct rows only
            unique, back = np.unique(rows, return_inverse=True)
            clips = read_hdf5(self.path, rows=unique).take(back)
        return {"embeddings": clips.values(), "lengths": clips.frames}

    def spec(self) -> dict:
        return {"kind": "embeddings", "bins": DIMS, "frames": SECONDS}


def class_names(cfg: DataConfig, count: int) -> list[str]:
    """Display names from `data.class_list`, or the column indices when none is given."""
    if cfg.class_list is None:
        return [str(i) for i in range(count)]
    names = read_class_labels(cfg.class_list)["display_name"].astype(str).tolist()
    if len(names) != count:
        raise TrillaError(f"data.class_list {cfg.class_list} names {len(names)} classes, but the labels have {count}")
    return names


def is_hdf5(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in HDF5_SUFFIXES


def is_tfrecord(path: Path) -> bool:
    """A shard, or a folder holding shards."""
    return (path.is_file() and path.suffix.lower() == ".tfrecord") or (path.is_dir() and any(path.glob("*.tfrecord")))


def load_embeddings(
    path: Path, cfg: DataConfig, input_cfg: EmbeddingsInput, *, classes: list[str] | None = None, progress: bool = True
) -> LabelledData:
    """Clips, labels, strata and fingerprint of the embeddings at `path`; `classes` (a trained run's)
    must match the label columns in number."""
    path = Path(path)
    if not path.exists():
        raise TrillaError(f"data path {path} does not exist")
    if is_hdf5(path):
        source, labels, ids, fingerprint = _hdf5(path, input_cfg)
    elif is_tfrecord(path):
        shards = sorted(path.glob("*.tfrecord")) if path.is_dir() else [path]
        count = len(classes) if classes is not None else (len(read_class_labels(cfg.class_list)) if cfg.class_list else AUDIOSET_CLASSES)
        clips = read_tfrecords(shards, count)
        source, labels, ids = EmbeddingSource(clips), clips.labels, clips.video_ids
        digest = hashlib.sha256()
        _update(digest, clips)
        fingerprint = digest.hexdigest()
    else:
        raise TrillaError(f"{path}: input type embeddings reads a packed HDF5 file (.h5) or a folder of .tfrecord shards")
    if classes is None:
        classes = class_names(cfg, labels.shape[1])
    elif len(classes) != labels.shape[1]:
        raise TrillaError(f"{path} has {labels.shape[1]} label columns; the run was trained on {len(classes)} classes")
    return LabelledData(
        store=None, rows=np.arange(len(labels)), targets=labels, paths=ids.tolist(), classes=classes, problems=[],
        conflicts=pd.DataFrame(columns=["sha1", "label", "path"]), fingerprint=fingerprint,
        metadata=np.zeros((len(labels), 0), dtype=np.int64), vocab={}, strata=multi.strata(labels),
        groups=[*classes, multi.NONE], source=source,
    )


def _load(path: Path, config: Config, *, classes: list[str] | None = None, progress: bool = True, group_column: str | None = None,
          **_: object) -> LabelledData:
    """A packed source's loader (see data/sources.py): the embeddings as `config` reads them."""
    if group_column:
        raise TrillaError("data.split.group_column needs files listed in a CSV manifest; embeddings are split by clip")
    return load_embeddings(path, config.data, config.input, classes=classes, progress=progress)


register_packed_source("hdf5", accepts=is_hdf5, kind="embeddings")(_load)
register_packed_source("tfrecord", accepts=is_tfrecord, kind="embeddings")(_load)


def _hdf5(path: Path, input_cfg: EmbeddingsInput, chunk: int = 65536):
    """The source, labels, ids and fingerprint of a packed file; one pass over it, in chunks when streamed."""
    with open_hdf5(path) as f:
        big = f["x"].size * f["x"].dtype.itemsize > STREAM_BYTES
        total, count = f["y"].shape
    stream = big if input_cfg.stream == "auto" else input_cfg.stream
    digest = hashlib.sha256()
    if not stream:
        clips = read_hdf5(path)
        _update(digest, clips)
        return EmbeddingSource(clips=clips), clips.labels, clips.video_ids, digest.hexdigest()
    labels, ids = np.zeros((total, count), dtype=bool), []
    for start in range(0, total, chunk):  # only the labels and ids stay; the embeddings pass through
        part = read_hdf5(path, start, start + chunk)
        _update(digest, part)
        labels[start : start + len(part)] = part.labels
        ids.append(part.video_ids)
    return EmbeddingSource(path=path), labels, np.concatenate(ids) if ids else np.zeros(0, dtype=str), digest.hexdigest()


def _update(digest, clips: EmbeddingClips) -> None:
    for block in (clips.video_ids.astype("S").tobytes(), clips.embeddings.tobytes(), np.packbits(clips.labels).tobytes()):
        digest.update(block)
