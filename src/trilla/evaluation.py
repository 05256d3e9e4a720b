"""Evaluate a trained model on a labelled split: metrics, confusion matrix, per-class table, predictions.

Everything lands in one folder (the run for its test split, or an evaluation folder inside the run),
as files that report.md is rendered from.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from trilla import metrics as M
from trilla.data.dataset import ImageData
from trilla.predict import Predictor
from trilla.report import plot_confusion, plot_worst

WORST = 16


def evaluate_split(
    predictor: Predictor, data: ImageData, positions: np.ndarray, majority_class: int, out_dir: Path, prefix: str = "test",
    chunk: int = 2048,
) -> dict[str, float]:
    """Metrics (keys `<prefix>/...`) and the files behind them, written into `out_dir`."""
    out_dir.mkdir(parents=True, exist_ok=True)
    probs = np.concatenate([
        predictor.predict_arrays(data.images(part), data.metadata[part] if data.metadata.shape[1] else None)
        for part in (positions[i : i + chunk] for i in range(0, len(positions), chunk))
    ])
    targets = data.targets[positions]
    classes = predictor.classes
    result = M.classification_metrics(targets, probs, majority_class, prefix)
    matrix = M.confusion(targets, probs, len(classes))
    plot_confusion(matrix, classes, out_dir / "confusion_matrix.png", title=f"Confusion matrix ({prefix})")
    pd.DataFrame(matrix, index=pd.Index(classes, name="true"), columns=classes).to_csv(out_dir / "confusion_matrix.csv")
    M.per_class(targets, probs, classes).to_csv(out_dir / "per_class.csv", index=False)
    predicted = probs.argmax(1)
    pd.DataFrame(
        {
            "path": [data.paths[p] for p in positions],
            "label": [classes[t] for t in targets],
            "predicted": [classes[p] for p in predicted],
            "probability": probs[np.arange(len(probs)), predicted],
            "label_probability": probs[np.arange(len(probs)), targets],
        }
    ).to_csv(out_dir / "predictions.csv", index=False)
    worst = np.argsort(probs[np.arange(len(probs)), targets])[:WORST]
    plot_worst(
        data.images(positions[worst]),
        [f"{classes[targets[i]]}\n-> {classes[predicted[i]]} {probs[i, predicted[i]]:.2f}" for i in worst],
        out_dir / "worst.png", title=f"Worst predicted ({prefix}): true -> predicted, probability",
    )
    return result


def write_json(path: Path, payload: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(payload, indent=2, sort_keys=True))
    tmp.replace(path)


def evaluate_run(run, data: str | Path | None = None, out: str | Path | None = None, progress: bool = True, tta: int = 0) -> tuple[dict, Path]:
    """Metrics and plots of a run's best checkpoint on its own test split, or on any labelled data.

    New data is packed with the run's image size and channels and labelled with the run's classes.
    Results go to a new folder under `<run>/evaluations/` (and to `out` as JSON when given).
    """
    from trilla.data.datamodule import ImageDataModule
    from trilla.data.dataset import load_labelled
    from trilla.errors import TrillaError
    from trilla.runs import new_run_dir

    cfg = run.config.data
    predictor = run.predictor(tta=tta)
    if data is None:
        datamodule = ImageDataModule(run.config, progress)
        datamodule.prepare()
        found = datamodule.split_data("test")
        if found is None:
            raise TrillaError(f"run {run.id} has no test split; give labelled data with --data")
        source, positions, name = *found, "test"
    else:
        source = load_labelled(
            Path(data), image_size=run.info["data"]["image_size"], channels=run.info["data"]["channels"], path_column=cfg.path_column,
            label_column=cfg.label_column, label_level=cfg.label_level, classes=run.classes, cache_dir=cfg.store, progress=progress,
            metadata=cfg.metadata, vocab=predictor.vocab,
        )
        positions, name = np.arange(len(source.targets)), Path(data).stem
    out_dir = new_run_dir(run.path / "evaluations", name)
    result = evaluate_split(predictor, source, positions, run.info["majority_class"], out_dir, prefix="test")
    result["skipped"] = len(source.problems)
    result["tta"] = tta
    write_json(out_dir / "metrics.json", result)
    if out is not None:
        write_json(Path(out), result)
    return result, out_dir
