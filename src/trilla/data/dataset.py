"""A labelled dataset ready to train on: listed, packed into the store, labelled, checked.

Ties a source listing to store rows, drops what could not be decoded, reports the same file content
filed under two labels, and fingerprints the data so a run can say exactly what it was trained on.
Labels are class names, or affect coordinates turned into classes or regression targets.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Mapping

import numpy as np
import pandas as pd

from trilla.config import AudioInput, DataConfig, ImageInput
from trilla.data import affect, audio
from trilla.data import metadata as meta
from trilla.data import multilabel as multi
from trilla.data import store as store_mod
from trilla.data.sources import Problem, read_source
from trilla.errors import TrillaError

if TYPE_CHECKING:
    from trilla.data.embedding_data import EmbeddingSource

log = logging.getLogger("trilla")


@dataclass
class LabelledData:
    """Usable samples: `rows` index the store, `targets` are class indices into `classes` (or, for
    regression, one float per output in `classes`; multi-label, one 0/1 per class), `strata` group the samples for splitting and
    counting (`groups` names them), `metadata` holds one column of codes per field of `vocab`
    (0 = unknown) and `coords` the affect coordinates of `data.targets`, if any."""

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
    coords: np.ndarray | None = None
    features: np.ndarray | None = None
    frames: np.ndarray | None = None
    embeddings: "EmbeddingSource | None" = None

    @property
    def kind(self) -> str:
        return "embeddings" if self.embeddings is not None else self.store.codec.kind

    @property
    def channels(self) -> int:
        return int(self.store.array.shape[-1])

    @property
    def size(self) -> int:
        return self.store.size

    def images(self, positions: np.ndarray) -> np.ndarray:
        return np.asarray(self.store.array[self.rows[positions]])

    def inputs(self, positions: np.ndarray) -> dict[str, np.ndarray]:
        """What the model reads for these samples: `image` (uint8 NHWC), or `spectrogram` (float32
        N, frames, bins) with `lengths` in frames when clips keep their own length, or `embeddings`
        (float32 N, seconds, dims) with `lengths` in seconds."""
        if self.kind == "image":
            return {"image": self.images(positions)}
        rows = self.rows[positions]
        if self.embeddings is not None:
            return self.embeddings.inputs(rows)
        out = {"spectrogram": np.asarray(self.features[rows], dtype=np.float32)}
        if self.frames is not None:
            out["lengths"] = self.frames[rows]
        return out

    def input_spec(self) -> dict:
        """The shape the model is built for (saved in the checkpoint)."""
        if self.kind == "image":
            return {"kind": "image", "channels": self.channels, "size": self.size}
        if self.embeddings is not None:
            return self.embeddings.input_spec()
        return {"kind": "audio", "bins": int(self.features.shape[2]), "frames": None if self.frames is not None else int(self.features.shape[1])}


def codec_for(data: DataConfig, input_cfg: ImageInput | AudioInput) -> store_mod.Codec:
    if isinstance(input_cfg, AudioInput):
        return store_mod.AudioCodec(input_cfg.sample_rate, input_cfg.seconds)
    return store_mod.ImageCodec(data.image_size, data.channels)


def run_codec(run) -> store_mod.Codec | None:
    """How a trained run packs new data: its resolved image size and channels, or its audio settings
    (None for embeddings, which are not packed)."""
    if run.config.input.type == "embeddings":
        return None
    if run.config.input.type == "audio":
        return codec_for(run.config.data, run.config.input)
    return store_mod.ImageCodec(run.info["data"]["image_size"], run.info["data"]["channels"])


def load_labelled(
    path: Path,
    cfg: DataConfig,
    input_cfg: ImageInput | AudioInput,
    *,
    codec: store_mod.Codec | None = None,
    classes: list[str] | None = None,
    vocab: Mapping[str, list[str]] | None = None,
    device: str = "cpu",
    progress: bool = True,
    multilabel: bool = False,
) -> LabelledData:
    """Read, pack and label the data at `path`; with `classes` given, labels outside them are left out.

    `multilabel` reads `cfg.labels_column` (labels joined by `cfg.label_separator`, possibly none) into
    multi-hot targets.
    `codec` replaces the config's preprocessing (another set for a trained run is packed exactly as the
    run's own data). Metadata fields are encoded with `vocab` when given, else with this data's.
    """
    from trilla.data.spectrogram import cached_spectrograms, frame_counts

    affective = bool(cfg.targets)
    if multilabel and Path(path).is_dir():
        raise TrillaError(
            f"task multilabel needs a CSV manifest with a '{cfg.labels_column}' column of '{cfg.label_separator}'-joined labels; {path} is a folder"
        )
    label_columns = list(cfg.targets.values()) + ([cfg.labels_column] if multilabel else [])
    listing = read_source(
        Path(path), path_column=cfg.path_column, label_column=None if affective or multilabel else cfg.label_column,
        extra_columns=meta.column_names(cfg.metadata) + label_columns, label_level=cfg.label_level,
    )
    store = store_mod.open_or_build([s.path for s in listing.samples], codec or codec_for(cfg, input_cfg), cfg.store, progress)
    problems = list(listing.problems) + store.problems
    ok = store.index["ok"].to_numpy()
    coords = _coordinates(cfg, listing.samples, ok, problems) if affective else None
    if affective:
        strata_all = affect.labels(cfg, coords)
        labels = [affect.strata_names(cfg)[i] for i in strata_all]
        classes = affect.classes(cfg) if classes is None else classes
        ok = ok & ~np.isnan(coords).any(1)
    elif multilabel:
        label_sets = [multi.parse(s.columns[cfg.labels_column], cfg.label_separator) for s in listing.samples]
        labels = [cfg.label_separator.join(sorted(found)) for found in label_sets]
    else:
        labels = [s.label for s in listing.samples]
    if classes is None:
        given = (label_sets if multilabel else [[label] for label in labels])
        classes = sorted({label for found, good in zip(given, ok) if good for label in found})
    regression = affective and cfg.target_mode == "regression"
    known = {name: i for i, name in enumerate(affect.strata_names(cfg) if regression else classes)}
    keep = []
    for row, (label, good) in enumerate(zip(labels, ok)):
        if not good:
            continue
        unknown = [x for x in label_sets[row] if x not in known] if multilabel else [label] * (label not in known)
        if unknown:
            problems.append(Problem(str(listing.samples[row].path), f"label '{', '.join(unknown)}' is not a class of this run"))
            continue
        keep.append(row)
    if not keep:
        hint = ""
        if store.codec.kind == "image" and sum(Path(s.path).suffix.lower() in audio.SUFFIXES for s in listing.samples) > len(listing.samples) / 2:
            hint = "These look like sound files: add `input: {type: audio}` to the config (or --set 'input={type: audio}'). "
        raise TrillaError(f"no usable files in {path}. {hint}" + "; ".join(f"{p.path}: {p.reason}" for p in problems[:5]))
    rows = np.asarray(keep, dtype=np.int64)
    paths = [str(listing.samples[r].path) for r in keep]
    sha1 = store.index["sha1"].to_numpy()[rows].tolist()
    kept_coords = coords[rows] if coords is not None else None
    if multilabel:
        targets = multi.multi_hot([label_sets[r] for r in keep], classes)
        strata = multi.strata(targets)
    else:
        strata = np.asarray([known[labels[r]] for r in keep], dtype=np.int64)
        targets = strata
    if regression:
        trained = [list(cfg.targets).index(axis) for axis in cfg.trained_axes()]
        targets = kept_coords[:, trained].astype(np.float32)
    codes, vocab = meta.encode_table(cfg.metadata, paths, [listing.samples[r].columns for r in keep], vocab, where=str(path))
    for problem in problems:
        log.warning("skipped %s: %s", problem.path, problem.reason)
    groups = list(known) + ([multi.NONE] if multilabel else [])
    conflicts = _conflicts(paths, sha1, [labels[r] for r in keep])
    for _, group in conflicts.groupby("sha1"):
        log.warning("the same file is filed under %s: %s", sorted(set(group["label"])), ", ".join(group["path"]))
    decoded = [" ".join(vocab[name][c - 1] if c else "" for name, c in zip(vocab, row)) for row in codes]
    label_text = [labels[r] for r in keep] if kept_coords is None else [" ".join(f"{v:.6g}" for v in c) for c in kept_coords]
    fingerprint = hashlib.sha256(
        "\n".join(sorted(f"{d} {label} {m}".rstrip() for d, label, m in zip(sha1, label_text, decoded))).encode()
    ).hexdigest()
    features = frames = None
    if store.codec.kind == "audio":
        features = cached_spectrograms(store, input_cfg, device, progress=progress)  # type: ignore[arg-type]
        if store.codec.seconds is None:  # type: ignore[union-attr]
            frames = frame_counts(store, input_cfg)  # type: ignore[arg-type]
    return LabelledData(
        store, rows, targets, paths, classes, problems, conflicts, fingerprint, codes, vocab, strata, groups,
        kept_coords, features, frames,
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


def _conflicts(paths: list[str], sha1: list[str], labels: list[str]) -> pd.DataFrame:
    """Files with identical content but different labels: at least one of those labels is wrong."""
    frame = pd.DataFrame({"sha1": sha1, "label": labels, "path": paths})
    n_labels = frame.groupby("sha1")["label"].transform("nunique")
    return frame[n_labels > 1].sort_values(["sha1", "label"]).reset_index(drop=True)
