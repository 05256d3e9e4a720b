"""The results table across runs, in the guitar/bass study's form."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from trilla.errors import TrillaError
from trilla.runs import find_runs

COLUMNS = [
    "id", "batch_size", "lr", "momentum", "min_val_loss", "best_epoch", "test/accuracy", "test/balanced_accuracy",
    "time_to_best_s", "train_time_s", "architecture", "status",
]


def runs_table(root: Path, sort: str | None = None) -> pd.DataFrame:
    runs = find_runs(Path(root))
    if not runs:
        raise TrillaError(f"no runs found under {root}")
    rows = []
    for run in runs:
        config, metrics, info = run.config, run.metrics, run.info
        rows.append(
            {
                "id": run.id,
                "batch_size": config.train.batch_size,
                "lr": config.train.lr,
                "momentum": config.train.momentum if config.train.optimizer in ("sgd", "rmsprop") else None,
                **{key: metrics.get(key) for key in COLUMNS[4:10]},
                "architecture": info.get("model_summary", config.model.summary()),
                "status": info.get("status"),
            }
        )
    table = pd.DataFrame(rows, columns=COLUMNS)
    if sort:
        if sort not in table.columns:
            raise TrillaError(f"cannot sort by {sort!r}; columns are {', '.join(table.columns)}")
        ascending = sort.endswith("loss") or sort.endswith("_s") or sort == "id"
        table = table.sort_values(sort, ascending=ascending, na_position="last")
    return table.reset_index(drop=True)
