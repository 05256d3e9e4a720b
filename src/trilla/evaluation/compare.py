"""`trilla compare`: runs side by side as pictures, the learning curves overlaid and the chosen metric
against every config key the runs differ in (the question a sweep asks: which knob mattered?)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.ticker import MaxNLocator

from trilla.errors import TrillaError
from trilla.evaluation.results import STUDY, leaderboard
from trilla.figures import plt, save_figure
from trilla.paths import free_path
from trilla.runs import Run, find_runs

DEFAULT_METRICS = ("test/balanced_accuracy", "test/mAP", "val/mAP", "min_val_loss")


RATES = ("lr", "learning_rate", "weight_decay")  # keys shown on a log axis when they span a factor of 10


def compare(paths: list[Path], out: Path, sort: str | None = None) -> list[Path]:
    """Writes curves.png and one <metric>_by_key.png into `out` (existing files are kept, new ones get
    a number) and returns their paths."""
    runs = [run for path in paths for run in find_runs(Path(path))]
    if len(runs) < 2:
        raise TrillaError(f"compare needs at least two runs; found {len(runs)} in {', '.join(map(str, paths))}")
    table = leaderboard(runs)
    metric = sort or next((m for m in DEFAULT_METRICS if m in table and table[m].notna().any()), None)
    if metric is None or metric not in table:
        raise TrillaError(f"no metric {sort!r} in these runs; columns are {', '.join(table.columns)}")
    out.mkdir(parents=True, exist_ok=True)
    labels = [_label(run) for run in runs]
    written = [_plot_curves(runs, labels, free_path(out / "curves.png"))]
    keys = [c for c in table.columns if "." in c] + [c for c in STUDY if table[c].nunique(dropna=True) > 1]  # varied keys are dotted
    if keys:
        written.append(_plot_by_key(table, keys, metric, free_path(out / f"{metric.replace('/', '_')}_by_key.png")))
    return written


def _label(run: Run) -> str:
    """The run's name without its timestamp prefix (YYYYMMDD-HHMMSS-)."""
    parts = run.id.split("-", 2)
    return parts[2] if len(parts) == 3 and parts[0].isdigit() and parts[1].isdigit() else run.id


def _plot_curves(runs: list[Run], labels: list[str], path: Path) -> Path:
    histories = [run.history for run in runs]
    score = next((k for k in ("val/mAP", "val/balanced_accuracy", "val/accuracy") if any(k in h for h in histories)), None)
    fig, axes = plt.subplots(1, 2 if score else 1, figsize=(12 if score else 6.5, 4.5), squeeze=False)
    colors = plt.get_cmap("tab10" if len(runs) <= 10 else "tab20")
    for i, (history, label) in enumerate(zip(histories, labels)):
        if history.empty:
            continue
        color = colors(i % colors.N)
        axes[0, 0].plot(history["epoch"], history["val/loss"], color=color, label=label)
        if "train/loss" in history:
            axes[0, 0].plot(history["epoch"], history["train/loss"], color=color, linestyle=":", alpha=0.6)
        if score and score in history:
            axes[0, 1].plot(history["epoch"], history[score], color=color, label=label)
    axes[0, 0].set_ylabel("loss (validation solid, train dotted)")
    if score:
        axes[0, 1].set_ylabel(score)
    for ax in axes[0]:
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    axes[0, -1].legend(fontsize=7, loc="best")
    fig.suptitle(f"Learning curves of {len(runs)} runs")
    fig.tight_layout()
    save_figure(fig, path, dpi=110)
    return path


def _plot_by_key(table: pd.DataFrame, keys: list[str], metric: str, path: Path) -> Path:
    """One panel per varied key: every run's metric at its value of the key; numeric keys on a numeric
    (log, for learning rates) axis, others as categories."""
    cols = min(3, len(keys))
    rows = -(-len(keys) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.5 * cols, 3.6 * rows), squeeze=False)
    for ax, key in zip(axes.flat, keys):
        values = table[key]
        numeric = pd.to_numeric(values, errors="coerce")
        if numeric.notna().all():
            x = numeric.to_numpy(dtype=float)
            if key.endswith(RATES) and (x > 0).all() and x.max() / x.min() >= 10:
                ax.set_xscale("log")
            elif np.all(x == np.round(x)):  # epochs, layers, units: whole-number ticks
                ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        else:
            categories = list(dict.fromkeys(values.astype(str)))
            x = np.asarray([categories.index(v) for v in values.astype(str)], dtype=float)
            ax.set_xticks(range(len(categories)), categories, rotation=30, ha="right", fontsize=7)
        flagged = table["at_majority"].fillna(False).astype(bool).to_numpy()
        ax.scatter(x[~flagged], table[metric][~flagged], color="tab:blue", label="runs")
        if flagged.any():
            ax.scatter(x[flagged], table[metric][flagged], color="tab:red", marker="x", label="at the majority baseline")
        ax.legend(fontsize=7)
        ax.set_xlabel(key)
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(keys):]:
        ax.axis("off")
    fig.suptitle(f"{metric} against each key the runs differ in")
    fig.tight_layout()
    save_figure(fig, path, dpi=110)
    return path
