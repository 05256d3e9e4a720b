"""Memory check (issue 18, items 2 and 9): decoding long sound files and huge pictures.

1. An hour-long 44.1 kHz stereo file decoded to 16 kHz mono, whole: trilla's block-wise decode (mix and
   resample as it reads) against the reference, reading the whole file with soundfile and resampling
   it at once, as trilla did before. The first seconds only (`max_samples`, as a store with
   `input.seconds` reads it) against the same reference.
2. A 9000x7000 JPEG decoded to a 64-px square: PIL's draft mode (decode at 1/8 scale) against a full decode.

Sound peaks are measured with tracemalloc (numpy reports its buffers to it), so they do not depend on
the machine's load; a picture's cost is its decoded buffer, width x height x 3 bytes, which PIL
allocates outside tracemalloc's view.

    .venv/bin/python benchmarks/long_audio.py [--minutes 60]

Writes benchmarks/results/long_audio.md.
"""

from __future__ import annotations

import argparse
import io
import platform
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr
from PIL import Image

from trilla.kinds.audio import decode as audio
from trilla.kinds.image import decode as images


def peak(call) -> tuple[float, float]:
    """(peak MB allocated while `call` ran, seconds)."""
    tracemalloc.start()
    start = time.perf_counter()
    call()
    elapsed = time.perf_counter() - start
    _, top = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return top / 2**20, elapsed


def whole_then_resample(path: Path) -> np.ndarray:
    samples, rate = sf.read(str(path), dtype="float32", always_2d=True)
    return soxr.resample(samples.mean(axis=1), rate, 16000)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--minutes", type=float, default=60.0)
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "long.wav"
        rate, seconds = 44100, int(args.minutes * 60)
        with sf.SoundFile(path, "w", rate, 2, subtype="PCM_16") as out:  # written in chunks: the writer holds no hour either
            t = np.arange(rate) / rate
            second = np.stack([0.3 * np.sin(2 * np.pi * 440 * t), 0.3 * np.sin(2 * np.pi * 660 * t)], 1).astype(np.float32)
            for _ in range(seconds):
                out.write(second)
        size = path.stat().st_size / 2**20
        reference = peak(lambda: whole_then_resample(path))
        streamed = peak(lambda: audio.load(path, 16000))
        start_only = peak(lambda: audio.load(path, 16000, max_samples=10 * 16000))
        rows += [
            (f"{args.minutes:g} min 44.1 kHz stereo wav ({size:.0f} MB) -> 16 kHz mono, whole", "read all, then resample (reference)", *reference, 1.0),
            ("", "trilla: blocks mixed and resampled as read", *streamed, streamed[0] / reference[0]),
            ("", "trilla: first 10 s only (input.seconds: 10)", *start_only, start_only[0] / reference[0]),
        ]
    photo = Image.fromarray(np.random.default_rng(0).integers(0, 256, (7000 // 8, 9000 // 8, 3), dtype=np.uint8)).resize((9000, 7000))
    buffer = io.BytesIO()
    photo.save(buffer, "JPEG", quality=85)
    data = buffer.getvalue()
    full = time.perf_counter()
    images.fit(Image.open(io.BytesIO(data)), 64, "rgb")
    full = time.perf_counter() - full
    draft = time.perf_counter()
    images.decode(data, 64, "rgb")
    draft = time.perf_counter() - draft
    with Image.open(io.BytesIO(data)) as img:
        img.draft(None, (64, 64))
        reduced = img.size[0] * img.size[1] * 3 / 2**20
    whole = 9000 * 7000 * 3 / 2**20  # PIL's pixel buffers are not traced: their size is width x height x 3 bytes
    rows += [
        (f"9000x7000 JPEG ({len(data) / 2**20:.0f} MB) -> 64 px", "full decode, then resize (reference)", whole, full, 1.0),
        ("", "trilla: draft mode (decoded at 1/8 scale)", reduced, draft, reduced / whole),
    ]
    lines = [
        "# Decoding long sound files and huge pictures: peak memory", "",
        f"Machine: {platform.platform()}, Python {platform.python_version()}, {platform.processor() or 'cpu'}.",
        "Sound: peak memory is tracemalloc's (numpy's buffers). Pictures: the decoded pixel buffer (width x height x 3), which "
        "PIL does not report to tracemalloc. Time is one run, for orientation only.", "",
        "| input | decoding | peak MB | seconds | peak vs reference |", "|---|---|---|---|---|",
        *[f"| {a} | {b} | {mb:.0f} | {s:.2f} | {ratio:.2f} |" for a, b, mb, s, ratio in rows], "",
        "Command: `.venv/bin/python benchmarks/long_audio.py" + (f" --minutes {args.minutes:g}" if args.minutes != 60 else "") + "`", "",
    ]
    out = Path(__file__).parent / "results" / "long_audio.md"
    out.write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
