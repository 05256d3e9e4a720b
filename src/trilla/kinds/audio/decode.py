"""Decoding one sound file into the mono waveform the store keeps, at the run's sample rate.

libsndfile (soundfile) reads wav, flac, ogg and mp3 quickly; anything else (m4a, aac, opus in mp4,
wma...) goes through FFmpeg's decoders via PyAV. Resampling is soxr's, the resampler librosa uses.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from trilla.errors import Unreadable

SUFFIXES = {".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".m4a", ".aac", ".aif", ".aiff", ".wma", ".webm"}


class AudioError(Unreadable):
    """The file is not a readable sound (unknown format, truncated, corrupt, silent container)."""


def load(source: str | Path | bytes, sample_rate: int, max_samples: int | None = None, start: float = 0.0) -> np.ndarray:
    """Mono float32 samples in [-1, 1] at `sample_rate`, from a path or the bytes of a sound file; from
    `start` seconds on, and with `max_samples`, at most that many: only that part of the file is decoded
    (a clip of a ten-hour recording costs the clip).

    Decoded block by block, each block mixed to mono and resampled as it comes (soxr's stream gives the
    same samples as resampling the whole at once), so an hour of 44.1 kHz stereo never sits in memory
    as 1.2 GB of float32 before it is mixed down. A part is decoded from 100 ms before `start`, which the
    resampler's filter needs to see, and those samples are dropped."""
    try:
        with sf.SoundFile(_opened(source)) as handle:
            return _read_blocks(handle, sample_rate, max_samples, start)
    except (sf.LibsndfileError, RuntimeError, TypeError):
        return _load_ffmpeg(_opened(source), sample_rate, max_samples, start)
    except OSError as err:
        raise AudioError(f"cannot read file: {err.strerror or err}") from err


def _needed(rate: int, sample_rate: int, max_samples: int | None) -> int | None:
    """Input frames that give `max_samples` output samples exactly as the whole file would: 100 ms more
    than the ratio says, for the resampler's filter to see past the cut."""
    return None if max_samples is None else int(np.ceil(max_samples * rate / sample_rate)) + rate // 10


class _Mixer:
    """Blocks of (frames, channels) at `rate` -> one mono float32 array at `sample_rate`, resampled as
    a stream, stopping after `max_samples`."""

    def __init__(self, rate: int, sample_rate: int, max_samples: int | None):
        self.max_samples, self.parts = max_samples, []
        self.stream = soxr.ResampleStream(rate, sample_rate, 1, dtype="float32") if rate != sample_rate else None

    def add(self, block: np.ndarray) -> None:
        mono = np.asarray(block, dtype=np.float32)
        mono = mono.mean(axis=1) if mono.ndim == 2 else mono
        finite(mono)
        self.parts.append(self.stream.resample_chunk(mono) if self.stream is not None else mono)

    def samples(self) -> np.ndarray:
        if self.stream is not None:
            self.parts.append(self.stream.resample_chunk(np.zeros(0, dtype=np.float32), last=True))
        samples = np.concatenate(self.parts) if self.parts else np.zeros(0, dtype=np.float32)
        if not len(samples):
            raise AudioError("no audio samples in the file")
        if self.max_samples is not None:
            samples = samples[: self.max_samples]
        return np.clip(samples, -1.0, 1.0, out=samples)


def finite(samples: np.ndarray) -> None:
    """A float file can hold NaN or infinity (written from a computation that failed): no sound, and
    clipping would turn it into silence or a full-scale square that trains as if it were one."""
    if not np.isfinite(samples).all():
        bad = int((~np.isfinite(samples)).sum())
        raise AudioError(f"{bad} samples are NaN or infinite: the file holds no sound there (rewrite it from its source)")


