"""Shared fixtures: tiny generated image folders and an isolated store cache per test."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image


def quadrant_image(rng: np.random.Generator, quadrant: int, size: int = 24, mode: str = "RGB") -> Image.Image:
    """Noise with a bright blob in one quadrant: the quadrant is the class, learnable in a few epochs."""
    pixels = rng.integers(0, 90, size=(size, size, 3), dtype=np.uint8)
    half = size // 2
    y, x = divmod(quadrant % 4, 2)
    jitter = rng.integers(0, half // 3 + 1, size=2)
    top, left = y * half + jitter[0], x * half + jitter[1]
    pixels[top : top + half - half // 3, left : left + half - half // 3] = rng.integers(180, 256, size=3, dtype=np.uint8)
    image = Image.fromarray(pixels, "RGB")
    return image.convert("L") if mode == "L" else image


def make_image_folder(root: Path, counts: dict[str, int], size: int = 24, mode: str = "RGB", seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    for quadrant, (label, count) in enumerate(counts.items()):
        (root / label).mkdir(parents=True, exist_ok=True)
        for i in range(count):
            quadrant_image(rng, quadrant, size, mode).save(root / label / f"{label}_{i:03d}.png")
    return root


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("TRILLA_CACHE", str(tmp_path_factory.mktemp("cache")))


@pytest.fixture
def folder(tmp_path) -> Path:
    return make_image_folder(tmp_path / "images", {"alpha": 30, "beta": 30, "gamma": 30})


def make_region_tree(root: Path, per_species: int = 30, size: int = 24, seed: int = 0) -> Path:
    """Region/Species/photo.png where a species' picture shows only half of what defines it.

    Species `q{k}-{region}` is a blob in quadrant k photographed in that region: the picture tells the
    quadrant, only the region (a path level) tells the two species of a quadrant apart.
    """
    rng = np.random.default_rng(seed)
    for region in ("east", "west"):
        for quadrant in (0, 3):
            folder = root / region / f"q{quadrant}-{region}"
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(per_species):
                quadrant_image(rng, quadrant, size).save(folder / f"{i:03d}.png")
    return root
