"""The label-review loop: find the examples whose label is probably wrong, queue them, merge corrections.

Two signals, as the music study used and as confident learning formalizes it:
- votes: how many of the given runs got an example wrong (the study relistened to the clips that at
  least 3 of its 4 best models missed);
- cleanlab's confident learning (Northcutt et al. 2021) on out-of-fold probabilities: for each example
  only the runs that did not train on it (its split in that run's splits.csv is val or test) count.
  Runs with different `data.split.seed` cover more examples; one never held out is not ranked.

`relabel` merges the corrections a person typed into the queue's `new_*` columns into the CSV manifest,
keeping every old value in a `label_history` column and the previous manifest as a backup file; `merge`
does the same for a queue trilla.label.review filled from a labelling project's answers.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd

from trilla.atomic import write_bytes, write_csv
from trilla.data.datamodule import load_data
from trilla.data.sources import manifest_table
from trilla.errors import TrillaError, unknown_name
from trilla.evaluation.evaluate import predict_positions
from trilla.objectives import objective_for
from trilla.paths import free_path
from trilla.runs import Run
from trilla.spreadsheet import defused, read_strings

HISTORY = "label_history"
log = logging.getLogger("trilla")


def review(runs: list[Path], data: Path | None = None, min_votes: int = 3, progress: bool = True) -> pd.DataFrame:
    """One row per example that at least `min_votes` runs got wrong or that cleanlab flags, most
    suspicious first, with empty `new_*` columns for the corrections."""
    import cleanlab

    loaded = [Run(r) for r in runs]
    if not loaded:
        raise TrillaError("give at least one run")
    first = loaded[0]
    if any(r.classes != first.classes for r in loaded):
        raise TrillaError("the runs were trained on different classes; review runs of one dataset")
    found = objective_for(first.config)
    if not found.one_label:
        raise TrillaError(f"review needs single-label runs: confident learning and the vote rule rank one label per example; these are {found.title}")
    if min_votes > len(loaded):
        raise TrillaError(f"--min-votes {min_votes} is more than the {len(loaded)} runs given")
    seeds = {run.config.data.split.seed for run in loaded}
    if len(loaded) > 1 and len(seeds) == 1:
        log.warning(
            "all %d runs split with data.split.seed %s: they held out the same files, so their out-of-fold votes are on "
            "the same examples and the rest are never ranked; train them with different data.split.seed values", len(loaded), seeds.pop(),
        )
    cfg = first.config.data
    source = Path(data) if data else cfg.path
    labelled = load_data(source, first.config, codec=first.codec(), classes=first.classes, progress=progress)
    everything = np.arange(len(labelled.targets))
    labels = labelled.targets
    wrong = np.zeros(len(labels), dtype=int)
    predicted_votes = np.zeros((len(labels), len(first.classes)), dtype=int)
    held_out_sum = np.zeros((len(labels), len(first.classes)))
    held_out_n = np.zeros(len(labels), dtype=int)
    for run in loaded:
        predictor = run.predictor()
        probs = predict_positions(predictor, labelled, everything)
        predicted = probs.argmax(1)
        wrong += predicted != labels
        predicted_votes[everything, predicted] += 1
        trained_on = run.trained_on()
        held = np.array([p not in trained_on for p in labelled.paths])
        held_out_sum[held] += probs[held]
        held_out_n += held
    covered = held_out_n > 0
    rank = np.full(len(labels), np.nan)
    issue = np.zeros(len(labels), dtype=bool)
    if covered.sum() > len(first.classes) and len(np.unique(labels[covered])) == len(first.classes):
        oof = held_out_sum[covered] / held_out_n[covered, None]
        ranked = cleanlab.filter.find_label_issues(labels[covered], oof, return_indices_ranked_by="self_confidence")
        where = np.flatnonzero(covered)
        issue[where[ranked]] = True
        rank[where[ranked]] = np.arange(1, len(ranked) + 1)
    oof_label = np.full(len(labels), np.nan)
    oof_label[covered] = held_out_sum[covered, labels[covered]] / held_out_n[covered]
    queue = pd.DataFrame({
        "path": labelled.paths,
        "label": [first.classes[t] for t in labels],
        "votes": wrong,
        "runs": len(loaded),
        "predicted": [first.classes[i] for i in predicted_votes.argmax(1)],
        "model_votes": [json.dumps({first.classes[c]: int(row[c]) for c in np.argsort(-row, kind="stable") if row[c]}) for row in predicted_votes],
        "held_out_runs": held_out_n,
        "label_probability_out_of_fold": oof_label,
        "cleanlab_issue": issue,
        "cleanlab_rank": rank,
    })
    queue = queue[(queue["votes"] >= min_votes) | queue["cleanlab_issue"]]
    queue = queue.sort_values(["votes", "cleanlab_rank"], ascending=[False, True], na_position="last")
    for column in first.label_columns():
        queue[f"new_{column}"] = ""
    queue.insert(0, "manifest", str(source))
    return queue.reset_index(drop=True)


def relabel(queue_csv: Path, apply: bool = False, path_column: str = "path", new_class: bool = False) -> pd.DataFrame:
    """The changes the queue's filled-in `new_*` cells make to their manifest (written with `apply`).

    A new label must be one the manifest's column already holds (a typo would otherwise become a class
    of its own), unless `new_class`; a column of numbers (affect coordinates) takes numbers."""
    if not Path(queue_csv).is_file():
        raise TrillaError(f"the queue {queue_csv} does not exist (trilla review RUN writes one)")
    queue = read_strings(queue_csv)
    if "manifest" not in queue or "path" not in queue:
        raise TrillaError(f"{queue_csv} is not a review queue (it has no manifest and path columns)")
    return merge(queue, apply, path_column, new_class)


def merge(queue: pd.DataFrame, apply: bool = False, path_column: str = "path", new_class: bool = False) -> pd.DataFrame:
    """`relabel` on a queue already read (all strings); a `relabel_note` column, where a row has one, is
    added to that row's history entries (who gave the new label)."""
    _refuse_contradictions(queue)
    changes = []
    for manifest_path, group in queue.groupby("manifest"):
        manifest_path = Path(manifest_path)
        if manifest_path.suffix.lower() != ".csv":
            raise TrillaError(
                f"relabel merges into a CSV manifest; {manifest_path} is a folder. Write one with: trilla manifest {manifest_path} "
                f"--out {manifest_path.name}.csv, train on that CSV, and review its runs"
            )
        if not manifest_path.is_file():
            raise TrillaError(f"the queue's manifest {manifest_path} does not exist")
        manifest, delimiter = manifest_table(manifest_path)  # as training reads it: its encoding, its delimiter
        if path_column not in manifest:
            raise TrillaError(f"{manifest_path} has no {path_column!r} column")
        resolved = {str((manifest_path.parent / p).resolve()) if not Path(p).is_absolute() else str(Path(p).resolve()): i
                    for i, p in enumerate(manifest[path_column])}
        if HISTORY not in manifest:
            manifest[HISTORY] = ""
        stamp = datetime.now().isoformat(timespec="seconds")
        for _, row in group.iterrows():
            at = resolved.get(str(Path(row["path"]).resolve()))
            note = row.get("relabel_note", "")
            for column in [c[4:] for c in queue.columns if c.startswith("new_")]:
                new = row[f"new_{column}"].strip()
                if not new:
                    continue
                if at is None:
                    raise TrillaError(f"{row['path']} is not in {manifest_path}")
                if column not in manifest:
                    raise TrillaError(f"{manifest_path} has no column {column!r}")
                old = manifest.at[at, column]
                if _same(old, new):
                    continue
                _check_value(manifest[column], column, new, row["path"], new_class)
                changes.append({"manifest": str(manifest_path), "path": row["path"], "column": column, "old": old, "new": new})
                manifest.at[at, column] = new
                entry = f"{stamp} {column}: {old} -> {new}" + (f" ({note})" if note else "")
                manifest.at[at, HISTORY] = f"{manifest.at[at, HISTORY]}; {entry}" if manifest.at[at, HISTORY] else entry
        if apply and any(c["manifest"] == str(manifest_path) for c in changes):
            backup = free_path(manifest_path.with_name(f"{manifest_path.name}.{datetime.now():%Y%m%d-%H%M%S}.bak"))
            write_bytes(backup, manifest_path.read_bytes())
            write_csv(manifest_path, defused(manifest), sep=delimiter)
    return pd.DataFrame(changes, columns=["manifest", "path", "column", "old", "new"])


