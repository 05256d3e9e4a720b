"""The audio kind's `augment:` section, apart from the code that applies it (augment.py): reading a
config loads no torch for it."""

from __future__ import annotations

from pydantic import Field

from trilla.schema import Section


class AudioAugmentConfig(Section):
    """Training-time augmentation of (log) spectrograms, applied per clip to the cached features.

    SpecAugment's time and frequency masks (Park et al. 2019), a random gain (an offset in dB), a random
    circular time shift, a small shift along the frequency axis, a pitch shift (the frequency axis
    scaled, as in VTLP, Jaitly & Hinton 2013, so harmonics and formants move together, as when a sampler
    stretches one recorded note over its neighbours), a random smooth equalizer curve (FilterAugment,
    Nam et al. 2022), Freq-MixStyle (Kim et al. 2022: each clip takes per-bin statistics blended with
    another clip's), a random compression or expansion of the loudness envelope (another sample set's
    attacks and decays: one library's violin swells in over 350 ms, another's within 60 ms) and a
    partial freeze of each note's spectrum after its peak (a small library's looped samples). These
    imitate another instrument's, sample set's or microphone's colouring and shaping, which is what a
    model trained on one sound library must not depend on; `augment: null` turns it off.
    """

    time_masks: int = Field(2, ge=0, le=10, description="number of time masks")
    time_mask: float = Field(0.1, ge=0.0, lt=1.0, description="longest time mask, as a fraction of the clip")
    freq_masks: int = Field(2, ge=0, le=10, description="number of frequency masks")
    freq_mask: int = Field(8, ge=0, description="widest frequency mask, in bins")
    gain_db: float = Field(6.0, ge=0.0, le=40.0, description="largest random gain, in dB either way")
    shift: float = Field(0.5, ge=0.0, le=1.0, description="largest circular time shift, as a fraction of the clip")
    freq_shift: int = Field(0, ge=0, le=16, description="largest shift along the frequency axis, in bins")
    pitch_shift: float = Field(
        0.0, ge=0.0, le=12.0,
        description="largest random pitch shift, in semitones: the frequency axis is warped as resampling the sound would warp it",
    )
    eq_db: float = Field(0.0, ge=0.0, le=40.0, description="largest gain of a random smooth equalizer curve, in dB either way")
    eq_points: int = Field(6, ge=2, le=64, description="control points of that curve across the frequency axis")
    dynamics: float = Field(
        0.0, ge=0.0, lt=1.0,
        description="largest random compression or expansion of each clip's loudness over time: a frame d dB below the "
        "clip's loudest moves up to dynamics * d toward it (or away); attacks and decays change shape, each frame's spectrum does not",
    )
    freeze: float = Field(
        0.0, ge=0.0, le=1.0,
        description="largest share by which each frame after a note's loudest frame takes that frame's spectral shape, keeping its own "
        "loudness: the static sustain of a small sample set's looped samples",
    )
    mixstyle: float = Field(0.0, ge=0.0, le=1.0, description="Freq-MixStyle: probability that a batch gets blended per-bin statistics")
    mixstyle_alpha: float = Field(0.3, gt=0.0, le=10.0, description="Freq-MixStyle's Beta(a, a) parameter a")
    tta: int = Field(0, ge=0, le=64, description="test-time augmentation: augmented views averaged with the original when evaluating")
