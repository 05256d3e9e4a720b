"""Multi-label targets: each example carries any number of labels (none included), as AudioSet's clips.

The split needs one stratum per example, and a class-count table needs positives per class. Each example
is stratified by its rarest label, the label a random split would most likely leave out of a split;
examples without labels form their own stratum.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

NONE = "(no label)"


def parse(text: str, separator: str) -> list[str]:
    """Labels of one manifest cell, in order, without blanks or repeats."""
    return list(dict.fromkeys(part.strip() for part in (text or "").split(separator) if part.strip()))


def multi_hot(label_sets: list[list[str]], classes: list[str]) -> np.ndarray:
    """(examples, classes) float32, 1 where the example carries the class."""
    index = {name: i for i, name in enumerate(classes)}
    hot = np.zeros((len(label_sets), len(classes)), dtype=np.float32)
    for row, labels in enumerate(label_sets):
        hot[row, [index[label] for label in labels]] = 1.0
    return hot


def strata(hot: np.ndarray, chunk: int = 65536) -> np.ndarray:
    """Per example the index of its rarest label, or `classes` (the NONE stratum) when it has none;
    computed in chunks so two million AudioSet rows never make a float copy at once."""
    counts = np.asarray(hot.sum(0), dtype=np.float64).ravel()
    out = np.empty(len(hot), dtype=np.int64)
    for start in range(0, len(hot), chunk):
        part = np.asarray(hot[start : start + chunk]) > 0
        rarity = np.where(part, counts[None, :], np.inf)
        out[start : start + chunk] = np.where(part.any(1), rarity.argmin(1), hot.shape[1])
    return out


def names(row: np.ndarray, classes: list[str], separator: str = ";") -> str:
    """The labels of one multi-hot row, joined as the manifest writes them."""
    return separator.join(classes[i] for i in np.flatnonzero(row > 0))


def positives(classes: list[str], hot_by_split: dict[str, np.ndarray]) -> pd.DataFrame:
    """Rows are classes, columns the splits and their total: examples carrying each label."""
    table = pd.DataFrame({name: np.asarray(hot.sum(0)).ravel().astype(np.int64) for name, hot in hot_by_split.items()}, index=classes)
    table["total"] = table.sum(axis=1)
    table.index.name = "class"
    return table