def _refuse_contradictions(queue: pd.DataFrame) -> None:
    """Two rows of one file that ask for different values: which one the person meant, no merge can tell."""
    news = [c for c in queue.columns if c.startswith("new_")]
    filled = queue.assign(row=range(2, len(queue) + 2), key=queue["path"].map(lambda p: str(Path(p).resolve())))
    for column in news:
        asked = filled[filled[column].str.strip() != ""]
        for _, rows in asked.groupby(["manifest", "key"]):
            if rows[column].str.strip().nunique() > 1:
                said = "; ".join(f"line {r.row}: {r[column].strip()!r}" for _, r in rows.iterrows())
                raise TrillaError(f"the queue asks for two values of {column[4:]} for {rows['path'].iloc[0]} ({said}): keep one, then run again")


def _same(old: str, new: str) -> bool:
    """The same label, or the same number however written (0.5 and 0.5000)."""
    if old == new:
        return True
    try:
        return float(old) == float(new)
    except ValueError:
        return False


def _check_value(values: pd.Series, column: str, new: str, path: str, new_class: bool) -> None:
    """A number for a column of numbers; for a column of labels, one it holds already (or `new_class`)."""
    numeric = pd.to_numeric(values[values != ""], errors="coerce")
    if len(numeric) and numeric.notna().all():
        try:
            float(new)
        except ValueError:
            raise TrillaError(f"{path}: new_{column} {new!r} is not a number, and {column} holds numbers") from None
        return
    known = sorted(set(values) - {""})
    if new_class or new in known:
        return
    raise TrillaError(f"{path}: {unknown_name(column, new, known)}. Pass --new-class to add it as a class of its own")
