"""Training-time augmentation of pictures, built with torchvision transforms v2 from an image run's `augment:` section."""

from __future__ import annotations

import torch
from torchvision.transforms import v2

from trilla.kinds.image.augment_config import AugmentConfig


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
