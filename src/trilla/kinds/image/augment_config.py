"""The image kind's `augment:` section, apart from the code that applies it (augment.py).

It imports neither torch nor torchvision, so that reading a config does not load torchvision (a few
seconds on a laptop): `trilla.config` and the kind import only this, and the augmentation code loads
when a run builds it.
"""

from __future__ import annotations

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
