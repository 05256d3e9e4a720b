"""MLP 1 x 1500 training speed on AudioSet-shaped embeddings (issue 5, item 8): trilla from HDF5 against a
plain PyTorch loop over in-memory tensors, in the same process.

The reference is the loop a person would write: the (N, 1280) float inputs and (N, 527) targets in
memory, shuffled index batches of 128, Linear(1280, 1500) -> ReLU -> Dropout 0.3 -> Linear(1500, 527),
binary cross-entropy, Adam. trilla steps Adam with torch's fused kernel, so the same loop with
`fused=True` is measured too: the ratio to it is what Lightning and trilla cost per step. trilla trains examples/audioset.yaml on the same clips written as a packed
HDF5 file, once held in memory and once streamed (chunked reads through a shuffle buffer); its speed is
the training samples per second its history recorded (validation excluded), over all epochs, as the
plain loop's. The three loops take turns for `--rounds` rounds and each reports its median, so a burst
of load from another tenant of this shared machine does not land on one loop only.

    .venv/bin/python benchmarks/embedding_train_speed.py [--clips 40000] [--epochs 3] [--rounds 3]

Writes benchmarks/results/embedding_train_speed.md.
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np
import torch
from torch import nn

import trilla

EXAMPLES = Path(__file__).parent.parent / "examples"
RESULTS = Path(__file__).parent / "results"
CLASSES = 527


def write(path: Path, clips: int) -> None:
    rng = np.random.default_rng(0)
    with h5py.File(path, "w") as f:
        f["x"] = rng.integers(0, 256, (clips, 10, 128), dtype=np.uint8)
        f["y"] = rng.random((clips, CLASSES)) < 0.005
        f["video_id_list"] = np.asarray([f"v{i:07d}".encode() for i in range(clips)])


def plain(path: Path, epochs: int, batch: int = 128, fused: bool | None = None) -> float:
    """Clips per second of the plain loop (torch's default Adam, or its fused kernel as trilla uses)."""
    with h5py.File(path, "r") as f:
        x = (torch.from_numpy(f["x"][:]).float() - 128) / 128
        y = torch.from_numpy(f["y"][:]).float()
    x = x.flatten(1)
    train = int(len(x) * 0.9)  # the same share trilla trains on after carving validation
    x, y = x[:train], y[:train]
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(1280, 1500), nn.ReLU(), nn.Dropout(0.3), nn.Linear(1500, CLASSES))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, fused=fused)
    loss_fn = nn.BCEWithLogitsLoss()
    began = time.perf_counter()
    for _ in range(epochs):
        for index in torch.randperm(len(x)).split(batch):
            loss = loss_fn(model(x[index]), y[index])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return epochs * len(x) / (time.perf_counter() - began)


def trilla_speed(path: Path, work: Path, epochs: int, stream: bool) -> float:
    """Training clips per second that trilla's history recorded (validation excluded)."""
    config = trilla.load_config(EXAMPLES / "audioset.yaml", [
        f"data.path={path}", "data.test_path=null", "data.class_list=null", f"input.stream={str(stream).lower()}",
        f"train.epochs={epochs}", "train.early_stopping=null", "train.progress=false", f"run.dir={work}",
    ])
    return float(trilla.train(config).metrics["train_samples_per_s"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clips", type=int, default=40000)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "clips.h5"
        write(path, args.clips)
        rounds = [
            (plain(path, args.epochs), plain(path, args.epochs, fused=True),
             trilla_speed(path, Path(tmp) / f"runs{r}", args.epochs, stream=False),
             trilla_speed(path, Path(tmp) / f"runs{r}", args.epochs, stream=True))
            for r in range(args.rounds)
        ]
    reference, fused, memory, streamed = np.median(rounds, axis=0)
    lines = [
        "# MLP 1 x 1500 training speed from HDF5",
        "",
        f"Command: `.venv/bin/python benchmarks/embedding_train_speed.py --clips {args.clips} --epochs {args.epochs} --rounds {args.rounds}`",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} cores, no GPU, torch {torch.__version__} ({torch.get_num_threads()} threads).",
        "",
        f"{args.clips} random AudioSet-shaped clips (10 x 128 uint8, {CLASSES} classes), 90% trained on, batch 128, Adam.",
        "",
        f"Median of {args.rounds} rounds, the loops taking turns; every round's clips/s (plain, plain fused, in memory, streamed):",
        "",
        *[f"- round {r + 1}: " + ", ".join(f"{v:.0f}" for v in speeds) for r, speeds in enumerate(rounds)],
        "",
        "| loop | clips/s | ratio to the plain loop | ratio to the plain loop with fused Adam |",
        "|---|---|---|---|",
        f"| plain PyTorch, tensors in memory, torch's default Adam | {reference:.0f} | 1.00 | {reference / fused:.2f} |",
        f"| plain PyTorch, tensors in memory, fused Adam | {fused:.0f} | {fused / reference:.2f} | 1.00 |",
        f"| trilla, HDF5 held in memory (fused Adam) | {memory:.0f} | {memory / reference:.2f} | {memory / fused:.2f} |",
        f"| trilla, HDF5 streamed (fused Adam) | {streamed:.0f} | {streamed / reference:.2f} | {streamed / fused:.2f} |",
        "",
        "Goal (issue 5): >= 0.9x the plain loop (the loop a person writes, torch's default Adam). The last column",
        "is trilla's own cost per step: the same loop, given the fused Adam trilla uses.",
        "",
    ]
    out = RESULTS / "embedding_train_speed.md"
    out.write_text("\n".join(lines))
    print(out.read_text())


if __name__ == "__main__":
    main()
