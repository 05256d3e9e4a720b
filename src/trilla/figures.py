"""Figures as files: matplotlib without a display (the Agg backend, chosen once here, before pyplot is
imported anywhere), one way to save and close a figure, and the grid of samples that training,
evaluation and harvesting all show."""

from __future__ import annotations

from pathlib import Path
from typing import IO

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def save_figure(fig, path: Path | IO[bytes], dpi: int = 110) -> None:
    """Write the figure (to a file, or a buffer a server answers with) and free it: pyplot keeps every
    open figure until closed."""
    fig.savefig(path, dpi=dpi)
    plt.close(fig)


def plot_grid(pictures: list[np.ndarray], titles: list[str], path: Path, title: str, columns: int = 4) -> None:
    """Samples as a person sees them (HWC uint8: pictures, or spectrograms laid out wide), each with its
    caption, as fastai's show_batch and plot_top_losses show them."""
    if not len(pictures):
        return
    columns = min(columns, len(pictures))
    rows = -(-len(pictures) // columns)
    wide = min(max(np.mean([p.shape[1] / p.shape[0] for p in pictures]), 1.0), 3.0)
    fig, axes = plt.subplots(rows, columns, figsize=(2.6 * wide * columns, 2.9 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, picture, text in zip(axes.flat, pictures, titles):
        grey = picture.shape[-1] == 1
        ax.imshow(picture.squeeze(-1) if grey else picture, cmap=("magma" if wide > 1 else "gray") if grey else None,
                  aspect="auto" if wide > 1 else "equal")
        ax.set_title(text, fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    save_figure(fig, path, dpi=100)
