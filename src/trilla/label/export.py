"""What a labelling project says: a manifest `trilla train` reads (the majority class, the labels most
annotators chose, or the mean point on the plane), how far the annotators agree on each item, the full
label history, and the agreement of the whole project (Krippendorff's alpha, from the `krippendorff`
package: nominal for classes and labels, interval for each axis of the plane).

Per-item agreement: for classes, the share of annotators who chose the majority class; for labels, the
share of (annotator, label) decisions that agree with the majority's; for the plane, 1 minus the mean
distance of the points from their mean over the largest possible distance (2 * sqrt(2)).
"""

from __future__ import annotations

import math
import os
import shlex
import time
from collections import Counter
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from trilla.atomic import write_csv
from trilla.data.sources import SONG, header, manifest_rows
from trilla.errors import TrillaError
from trilla.label.project import Project
from trilla.spreadsheet import defused


def manifest(project: Project) -> pd.DataFrame:
    """One row per item at least one annotator answered."""
    standing = project.standing()
    items = project.items().set_index("item")
    history = _history(project)
    rows = []
    for item, group in standing.groupby("item", sort=True):
        values = list(group["value"])
        row = {"path": items.at[item, "path"]}
        if project.kind == "classes":
            counts = Counter(values)
            label = max(counts, key=lambda v: (counts[v], -values.index(v)))  # most votes; a tie goes to the first given
            row.update(label=label, agreement=counts[label] / len(values))
        elif project.kind == "multilabel":
            chosen = [c for c in project.classes if sum(c in v for v in values) * 2 > len(values)]
            agree = np.mean([[(c in v) == (c in chosen) for c in project.classes] for v in values])
            row.update(labels=";".join(chosen), agreement=float(agree))
        else:
            points = np.asarray(values, dtype=float)
            centre = points.mean(axis=0)
            spread = float(np.linalg.norm(points - centre, axis=1).mean())
            row.update({project.axes[0]: round(float(centre[0]), 4), project.axes[1]: round(float(centre[1]), 4),
                        "agreement": round(1 - spread / (2 * math.sqrt(2)), 4)})
        given = items.at[item, "given"]
        row.update(annotators=len(values), given=given if isinstance(given, str) else "", label_history=history.get(item, ""))
        rows.append(row)
    return pd.DataFrame(rows)


def write_manifest(project: Project, target: Path) -> tuple[pd.DataFrame, str]:
    """Write the manifest to `target` and say the `trilla train` command that trains on it as written.

    Paths inside the CSV's folder are written relative to it, so the project and its data move together;
    the others stay absolute, and the command then allows them (`data.allow_outside`): the CSV is trilla's
    own, not one a stranger posted. The command also says how the project's kind is trained."""
    table = manifest(project)
    if not len(table):
        raise TrillaError(f"no item of {project.folder} has an answer yet")
    home = Path(os.path.realpath(target.parent))
    written, outside = [], False
    for path in table["path"]:
        real = Path(os.path.realpath(path))
        outside |= not real.is_relative_to(home)
        written.append(str(path) if not real.is_relative_to(home) else real.relative_to(home).as_posix())
    songs = _songs(project)
    if songs:  # clips cut by harvest clips: their song, so a run holds out whole songs
        table.insert(1, SONG, [songs.get(os.path.realpath(path), "") for path in table["path"]])
    write_csv(target, defused(table.assign(path=written)))
    args = ["trilla", "train", "--data", str(target)]
    if outside:
        args += ["--set", "data.allow_outside=true"]
    if project.kind == "multilabel":
        args += ["--set", "task=multilabel"]
    elif project.kind == "plane":  # the plane's first axis is the study's valence, its second arousal
        args += [f"--set=data.targets.{axis}={name}" for axis, name in zip(("valence", "arousal"), project.axes)]
    return table, shlex.join(args)


def _songs(project: Project) -> dict[str, str]:
    """Each clip's song (by real path) where the project's data is harvest's manifest, or a folder holding
    one: clips carry no song of their own, and a split that mixes a song's clips measures the song."""
    data = Path(project.spec.get("data", ""))
    listed = data if data.suffix.lower() == ".csv" else data / "manifest.csv"
    if SONG not in header(listed):
        return {}
    with manifest_rows(listed) as rows:
        return {os.path.realpath(listed.parent / row["path"]): row[SONG] for row in rows if row.get("path")}


def _history(project: Project) -> dict[int, str]:
    """Per item, every answer in order: `annotator: value (time)`, undone ones marked."""
    out: dict[int, list[str]] = {}
    for row in project.answers().itertuples():
        value = "skipped" if row.skipped else row.value
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(row.created))
        out.setdefault(row.item, []).append(f"{row.annotator}: {value} ({stamp}{', undone' if row.undone else ''})")
    return {item: "; ".join(entries) for item, entries in out.items()}


def agreement(project: Project) -> dict[str, float | None]:
    """Krippendorff's alpha over the items two or more annotators answered (None where it is undefined:
    fewer than two annotators, or no item answered twice)."""
    import krippendorff

    standing = project.standing()
    annotators = sorted(set(standing["annotator"]))
    shared = standing.groupby("item")["annotator"].nunique()
    items = sorted(shared[shared >= 2].index)
    if len(annotators) < 2 or not items:
        return {"alpha": None}
    where = {(r.item, r.annotator): r.value for r in standing.itertuples()}

    def alpha(column, level: Literal["nominal", "interval"]) -> float | None:
        matrix = np.asarray([[column(where[i, a]) if (i, a) in where else np.nan for i in items] for a in annotators], dtype=float)
        if np.unique(matrix[~np.isnan(matrix)]).size < 2:  # every answer the same: alpha is 0/0
            return 1.0
        return float(krippendorff.alpha(reliability_data=matrix, level_of_measurement=level))

    if project.kind == "classes":
        return {"alpha": alpha(project.classes.index, "nominal")}
    if project.kind == "multilabel":
        per = [alpha(lambda v, c=c: float(c in v), "nominal") for c in project.classes]
        return {"alpha": float(np.mean([p for p in per if p is not None])), **{f"alpha/{c}": p for c, p in zip(project.classes, per)}}
    per_axis = {f"alpha/{axis}": alpha(lambda v, k=k: v[k], "interval") for k, axis in enumerate(project.axes)}
    return {"alpha": float(np.mean(list(per_axis.values()))), **per_axis}
