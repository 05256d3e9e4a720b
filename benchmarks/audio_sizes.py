"""Audio recipes across data sizes (issue 23, item 1): does examples/instruments.yaml hold when it has
less data than it was tuned on, and does FluidR3 validation say so?

Three configs, each trained on FluidR3 renders of --sizes clips per family (renders the recipe was never
tuned on: make_audio.py seeds 21 and 22 for seeds 1 and 2, where the recipe was designed on seed 0),
tested on MuseScore General (the run's test set) and TimGM6mb (evaluated afterwards), both fresh
renders too (seeds 31 and 32, 50 clips per family):
- `recipe`: examples/instruments.yaml as it is (PANNs-style CNN 16-128, augmentation, constant rate, EMA,
  60 epochs raised to at least 3840 optimizer steps, the count it was tuned with; 11520 steps at 900 per family);
- `recipe, no augmentation`: the same with `augment: null`;
- `plain CNN`: what `trilla train --data clips/` did for audio before issue 23 (its default model, one-cycle
  schedule, 60 epochs) on the recipe's log-mel input, with `augment: null`.
With `--configs`, also the recipe as it was before issue 23 (`20-epoch recipe`: 20 epochs whatever the
data's size), with and without augmentation, and that recipe with one part removed or changed (item 2):
no weight averaging, 60 epochs, the plain CNN's width; the recipe with its first step budget
(`3000-step recipe`: 3000 instead of 3840 steps) with and without augmentation, also validated on whole
General MIDI programs held out of training (`programs held out`, item 3); the recipe with the plain CNN's width;
the recipe with 20 epochs and the budget (`recipe, 20 epochs`: the recipe from the budget's fix until it took 60
epochs; the same runs as the recipe at 100 and 300 per family, where the budget decides, and 3840 steps at 900);
`trilla train defaults`: what a newcomer's `trilla train --data clips/` does on 2-s clips (the plain CNN with the
audio kind's default augmentation, SpecAugment, gain and time shift, and its default step budget of 3840), and
`60-epoch trilla train defaults`, the same as it was before issue 23.

Every finished run is kept in WORK/results.json, so the sizes can be measured in several sittings
(`--sizes 100` now, `--sizes 300 900` later), also side by side on one --work (each adds its rows to what is
stored when it finishes a run); the results file always shows everything measured so far. A run that a
sitting left unfinished (its machine or session ended) is resumed from its last checkpoint by the next
sitting that asks for the same config, size and seed (so change a config's overrides only under a new name);
its `train minutes` are then its training clock summed over the sittings. A config, size and seed already
in results.json is not run again (the script says so): remove its row to measure it anew.

    .venv/bin/python benchmarks/audio_sizes.py --make-audio ../shared/datasets/make_audio.py --work /tmp/sizes \\
        [--sizes 100 300 900] [--seeds 1 2] [--configs recipe "plain CNN" ...]

Two runs of WORK can then be compared clip by clip on both test libraries (whether a gap of a few clips is
more than chance: the clips only one of them gets right, and the exact McNemar p-value):

    .venv/bin/python benchmarks/audio_sizes.py --work /tmp/sizes --paired RUN_A RUN_B

Needs what make_audio.py's docstring lists (Debian's fluidsynth and soundfonts, pip's pyfluidsynth).
Writes benchmarks/results/audio_sizes.md and, for item 1's configs and the audio defaults, a picture of accuracy
against data size (audio_sizes.png); the Markdown's "## Reading" section is written by hand and kept.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import matplotlib
import pandas as pd
import torch
from scipy.stats import binomtest

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

import trilla  # noqa: E402
from trilla import atomic  # noqa: E402
from trilla.runs import INTERRUPTED, Run, find_runs, resumable  # noqa: E402

EXAMPLES = Path(__file__).parent.parent / "examples"
RESULTS = Path(__file__).parent / "results"
READING = "## Reading"
FLUID = "/usr/share/sounds/sf2/FluidR3_GM.sf2"
TESTS = {"muse": ("/usr/share/sounds/sf3/MuseScore_General.sf3", 31), "timgm": ("/usr/share/sounds/sf2/TimGM6mb.sf2", 32)}
LOGMEL = ["input={type: audio, features: logmel, sample_rate: 16000, n_fft: 512, hop: 160, n_mels: 64, seconds: 2}"]
HELD_OUT = "data.split.group_column=program"
# on unseen programs the validation loss is lowest after a few epochs while the accuracy still rises
# (ever surer of the heard programs, wrong on the others): the best checkpoint is chosen by accuracy
HELD_OUT_ACCURACY = [HELD_OUT, "train.monitor=val/accuracy"]
TWENTY = "train.epochs=20"  # the recipe's epochs until the evening of 2026-12-03
BEFORE = [TWENTY, "train.min_steps=null"]  # the recipe as it was tuned, before issue 23: 20 epochs whatever the data's size
SIXTY = ["train.min_steps=null"]  # trilla's audio defaults before issue 23: 60 epochs whatever the data's size
FIRST_BUDGET = [TWENTY, "train.min_steps=3000"]  # issue 23's first fix, measured before the budget became 3840
CONFIGS = {
    "recipe": ("instruments.yaml", []),
    # the recipe before it took the plain CNN's 60 epochs (a third of the plain CNN's steps at 900 per family)
    "recipe, 20 epochs": ("instruments.yaml", [TWENTY, "train.min_steps=3840"]),
    "recipe, no augmentation": ("instruments.yaml", ["augment=null"]),
    "plain CNN": (None, [*LOGMEL, "augment=null", *SIXTY]),
    "20-epoch recipe": ("instruments.yaml", BEFORE),
    "20-epoch recipe, no augmentation": ("instruments.yaml", [*BEFORE, "augment=null"]),
    # item 2: the 20-epoch recipe with one part removed or changed at a time
    "20-epoch recipe, no weight averaging": ("instruments.yaml", [*BEFORE, "train.ema=null"]),
    "20-epoch recipe, with 60 epochs": ("instruments.yaml", [*BEFORE, "train.epochs=60"]),
    "20-epoch recipe, plain CNN's width": ("instruments.yaml", [*BEFORE, "model.channels=[32, 64, 128, 256]", "model.embedding=256"]),
    "3000-step recipe": ("instruments.yaml", FIRST_BUDGET),
    "3000-step recipe, no augmentation": ("instruments.yaml", [*FIRST_BUDGET, "augment=null"]),
    # item 3: validation that holds out whole General MIDI programs (instruments never heard), to see
    # whether it ranks the configs as the held-out libraries do where the usual split saturates
    "3000-step recipe, programs held out, best epoch by val/loss": ("instruments.yaml", [*FIRST_BUDGET, HELD_OUT]),
    "3000-step recipe, programs held out": ("instruments.yaml", [*FIRST_BUDGET, *HELD_OUT_ACCURACY]),
    "3000-step recipe, no augmentation, programs held out": ("instruments.yaml", [*FIRST_BUDGET, *HELD_OUT_ACCURACY, "augment=null"]),
    # what else the plain CNN does differently: twice the channels
    "recipe, plain CNN's width": ("instruments.yaml", ["model.channels=[32, 64, 128, 256]", "model.embedding=256"]),
    # item 3's other half: what `trilla train --data clips/` gives a newcomer (the plain CNN with the default augmentation)
    "trilla train defaults": (None, LOGMEL),
    "60-epoch trilla train defaults": (None, [*LOGMEL, *SIXTY]),
}
MAIN = ["recipe", "recipe, no augmentation", "plain CNN"]  # item 1's three
PLOTTED = [*MAIN, "trilla train defaults"]  # what a user chooses between; the item-2 variants stay in the tables


def stored(store: Path) -> list[dict]:
    return json.loads(store.read_text()) if store.is_file() else []


def render_args(name: str, n: int, seed: int, soundfont: str) -> list[str]:
    return ["instruments", name, "--n", str(n), "--seed", str(seed), "--soundfont", soundfont]


def renders(results: list[dict]) -> list[list[str]]:
    """The renders behind `results`: the two test libraries, and each size and seed's FluidR3 set."""
    tests = [render_args(name, 50, seed, font) for name, (font, seed) in TESTS.items()]
    return tests + [render_args(f"fluid_{size}_{seed}", size, 20 + seed, FLUID) for size, seed in sorted({(r["size"], r["seed"]) for r in results})]


