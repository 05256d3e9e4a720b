"""Training-time augmentation of pictures: the `augment:` section of image runs, built with torchvision transforms v2."""

from __future__ import annotations

import torch
from torchvision.transforms import v2

from pydantic import Field

from trilla.schema import Section


class AugmentConfig(Section):
    """Training-time augmentation (torchvision transforms v2), applied per image; `augment: null` turns it off.

    The defaults are mild geometric jitter, which small from-scratch datasets gain most from; flips are
    off by default because they change the meaning of digits, text and left-handed guitars.
    """

    hflip: float = Field(0.0, ge=0.0, le=1.0, description="probability of a horizontal flip")
    vflip: float = Field(0.0, ge=0.0, le=1.0, description="probability of a vertical flip")
    rotate: float = Field(10.0, ge=0.0, le=180.0, description="largest rotation in degrees")
    rotate_p: float = Field(0.5, ge=0.0, le=1.0, description="probability of rotating")
    zoom: float = Field(0.1, ge=0.0, lt=1.0, description="largest relative change of scale")
    shift: float = Field(0.1, ge=0.0, lt=1.0, description="largest shift, as a fraction of the side")
    noise: float = Field(0.0, ge=0.0, le=1.0, description="std of Gaussian pixel noise on the 0-1 scale")
    color: float = Field(0.0, ge=0.0, le=1.0, description="brightness/contrast/saturation jitter")
    elastic: float = Field(0.0, ge=0.0, le=5.0, description="elastic distortion; 1 = Simard et al.'s MNIST setting")
    tta: int = Field(0, ge=0, le=64, description="test-time augmentation: augmented views averaged with the original when evaluating")


def build_augment(cfg: AugmentConfig | None, image_size: int) -> v2.Transform | None:
    """A per-image transform on uint8 (C, H, W) tensors, or None when nothing is switched on."""
    if cfg is None:
        return None
    steps: list[v2.Transform] = []
    if cfg.hflip:
        steps.append(v2.RandomHorizontalFlip(cfg.hflip))
    if cfg.vflip:
        steps.append(v2.RandomVerticalFlip(cfg.vflip))
    if cfg.rotate and cfg.rotate_p:
        steps.append(v2.RandomApply([v2.RandomRotation(cfg.rotate)], p=cfg.rotate_p))
    if cfg.zoom or cfg.shift:
        steps.append(v2.RandomAffine(degrees=0.0, translate=(cfg.shift, cfg.shift), scale=(1 - cfg.zoom, 1 + cfg.zoom)))
    if cfg.elastic:
        # Simard et al. (2003) used alpha 34 and sigma 4 on 28 px digits; scaled here to the image side.
        steps.append(v2.ElasticTransform(alpha=1.2 * image_size * cfg.elastic, sigma=0.14 * image_size))
    if cfg.color:
        steps.append(v2.ColorJitter(brightness=cfg.color, contrast=cfg.color, saturation=cfg.color))
    if cfg.noise:
        steps += [v2.ToDtype(torch.float32, scale=True), v2.GaussianNoise(sigma=cfg.noise), v2.ToDtype(torch.uint8, scale=True)]
    return v2.Compose(steps) if steps else None
