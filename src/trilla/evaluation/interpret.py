"""fastai's interpretation of a trained run: its top losses and its most confused pairs.

The top losses are the samples of a split whose true class the model found least likely (the loss is
the cross-entropy, -log of that probability), shown as the input kind shows a sample to a person, each
captioned prediction / actual / loss / probability of the actual class, as fastai's `plot_top_losses`
does; the most confused pairs are the confusion matrix's largest off-diagonal cells (fastai's
`most_confused`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from trilla import metrics as M
from trilla.atomic import write_csv
from trilla.errors import TrillaError
from trilla.evaluation.evaluate import predict_positions
from trilla.figures import plot_grid
from trilla.kinds import input_kind
from trilla.kinds.protocols import view


def interpret_run(run, split: str = "test", top: int = 16, min_count: int = 1, progress: bool = True) -> tuple[pd.DataFrame, pd.DataFrame, Path]:
    """(top losses, most confused pairs, the folder holding top_losses.png and both tables as CSV)."""
    from trilla.data.datamodule import StoreDataModule

    if split not in ("train", "val", "test"):
        raise TrillaError(f"--split must be train, val or test, not {split!r}")
    predictor = run.predictor()
    if not predictor.objective.one_label:
        raise TrillaError(f"interpret ranks the losses of single-label runs; this run is {predictor.objective.title}")
    datamodule = StoreDataModule(run.config, progress)
    datamodule.prepare()
    found = datamodule.split_data(split)
    if found is None:
        raise TrillaError(f"run {run.id} has no {split} split")
    data, positions = found
    probs = predict_positions(predictor, data, positions)
    targets = data.targets[positions]
    classes = predictor.classes
    truth = probs[np.arange(len(probs)), targets]
    loss = -np.log(np.maximum(truth, 1e-12))
    predicted = probs.argmax(1)
    order = np.argsort(-loss, kind="stable")[:top]
    losses = pd.DataFrame({
        "path": [data.paths[positions[i]] for i in order], "predicted": [classes[predicted[i]] for i in order],
        "actual": [classes[targets[i]] for i in order], "loss": loss[order], "probability_of_actual": truth[order],
    })
    matrix = M.confusion(targets, probs, len(classes))
    pairs = [(classes[i], classes[j], int(matrix[i, j])) for i in range(len(classes)) for j in range(len(classes))
             if i != j and matrix[i, j] >= min_count]
    confused = pd.DataFrame(sorted(pairs, key=lambda p: -p[2]), columns=["actual", "predicted", "count"])
    out_dir = run.new_evaluation_dir(f"interpret-{split}")
    write_csv(out_dir / "top_losses.csv", losses)
    write_csv(out_dir / "most_confused.csv", confused)
    kind = input_kind(data.kind)
    pictures = [view(kind, data.inputs(positions[[i]])) for i in order]
    if pictures and pictures[0] is not None:
        plot_grid(pictures, [f"{r.predicted} / {r.actual}\n{r.loss:.2f} / {r.probability_of_actual:.2f}" for r in losses.itertuples()],
                  out_dir / "top_losses.png", title=f"Top losses ({split}): prediction / actual, loss / probability of the actual class")
    return losses, confused, out_dir
