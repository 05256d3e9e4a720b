"""The leaderboard across runs: the guitar/bass study's table, plus every config key the runs differ in.

A folder of runs (a sweep's, or any) is compared by what actually varied between them, read from each
run's resolved config, so the table needs no record of how the runs were launched.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from trilla.errors import TrillaError
from trilla.metrics import near_baseline
from trilla.runs import Run, find_runs

STUDY = {"batch_size": "train.batch_size", "lr": "train.lr", "momentum": "train.momentum"}  # the guitar/bass study's columns, always shown
METRICS = ["min_val_loss", "best_epoch", "val/mAP", "test/accuracy", "test/balanced_accuracy", "test/majority_baseline", "test/mAP",
           "test/mean_auc", "time_to_best_s", "train_time_s"]
IGNORED = ("run.", "train.progress", "data.path", "data.test_path")  # where a run was filed, not what it was


def flatten(value, prefix: str = "") -> dict[str, object]:
    """Dotted keys of a nested config, list items by index (model.conv.0.maps), as --set and sweeps write them."""
    if isinstance(value, dict):
        items = value.items()
    elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
        items = ((str(i), v) for i, v in enumerate(value))
    else:
        return {prefix: value if not isinstance(value, list) else str(value)}
    out: dict[str, object] = {}
    for key, item in items:
        out.update(flatten(item, f"{prefix}.{key}" if prefix else str(key)))
    return out


def varied_keys(configs: list[dict[str, object]]) -> list[str]:
    """The dotted keys whose value is not the same in every run, in config order."""
    keys = list(dict.fromkeys(key for config in configs for key in config))
    return [key for key in keys if not key.startswith(IGNORED) and len({repr(c.get(key)) for c in configs}) > 1]


def runs_table(root: Path, sort: str | None = None) -> pd.DataFrame:
    """The leaderboard of every run below `root`."""
    runs = find_runs(Path(root))
    if not runs:
        raise TrillaError(f"no runs found under {root}")
    return leaderboard(runs, sort)


def leaderboard(runs: list[Run], sort: str | None = None) -> pd.DataFrame:
    """One row per run: id, the study's columns, the varied keys, metrics, times, status, and whether the
    run scored at the majority baseline (it learned nothing but the class frequencies)."""
    configs = [flatten(run.config.model_dump(mode="json")) for run in runs]
    varied = [key for key in varied_keys(configs) if key not in STUDY.values()]
    rows = [_row(run, config, varied) for run, config in zip(runs, configs)]
    table = pd.DataFrame(rows)
    metrics = [key for key in METRICS if key in table and table[key].notna().any()]
    extra = [sort] if sort and sort in table and sort not in [*metrics, *varied, *STUDY] else []
    errors = ["error"] if "error" in table and table["error"].notna().any() else []
    columns = ["id", *STUDY, *varied, *metrics, *extra, "architecture", "status", "at_majority", *errors, "path"]
    table = table.reindex(columns=columns)
    if sort:
        if sort not in table.columns:
            raise TrillaError(f"cannot sort by {sort!r}; columns are {', '.join(table.columns)}")
        ascending = sort.endswith("loss") or sort.endswith("_s") or sort == "id"
        table = table.sort_values(sort, ascending=ascending, na_position="last", kind="stable")
    return table.reset_index(drop=True)


def _row(run: Run, config: dict[str, object], varied: list[str]) -> dict[str, object]:
    train, metrics, info = run.config.train, run.metrics, run.info
    accuracy, baseline = metrics.get("test/accuracy"), metrics.get("test/majority_baseline")
    return {
        "id": run.id,
        "path": str(run.path),
        "batch_size": train.batch_size,
        "lr": train.lr,
        "momentum": train.momentum if train.optimizer in ("sgd", "rmsprop") else None,
        **{key: config.get(key) for key in varied},
        **metrics,
        "architecture": info.get("model_summary", run.config.model.summary()),
        "status": run.status,
        "at_majority": None if accuracy is None else near_baseline(accuracy, baseline),
        "error": info.get("error"),
    }


MAIN = ["min_val_loss", "val/mAP", "test/accuracy", "test/balanced_accuracy", "test/mAP"]  # what a person compares runs by


def for_people(table: pd.DataFrame, columns: str | None = None) -> pd.DataFrame:
    """The leaderboard as a person reads it: the id, the keys the runs differ in (all named as dotted
    config keys), the main metrics, the status and the majority flag. `columns` adds more, comma-separated
    (`train_time_s,best_epoch`), or is `all` for the whole table."""
    table = table.rename(columns={short: dotted for short, dotted in STUDY.items()})
    if columns == "all":
        return table.drop(columns="path", errors="ignore")
    extra = [c.strip() for c in (columns or "").split(",") if c.strip()]
    unknown = [c for c in extra if c not in table.columns]
    if unknown:
        raise TrillaError(f"--columns: no column {', '.join(map(repr, unknown))}; the columns are {', '.join(c for c in table.columns if c != 'path')}")
    varied = [c for c in table.columns if "." in c and c not in MAIN and table[c].astype(str).nunique() > 1]
    shown = ["id", *varied, *[c for c in MAIN if c in table and table[c].notna().any()], *extra, "status", "at_majority",
             *(["error"] if "error" in table else [])]
    return table[list(dict.fromkeys(shown))]


def to_html(table: pd.DataFrame, title: str) -> str:
    """A standalone page; runs at the majority baseline are shaded, and each id links to its run's
    report.html (relative to where the leaderboard was asked for)."""
    import html

    table = table.copy()
    if "path" in table:
        table["id"] = [f'<a href="{html.escape(str(Path(path) / "report.html"))}">{html.escape(str(run_id))}</a>'
                       if (Path(path) / "report.html").is_file() else html.escape(str(run_id)) for run_id, path in zip(table["id"], table["path"])]
        table = table.drop(columns="path")
    shade = ["background-color: #fde2e1" if flagged is True else "" for flagged in table.get("at_majority", [])]
    styled = table.style.apply(lambda row: [shade[row.name]] * len(row), axis=1).format(precision=4, na_rep="").hide(axis="index")
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{title}</title>"
            "<style>body{font-family:sans-serif} table{border-collapse:collapse} td,th{padding:2px 8px;border-bottom:1px solid #ddd}</style>"
            f"</head><body><h1>{title}</h1><p>Shaded: at the majority baseline (the run learned nothing beyond the class "
            f"frequencies).</p>{styled.to_html()}</body></html>\n")
