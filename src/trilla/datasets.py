"""Small labelled image folders made on the spot: the embedded default data of the demo and the tests."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np
from PIL import Image


def write_sklearn_digits(
    folder: Path, limit: int | None = None, classes: Iterable[int] | None = None, per_class: slice = slice(None)
) -> Path:
    """scikit-learn's 1797 handwritten digits (8x8, 17 grey levels) as `<folder>/<digit>/<n>.png`.

    `classes` keeps only those digits and `per_class` picks from each digit's images in order, so two
    calls can write disjoint sets (a few images to fine-tune on, the rest to test on).
    """
    from sklearn.datasets import load_digits

    digits = load_digits()
    folder = Path(folder)
    count = len(digits.target) if limit is None else min(limit, len(digits.target))
    wanted = set(range(10) if classes is None else classes)
    chosen = [i for d in sorted(wanted) for i in np.flatnonzero(digits.target[:count] == d)[per_class]]
    for i in sorted(chosen):
        target = folder / str(digits.target[i])
        target.mkdir(parents=True, exist_ok=True)
        pixels = (digits.images[i] * (255.0 / 16.0)).round().astype(np.uint8)
        Image.fromarray(pixels, mode="L").save(target / f"{i:04d}.png")
    return folder
