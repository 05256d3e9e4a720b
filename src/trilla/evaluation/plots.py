"""The plots of a run's evaluation and training: confusion matrices, the affect plane, class counts,
learning curves, average precision per class. Each writes one PNG that report.md shows."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from trilla.figures import plt, save_figure

FOCUS = 30  # classes up to which the confusion matrix shows counts; beyond, a second plot of the most confused


def plot_confusion(matrix: np.ndarray, classes: list[str], path: Path, title: str = "Confusion matrix") -> None:
    """Rows normalized to recall so rare classes stay visible; counts written in while they fit. Past
    `FOCUS` classes (the cone-snail study had 83 species) the whole matrix has no room for numbers, so
    `<path>_top.png` shows, with counts, only the classes of the most frequent confusions."""
    _plot_matrix(matrix, classes, path, title)
    if len(classes) > FOCUS:
        keep = most_confused_classes(matrix, FOCUS)
        _plot_matrix(matrix[np.ix_(keep, keep)], [classes[i] for i in keep], path.with_name(f"{path.stem}_top{path.suffix}"),
                     f"{title}: the {len(keep)} classes most confused")


def most_confused_classes(matrix: np.ndarray, limit: int) -> list[int]:
    """Up to `limit` classes, taken in the order of the largest off-diagonal counts (either side of a pair)."""
    errors = matrix.astype(float).copy()
    np.fill_diagonal(errors, 0)
    keep: list[int] = []
    for flat in np.argsort(-errors, axis=None):
        i, j = divmod(int(flat), len(matrix))
        if errors[i, j] <= 0 or len(keep) >= limit:
            break
        keep += [c for c in (i, j) if c not in keep][: limit - len(keep)]
    return sorted(keep) or list(range(min(limit, len(matrix))))


def _plot_matrix(matrix: np.ndarray, classes: list[str], path: Path, title: str) -> None:
    n = len(classes)
    totals = matrix.sum(1, keepdims=True)
    normalized = np.divide(matrix, totals, out=np.zeros_like(matrix, dtype=float), where=totals > 0)
    side = min(max(4.0, 0.35 * n + 2.5), 40.0)
    fig, ax = plt.subplots(figsize=(side, side * 0.9))
    image = ax.imshow(normalized, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(n), classes, rotation=90 if n > 6 else 0, fontsize=max(5, 10 - n // 20))
    ax.set_yticks(range(n), classes, fontsize=max(5, 10 - n // 20))
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    if n <= FOCUS:
        for i in range(n):
            for j in range(n):
                if matrix[i, j]:
                    color = "white" if normalized[i, j] > 0.5 else "black"
                    ax.text(j, i, str(matrix[i, j]), ha="center", va="center", color=color, fontsize=8)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="share of the true class")
    fig.tight_layout()
    save_figure(fig, path, dpi=110)


def plot_affect_plane(valence: np.ndarray, arousal: np.ndarray, right: np.ndarray, path: Path, title: str) -> None:
    """Clips on Thayer's plane (valence across, arousal up) in green where predicted right, red where
    wrong, with the quadrant names, as the music study's figures."""
    fig, ax = plt.subplots(figsize=(6, 6))
    for mask, colour, label in ((right, "tab:green", "right"), (~right, "tab:red", "wrong")):
        ax.scatter(valence[mask], arousal[mask], s=10, c=colour, alpha=0.7, label=f"{label} ({int(mask.sum())})")
    ax.axhline(0, color="grey", lw=0.8)
    ax.axvline(0, color="grey", lw=0.8)
    for x, y, name in ((0.5, 0.5, "happy"), (-0.5, 0.5, "stress"), (-0.5, -0.5, "sad"), (0.5, -0.5, "calm")):
        ax.text(x, y, name, ha="center", va="center", fontsize=14, color="grey", alpha=0.6)
    ax.set(xlim=(-1.05, 1.05), ylim=(-1.05, 1.05), xlabel="valence (pleasure)", ylabel="arousal (energy)", title=title)
    ax.legend(loc="lower right")
    fig.tight_layout()
    save_figure(fig, path, dpi=100)


def plot_class_counts(counts: pd.DataFrame, path: Path) -> None:
    """Images per class in each split, largest training class first: imbalance at a glance."""
    splits = [c for c in ("train", "val", "test") if c in counts]
    ordered = counts.sort_values(splits[0], ascending=True)
    height = max(3.0, 0.22 * len(ordered) + 1.5)
    fig, ax = plt.subplots(figsize=(8, min(height, 60)))
    y = np.arange(len(ordered))
    width = 0.8 / len(splits)
    for i, split in enumerate(splits):
        ax.barh(y + i * width - 0.4 + width / 2, ordered[split], height=width, label=split)
    ax.set_yticks(y, ordered.index, fontsize=max(5, 10 - len(ordered) // 20))
    ax.set_xlabel("images")
    ax.set_title("Images per class and split")
    ax.legend()
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    save_figure(fig, path, dpi=100)


def plot_curves(history: pd.DataFrame, path: Path, best_epoch: int | None = None) -> None:
    """Loss and accuracy per epoch, train against validation, with the best epoch marked."""
    fig, (loss_ax, acc_ax) = plt.subplots(1, 2, figsize=(11, 4))
    for key, label in (("train/loss", "train"), ("val/loss", "validation")):
        if key in history:
            loss_ax.plot(history["epoch"], history[key], label=label)
    scores = (("train/accuracy", "train"), ("val/accuracy", "validation"), ("val/balanced_accuracy", "validation, balanced"),
              ("val/mAP", "validation macro mAP"))
    for key, label in scores:
        if key in history:
            acc_ax.plot(history["epoch"], history[key], label=label)
    score_name = "accuracy (train: exact label set) / mAP" if "val/mAP" in history else "accuracy"
    for ax, name in ((loss_ax, "loss"), (acc_ax, score_name)):
        if best_epoch:
            ax.axvline(best_epoch, color="grey", linestyle=":", label=f"best epoch ({best_epoch})")
        ax.set_xlabel("epoch")
        ax.set_ylabel(name)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    save_figure(fig, path, dpi=110)


def plot_average_precision(table: pd.DataFrame, path: Path, title: str, show: int = 20) -> None:
    """Average precision of the best and the worst classes (all of them when few), with positives."""
    ranked = table.dropna(subset=["average_precision"]).sort_values("average_precision")
    if len(ranked) > 2 * show:
        ranked = pd.concat([ranked.head(show), ranked.tail(show)])
    fig, ax = plt.subplots(figsize=(8, max(3.0, 0.25 * len(ranked) + 1.2)))
    y = np.arange(len(ranked))
    ax.barh(y, ranked["average_precision"], color="tab:blue")
    ax.set_yticks(y, [f"{c} ({p})" for c, p in zip(ranked["class"], ranked["positives"])], fontsize=8)
    ax.set_xlim(0, 1)
    ax.set_xlabel("average precision (positives in brackets)")
    ax.set_title(title + ("" if len(ranked) == len(table.dropna(subset=["average_precision"])) else f": worst and best {show}"))
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    save_figure(fig, path, dpi=100)
