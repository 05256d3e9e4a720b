"""Decoding one picture into the array the store keeps and the model sees.

The long side is resized to `size` and the picture is padded to a square (PIL's ImageOps.pad), so
aspect ratios survive; grey pictures stay one channel unless the dataset has colour ones.
`auto_size` picks the side when the config says `image_size: auto`.

Every picture is opened through `open_picture`, which reads the header and refuses a picture above
`max_pixels` before a single pixel is decoded (a 192 KB PNG can claim 40000x40000 pixels, 4.8 GB
decoded). A big JPEG is decoded at a reduced scale (PIL's draft mode) when that still leaves more
pixels than the model sees. High bit depths (16-bit grey PNGs, 32-bit integer and float pictures) are
scaled to 8 bits over their own range, instead of being clipped at 255.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path
from typing import IO, Literal

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from trilla.errors import Unreadable

Channels = Literal["rgb", "grey"]
GREY_MODES = {"1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F"}
WIDE_MODES = {"I", "I;16", "I;16B", "I;16L", "F"}  # more than 8 bits per pixel
MAX_PIXELS = 64_000_000  # 64 Mpx: a 9000x7000 photo; 192 MB as RGB once decoded
PIL_LIMIT = 2 * Image.MAX_IMAGE_PIXELS  # PIL itself refuses more (DecompressionBombError)
THIN = 2  # a picture whose short side becomes fewer pixels than this is mostly padding


class ImageError(Unreadable):
    """The file is not a readable picture (unknown format, truncated, corrupt, too many pixels)."""


def open_picture(source: str | Path | IO[bytes], max_pixels: int = MAX_PIXELS, setting: str = "input.max_pixels") -> Image.Image:
    """The picture, opened lazily (header only), or ImageError when it claims more than `max_pixels`
    (the error names the `setting` that raises the limit)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # the limit below is ours to tell
            img = Image.open(source)
    except Image.DecompressionBombError as err:
        raise ImageError(f"{err.args[0].split(',')[0]}: over the limit of {max_pixels / 1e6:g} Mpx ({setting})") from err
    except (UnidentifiedImageError, OSError, ValueError) as err:
        raise ImageError(_reason(err)) from err
    width, height = img.size
    if width * height > max_pixels:
        img.close()
        raise ImageError(
            f"picture is {width}x{height} = {width * height / 1e6:.0f} Mpx, over the limit of {max_pixels / 1e6:g} Mpx "
            f"({setting}); not decoded"
        )
    return img


def probe(path: Path, max_pixels: int = MAX_PIXELS) -> tuple[Channels, int]:
    """Read only the header: grey or colour, and the long side in pixels."""
    with open_picture(path, max_pixels) as img:
        return ("grey" if img.mode in GREY_MODES else "rgb"), max(img.size)


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


def decode(data: bytes, size: int, channels: Channels, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Bytes of an image file -> uint8 array (size, size, 1 or 3)."""
    return decode_noted(data, size, channels, max_pixels)[0]


def decode_noted(data: bytes, size: int, channels: Channels, max_pixels: int = MAX_PIXELS) -> tuple[np.ndarray, str]:
    """`decode`, plus a note for a picture that decodes but hardly holds anything (see `note`)."""
    with open_picture(io.BytesIO(data), max_pixels) as img:
        original = img.size
        try:
            if img.format == "JPEG":
                img.draft(None, (size, size))  # decode at 1/2, 1/4 or 1/8 scale while that still covers `size`
            img.load()
            return fit(img, size, channels), note(original, size)
        except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as err:
            raise ImageError(_reason(err)) from err


def fit(img: Image.Image, size: int, channels: Channels, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """A decoded picture -> uint8 array (size, size, 1 or 3): upright (EXIF), 8 bits, converted, padded square."""
    if img.width * img.height > max_pixels:
        raise ImageError(f"picture is {img.width}x{img.height}, over the limit of {max_pixels / 1e6:g} Mpx (input.max_pixels)")
    img = ImageOps.exif_transpose(img)
    if img.mode in WIDE_MODES:
        img = to_8_bits(img)
    img = img.convert("L" if channels == "grey" else "RGB")
    img = ImageOps.pad(img, (size, size), method=Image.Resampling.BILINEAR, color=0)
    array = np.array(img, dtype=np.uint8)  # a copy: PIL's own buffer is read-only, and torch warns on those
    return array[:, :, None] if array.ndim == 2 else array


def to_8_bits(img: Image.Image) -> Image.Image:
    """A 16-bit, 32-bit integer or float grey picture as 8-bit grey, scaled over the range its type
    can hold (0-65535 for 16-bit and for integer pictures that stay within it; 0-1 for floats that do),
    as an image viewer shows it. PIL's own conversion clips everything above 255 to white."""
    values = np.asarray(img, dtype=np.float64)
    if img.mode == "F":
        top = 1.0 if values.size and np.nanmax(values) <= 1.0 else 255.0
    else:
        top = 65535.0 if not values.size or values.max() <= 65535 else float(values.max())
    scaled = np.clip(np.nan_to_num(values) / top * 255.0, 0, 255)
    return Image.fromarray(np.round(scaled).astype(np.uint8), "L")


def note(original: tuple[int, int], size: int) -> str:
    """A warning for a picture that decodes but shows the model next to nothing: a single pixel blown up
    to the whole square, or a panorama whose short side becomes a strip of one pixel."""
    width, height = original
    if width * height <= 1:
        return f"a {width}x{height} picture: one pixel, blown up to {size}x{size}"
    short = round(min(width, height) * size / max(width, height))
    if short < THIN:
        return f"a {width}x{height} picture becomes a strip {max(short, 1)} px thick at {size} px; the rest is padding"
    return ""


def _reason(err: Exception) -> str:
    if isinstance(err, UnidentifiedImageError):
        return "not an image (unknown format)"
    return f"unreadable image: {err}"
