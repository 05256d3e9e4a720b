"""Evaluate a trained model on a labelled split: metrics, confusion matrix, per-class table, predictions.

Everything lands in one folder (the run for its test split, or an evaluation folder inside the run),
as files that report.md is rendered from.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from sklearn.metrics import confusion_matrix

from trilla import metrics as M
from trilla.atomic import write_csv, write_json
from trilla.data import affect, multilabel
from trilla.data.dataset import LabelledData
from trilla.data.inputs import input_kind
from trilla.errors import TrillaError
from trilla.predict import Predictor
from trilla.evaluation.report import plot_affect_plane, plot_average_precision, plot_confusion
from trilla.figures import plot_grid

if TYPE_CHECKING:
    from trilla.config import DataConfig

WORST = 16


def predict_positions(predictor: Predictor, data: LabelledData, positions: np.ndarray, chunk: int = 2048) -> np.ndarray:
    """The predictor's outputs for these samples (with their metadata), read `chunk` samples at a time.
    Samples longer than the model's input (sounds longer than the run's clips, which the store holds
    cropped) are read from their files in windows, as `Predictor.predict` answers them."""
    parts = [positions[i : i + chunk] for i in range(0, len(positions), chunk)]
    outputs = np.concatenate([
        predictor.predict_inputs(data.inputs(part), data.metadata[part] if data.metadata.shape[1] else None) for part in parts
    ]) if len(positions) else np.zeros((0, len(predictor.classes)), np.float32)
    long = np.flatnonzero(input_kind(data.kind).longer_than_input(data, positions))
    if len(long):
        codes = data.metadata[positions[long]] if data.metadata.shape[1] else None
        found, _, _ = predictor.window_outputs([Path(data.paths[p]) for p in positions[long]], codes)
        for at, windows in zip(long, found):
            if windows is not None:
                outputs[at] = predictor.combine(windows)
    return outputs


def evaluate_split(
    predictor: Predictor, data: LabelledData, positions: np.ndarray, majority_class: int, out_dir: Path, prefix: str = "test",
    data_cfg: "DataConfig | None" = None, outputs: np.ndarray | None = None,
) -> dict[str, float]:
    """Metrics (keys `<prefix>/...`) and the files behind them, written into `out_dir`; `outputs` are
    the predictions when the caller already has them.

    With affect targets (`data_cfg.targets`), also the accuracy per axis and the clips on the
    valence/arousal plane coloured by correctness."""
    out_dir.mkdir(parents=True, exist_ok=True)
    if outputs is None:
        outputs = predict_positions(predictor, data, positions)
    if predictor.regression:
        result = _evaluate_regression(predictor, data, positions, outputs, majority_class, out_dir, prefix, data_cfg)
    elif predictor.multilabel:
        result = _evaluate_multilabel(predictor, data, positions, outputs, out_dir, prefix)
    else:
        result = _evaluate_classes(predictor, data, positions, outputs, majority_class, out_dir, prefix)
    if data_cfg is not None and data.coords is not None:
        result.update(_evaluate_affect(data_cfg, data.coords[positions], outputs, out_dir, prefix))
    return result


def _evaluate_classes(predictor, data, positions, probs, majority_class, out_dir, prefix) -> dict[str, float]:
    targets = data.targets[positions]
    classes = predictor.classes
    result = M.classification_metrics(targets, probs, majority_class, prefix)
    matrix = M.confusion(targets, probs, len(classes))
    plot_confusion(matrix, classes, out_dir / "confusion_matrix.png", title=f"Confusion matrix ({prefix})")
    write_csv(out_dir / "confusion_matrix.csv", pd.DataFrame(matrix, index=pd.Index(classes, name="true"), columns=classes), index=True)
    write_csv(out_dir / "per_class.csv", M.per_class(targets, probs, classes))
    predicted = probs.argmax(1)
    write_csv(out_dir / "predictions.csv", pd.DataFrame(
        {
            "path": [data.paths[p] for p in positions],
            "label": [classes[t] for t in targets],
            "predicted": [classes[p] for p in predicted],
            "probability": probs[np.arange(len(probs)), predicted],
            "label_probability": probs[np.arange(len(probs)), targets],
        }
    ))
    worst = np.argsort(probs[np.arange(len(probs)), targets])[:WORST]
    kind = input_kind(data.kind)
    if len(worst) and kind.view(data.inputs(positions[worst[:1]])) is not None:  # a kind a person can look at
        plot_grid(
            [kind.view(data.inputs(positions[[i]])) for i in worst],
            [f"{classes[predicted[i]]} / {classes[targets[i]]}\n{-np.log(max(probs[i, targets[i]], 1e-12)):.2f} / {probs[i, targets[i]]:.2f}"
             for i in worst],
            out_dir / "worst.png", title=f"Worst predicted ({prefix}): predicted / actual, loss / probability of the actual class",
        )
    return result


def _evaluate_multilabel(predictor, data, positions, probs, out_dir, prefix) -> dict[str, float]:
    """Ranking metrics (macro mAP, AUC, d', the study's own two), F1 at the run's thresholds, and the
    per-class AP table with display names, best and worst classes plotted."""
    targets = np.asarray(data.targets[positions]).astype(bool)
    classes = predictor.classes
    result = M.multilabel_metrics(targets, probs, prefix)
    result.update(M.thresholded_metrics(targets, probs, predictor.thresholds, prefix))
    table = M.per_class_ranking(targets, probs, classes)
    table["threshold"] = predictor.thresholds
    write_csv(out_dir / "per_class.csv", table.sort_values("average_precision", ascending=False))
    plot_average_precision(table, out_dir / "average_precision.png", title=f"Average precision per class ({prefix})")
    predicted = probs >= predictor.thresholds[None, :]
    write_csv(out_dir / "predictions.csv", pd.DataFrame(
        {
            "path": [data.paths[p] for p in positions],
            "labels": [multilabel.names(row, classes) for row in targets],
            "predicted": [multilabel.names(row, classes) for row in predicted],
            "probabilities": [";".join(f"{p:.3f}" for p in row[hit]) for row, hit in zip(probs, predicted)],
        }
    ))
    return result


def _evaluate_regression(predictor, data, positions, values, majority_class, out_dir, prefix, data_cfg) -> dict[str, float]:
    """R^2, r and RMSE per output; accuracy of the quadrant (or half-plane) the values fall in."""
    targets = data.targets[positions]
    result = M.regression_metrics(targets, values, predictor.classes, prefix)
    truth = data.strata[positions]
    predicted = affect.labels(data_cfg, values)
    result.update(M.group_metrics(truth, predicted, majority_class, prefix))
    groups = data.groups
    matrix = confusion_matrix(truth, predicted, labels=np.arange(len(groups)))
    plot_confusion(matrix, groups, out_dir / "confusion_matrix.png", title=f"Confusion matrix of the regressed quadrants ({prefix})")
    write_csv(out_dir / "confusion_matrix.csv", pd.DataFrame(matrix, index=pd.Index(groups, name="true"), columns=groups), index=True)
    frame = pd.DataFrame({"path": [data.paths[p] for p in positions], "label": [groups[t] for t in truth], "predicted": [groups[p] for p in predicted]})
    for i, name in enumerate(predictor.classes):
        frame[name], frame[f"predicted_{name}"] = targets[:, i], values[:, i]
    write_csv(out_dir / "predictions.csv", frame)
    return result


def _evaluate_affect(cfg: "DataConfig", coords: np.ndarray, outputs: np.ndarray, out_dir: Path, prefix: str) -> dict[str, float]:
    """Accuracy per trained axis (high or low), and the plane with each clip marked right or wrong."""
    signs = affect.axis_signs(cfg, outputs)
    axes = list(cfg.targets)
    right = np.ones(len(coords), dtype=bool)
    result = {}
    for axis, high in signs.items():
        hit = high == (coords[:, axes.index(axis)] >= 0)
        result[f"{prefix}/{axis}_accuracy"] = float(hit.mean())
        right &= hit
    if len(axes) == 2:
        plot_affect_plane(coords[:, axes.index("valence")], coords[:, axes.index("arousal")], right, out_dir / "affect_plane.png",
                          title=f"{prefix}: clips on the plane, {'/'.join(signs)} predicted right or wrong")
    return result


def evaluate_run(
    run, data: str | Path | None = None, out: str | Path | None = None, progress: bool = True, tta: int = 0, others: list | None = None,
) -> tuple[dict, Path]:
    """Metrics and plots of a run's best checkpoint on its own test split, or on any labelled data;
    with `others`, of the ensemble of this run and those (their predictions averaged).

    New data is packed exactly as the run's own data (image size and channels, or sample rate and
    length) and labelled with the run's classes.
    Results go to a new folder under `<run>/evaluations/` (and to `out` as JSON when given).
    """
    from trilla.data.datamodule import StoreDataModule, load_data
    from trilla.predict import Ensemble

    cfg = run.config.data
    others = others or []
    predictor = run.predictor(tta=tta)
    if others:
        members = [predictor, *(other.predictor(tta=tta) for other in others)]
        for other, member in zip(others, members[1:]):
            if other.config.input != run.config.input or member.task.hparams.input_spec != predictor.task.hparams.input_spec:
                raise TrillaError(f"run {other.id} reads its inputs differently from {run.id} (size, channels or features); an ensemble needs one preprocessing")
            if data is None and other.config.data != cfg:
                raise TrillaError(f"run {other.id} was trained on other data or splits than {run.id}: give the ensemble labelled data with --data")
        predictor = Ensemble(members)
    if data is None:
        datamodule = StoreDataModule(run.config, progress)
        datamodule.prepare()
        found = datamodule.split_data("test")
        if found is None:
            raise TrillaError(f"run {run.id} has no test split; give labelled data with --data")
        source, positions, name = *found, "test"
    else:
        source = load_data(Path(data), run.config, codec=run.codec(), classes=run.classes, vocab=predictor.vocab, progress=progress)
        positions, name = np.arange(len(source.targets)), Path(data).stem
    out_dir = run.new_evaluation_dir(f"ensemble-{name}" if others else name)
    result = evaluate_split(predictor, source, positions, run.record["majority_class"], out_dir, prefix="test", data_cfg=cfg)
    result["skipped"] = len(source.problems)
    result["tta"] = tta
    if others:
        result["ensemble"] = [str(member.path) for member in [run, *others]]
    write_json(out_dir / "metrics.json", result)
    if out is not None:
        write_json(Path(out), result)
    return result, out_dir
