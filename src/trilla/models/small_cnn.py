"""`small_cnn`: the guitar/bass study's from-scratch CNN with its knobs exposed.

Each conv layer is conv -> (batch norm) -> ReLU -> pooling; then the feature maps are flattened (as in
the study) or globally pooled, and go through the shared dense head (optional hidden layers, each
preceded by dropout, and any fused metadata) to the class logits. The defaults, four 3x3 layers of 16 to 128 maps, were chosen on OpenCV's
handwritten digits (benchmarks/digits_quality.py) and train in a minute or two on a laptop CPU.
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from trilla.errors import TrillaError
from trilla.models.head import Head, HeadedModel
from trilla.models.registry import InputSpec, ModelParams, register


class ConvLayer(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)
    maps: int = Field(ge=1)
    kernel: int = Field(3, ge=1)
    pool: int = Field(2, ge=1, description="pooling window and stride after this layer; 1 = none")


class SmallCNNParams(ModelParams):
    name: Literal["small_cnn"] = "small_cnn"
    conv: list[ConvLayer] = Field(
        default_factory=lambda: [ConvLayer(maps=m) for m in (16, 32, 64, 128)], min_length=1
    )
    batch_norm: bool = True
    dropout: float = Field(0.3, ge=0.0, lt=1.0)
    hidden: list[int] = Field(default_factory=list)
    pool: Literal["max", "avg"] = "max"
    global_pool: Literal["flatten", "avg", "max"] = "flatten"

    def summary(self) -> str:
        """The study's architecture column: conv count, kernel:maps per layer, batch norm, dropout."""
        convs = "+".join(f"{c.kernel}x{c.kernel}:{c.maps}" for c in self.conv)
        hidden = f" hidden {self.hidden}" if self.hidden else ""
        return f"{len(self.conv)} conv [{convs}] bn={'yes' if self.batch_norm else 'no'} dp={self.dropout:g}{hidden}"

    def default_ema(self) -> float:
        """0.99 raised the weaker seeds on the digits by about 0.3 points (benchmarks/digits_quality.py)."""
        return 0.99


class SmallCNN(HeadedModel):
    """Exposes `forward_features`, `embed` and `forward_head` as every trilla image model does."""

    def __init__(self, params: SmallCNNParams, spec: InputSpec, num_classes: int):
        super().__init__()
        layers: list[nn.Module] = []
        channels, size = spec.channels, spec.size
        pool_cls = nn.MaxPool2d if params.pool == "max" else nn.AvgPool2d
        for layer in params.conv:
            layers.append(nn.Conv2d(channels, layer.maps, layer.kernel, padding=layer.kernel // 2, bias=not params.batch_norm))
            if params.batch_norm:
                layers.append(nn.BatchNorm2d(layer.maps))
            layers.append(nn.ReLU(inplace=True))
            if layer.pool > 1:
                layers.append(pool_cls(layer.pool))
                size //= layer.pool
            channels = layer.maps
            if size < 1:
                raise TrillaError(
                    f"data.image_size {spec.size} is too small for {len(params.conv)} pooled conv layers; "
                    "raise it or set pool: 1 on some layers"
                )
        self.features = nn.Sequential(*layers)
        if params.global_pool == "flatten":
            self.pool: nn.Module = nn.Flatten()
            width = channels * size * size
        else:
            adaptive = nn.AdaptiveAvgPool2d(1) if params.global_pool == "avg" else nn.AdaptiveMaxPool2d(1)
            self.pool = nn.Sequential(adaptive, nn.Flatten())
            width = channels
        self.feature_map = nn.Identity()
        self.head = Head(width, num_classes, params.hidden, params.dropout, spec.metadata)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The last feature map; `feature_map` is where Grad-CAM hooks in."""
        return self.feature_map(self.features(x))

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.forward_features(x))



@register(SmallCNNParams)
def small_cnn(params: SmallCNNParams, spec: InputSpec, num_classes: int, load_weights: bool = True) -> nn.Module:
    return SmallCNN(params, spec, num_classes)
