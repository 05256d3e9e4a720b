"""`timm`: any timm backbone, pretrained or not, frozen or fine-tuned, under trilla's dense head.

Weights come through timm's own loader in every case, so its input-conv adaptation (grey images) and
classifier filtering apply: `pretrained: true` takes timm's published weights (Hugging Face hub or its
cache), a `.safetensors` / `.pth` path is timm's `file` override, and a trilla run (or one of its
`.ckpt` files) hands over the backbone of that run, which is how a model pretrained on one dataset is
fine-tuned on another offline. Input normalization follows the backbone's pretrained config.

Freezing keeps batch-norm statistics fixed too (as Keras does for a frozen base), so a frozen backbone
is a pure function of its input and its pooled features can be cached (see `data/features.py`).
`gradual` unfreezes timm's own layer groups (`group_matcher`), deepest first, as ULMFiT does.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Literal

import torch
from pydantic import Field, PositiveInt, field_validator
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from trilla.errors import TrillaError
from trilla.models.head import Head, HeadedModel
from trilla.models.registry import InputSpec, ModelParams, register


class TimmParams(ModelParams):
    name: Literal["timm"] = "timm"
    backbone: str = Field("resnet18", description="any timm model name, optionally with a pretrained tag")
    pretrained: bool | Path = Field(True, description="true: timm's published weights; a path: a weights file or a trilla run")
    freeze: Literal["backbone", "none", "gradual"] = Field(
        "backbone", description="train the head only, everything, or the head first and then one more layer group at a time"
    )
    head: list[PositiveInt] = Field(default_factory=lambda: [1024], description="hidden units of the dense head")
    dropout: float = Field(0.5, ge=0.0, lt=1.0, description="dropout in the dense head")
    backbone_lr: float = Field(
        0.1, gt=0.0, description="the pretrained backbone's learning rate as a fraction of train.lr (1 when pretrained: false)"
    )
    unfreeze_at: int = Field(5, ge=0, description="gradual: epochs the backbone stays frozen")
    unfreeze_every: int = Field(1, ge=1, description="gradual: epochs between unfreezing one more layer group")

    @field_validator("backbone")
    @classmethod
    def _known_backbone(cls, value: str) -> str:
        import timm

        if not timm.is_model(value):
            close = difflib.get_close_matches(value, timm.list_models(), n=3, cutoff=0.6)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise ValueError(f"timm has no model {value!r}{hint} (see timm.list_models())")
        return value

    def summary(self, outputs: int | None = None) -> str:
        weights = "scratch" if self.pretrained is False else ("pretrained" if self.pretrained is True else f"from {Path(self.pretrained).name}")
        return f"{self.backbone} ({weights}, freeze {self.freeze}) head {self.head} dp={self.dropout:g}"

    def normalization(self, spec: dict) -> tuple[list[float], list[float]]:
        import timm

        cfg = timm.models.get_pretrained_cfg(self.backbone)
        mean, std = list(cfg.mean), list(cfg.std)
        if spec["channels"] == 1:
            mean, std = [sum(mean) / len(mean)], [sum(std) / len(std)]
        return mean, std

    def frozen_features(self) -> bool:
        return self.freeze == "backbone"

    def run_weights(self) -> Path | None:
        """`pretrained` when it names a trilla run directory or one of its checkpoints."""
        if isinstance(self.pretrained, bool):
            return None
        path = Path(self.pretrained).expanduser()
        return path if path.is_dir() or path.suffix == ".ckpt" else None


def create_backbone(params: TimmParams, channels: int, load_weights: bool = True, state: dict | None = None) -> nn.Module:
    """The timm model without its classifier, with the weights `params.pretrained` names; `state` is the
    state dict of the trilla run it names, which the caller read (models never open a run's files)."""
    import timm

    overlay = None
    source = params.pretrained
    if load_weights and params.run_weights() is not None:
        prefix = "model.backbone."
        backbone = {k[len(prefix):]: v for k, v in (state or {}).items() if k.startswith(prefix)}
        if not backbone:
            raise TrillaError(f"model.pretrained: {source} holds no timm backbone (was that run trained with model.name: timm?)")
        overlay = {"source": "", "state_dict": backbone}
    elif load_weights and not isinstance(source, bool):
        path = Path(source).expanduser()
        if path.is_file():
            overlay = {"source": "", "file": str(path)}
        else:
            raise TrillaError(f"model.pretrained: weights file {path} does not exist")
    pretrained = load_weights and source is not False
    try:
        return timm.create_model(
            params.backbone, pretrained=pretrained, num_classes=0, in_chans=channels, pretrained_cfg_overlay=overlay
        )
    except (OSError, RuntimeError, ValueError) as err:
        if pretrained and overlay is None:
            raise TrillaError(
                f"could not get timm's pretrained weights for {params.backbone} ({type(err).__name__}: {err}). "
                "Offline? Point model.pretrained at a local .safetensors/.pth file or a trilla run, or set it to false."
            ) from err
        raise TrillaError(f"could not load weights into {params.backbone}: {err}") from err


class TimmNet(HeadedModel):
    def __init__(self, params: TimmParams, spec: InputSpec, num_classes: int, load_weights: bool = True, state: dict | None = None):
        super().__init__()
        self.params = params
        self.backbone = create_backbone(params, spec.channels, load_weights, state)
        cfg = self.backbone.pretrained_cfg
        if cfg.get("fixed_input_size") and tuple(cfg["input_size"][1:]) != (spec.size, spec.size):
            raise TrillaError(f"backbone {params.backbone} needs {cfg['input_size'][1]} px input; set data.image_size: {cfg['input_size'][1]}")
        self.feature_map = nn.Identity()
        self.head = Head(self.backbone.num_features, num_classes, params.head, params.dropout, spec.metadata)
        self._groups = self._layer_groups()
        self.thaw(0)

    def _layer_groups(self) -> list[list[nn.Parameter]]:
        """The backbone's parameters in timm's coarse layer groups, stem first."""
        from timm.models import group_parameters

        named = dict(self.backbone.named_parameters())
        matcher = getattr(self.backbone, "group_matcher", None)
        if matcher is None:
            return [list(named.values())]
        groups = group_parameters(self.backbone, matcher(coarse=True))
        return [[named[n] for n in groups[k]] for k in sorted(groups)]

    def thaw(self, epoch: int) -> None:
        """Set which layer groups train in this epoch, as `freeze` says."""
        if self.params.freeze == "none":
            trainable = len(self._groups)
        elif self.params.freeze == "backbone" or epoch < self.params.unfreeze_at:
            trainable = 0
        else:
            trainable = 1 + (epoch - self.params.unfreeze_at) // self.params.unfreeze_every
        for i, group in enumerate(reversed(self._groups)):
            for parameter in group:
                parameter.requires_grad_(i < trainable)
        self.train(self.training)

    def train(self, mode: bool = True) -> TimmNet:
        """Frozen batch-norm layers stay in eval mode, so their running statistics do not move."""
        super().train(mode)
        for module in self.backbone.modules():
            if isinstance(module, _BatchNorm) and not any(p.requires_grad for p in module.parameters(recurse=False)):
                module.eval()
        return self

    def param_groups(self) -> list[dict]:
        """Head at the full learning rate, a pretrained backbone at `backbone_lr` of it."""
        scale = 1.0 if self.params.pretrained is False else self.params.backbone_lr
        return [
            {"params": list(self.head.parameters()), "lr_scale": 1.0},
            {"params": list(self.backbone.parameters()), "lr_scale": scale},
        ]

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The backbone's last feature map; `feature_map` is where Grad-CAM hooks in."""
        return self.feature_map(self.backbone.forward_features(x))

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone.forward_head(self.forward_features(x), pre_logits=True)



@register(TimmParams)
def timm(params: TimmParams, spec: InputSpec, num_classes: int, load_weights: bool = True, state: dict | None = None) -> nn.Module:
    return TimmNet(params, spec, num_classes, load_weights, state)