def render(make_audio: Path, work: Path, args: list[str]) -> None:
    if not (work / args[1] / "manifest.csv").is_file():
        subprocess.run([sys.executable, str(make_audio), args[0], str(work / args[1]), *args[2:]], check=True, capture_output=True)


def measure(work: Path, config_name: str, size: int, seed: int) -> dict:
    recipe, extra = CONFIGS[config_name]
    overrides = [f"data.path={work / f'fluid_{size}_{seed}' / 'manifest.csv'}", f"data.test_path={work / 'muse' / 'manifest.csv'}",
                 f"run.dir={work / 'runs'}", f"run.name={config_name.replace(' ', '_').replace(',', '')}_{size}_{seed}",
                 f"train.seed={seed}", "data.split.seed=0", "train.progress=false", *extra]
    config = trilla.load_config(EXAMPLES / recipe if recipe else None, overrides)
    left = unfinished(work, config.run.name)
    if left is None:
        began = time.perf_counter()
        run = trilla.train(config)
        minutes = (time.perf_counter() - began) / 60
    else:
        print(f"resuming {left.path}", flush=True)
        run = trilla.resume(left.path, progress=False)
        minutes = float(run.history["elapsed_s"].iloc[-1]) / 60
    timgm, _ = run.evaluate(work / "timgm" / "manifest.csv", progress=False)
    return {"config": config_name, "size": size, "seed": seed, "val": run.metrics["val/accuracy"], "muse": run.metrics["test/accuracy"],
            "timgm": timgm["test/accuracy"], "epochs": run.config.train.epochs, "minutes": minutes, "run": run.path.name}


