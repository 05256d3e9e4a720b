"""Pictures: decoded, resized on the long side and padded to a square, kept as uint8 (see decode.py).

Every path a picture takes to the model goes through `images.decode` or `images.fit` with the run's
side and channels: packing the store, predicting a file, bytes from a server, a PIL image or an array.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from PIL import Image
from pydantic import Field

from trilla.data.dataset import Rows
from trilla.data.store import Decoded
from trilla.errors import Unreadable
from trilla.kinds.image import decode as images
from trilla.kinds.image.augment_config import AugmentConfig
from trilla.kinds.registry import InputKind, Preprocessor, read_item, register_input
from trilla.schema import InputSection


class ImageInput(InputSection):
    """Pictures; their size and colour are `data.image_size` and `data.channels`."""

    type: Literal["image"] = "image"
    max_pixels: int = Field(
        images.MAX_PIXELS, ge=1, le=images.PIL_LIMIT,
        description="a picture whose header claims more pixels is skipped (and listed) without being decoded: a guard against decompression bombs",
    )


@dataclass(frozen=True)
class ImageCodec:
    """Pictures: `size` and `channels` may be `auto`, decided once from the files when packing."""

    size: int | str = "auto"
    channels: str = "auto"
    max_pixels: int = images.MAX_PIXELS
    kind = "image"
    dtype = np.uint8

    def resolve(self, paths: list[Path]) -> tuple[ImageCodec, dict[int, str]]:
        if self.channels != "auto" and self.size != "auto":
            return self, {}
        found, sides, errors = set(), [], {}
        for i, path in enumerate(paths):
            try:
                kind, side = images.probe(path, self.max_pixels)
                found.add(kind)
                sides.append(side)
            except images.ImageError as err:
                errors[i] = str(err)
        channels = ("rgb" if "rgb" in found else "grey") if self.channels == "auto" else self.channels
        size = images.auto_size(sides) if self.size == "auto" else self.size
        return ImageCodec(size, channels, self.max_pixels), errors

    def row_shape(self) -> tuple[int, ...]:
        return (self.size, self.size, 1 if self.channels == "grey" else 3)  # type: ignore[return-value]

    def decode(self, data: bytes) -> Decoded:
        picture, note = images.decode_noted(data, self.size, self.channels, self.max_pixels)  # type: ignore[arg-type]
        return Decoded(picture, 0, note)


@dataclass
class ImageRows(Rows):
    """The store's pictures, uint8 NHWC."""

    store: Any
    kind = "image"

    def inputs(self, rows: np.ndarray) -> dict[str, np.ndarray]:
        return {"image": np.asarray(self.store.array[rows])}

    def spec(self) -> dict:
        codec = self.store.codec
        return {"kind": "image", "channels": 1 if codec.channels == "grey" else 3, "size": codec.size}


class ImagePreprocessor(Preprocessor):
    def __init__(self, codec: ImageCodec):
        self.codec = codec

    def blank(self) -> np.ndarray:
        return np.zeros((self.codec.size, self.codec.size, 3), np.uint8)

    def prepare(self, item: Any, hop: float | None = None) -> dict[str, np.ndarray]:
        """A path, bytes or binary file of a picture, a PIL image, or a uint8 array (H, W[, C]); a
        picture is one window whatever `hop` says."""
        size, channels, limit = self.codec.size, self.codec.channels, self.codec.max_pixels
        if isinstance(item, Image.Image):
            picture = images.fit(item, size, channels, limit)  # type: ignore[arg-type]
        elif isinstance(item, np.ndarray):
            if item.dtype != np.uint8 or item.ndim not in (2, 3) or (item.ndim == 3 and item.shape[2] not in (1, 3, 4)):
                raise Unreadable(f"a picture array must be uint8 (H, W) or (H, W, 1/3/4), not {item.dtype} {item.shape}")
            picture = images.fit(Image.fromarray(item.squeeze(-1) if item.ndim == 3 and item.shape[2] == 1 else item), size, channels, limit)  # type: ignore[arg-type]
        else:
            picture = self.codec.decode(read_item(item))[0]
        return {"image": picture[None]}


