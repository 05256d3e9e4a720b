"""Training speed: `trilla train` from its on-disk store vs a plain PyTorch loop over in-memory tensors.

Two cases, each a study's recipe on the same generated data for both sides:
- `t6` (issue 2, item 11): the guitar/bass study's T6 network (examples/guitar_bass.yaml: one 5x5 conv,
  10 maps, batch norm, dropout 0.5, SGD, batch 32) on 150 px RGB images.
- `gru` (issue 4, item 8): the music study's GRU [32] (examples/music_emotion.yaml: dropout 0.8,
  RMSprop, batch 32) on 129-bin x 1722-frame spectrograms of 10-s 44.1 kHz clips.

trilla reads the rows from its store through the Lightning loop; the reference holds the same inputs in
memory and runs the textbook loop with the same normalization. The two alternate for several rounds
and their medians are compared, so a noisy shared machine affects both sides alike.

    .venv/bin/python benchmarks/train_speed.py --case t6 [--samples 1200] [--epochs 3] [--rounds 5]
    .venv/bin/python benchmarks/train_speed.py --case gru --samples 320 --epochs 2 --rounds 3

Writes benchmarks/results/train_speed.md (t6) or benchmarks/results/gru_train_speed.md (gru).
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image

import trilla
from trilla.data.datamodule import StoreDataModule, to_batch
from trilla.kinds import input_kind
from trilla.models import InputSpec, build
from trilla.tasks import OPTIMIZERS

EXAMPLES = Path(__file__).parent.parent / "examples"
RESULTS = Path(__file__).parent / "results"


def image_folder(root: Path, count: int) -> Path:
    rng = np.random.default_rng(0)
    for i in range(count):
        label = "guitar" if i % 7 else "bass"
        (root / label).mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (150, 150, 3), dtype=np.uint8)).save(root / label / f"{i:05d}.png")
    return root


def clip_manifest(root: Path, count: int) -> Path:
    """10-s 44.1 kHz noise clips with valence/arousal columns: speed does not depend on what they sound like."""
    import soundfile as sf

    rng = np.random.default_rng(0)
    (root / "clips").mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(count):
        sf.write(root / "clips" / f"{i:04d}.wav", (0.1 * rng.standard_normal(441000)).astype(np.float32), 44100)
        rows.append({"path": f"clips/{i:04d}.wav", "valence": rng.uniform(-1, 1), "arousal": rng.uniform(-1, 1)})
    pd.DataFrame(rows).to_csv(root / "manifest.csv", index=False)
    return root / "manifest.csv"


CASES = {
    "t6": {"recipe": "guitar_bass.yaml", "data": image_folder, "results": "train_speed.md",
           "what": "T6 model (`examples/guitar_bass.yaml`), 150 px RGB, batch 32, SGD", "unit": "images"},
    "gru": {"recipe": "music_emotion.yaml", "data": clip_manifest, "results": "gru_train_speed.md",
            "what": "GRU [32] (`examples/music_emotion.yaml`), 129 x 1722 spectrograms of 10-s 44.1 kHz clips, batch 32, RMSprop",
            "unit": "clips"},
}


def plain_loop(inputs: dict[str, np.ndarray], targets: np.ndarray, config, spec: dict, epochs: int) -> float:
    """Samples per second of the textbook loop over in-memory tensors."""
    torch.manual_seed(0)
    batch_all = to_batch(inputs, spec["kind"])
    key = input_kind(spec["kind"]).key
    x_all, y_all = batch_all[key], torch.from_numpy(targets)
    dims = (0, 2, 3) if key == "image" else (0, 1)
    mean, std = x_all.float().mean(dims, keepdim=True)[:1], x_all.float().std(dims, keepdim=True)[:1] + 1e-6
    model = build(config.model, InputSpec(**spec), 2)
    optimizer = OPTIMIZERS[config.train.optimizer](model.parameters(), config.train.model_dump(), None)  # torch's default kernels
    loss_fn = torch.nn.CrossEntropyLoss()
    batch = config.train.batch_size
    model.train()
    seen, start = 0, time.perf_counter()
    for _ in range(epochs):
        order = torch.randperm(len(x_all))
        for i in range(0, len(order), batch):
            idx = order[i : i + batch]
            loss = loss_fn(model((x_all[idx].float() - mean) / std), y_all[idx])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            seen += len(idx)
    return seen / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--case", choices=list(CASES), default="t6")
    parser.add_argument("--samples", type=int, default=1200)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    case = CASES[args.case]
    logging.basicConfig(level=logging.WARNING)
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["TRILLA_CACHE"] = f"{tmp}/cache"
        data = case["data"](Path(tmp) / "data", args.samples)
        config = trilla.load_config(
            EXAMPLES / case["recipe"],
            [f"data.path={data}", f"run.dir={tmp}/runs", f"train.epochs={args.epochs}", "train.progress=false",
             "data.split.test=0.1", "data.split.val=0.1"],
        )
        # Pack the store (and its spectrograms) first so neither side pays for decoding.
        datamodule = StoreDataModule(config, progress=False)
        datamodule.prepare()
        train_rows = datamodule.splits["train"]
        inputs = datamodule.data.inputs(train_rows)
        targets = datamodule.data.targets[train_rows]
        spec = datamodule.data.input_spec()

        plain_loop(inputs, targets, config, spec, 1)  # warm-up (thread pools, allocator), not counted
        plain, ours = [], []
        for _ in range(args.rounds):
            plain.append(plain_loop(inputs, targets, config, spec, args.epochs))
            ours.append(trilla.train(config).metrics["train_samples_per_s"])
    ratio = float(np.median(ours) / np.median(plain))
    lines = [
        "# Training speed: `trilla train` (from the store) vs a plain PyTorch loop (in-memory tensors)",
        "",
        f"{case['what']}; {len(train_rows)} training {case['unit']}, {args.epochs} epochs each side. trilla's figure is "
        "`train_samples_per_s` from metrics.json (training batches only, validation excluded); the two alternate for "
        "several rounds in one script, after one untimed warm-up epoch of the plain loop, and the medians are compared "
        "(this shared machine varies by about 15% between runs); trilla's figure includes its own first epoch.",
        "",
        f"Command: `.venv/bin/python benchmarks/train_speed.py --case {args.case} --samples {args.samples} "
        f"--epochs {args.epochs} --rounds {args.rounds}`",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__} "
        f"({torch.get_num_threads()} threads), Python {platform.python_version()}.",
        "",
        f"| round | plain PyTorch ({case['unit']}/s) | trilla train ({case['unit']}/s) |",
        "|---|---|---|",
        *[f"| {i + 1} | {p:.1f} | {o:.1f} |" for i, (p, o) in enumerate(zip(plain, ours))],
        f"| median | {np.median(plain):.1f} | {np.median(ours):.1f} |",
        "",
        f"**Ratio of medians trilla / plain = {ratio:.3f}** (goal >= 0.9).",
        "",
    ]
    out = RESULTS / case["results"]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines))
    print(out.read_text())


if __name__ == "__main__":
    main()
