"""A labelled dataset ready to train on: listed, packed into the store, labelled, checked.

Ties a source listing to store rows, drops what could not be decoded, merges identical files and
leaves out those filed under two labels (data/duplicates.py), and fingerprints the data so a run can say exactly what it was trained on.
Labels are class names, or affect coordinates turned into classes or regression targets.
"""

from __future__ import annotations

import hashlib
import logging
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from trilla.data import affect
from trilla.data import metadata as meta
from trilla.data import multilabel as multi
from trilla.data import store as store_mod
from trilla.data.duplicates import deduplicate
from trilla.data.sources import Problem, read_source
from trilla.errors import TrillaError
from trilla.objectives import objective_for

if TYPE_CHECKING:
    from trilla.config import Config, DataConfig
    from trilla.kinds.registry import InputKind

log = logging.getLogger("trilla")


class Rows(ABC):
    """What the model reads for rows of a data set, as one input kind lays them out."""

    kind: str

    @abstractmethod
    def inputs(self, rows: np.ndarray) -> dict[str, np.ndarray]: ...

    @abstractmethod
    def spec(self) -> dict:
        """The input spec the model is built for (saved in the checkpoint)."""

    def train_stream(self, rows: np.ndarray, train_cfg, input_cfg):
        """A loader that streams these training rows itself (data too large for memory), or None."""
        return None


@dataclass
class LabelledData:
    """Usable samples: `rows` index the `source` (and the store, for files), `targets` are class indices
    into `classes` (or, for regression, one float per output in `classes`; multi-label, one 0/1 per
    class), `strata` group the samples for splitting and counting (`groups` names them), `metadata`
    holds one column of codes per field of `vocab` (0 = unknown) and `coords` the affect coordinates of
    `data.targets`, if any."""

    store: store_mod.Store | None
    rows: np.ndarray
    targets: np.ndarray
    paths: list[str]
    classes: list[str]
    problems: list[Problem]
    conflicts: pd.DataFrame
    fingerprint: str
    metadata: np.ndarray
    vocab: dict[str, list[str]]
    strata: np.ndarray
    groups: list[str]
    source: Rows
    coords: np.ndarray | None = None
    content_groups: np.ndarray | None = None  # one id per sample, shared by identical files (kept conflicts); None: all distinct
    merged: pd.DataFrame | None = None  # copies merged into another sample (path, kept)
    notes: list[Problem] | None = None  # files used, with a warning worth a look
    split_groups: np.ndarray | None = None  # each sample's data.split.group_column value ("" where empty); None: not asked for

    def digests(self) -> np.ndarray:
        """Each sample's content hash (sha1 of the file), or empty for data not read from files."""
        return self.store.index["sha1"].to_numpy()[self.rows] if self.store is not None else np.array([], dtype=str)

    @property
    def kind(self) -> str:
        return self.source.kind

    def inputs(self, positions: np.ndarray) -> dict[str, np.ndarray]:
        """What the model reads for these samples, as the input kind lays it out."""
        return self.source.inputs(self.rows[positions])

    def input_spec(self) -> dict:
        """The shape the model is built for (saved in the checkpoint)."""
        return self.source.spec()


