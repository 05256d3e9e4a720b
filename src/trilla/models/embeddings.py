"""Models over sequences of per-second embeddings (AudioSet's 10 x 128), as the AudioSet study built them.

- `mlp`: the flattened clip through `layers` x [Dense(units) -> ReLU -> Dropout] (the study: 1-3 x 1500,
  dropout 0.3).
- `emb_cnn`: Conv2D 16 filters 3x1 (over time) -> ReLU -> MaxPool 2x2 -> Dropout -> Dense 600.
- `emb_lstm`: LSTM 600, last state of the real seconds -> Dropout -> Dense 600.
- `attention`: embedded mapping layers per second, then attention over time. `level: decision`
  (Kong et al. 2017) averages per-second class probabilities with per-class attention weights;
  `level: feature` (Kong et al. 2019) pools the per-second features with attention, then classifies.

All return logits (decision-level attention returns the logit of its pooled probability), so a sigmoid
or the multi-label loss goes on top. Padded seconds never enter the LSTM or the attention weights.
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field, PositiveInt
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

from trilla.models.head import Head, HeadedModel
from trilla.models.registry import InputSpec, ModelParams, register


def _valid(lengths: torch.Tensor | None, batch: int, frames: int, device) -> torch.Tensor:
    """(B, T) True for the seconds that hold embeddings."""
    if lengths is None:
        return torch.ones(batch, frames, dtype=torch.bool, device=device)
    return torch.arange(frames, device=device)[None, :] < lengths.to(device)[:, None]


def _dense(width: int, units: list[int], dropout: float, batch_norm: bool = False) -> tuple[nn.Sequential, int]:
    layers: list[nn.Module] = []
    for n in units:
        layers += [nn.Linear(width, n)] + ([nn.BatchNorm1d(n)] if batch_norm else []) + [nn.ReLU(inplace=True), nn.Dropout(dropout)]
        width = n
    return nn.Sequential(*layers), width


class EmbeddingParams(ModelParams):
    """What the embedding models share: their input, and Adam, the AudioSet study's optimizer."""

    inputs = ("embeddings",)

    def default_optimizer(self) -> str:
        return "adam"


class MLPParams(EmbeddingParams):
    name: Literal["mlp"] = "mlp"
    layers: int = Field(1, ge=0, le=16)
    units: int = Field(1500, ge=1)
    dropout: float = Field(0.3, ge=0.0, lt=1.0)

    def summary(self, outputs: int | None = None) -> str:
        return f"MLP {self.layers} x {self.units} dp={self.dropout:g}"


