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
) -> dict[str, np.ndarray]:
    """Positions of `labels` per split; `test` is 0 when a fixed test set is given. Samples sharing a
    `groups` id (identical files) land in one split: the groups are split, by their first label."""
    if groups is not None:
        ids, first = np.unique(groups, return_index=True)
        by_group = split_indices(labels[first], val, test, seed, stratify)
        return {name: np.flatnonzero(np.isin(groups, ids[chosen])) for name, chosen in by_group.items()}
    positions = np.arange(len(labels))
    out: dict[str, np.ndarray] = {}
    rest = positions
    if test > 0:
        rest, out["test"] = _split(positions, labels, test, seed, stratify)
    if val > 0:
        train, out["val"] = _split(rest, labels, val / (1.0 - test), seed, stratify)
    else:
        train = rest
    out["train"] = train
    return {name: np.sort(out[name]) for name in ("train", "val", "test") if name in out}


def _split(positions: np.ndarray, labels: np.ndarray, fraction: float, seed: int, stratify: bool):
    if stratify:
        try:
            return train_test_split(positions, test_size=fraction, random_state=seed, stratify=labels[positions])
        except ValueError as err:
            log.warning("stratified split impossible (%s); splitting at random instead", err)
    try:
        return train_test_split(positions, test_size=fraction, random_state=seed)
    except ValueError as err:
        raise TrillaError(f"{len(positions)} images are too few to split off {fraction:.0%}; add images or change data.split") from err


def class_counts(classes: list[str], targets_by_split: dict[str, np.ndarray]) -> pd.DataFrame:
    """Rows are classes, columns the splits and their total, as the study's split table."""
    table = pd.DataFrame(
        {name: np.bincount(t, minlength=len(classes)) for name, t in targets_by_split.items()}, index=classes
    )
    table["total"] = table.sum(axis=1)
    table.index.name = "class"
    return table
