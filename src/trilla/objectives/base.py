"""What a run predicts, as one object: how labels become targets, the loss, what an output means, how
validation scores it, how windows of a long item combine, what an answer says and what its
evaluation writes.

`ClassificationTask`, `Predictor`, the dataset and the evaluation ask the run's objective instead of
branching on the task's name, so a new objective (ordinal labels, say) is one module registered here.
The defaults are those of single-label classification, which most objectives share a part of.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import torch
from torch import nn

if TYPE_CHECKING:
    import pandas as pd

    from trilla.config import Config, DataConfig

WORST = 16  # samples in the grid of the worst predicted
Loss = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


class Objective:
    """One way of predicting. Subclasses set `name` (the key a checkpoint's hyperparameters keep) and
    `title` (what messages call it), and override what differs from one class per item."""

    name: ClassVar[str]
    title: ClassVar[str]
    several: ClassVar[bool] = False  # any number of labels per item: targets are one 0/1 per class
    tunes_thresholds: ClassVar[bool] = False  # thresholds.json is chosen on validation after training
    one_label: ClassVar[bool] = True  # one class per item: at least two classes to learn, a label a review can vote on

    # From labels to targets (the data side).

    def label_names(self, config: Config, classes: list[str]) -> list[str]:
        """The names a label of the listing may take: the classes, or (regression) the regions of
        the plane that stratify the split."""
        return classes

    def targets(self, label_sets: list[list[str]], known: dict[str, int], classes: list[str], coords: np.ndarray | None,
                config: Config) -> tuple[np.ndarray, np.ndarray]:
        """(targets, strata) of the kept samples, each with its labels in `label_sets`: class indices,
        which also stratify the split."""
        strata = np.asarray([known[found[0]] for found in label_sets], dtype=np.int64)
        return strata, strata

    def extra_groups(self) -> list[str]:
        """Strata beyond the label names (multi-label: the items with no label)."""
        return []

    def counts(self, groups: list[str], classes: list[str], parts: dict[str, tuple[np.ndarray, np.ndarray]]) -> pd.DataFrame:
        """Examples per class and split, from each split's (targets, strata)."""
        from trilla.data.splits import class_counts

        return class_counts(groups, {name: strata for name, (_, strata) in parts.items()})

    def split_labels(self, targets: np.ndarray, strata: np.ndarray, groups: list[str], classes: list[str]) -> list[str]:
        """Each sample's label as splits.csv writes it."""
        return [groups[s] for s in strata]

    # Training.

    def losses(self, class_weights: list[float] | None, label_smoothing: float) -> tuple[Loss, Loss]:
        """(training loss, validation loss): the class weights and label smoothing shape training only."""
        weight = torch.tensor(class_weights, dtype=torch.float) if class_weights else None
        return nn.CrossEntropyLoss(weight=weight, label_smoothing=label_smoothing), nn.CrossEntropyLoss()

    def batch_targets(self, target: torch.Tensor) -> torch.Tensor:
        return target

    def mixed_loss(self, loss: Loss, logits: torch.Tensor, targets: torch.Tensor, order: torch.Tensor, share: float) -> torch.Tensor:
        """Mixup's loss: the two samples' losses weighted by their shares (class indices cannot be blended)."""
        return share * loss(logits, targets) + (1 - share) * loss(logits, targets[order])

    def outputs(self, logits: torch.Tensor) -> torch.Tensor:
        """What a prediction is: here the class probabilities."""
        return torch.softmax(logits, dim=1)

    def hits(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Correct per sample (the training accuracy the progress bar shows)."""
        return logits.argmax(1) == targets

    def validate(self, task: Any, logits: torch.Tensor, targets: torch.Tensor) -> None:
        """Validation metrics of one batch, logged by `task` (accuracy and balanced accuracy)."""
        task.val_accuracy.update(logits, targets)
        task.val_balanced.update(logits, targets)
        task.log("val/accuracy", task.val_accuracy, prog_bar=True, on_epoch=True)
        task.log("val/balanced_accuracy", task.val_balanced, on_epoch=True)

    def validation_end(self, task: Any) -> None:
        """Metrics of the whole validation split, once an epoch (none here: accuracy averages over batches)."""

    # Prediction.

    def combine(self, windows: np.ndarray) -> np.ndarray:
        """One answer from an item's windows (W, outputs): the mean of their probabilities."""
        return windows.mean(0)

    def answer(self, p: np.ndarray, classes: list[str], thresholds: np.ndarray, top_k: int) -> dict:
        """What one prediction says: the top-k labels with their probabilities."""
        best = np.argsort(-p)[: min(top_k, len(classes))]
        return {"predictions": [{"label": classes[j], "probability": float(p[j])} for j in best]}

    # Evaluation.

    def evaluate(self, predictor: Any, data: Any, positions: np.ndarray, outputs: np.ndarray, majority_class: int, out_dir: Path,
                 prefix: str, data_cfg: DataConfig | None) -> dict[str, float]:
        """Metrics (keys `<prefix>/...`) of these outputs, and the files behind them in `out_dir`: the
        confusion matrix, the per-class table, every prediction and a grid of the worst predicted."""
        import pandas as pd

        from trilla import metrics as M
        from trilla.atomic import write_csv
        from trilla.evaluation.plots import plot_confusion
        from trilla.figures import plot_grid
        from trilla.kinds.protocols import view

        probs, targets, classes = outputs, data.targets[positions], predictor.classes
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
        kind = predictor.input
        if len(worst) and view(kind, data.inputs(positions[worst[:1]])) is not None:  # a kind a person can look at
            plot_grid(
                [view(kind, data.inputs(positions[[i]])) for i in worst],
                [f"{classes[predicted[i]]} / {classes[targets[i]]}\n{-np.log(max(probs[i, targets[i]], 1e-12)):.2f} / {probs[i, targets[i]]:.2f}"
                 for i in worst],
                out_dir / "worst.png", title=f"Worst predicted ({prefix}): predicted / actual, loss / probability of the actual class",
            )
        return result
