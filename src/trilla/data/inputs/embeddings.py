"""Precomputed embeddings (AudioSet's 10 x 128 uint8 per clip), read as rows of an HDF5 file or of
TFRecord shards (see data/embedding_data.py); they are not packed, and the model reads them as they
were released, centred by (v - 128) / 128, as the study fed them."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from trilla.data.embedding_data import HDF5_SUFFIXES, load_embeddings
from trilla.data.inputs.registry import InputKind, register_input
from trilla.schema import Section


class EmbeddingsInput(Section):
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

    def claims(self, path: Path) -> bool:
        path = Path(path)
        if path.is_file():
            return path.suffix.lower() in (*HDF5_SUFFIXES, ".tfrecord")
        return path.is_dir() and any(path.glob("*.tfrecord"))

    def codec(self, config, spec: dict | None = None) -> None:
        return None

    def load(self, path: Path, config, **kwargs):
        return load_embeddings(path, config.data, config.input, classes=kwargs.get("classes"), progress=kwargs.get("progress", True))

    def describe(self, config, info: dict) -> str:
        spec = info["input"]
        return f"{info['samples']} clips of {spec['frames']} x {spec['bins']} embeddings"
