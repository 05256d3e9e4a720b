"""Spectrogram features computed in torch, batched, and cached beside the store's waveforms.

`torch.stft` on cache-sized batches of clips is several times faster per clip than matplotlib's `specgram`, the
music study's method (benchmarks/audio_features.py), and runs on the GPU when there is one. The mel
filter bank is librosa's. Frames are not centred, so `n_fft: 256, hop: 128` gives specgram's frames.
Values are decibels; the task standardizes each frequency bin with the training set's statistics.
Cached as float16 (N, frames, bins) in `<store>/spectrograms/<key>.npy`: every epoch reads them.
"""

from __future__ import annotations

import hashlib
import json
import logging
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from trilla.atomic import replacing, reserve

if TYPE_CHECKING:
    from trilla.data.store import Store
    from trilla.kinds.audio.kind import AudioInput

log = logging.getLogger("trilla")


class Spectrogram(nn.Module):
    """float waveforms (B, samples) -> decibels (B, frames, bins), as `AudioInput` says."""

    def __init__(self, cfg: AudioInput):
        super().__init__()
        self.cfg = cfg
        self.register_buffer("window", torch.hann_window(cfg.n_fft, periodic=False), persistent=False)  # specgram's np.hanning
        if cfg.features == "logmel":
            import librosa

            mel = librosa.filters.mel(sr=cfg.sample_rate, n_fft=cfg.n_fft, n_mels=cfg.n_mels, fmin=cfg.fmin, fmax=cfg.fmax)
            self.register_buffer("mel", torch.from_numpy(mel).T.contiguous(), persistent=False)
        else:
            self.mel = None

    def forward(self, waves: torch.Tensor) -> torch.Tensor:
        cfg = self.cfg
        if waves.shape[-1] < cfg.n_fft:
            waves = nn.functional.pad(waves, (0, cfg.n_fft - waves.shape[-1]))
        # Keeping every Nth frame is a hop N times longer: the frames dropped are never computed.
        spec = torch.stft(waves, cfg.n_fft, cfg.hop * cfg.every, window=self.window, center=False, return_complex=True)
        power = torch.view_as_real(spec).square().sum(-1).transpose(1, 2)
        if self.mel is not None:
            power = power @ self.mel
        return 10.0 * torch.log10(power.clamp_min(1e-10))


def bin_frequencies(cfg: AudioInput) -> np.ndarray:
    """The centre frequency of each bin in Hz, increasing: mel bands peak where librosa's filters do."""
    if cfg.features == "logmel":
        import librosa

        return librosa.mel_frequencies(cfg.n_mels + 2, fmin=cfg.fmin, fmax=cfg.fmax or cfg.sample_rate / 2)[1:-1]
    return np.linspace(0.0, cfg.sample_rate / 2, cfg.bins())


def feature_key(cfg: AudioInput) -> str:
    settings = cfg.model_dump(mode="json", exclude={"seconds", "sample_rate", "type"})
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]


def clips_per_batch(samples: int, device: str) -> int:
    """On a CPU, batches that stay near the cache size are faster per clip than big ones: one 10-s clip
    at 44.1 kHz runs about 3x faster alone than in a batch of 32 (benchmarks/audio_features.py).
    A GPU wants the whole batch at once."""
    budget = 1 << (24 if str(device).startswith("cuda") else 19)
    return max(1, budget // max(1, samples))


def features(transform: Spectrogram, waves: torch.Tensor) -> np.ndarray:
    """The features the model reads for float waveforms (B, samples): the decibels rounded to float16, as
    cached for training and as computed for every item predicted."""
    with torch.inference_mode():
        return transform(waves).cpu().numpy().astype(np.float16)


def cached_spectrograms(store: Store, cfg: AudioInput, device: str = "cpu", progress: bool = True) -> np.ndarray:
    """(store rows, frames, bins) float16, memory-mapped; computed now unless cached before."""
    path = store.root / "spectrograms" / f"{feature_key(cfg)}.npy"
    if path.is_file():
        log.info("reusing cached spectrograms %s", path)
        return np.load(path, mmap_mode="r")
    transform = Spectrogram(cfg).to(device)
    rows = len(store.array)
    shape = (rows, cfg.frames(store.codec.samples), cfg.bins())
    path.parent.mkdir(exist_ok=True)
    batch_size = clips_per_batch(store.codec.samples, device)
    with replacing(path) as tmp:
        out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float16, shape=shape)
        reserve(tmp, tmp.stat().st_size, f"the spectrograms of {rows} clips")
        for start in tqdm(range(0, rows, batch_size), desc="computing spectrograms", unit="batch", disable=None if progress else True):
            waves = torch.from_numpy(store.codec.waves(store.array[start : start + batch_size])).to(device)
            out[start : start + len(waves)] = features(transform, waves)
        out.flush()
        del out
    return np.load(path, mmap_mode="r")


def frame_counts(store: Store, cfg: AudioInput) -> np.ndarray:
    """Frames of each clip that hold sound rather than padding (at least 1)."""
    return np.asarray([max(1, cfg.frames(int(n))) for n in store.lengths], dtype=np.int64)
