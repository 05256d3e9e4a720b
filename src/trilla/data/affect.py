"""Affect targets on Thayer's plane: valence (pleasure, horizontal) and arousal (energy, vertical) in
[-1, 1], turned into what a model trains on: one axis as low/high, the four quadrants, or the
coordinates themselves (regression). The music study's quadrant names and order are kept.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from trilla.config import DataConfig

QUADRANT_SIGNS = {"happy": (1, 1), "stress": (-1, 1), "sad": (-1, -1), "calm": (1, -1)}  # sign of (valence, arousal)
QUADRANTS = list(QUADRANT_SIGNS)


def parse(text: str) -> float:
    """One coordinate; raises ValueError with the reason for anything outside [-1, 1]."""
    value = float(text)
    if not -1.0 <= value <= 1.0:
        raise ValueError(f"{value} is outside [-1, 1]")
    return value


def quadrant_index(valence: np.ndarray, arousal: np.ndarray) -> np.ndarray:
    pleasant, energetic = np.asarray(valence) >= 0, np.asarray(arousal) >= 0
    return np.select([pleasant & energetic, ~pleasant & energetic, ~pleasant & ~energetic], [0, 1, 2], default=3)


def binary_classes(axis: str) -> list[str]:
    return [f"low {axis}", f"high {axis}"]


def classes(cfg: DataConfig) -> list[str]:
    """Class names of a classification over affect targets; regression predicts the axes instead."""
    if cfg.target_mode == "quadrants":
        return list(QUADRANTS)
    if cfg.target_mode == "binary":
        return binary_classes(cfg.trained_axes()[0])
    return cfg.trained_axes()


def labels(cfg: DataConfig, coords: np.ndarray) -> np.ndarray:
    """Class index per clip (quadrant, or low/high on the binary axis); for regression the quadrant
    (or the sign of the one axis), which stratifies the split and colours the plots."""
    axes = list(cfg.targets)
    if set(axes) == {"valence", "arousal"} and cfg.target_mode != "binary":
        return quadrant_index(coords[:, axes.index("valence")], coords[:, axes.index("arousal")])
    return (coords[:, axes.index(cfg.trained_axes()[0])] >= 0).astype(np.int64)


def strata_names(cfg: DataConfig) -> list[str]:
    if set(cfg.targets) == {"valence", "arousal"} and cfg.target_mode != "binary":
        return list(QUADRANTS)
    return binary_classes(cfg.trained_axes()[0])


def axis_signs(cfg: DataConfig, predictions: np.ndarray) -> dict[str, np.ndarray]:
    """High (True) or low per predicted axis, from class probabilities or regressed coordinates."""
    if cfg.target_mode == "regression":
        return {axis: predictions[:, i] >= 0 for i, axis in enumerate(cfg.trained_axes())}
    predicted = predictions.argmax(1)
    if cfg.target_mode == "binary":
        return {cfg.trained_axes()[0]: predicted == 1}
    return {"valence": np.isin(predicted, [0, 3]), "arousal": np.isin(predicted, [0, 1])}
