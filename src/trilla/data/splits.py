"""Stratified train/val/test splits (scikit-learn) and the per-split class-count table."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
from sklearn.model_selection import train_test_split

from trilla.errors import TrillaError

log = logging.getLogger("trilla")


def split_indices(
    labels: np.ndarray, val: float, test: float, seed: int, stratify: bool, groups: np.ndarray | None = None,
    names: list[str] | None = None,
) -> dict[str, np.ndarray]:
    """Positions of `labels` per split; `test` is 0 when a fixed test set is given. Samples sharing a
    `groups` id (identical files, one speaker) land in one split: the groups are split, by their first
    label, so `val` and `test` are shares of the groups, not of the files.

    Stratified, a class with too few samples to appear in every split (fewer than one per split) is
    kept whole in training, and named (`names`) in a warning: every class keeps at least one training
    example, and the report lists the classes missing from validation or test."""
    if groups is not None:
        ids, first = np.unique(groups, return_index=True)
        by_group = split_indices(labels[first], val, test, seed, stratify, names=names)
        return {name: np.flatnonzero(np.isin(groups, ids[chosen])) for name, chosen in by_group.items()}
    positions = np.arange(len(labels))
    out: dict[str, np.ndarray] = {}
    held = [fraction for fraction in (val, test) if fraction > 0]
    rare = np.zeros(len(labels), dtype=bool)
    if stratify and len(labels):
        counts = np.bincount(labels)
        few = np.flatnonzero((counts > 0) & (counts < len(held) + 2))  # a train, a val and a test sample, and one more to draw
        if len(few) and np.isin(labels, few).mean() > 0.5:  # mostly tiny classes: split them all at random instead
            few = few[:0]
        if len(few):
            rare = np.isin(labels, few)
            shown = ", ".join(f"{names[c] if names else c} ({counts[c]})" for c in few[:20]) + (" ..." if len(few) > 20 else "")
            log.warning("%d classes have too few files for every split and stay in training only: %s", len(few), shown)
    rest = positions[~rare]
    if test > 0:
        rest, out["test"] = _split(rest, labels, test, seed, stratify)
    if val > 0:
        train, out["val"] = _split(rest, labels, val / (1.0 - test), seed, stratify)
    else:
        train = rest
    out["train"] = _every_class_trains(np.concatenate([train, positions[rare]]), out, labels)
    return {name: np.sort(out[name]) for name in ("train", "val", "test") if name in out}


def joint_groups(content: np.ndarray | None, column: np.ndarray | None) -> np.ndarray | None:
    """One group id per sample for `split_indices`: samples sharing a `column` value (the manifest's
    data.split.group_column) stay together, and identical files (`content`) follow the first of them;
    a sample with an empty value is a group of its own."""
    if column is None:
        return content
    values = np.asarray([value or f"\0{i}" for i, value in enumerate(column)], dtype=object)
    if content is None:
        return values
    _, first, inverse = np.unique(content, return_index=True, return_inverse=True)
    return values[first][inverse]


def _every_class_trains(train: np.ndarray, held: dict[str, np.ndarray], labels: np.ndarray) -> np.ndarray:
    """`train`, plus one sample moved from validation or test for any class that has none in training
    (a random fallback split can leave a small class out of training altogether)."""
    missing = sorted(set(labels.tolist()) - set(labels[train].tolist()))
    for label in missing:
        for name in ("val", "test"):
            if name in held and (labels[held[name]] == label).any():
                at = np.flatnonzero(labels[held[name]] == label)[0]
                train = np.append(train, held[name][at])
                held[name] = np.delete(held[name], at)
                break
    return train


def _split(positions: np.ndarray, labels: np.ndarray, fraction: float, seed: int, stratify: bool):
    if stratify:
        try:
            return train_test_split(positions, test_size=fraction, random_state=seed, stratify=labels[positions])
        except ValueError as err:
            log.warning("stratified split impossible (%s); splitting at random instead", err)
    try:
        return train_test_split(positions, test_size=fraction, random_state=seed)
    except ValueError as err:
        raise TrillaError(f"{len(positions)} files are too few to split off {fraction:.0%}; add files or change data.split") from err


def class_counts(classes: list[str], targets_by_split: dict[str, np.ndarray]) -> pd.DataFrame:
    """Rows are classes, columns the splits and their total, as the study's split table."""
    table = pd.DataFrame(
        {name: np.bincount(t, minlength=len(classes)) for name, t in targets_by_split.items()}, index=classes
    )
    table["total"] = table.sum(axis=1)
    table.index.name = "class"
    return table
