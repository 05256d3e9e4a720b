"""Small labelled image folders made on the spot: the embedded default data of the demo and the tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


def write_sklearn_digits(folder: Path, limit: int | None = None) -> Path:
    """scikit-learn's 1797 handwritten digits (8x8, 17 grey levels) as `<folder>/<digit>/<n>.png`."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    folder = Path(folder)
    count = len(digits.target) if limit is None else min(limit, len(digits.target))
    for i in range(count):
        target = folder / str(digits.target[i])
        target.mkdir(parents=True, exist_ok=True)
        pixels = (digits.images[i] * (255.0 / 16.0)).round().astype(np.uint8)
        Image.fromarray(pixels, mode="L").save(target / f"{i:04d}.png")
    return folder
