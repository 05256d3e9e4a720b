"""Quality check (issue 2, item 10): `trilla train --data FOLDER` defaults on real handwritten digits.

The data is OpenCV's digits.png (5000 handwritten digits, 20x20 grey, 500 per class), shipped by
Debian's opencv-doc package. As in OpenCV's own digits sample, the left 50 columns of each class give
the training folder (250 per class) and the right 50 the held-out test folder given as data.test_path.

    apt-get install opencv-doc   # once; or pass --png PATH to a copy of digits.png
    .venv/bin/python benchmarks/digits_quality.py [--seeds 0 1 2]

Writes benchmarks/results/digits_quality.md.
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
from PIL import Image

DEFAULT_PNG = Path("/usr/share/doc/opencv-doc/examples/data/digits.png")
RESULTS = Path(__file__).parent / "results" / "digits_quality.md"


def write_folders(png: Path, root: Path) -> tuple[Path, Path]:
    sheet = np.asarray(Image.open(png).convert("L"))
    cells = sheet.reshape(50, 20, 100, 20).transpose(0, 2, 1, 3)  # rows of digits, columns, 20x20
    for half, columns in (("train", range(0, 50)), ("test", range(50, 100))):
        for row in range(50):
            digit = row // 5
            folder = root / half / str(digit)
            folder.mkdir(parents=True, exist_ok=True)
            for col in columns:
                Image.fromarray(cells[row, col]).save(folder / f"{row:02d}_{col:03d}.png")
    return root / "train", root / "test"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--png", type=Path, default=DEFAULT_PNG)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    args = parser.parse_args()
    if not args.png.is_file():
        sys.exit(f"{args.png} not found: apt-get install opencv-doc, or pass --png")
    import json

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        train, test = write_folders(args.png, Path(tmp))
        for seed in args.seeds:
            command = [
                str(Path(sys.executable).with_name("trilla")), "train", "--data", str(train),
                "--set", f"data.test_path={test}", "--set", f"train.seed={seed}", "--set", f"run.dir={tmp}/runs",
                "--set", "train.progress=false",
            ]
            out = subprocess.run(command, check=True, capture_output=True, text=True, env={**os.environ, "TRILLA_CACHE": f"{tmp}/cache"})
            run_dir = Path(out.stdout.strip().splitlines()[-1])
            metrics = json.loads((run_dir / "metrics.json").read_text())
            rows.append((seed, metrics))
            print(f"seed {seed}: test accuracy {metrics['test/accuracy']:.4f}", flush=True)
    accs = [m["test/accuracy"] for _, m in rows]
    lines = [
        "# Digits quality: `trilla train --data` defaults on OpenCV's handwritten digits",
        "",
        "Train folder: 2500 digits (250 per class, 20x20 grey); held-out test folder (`data.test_path`): the other 2500.",
        "Command per seed: `trilla train --data train --set data.test_path=test --set train.seed=S`; nothing else set.",
        f"Goal: >= 98.5% test accuracy. Machine: {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} cores, Python {platform.python_version()}.",
        "",
        "| seed | test accuracy | balanced accuracy | best epoch | epochs run | train time (s) |",
        "|---|---|---|---|---|---|",
    ]
    for seed, m in rows:
        lines.append(
            f"| {seed} | {m['test/accuracy']:.2%} | {m['test/balanced_accuracy']:.2%} | {m['best_epoch']} | {m['epochs']} | {m['train_time_s']:.0f} |"
        )
    lines += ["", f"Mean {np.mean(accs):.2%}, min {np.min(accs):.2%} over {len(accs)} seed(s).", ""]
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text("\n".join(lines))
    print(RESULTS.read_text())


if __name__ == "__main__":
    main()
