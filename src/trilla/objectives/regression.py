"""Values on the valence/arousal plane (the music study's regression): one output per trained axis,
fitted by mean squared error. Training reports the accuracy of the quadrant (or half-plane) the values
fall in, the answer gives the values, and the evaluation adds R^2, r and RMSE per axis to the quadrant
confusion matrix. The listing's labels are the regions of the plane, which stratify the split."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from trilla.data import affect
from trilla.objectives import register
from trilla.objectives.base import Loss, Objective

if TYPE_CHECKING:
    from trilla.config import Config, DataConfig


@register
class Regression(Objective):
    name = "regression"
    title = "regression"
    one_label = False

    def label_names(self, config: Config, classes: list[str]) -> list[str]:
        return affect.strata_names(config.data)

    def targets(self, label_sets: list[list[str]], known: dict[str, int], classes: list[str], coords: np.ndarray | None,
                config: Config) -> tuple[np.ndarray, np.ndarray]:
        """The trained axes' coordinates, stratified by their region of the plane."""
        strata = np.asarray([known[found[0]] for found in label_sets], dtype=np.int64)
        trained = [list(config.data.targets).index(axis) for axis in config.data.trained_axes()]
        return coords[:, trained].astype(np.float32), strata

    def losses(self, class_weights: list[float] | None, label_smoothing: float) -> tuple[Loss, Loss]:
        loss = nn.MSELoss()
        return loss, loss

    def mixed_loss(self, loss: Loss, logits: torch.Tensor, targets: torch.Tensor, order: torch.Tensor, share: float) -> torch.Tensor:
        return loss(logits, share * targets + (1 - share) * targets[order])

    def outputs(self, logits: torch.Tensor) -> torch.Tensor:
        return logits

    def hits(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """The sign of every output right: the quadrant (or half-plane)."""
        return ((logits >= 0) == (targets >= 0)).all(1)

    def validate(self, task: Any, logits: torch.Tensor, targets: torch.Tensor) -> None:
        """Accuracy of the quadrant (or half-plane) the coordinates fall in."""
        hits = self.hits(logits, targets).long()
        task.val_accuracy.update(hits, torch.ones_like(hits))
        task.val_balanced.update(hits, torch.ones_like(hits))
        task.log("val/accuracy", task.val_accuracy, prog_bar=True, on_epoch=True)
        task.log("val/balanced_accuracy", task.val_balanced, on_epoch=True)

    def answer(self, p: np.ndarray, classes: list[str], thresholds: np.ndarray, top_k: int) -> dict:
        return {"values": {name: float(v) for name, v in zip(classes, p)}}

    def evaluate(self, predictor: Any, data: Any, positions: np.ndarray, outputs: np.ndarray, majority_class: int, out_dir: Path,
                 prefix: str, data_cfg: DataConfig | None) -> dict[str, float]:
        """R^2, r and RMSE per output; accuracy of the quadrant (or half-plane) the values fall in."""
        import pandas as pd
        from sklearn.metrics import confusion_matrix

        from trilla import metrics as M
        from trilla.atomic import write_csv
        from trilla.evaluation.plots import plot_confusion

        targets = data.targets[positions]
        result = M.regression_metrics(targets, outputs, predictor.classes, prefix)
        truth = data.strata[positions]
        predicted = affect.labels(data_cfg, outputs)
        result.update(M.group_metrics(truth, predicted, majority_class, prefix))
        groups = data.groups
        matrix = confusion_matrix(truth, predicted, labels=np.arange(len(groups)))
        plot_confusion(matrix, groups, out_dir / "confusion_matrix.png", title=f"Confusion matrix of the regressed quadrants ({prefix})")
        write_csv(out_dir / "confusion_matrix.csv", pd.DataFrame(matrix, index=pd.Index(groups, name="true"), columns=groups), index=True)
        frame = pd.DataFrame({"path": [data.paths[p] for p in positions], "label": [groups[t] for t in truth],
                              "predicted": [groups[p] for p in predicted]})
        for i, name in enumerate(predictor.classes):
            frame[name], frame[f"predicted_{name}"] = targets[:, i], outputs[:, i]
        write_csv(out_dir / "predictions.csv", frame)
        return result
