"""A labelled image dataset ready to train on: listed, packed into the store, labelled, checked.

Ties a source listing to store rows, drops what could not be decoded, reports the same file content
filed under two labels, and fingerprints the data so a run can say exactly what it was trained on.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import numpy as np
import pandas as pd

from trilla.config import MetadataField
from trilla.data import metadata as meta
from trilla.data import store as store_mod
from trilla.data.sources import Problem, read_source
from trilla.errors import TrillaError

log = logging.getLogger("trilla")


@dataclass
class ImageData:
    """Usable samples: `rows` index the store's images, `targets` index `classes`, and `metadata` holds
    one column of codes per field of `vocab` (0 = unknown)."""

    store: store_mod.Store
    rows: np.ndarray
    targets: np.ndarray
    paths: list[str]
    classes: list[str]
    problems: list[Problem]
    conflicts: pd.DataFrame
    fingerprint: str
    metadata: np.ndarray
    vocab: dict[str, list[str]]

    @property
    def channels(self) -> int:
        return int(self.store.images.shape[-1])

    @property
    def size(self) -> int:
        return self.store.size

    def images(self, positions: np.ndarray) -> np.ndarray:
        return np.asarray(self.store.images[self.rows[positions]])


def load_labelled(
    path: Path,
    *,
    image_size: int | str,
    channels: str,
    path_column: str = "path",
    label_column: str = "label",
    classes: list[str] | None = None,
    cache_dir: Path | None = None,
    progress: bool = True,
    metadata: Mapping[str, MetadataField] | None = None,
    vocab: Mapping[str, list[str]] | None = None,
    label_level: int | None = None,
) -> ImageData:
    """Read, pack and label the data at `path`; with `classes` given, labels outside them are left out.

    Metadata fields are encoded with `vocab` when given (another set for a trained run), else with the
    vocabularies of this data.
    """
    metadata = metadata or {}
    listing = read_source(
        Path(path), path_column=path_column, label_column=label_column, extra_columns=meta.column_names(metadata),
        label_level=label_level,
    )
    store = store_mod.open_or_build([s.path for s in listing.samples], image_size, channels, cache_dir, progress)
    problems = list(listing.problems) + store.problems
    ok = store.index["ok"].to_numpy()
    labels = [s.label for s in listing.samples]
    if classes is None:
        classes = sorted({label for label, good in zip(labels, ok) if good})
    known = {name: i for i, name in enumerate(classes)}
    keep = []
    for row, (label, good) in enumerate(zip(labels, ok)):
        if not good:
            continue
        if label not in known:
            problems.append(Problem(str(listing.samples[row].path), f"label '{label}' is not a class of this run"))
            continue
        keep.append(row)
    if not keep:
        raise TrillaError(f"no usable images in {path}: " + "; ".join(f"{p.path}: {p.reason}" for p in problems[:5]))
    rows = np.asarray(keep, dtype=np.int64)
    paths = [str(listing.samples[r].path) for r in keep]
    sha1 = store.index["sha1"].to_numpy()[rows].tolist()
    targets = np.asarray([known[labels[r]] for r in keep], dtype=np.int64)
    codes, vocab = meta.encode_table(metadata, paths, [listing.samples[r].columns for r in keep], vocab, where=str(path))
    for problem in problems:
        log.warning("skipped %s: %s", problem.path, problem.reason)
    conflicts = _conflicts(paths, sha1, [classes[t] for t in targets])
    for _, group in conflicts.groupby("sha1"):
        log.warning("the same image is filed under %s: %s", sorted(set(group["label"])), ", ".join(group["path"]))
    decoded = [" ".join(vocab[name][c - 1] if c else "" for name, c in zip(vocab, row)) for row in codes]
    fingerprint = hashlib.sha256(
        "\n".join(sorted(f"{d} {classes[t]} {m}".rstrip() for d, t, m in zip(sha1, targets, decoded))).encode()
    ).hexdigest()
    return ImageData(store, rows, targets, paths, classes, problems, conflicts, fingerprint, codes, vocab)


def _conflicts(paths: list[str], sha1: list[str], labels: list[str]) -> pd.DataFrame:
    """Files with identical content but different labels: at least one of those labels is wrong."""
    frame = pd.DataFrame({"sha1": sha1, "label": labels, "path": paths})
    n_labels = frame.groupby("sha1")["label"].transform("nunique")
    return frame[n_labels > 1].sort_values(["sha1", "label"]).reset_index(drop=True)