def _preroll(rate: int, sample_rate: int, start: float) -> tuple[int, int, int]:
    """(input frames to skip, input frames decoded before `start`, output samples they become)."""
    first = int(round(start * rate))
    pre = min(first, rate // 10)
    return first - pre, pre, int(round(start * sample_rate)) - int(round((first - pre) * sample_rate / rate))


def _read_blocks(handle: sf.SoundFile, sample_rate: int, max_samples: int | None, start: float = 0.0) -> np.ndarray:
    skip, pre, drop = _preroll(handle.samplerate, sample_rate, start)
    if skip:
        handle.seek(min(skip, handle.frames))
    mixer = _Mixer(handle.samplerate, sample_rate, None if max_samples is None else max_samples + drop)
    frames = _needed(handle.samplerate, sample_rate, max_samples)
    for block in handle.blocks(blocksize=1 << 16, dtype="float32", always_2d=True, frames=-1 if frames is None else frames + pre):
        mixer.add(block)
    return _after(mixer.samples(), drop)


def _after(samples: np.ndarray, drop: int) -> np.ndarray:
    if drop >= len(samples):
        raise AudioError("no audio samples in the file after the start asked for")
    return samples[drop:]


def conform(samples: np.ndarray, rate: int, sample_rate: int) -> np.ndarray:
    """Decoded samples (samples,) or (samples, channels) at `rate` -> mono float32 in [-1, 1] at `sample_rate`."""
    samples = np.asarray(samples, dtype=np.float32)
    if samples.ndim == 2:
        samples = samples.mean(axis=1)
    if samples.ndim != 1:
        raise AudioError(f"decoded audio must be (samples,) or (samples, channels), not shape {samples.shape}")
    if not len(samples):
        raise AudioError("no audio samples in the file")
    finite(samples)
    if rate != sample_rate:
        samples = soxr.resample(samples, rate, sample_rate)
    return np.clip(samples, -1.0, 1.0).astype(np.float32, copy=False)


def _opened(source: str | Path | bytes):
    """What soundfile and PyAV open: a path as text, bytes as a fresh in-memory file."""
    return io.BytesIO(source) if isinstance(source, bytes) else str(source)


def duration(source: str | Path | bytes) -> float:
    """Length in seconds of a path or the bytes of a sound file, from the header where the format has one."""
    try:
        with sf.SoundFile(_opened(source)) as handle:
            return handle.frames / handle.samplerate
    except (sf.LibsndfileError, RuntimeError, TypeError):
        return _duration_ffmpeg(_opened(source))
    except OSError as err:
        raise AudioError(f"cannot read file: {err.strerror or err}") from err


def _duration_ffmpeg(path) -> float:
    """The container's duration, or (when it has none) the length of the decoded samples."""
    import av

    try:
        with av.open(path if hasattr(path, "read") else str(path)) as container:
            if container.duration:
                return container.duration / av.time_base
            if container.streams.audio:
                rate = container.streams.audio[0].rate
                return sum(frame.samples for frame in container.decode(audio=0)) / rate
    except (av.error.FFmpegError, OSError, UnicodeDecodeError) as err:
        raise AudioError(f"not a readable sound file ({_ffmpeg_reason(err)})") from err
    raise AudioError("the file has no audio stream")


def fit(samples: np.ndarray, length: int) -> np.ndarray:
    """Crop (keeping the start) or pad with silence to exactly `length` samples."""
    if len(samples) >= length:
        return samples[:length]
    return np.pad(samples, (0, length - len(samples)))


def _load_ffmpeg(source, sample_rate: int, max_samples: int | None, start: float = 0.0) -> np.ndarray:
    """FFmpeg's decoders through PyAV, for a path or an open binary file, frame by frame; frames before
    `start` are decoded and dropped (a seek in a compressed stream lands on a frame boundary near it)."""
    import av

    try:
        with av.open(source if hasattr(source, "read") else str(source)) as container:
            if not container.streams.audio:
                raise AudioError("the file has no audio stream")
            stream = container.streams.audio[0]
            rate = stream.rate or stream.codec_context.sample_rate
            resampler = av.AudioResampler(format="flt", layout="mono", rate=rate)
            skip, pre, drop = _preroll(rate, sample_rate, start)
            mixer = _Mixer(rate, sample_rate, None if max_samples is None else max_samples + drop)
            needed, read = _needed(rate, sample_rate, max_samples), 0

            def add(chunk: np.ndarray) -> None:
                nonlocal skip, read
                cut = min(skip, len(chunk))
                skip -= cut
                if len(chunk) > cut:
                    mixer.add(chunk[cut:])
                    read += len(chunk) - cut

            for frame in container.decode(stream):
                for out in resampler.resample(frame):
                    add(out.to_ndarray().reshape(-1))
                if needed is not None and read >= needed + pre:
                    break
            else:
                for out in resampler.resample(None):
                    add(out.to_ndarray().reshape(-1))
    except (av.error.FFmpegError, OSError, UnicodeDecodeError, ValueError) as err:
        raise AudioError(f"not a readable sound file ({_ffmpeg_reason(err)})") from err
    return _after(mixer.samples(), drop)


def _ffmpeg_reason(err: Exception) -> str:
    """FFmpeg's words for why it could not read a file, without its error number and the file name."""
    return getattr(err, "strerror", None) or str(err)
