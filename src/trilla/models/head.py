"""The dense head every image model ends in, with categorical metadata fused in before it.

Metadata (a shell's region, a photo's camera) arrives as integer codes, one column per field, code 0
meaning unknown; each is one-hot encoded and concatenated to the pooled image features, as the Conus
study concatenated the one-hot region after global pooling. Then come the hidden layers, each preceded
by dropout, and the class logits.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class Head(nn.Module):
    def __init__(self, in_features: int, num_classes: int, hidden: list[int], dropout: float, metadata: tuple[int, ...] = ()):
        super().__init__()
        self.metadata = tuple(metadata)
        width = in_features + sum(self.metadata)
        layers: list[nn.Module] = []
        for units in hidden:
            layers += [nn.Dropout(dropout), nn.Linear(width, units), nn.ReLU(inplace=True)]
            width = units
        layers += [nn.Dropout(dropout), nn.Linear(width, num_classes)]
        self.layers = nn.Sequential(*layers)

    def forward(self, features: torch.Tensor, metadata: torch.Tensor | None = None) -> torch.Tensor:
        if self.metadata:
            if metadata is None:
                metadata = torch.zeros(len(features), len(self.metadata), dtype=torch.long, device=features.device)
            onehots = [F.one_hot(metadata[:, i], size).to(features.dtype) for i, size in enumerate(self.metadata)]
            features = torch.cat([features, *onehots], dim=1)
        return self.layers(features)


class HeadedModel(nn.Module):
    """What every trilla model shares after its own `embed`: the dense head, metadata fused in.
    Audio models' `embed` also takes each clip's valid `lengths` in frames, when clips differ."""

    head: Head

    def forward_head(self, features: torch.Tensor, metadata: torch.Tensor | None = None) -> torch.Tensor:
        return self.head(features, metadata)

    def forward(self, x: torch.Tensor, metadata: torch.Tensor | None = None, lengths: torch.Tensor | None = None) -> torch.Tensor:
        return self.forward_head(self.embed(x) if lengths is None else self.embed(x, lengths), metadata)


def time_mask(lengths: torch.Tensor, frames_in: int, frames_out: int) -> torch.Tensor:
    """(B, frames_out) True where a downsampled time step still covers sound (at least the first one)."""
    kept = torch.clamp(torch.ceil(lengths.float() * frames_out / frames_in), min=1).long()
    return torch.arange(frames_out, device=lengths.device)[None, :] < kept[:, None]


def mean_max_pool(x: torch.Tensor, mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and max over the last (time) axis of (B, C, T), ignoring masked-out steps."""
    if mask is None:
        return x.mean(-1), x.amax(-1)
    m = mask[:, None, :].to(x.dtype)
    mean = (x * m).sum(-1) / m.sum(-1).clamp_min(1.0)
    return mean, x.masked_fill(~mask[:, None, :], float("-inf")).amax(-1)
