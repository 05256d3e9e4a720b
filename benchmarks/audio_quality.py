"""Audio quality (issue 4, item 7): instrument families across sound libraries, and the emotion quadrants.

Data come from `make_audio.py` (the shared dataset renderer, passed with --make-audio; trilla does not
depend on it): eight instrument families rendered from FluidR3 for training, and the same families
rendered from MuseScore General and from TimGM6mb, sample sets the model never hears in training; and
the emotion set (chord progressions whose mode and consonance set valence, and whose tempo, density and
loudness set arousal).

Runs, each a recipe from examples/ with only the data paths set:
- `instruments_seed<k>`: examples/instruments.yaml with `train.seed` k for each of --seeds, tested on
  MuseScore, then evaluated on TimGM6mb; then the ensemble of those runs (`trilla evaluate RUN...`) on both.
- `instruments_plain` (with --plain): the same network with `augment: null`, `train.mixup: 0`, as a
  reference for what augmentation buys.
- `emotion`: examples/emotion_quadrants.yaml, per-axis accuracy on its held-out test split.

    .venv/bin/python benchmarks/audio_quality.py --make-audio ../shared/datasets/make_audio.py --work /tmp/aq \
        [--part instruments|emotion] [--seeds 3] [--plain]

Needs the Debian soundfonts and pyfluidsynth that make_audio.py's docstring lists. Writes
benchmarks/results/audio_quality_<part>.md. About 15 minutes per instrument run and 20 per emotion
run on 2 idle CPU cores.
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import torch

import trilla

EXAMPLES = Path(__file__).parent.parent / "examples"
RESULTS = Path(__file__).parent / "results"
SOUNDFONTS = {
    "fluid": ("/usr/share/sounds/sf2/FluidR3_GM.sf2", 900, 0),
    "muse": ("/usr/share/sounds/sf3/MuseScore_General.sf3", 50, 1),
    "timgm": ("/usr/share/sounds/sf2/TimGM6mb.sf2", 50, 2),
}
RENDERS = {
    "instruments": [["instruments", name, "--n", str(n), "--seed", str(seed), "--soundfont", font] for name, (font, n, seed) in SOUNDFONTS.items()],
    "emotion": [["emotion", "emotion", "--n", "500", "--seed", "0"]],  # 2000 clips: with 1000, arousal was 0.92
}


def render(make_audio: Path, work: Path, part: str) -> list[str]:
    """Render what this part needs and is missing; returns the commands, for the results file."""
    commands = []
    for job in RENDERS[part]:
        kind, out, *rest = job
        commands.append(" ".join(["make_audio.py", kind, out, *rest]))
        if not (work / out / "manifest.csv").is_file():
            subprocess.run([sys.executable, str(make_audio), kind, str(work / out), *rest], check=True, capture_output=True)
    return commands


def train(recipe: str, work: Path, overrides: list[str]) -> tuple[trilla.Run, float]:
    """The run and its wall-clock minutes."""
    config = trilla.load_config(EXAMPLES / recipe, [f"run.dir={work / 'runs'}", "train.progress=false", *overrides])
    began = time.perf_counter()
    run = trilla.train(config)
    return run, (time.perf_counter() - began) / 60


def instruments(work: Path, plain: bool, seeds: int) -> list[str]:
    data = [f"data.path={work / 'fluid' / 'manifest.csv'}", f"data.test_path={work / 'muse' / 'manifest.csv'}"]
    timgm = work / "timgm" / "manifest.csv"
    rows, runs = [], []
    variants = [(f"instruments_seed{k}", [f"train.seed={k}"]) for k in range(seeds)]
    variants += [("instruments_plain", ["augment=null", "train.mixup=0"])] if plain else []
    for name, extra in variants:
        run, minutes = train("instruments.yaml", work, [*data, f"run.name={name}", *extra])
        runs.append(run)
        other, _ = run.evaluate(timgm, progress=False)
        rows.append(f"| {name} | {run.metrics['val/accuracy']:.3f} | {run.metrics['test/accuracy']:.3f} | "
                    f"{other['test/accuracy']:.3f} | {minutes:.1f} | `{run.path.name}` |")
    members = runs[:seeds]  # the plain reference, when trained, comes last
    if len(members) > 1:
        first, *others = members
        muse, _ = first.evaluate(progress=False, others=others)
        other, _ = first.evaluate(timgm, progress=False, others=others)
        rows.append(f"| **ensemble of the {len(members)} seeds** | | {muse['test/accuracy']:.3f} | {other['test/accuracy']:.3f} | | "
                    f"`trilla evaluate {' '.join(m.path.name for m in members)}` |")
    return [
        "## Instrument families: trained on FluidR3 only",
        "",
        "Validation is a held-out part of the FluidR3 renders; MuseScore General is the run's test set, and",
        "TimGM6mb is evaluated afterwards (`trilla evaluate RUN --data timgm/manifest.csv`). The ensemble",
        "averages the seeds' probabilities (`trilla evaluate RUN0 RUN1 ... [--data ...]`).",
        "",
        "| run | FluidR3 (val) | MuseScore General | TimGM6mb | train minutes | run |",
        "|---|---|---|---|---|---|",
        *rows,
        "",
        "Goal (issue 4): >= 0.90 on MuseScore General and >= 0.75 on TimGM6mb.",
    ]


def emotion(work: Path, plain: bool, seeds: int) -> list[str]:
    run, minutes = train("emotion_quadrants.yaml", work, [f"data.path={work / 'emotion' / 'manifest.csv'}", "run.name=emotion"])
    m = run.metrics
    return [
        "## Emotion quadrants",
        "",
        "| quadrant accuracy | arousal axis | valence axis | test clips | train minutes | run |",
        "|---|---|---|---|---|---|",
        f"| {m['test/accuracy']:.3f} | {m['test/arousal_accuracy']:.3f} | {m['test/valence_accuracy']:.3f} | "
        f"{int(m['test/samples'])} | {minutes:.1f} | `{run.path.name}` |",
        "",
        "Goal (issue 4): >= 0.95 on the arousal axis and >= 0.90 on the valence axis.",
    ]


PARTS = {"instruments": instruments, "emotion": emotion}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--make-audio", type=Path, required=True, help="path of the shared make_audio.py")
    parser.add_argument("--work", type=Path, required=True, help="folder for the renders and the runs")
    parser.add_argument("--part", choices=list(PARTS), action="append", help="what to run (repeatable); default: both")
    parser.add_argument("--seeds", type=int, default=3, help="instruments: train the recipe with this many seeds, and their ensemble")
    parser.add_argument("--plain", action="store_true", help="instruments: also train the reference without augmentation")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    for part in args.part or list(PARTS):
        commands = render(args.make_audio, args.work, part)
        lines = [
            f"# Audio quality: {part}",
            "",
            f"Command: `.venv/bin/python benchmarks/audio_quality.py --make-audio ../shared/datasets/make_audio.py --work WORK "
            f"--part {part}{f' --seeds {args.seeds}' if part == 'instruments' else ''}{' --plain' if args.plain and part == 'instruments' else ''}`",
            "",
            f"Machine: {platform.machine()}, {os.cpu_count()} cores, no GPU, torch {torch.__version__} ({torch.get_num_threads()} threads).",
            "",
            f"Renders (16 kHz, {'2' if part == 'instruments' else '4'}-s clips):",
            "",
            *[f"- `{c}`" for c in commands],
            "",
            *PARTS[part](args.work, args.plain, args.seeds),
            "",
        ]
        out = RESULTS / f"audio_quality_{part}.md"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text("\n".join(lines))
        print(out.read_text())


if __name__ == "__main__":
    main()
