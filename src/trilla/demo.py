"""The demo behind `make demo`: scikit-learn's digits as a PNG folder, trained with defaults end to end."""

from __future__ import annotations

import json
from pathlib import Path

from trilla.config import load_config
from trilla.datasets import write_sklearn_digits
from trilla.training.train import train

DEMO_EPOCHS = 12  # the defaults' 60 take 4 minutes on 2 cores; 12 score 100% on the demo's test split for seeds 0-2


def run_demo(root: Path = Path("demo"), echo=print) -> Path:
    """Train, evaluate and predict two images; returns the report's path. Every default but the
    number of epochs, so the demo ends within a minute on a laptop (README: measured times)."""
    data = root / "digits"
    if not data.is_dir():
        write_sklearn_digits(data)
        echo(f"wrote scikit-learn's digits as PNG files under {data}/<digit>/")
    run = train(load_config(data=data, overrides=[f"run.dir={root / 'runs'}", f"train.epochs={DEMO_EPOCHS}"]))
    metrics, out_dir = run.evaluate()
    echo(f"evaluated on the held-out test split: accuracy {metrics['test/accuracy']:.2%} (details in {out_dir})")
    examples = [sorted((data / digit).iterdir())[0] for digit in ("3", "8")]
    for record in run.predict(examples, top_k=3):
        echo(json.dumps(record))
    return run.report
