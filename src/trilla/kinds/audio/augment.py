"""Augmentation of batches of (log) spectrograms, on the cached features, before standardization.

Written by hand: torchaudio's SpecAugment transforms would bring torchaudio for three small tensor
operations, and the gain, freeze, dynamics, frequency shift, pitch shift and equalizer here are offsets,
shifts and interpolations of decibel maps. Working on the cached features keeps them cached: resampling the
waveforms instead would recompute every spectrogram every epoch.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch

from trilla.errors import TrillaError
from trilla.kinds.audio.augment_config import AudioAugmentConfig
from trilla.kinds.audio.spectrogram import bin_frequencies

if TYPE_CHECKING:
    from trilla.kinds.audio.kind import AudioInput


class SpectrogramAugment:
    """decibels (B, frames, bins) -> the same shape, each clip changed independently."""

    def __init__(self, cfg: AudioAugmentConfig, features: AudioInput | None = None):
        """`features`: how the spectrograms were computed, which a pitch shift needs to know where each bin lies."""
        self.cfg = cfg
        self.frequencies = None
        if cfg.pitch_shift:
            if features is None:
                raise TrillaError("augment.pitch_shift needs spectrograms of sound (an input: section of type audio)")
            self.frequencies = torch.as_tensor(bin_frequencies(features), dtype=torch.float32)

    def __call__(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        cfg, (batch, frames, bins) = self.cfg, x.shape
        x = x.clone()
        if cfg.gain_db:
            x += (torch.rand(batch, 1, 1) * 2 - 1) * cfg.gain_db
        if cfg.freeze:
            x = _freeze(x, torch.rand(batch) * cfg.freeze)
        if cfg.dynamics:
            x = _dynamics(x, (torch.rand(batch) * 2 - 1) * cfg.dynamics)
        if cfg.shift and lengths is None:
            steps = (torch.rand(batch) * cfg.shift * frames).long()
            x = torch.stack([torch.roll(clip, int(s), dims=0) for clip, s in zip(x, steps)])
        if cfg.eq_db:
            x += _equalizer(batch, bins, cfg.eq_db, cfg.eq_points)
        if cfg.freq_shift:
            x = torch.stack([_shift_bins(clip, int(s)) for clip, s in zip(x, torch.randint(-cfg.freq_shift, cfg.freq_shift + 1, (batch,)))])
        if cfg.pitch_shift:
            x = _pitch_shift(x, self.frequencies, (torch.rand(batch) * 2 - 1) * cfg.pitch_shift)
        if cfg.mixstyle and float(torch.rand(())) < cfg.mixstyle:
            x = _freq_mixstyle(x, lengths, cfg.mixstyle_alpha)
        fill = x.mean(dim=(1, 2), keepdim=True)
        valid = lengths if lengths is not None else torch.full((batch,), frames)
        for _ in range(cfg.time_masks):
            x = _mask(x, fill, valid, int(cfg.time_mask * frames), axis=1)
        for _ in range(cfg.freq_masks):
            x = _mask(x, fill, torch.full((batch,), bins), cfg.freq_mask, axis=2)
        return x


def _equalizer(batch: int, bins: int, gain_db: float, points: int) -> torch.Tensor:
    """(B, 1, bins) dB offsets: gains drawn at evenly spaced points, linear in between."""
    gains = (torch.rand(batch, 1, points) * 2 - 1) * gain_db
    return torch.nn.functional.interpolate(gains, size=bins, mode="linear", align_corners=True)


BACKGROUND_DB = 40.0
"""How far below a clip's loudest frame its background begins: quieter frames move as if they were this
far down, so silence is raised or lowered with the quiet ends of notes instead of as far as its own
depth (often 100 dB) would say."""


ONSET_DB = 4.0
"""The mean rise in dB per bin from one frame to the next that starts a note: a plucked or struck note
rises 10-35, a legato change of pitch 3-8, vibrato and bowing noise under 2 (FluidR3 and TimGM6mb
renders, 16 kHz log-mel, bins ONSET_RANGE_DB below the clip's loudest bin counted as that low)."""
ONSET_RANGE_DB = 80.0
"""Without this floor a bin rising from -100 to -60 dB, inaudible, would count as much as a new harmonic."""


def _loudness(x: torch.Tensor) -> torch.Tensor:
    """(B, frames, 1): each frame's total power in dB."""
    nepers = math.log(10) / 10  # decibels of power -> natural log, so logsumexp sums the bins' power
    return torch.logsumexp(x * nepers, dim=2, keepdim=True) / nepers


def _freeze(x: torch.Tensor, amount: torch.Tensor) -> torch.Tensor:
    """After each note's loudest frame, every frame's spectral shape (the frame less its loudness) moves
    `amount` of the way toward that frame's shape, while its loudness stays. A small sample set loops a
    few tens of milliseconds of each instrument, so its notes keep one spectrum while they fade
    (TimGM6mb's guitars' spectra change two thirds as fast as FluidR3's, as slowly as FluidR3's basses,
    which is what a model that never heard that calls them). Notes begin where the spectrum rises by
    ONSET_DB (a local peak of the rise). The attack before a note's peak and the background,
    BACKGROUND_DB below the clip's loudest frame, are left alone; so is the padding of shorter clips,
    which is silence."""
    batch, frames, _ = x.shape
    loudness = _loudness(x)[..., 0]
    audible = x.clamp_min(x.amax(dim=(1, 2), keepdim=True) - ONSET_RANGE_DB)
    rise = (audible[:, 1:] - audible[:, :-1]).clamp_min(0).mean(dim=2)
    neighbours = torch.nn.functional.pad(rise, (1, 1), value=-torch.inf)
    peak_rise = (rise >= neighbours[:, :-2]) & (rise >= neighbours[:, 2:])
    onset = torch.cat([torch.zeros(batch, 1, dtype=torch.bool), (rise > ONSET_DB) & peak_rise], dim=1)
    note = onset.long().cumsum(dim=1)  # (B, frames): which note each frame belongs to
    where = torch.arange(frames).expand(batch, -1)
    loudest = torch.full((batch, frames), -torch.inf, dtype=loudness.dtype).scatter_reduce(1, note, loudness, "amax")
    is_peak = loudness == torch.gather(loudest, 1, note)
    peak_at = torch.full((batch, frames), frames).scatter_reduce(1, note, torch.where(is_peak, where, frames), "amin")
    source = torch.gather(peak_at, 1, note)  # (B, frames): the frame whose shape each frame takes
    shape = x - loudness[..., None]
    held = torch.gather(shape, 1, source[..., None].expand_as(x))
    sounding = loudness > loudness.amax(dim=1, keepdim=True) - BACKGROUND_DB
    change = (where > source) & sounding
    blended = shape + (amount[:, None] * change)[..., None] * (held - shape)
    return blended - _loudness(blended) + loudness[..., None]  # a blend of two shapes is a little quieter than either


def _dynamics(x: torch.Tensor, amount: torch.Tensor) -> torch.Tensor:
    """Each frame moved by amount * (its distance in dB below the clip's loudest frame): a compressor
    for amount > 0 (soft attacks and decays come up toward the peak), an expander for amount < 0. The
    whole frame moves, so its spectrum keeps its shape; values stay above the clip's own floor."""
    loudness = _loudness(x)
    peak = loudness.amax(dim=1, keepdim=True)
    below = (peak - loudness).clamp_max(BACKGROUND_DB)
    floor = x.amin(dim=(1, 2), keepdim=True)
    return torch.maximum(x + amount[:, None, None] * below, floor)


def _freq_mixstyle(x: torch.Tensor, lengths: torch.Tensor | None, alpha: float) -> torch.Tensor:
    """Each clip standardized per frequency bin over its frames, then given a blend of its own and a
    random partner's per-bin mean and spread: the colouring changes, the events stay."""
    batch, frames, _ = x.shape
    valid = torch.ones(batch, frames, 1) if lengths is None else (torch.arange(frames)[None, :] < lengths[:, None]).float()[..., None]
    count = valid.sum(dim=1, keepdim=True).clamp_min(2)
    mean = (x * valid).sum(dim=1, keepdim=True) / count
    spread = (((x - mean) * valid).square().sum(dim=1, keepdim=True) / (count - 1) + 1e-6).sqrt()
    share = torch.distributions.Beta(alpha, alpha).sample((batch, 1, 1))
    partner = torch.randperm(batch)
    mixed = (x - mean) / spread * (share * spread + (1 - share) * spread[partner]) + share * mean + (1 - share) * mean[partner]
    return torch.where(valid.bool(), mixed, x)


def _pitch_shift(x: torch.Tensor, frequencies: torch.Tensor, semitones: torch.Tensor) -> torch.Tensor:
    """Each clip's bins read at frequency f / 2**(s/12), interpolated between the two nearest bins: what
    was at f is now at f * 2**(s/12). Beyond the lowest or highest bin the edge bin repeats."""
    source = frequencies[None, :] / torch.pow(2.0, semitones / 12.0)[:, None]  # (B, bins)
    upper = torch.searchsorted(frequencies, source).clamp(1, len(frequencies) - 1)
    lower = upper - 1
    weight = ((source - frequencies[lower]) / (frequencies[upper] - frequencies[lower])).clamp(0.0, 1.0)
    frames = x.shape[1]
    below = torch.gather(x, 2, lower[:, None, :].expand(-1, frames, -1))
    above = torch.gather(x, 2, upper[:, None, :].expand(-1, frames, -1))
    return below + (above - below) * weight[:, None, :].to(x.dtype)


def _shift_bins(clip: torch.Tensor, steps: int) -> torch.Tensor:
    """Move the spectrum up (or down) by `steps` bins, repeating the edge bin into the gap."""
    if steps > 0:
        return torch.cat([clip[:, :1].expand(-1, steps), clip[:, :-steps]], dim=1)
    if steps < 0:
        return torch.cat([clip[:, -steps:], clip[:, -1:].expand(-1, -steps)], dim=1)
    return clip


def _mask(x: torch.Tensor, fill: torch.Tensor, extent: torch.Tensor, widest: int, axis: int) -> torch.Tensor:
    """One band per clip, of random width up to `widest`, at a random place within `extent`."""
    if widest < 1:
        return x
    size = x.shape[axis]
    width = torch.randint(0, widest + 1, (len(x),))
    start = (torch.rand(len(x)) * (extent - width).clamp_min(0)).long()
    where = torch.arange(size)[None, :]
    band = (where >= start[:, None]) & (where < (start + width)[:, None])
    band = band[:, :, None] if axis == 1 else band[:, None, :]
    return torch.where(band, fill, x)