def unfinished(work: Path, name: str) -> Run | None:
    """The run named `name` that an earlier sitting left interrupted, if any: two hours of training are not thrown away."""
    left = [run for run in find_runs(work / "runs") if run.status == INTERRUPTED and resumable(run.path) and run.config.run.name == name]
    return left[-1] if left else None


def paired(work: Path, first: str, second: str) -> list[str]:
    """The two runs on the same test clips: a few clips' gap between two accuracies can be chance, and the
    clips only one run gets right say how likely (McNemar's exact test, a binomial test on those clips)."""
    lines = []
    for library, pattern in (("MuseScore General", "predictions.csv"), ("TimGM6mb", "evaluations/*/predictions.csv")):
        right = []
        for name in (first, second):
            found = sorted((work / "runs" / name).glob(pattern))
            if not found:
                raise ValueError(f"{work / 'runs' / name} has no {pattern}")
            table = pd.read_csv(found[-1])
            # a clip is its render folder, label and file: two --work folders may share one render
            right.append((table["label"] == table["predicted"]).set_axis(table["path"].map(lambda path: "/".join(Path(path).parts[-3:]))))
        a, b = right
        if set(a.index) != set(b.index):
            raise ValueError(f"{first} and {second} were not tested on the same {library} clips")
        b = b.reindex(a.index)
        only_first, only_second = int((a & ~b).sum()), int((~a & b).sum())
        p = binomtest(only_first, only_first + only_second).pvalue if only_first + only_second else 1.0
        lines.append(f"{library}: {a.size} clips, {int(a.sum())} against {int(b.sum())} right; only the first right on {only_first}, "
                     f"only the second on {only_second}; McNemar exact p = {p:.2g}")
    return lines


