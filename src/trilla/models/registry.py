"""Model registry in the manner of timm's `register_model` / `create_model`.

A model is added by one decorated builder function; its pydantic parameter class is the schema of the
config's `model:` section when `model.name` is that model, so every model validates its own knobs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from torch import nn

from trilla.errors import TrillaError, unknown_name
from trilla.schema import Section


class ModelParams(Section):
    """Base of every model's parameter class; `name` selects the registered builder."""

    name: str
    inputs: ClassVar[tuple[str, ...]] = ("image",)
    sequence: ClassVar[bool] = False  # reads frames in order to a last state: the padding after a short clip must be masked

    def summary(self, outputs: int | None = None) -> str:
        """A one-line description for results tables (`outputs`: the number of outputs, where a model names
        it); models override it with their own knobs."""
        return self.name

    def normalization(self, spec: dict) -> tuple[list[float], list[float]] | None:
        """Input mean and std (0-1 scale) the model's weights expect for inputs of `spec` (the data's input
        spec); None = the training set's own."""
        return None

    def run_weights(self) -> Path | None:
        """The trilla run (or checkpoint) whose weights the model starts from, if any: the caller reads
        its state dict and hands it to the builder as `state`."""
        return None

    def default_ema(self) -> float | None:
        """What `train.ema: auto` means for this model."""
        return None

    def default_optimizer(self) -> str:
        """What `train.optimizer: auto` means for this model."""
        return "adamw"

    def frozen_features(self) -> bool:
        """Whether `embed` stays fixed during training, so its outputs can be computed once and cached."""
        return False


@dataclass(frozen=True)
class InputSpec:
    """What the data layer feeds the model: for images channels and a square side, for audio the
    spectrogram's frequency bins and frames (None when clips keep their own length), and the
    vocabulary size of each metadata field fused into the head (code 0 of each is "unknown")."""

    channels: int = 0
    size: int = 0
    metadata: tuple[int, ...] = ()
    kind: str = "image"
    bins: int = 0
    frames: int | None = None
    masked: bool = False  # fixed frames, but each clip's `lengths` say where its sound ends (sequence models)


Builder = Callable[..., nn.Module]


@dataclass(frozen=True)
class _Entry:
    builder: Builder
    params: type[ModelParams]


_MODELS: dict[str, _Entry] = {}


def register(params: type[ModelParams]) -> Callable[[Builder], Builder]:
    """Register `builder(params, input_spec, num_classes, load_weights) -> nn.Module` under its name.

    `load_weights=False` asks for the architecture only, when a checkpoint is about to fill it in.
    """

    def decorator(builder: Builder) -> Builder:
        name = builder.__name__
        if name in _MODELS:
            raise ValueError(f"model {name!r} is registered twice")
        _MODELS[name] = _Entry(builder, params)
        return builder

    return decorator


def list_models() -> list[str]:
    return sorted(_MODELS)


def _entry(name: str) -> _Entry:
    if not isinstance(name, str):
        raise TrillaError(f"a model's name is text, one of {', '.join(list_models())}; not {name!r}")
    if name not in _MODELS:
        raise unknown_name("model", name, list_models())
    return _MODELS[name]


def params_class(name: str) -> type[ModelParams]:
    return _entry(name).params


def build(params: ModelParams, spec: InputSpec, num_classes: int, load_weights: bool = True, state: dict | None = None) -> nn.Module:
    """The model; `state` (another run's weights, for a model whose `run_weights` names one) goes to its builder."""
    entry = _entry(params.name)
    if spec.kind not in entry.params.inputs:
        fitting = [name for name, e in sorted(_MODELS.items()) if spec.kind in e.params.inputs]
        raise TrillaError(f"model {params.name!r} does not take {spec.kind} input; models for {spec.kind}: {', '.join(fitting)}")
    return entry.builder(params, spec, num_classes, load_weights, **({"state": state} if state is not None else {}))
