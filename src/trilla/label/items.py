"""The pictures and sounds a labelling project is made of: every image or audio file below a folder
(the class folder it sits in, if any, as the label it came with), or the rows of a CSV manifest (a
`path` or `file` column, relative to the CSV; a `label` column if it has one)."""

from __future__ import annotations

from pathlib import Path

from trilla.data.sources import manifest_table, walk
from trilla.errors import TrillaError
from trilla.kinds import input_kind


def media_of(path: Path) -> str | None:
    suffix = path.suffix.lower()
    for kind in ("image", "audio"):
        if suffix in input_kind(kind).suffixes:
            return kind
    return None


def find_items(data: Path) -> list[tuple[Path, str, str | None]]:
    """(absolute path, image or audio, the label it came with) per file, sorted by path."""
    found: list[tuple[Path, str | None, str | None]]
    if data.is_dir():
        files, _ = walk(data)
        found = [(path.resolve(), media_of(path), path.parent.name if path.parent != data else None) for path in files]
    elif data.suffix.lower() == ".csv" and data.is_file():
        table, _ = manifest_table(data)  # as training reads it: its encoding, its delimiter
        column = next((c for c in ("path", "file") if c in table.columns), None)
        if column is None:
            raise TrillaError(f"{data} needs a path (or file) column")
        labels = table["label"] if "label" in table.columns else [None] * len(table)
        found = []
        for value, label in zip(table[column], labels):
            path = Path(value) if Path(value).is_absolute() else data.parent / value
            if path.is_file():
                found.append((path.resolve(), media_of(path), label or None))
    else:
        raise TrillaError(f"{data} is neither a folder nor a CSV manifest")
    return sorted(((path, media, label) for path, media, label in found if media is not None), key=lambda item: str(item[0]))
