"""Spectrogram speed: trilla's batched torch.stft against matplotlib's specgram (the music study's method).

Both turn the same 10-s 44.1 kHz clips into the study's 129-bin power spectrogram (NFFT 256, overlap
128, every other frame kept) in decibels. trilla batches the clips as its feature cache does
(`clips_per_batch`); `--batch` overrides that to show how batch size matters on a CPU. Rounds alternate
between the two methods and the median clips/s of each is compared, so machine noise hits both alike.

    python benchmarks/audio_features.py --clips 64 --rounds 5
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from matplotlib import mlab

from trilla.config import AudioInput
from trilla.kinds.audio.spectrogram import Spectrogram, clips_per_batch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clips", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch", type=int, default=0, help="clips per torch batch; 0: as trilla's cache")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    sr = 44100
    waves = (0.1 * rng.standard_normal((args.clips, 10 * sr))).astype(np.float32)
    cfg = AudioInput(type="audio", features="spectrogram", sample_rate=sr, n_fft=256, hop=128, every=2, seconds=10)
    transform = Spectrogram(cfg)
    batch = args.batch or clips_per_batch(waves.shape[1], "cpu")

    def with_matplotlib() -> None:
        for wave in waves:
            pxx, _, _ = mlab.specgram(wave, NFFT=256, Fs=sr, noverlap=128)
            10 * np.log10(np.maximum(pxx[:, ::2].T, 1e-10))

    def with_torch() -> None:
        with torch.inference_mode():
            for start in range(0, len(waves), batch):
                transform(torch.from_numpy(waves[start : start + batch])).numpy()

    torch_name = f"trilla torch.stft ({batch} clips per batch)"
    rates = {"matplotlib specgram": [], torch_name: []}
    for _ in range(args.rounds):
        for name, run in (("matplotlib specgram", with_matplotlib), (torch_name, with_torch)):
            began = time.perf_counter()
            run()
            rates[name].append(args.clips / (time.perf_counter() - began))
    medians = {name: float(np.median(r)) for name, r in rates.items()}
    print(f"torch threads: {torch.get_num_threads()}, clips: {args.clips} x 10 s at 44.1 kHz, rounds: {args.rounds}")
    for name, rate in medians.items():
        print(f"{name}: {rate:.1f} clips/s (rounds: {', '.join(f'{r:.1f}' for r in rates[name])})")
    print(f"speed-up: {medians[torch_name] / medians['matplotlib specgram']:.2f}x")


if __name__ == "__main__":
    main()
