"""`small_cnn`: the guitar/bass study's from-scratch CNN with its knobs exposed, and `spectro_cnn`, the
same network over a spectrogram seen as a one-channel picture (time x frequency), as the music study's
4 x [Conv2D + MaxPool] -> flatten -> dropout -> dense model. On spectrograms `global_pool: avg | max`
pools over time only (masked when clips differ in length) and keeps the frequency axis.

Each conv layer is conv -> (batch norm) -> ReLU -> pooling; then the feature maps are flattened (as in
the study) or globally pooled, and go through the shared dense head (optional hidden layers, each
preceded by dropout, and any fused metadata) to the class logits. The defaults, four 3x3 layers of 16 to 128 maps, were chosen on OpenCV's
handwritten digits (benchmarks/digits_quality.py) and train in a minute or two on a laptop CPU.
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field, PositiveInt
from torch import nn

from trilla.errors import TrillaError
from trilla.models.head import Head, HeadedModel, mean_max_pool, time_mask
from trilla.models.registry import InputSpec, ModelParams, register
from trilla.schema import Section


class ConvLayer(Section):
    maps: int = Field(ge=1)
    kernel: int = Field(3, ge=1)
    pool: int = Field(2, ge=1, description="pooling window and stride after this layer; 1 = none")


class SmallCNNParams(ModelParams):
    name: Literal["small_cnn"] = "small_cnn"
    conv: list[ConvLayer] = Field(
        default_factory=lambda: [ConvLayer(maps=m) for m in (16, 32, 64, 128)], min_length=1
    )
    batch_norm: bool = Field(True, description="batch normalization after each convolution")
    dropout: float = Field(0.3, ge=0.0, lt=1.0, description="dropout before the output layer")
    hidden: list[PositiveInt] = Field(default_factory=list, description="hidden linear layers, e.g. [256]")
    pool: Literal["max", "avg"] = Field("max", description="pooling after each convolution")
    global_pool: Literal["flatten", "avg", "max"] = Field("flatten", description="flatten (as in the study), or a global average or maximum")

    def summary(self, outputs: int | None = None) -> str:
        """The study's architecture column: conv count, kernel:maps per layer, batch norm, dropout."""
        convs = "+".join(f"{c.kernel}x{c.kernel}:{c.maps}" for c in self.conv)
        hidden = f" hidden {self.hidden}" if self.hidden else ""
        return f"{len(self.conv)} conv [{convs}] bn={'yes' if self.batch_norm else 'no'} dp={self.dropout:g}{hidden}"

    def default_ema(self) -> float:
        """0.99 raised the weaker seeds on the digits by about 0.3 points (benchmarks/digits_quality.py)."""
        return 0.99


class SpectroCNNParams(SmallCNNParams):
    name: Literal["spectro_cnn"] = "spectro_cnn"  # type: ignore[assignment]
    inputs = ("audio",)


class SmallCNN(HeadedModel):
    """Exposes `forward_features`, `embed` and `forward_head` as every trilla image model does."""

    def __init__(self, params: SmallCNNParams, spec: InputSpec, num_classes: int):
        super().__init__()
        layers: list[nn.Module] = []
        self.audio = spec.kind == "audio"
        if self.audio:
            channels, height, width = 1, spec.frames, spec.bins
            if height is None and params.global_pool == "flatten":
                raise TrillaError("global_pool: flatten needs clips of one length: set input.seconds, or use global_pool avg or max")
            where = f"{spec.frames or 'variable'} frames x {spec.bins} bins"
        else:
            channels, height, width = spec.channels, spec.size, spec.size
            where = f"data.image_size {spec.size}"
        pool_cls = nn.MaxPool2d if params.pool == "max" else nn.AvgPool2d
        for layer in params.conv:
            layers.append(nn.Conv2d(channels, layer.maps, layer.kernel, padding=layer.kernel // 2, bias=not params.batch_norm))
            if params.batch_norm:
                layers.append(nn.BatchNorm2d(layer.maps))
            layers.append(nn.ReLU(inplace=True))
            if layer.pool > 1:
                layers.append(pool_cls(layer.pool))
                height = None if height is None else height // layer.pool
                width //= layer.pool
            channels = layer.maps
            if width < 1 or (height is not None and height < 1):
                raise TrillaError(f"{where} is too small for {len(params.conv)} pooled conv layers; raise it or set pool: 1 on some layers")
        self.features = nn.Sequential(*layers)
        self.global_pool = params.global_pool
        if params.global_pool == "flatten":
            self.pool: nn.Module = nn.Flatten()
            width = channels * height * width
        elif self.audio:  # pooled over time only: where in the spectrum a pattern sits is the pitch
            self.pool = nn.Identity()
            width = channels * width
        else:
            adaptive = nn.AdaptiveAvgPool2d(1) if params.global_pool == "avg" else nn.AdaptiveMaxPool2d(1)
            self.pool = nn.Sequential(adaptive, nn.Flatten())
            width = channels
        self.feature_map = nn.Identity()
        self.head = Head(width, num_classes, params.hidden, params.dropout, spec.metadata)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The last feature map; `feature_map` is where Grad-CAM hooks in."""
        return self.feature_map(self.features(x))

    def embed(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        if self.audio:
            x = x.unsqueeze(1)
        maps = self.forward_features(x)
        if not self.audio or self.global_pool == "flatten":
            return self.pool(maps)
        mask = None if lengths is None else time_mask(lengths, x.shape[2], maps.shape[2])
        batch, channels, frames, bins = maps.shape
        mean, peak = mean_max_pool(maps.permute(0, 1, 3, 2).reshape(batch, channels * bins, frames), mask)
        return peak if self.global_pool == "max" else mean


@register(SmallCNNParams)
def small_cnn(params: SmallCNNParams, spec: InputSpec, num_classes: int, load_weights: bool = True) -> nn.Module:
    return SmallCNN(params, spec, num_classes)


@register(SpectroCNNParams)
def spectro_cnn(params: SpectroCNNParams, spec: InputSpec, num_classes: int, load_weights: bool = True) -> nn.Module:
    return SmallCNN(params, spec, num_classes)