def plot(results: list[dict], path: Path) -> Path:
    """Accuracy against data size per held-out library, each config's seeds as a bar from lowest to highest:
    whether a config holds across sizes is read at a glance, where the tables need a row-by-row comparison."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharex=True)
    sizes = sorted({r["size"] for r in results})
    for offset, name in enumerate(PLOTTED):
        group = [r for r in results if r["config"] == name]
        if not group:
            continue
        shown = [s for s in sizes if any(r["size"] == s for r in group)]
        x = [s * 1.04 ** (offset - 1.5) for s in shown]  # side by side, not on top of each other
        for ax, (key, library) in zip(axes, (("muse", "MuseScore General"), ("timgm", "TimGM6mb"))):
            low = [min(r[key] for r in group if r["size"] == s) for s in shown]
            high = [max(r[key] for r in group if r["size"] == s) for s in shown]
            seeds = [len({r["seed"] for r in group if r["size"] == s}) for s in shown]  # a rerun of a seed is not a second seed
            middle = [(a + b) / 2 for a, b in zip(low, high)]
            bars = ax.errorbar(x, middle, yerr=[[m - a for m, a in zip(middle, low)], [b - m for m, b in zip(middle, high)]],
                               marker="o", capsize=4, label=name)
            for xi, hi, n in zip(x, high, seeds):
                if n == 1:  # one seed is a point, not a range: say so on the plot
                    ax.annotate("1 seed", (xi, hi), textcoords="offset points", xytext=(0, 6), ha="center",
                                fontsize=7, color=bars[0].get_color())
            ax.set_title(f"tested on {library}")
    for ax in axes:
        ax.set_xscale("log")
        ax.set_xticks(sizes, [str(s) for s in sizes])
        ax.minorticks_off()
        ax.set_xlabel("FluidR3 training clips per family")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("accuracy (seeds: lowest to highest)")
    axes[1].legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def write(results: list[dict]) -> Path:
    lines = [
        "# Audio recipes across data sizes (`benchmarks/audio_sizes.py`)",
        "",
        # the rows come from many sittings, some one run alone with two torch threads, some two runs side by side with
        # one each: the thread count of whichever sitting wrote last would describe none of the others
        f"Machine: {platform.machine()}, {os.cpu_count()} cores, no GPU, torch {torch.__version__}. `train minutes` compare "
        "within a sitting only: some ran one run alone with two torch threads, some two side by side with one each (the "
        "Reading says which).",
        "",
        "Trained on FluidR3 renders of N clips per family (8 families; 85/15 split into training and validation, so "
        "validation is FluidR3 too; `programs held out`: validation is whole General MIDI programs that training never "
        "hears, one or two of each family's eight, chosen by the split seed); MuseScore General is each run's test set and TimGM6mb is evaluated afterwards. "
        "`epochs` is what the run planned (a budget of 3840 optimizer steps, the recipe's `train.min_steps` and the audio "
        "defaults' since issue 23, raises the recipe's 20 and the defaults' 60 on less data). Renders:",
        "",
        *[f"- `make_audio.py {' '.join(args)}`" for args in renders(results)],
        "",
        "| clips per family | config | seed | FluidR3 (val) | MuseScore General | TimGM6mb | epochs | train minutes | run |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    ordered = sorted(results, key=lambda r: (r["size"], list(CONFIGS).index(r["config"]), r["seed"]))
    for r in ordered:
        lines.append(f"| {r['size']} | {r['config']} | {r['seed']} | {r['val']:.3f} | {r['muse']:.3f} | {r['timgm']:.3f} | {r['epochs']} | "
                     f"{r['minutes']:.1f} | `{r['run']}` |")
    lines += ["", "Range over the seeds (lowest to highest):", "",
              "| clips per family | config | FluidR3 (val) | MuseScore General | TimGM6mb |", "|---|---|---|---|---|"]
    for size in sorted({r["size"] for r in results}):
        for name in CONFIGS:
            group = [r for r in ordered if r["size"] == size and r["config"] == name]
            if group:
                spans = [f"{min(r[key] for r in group):.3f}-{max(r[key] for r in group):.3f}" for key in ("val", "muse", "timgm")]
                lines.append(f"| {size} | {name} | {' | '.join(spans)} |")
    RESULTS.mkdir(parents=True, exist_ok=True)
    picture = plot(results, RESULTS / "audio_sizes.png")
    lines += ["", f"![accuracy against data size, per held-out library]({picture.name})"]
    target = RESULTS / "audio_sizes.md"
    kept = target.read_text().partition(READING)[2] if target.exists() else ""
    target.write_text("\n".join(lines) + "\n" + (f"\n{READING}{kept}" if kept else ""))
    return target


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--make-audio", type=Path, help="path of the shared make_audio.py (needed unless --paired)")
    parser.add_argument("--work", type=Path, required=True, help="folder for the renders, the runs and results.json")
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 300, 900], help="clips per family")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2], help="render and training seeds")
    parser.add_argument("--configs", nargs="+", default=MAIN, choices=list(CONFIGS), metavar="NAME",
                        help=f"which configs (default: item 1's three), of: {'; '.join(CONFIGS)}")
    parser.add_argument("--paired", nargs=2, metavar="RUN", help="compare two runs of WORK/runs clip by clip, and nothing else")
    args = parser.parse_args()
    if args.paired:
        try:
            print("\n".join(paired(args.work, *args.paired)))
        except ValueError as error:  # a run that is not there, or not on the same clips: the caller's input, exit 2
            parser.error(str(error))
        return
    if args.make_audio is None:
        parser.error("--make-audio is needed to render the data")
    logging.basicConfig(level=logging.WARNING)
    args.work.mkdir(parents=True, exist_ok=True)
    store = args.work / "results.json"
    results = stored(store)
    for name, (font, seed) in TESTS.items():
        render(args.make_audio, args.work, render_args(name, 50, seed, font))
    for size in args.sizes:
        for seed in args.seeds:
            render(args.make_audio, args.work, render_args(f"fluid_{size}_{seed}", size, 20 + seed, FLUID))
            for name in args.configs:
                if any(r["config"] == name and r["size"] == size and r["seed"] == seed for r in results):
                    print(f"{name}, {size} per family, seed {seed}: already in {store}, not run again (remove its row to rerun it)",
                          file=sys.stderr, flush=True)
                    continue
                measured = measure(args.work, name, size, seed)
                results = [*stored(store), measured]  # another sitting on the same --work may have added rows meanwhile
                atomic.write_text(store, json.dumps(results, indent=1))
                print(results[-1], flush=True)
                write(results)
    print(write(results).read_text())


if __name__ == "__main__":
    main()
