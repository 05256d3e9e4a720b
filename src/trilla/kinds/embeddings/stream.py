"""Training batches streamed from a packed AudioSet HDF5 file with bounded memory, whatever its size.

h5py reads contiguous row ranges fast and scattered rows slowly, so the plain stream reads the file in
chunks taken in a random order, keeps a shuffle buffer of a few chunks, and cuts batches from it: the
memory held is the buffer (about `buffer` x 1.3 KB), not the file. A subset of rows (a training split)
is honoured by dropping the other rows of each chunk.

The balanced stream is PANNs' balanced-in-batch sampling (Kong et al. 2020, `BalancedTrainSampler`):
the classes are visited in a reshuffled cycle and each contributes its next clip, so rare classes are
seen as often as speech and music. Its rows are scattered by nature; each batch is one sorted read.

Written by hand: torch's DataLoader samplers index one row at a time, which is what an HDF5 file of two
million clips must not do, and no well-kept library streams AudioSet's HDF5 layout.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

from trilla.kinds.embeddings.audioset import EmbeddingClips, open_hdf5, read_hdf5


class HDF5Stream(torch.utils.data.IterableDataset):
    """Yields dicts of `embeddings` (B, 10, 128) float32 in [-1, 1), `lengths` (B,) and `target` (B, classes)."""

    def __init__(
        self,
        path: str | Path,
        rows: np.ndarray | None = None,
        batch_size: int = 128,
        chunk: int = 4096,
        buffer: int = 65536,
        balanced: bool = False,
        seed: int = 0,
    ):
        super().__init__()
        self.path = Path(path)
        with open_hdf5(self.path) as f:
            total = int(f["y"].shape[0])
            self.member = np.zeros(total, dtype=bool)
            self.member[np.arange(total) if rows is None else rows] = True
            self.class_rows = self._class_rows(f["y"], chunk) if balanced else None
        self.batch_size, self.chunk, self.buffer, self.balanced = batch_size, chunk, max(buffer, batch_size), balanced
        self.seed, self.epoch = seed, 0

    def _class_rows(self, labels, chunk: int) -> list[np.ndarray]:
        """The member rows of each class, read chunk by chunk."""
        found: list[list[np.ndarray]] = [[] for _ in range(labels.shape[1])]
        for start in range(0, labels.shape[0], chunk):
            part = labels[start : start + chunk].astype(bool) & self.member[start : start + chunk, None]
            for c in np.flatnonzero(part.any(0)):
                found[c].append(start + np.flatnonzero(part[:, c]))
        return [np.concatenate(r) if r else np.zeros(0, dtype=np.int64) for r in found]

    def __len__(self) -> int:
        """Batches per epoch: one pass over the member rows (the balanced stream draws as many)."""
        return -(-int(self.member.sum()) // self.batch_size)

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        rng = np.random.default_rng([self.seed, self.epoch])
        self.epoch += 1
        yield from (self._balanced(rng) if self.balanced else self._shuffled(rng))

    def _batch(self, clips: EmbeddingClips) -> dict[str, torch.Tensor]:
        return {
            "embeddings": torch.from_numpy(clips.values()),
            "lengths": torch.from_numpy(clips.frames),
            "target": torch.from_numpy(clips.labels.astype(np.float32)),
        }

    def _shuffled(self, rng: np.random.Generator) -> Iterator[dict[str, torch.Tensor]]:
        starts = rng.permutation(np.arange(0, len(self.member), self.chunk))
        pending = []
        held = 0
        for i, start in enumerate(starts):
            clips = read_hdf5(self.path, int(start), int(start) + self.chunk)
            keep = np.flatnonzero(self.member[start : start + len(clips)])
            pending.append(clips.take(keep))
            held += len(keep)
            if held >= self.buffer or i == len(starts) - 1:
                pool = EmbeddingClips.concat(pending)
                order = rng.permutation(len(pool))
                whole = len(order) - len(order) % self.batch_size if i < len(starts) - 1 else len(order)
                for b in range(0, whole, self.batch_size):
                    yield self._batch(pool.take(order[b : b + self.batch_size]))
                pending = [pool.take(order[whole:])]
                held = len(order) - whole

    def _balanced(self, rng: np.random.Generator) -> Iterator[dict[str, torch.Tensor]]:
        classes = [c for c, r in enumerate(self.class_rows) if len(r)]
        queues = {c: rng.permutation(self.class_rows[c]) for c in classes}
        cursor = dict.fromkeys(classes, 0)
        cycle, at = rng.permutation(classes), 0
        for _ in range(len(self)):
            picked = []
            for _ in range(self.batch_size):
                if at == len(cycle):
                    cycle, at = rng.permutation(classes), 0
                c = cycle[at]
                at += 1
                if cursor[c] == len(queues[c]):
                    queues[c], cursor[c] = rng.permutation(self.class_rows[c]), 0
                picked.append(queues[c][cursor[c]])
                cursor[c] += 1
            rows, back = np.unique(picked, return_inverse=True)
            yield self._batch(read_hdf5(self.path, rows=rows).take(back))
