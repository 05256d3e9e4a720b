"""Any number of labels per item, as AudioSet's clips: an independent score per class, trained with a
sigmoid and binary cross-entropy, or (the AudioSet study's "bipolar" output) tanh units fitted to
targets in {-1, 1} by squared error and reported as scores in [0, 1].

Validation scores the macro mAP over the whole split (average precision does not average over
batches); each label's threshold is tuned on validation after training, and an answer lists the labels
above theirs. A long item's windows combine by their maximum: a label heard in one window is present in
the whole."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from trilla.data import multilabel as multi
from trilla.objectives import register
from trilla.objectives.base import Loss, Objective

if TYPE_CHECKING:
    import pandas as pd

    from trilla.config import Config, DataConfig


@register
class MultiLabel(Objective):
    name = "multilabel"
    title = "multi-label"
    several = True
    tunes_thresholds = True
    one_label = False

    def targets(self, label_sets: list[list[str]], known: dict[str, int], classes: list[str], coords: np.ndarray | None,
                config: Config) -> tuple[np.ndarray, np.ndarray]:
        """Multi-hot targets; each item stratified by its rarest label (see data/multilabel.py)."""
        hot = multi.multi_hot(label_sets, classes)
        return hot, multi.strata(hot)

    def extra_groups(self) -> list[str]:
        return [multi.NONE]

    def counts(self, groups: list[str], classes: list[str], parts: dict[str, tuple[np.ndarray, np.ndarray]]) -> pd.DataFrame:
        return multi.positives(classes, {name: targets for name, (targets, _) in parts.items()})

    def split_labels(self, targets: np.ndarray, strata: np.ndarray, groups: list[str], classes: list[str]) -> list[str]:
        return [multi.names(row, classes) for row in targets]

    def losses(self, class_weights: list[float] | None, label_smoothing: float) -> tuple[Loss, Loss]:
        loss = nn.BCEWithLogitsLoss()
        return loss, loss

    def batch_targets(self, target: torch.Tensor) -> torch.Tensor:
        return target.float()

    def mixed_loss(self, loss: Loss, logits: torch.Tensor, targets: torch.Tensor, order: torch.Tensor, share: float) -> torch.Tensor:
        """Scores per label blend as the inputs do."""
        return loss(logits, share * targets + (1 - share) * targets[order])

    def outputs(self, logits: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(logits)

    def hits(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Every label's presence right at the 0.5 threshold."""
        return ((logits >= 0) == (targets > 0.5)).all(1)

    def validate(self, task: Any, logits: torch.Tensor, targets: torch.Tensor) -> None:
        task.val_outputs.append(self.outputs(logits).detach().cpu())
        task.val_targets.append(targets.detach().cpu())

    def validation_end(self, task: Any) -> None:
        """Macro mAP over the whole validation split, computed as every report computes it."""
        if not task.val_outputs:
            return
        from trilla.metrics import macro_average_precision

        outputs, targets = torch.cat(task.val_outputs).numpy(), torch.cat(task.val_targets).numpy()
        task.val_outputs.clear()
        task.val_targets.clear()
        task.log("val/mAP", macro_average_precision(targets, outputs), prog_bar=True)

    def combine(self, windows: np.ndarray) -> np.ndarray:
        return windows.max(0)

    def answer(self, p: np.ndarray, classes: list[str], thresholds: np.ndarray, top_k: int) -> dict:
        """Every label whose score reaches its threshold, highest first."""
        above = [j for j in np.argsort(-p) if p[j] >= thresholds[j]]
        return {"predictions": [{"label": classes[j], "probability": float(p[j]), "threshold": float(thresholds[j])} for j in above]}

    def evaluate(self, predictor: Any, data: Any, positions: np.ndarray, outputs: np.ndarray, majority_class: int, out_dir: Path,
                 prefix: str, data_cfg: DataConfig | None) -> dict[str, float]:
        """Ranking metrics (macro mAP, AUC, d', the study's own two), F1 at the run's thresholds, and the
        per-class AP table with display names, best and worst classes plotted."""
        import pandas as pd

        from trilla import metrics as M
        from trilla.atomic import write_csv
        from trilla.evaluation.plots import plot_average_precision

        targets = np.asarray(data.targets[positions]).astype(bool)
        classes = predictor.classes
        result = M.multilabel_metrics(targets, outputs, prefix)
        result.update(M.thresholded_metrics(targets, outputs, predictor.thresholds, prefix))
        table = M.per_class_ranking(targets, outputs, classes)
        table["threshold"] = predictor.thresholds
        write_csv(out_dir / "per_class.csv", table.sort_values("average_precision", ascending=False))
        plot_average_precision(table, out_dir / "average_precision.png", title=f"Average precision per class ({prefix})")
        predicted = outputs >= predictor.thresholds[None, :]
        write_csv(out_dir / "predictions.csv", pd.DataFrame(
            {
                "path": [data.paths[p] for p in positions],
                "labels": [multi.names(row, classes) for row in targets],
                "predicted": [multi.names(row, classes) for row in predicted],
                "probabilities": [";".join(f"{p:.3f}" for p in row[hit]) for row, hit in zip(outputs, predicted)],
            }
        ))
        return result


@register
class Bipolar(MultiLabel):
    name = "bipolar"
    title = "multi-label (bipolar)"

    def losses(self, class_weights: list[float] | None, label_smoothing: float) -> tuple[Loss, Loss]:
        return _bipolar_mse, _bipolar_mse

    def outputs(self, logits: torch.Tensor) -> torch.Tensor:
        return (torch.tanh(logits) + 1) / 2


def _bipolar_mse(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """The AudioSet study's bipolar output: tanh units fitted to targets in {-1, 1} by squared error."""
    return nn.functional.mse_loss(torch.tanh(logits), 2 * targets - 1)
