"""Where labelled files come from: a registry of source readers (folder tree, CSV manifest).

A reader turns `data.path` into a listing of (file, label) samples plus the problems it met on the way
(a missing file, an empty class folder); it never opens images, which is the store's job.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from trilla.errors import TrillaError


@dataclass(frozen=True)
class Sample:
    """A labelled file; `columns` holds the manifest's other columns that were asked for (metadata)."""

    path: Path
    label: str
    columns: dict[str, str] = field(default_factory=dict, compare=False)


@dataclass(frozen=True)
class Problem:
    """A file or folder left out of the dataset, with the reason, for the console and the report."""

    path: str
    reason: str


@dataclass
class Listing:
    samples: list[Sample] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)


Reader = Callable[..., Listing]
_SOURCES: dict[str, tuple[Callable[[Path], bool], Reader]] = {}


def register_source(name: str, accepts: Callable[[Path], bool]) -> Callable[[Reader], Reader]:
    def decorator(reader: Reader) -> Reader:
        _SOURCES[name] = (accepts, reader)
        return reader

    return decorator


def read_source(
    path: Path, *, path_column: str = "path", label_column: str | None = "label", extra_columns: list[str] = (),
    label_level: int | None = None,
) -> Listing:
    """List the samples at `path` with the first registered reader that accepts it."""
    path = Path(path)
    if not path.exists():
        raise TrillaError(f"data path {path} does not exist")
    for accepts, reader in _SOURCES.values():
        if accepts(path):
            listing = reader(
                path, path_column=path_column, label_column=label_column, extra_columns=list(extra_columns), label_level=label_level
            )
            if not listing.samples:
                raise TrillaError(f"no labelled files found in {path}; expected a <class>/<file> folder tree or a CSV")
            return listing
    raise TrillaError(f"data path {path} is neither a folder nor a .csv manifest")


def visible_files(folder: Path) -> list[Path]:
    """Files below `folder`, sorted; hidden files and folders (.DS_Store, .git, caches) are not data."""
    return sorted(p for p in folder.rglob("*") if p.is_file() and not any(s.startswith(".") for s in p.relative_to(folder).parts))


@register_source("folder", accepts=lambda p: p.is_dir())
def read_folder(root: Path, *, extra_columns: list[str] = (), label_level: int | None = None, **_: str) -> Listing:
    """A <class>/<file> tree, as torchvision's ImageFolder reads it: the top-level folder is the label.

    With `label_level` the label is that part of each file's path below `root` instead (-2 is the
    file's folder: Species in Region/Species/photo.jpg). Metadata comes from path levels, not columns.
    """
    if extra_columns:
        raise TrillaError(
            f"metadata columns {extra_columns} need a CSV manifest; {root} is a folder (use from: path, level: N)"
        )
    listing = Listing()
    if label_level is not None:
        for path in visible_files(root):
            parts = path.relative_to(root).parts
            folders = range(-len(parts), -1) if label_level < 0 else range(len(parts) - 1)
            if label_level not in folders:
                listing.problems.append(Problem(str(path), f"its path has no folder at data.label_level {label_level}"))
                continue
            listing.samples.append(Sample(path, parts[label_level]))
        return listing
    for entry in sorted(root.iterdir()):
        if entry.name.startswith("."):
            continue
        if entry.is_file():
            listing.problems.append(Problem(str(entry), "not inside a class folder"))
            continue
        files = visible_files(entry)
        if not files:
            listing.problems.append(Problem(str(entry), f"class folder '{entry.name}' is empty; class left out"))
        listing.samples.extend(Sample(p, entry.name) for p in files)
    return listing


@register_source("csv", accepts=lambda p: p.is_file() and p.suffix.lower() == ".csv")
def read_csv(
    manifest: Path, *, path_column: str = "path", label_column: str | None = "label", extra_columns: list[str] = (), **_: object
) -> Listing:
    """Rows of path,label[,more]; relative paths are resolved against the CSV's folder.

    `label_column=None` reads unlabelled rows (the label then comes from other columns, e.g. affect
    coordinates, which the caller checks)."""
    listing = Listing()
    with manifest.open(newline="", encoding="utf-8-sig") as handle:
        rows = csv.DictReader(handle)
        wanted = [path_column, *([label_column] if label_column else []), *extra_columns]
        missing = [c for c in wanted if c not in (rows.fieldnames or [])]
        if missing:
            raise TrillaError(
                f"{manifest} has no column {' or '.join(map(repr, missing))}; its columns are "
                f"{rows.fieldnames}. Name them with data.path_column / data.label_column / data.metadata.<name>.column / data.targets."
            )
        for line, row in enumerate(rows, start=2):
            raw_path = (row[path_column] or "").strip()
            label = (row[label_column] or "").strip() if label_column else ""
            if not raw_path or (label_column and not label):
                listing.problems.append(Problem(f"{manifest}:{line}", "empty path or label"))
                continue
            path = Path(raw_path) if Path(raw_path).is_absolute() else manifest.parent / raw_path
            if not path.is_file():
                listing.problems.append(Problem(str(path), f"listed at {manifest.name}:{line} but not found"))
                continue
            listing.samples.append(Sample(path, label, {c: row[c] or "" for c in extra_columns}))
    return listing
