"""Precomputed embeddings (AudioSet's 10 x 128 uint8 per clip), read as rows of an HDF5 file or of
TFRecord shards (the packed sources of data.py); they are not packed into the store, and
the model reads them as they were released, centred by (v - 128) / 128, as the study fed them."""

from __future__ import annotations

import io
import json
from typing import Any, Literal

import numpy as np
from pydantic import Field

import trilla.kinds.embeddings.data  # noqa: F401  (registers the HDF5 and TFRecord sources)
from trilla.errors import Unreadable
from trilla.kinds.embeddings.audioset import DIMS, SECONDS, EmbeddingClips, fit_clips
from trilla.kinds.registry import InputKind, Preprocessor, read_item, register_input
from trilla.schema import InputSection


class EmbeddingsInput(InputSection):
    """Precomputed per-second embeddings with multi-hot labels, as AudioSet released them: `data.path` is
    a packed HDF5 file (`x`, `y`, `video_id_list`) or a folder of TFRecord shards.

    A file too large for memory is streamed for training (chunked reads through a shuffle buffer);
    validation and test rows are read as needed."""

    type: Literal["embeddings"]
    stream: bool | Literal["auto"] = Field("auto", description="stream the training rows from HDF5; auto: when its x exceeds 1 GiB")
    buffer: int = Field(65536, ge=1, description="streaming: clips held in the shuffle buffer")
    chunk: int = Field(4096, ge=1, description="streaming: clips per contiguous read")


@register_input
class EmbeddingsKind(InputKind):
    name = "embeddings"
    schema = EmbeddingsInput
    augment_schema = None
    key = "embeddings"
    default_model = "mlp"
    default_task = "multilabel"
    noun = "embedding clip"

    def check(self, config) -> None:
        if config.task != "multilabel":
            raise ValueError("input: {type: embeddings} holds multi-label clips: set task: multilabel")
        super().check(config)

    def preprocessor(self, config, spec: dict, record: dict) -> EmbeddingsPreprocessor:
        return EmbeddingsPreprocessor()

    def describe(self, config, info: dict) -> str:
        spec = info["input"]
        return f"{info['samples']} clips of {spec['frames']} x {spec['bins']} embeddings"


class EmbeddingsPreprocessor(Preprocessor):
    def blank(self) -> np.ndarray:
        return np.full((SECONDS, DIMS), 128, np.uint8)

    def prepare(self, item: Any, hop: float | None = None) -> dict[str, np.ndarray]:
        """One clip of per-second embeddings (T, 128), as an array, the bytes of a `.npy` file, or a
        JSON array of T rows (what a server receives); values as released (0-255), padded or cut to the
        clip length as the training rows were."""
        clip = item if isinstance(item, np.ndarray) else _parse(read_item(item))
        if clip.ndim != 2 or clip.shape[1] != DIMS or not len(clip):
            raise Unreadable(f"an embedding clip is (seconds, {DIMS}) values, not an array of shape {clip.shape}")
        if not np.isfinite(clip).all() or clip.min() < 0 or clip.max() > 255:
            raise Unreadable("embedding values must lie in 0-255 (AudioSet's quantised embeddings)")
        padded, frames = fit_clips([clip.astype(np.uint8)])
        clips = EmbeddingClips(np.asarray([""]), padded, frames, np.zeros((1, 0), bool))
        return {"embeddings": clips.values(), "lengths": clips.frames}


def _parse(data: bytes) -> np.ndarray:
    if data.startswith(b"\x89HDF\r\n\x1a\n"):
        raise Unreadable("a packed HDF5 file holds many clips: use trilla evaluate RUN --data FILE (predictions.csv)")
    if data.startswith(b"\x93NUMPY"):
        try:
            return np.asarray(np.load(io.BytesIO(data), allow_pickle=False), dtype=np.float64)
        except (ValueError, OSError) as err:
            raise Unreadable(f"not a readable .npy array: {err}") from err
    try:
        return np.asarray(json.loads(data), dtype=np.float64)
    except (ValueError, TypeError, RecursionError) as err:
        raise Unreadable("an embedding clip is a .npy file or a JSON array of rows of numbers") from err
