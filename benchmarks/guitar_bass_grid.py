"""The guitar/bass study's T1-T10 grid (examples/guitar_bass_grid.yaml) on a generated two-class image set
as imbalanced as the study's (6.4 guitars to 1 bass), to show what the leaderboard is for: ranked by
balanced accuracy, the configurations that only learned the class frequencies are flagged.

The pictures stand in for the shop's thumbnails: a dark instrument on a white background, a round body
and a neck, tilted a little; a bass's neck is longer and its body smaller. Trials are shortened
(`--epochs`, default 40, instead of 1000) and the pictures are 48 px, so the grid runs in minutes.

    .venv/bin/python benchmarks/guitar_bass_grid.py [--guitars 640] [--basses 100] [--epochs 40] [--workers 2]

Writes benchmarks/results/guitar_bass_grid.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image, ImageDraw

ROOT = Path(__file__).parent.parent
RESULTS = Path(__file__).parent / "results"
SIZE = 48


def instrument(rng: np.random.Generator, bass: bool) -> Image.Image:
    image = Image.new("RGB", (SIZE * 2, SIZE * 2), (255, 255, 255))
    draw = ImageDraw.Draw(image)
    colour = tuple(int(c) for c in rng.integers(0, 140, 3))
    body = rng.uniform(0.28, 0.34) if not bass else rng.uniform(0.22, 0.28)
    neck = rng.uniform(0.45, 0.55) if not bass else rng.uniform(0.62, 0.72)
    cx, cy, r = SIZE, SIZE * 1.35, body * SIZE
    draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=colour)
    draw.rectangle([cx - 3, cy - r - neck * SIZE * 1.4, cx + 3, cy], fill=colour)
    image = image.rotate(float(rng.uniform(-20, 20)), fillcolor=(255, 255, 255), center=(cx, cy))
    return image.resize((SIZE, SIZE), Image.Resampling.BILINEAR)


def make_set(root: Path, guitars: int, basses: int) -> Path:
    rng = np.random.default_rng(0)
    for label, count in (("guitar", guitars), ("bass", basses)):
        (root / label).mkdir(parents=True)
        for i in range(count):
            instrument(rng, label == "bass").save(root / label / f"{i:04d}.png")
    return root


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--guitars", type=int, default=640)
    parser.add_argument("--basses", type=int, default=100)
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        data = make_set(Path(tmp) / "guitar_bass", args.guitars, args.basses)
        overrides = [f"data.path={data}", f"data.image_size={SIZE}", f"train.epochs={args.epochs}", "train.progress=false",
                     f"run.dir={Path(tmp) / 'runs'}"]
        trilla = [sys.executable, "-m", "trilla"]
        sweep = subprocess.run([*trilla, "sweep", ROOT / "examples" / "guitar_bass_grid.yaml", "--workers", str(args.workers), "-q",
                                *(a for o in overrides for a in ("--set", o))], capture_output=True, text=True, check=True)
        folder = sweep.stdout.strip().splitlines()[-1]
        board = subprocess.run([*trilla, "runs", folder, "--sort", "test/balanced_accuracy"], capture_output=True, text=True, check=True).stdout
        csv = subprocess.run([*trilla, "runs", folder, "--sort", "test/balanced_accuracy", "--format", "csv"], capture_output=True, text=True,
                             check=True).stdout
    table = pd.read_csv(pd.io.common.StringIO(csv))
    flagged = table.loc[table["at_majority"] == True, "id"].str.split("-").str[-1].tolist()  # noqa: E712
    lines = [
        "# The guitar/bass grid (T1-T10) on an imbalanced generated set",
        "",
        f"Command: `.venv/bin/python benchmarks/guitar_bass_grid.py --guitars {args.guitars} --basses {args.basses} "
        f"--epochs {args.epochs} --workers {args.workers}`",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} cores, no GPU, torch {torch.__version__}.",
        "",
        f"{args.guitars} guitars and {args.basses} basses ({args.guitars / args.basses:.1f} : 1), {SIZE} px, the study's split "
        f"(18.75% validation, 25% test); every trial {args.epochs} epochs instead of the study's 1000, best validation loss kept.",
        "",
        f"Sweep: `{sweep.stdout.strip().splitlines()[0]}`. Flagged at the majority baseline: {', '.join(flagged) or 'none'}.",
        "",
        "`trilla runs SWEEP --sort test/balanced_accuracy`:",
        "",
        board.strip(),
        "",
    ]
    out = RESULTS / "guitar_bass_grid.md"
    out.write_text("\n".join(lines))
    print(out.read_text())


if __name__ == "__main__":
    main()
