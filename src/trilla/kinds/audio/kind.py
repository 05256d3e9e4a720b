"""Sound: decoded to mono at the run's sample rate, cropped or padded, rounded to 16-bit PCM as the
store keeps it, then turned into a float16 (log) spectrogram as the cache keeps it.

A clip predicted from a file, from bytes or from decoded samples takes the same steps in the same order
(`AudioCodec.pcm`, `AudioCodec.waves`, `spectrogram.features`), so a run predicts its own test clips
exactly as it scored them at training time. Clips of their own length (`seconds: null`) are padded with
silence to the length the run's store had, as in training, where the frames past a clip's end are the
spectrogram of that silence and a convolution near the end sees them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field

from trilla.data.dataset import Rows
from trilla.data.store import Decoded
from trilla.errors import TrillaError, Unreadable
from trilla.kinds.audio import decode as audio
from trilla.kinds.audio.augment_config import AudioAugmentConfig
from trilla.kinds.registry import WINDOWS, InputKind, Preprocessor, read_item, register_input
from trilla.schema import InputSection

PCM = 32767.0
log = logging.getLogger("trilla")
OUTLIER = 4  # with seconds: null, a clip over 4 times the median length (and over 30 s) is left out


class AudioInput(InputSection):
    """Sound files decoded to mono at `sample_rate`, then a (log) spectrogram computed in torch and cached.

    The music study's setting is `features: spectrogram, sample_rate: 44100, n_fft: 256, hop: 128,
    every: 2, seconds: 10` (matplotlib specgram's defaults, every other frame: 129 bins x 1722 frames).
    """

    type: Literal["audio"]
    features: Literal["logmel", "spectrogram"] = "logmel"
    sample_rate: int = Field(16000, ge=1000, le=384000)
    n_fft: int = Field(512, ge=16)
    hop: int = Field(160, ge=1)
    n_mels: int = Field(64, ge=1, description="logmel: mel bands")
    fmin: float = Field(0.0, ge=0.0)
    fmax: float | None = Field(None, gt=0.0, description="logmel: highest frequency; default: half the sample rate")
    every: int = Field(1, ge=1, description="keep every Nth frame (the music study kept every other one)")
    seconds: float | None = Field(
        None, gt=0.0, description="crop or pad every clip to this length; null = keep each clip's length (padded in batches, with masks)"
    )

    def bins(self) -> int:
        return self.n_mels if self.features == "logmel" else self.n_fft // 2 + 1

    def frames(self, samples: int) -> int:
        """Frames kept from a clip of `samples` samples (no centring: a frame starts every hop)."""
        full = 1 + max(samples - self.n_fft, 0) // self.hop
        return -(-full // self.every)


@dataclass(frozen=True)
class AudioCodec:
    """Sounds: mono at `sample_rate`; `seconds: None` pads every clip to the longest one instead."""

    sample_rate: int
    seconds: float | None = None
    samples: int = 0
    kind = "audio"
    dtype = np.int16

    def resolve(self, paths: list[Path]) -> tuple[AudioCodec, dict[int, str]]:
        if self.seconds is not None:
            return AudioCodec(self.sample_rate, self.seconds, int(round(self.seconds * self.sample_rate))), {}
        lengths, errors = {}, {}
        for i, path in enumerate(paths):
            try:
                lengths[i] = int(np.ceil(audio.duration(path) * self.sample_rate))
            except audio.AudioError as err:
                errors[i] = str(err)
        errors.update(self._outliers(lengths))
        kept = [n for i, n in lengths.items() if i not in errors]
        return AudioCodec(self.sample_rate, None, max([1, *kept])), errors

    def _outliers(self, lengths: dict[int, int]) -> dict[int, str]:
        """Clips so much longer than the rest that padding every clip to them would blow the store up
        (one hour-long file among 2-s clips: 3 GB for 3 MB of sound); left out, named, with the fix."""
        if len(lengths) < 3:
            return {}
        typical = float(np.median(list(lengths.values())))
        limit = max(OUTLIER * typical, 30 * self.sample_rate)
        too_long = {i: n for i, n in lengths.items() if n > limit}
        if not too_long:
            return {}
        longest = max(too_long.values())
        padded_gb = len(lengths) * longest * np.dtype(self.dtype).itemsize / 1e9
        return {i: (f"{n / self.sample_rate:.0f} s long, while half of the clips are under {typical / self.sample_rate:.1f} s: "
                    f"padding every clip to it would make the store {padded_gb:.1f} GB. Left out; set input.seconds "
                    f"(e.g. {max(1, round(typical / self.sample_rate))}) to crop every clip, or cut it into clips with trilla harvest clips")
                for i, n in too_long.items()}

    def row_shape(self) -> tuple[int, ...]:
        return (self.samples,)

    def decode(self, data: bytes) -> Decoded:
        """The clip as a row; with fixed `seconds` only its start is decoded, and its length is the
        whole sound's (from the header), so evaluation knows which clips hold more than one window."""
        if self.seconds is None:
            return Decoded(*self.pcm(audio.load(data, self.sample_rate), self.samples))
        row, _ = self.pcm(audio.load(data, self.sample_rate, self.samples), self.samples)
        return Decoded(row, int(np.ceil(audio.duration(data) * self.sample_rate)))

    @staticmethod
    def pcm(samples: np.ndarray, length: int) -> tuple[np.ndarray, int]:
        """Samples cropped or padded to `length` and rounded to 16-bit PCM, with the content's length."""
        return np.round(audio.fit(samples, length) * PCM).astype(np.int16), min(len(samples), length)

    @staticmethod
    def waves(rows: np.ndarray) -> np.ndarray:
        """PCM rows as float32 in [-1, 1]."""
        return np.asarray(rows, dtype=np.float32) / PCM


@dataclass
class SpectrogramRows(Rows):
    """Cached spectrograms (float16 rows, frames, bins), with each clip's frames of sound when lengths
    vary, or when a sequence model reads fixed windows (`masked`: a clip shorter than the window ends in
    silence, which the model's last state must not be made of)."""

    features: np.ndarray
    frames: np.ndarray | None
    masked: bool = False
    kind = "audio"

    def inputs(self, rows: np.ndarray) -> dict[str, np.ndarray]:
        out = {"spectrogram": np.asarray(self.features[rows], dtype=np.float32)}
        if self.frames is not None:
            out["lengths"] = self.frames[rows]
        return out

    def spec(self) -> dict:
        fixed = self.frames is None or self.masked
        return {"kind": "audio", "bins": int(self.features.shape[2]), "frames": int(self.features.shape[1]) if fixed else None,
                **({"masked": True} if self.masked else {})}


class AudioPreprocessor(Preprocessor):
    def __init__(self, cfg: AudioInput, codec: AudioCodec, pad_to: int, masked: bool = False):
        from trilla.kinds.audio.spectrogram import Spectrogram

        self.cfg, self.codec, self.pad_to, self.masked = cfg, codec, pad_to, masked
        self.transform = Spectrogram(cfg)
        self.silence = self._features(np.zeros(cfg.n_fft, dtype=np.float32))[0, 0]

    def blank(self) -> tuple[np.ndarray, int]:
        return np.zeros(int(self.cfg.sample_rate * (self.cfg.seconds or 1.0)), np.float32), self.cfg.sample_rate

    def _features(self, waves: np.ndarray) -> np.ndarray:
        """(samples,) or (windows, samples) float waves -> (1 or windows, frames, bins) features."""
        import torch

        from trilla.kinds.audio.spectrogram import features

        return features(self.transform, torch.from_numpy(np.atleast_2d(waves))).astype(np.float32)

    def prepare(self, item: Any, hop: float | None = None) -> dict[str, np.ndarray]:
        """A path, bytes or binary file of a sound, or decoded samples as a (samples, sample_rate) pair.

        A sound longer than a run with fixed `seconds` was trained on is read in windows of that length
        every `hop` seconds (default: half a window), the last one ending with the sound, so nothing of it
        is left unheard; runs on clips of their own length read the sound whole."""
        rate = self.cfg.sample_rate
        if isinstance(item, tuple):
            if len(item) != 2 or not isinstance(item[0], np.ndarray):
                raise Unreadable("decoded audio is a (samples, sample_rate) pair, samples as a numpy array")
            samples = audio.conform(item[0], int(item[1]), rate)
        elif isinstance(item, np.ndarray):
            raise Unreadable("decoded audio needs its sample rate: give (samples, sample_rate)")
        else:
            samples = audio.load(read_item(item), rate)
        if self.cfg.seconds is None:
            row, length = self.codec.pcm(samples, max(len(samples), self.pad_to))
            frames = np.asarray([max(1, self.cfg.frames(length))], dtype=np.int64)
            return {"spectrogram": self._features(self.codec.waves(row)), "lengths": frames}
        window = self.codec.samples
        starts = window_starts(len(samples), window, round((hop if hop is not None else self.cfg.seconds / 2) * rate))
        rows = np.stack([self.codec.pcm(samples[start : start + window], window)[0] for start in starts])
        out = {"spectrogram": self._features(self.codec.waves(rows))}
        if self.masked:  # as in training: where each window's sound ends
            out["lengths"] = np.asarray([max(1, self.cfg.frames(min(len(samples) - start, window))) for start in starts], dtype=np.int64)
            out["lengths"] = np.minimum(out["lengths"], out["spectrogram"].shape[1])
        if len(starts) > 1:
            out[WINDOWS] = np.asarray([(start / rate, min(start + window, len(samples)) / rate) for start in starts])
        return out

    def collate(self, prepared: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
        """Clips of their own length padded to the batch's longest with the spectrogram of silence."""
        frames = max(p["spectrogram"].shape[1] for p in prepared)
        padded = [
            np.concatenate([p["spectrogram"], np.broadcast_to(self.silence, (len(p["spectrogram"]), frames - p["spectrogram"].shape[1], len(self.silence)))], axis=1)
            for p in prepared
        ]
        return {"spectrogram": np.concatenate(padded), **({"lengths": np.concatenate([p["lengths"] for p in prepared])} if "lengths" in prepared[0] else {})}


def _say_lengths(store, cfg: AudioInput) -> None:
    """Once per data set: most clips far shorter than `input.seconds` (each padded with silence, which a
    model can learn from instead of the music: the music study's 4-s clips in 10-s windows scored chance
    on arousal, 0.887 at 4 s), or far longer (only their start trained on)."""
    if cfg.seconds is None:
        return
    lengths = store.lengths[store.index["ok"].to_numpy()] / cfg.sample_rate
    if not len(lengths):
        return
    median, short, long = float(np.median(lengths)), lengths < 0.75 * cfg.seconds, lengths > 1.5 * cfg.seconds
    if short.mean() > 0.5:
        log.warning("%d of %d clips are shorter than input.seconds %g (median %.1f s): each is padded with about %.1f s of silence. "
                    "Set input.seconds: %g to read them whole", short.sum(), len(lengths), cfg.seconds, median, cfg.seconds - median,
                    round(median, 1))
    elif long.mean() > 0.5:
        log.warning("%d of %d clips are longer than input.seconds %g (median %.1f s): training reads only their first %g s "
                    "(prediction reads windows over the whole sound). Set input.seconds: %g to train on more of each",
                    long.sum(), len(lengths), cfg.seconds, median, cfg.seconds, round(median, 1))


def window_starts(length: int, window: int, hop: int) -> list[int]:
    """Where windows of `window` samples start, every `hop`, over a sound of `length` samples; the last
    one ends with the sound (a sound no longer than one window is one window)."""
    if hop < 1:
        raise Unreadable(f"the hop between windows must be positive, not {hop} samples")
    if length <= window:
        return [0]
    starts = list(range(0, length - window + 1, hop))
    if starts[-1] + window < length:
        starts.append(length - window)
    return starts


@register_input
class AudioKind(InputKind):
    name = "audio"
    schema = AudioInput
    augment_schema = AudioAugmentConfig
    key = "spectrogram"
    default_model = "panns_cnn"
    # the default's own step count at 300 clips per family of eight (60 epochs of 64 batches); with 100 per
    # family its 60 epochs are a third of that, and too few steps is what cost the instruments recipe most
    # on small data (benchmarks/results/audio_sizes.md)
    default_min_steps = 3840
    suffixes = frozenset(audio.SUFFIXES)
    noun = "sound file"

    def codec(self, config, spec: dict | None = None) -> AudioCodec:
        return AudioCodec(config.input.sample_rate, config.input.seconds)

    def longer_than_input(self, data, positions: np.ndarray) -> np.ndarray:
        codec = data.store.codec
        if codec.seconds is None:
            return np.zeros(len(positions), dtype=bool)
        return data.store.lengths[data.rows[positions]] > codec.samples

    def rows(self, store, config, device: str, progress: bool) -> SpectrogramRows:
        from trilla.kinds.audio.spectrogram import cached_spectrograms, frame_counts

        features = cached_spectrograms(store, config.input, device, progress=progress)
        _say_lengths(store, config.input)
        if config.input.seconds is None:
            return SpectrogramRows(features, frame_counts(store, config.input))
        if getattr(config.model, "sequence", False):
            return SpectrogramRows(features, np.minimum(frame_counts(store, config.input), features.shape[1]), masked=True)
        return SpectrogramRows(features, None)

    def preprocessor(self, config, spec: dict, record: dict) -> AudioPreprocessor:
        codec = self.codec(config).resolve([])[0]
        return AudioPreprocessor(config.input, codec, int(record.get("clip_samples") or 0), masked=bool(spec.get("masked")))

    def augmentation(self, augment, config, spec: dict):
        from trilla.kinds.audio.augment import SpectrogramAugment

        return SpectrogramAugment(augment, config.input)

    def explain_view(self, inputs: dict[str, np.ndarray], heat: np.ndarray):
        """The clip's spectrogram as a picture, time on x and frequency rising on y (padding frames cut
        off), with the heat turned the same way."""
        spectrogram = inputs["spectrogram"][0]
        frames = int(inputs["lengths"][0]) if "lengths" in inputs else len(spectrogram)
        shown = spectrogram[:frames].T[::-1]
        low, high = float(shown.min()), float(shown.max())
        picture = np.round((shown - low) / max(high - low, 1e-6) * 255).astype(np.uint8)[..., None]
        return picture, heat[:frames].T[::-1], ("time (frames)", "frequency (bins, low at the bottom)")

    def normalization_values(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        """Every frame that holds sound (padding frames left out), one column per frequency bin."""
        spec, lengths = inputs["spectrogram"], inputs.get("lengths")
        values = spec.reshape(-1, spec.shape[2]) if lengths is None else np.concatenate([s[:n] for s, n in zip(spec, lengths)])
        return values.astype(np.float64)

    def describe(self, config, info: dict) -> str:
        cfg, spec = config.input, info["input"]
        length = f"{cfg.seconds} s clips" if cfg.seconds else "clips of their own length (masked)"
        return (f"{info['samples']} usable sound file{'s' if info['samples'] != 1 else ''} at {cfg.sample_rate} Hz, {length}; {cfg.features} "
                f"(n_fft {cfg.n_fft}, hop {cfg.hop}, every {cfg.every}): {spec['bins']} bins x {spec['frames'] or 'variable'} frames")

    def record(self, data) -> dict:
        return {"clip_samples": int(data.store.codec.samples)}

    def example_input(self, spec: dict, batch: int = 2):
        import torch

        if spec.get("frames") is None:
            raise TrillaError("export takes runs on fixed-shape inputs; this run reads clips of their own length (input.seconds: null)")
        return torch.full((batch, spec["frames"], spec["bins"]), -50.0)

    def export_sidecar(self, spec: dict) -> dict:
        return {"layout": "(batch, frames, bins): a log-mel spectrogram in decibels as trilla computes it from the run's input: section",
                "frames": spec["frames"], "bins": spec["bins"]}
