"""Decoding one picture into the array the store keeps and the model sees.

The long side is resized to `size` and the picture is padded to a square (PIL's ImageOps.pad), so
aspect ratios survive; grey pictures stay one channel unless the dataset has colour ones.
`auto_size` picks the side when the config says `image_size: auto`.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Literal

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

Channels = Literal["rgb", "grey"]
GREY_MODES = {"1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F"}


class ImageError(Exception):
    """The file is not a readable picture (unknown format, truncated, corrupt)."""


def probe(path: Path) -> tuple[Channels, int]:
    """Read only the header: grey or colour, and the long side in pixels."""
    try:
        with Image.open(path) as img:
            return ("grey" if img.mode in GREY_MODES else "rgb"), max(img.size)
    except (UnidentifiedImageError, OSError, ValueError) as err:
        raise ImageError(_reason(err)) from err


def auto_size(long_sides: list[int]) -> int:
    """The median long side rounded up to a multiple of 16, kept within 32..64.

    Small from-scratch CNNs learn best near the pictures' own resolution: upsampling 20 px digits to 64
    cost about half a point of accuracy on OpenCV's digits (benchmarks/results/digits_quality.md), while
    64 px keeps photos cheap to train on a laptop CPU.
    """
    if not long_sides:
        return 64
    median = float(np.median(long_sides))
    return int(min(64, max(32, 16 * np.ceil(median / 16))))


def decode(data: bytes, size: int, channels: Channels) -> np.ndarray:
    """Bytes of an image file -> uint8 array (size, size, 1 or 3)."""
    try:
        with Image.open(io.BytesIO(data)) as img:
            img.load()
            return fit(img, size, channels)
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as err:
        raise ImageError(_reason(err)) from err


def fit(img: Image.Image, size: int, channels: Channels) -> np.ndarray:
    """A decoded picture -> uint8 array (size, size, 1 or 3): upright (EXIF), converted, padded square."""
    img = ImageOps.exif_transpose(img)
    img = img.convert("L" if channels == "grey" else "RGB")
    img = ImageOps.pad(img, (size, size), method=Image.Resampling.BILINEAR, color=0)
    array = np.asarray(img, dtype=np.uint8)
    return array[:, :, None] if array.ndim == 2 else array


def read(path: Path) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as err:
        raise ImageError(f"cannot read file: {err.strerror or err}") from err


def _reason(err: Exception) -> str:
    if isinstance(err, UnidentifiedImageError):
        return "not an image (unknown format)"
    return f"unreadable image: {err}"
