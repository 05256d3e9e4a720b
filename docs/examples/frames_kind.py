"""A fourth input kind, as a plugin author writes it: short grey videos (a few frames of a small picture),
stored as `.frames` files (NumPy's .npy format), with a model that reads them. Importing this module
registers both; `trilla train --data clips/` then infers the kind from the files.

The kind implements the protocols it has: `Packs` (its codec decodes a file into a row of the store, its
rows hand the model a batch) and `Decodes` (a trained run predicts a path, bytes or an array). It has
nothing to show or export, so the evaluation leaves out the grid of the worst predicted and
`trilla export` says it cannot. tests/test_kinds.py trains, evaluates, predicts and reloads it.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
from torch import nn

from trilla.data.dataset import Rows
from trilla.data.store import Decoded
from trilla.errors import Unreadable
from trilla.kinds.registry import InputKind, Preprocessor, read_item, register_input
from trilla.models.registry import ModelParams, register
from trilla.schema import InputSection

FRAMES, SIDE = 4, 8


class FramesInput(InputSection):
    type: Literal["frames"]


@dataclass(frozen=True)
class FramesCodec:
    kind: ClassVar[str] = "frames"
    dtype: ClassVar[type] = np.uint8

    def resolve(self, paths: list[Path]):
        return self, {}

    def row_shape(self) -> tuple[int, ...]:
        return (FRAMES, SIDE, SIDE)

    def decode(self, data: bytes) -> Decoded:
        try:
            clip = np.load(io.BytesIO(data), allow_pickle=False)
        except (ValueError, OSError) as err:
            raise Unreadable(f"not a .frames clip: {err}") from None
        if clip.shape != (FRAMES, SIDE, SIDE) or clip.dtype != np.uint8:
            raise Unreadable(f"a clip is {FRAMES} frames of {SIDE}x{SIDE} uint8, not {clip.dtype} {clip.shape}")
        return Decoded(clip)


@dataclass
class FramesRows(Rows):
    store: Any
    kind = "frames"

    def inputs(self, rows: np.ndarray) -> dict[str, np.ndarray]:
        return {"frames": np.asarray(self.store.array[rows])}

    def spec(self) -> dict:
        return {"kind": "frames", "channels": FRAMES, "size": SIDE}


class FramesPreprocessor(Preprocessor):
    def blank(self) -> np.ndarray:
        return np.zeros((FRAMES, SIDE, SIDE), np.uint8)

    def prepare(self, item: Any, hop: float | None = None) -> dict[str, np.ndarray]:
        clip = item if isinstance(item, np.ndarray) else FramesCodec().decode(read_item(item)).row
        return {"frames": clip[None]}


@register_input
class FramesKind(InputKind):
    name = "frames"
    schema = FramesInput
    key = "frames"
    default_model = "frames_net_in_a_test"
    suffixes = frozenset({".frames"})
    noun = "frames clip"

    def codec(self, config, spec: dict | None = None) -> FramesCodec:
        return FramesCodec()

    def rows(self, store, config, device: str, progress: bool) -> FramesRows:
        return FramesRows(store)

    def preprocessor(self, config, spec: dict, record: dict) -> FramesPreprocessor:
        return FramesPreprocessor()

    def normalization_values(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        return inputs["frames"].reshape(-1, 1).astype(np.float64) / 255.0

    def norm_layout(self, count: int) -> tuple[tuple[int, ...], float]:
        return (1, count, 1, 1), 255.0


# --8<-- [start:model]
class FramesNetParams(ModelParams):
    name: Literal["frames_net_in_a_test"] = "frames_net_in_a_test"
    inputs = ("frames",)
    hidden: int = 32


@register(FramesNetParams)
def frames_net_in_a_test(params: FramesNetParams, spec, num_classes: int, load_weights: bool = True) -> nn.Module:
    return FramesNet(spec.channels * spec.size * spec.size, params.hidden, num_classes)


class FramesNet(nn.Module):
    def __init__(self, inputs: int, hidden: int, outputs: int):
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(inputs, hidden), nn.ReLU(), nn.Linear(hidden, outputs))

    def forward(self, frames, metadata=None):
        return self.net(frames)
# --8<-- [end:model]
