"""A source of your own: a JSON-lines manifest, one object per line (`{"path": "a/1.png", "label": "a"}`),
paths relative to the manifest's folder. Registered beside the folder tree and the CSV manifest, it is
found by its suffix wherever trilla reads data (`trilla train --data photos.jsonl`). A line it cannot use
is a problem with its reason, listed and skipped, never fatal. tests/test_extending.py trains on it.
"""

from __future__ import annotations

import json
from pathlib import Path

from trilla.data.sources import Listing, Problem, Sample, register_source


@register_source("jsonl", accepts=lambda path: path.is_file() and path.suffix.lower() == ".jsonl")
def read_jsonl(manifest: Path, *, path_column: str = "path", label_column: str | None = "label", extra_columns: list[str] = (),
               allow_outside: bool = False, **_: object) -> Listing:
    listing = Listing()
    root = manifest.parent.resolve()
    for number, line in enumerate(manifest.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{manifest}, line {number}"
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            listing.problems.append(Problem(where, f"not JSON: {err.msg}"))
            continue
        if not isinstance(row, dict) or not isinstance(row.get(path_column), str):
            listing.problems.append(Problem(where, f"needs a '{path_column}' text"))
            continue
        path = (root / row[path_column]).resolve()
        if not allow_outside and not path.is_relative_to(root):
            listing.problems.append(Problem(str(path), "outside the manifest's folder (data.allow_outside: true reads it)"))
        elif not path.is_file():
            listing.problems.append(Problem(str(path), "no such file"))
        else:
            label = str(row.get(label_column, "")) if label_column else ""
            listing.samples.append(Sample(path, label, {name: str(row.get(name, "")) for name in extra_columns}))
    return listing
