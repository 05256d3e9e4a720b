"""Speed check (issue 2, item 11): `trilla train` on the T6 model vs a plain PyTorch loop.

Both train the guitar/bass study's T6 network (examples/guitar_bass.yaml: one 5x5 conv, 10 maps, batch
norm, dropout 0.5, SGD, batch 32) on the same 150 px RGB images. trilla reads them from its on-disk
store through the Lightning loop; the reference holds the same uint8 tensors in memory and runs the
textbook loop. The two alternate for several rounds and their medians are compared, so a noisy shared
machine affects both sides alike.

    .venv/bin/python benchmarks/train_speed.py [--images 1200] [--epochs 3] [--rounds 5]

Writes benchmarks/results/train_speed.md.
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
import torch
from PIL import Image

import trilla
from trilla.models import InputSpec, build

RESULTS = Path(__file__).parent / "results" / "train_speed.md"
RECIPE = Path(__file__).parent.parent / "examples" / "guitar_bass.yaml"


def make_folder(root: Path, count: int) -> Path:
    rng = np.random.default_rng(0)
    for i in range(count):
        label = "guitar" if i % 7 else "bass"
        (root / label).mkdir(parents=True, exist_ok=True)
        pixels = rng.integers(0, 256, (150, 150, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(root / label / f"{i:05d}.png")
    return root


def plain_loop(images: np.ndarray, targets: np.ndarray, config, epochs: int) -> float:
    """Samples per second of the textbook loop over in-memory uint8 tensors."""
    torch.manual_seed(0)
    x_all, y_all = torch.from_numpy(images), torch.from_numpy(targets)
    model = build(config.model, InputSpec(channels=3, size=150), 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=config.train.lr, momentum=config.train.momentum)
    loss_fn = torch.nn.CrossEntropyLoss()
    batch = config.train.batch_size
    model.train()
    seen, start = 0, time.perf_counter()
    for _ in range(epochs):
        order = torch.randperm(len(x_all))
        for i in range(0, len(order), batch):
            idx = order[i : i + batch]
            x = (x_all[idx].permute(0, 3, 1, 2).float() - 127.5) / 64.0
            loss = loss_fn(model(x), y_all[idx])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            seen += len(idx)
    return seen / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=1200)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["TRILLA_CACHE"] = f"{tmp}/cache"
        data = make_folder(Path(tmp) / "gb", args.images)
        config = trilla.load_config(
            RECIPE,
            [f"data.path={data}", f"run.dir={tmp}/runs", f"train.epochs={args.epochs}", "train.progress=false",
             "data.split.test=0.1", "data.split.val=0.1"],
        )
        # Pack the store first so neither side pays for decoding, then read the training rows from it.
        from trilla.data.datamodule import StoreDataModule

        datamodule = StoreDataModule(config, progress=False)
        datamodule.prepare()
        train_rows = datamodule.splits["train"]
        images = datamodule.data.images(train_rows)
        targets = datamodule.data.targets[train_rows]

        plain_loop(images, targets, config, 1)  # warm-up (thread pools, allocator), not counted
        plain, ours = [], []
        for _ in range(args.rounds):
            plain.append(plain_loop(images, targets, config, args.epochs))
            ours.append(trilla.train(config).metrics["train_samples_per_s"])
    ratio = float(np.median(ours) / np.median(plain))
    lines = [
        "# Training speed: `trilla train` (T6 from the store) vs a plain PyTorch loop (in-memory tensors)",
        "",
        f"T6 model (`examples/guitar_bass.yaml`), 150 px RGB, batch 32, SGD; {len(train_rows)} training images, "
        f"{args.epochs} epochs each side. trilla's figure is `train_samples_per_s` from metrics.json (training "
        "batches only, validation excluded); the two alternate for several rounds in one script, after one untimed warm-up epoch of the plain "
        "loop, and the medians are compared (this shared machine varies by about 15% between runs); "
        "trilla's figure includes its own first epoch.",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__} "
        f"({torch.get_num_threads()} threads), Python {platform.python_version()}.",
        "",
        "| round | plain PyTorch (samples/s) | trilla train (samples/s) |",
        "|---|---|---|",
        *[f"| {i + 1} | {p:.1f} | {o:.1f} |" for i, (p, o) in enumerate(zip(plain, ours))],
        f"| median | {np.median(plain):.1f} | {np.median(ours):.1f} |",
        "",
        f"**Ratio of medians trilla / plain = {ratio:.3f}** (goal >= 0.9).",
        "",
    ]
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text("\n".join(lines))
    print(RESULTS.read_text())


if __name__ == "__main__":
    main()
