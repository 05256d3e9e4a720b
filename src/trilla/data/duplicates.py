"""One sample per content: duplicates merged, conflicting labels left out, copies never across splits.

The same bytes listed twice (a CSV row repeated, the same product photo filed in two shop categories)
would otherwise be split independently, and a copy in test of a picture trained on inflates accuracy.
Files are told apart by the sha1 the store computes anyway. Identical files with one label are merged
into the first of them; identical files with different labels (at least one label is wrong) are left
out and listed, or, when the user keeps them, share one group so that the split keeps them together.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from trilla.data.sources import Problem


@dataclass
class Deduplicated:
    """`keep` are the rows to use, `groups` one id per kept row (the same for identical content, None
    when every kept file is distinct), `merged` the copies merged into a kept path (path, kept; the same
    path for a row listed again),
    `conflicts` every file of content filed under several labels (sha1, label, path)."""

    keep: list[int]
    groups: np.ndarray | None
    merged: pd.DataFrame
    conflicts: pd.DataFrame
    problems: list[Problem]


def deduplicate(rows: list[int], sha1: list[str], labels: list[str], paths: list[str], keep_conflicts: bool) -> Deduplicated:
    """`rows` with their content hash, label (any text standing for it) and path, in listing order."""
    frame = pd.DataFrame({"row": rows, "sha1": sha1, "label": labels, "path": paths})
    conflicted = frame.groupby("sha1")["label"].transform("nunique") > 1
    conflicts = frame[conflicted].drop_duplicates(["sha1", "label", "path"]).sort_values(["sha1", "label"])
    problems = []
    if not keep_conflicts:
        for _, group in conflicts.groupby("sha1", sort=False):
            names = sorted(set(group["label"]))
            for path in dict.fromkeys(group["path"]):
                problems.append(Problem(path, f"the same content is filed under {', '.join(names)}; left out (data.keep_conflicts: true keeps it)"))
        frame = frame[~conflicted]
    unique = ~frame.duplicated(["sha1", "label"])
    kept = frame[unique]
    first = kept.drop_duplicates("sha1").set_index("sha1")["path"]
    copies = frame[~unique]
    merged = pd.DataFrame({"path": copies["path"].to_numpy(), "kept": first.reindex(copies["sha1"]).to_numpy()})
    groups = None
    if kept["sha1"].duplicated().any():
        groups = pd.factorize(kept["sha1"])[0].astype(np.int64)
    return Deduplicated(kept["row"].tolist(), groups, merged, conflicts.reset_index(drop=True)[["sha1", "label", "path"]], problems)