def load_labelled(
    path: Path,
    config: Config,
    kind: InputKind,
    *,
    codec: store_mod.Codec | None = None,
    classes: list[str] | None = None,
    vocab: Mapping[str, list[str]] | None = None,
    device: str = "cpu",
    progress: bool = True,
    group_column: str | None = None,
) -> LabelledData:
    """Read, pack and label the files at `path`; with `classes` given, labels outside them are left out.

    Task multilabel reads `data.labels_column` (labels joined by `data.label_separator`, possibly none)
    into multi-hot targets. `codec` replaces the config's preprocessing (another set for a trained run
    is packed exactly as the run's own data). Metadata fields are encoded with `vocab` when given, else
    with this data's. The input `kind` packs the files and lays out the rows the model reads.
    `group_column` is read only for the data a run splits (a test set or a served file need not have it).
    """
    cfg = config.data
    objective = objective_for(config)
    affective = bool(cfg.targets)
    if objective.several and Path(path).is_dir():
        raise TrillaError(
            f"task multilabel needs a CSV manifest with a '{cfg.labels_column}' column of '{cfg.label_separator}'-joined labels; {path} is a folder"
        )
    label_columns = list(cfg.targets.values()) + ([cfg.labels_column] if objective.several else [])
    extra_columns = meta.column_names(cfg.metadata) + label_columns + ([group_column] if group_column else [])
    listing = read_source(
        Path(path), path_column=cfg.path_column, label_column=None if affective or objective.several else cfg.label_column,
        extra_columns=extra_columns, label_level=cfg.label_level, allow_outside=cfg.allow_outside,
    )
    # A file listed on many rows is packed once: `at` maps each row of the listing to its file's row of the store.
    distinct = list(dict.fromkeys(s.path for s in listing.samples))
    at = {file: i for i, file in enumerate(distinct)}
    at = np.asarray([at[s.path] for s in listing.samples], dtype=np.int64)
    store = store_mod.open_or_build(distinct, codec or kind.codec(config), cfg.store, progress, source=path)
    problems = list(listing.problems) + store.problems
    ok = store.index["ok"].to_numpy()[at]
    coords = _coordinates(cfg, listing.samples, ok, problems) if affective else None
    if affective:  # the region of the plane (or the half of one axis) is the label
        names = affect.strata_names(cfg)
        label_sets = [[names[i]] for i in affect.labels(cfg, coords)]
        classes = affect.classes(cfg) if classes is None else classes
        ok = ok & ~np.isnan(coords).any(1)
    elif objective.several:
        label_sets = [multi.parse(s.columns[cfg.labels_column], cfg.label_separator) for s in listing.samples]
    else:
        label_sets = [[s.label] for s in listing.samples]
    labels = [cfg.label_separator.join(sorted(found)) for found in label_sets]
    if classes is None:
        classes = sorted({label for found, good in zip(label_sets, ok) if good for label in found})
    known = {name: i for i, name in enumerate(objective.label_names(config, classes))}
    keep = []
    for row, good in enumerate(ok):
        if not good:
            continue
        unknown = [x for x in label_sets[row] if x not in known]
        if unknown:
            problems.append(Problem(str(listing.samples[row].path), f"label '{', '.join(unknown)}' is not a class of this run"))
            continue
        keep.append(row)
    if not keep:
        raise TrillaError(f"no usable files in {path} (read as input type {kind.name}). " + "; ".join(f"{p.path}: {p.reason}" for p in problems[:5]))
    all_sha1 = store.index["sha1"].to_numpy()[at]
    identity = {r: " ".join(f"{v:.6g}" for v in coords[r]) if coords is not None else labels[r] for r in keep}  # what a label is
    unique = deduplicate(keep, all_sha1[keep].tolist(), list(identity.values()), [str(listing.samples[r].path) for r in keep], cfg.keep_conflicts)
    problems += unique.problems
    keep = unique.keep
    if not keep:
        raise TrillaError(f"no usable files in {path}: every file's content is filed under several labels (see the log)")
    rows = at[np.asarray(keep, dtype=np.int64)]
    paths = [str(listing.samples[r].path) for r in keep]
    sha1 = all_sha1[keep].tolist()
    kept_coords = coords[keep] if coords is not None else None
    targets, strata = objective.targets([label_sets[r] for r in keep], known, classes, kept_coords, config)
    codes, vocab = meta.encode_table(cfg.metadata, paths, [listing.samples[r].columns for r in keep], vocab, where=str(path))
    for problem in problems:
        log.warning("skipped %s: %s", problem.path, problem.reason)
    groups = list(known) + objective.extra_groups()
    if len(unique.merged):
        log.info("%d duplicates (the same content listed again, or under another path) merged into one sample each", len(unique.merged))
    used = set(paths)
    notes = [note for note in store.notes if note.path in used]
    for note in notes:
        log.warning("%s: %s", note.path, note.reason)
    decoded = [" ".join(vocab[name][c - 1] if c else "" for name, c in zip(vocab, row)) for row in codes]
    fingerprint = hashlib.sha256(
        "\n".join(sorted(f"{d} {identity[r]} {m}".rstrip() for d, r, m in zip(sha1, keep, decoded))).encode()
    ).hexdigest()
    return LabelledData(
        store, rows, targets, paths, classes, problems, unique.conflicts, fingerprint, codes, vocab, strata, groups,
        kind.rows(store, config, device, progress), kept_coords, unique.groups, unique.merged, notes,
        np.asarray([listing.samples[r].columns[group_column].strip() for r in keep], dtype=object) if group_column else None,
    )


def _coordinates(cfg: DataConfig, samples: list, ok: np.ndarray, problems: list[Problem]) -> np.ndarray:
    """(samples, axes) floats from the target columns; NaN (and a problem) where a value is unusable."""
    coords = np.full((len(samples), len(cfg.targets)), np.nan)
    for row, sample in enumerate(samples):
        if not ok[row]:
            continue
        try:
            coords[row] = [affect.parse(sample.columns[column]) for column in cfg.targets.values()]
        except ValueError as err:
            problems.append(Problem(str(sample.path), f"affect target not a number in [-1, 1]: {err}"))
    return coords
