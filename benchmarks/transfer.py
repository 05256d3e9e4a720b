"""Quality check (issue 3, item 1): a backbone pretrained offline on one dataset, fine-tuned on a small second one.

Pretrain timm's `test_resnet` from scratch on scikit-learn's digits 0-4 (all ~900 images), then learn
digits 5-9 from only `--shots` images per digit (70/30 train/validation), either from the pretrained
run's backbone (`model.pretrained: <run>`, frozen, trained through the feature cache) or from scratch
(the whole network trained). Both are tested on every other image of digits 5-9.

    .venv/bin/python benchmarks/transfer.py [--shots 8] [--seeds 3]

Writes benchmarks/results/transfer.md.
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import tempfile
from pathlib import Path

from trilla import load_config, train
from trilla.datasets import write_sklearn_digits


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--shots", type=int, default=8)
    parser.add_argument("--seeds", type=int, default=3)
    args = parser.parse_args()
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    tmp = Path(tempfile.mkdtemp())
    os.environ["TRILLA_CACHE"] = str(tmp / "cache")
    write_sklearn_digits(tmp / "a", classes=range(5))
    write_sklearn_digits(tmp / "b", classes=range(5, 10), per_class=slice(0, args.shots))
    write_sklearn_digits(tmp / "b_test", classes=range(5, 10), per_class=slice(args.shots, None))
    common = ["model.name=timm", "model.backbone=test_resnet", "data.image_size=32", "train.progress=false",
              "model.head=[64]", "model.dropout=0.2", "data.split.test=0", f"run.dir={tmp / 'runs'}"]
    rows = []
    for seed in range(args.seeds):
        seeded = [*common, f"train.seed={seed}", f"data.split.seed={seed}"]
        source = train(load_config(data=tmp / "a", overrides=[*seeded, "model.pretrained=false", "model.freeze=none", "train.epochs=10"]))
        small = [*seeded, "train.epochs=30", "data.split.val=0.3", f"data.test_path={tmp / 'b_test'}"]
        transfer = train(load_config(data=tmp / "b", overrides=[*small, f"model.pretrained={source.path}", "augment=null"]))
        scratch = train(load_config(data=tmp / "b", overrides=[*small, "model.pretrained=false", "model.freeze=none"]))
        rows.append((seed, source.metrics["val/accuracy"], transfer.metrics["test/accuracy"], scratch.metrics["test/accuracy"],
                     int(transfer.metrics["test/samples"])))
    mean = lambda i: sum(r[i] for r in rows) / len(rows)  # noqa: E731
    lines = [
        "# Transfer: pretrained offline on digits 0-4, fine-tuned on a few images of digits 5-9", "",
        f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, {platform.platform()}; no GPU.", "",
        f"Command: `.venv/bin/python benchmarks/transfer.py --shots {args.shots} --seeds {args.seeds}`", "",
        f"test_resnet at 32 px; {args.shots} images per digit for fine-tuning (70% train, 30% validation), "
        f"tested on the other {rows[0][4]} images of digits 5-9.", "",
        "| seed | source val accuracy (0-4) | transfer test accuracy | scratch test accuracy |", "|---|---|---|---|",
        *[f"| {s} | {a:.2%} | {t:.2%} | {c:.2%} |" for s, a, t, c, _ in rows],
        f"| mean | {mean(1):.2%} | **{mean(2):.2%}** | {mean(3):.2%} |", "",
    ]
    out = Path(__file__).parent / "results" / "transfer.md"
    out.write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
