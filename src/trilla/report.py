"""Plots and report.md: what a person would rather look at than read."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402


def plot_confusion(matrix: np.ndarray, classes: list[str], path: Path, title: str = "Confusion matrix") -> None:
    """Rows normalized to recall so rare classes stay visible; counts written in while they fit."""
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
    if n <= 30:
        for i in range(n):
            for j in range(n):
                if matrix[i, j]:
                    color = "white" if normalized[i, j] > 0.5 else "black"
                    ax.text(j, i, str(matrix[i, j]), ha="center", va="center", color=color, fontsize=8)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="share of the true class")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_curves(history: pd.DataFrame, path: Path, best_epoch: int | None = None) -> None:
    """Loss and accuracy per epoch, train against validation, with the best epoch marked."""
    fig, (loss_ax, acc_ax) = plt.subplots(1, 2, figsize=(11, 4))
    for key, label in (("train/loss", "train"), ("val/loss", "validation")):
        if key in history:
            loss_ax.plot(history["epoch"], history[key], label=label)
    for key, label in (("train/accuracy", "train"), ("val/accuracy", "validation"), ("val/balanced_accuracy", "validation, balanced")):
        if key in history:
            acc_ax.plot(history["epoch"], history[key], label=label)
    for ax, name in ((loss_ax, "loss"), (acc_ax, "accuracy")):
        if best_epoch:
            ax.axvline(best_epoch, color="grey", linestyle=":", label=f"best epoch ({best_epoch})")
        ax.set_xlabel("epoch")
        ax.set_ylabel(name)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def markdown_table(frame: pd.DataFrame, floatfmt: str = ".4f") -> str:
    """A GitHub table without the `tabulate` dependency that pandas.to_markdown needs."""
    def cell(value) -> str:
        if value is None or (isinstance(value, (float, np.floating)) and np.isnan(value)):
            return ""
        if isinstance(value, (float, np.floating)):
            return format(value, floatfmt)
        return str(value).replace("|", "\\|")

    lines = ["| " + " | ".join(map(str, frame.columns)) + " |", "|" + "---|" * len(frame.columns)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join(lines)


def render_report(run_dir: Path) -> Path:
    """report.md of a run, rendered from the files in its directory alone (so it can be re-rendered)."""
    import json

    import yaml

    from trilla.metrics import most_confused, near_baseline

    run_dir = Path(run_dir)
    info = json.loads((run_dir / "run.json").read_text())
    metrics = json.loads((run_dir / "metrics.json").read_text()) if (run_dir / "metrics.json").is_file() else {}
    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    data, train = info["data"], config["train"]
    lines = [f"# Run {info['id']}", ""]
    acc, base = metrics.get("test/accuracy"), metrics.get("test/majority_baseline")
    if acc is not None and near_baseline(acc, base):
        lines += [
            f"> **Warning: test accuracy {acc:.2%} is within one point of the majority baseline {base:.2%}** "
            "(always answering the most frequent training class). The model has probably learned nothing: "
            "try batch norm, another learning rate, or `train.imbalance: class_weights`.",
            "",
        ]
    lines += ["## Results", ""]
    if acc is not None:
        rows = [("test accuracy", f"{acc:.2%}"), ("test balanced accuracy", f"{metrics['test/balanced_accuracy']:.2%}"),
                ("majority baseline", f"{base:.2%}")]
        rows += [(f"top-{k}", f"{metrics[f'test/top_{k}']:.2%}") for k in range(2, 6) if f"test/top_{k}" in metrics]
        rows += [("test samples", str(int(metrics["test/samples"])))]
    else:
        rows = [("test set", "none (data.split.test is 0 and no data.test_path)")]
    rows += [
        ("best epoch", f"{metrics.get('best_epoch')} of {metrics.get('epochs')}" + (" (stopped early)" if metrics.get("stopped_early") else "")),
        ("min validation loss", f"{metrics.get('min_val_loss', float('nan')):.4f}"),
        ("validation accuracy at best", f"{metrics.get('val/accuracy', float('nan')):.2%}"),
        ("time to best", f"{metrics.get('time_to_best_s', 0):.1f} s"),
        ("training time", f"{metrics.get('train_time_s', 0):.1f} s"),
        ("training speed", f"{metrics.get('train_samples_per_s', 0):.0f} samples/s"),
    ]
    lines += [markdown_table(pd.DataFrame(rows, columns=["metric", "value"])), ""]
    if (run_dir / "curves.png").is_file():
        lines += ["![learning curves](curves.png)", ""]
    if (run_dir / "confusion_matrix.csv").is_file():
        matrix = pd.read_csv(run_dir / "confusion_matrix.csv", index_col=0)
        lines += ["## Test errors", "", "![confusion matrix](confusion_matrix.png)", ""]
        pairs = most_confused(matrix.to_numpy(), list(matrix.columns))
        if pairs:
            lines += ["Most confused (true -> predicted, count):", ""]
            lines += [markdown_table(pd.DataFrame(pairs, columns=["true", "predicted", "count"])), ""]
        lines += ["Per class:", "", markdown_table(pd.read_csv(run_dir / "per_class.csv"), ".3f"), ""]
    lines += ["## Data", "", f"- source: `{data['path']}`" + (f", test set: `{data['test_path']}`" if data.get("test_path") else "")]
    lines += [f"- {data['samples']} usable images, {data['channels']}, {data['image_size']} px (long side, padded square; config: {config['data']['image_size']})",
              f"- fingerprint `{data['fingerprint'][:16]}`, store `{data['store']}` ({'reused' if data['store_reused'] else 'packed now'})", ""]
    lines += ["Class counts per split:", "", markdown_table(pd.read_csv(run_dir / "counts.csv"), ".0f"), ""]
    skipped = pd.read_csv(run_dir / "skipped.csv")
    if len(skipped):
        lines += [f"**{len(skipped)} files skipped** (see skipped.csv):", "", markdown_table(skipped.head(50)), ""]
    conflicts = pd.read_csv(run_dir / "conflicts.csv")
    if len(conflicts):
        lines += [f"**{conflicts['sha1'].nunique()} images are filed under more than one label** (see conflicts.csv):", "",
                  markdown_table(conflicts[["label", "path"]].head(50)), ""]
    lines += ["## Model and training", "",
              f"- model `{config['model']['name']}`: {info['model_summary']}, {info['parameters']:,} parameters",
              f"- {train['optimizer']} lr {train['lr']} (momentum {train['momentum']}, weight decay {train['weight_decay']}), "
              f"schedule {train['schedule']}, batch {train['batch_size']}, up to {train['epochs']} epochs, "
              f"early stopping {train['early_stopping']} on {train['monitor']}, imbalance: {train['imbalance']}, seed {train['seed']}",
              "- versions: " + ", ".join(f"{k} {v}" for k, v in info["versions"].items() if k != "platform"),
              f"- command: `{info['command']}`", "",
              "Files: `config.yaml` (resolved), `classes.json`, `history.csv`, `metrics.json`, `splits.csv`, "
              "`checkpoints/best.ckpt`, `checkpoints/last.ckpt`, `tensorboard/`.", ""]
    path = run_dir / "report.md"
    tmp = path.with_name("report.md.tmp")
    tmp.write_text("\n".join(lines))
    tmp.replace(path)
    return path
