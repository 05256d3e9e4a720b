"""report.md (and its HTML page): a run told from the files in its directory, with the plots of evaluation/plots.py."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from trilla.tables import markdown_table


def _topk_table(metrics: dict) -> pd.DataFrame | None:
    rows = []
    for split in ("val", "test"):
        values = {f"top-{k}": metrics[f"{split}/top_{k}"] for k in range(1, 6) if f"{split}/top_{k}" in metrics}
        if values:
            rows.append({"split": split, **values})
    return pd.DataFrame(rows) if rows else None


def _errors_section(run, folder: str, split: str) -> list[str]:
    """Confusion matrix, most confused pairs, per-class table and worst images of one evaluated split
    (`folder`: where in the run its files are, "" for the run itself)."""
    from trilla.metrics import most_confused

    matrix = run.table("confusion_matrix.csv", folder, index_col=0)
    if not len(matrix):
        return []
    link = f"{folder}/" if folder else ""
    lines = [f"## {split.capitalize()} errors", "", f"![confusion matrix]({link}confusion_matrix.png)", ""]
    if run.has(Path(folder) / "confusion_matrix_top.png"):
        lines += ["Too many classes for numbers in the cells: the classes of the most frequent confusions, with counts:", "",
                  f"![most confused classes]({link}confusion_matrix_top.png)", ""]
    pairs = most_confused(matrix.to_numpy(), list(matrix.columns))
    if pairs:
        lines += ["Most confused (true -> predicted, count):", ""]
        lines += [markdown_table(pd.DataFrame(pairs, columns=["true", "predicted", "count"])), ""]
    if run.has(Path(folder, "worst.png")):
        lines += [f"![worst predicted {split} images]({link}worst.png)", ""]
    per_class = run.table("per_class.csv", folder)
    if len(per_class):
        lines += ["Per class:", "", markdown_table(per_class, ".3f"), ""]
    return lines


def _affect_section(run, metrics: dict) -> list[str]:
    """Per-axis accuracy and regression metrics per split, and the clips on the plane."""
    rows = []
    for split in ("train", "val", "test"):
        values = {key.split("/", 1)[1]: v for key, v in metrics.items() if key.startswith(f"{split}/") and
                  (key.endswith("_accuracy") and not key.endswith("balanced_accuracy") or "/r2_" in key or "/pearson_" in key or "/rmse_" in key)}
        if values:
            rows.append({"split": split, **values})
    if not rows:
        return []
    lines = ["## Affect", "", markdown_table(pd.DataFrame(rows), ".3f"), ""]
    for split, plane in (("train", "train/affect_plane.png"), ("test", "affect_plane.png")):
        if run.has(plane):
            lines += [f"![{split} clips on the plane]({plane})", ""]
    return lines


def render_report(run) -> Path:
    """report.md of a run (a `runs.Run`), rendered from the files in its directory alone (so it can be
    re-rendered)."""
    from trilla.kinds import input_kind
    from trilla.metrics import near_baseline

    info, metrics, config = run.info, run.metrics, run.raw_config
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
    if "test/mAP" in metrics:
        rows = [
            ("test macro mAP", f"{metrics['test/mAP']:.4f}"),
            ("test mean AUC", f"{metrics['test/mean_auc']:.4f}"),
            ("test d'", f"{metrics['test/d_prime']:.3f}"),
            ("test micro F1 at the tuned thresholds", f"{metrics['test/micro_f1']:.4f}"),
            ("the study's \"mAP\" (per-clip Jaccard at 0.5; not macro mAP)", f"{metrics['test/study_jaccard']:.4f}"),
            ("the study's pSR (pooled recall at 0.5)", f"{metrics['test/study_psr']:.4f}"),
            ("classes without test positives (left out of mAP)", str(int(metrics["test/classes_without_positives"]))),
            ("test samples", str(int(metrics["test/samples"]))),
        ]
    elif acc is not None:
        rows = [("test accuracy", f"{acc:.2%}"), ("test balanced accuracy", f"{metrics['test/balanced_accuracy']:.2%}"),
                ("majority baseline", f"{base:.2%}")]
        rows += [("test samples", str(int(metrics["test/samples"])))]
    else:
        rows = [("test set", "none (data.split.test is 0 and no data.test_path)")]
    rows += [
        ("best epoch", f"{metrics.get('best_epoch')} of {metrics.get('epochs')}" + (" (stopped early)" if metrics.get("stopped_early") else "")),
        ("min validation loss", f"{metrics.get('min_val_loss', float('nan')):.4f}"),
        *([("validation macro mAP at best", f"{metrics['val/mAP']:.4f}")] if "val/mAP" in metrics else
          [("validation accuracy at best", f"{metrics.get('val/accuracy', float('nan')):.2%}")]),
        ("time to best", f"{metrics.get('time_to_best_s', 0):.1f} s"),
        ("training time", f"{metrics.get('train_time_s', 0):.1f} s"),
        ("training speed", f"{metrics.get('train_samples_per_s', 0):.0f} samples/s"),
    ]
    lines += [markdown_table(pd.DataFrame(rows, columns=["metric", "value"])), ""]
    if run.has("curves.png"):
        lines += ["![learning curves](curves.png)", ""]
    topk = _topk_table(metrics)
    if topk is not None:
        lines += ["Top-k accuracy (the true class among the k most probable):", "", markdown_table(topk, ".2%"), ""]
    lines += _affect_section(run, metrics)
    if run.has("average_precision.png"):
        lines += ["![average precision per class](average_precision.png)", "",
                  "Per-class average precision, AUC and the threshold tuned on validation: `per_class.csv`; "
                  "the thresholds the model predicts with: `thresholds.json`.", ""]
        table = run.table("per_class.csv")
        lines += [f"Test classes by average precision (the first 30 of {len(table)}):", "", markdown_table(table.head(30), ".3f"), ""]
    for folder, split in (("", "test"), ("val", "validation")):
        lines += _errors_section(run, folder, split)
    lines += ["## Data", "", f"- source: `{data['path']}`" + (f", test set: `{data['test_path']}`" if data.get("test_path") else "")]
    lines += [f"- {input_kind(run.config.input.type).describe(run.config, data)}" + (f", {len(run.classes)} labels" if run.objective.several else "")]
    stored = f", store `{data['store']}` ({'reused' if data['store_reused'] else 'packed now'})" if data.get("store") else ""
    lines += [f"- fingerprint `{data['fingerprint'][:16]}`{stored}", ""]
    if run.has("examples.png"):
        lines += ["Training examples as the model saw them (augmented):", "", "![training examples](examples.png)", ""]
    grouped = run.config.data.split.group_column
    if grouped and grouped != "auto":
        held = data.get("groups_per_split", {})
        sizes = ", ".join(f"{held[name]} in {name}" for name in ("train", "val", "test") if name in held)
        lines += [f"Counts per split (files sharing a `{grouped}` value are in one split: validation and test hold out whole groups"
                  + (f"; `{grouped}` values: {sizes}" if sizes else "") + "):", ""]
    else:
        lines += ["Counts per split:", ""]
    if run.has("class_counts.png"):
        lines += ["![class counts](class_counts.png)", ""]
    counts = run.table("counts.csv", index_col=0)
    lines += [markdown_table(run.table("counts.csv"), ".0f") if len(counts) <= 40 else
              f"{len(counts)} classes, {int(counts['total'].min())} to {int(counts['total'].max())} files each (all in counts.csv)", ""]
    for split, name in (("val", "validation"), ("test", "test")):
        if split in counts and (counts[split] == 0).any():
            absent = counts.index[counts[split] == 0].tolist()
            lines += [f"- classes missing from {name} ({len(absent)}, too few files to split): {', '.join(map(str, absent[:40]))}"
                      + (" ..." if len(absent) > 40 else ""), ""]
    skipped = run.table("skipped.csv")
    if len(skipped):
        lines += [f"**{len(skipped)} files skipped** (see skipped.csv):", "", markdown_table(skipped.head(50)), ""]
    conflicts = run.table("conflicts.csv")
    if len(conflicts):
        fate = "kept, each in one split (data.keep_conflicts)" if run.config.data.keep_conflicts else "left out"
        lines += [f"**{conflicts['sha1'].nunique()} files' content is filed under more than one label**, {fate} (see conflicts.csv):", "",
                  markdown_table(conflicts[["label", "path"]].head(50)), ""]
    merged = run.table("duplicates.csv")
    lines += [f"- duplicates merged: {len(merged)} (the same content listed again or under another path counts once, "
              "so no copy lands in two splits; see duplicates.csv)" if len(merged) else "- duplicates merged: none", ""]
    noted = run.table("notes.csv")
    if len(noted):
        lines += [f"**{len(noted)} files used with a warning** (see notes.csv):", "", markdown_table(noted.head(50)), ""]
    lines += ["## Model and training", "",
              f"- model `{config['model']['name']}`: {info['model_summary']}, {info['parameters']:,} parameters",
              f"- {train['optimizer']} lr {train['lr']:g} ("
              + (f"momentum {train['momentum']:g}, " if train["optimizer"] in ("sgd", "rmsprop") else "")
              + f"weight decay {train['weight_decay']:g}), schedule {train['schedule']}, batch {train['batch_size']}, "
              + f"up to {train['epochs']} epoch{'s' if train['epochs'] != 1 else ''}"
              + (f" (planned for at least {train['min_steps']} optimizer steps)" if train.get("min_steps") else "") + ", "
              + (f"early stopping after {train['early_stopping']} epochs without progress on {train['monitor']}" if train["early_stopping"]
                 else f"no early stopping (best epoch by {train['monitor']})")
              + (f", imbalance: {train['imbalance']}" if train["imbalance"] != "none" else "") + f", seed {train['seed']}",
              "- versions: " + ", ".join(f"{k} {v}" for k, v in info["versions"].items() if k != "platform"),
              f"- command: `{info['command']}`", "",
              "Files: `config.yaml` (resolved), `classes.json`, `history.csv`, `metrics.json`, `splits.csv`, "
              "`checkpoints/best.ckpt`, `checkpoints/last.ckpt`, `tensorboard/`.", ""]
    text = "\n".join(lines)
    run.write_text("report.html", report_html(text, run.path, f"Run {info['id']}"))
    return run.write_text("report.md", text)


def report_html(text: str, folder: Path, title: str) -> str:
    """The Markdown report as one standalone page (Python-Markdown, with tables): its pictures inlined
    as data URIs, so the file opens anywhere, offline, and can be mailed alone."""
    import base64
    import html
    import re

    import markdown

    body = markdown.markdown(text, extensions=["tables"])

    def inline(match: re.Match) -> str:
        path = folder / html.unescape(match.group(1))
        if not path.is_file() or path.suffix.lower() != ".png":
            return match.group(0)
        return f'src="data:image/png;base64,{base64.b64encode(path.read_bytes()).decode()}"'

    body = re.sub(r'src="([^"]+)"', inline, body)
    style = ("body{font-family:system-ui,sans-serif;max-width:70em;margin:2em auto;padding:0 1em;color:#222}"
             "table{border-collapse:collapse;margin:1em 0}td,th{padding:3px 9px;border-bottom:1px solid #ddd;text-align:left}"
             "img{max-width:100%}code{background:#f4f4f4;padding:0 3px}blockquote{border-left:4px solid #e55;margin:0;padding:0 1em}")
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title><style>{style}</style></head>"
            f"<body>{body}</body></html>\n")