@register_input
class ImageKind(InputKind):
    name = "image"
    schema = ImageInput
    augment_schema = AugmentConfig
    key = "image"
    default_model = "small_cnn"
    suffixes = frozenset(ext.lower() for ext in Image.registered_extensions())
    noun = "image"

    def codec(self, config, spec: dict | None = None) -> ImageCodec:
        if spec is not None:
            return ImageCodec(spec["size"], "grey" if spec["channels"] == 1 else "rgb", config.input.max_pixels)
        return ImageCodec(config.data.image_size, config.data.channels, config.input.max_pixels)

    def rows(self, store, config, device: str, progress: bool) -> ImageRows:
        return ImageRows(store)

    def preprocessor(self, config, spec: dict, record: dict) -> ImagePreprocessor:
        return ImagePreprocessor(self.codec(config, spec))

    def to_batch(self, inputs: dict[str, np.ndarray], transform=None) -> dict:
        import torch

        batch = super().to_batch(inputs)
        batch["image"] = batch["image"].permute(0, 3, 1, 2)
        if transform is not None:
            batch["image"] = torch.stack([transform(image) for image in batch["image"]])
        return batch

    def augmentation(self, augment, config, spec: dict):
        from trilla.kinds.image.augment import build_augment

        return build_augment(augment, spec["size"])

    def normalization_values(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        pictures = inputs["image"]
        return pictures.reshape(-1, pictures.shape[-1]).astype(np.float64) / 255.0

    def norm_layout(self, count: int) -> tuple[tuple[int, ...], float]:
        return (1, count, 1, 1), 255.0

    def explain_view(self, inputs: dict[str, np.ndarray], heat: np.ndarray):
        return inputs["image"][0], heat, None

    def describe(self, config, info: dict) -> str:
        return (f"{info['samples']} usable image{'s' if info['samples'] != 1 else ''}, {info['channels']}, {info['image_size']} px "
                f"(long side, padded square; config: {config.data.image_size})")

    def record(self, data) -> dict:
        codec = data.store.codec
        return {"channels": codec.channels, "image_size": codec.size}

    def example_input(self, spec: dict, batch: int = 2):
        import torch

        return torch.full((batch, spec["channels"], spec["size"], spec["size"]), 128.0)

    def export_sidecar(self, spec: dict) -> dict:
        """Every step between a picture file and the exported model's input, so that a program with
        Pillow and onnxruntime alone reproduces trilla's probabilities (tested)."""
        size, grey = spec["size"], spec["channels"] == 1
        return {
            "image_size": size, "channels": "grey" if grey else "rgb", "pixel_range": [0, 255],
            "preprocessing": {
                "steps": [
                    f"open the file with Pillow; a JPEG is decoded in draft mode first: img.draft(None, ({size}, {size}))",
                    "turn it upright by its EXIF orientation: ImageOps.exif_transpose(img)",
                    "16-bit or 32-bit integer grey: scale 0-65535 (or 0 to the maximum, when larger) to 0-255, rounded; "
                    "float grey: 0-1 (or 0-255 when larger) to 0-255",
                    f"convert to {'L (grey)' if grey else 'RGB'}",
                    f"resize the long side to {size} px keeping the aspect ratio and pad to {size}x{size} with black, centred: "
                    f"ImageOps.pad(img, ({size}, {size}), method=Image.Resampling.BILINEAR, color=0, centering=(0.5, 0.5))",
                    f"as float32 in 0-255, channels first: shape (batch, {spec['channels']}, {size}, {size})",
                ],
                "resize": {"method": "bilinear", "long_side": size, "pad_to": [size, size], "pad_value": 0, "centering": [0.5, 0.5]},
                "layout": "NCHW", "dtype": "float32", "channel_order": "L" if grey else "RGB",
                "normalization": "inside the model: it subtracts the training set's mean and divides by its std itself",
            },
        }
