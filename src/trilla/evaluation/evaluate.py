"""Evaluate a trained model on a labelled split: the metrics and files its objective writes (confusion
matrix, per-class table, predictions; see trilla.objectives), and the plane for affect targets.

Everything lands in one folder (the run for its test split, or an evaluation folder inside the run),
as files that report.md is rendered from.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from trilla.atomic import write_json
from trilla.data import affect
from trilla.data.dataset import LabelledData
from trilla.errors import TrillaError
from trilla.evaluation.plots import plot_affect_plane
from trilla.kinds import input_kind
from trilla.predict import Predictor

if TYPE_CHECKING:
    from trilla.config import DataConfig


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
    data_cfg: DataConfig | None = None, outputs: np.ndarray | None = None,
) -> dict[str, float]:
    """Metrics (keys `<prefix>/...`) and the files behind them, written into `out_dir`; `outputs` are
    the predictions when the caller already has them.

    With affect targets (`data_cfg.targets`), also the accuracy per axis and the clips on the
    valence/arousal plane coloured by correctness."""
    out_dir.mkdir(parents=True, exist_ok=True)
    if outputs is None:
        outputs = predict_positions(predictor, data, positions)
    result = predictor.objective.evaluate(predictor, data, positions, outputs, majority_class, out_dir, prefix, data_cfg)
    if data_cfg is not None and data.coords is not None:
        result.update(_evaluate_affect(data_cfg, data.coords[positions], outputs, out_dir, prefix))
    return result


def _evaluate_affect(cfg: DataConfig, coords: np.ndarray, outputs: np.ndarray, out_dir: Path, prefix: str) -> dict[str, float]:
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
