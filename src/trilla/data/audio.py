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


SUFFIXES = {".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".m4a", ".aac", ".aif", ".aiff", ".wma", ".webm"}


class AudioError(Exception):
    """The file is not a readable sound (unknown format, truncated, corrupt, silent container)."""


def load(source: str | Path | bytes, sample_rate: int) -> np.ndarray:
    """Mono float32 samples in [-1, 1] at `sample_rate`, from a path or the bytes of a sound file."""
    try:
        samples, rate = sf.read(_opened(source), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, TypeError):
        samples, rate = _load_ffmpeg(_opened(source))
    except OSError as err:
        raise AudioError(f"cannot read file: {err.strerror or err}") from err
    return conform(samples, rate, sample_rate)


def conform(samples: np.ndarray, rate: int, sample_rate: int) -> np.ndarray:
    """Decoded samples (samples,) or (samples, channels) at `rate` -> mono float32 in [-1, 1] at `sample_rate`."""
    samples = np.asarray(samples, dtype=np.float32)
    if samples.ndim == 2:
        samples = samples.mean(axis=1)
    if samples.ndim != 1:
        raise AudioError(f"decoded audio must be (samples,) or (samples, channels), not shape {samples.shape}")
    if not len(samples):
        raise AudioError("no audio samples in the file")
    if rate != sample_rate:
        samples = soxr.resample(samples, rate, sample_rate)
    return np.clip(samples, -1.0, 1.0).astype(np.float32, copy=False)


def _opened(source: str | Path | bytes):
    """What soundfile and PyAV open: a path as text, bytes as a fresh in-memory file."""
    return io.BytesIO(source) if isinstance(source, bytes) else str(source)


def duration(path: str | Path) -> float:
    """Length in seconds, from the header where the format has one."""
    try:
        return float(sf.info(str(path)).duration)
    except (sf.LibsndfileError, RuntimeError, TypeError):
        return _duration_ffmpeg(path)


def _duration_ffmpeg(path: str | Path) -> float:
    """The container's duration, or (when it has none) the length of the decoded samples."""
    import av

    try:
        with av.open(str(path)) as container:
            if container.duration:
                return container.duration / av.time_base
    except (av.error.FFmpegError, OSError, UnicodeDecodeError) as err:
        raise AudioError(f"not a readable sound file: {err}") from err
    samples, rate = _load_ffmpeg(path)
    return len(samples) / rate


def fit(samples: np.ndarray, length: int) -> np.ndarray:
    """Crop (keeping the start) or pad with silence to exactly `length` samples."""
    if len(samples) >= length:
        return samples[:length]
    return np.pad(samples, (0, length - len(samples)))


def _load_ffmpeg(source) -> tuple[np.ndarray, int]:
    """FFmpeg's decoders through PyAV, for a path or an open binary file."""
    import av

    try:
        with av.open(source if hasattr(source, "read") else str(source)) as container:
            if not container.streams.audio:
                raise AudioError("the file has no audio stream")
            stream = container.streams.audio[0]
            rate = stream.rate or stream.codec_context.sample_rate
            resampler = av.AudioResampler(format="flt", layout="mono", rate=rate)
            chunks = [
                out.to_ndarray().reshape(-1)
                for frame in container.decode(stream)
                for out in resampler.resample(frame)
            ]
            chunks += [out.to_ndarray().reshape(-1) for out in resampler.resample(None)]
    except (av.error.FFmpegError, OSError, UnicodeDecodeError, ValueError) as err:
        raise AudioError(f"not a readable sound file: {err}") from err
    if not chunks:
        raise AudioError("no audio samples in the file")
    return np.concatenate(chunks).astype(np.float32), int(rate)