class MLP(HeadedModel):
    def __init__(self, params: MLPParams, spec: InputSpec, num_classes: int):
        super().__init__()
        self.hidden, width = _dense(spec.bins * (spec.frames or 1), [params.units] * params.layers, params.dropout)
        self.head = Head(width, num_classes, [], 0.0, spec.metadata)

    def embed(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        return self.hidden(x.flatten(1))


class EmbCNNParams(EmbeddingParams):
    name: Literal["emb_cnn"] = "emb_cnn"
    filters: int = Field(16, ge=1)
    kernel: int = Field(3, ge=1, description="along time; 1 along the embedding")
    dense: int = Field(600, ge=1)
    dropout: float = Field(0.3, ge=0.0, lt=1.0)

    def summary(self, outputs: int | None = None) -> str:
        return f"CNN {self.filters}x{self.kernel}x1 dense {self.dense} dp={self.dropout:g}"


class EmbCNN(HeadedModel):
    def __init__(self, params: EmbCNNParams, spec: InputSpec, num_classes: int):
        super().__init__()
        frames = spec.frames or 1
        self.conv = nn.Sequential(
            nn.Conv2d(1, params.filters, (params.kernel, 1)), nn.ReLU(inplace=True), nn.MaxPool2d(2), nn.Dropout(params.dropout)
        )
        flat = params.filters * ((frames - params.kernel + 1) // 2) * (spec.bins // 2)
        self.dense = nn.Sequential(nn.Linear(flat, params.dense), nn.ReLU(inplace=True))
        self.head = Head(params.dense, num_classes, [], 0.0, spec.metadata)

    def embed(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        return self.dense(self.conv(x.unsqueeze(1)).flatten(1))


class EmbLSTMParams(EmbeddingParams):
    name: Literal["emb_lstm"] = "emb_lstm"
    units: int = Field(600, ge=1)
    dense: int = Field(600, ge=1)
    dropout: float = Field(0.3, ge=0.0, lt=1.0)

    def summary(self, outputs: int | None = None) -> str:
        return f"LSTM {self.units} dense {self.dense} dp={self.dropout:g}"


class EmbLSTM(HeadedModel):
    def __init__(self, params: EmbLSTMParams, spec: InputSpec, num_classes: int):
        super().__init__()
        self.lstm = nn.LSTM(spec.bins, params.units, batch_first=True)
        self.dense = nn.Sequential(nn.Dropout(params.dropout), nn.Linear(params.units, params.dense), nn.ReLU(inplace=True))
        self.head = Head(params.dense, num_classes, [], 0.0, spec.metadata)

    def embed(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        if lengths is None:
            _, (state, _) = self.lstm(x)
        else:
            packed = pack_padded_sequence(x, lengths.clamp_min(1).cpu(), batch_first=True, enforce_sorted=False)
            _, (state, _) = self.lstm(packed)
        return self.dense(state[-1])


class AttentionParams(EmbeddingParams):
    name: Literal["attention"] = "attention"
    level: Literal["decision", "feature"] = "decision"
    hidden: list[PositiveInt] = Field(default_factory=lambda: [1024, 1024, 1024], description="embedded mapping layers, per second")
    dropout: float = Field(0.5, ge=0.0, lt=1.0)

    def summary(self, outputs: int | None = None) -> str:
        return f"{self.level}-level attention {'-'.join(map(str, self.hidden))} dp={self.dropout:g}"


class Attention(HeadedModel):
    """Attention pooling over seconds. The per-second mapping runs on (B*T, D) with batch norm, as in
    Kong et al.; the attention weights are a softmax over the real seconds."""

    def __init__(self, params: AttentionParams, spec: InputSpec, num_classes: int):
        super().__init__()
        self.level = params.level
        self.mapping, width = _dense(spec.bins, params.hidden, params.dropout, batch_norm=True)
        pooled = num_classes if self.level == "decision" else width
        self.attend = nn.Linear(width, pooled)
        self.classify = nn.Linear(width, pooled)
        # Decision level: the pooled probabilities are the output. Feature level: a classifier follows.
        self.head = Head(width, num_classes, [], 0.0, spec.metadata) if self.level == "feature" else None

    def embed(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        batch, frames, dims = x.shape
        h = self.mapping(x.reshape(batch * frames, dims)).reshape(batch, frames, -1)
        valid = _valid(lengths, batch, frames, x.device)[..., None]
        weights = torch.softmax(self.attend(h).masked_fill(~valid, float("-inf")), dim=1)
        values = torch.sigmoid(self.classify(h)) if self.level == "decision" else torch.relu(self.classify(h))
        return (weights * values).sum(dim=1)

    def forward_head(self, features: torch.Tensor, metadata: torch.Tensor | None = None) -> torch.Tensor:
        if self.head is None:
            return torch.logit(features.clamp(1e-6, 1 - 1e-6))
        return self.head(features, metadata)


@register(MLPParams)
def mlp(params: MLPParams, spec: InputSpec, num_classes: int, load_weights: bool = True) -> nn.Module:
    return MLP(params, spec, num_classes)


@register(EmbCNNParams)
def emb_cnn(params: EmbCNNParams, spec: InputSpec, num_classes: int, load_weights: bool = True) -> nn.Module:
    return EmbCNN(params, spec, num_classes)


@register(EmbLSTMParams)
def emb_lstm(params: EmbLSTMParams, spec: InputSpec, num_classes: int, load_weights: bool = True) -> nn.Module:
    return EmbLSTM(params, spec, num_classes)


@register(AttentionParams)
def attention(params: AttentionParams, spec: InputSpec, num_classes: int, load_weights: bool = True) -> nn.Module:
    return Attention(params, spec, num_classes)
