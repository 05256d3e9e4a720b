"""Training examples as the model is shown them: a grid of samples of a prepared training split,
augmented as in training (pictures, or spectrograms for sound), each captioned with its label. Drawn
into every run (`examples.png`, also in TensorBoard) and by `trilla show-batch`."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from trilla.config import Config
from trilla.data.datamodule import build_transform, to_batch
from trilla.figures import plot_grid
from trilla.kinds import input_kind
from trilla.kinds.protocols import view


def example_grid(config: Config, datamodule, path: Path, count: int = 16, seed: int = 0) -> Path | None:
    """`count` training examples of a prepared datamodule, augmented as in training, drawn to `path`;
    None (nothing drawn) for an input kind with nothing a person can look at (embeddings)."""
    data, positions = datamodule.split_data("train")
    chosen = np.sort(np.random.default_rng(seed).choice(positions, size=min(count, len(positions)), replace=False))
    kind = input_kind(data.kind)
    batch = to_batch(data.inputs(chosen), data.kind, build_transform(config, data))
    pictures, titles = [], []
    for at, position in enumerate(chosen):
        one = {key: np.asarray(value[at : at + 1]) for key, value in batch.items()}
        if "image" in one:  # back to the uint8 HWC the kind shows
            one["image"] = np.clip(np.round(one["image"].astype(np.float32)), 0, 255).astype(np.uint8).transpose(0, 2, 3, 1)
        picture = view(kind, one)
        if picture is None:
            return None
        pictures.append(picture)
        titles.append(data.groups[data.strata[position]])
    augment = "augmented as in training" if config.augment is not None else "augment: null"
    plot_grid(pictures, titles, path, title=f"{len(pictures)} training examples, {augment}")
    return path
