"""Speed check (issue 3, item 2): training a head from the feature cache vs through the frozen backbone.

Both runs train the same timm backbone (frozen, augment: null) and head on the same pictures with the
same seed; one sets `train.feature_cache: false`, so every epoch pushes the pixels through the backbone.
The two alternate for several rounds and the medians are compared. Weights are random (pretrained:
false): speed does not depend on their values, and this machine cannot download them.

    .venv/bin/python benchmarks/feature_cache.py [--backbone resnet18] [--images 800] [--size 128] [--epochs 5]

Writes benchmarks/results/feature_cache.md.
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from trilla import load_config, train


def write_pictures(root: Path, images: int, size: int) -> Path:
    rng = np.random.default_rng(0)
    for i in range(images):
        label = f"class{i % 4}"
        (root / label).mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(root / label / f"{i}.png")
    return root


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--backbone", default="resnet18")
    parser.add_argument("--images", type=int, default=800)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    tmp = Path(tempfile.mkdtemp())
    os.environ["TRILLA_CACHE"] = str(tmp / "cache")
    data = write_pictures(tmp / "pictures", args.images, args.size)
    common = ["model.name=timm", f"model.backbone={args.backbone}", "model.pretrained=false", "augment=null",
              f"data.image_size={args.size}", f"train.epochs={args.epochs}", "train.progress=false", f"run.dir={tmp / 'runs'}"]
    times: dict[str, list[float]] = {"through": [], "cached": [], "cached_total": []}
    first_cache_s = None
    for _ in range(args.rounds):
        for name, extra in (("through", ["train.feature_cache=false"]), ("cached", [])):
            start = time.perf_counter()
            run = train(load_config(data=data, overrides=common + extra))
            total = time.perf_counter() - start
            times[name].append(run.metrics["train_time_s"])
            if name == "cached":
                times["cached_total"].append(total)
                if first_cache_s is None:
                    first_cache_s = total - run.metrics["train_time_s"]
    through, cached = statistics.median(times["through"]), statistics.median(times["cached"])
    lines = [
        "# Feature cache: head training from cached features vs through the frozen backbone", "",
        f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, {platform.platform()}; no GPU.", "",
        f"Command: `.venv/bin/python benchmarks/feature_cache.py --backbone {args.backbone} --images {args.images} "
        f"--size {args.size} --epochs {args.epochs} --rounds {args.rounds}`", "",
        f"{args.images} RGB pictures of {args.size} px, {args.backbone} frozen (random weights), head [1024], "
        f"{args.epochs} epochs, batch 32; medians of {args.rounds} alternating rounds.", "",
        "| | training time (s, median) | all rounds |", "|---|---|---|",
        f"| through the frozen backbone | {through:.2f} | {', '.join(f'{t:.2f}' for t in times['through'])} |",
        f"| from the feature cache | {cached:.2f} | {', '.join(f'{t:.2f}' for t in times['cached'])} |", "",
        f"**Speedup of the training loop: {through / cached:.1f}x.** The first cached run spent "
        f"{first_cache_s:.1f} s outside its training loop, mostly on one pass of the backbone over all {args.images} "
        "pictures to build the cache; later runs with the same backbone weights and store reuse it.", "",
    ]
    out = Path(__file__).parent / "results" / "feature_cache.md"
    out.write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
