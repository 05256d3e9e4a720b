"""`panns_cnn`: an audio CNN in the manner of PANNs' Cnn10 (Kong et al. 2020) on log-mel spectrograms.

Batch norm over the mel bins, blocks of [3x3 conv -> BN -> ReLU] x 2 -> 2x2 average pooling ->
dropout, the frequency axis averaged away, then the maximum plus the mean over time (masked when clips
differ in length), dropout, a dense embedding and the shared head. The default widths are half of
Cnn10's (64..512) so that it trains on a laptop CPU; set `channels: [64, 128, 256, 512]` for Cnn10.
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field, PositiveInt
from torch import nn

from trilla.models.head import Head, HeadedModel, mean_max_pool, time_mask
from trilla.models.registry import InputSpec, ModelParams, register


class PANNsCNNParams(ModelParams):
    name: Literal["panns_cnn"] = "panns_cnn"
    inputs = ("audio",)
    channels: list[PositiveInt] = Field(default_factory=lambda: [32, 64, 128, 256], min_length=1)
    block_dropout: float = Field(0.2, ge=0.0, lt=1.0)
    embedding: int = Field(256, ge=1)
    dropout: float = Field(0.5, ge=0.0, lt=1.0)

    def summary(self, outputs: int | None = None) -> str:
        return f"PANNs-style CNN {'-'.join(map(str, self.channels))} emb {self.embedding} dp={self.dropout:g}"


def _block(cin: int, cout: int, dropout: float) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
        nn.Conv2d(cout, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
        nn.AvgPool2d(2, ceil_mode=True), nn.Dropout(dropout),
    )


class PANNsCNN(HeadedModel):
    def __init__(self, params: PANNsCNNParams, spec: InputSpec, num_classes: int):
        super().__init__()
        self.bn0 = nn.BatchNorm2d(spec.bins)
        widths = [1, *params.channels]
        self.blocks = nn.Sequential(*[_block(a, b, params.block_dropout) for a, b in zip(widths, widths[1:])])
        self.feature_map = nn.Identity()
        self.embedding = nn.Sequential(nn.Dropout(params.dropout), nn.Linear(widths[-1], params.embedding), nn.ReLU(inplace=True))
        self.head = Head(params.embedding, num_classes, [], params.dropout, spec.metadata)

    def embed(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """(B, frames, bins) -> (B, embedding)."""
        x = self.bn0(x.unsqueeze(1).transpose(1, 3)).transpose(1, 3)  # normalize each mel bin
        maps = self.feature_map(self.blocks(x)).mean(dim=3)  # (B, C, T')
        mask = None if lengths is None else time_mask(lengths, x.shape[2], maps.shape[2])
        mean, peak = mean_max_pool(maps, mask)
        return self.embedding(mean + peak)


@register(PANNsCNNParams)
def panns_cnn(params: PANNsCNNParams, spec: InputSpec, num_classes: int, load_weights: bool = True) -> nn.Module:
    return PANNsCNN(params, spec, num_classes)
